-- Shells started inside containers: interactive access (kubectl exec) or an
-- attacker's foothold. Host shells have no container_id and are left out.
SELECT time, pod_namespace, pod_name, container_id, pid, uid, binary, args
FROM process_exec
WHERE container_id IS NOT NULL
  AND comm IN ('sh', 'bash', 'ash', 'dash', 'zsh', 'ksh', 'busybox')
ORDER BY time;
