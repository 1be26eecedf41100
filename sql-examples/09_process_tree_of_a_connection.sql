-- Which process opened a connection, and the chain of processes that started it:
-- from the connection to its process image, then two parents up.
SELECT c.time, c.pod_name, c.dst_ip, c.dst_port,
       p.binary AS process, pp.binary AS parent, ppp.binary AS grandparent
FROM net_conn c
JOIN process_exec p ON p.exec_id = c.exec_id
LEFT JOIN process_exec pp ON pp.exec_id = p.parent_exec_id
LEFT JOIN process_exec ppp ON ppp.exec_id = pp.parent_exec_id
WHERE c.event = 'connect' AND c.dst_ip = '10.96.0.20'
ORDER BY c.time;
