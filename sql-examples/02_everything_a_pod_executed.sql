-- Everything a pod executed, in order, with the parent process image.
-- Works after the pod is gone: rows carry the identity stamped at event time.
-- Replace the namespace and name (or filter on pod_uid).
SELECT e.time, e.pid, e.uid, e.binary, e.args, p.binary AS parent_binary
FROM process_exec e
LEFT JOIN process_exec p ON p.exec_id = e.parent_exec_id
WHERE e.pod_namespace = 'payments' AND e.pod_name = 'payments-api-1'
ORDER BY e.time;
