-- Raw and packet sockets opened (or attempted) in pods: sniffing traffic
-- (AF_PACKET, what tcpdump opens) or crafting packets (SOCK_RAW: scanners,
-- spoofed ICMP). Refused attempts are rows too (`error`, e.g. EPERM without
-- CAP_NET_RAW).
SELECT p.time, p.pod_namespace, p.pod_name, p.pid, e.binary, p.uid,
       p.operation AS socket, p.result, p.error
FROM privilege p
LEFT JOIN process_exec e ON e.exec_id = p.exec_id
WHERE p.kind = 'socket' AND p.pod_uid IS NOT NULL
ORDER BY p.time;
