-- Processes that loaded (or tried to load) kernel modules or BPF programs, with
-- the image that did it. From inside a container this is almost always an
-- escape or a rootkit. podtraild's own attach shows as comm 'podtraild' on the
-- host (pod_uid null): add `AND comm <> 'podtraild'` to hide it.
SELECT p.time, p.pod_namespace, p.pod_name, e.binary, p.pid, p.kind,
       p.operation, p.bpf_type, p.file, p.result, p.error
FROM privilege p
LEFT JOIN process_exec e ON e.exec_id = p.exec_id
WHERE p.kind IN ('init_module', 'finit_module', 'bpf')
ORDER BY p.time;
