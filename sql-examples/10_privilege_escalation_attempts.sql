-- Privilege escalation attempts in a window: a process that was not root asking
-- for uid or gid 0 (set*id), or for new capabilities (capset), granted or
-- refused. A refused attempt is evidence too: `error` says why it failed.
-- Change the window to the incident's.
SELECT time, pod_namespace, pod_name, comm, pid, kind, uid, euid,
       new_uid, new_euid, new_gid, result, error
FROM privilege
WHERE kind IN ('setuid', 'setreuid', 'setresuid', 'setgid', 'setregid', 'setresgid', 'capset')
  AND euid <> 0
  AND (kind = 'capset' OR new_uid = 0 OR new_euid = 0 OR new_suid = 0
       OR new_gid = 0 OR new_egid = 0 OR new_sgid = 0)
  AND time BETWEEN TIMESTAMP '2026-11-17T13:00:00Z' AND TIMESTAMP '2026-11-17T15:00:00Z'
ORDER BY time;
