-- Changes where attackers persist or cover their tracks, with who made them
-- and in which pod: cron entries, systemd units, shell start-up files,
-- authorized_keys, the loader's preload list; and history or log files
-- emptied, truncated, renamed or removed. Refused attempts are listed too
-- (result < 0).
SELECT time, pod_namespace, pod_name, comm, op, path, new_path, open_flags, result
FROM file
WHERE op <> 'read' AND (
       path LIKE '/etc/cron%' OR path LIKE '/var/spool/cron/%'
    OR path LIKE '%/systemd/system/%'
    OR path LIKE '%/.bashrc' OR path LIKE '%/.bash_profile' OR path LIKE '%/.profile' OR path LIKE '/etc/profile%'
    OR path LIKE '%/authorized_keys%' OR path = '/etc/ld.so.preload'
    OR ((path LIKE '%\_history' ESCAPE '\' OR path LIKE '/var/log/%')
        AND (op IN ('unlink', 'truncate', 'rename') OR open_flags LIKE '%O\_TRUNC%' ESCAPE '\')))
ORDER BY time;
