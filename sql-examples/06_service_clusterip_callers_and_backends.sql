-- Who connected to a Service ClusterIP, and which backend pod they really reached.
-- orig_dst_* is what the process asked for (before DNAT), nat_dst_* where kube-proxy
-- sent it; the backend pod is whoever owned that address at that moment.
SELECT c.time, c.pod_namespace, c.pod_name, c.comm,
       c.orig_dst_ip, c.orig_dst_port, c.nat_dst_ip, c.nat_dst_port,
       o.pod_namespace AS backend_namespace, o.pod_name AS backend_pod
FROM net_conn c
LEFT JOIN ip_owners o
  ON o.ip = c.nat_dst_ip AND o.valid_from <= c.time AND (o.valid_to IS NULL OR c.time < o.valid_to)
WHERE c.event = 'connect' AND c.orig_dst_ip = '10.96.0.20'
ORDER BY c.time;
