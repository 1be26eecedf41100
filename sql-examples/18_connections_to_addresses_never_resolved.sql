-- Connections from pods to an address the pod had not resolved (no `dst_name`):
-- direct-to-IP traffic, typical of implants with a hard-coded server and of
-- lateral movement by scanning. Services reached by their DNS name carry the
-- name; add `AND c.dst_ip NOT LIKE '10.%'` to keep only traffic leaving the
-- cluster's address space.
SELECT c.time, c.pod_namespace, c.pod_name, c.dst_ip, c.dst_port, c.pid, e.binary
FROM net_conn c
LEFT JOIN process_exec e ON e.exec_id = c.exec_id
WHERE c.event = 'connect' AND c.pod_uid IS NOT NULL AND c.dst_name IS NULL
ORDER BY c.time;
