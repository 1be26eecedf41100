-- Containers that entered or created namespaces or mounted filesystems: what
-- runc does while starting a container is done from the host (no pod), so
-- anything here came from inside the container.
SELECT pod_namespace, pod_name, container_id, kind,
       coalesce(namespaces, fstype, '') AS what, target,
       count(*) AS calls, sum(CASE WHEN result >= 0 THEN 1 ELSE 0 END) AS succeeded,
       min(time) AS first_seen
FROM privilege
WHERE kind IN ('setns', 'unshare', 'mount', 'umount') AND container_id IS NOT NULL
GROUP BY pod_namespace, pod_name, container_id, kind, coalesce(namespaces, fstype, ''), target
ORDER BY first_seen;
