-- Every name a pod resolved, with how often, the answers it got and which
-- process asked: the first thing to read about a pod's network behaviour.
-- Change the pod name; add `AND time BETWEEN ...` for an incident window.
SELECT d.query_name, d.query_type, d.rcode,
       count(*) AS queries,
       min(d.time) AS first_asked,
       max(d.time) AS last_asked,
       max(d.answers) AS answers,
       string_agg(DISTINCT e.binary, ', ') AS asked_by
FROM dns d
LEFT JOIN process_exec e ON e.exec_id = d.exec_id
WHERE d.pod_name = 'payments-api-1'
GROUP BY d.query_name, d.query_type, d.rcode
ORDER BY first_asked;
