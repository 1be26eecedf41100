-- The dropper: programs that ran from a file a process of the node wrote, with
-- the writer, when it wrote, and the connections the writer made (where it
-- downloaded from). The exec and the write join on the file's device and
-- inode; sha256 is the program's as it ran.
WITH writes AS (
    SELECT device, inode, time, comm, exec_id, path
    FROM file
    WHERE op = 'open' AND (created OR open_flags LIKE '%O\_TRUNC%' ESCAPE '\')
),
downloads AS (
    SELECT exec_id, count(*) AS connections, min(concat(dst_ip, ':', CAST(dst_port AS VARCHAR))) AS first_peer
    FROM net_conn
    WHERE event = 'connect'
    GROUP BY exec_id
)
SELECT e.time AS executed_at, e.pod_namespace, e.pod_name, e.binary, e.sha256,
       w.comm AS writer, w.time AS written_at,
       coalesce(d.connections, 0) AS writer_connections, d.first_peer AS writer_peer
FROM process_exec e
JOIN writes w ON e.device = w.device AND e.inode = w.inode AND w.time <= e.time
LEFT JOIN downloads d ON d.exec_id = w.exec_id
ORDER BY e.time;
