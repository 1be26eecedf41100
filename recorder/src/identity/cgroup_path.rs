//! Pod and container identity from a cgroup v2 path, the way kubelet and the
//! container runtimes name cgroups.
//!
//! In: a path relative to the cgroup v2 mount. Out: pod UID, QoS class, container
//! id and runtime, when the path follows a known layout; `None` fields otherwise
//! (the path itself is still kept by the caller).
//!
//! Layouts understood (anywhere in the path, so nested setups such as kind's
//! `kubelet.slice/kubelet-kubepods.slice/...` work too):
//! - systemd driver: `kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_with_underscores>.slice/<runtime>-<id>.scope`
//!   (`<qos>` absent for guaranteed pods), runtimes `cri-containerd-`, `crio-`, `docker-`;
//!   `crio-conmon-<id>.scope` is CRI-O's monitor, not a container.
//! - cgroupfs driver: `/kubepods/<qos>/pod<uid>/<id>` and `/kubepods/pod<uid>/<id>`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "guaranteed",
            Qos::Burstable => "burstable",
            Qos::BestEffort => "besteffort",
        }
    }
    fn parse(s: &str) -> Option<Qos> {
        match s {
            "burstable" => Some(Qos::Burstable),
            "besteffort" => Some(Qos::BestEffort),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupIdentity {
    /// Pod UID with dashes (`0d2f...-...`), as the API server shows it.
    pub pod_uid: Option<String>,
    pub qos: Option<Qos>,
    pub container_id: Option<String>,
    /// `containerd`, `cri-o` or `docker` when the scope name says; null with the
    /// cgroupfs driver, whose names do not.
    pub runtime: Option<&'static str>,
    /// Path of the pod's own cgroup (relative to the cgroup v2 mount): it lives as
    /// long as the pod, so its disappearance is the pod's end.
    pub pod_cgroup: Option<String>,
}

/// Parse a cgroup path (relative to the v2 mount; a leading `/` is fine).
pub fn parse(path: &str) -> CgroupIdentity {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let pod = systemd_pod(part).or_else(|| cgroupfs_pod(&parts, i));
        let Some((uid, qos)) = pod else { continue };
        let mut id = CgroupIdentity { pod_uid: Some(uid), qos: Some(qos), pod_cgroup: Some(parts[..=i].join("/")), ..Default::default() };
        if let Some(next) = parts.get(i + 1)
            && let Some((cid, runtime)) = container_scope(next)
        {
            id.container_id = Some(cid);
            id.runtime = runtime;
        }
        return id;
    }
    CgroupIdentity::default()
}

/// `kubepods-burstable-pod<uid>.slice`, `kubepods-pod<uid>.slice` (guaranteed),
/// with any prefix ending in `kubepods-` (kind: `kubelet-kubepods-...`).
fn systemd_pod(part: &str) -> Option<(String, Qos)> {
    let stem = part.strip_suffix(".slice")?;
    let at = stem.find("kubepods-")?;
    let rest = &stem[at + "kubepods-".len()..];
    let (qos, pod) = match rest.split_once('-') {
        Some((q, p)) if p.starts_with("pod") => (Qos::parse(q)?, p),
        _ => (Qos::Guaranteed, rest),
    };
    let uid = uid(pod.strip_prefix("pod")?, '_')?;
    Some((uid, qos))
}

/// `.../kubepods/<qos>/pod<uid>` or `.../kubepods/pod<uid>` (component `i` is the pod).
fn cgroupfs_pod(parts: &[&str], i: usize) -> Option<(String, Qos)> {
    let uid = uid(parts[i].strip_prefix("pod")?, '-')?;
    let parent = parts.get(i.checked_sub(1)?)?;
    if *parent == "kubepods" {
        return Some((uid, Qos::Guaranteed));
    }
    let qos = Qos::parse(parent)?;
    (*parts.get(i.checked_sub(2)?)? == "kubepods").then_some((uid, qos))
}

/// A pod UID: an RFC 4122 UUID (API pods; separators `sep`) or 32 hex digits
/// (static pods, whose UID is a hash of their manifest). Returned with dashes.
fn uid(s: &str, sep: char) -> Option<String> {
    let ok = match s.len() {
        36 => s.char_indices().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == sep } else { c.is_ascii_hexdigit() }),
        32 => s.chars().all(|c| c.is_ascii_hexdigit()),
        _ => false,
    };
    ok.then(|| s.replace(sep, "-").to_ascii_lowercase())
}

