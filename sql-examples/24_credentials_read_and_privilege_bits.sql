-- Credential files read (shadow, sudoers, SSH keys, service-account tokens),
-- setuid/setgid bits given, file capabilities granted and device nodes made:
-- each with the pod, the process and the result.
SELECT time, pod_namespace, pod_name, comm, op, path, mode, xattr, reason, result
FROM file
WHERE op = 'read'
   OR reason LIKE '%setid%'
   OR reason LIKE '%security\_xattr%' ESCAPE '\'
   OR reason LIKE '%device\_node%' ESCAPE '\'
ORDER BY time;
