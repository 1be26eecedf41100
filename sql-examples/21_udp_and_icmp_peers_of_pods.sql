-- UDP and ICMP traffic each pod started, by protocol: a ping sweep shows as
-- many ICMP peers with few answers, a beacon or tunnel as a UDP peer outside
-- the cluster with steady traffic. Flows a pod only answered (a server's
-- side) are left out: initiated = 'remote'.
SELECT pod_namespace, pod_name, protocol,
       count(DISTINCT dst_ip) AS peers,
       CAST(sum(packets_out) AS BIGINT) AS packets_out,
       CAST(sum(bytes_out) AS BIGINT) AS bytes_out,
       CAST(sum(packets_in) AS BIGINT) AS packets_in,
       count(DISTINCT CASE WHEN packets_in > 0 THEN dst_ip END) AS peers_that_answered,
       min(first_seen) AS first_seen,
       max(time) AS last_seen
FROM net_flow
WHERE pod_uid IS NOT NULL AND initiated = 'local'
GROUP BY pod_namespace, pod_name, protocol
ORDER BY peers DESC, packets_out DESC;
