-- A pod's (or every pod's) outbound connections to addresses outside the cluster.
-- Adjust the cluster ranges: here pods are 10.244.0.0/16 and Services 10.96.0.0/12
-- (IPs are stored as text, so prefix matches work for /8 and /16 ranges).
SELECT time, pod_namespace, pod_name, comm, pid, src_ip, dst_ip, dst_port
FROM net_conn
WHERE event = 'connect'
  AND pod_uid IS NOT NULL
  AND NOT (dst_ip LIKE '10.%' OR dst_ip LIKE '127.%')
ORDER BY time;
