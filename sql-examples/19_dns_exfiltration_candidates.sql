-- DNS exfiltration and tunnelling: data smuggled in query names gives long
-- labels and many distinct names under one parent domain. Grouped by the
-- parent (last two labels), per pod; thresholds to tune: a first label of 25
-- characters or more, or names of 60 or more.
SELECT pod_namespace, pod_name,
       split_part(query_name, '.', -2) || '.' || split_part(query_name, '.', -1) AS parent_domain,
       count(DISTINCT query_name) AS distinct_names,
       max(length(query_name)) AS longest_name,
       sum(length(query_name)) AS bytes_in_names,
       min(time) AS first_seen,
       max(time) AS last_seen
FROM dns
WHERE length(split_part(query_name, '.', 1)) >= 25 OR length(query_name) >= 60
GROUP BY pod_namespace, pod_name, parent_domain
ORDER BY bytes_in_names DESC;
