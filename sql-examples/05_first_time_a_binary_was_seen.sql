-- The first time each binary was executed on this node, newest first: a binary
-- first seen during an incident window (a dropped miner, a downloaded tool)
-- stands out. The window start is the incident's; drop the HAVING for all binaries.
SELECT binary, min(time) AS first_seen, count(*) AS executions,
       count(DISTINCT pod_uid) AS pods
FROM process_exec
GROUP BY binary
HAVING min(time) >= TIMESTAMP '2026-11-17T14:30:00Z'
ORDER BY first_seen DESC;
