-- Fileless executions: programs run from memory (a memfd) or from a file
-- deleted before it ran, with the memfd_create call that made the memory file
-- and the parent that ran it.
SELECT e.time, e.pod_namespace, e.pod_name, e.binary, e.args, e.pid,
       parent.binary AS parent_binary, m.time AS memfd_created
FROM process_exec e
LEFT JOIN process_exec parent ON parent.exec_id = e.parent_exec_id
LEFT JOIN privilege m
  ON m.kind = 'memfd_create' AND m.file = e.binary AND m.pod_uid = e.pod_uid AND m.time <= e.time
WHERE e.fileless
ORDER BY e.time;
