-- Listeners opened inside pods: every TCP listen() and UDP bind() a process in
-- a pod made, with the program that made it, when the socket closed (null:
-- still open when the history ends) and how many connections it accepted.
-- A bind shell (`nc -lp 4444`) or a stray debug server shows up here; to see
-- only the unexpected ones, add e.g. `AND l.port NOT IN (8080, 9090)`.
SELECT l.time, l.pod_namespace, l.pod_name, l.protocol, l.ip, l.port, l.pid,
       e.binary,
       min(u.time) AS closed,
       count(DISTINCT a.socket_cookie) AS accepted
FROM net_listen l
LEFT JOIN process_exec e ON e.exec_id = l.exec_id
LEFT JOIN net_listen u
  ON u.event IN ('unlisten', 'unbind') AND u.pod_uid = l.pod_uid
 AND u.protocol = l.protocol AND u.port = l.port AND u.time >= l.time
LEFT JOIN net_conn a
  ON a.event = 'accept' AND a.pod_uid = l.pod_uid AND a.src_port = l.port
 AND a.time >= l.time
WHERE l.event IN ('listen', 'bind') AND l.pod_uid IS NOT NULL
GROUP BY l.time, l.pod_namespace, l.pod_name, l.protocol, l.ip, l.port, l.pid, e.binary
ORDER BY l.time;