fn container_scope(part: &str) -> Option<(String, Option<&'static str>)> {
    let hex64 = |s: &str| (s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase());
    if let Some(stem) = part.strip_suffix(".scope") {
        if stem.starts_with("crio-conmon-") {
            return None;
        }
        for (prefix, runtime) in [("cri-containerd-", "containerd"), ("crio-", "cri-o"), ("docker-", "docker")] {
            if let Some(id) = stem.strip_prefix(prefix).and_then(hex64) {
                return Some((id, Some(runtime)));
            }
        }
        return None;
    }
    hex64(part).map(|id| (id, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0d2f6c1e-8b1a-4c2e-9f3d-5a6b7c8d9e0f";
    const CID: &str = "4f9c0b6d2e1a3c5b7d9e8f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c";

    fn underscored() -> String {
        UID.replace('-', "_")
    }

    #[test]
    fn systemd_driver_containerd_crio_docker() {
        for (prefix, runtime) in [("cri-containerd-", "containerd"), ("crio-", "cri-o"), ("docker-", "docker")] {
            let p = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/{prefix}{CID}.scope", underscored());
            let id = parse(&p);
            assert_eq!(id.pod_uid.as_deref(), Some(UID), "{p}");
            assert_eq!(id.qos, Some(Qos::Burstable));
            assert_eq!(id.container_id.as_deref(), Some(CID));
            assert_eq!(id.runtime, Some(runtime));
            assert_eq!(id.pod_cgroup.as_deref(), Some(format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice", underscored()).as_str()));
        }
    }

    #[test]
    fn systemd_guaranteed_besteffort_and_pod_level() {
        let g = parse(&format!("/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{CID}.scope", underscored()));
        assert_eq!((g.pod_uid.as_deref(), g.qos), (Some(UID), Some(Qos::Guaranteed)));
        let b = parse(&format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice", underscored()));
        assert_eq!((b.pod_uid.as_deref(), b.qos, b.container_id), (Some(UID), Some(Qos::BestEffort), None));
        // CRI-O's conmon runs in the pod but is not a container.
        let c = parse(&format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/crio-conmon-{CID}.scope", underscored()));
        assert_eq!((c.pod_uid.as_deref(), c.container_id), (Some(UID), None));
    }

    #[test]
    fn cgroupfs_driver_with_and_without_qos() {
        let b = parse(&format!("/kubepods/besteffort/pod{UID}/{CID}"));
        assert_eq!((b.pod_uid.as_deref(), b.qos, b.container_id.as_deref(), b.runtime), (Some(UID), Some(Qos::BestEffort), Some(CID), None));
        assert_eq!(b.pod_cgroup.as_deref(), Some(format!("kubepods/besteffort/pod{UID}").as_str()));
        let g = parse(&format!("/kubepods/pod{UID}/{CID}"));
        assert_eq!((g.pod_uid.as_deref(), g.qos, g.container_id.as_deref()), (Some(UID), Some(Qos::Guaranteed), Some(CID)));
        // A process nested below the container cgroup still belongs to it.
        let n = parse(&format!("/kubepods/burstable/pod{UID}/{CID}/init.scope"));
        assert_eq!((n.qos, n.container_id.as_deref()), (Some(Qos::Burstable), Some(CID)));
    }

    #[test]
    fn nested_layouts_and_static_pod_uids() {
        let kind = parse(&format!("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{}.slice/cri-containerd-{CID}.scope", underscored()));
        assert_eq!((kind.pod_uid.as_deref(), kind.container_id.as_deref()), (Some(UID), Some(CID)));
        let static_uid = "6a9bd3e1e1e54d8e1c1bd0a6b4b1c5a4";
        let s = parse(&format!("/kubepods/burstable/pod{static_uid}/{CID}"));
        assert_eq!(s.pod_uid.as_deref(), Some(static_uid));
    }

    #[test]
    fn unknown_layouts_leave_pod_fields_empty() {
        for p in [
            "/",
            "/system.slice/containerd.service",
            "/user.slice/user-0.slice/session-3.scope",
            "/kubepods.slice/kubepods-burstable.slice",
            "/kubepods/burstable",
            "/kubepods/burstable/podnot-a-uid/abc",
            "/system.slice/docker-0123.scope",
            &format!("/other/burstable/pod{UID}/{CID}"),
        ] {
            assert_eq!(parse(p), CgroupIdentity::default(), "{p}");
        }
    }
}
