-- Pods that talked to a pod that no longer exists: after a compromised pod is
-- deleted, who did it reach (or who reached it)? The peer is resolved to the pod
-- that owned the peer address at the time of the connection.
SELECT DISTINCT c.pod_namespace, c.pod_name, c.event,
       gone.pod_namespace AS deleted_peer_namespace, gone.pod_name AS deleted_peer, gone.valid_to AS deleted_at
FROM net_conn c
JOIN ip_owners gone
  ON gone.ip = c.dst_ip AND gone.valid_from <= c.time AND c.time < gone.valid_to
WHERE c.event IN ('connect', 'accept')
  AND c.pod_uid IS NOT NULL
  AND gone.valid_to IS NOT NULL
  AND gone.pod_uid <> c.pod_uid
ORDER BY c.pod_namespace, c.pod_name;
