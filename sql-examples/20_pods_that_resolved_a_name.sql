-- Which pods resolved a name (here every name under a suspicious domain), when,
-- and whether it was answered: scoping an indicator of compromise across the
-- node's history, deleted pods included.
SELECT pod_namespace, pod_name, pod_uid, query_name, status, rcode,
       count(*) AS queries, min(time) AS first_asked, max(time) AS last_asked
FROM dns
WHERE query_name LIKE '%.minexmr.example' OR query_name = 'minexmr.example'
GROUP BY pod_namespace, pod_name, pod_uid, query_name, status, rcode
ORDER BY first_asked;
