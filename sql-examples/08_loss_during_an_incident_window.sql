-- Was anything lost during the incident window? Loss is data: kernel ring-buffer
-- drops, undecodable records, crash tails and unresolved identities are counted
-- with their time window. Zero rows means nothing was lost in that window.
SELECT source, table_name, sum(count) AS events_lost,
       min(time_from) AS first_gap, max(time_to) AS last_gap
FROM podtrail_loss
WHERE time_to >= TIMESTAMP '2026-11-17T14:30:00Z'
  AND time_from <= TIMESTAMP '2026-11-17T15:00:00Z'
GROUP BY source, table_name
ORDER BY source;
