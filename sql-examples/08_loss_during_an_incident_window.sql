-- Was anything lost during the incident window? Loss is data: kernel ring-buffer
-- drops, a full disk, undecodable records, crashes, damaged files and unresolved
-- identities are counted with their time window, and with the pod whose rows were
-- lost when that is known. A loss whose size cannot be known (e.g. what a crashed
-- recorder had not flushed) has a null count: it is counted apart, never as zero.
-- Zero rows means nothing was lost in that window.
SELECT l.source, l.table_name, p.pod_name,
       CAST(coalesce(sum(l.count), 0) AS BIGINT) AS events_lost,
       count(*) - count(l.count) AS losses_of_unknown_size,
       min(l.time_from) AS first_gap, max(l.time_to) AS last_gap
FROM podtrail_loss l
LEFT JOIN (SELECT DISTINCT pod_uid, pod_name FROM pods) p ON p.pod_uid = l.pod_uid
WHERE l.time_to >= TIMESTAMP '2026-11-17T14:30:00Z'
  AND l.time_from <= TIMESTAMP '2026-11-17T15:00:00Z'
GROUP BY l.source, l.table_name, p.pod_name
ORDER BY l.source;
