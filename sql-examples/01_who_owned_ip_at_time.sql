-- Who owned an IP address at a given time?
-- The firewall logged 10.244.1.7 at 14:10 UTC; pod IPs are reused within minutes,
-- so ask the ownership history, not today's cluster. The time may be any time
-- expression podtrail accepts ('2026-11-17 14:10', '-2h', 'last tuesday 14:10').
-- Same as: podtrail who-owned 10.244.1.7 --at '2026-11-17 14:10'
SELECT pod_namespace, pod_name, pod_uid, node, valid_from, valid_to, source
FROM who_owned('10.244.1.7', '2026-11-17 14:10')
ORDER BY valid_from;
