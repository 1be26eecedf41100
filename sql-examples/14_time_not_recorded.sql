-- When was nothing recorded? Each recorder run is a row of podtrail_runs; the time
-- between one run's end (for a run killed or crashed: its last durable flush) and
-- the next run's start is a window no event was recorded in. `podtrail status`
-- lists the same windows. A run that ended uncleanly also has a `crash` loss row
-- (count unknown) for that window.
SELECT prev_run AS run_before, run_id AS run_after,
       prev_end AS not_recorded_from, started_at AS not_recorded_until,
       (CAST(started_at AS BIGINT) - CAST(prev_end AS BIGINT)) / 1e9 AS seconds,
       prev_state AS how_the_run_before_ended
FROM (
  SELECT run_id, started_at,
         lag(run_id) OVER (ORDER BY run_id) AS prev_run,
         lag(coalesce(ended_at, last_flush, started_at)) OVER (ORDER BY run_id) AS prev_end,
         lag(end_state) OVER (ORDER BY run_id) AS prev_state
  FROM podtrail_runs
) r
WHERE prev_end IS NOT NULL AND started_at > prev_end
ORDER BY not_recorded_from;
