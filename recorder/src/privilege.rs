//! Privilege events: what a privilege record's arguments mean, and the
//! capability counters.
//!
//! In: decoded privilege records and snapshots of the kernel's `cap_usage` map
//! (cumulative counts per cgroup and capability). Out: the `privilege` columns
//! that need interpreting (ids asked for, namespaces, requests, errno names; the
//! names themselves are in [`crate::names`]) and `cap_usage` rows holding what
//! changed since the previous snapshot. Pure.

use std::collections::HashMap;

use podtrail_ebpf::{CapKey, CapVal};

use crate::decode::PrivRaw;
use crate::names::{bpf_command, cap_name, errno_name, namespaces, prog_type_name, ptrace_request};

/// A uid/gid argument; -1 (as the kernel's 32-bit id) means "leave unchanged".
fn id_arg(a: u64) -> Option<u32> {
    let v = a as u32;
    (v != u32::MAX).then_some(v)
}

/// The interpreted columns of one `privilege` row.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PrivDetail {
    pub error: Option<String>,
    pub new_uid: Option<u32>,
    pub new_euid: Option<u32>,
    pub new_suid: Option<u32>,
    pub new_gid: Option<u32>,
    pub new_egid: Option<u32>,
    pub new_sgid: Option<u32>,
    pub new_caps: Option<(u64, u64, u64)>,
    pub namespaces: Option<String>,
    pub flags: Option<u64>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub fstype: Option<String>,
    pub operation: Option<String>,
    pub target_pid: Option<u32>,
    pub bpf_type: Option<String>,
    pub file: Option<String>,
}

pub fn detail(p: &PrivRaw) -> PrivDetail {
    let a = &p.args;
    let mut d = PrivDetail { error: (p.result < 0).then(|| errno_name(p.result.unsigned_abs() as u32)), ..Default::default() };
    match p.kind {
        "setuid" => d.new_uid = Some(a[0] as u32),
        "setgid" => d.new_gid = Some(a[0] as u32),
        "setreuid" => (d.new_uid, d.new_euid) = (id_arg(a[0]), id_arg(a[1])),
        "setregid" => (d.new_gid, d.new_egid) = (id_arg(a[0]), id_arg(a[1])),
        "setresuid" => (d.new_uid, d.new_euid, d.new_suid) = (id_arg(a[0]), id_arg(a[1]), id_arg(a[2])),
        "setresgid" => (d.new_gid, d.new_egid, d.new_sgid) = (id_arg(a[0]), id_arg(a[1]), id_arg(a[2])),
        "capset" => d.new_caps = (a[1] != 0).then_some((p.extra[0], p.extra[1], p.extra[2])),
        "setns" => {
            d.namespaces = namespaces(a[1], true);
            d.flags = Some(a[1]);
        }
        "unshare" => {
            d.namespaces = namespaces(a[0], false);
            d.flags = Some(a[0]);
        }
        "mount" => {
            [d.source, d.target, d.fstype] = p.strs.clone();
            d.flags = Some(a[3]);
        }
        "umount" => {
            d.target = p.strs[1].clone();
            d.flags = Some(a[1]);
        }
        "ptrace" => {
            d.operation = Some(ptrace_request(a[0]));
            d.target_pid = Some(a[1] as u32);
        }
        "bpf" => {
            d.operation = Some(bpf_command(a[0]));
            d.bpf_type = match a[0] {
                5 => Some(prog_type_name(p.extra[0])),
                8 | 28 => Some(format!("attach type {}", p.extra[0])),
                _ => None,
            };
        }
        "init_module" => d.file = p.strs[0].clone(),
        "finit_module" => {
            d.file = p.strs[0].clone();
            d.flags = Some(a[2]);
        }
        "memfd_create" => {
            d.file = p.strs[0].as_ref().map(|n| format!("memfd:{n}"));
            d.flags = Some(a[1]);
        }
        "socket" => {
            d.operation = Some(socket_kind(a[0], a[1], a[2]));
            d.flags = Some(a[1]);
        }
        "capability" => d.operation = Some(cap_name(a[0] as u32)),
        _ => {}
    }
    d
}

/// A raw socket(2) call as an investigator reads it: `AF_PACKET SOCK_RAW
/// protocol 0x0300` (the protocol argument as the caller passed it: for
/// AF_PACKET in network order, so `htons(ETH_P_ALL)` reads 0x0300 on x86).
/// Type flags (SOCK_CLOEXEC, SOCK_NONBLOCK) are left out here; `flags` keeps them.
fn socket_kind(family: u64, type_flags: u64, protocol: u64) -> String {
    let family = match family {
        2 => "AF_INET".to_string(),
        10 => "AF_INET6".to_string(),
        17 => "AF_PACKET".to_string(),
        f => format!("family {f}"),
    };
    let kind = match type_flags & 0xf {
        1 => "SOCK_STREAM".to_string(),
        2 => "SOCK_DGRAM".to_string(),
        3 => "SOCK_RAW".to_string(),
        10 => "SOCK_PACKET".to_string(),
        t => format!("type {t}"),
    };
    format!("{family} {kind} protocol {protocol:#06x}")
}

/// One `cap_usage` row: what one cgroup's checks of one capability did since
/// the previous snapshot. Times are kernel CLOCK_BOOTTIME ns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapDelta {
    pub cgroup_id: u64,
    pub cap: u32,
    pub granted: u64,
    pub denied: u64,
    pub denied_unrecorded: u64,
    pub first_boot_ns: u64,
    pub last_boot_ns: u64,
}

/// The last snapshot of the kernel's cumulative counters.
#[derive(Default)]
pub struct CapCounters {
    last: HashMap<CapKey, CapVal>,
}

impl CapCounters {
    /// The changes in `snapshot` since the previous call, oldest last check first.
    pub fn diff(&mut self, snapshot: impl IntoIterator<Item = (CapKey, CapVal)>) -> Vec<CapDelta> {
        let mut out = Vec::new();
        for (k, v) in snapshot {
            let prev = self.last.get(&k).copied().unwrap_or_default();
            let (g, d, u) = (v.granted.saturating_sub(prev.granted), v.denied.saturating_sub(prev.denied), v.denied_unlogged.saturating_sub(prev.denied_unlogged));
            if g > 0 || d > 0 || u > 0 {
                out.push(CapDelta { cgroup_id: k.cgroup_id, cap: k.cap, granted: g, denied: d, denied_unrecorded: u, first_boot_ns: v.first_ns, last_boot_ns: v.last_ns });
            }
            self.last.insert(k, v);
        }
        out.sort_by_key(|c| (c.last_boot_ns, c.cgroup_id, c.cap));
        out
    }

    /// Forget a key the kernel map no longer holds.
    pub fn forget(&mut self, key: &CapKey) {
        self.last.remove(key);
    }

    /// Pairs whose latest check is older than `before_boot_ns`.
    pub fn stale(&self, before_boot_ns: u64) -> Vec<CapKey> {
        self.last.iter().filter(|(_, v)| v.last_ns < before_boot_ns).map(|(k, _)| *k).collect()
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: &'static str, args: [u64; 6], result: i64) -> PrivRaw {
        PrivRaw {
            kind,
            pid: 1,
            tid: 1,
            uid: 1000,
            euid: 1000,
            gid: 1000,
            egid: 1000,
            cap_effective: 0,
            result,
            time_boot_ns: 5,
            cgroup_id: 9,
            comm: "x".into(),
            args,
            extra: [0; 3],
            strs: [None, None, None],
        }
    }

    #[test]
    fn a_socket_call_reads_as_family_type_and_protocol() {
        assert_eq!(socket_kind(17, 3 | 0x80000, 0x0300), "AF_PACKET SOCK_RAW protocol 0x0300", "SOCK_CLOEXEC is not part of the type");
        assert_eq!(socket_kind(10, 3, 58), "AF_INET6 SOCK_RAW protocol 0x003a");
        assert_eq!(socket_kind(99, 12, 1), "family 99 type 12 protocol 0x0001");
    }

    #[test]
    fn ids_unchanged_minus_one_is_null_and_errors_are_named() {
        let d = detail(&raw("setresuid", [0, u64::from(u32::MAX), 5, 0, 0, 0], -1));
        assert_eq!((d.new_uid, d.new_euid, d.new_suid), (Some(0), None, Some(5)));
        assert_eq!(d.error.as_deref(), Some("EPERM"));
        let d = detail(&raw("setuid", [0; 6], 0));
        assert_eq!((d.new_uid, d.error), (Some(0), None));
    }

    #[test]
    fn namespaces_ptrace_bpf_and_capabilities_by_name() {
        assert_eq!(detail(&raw("unshare", [0x4000_0000 | 0x0002_0000, 0, 0, 0, 0, 0], 0)).namespaces.as_deref(), Some("mnt,net"));
        assert_eq!(detail(&raw("setns", [3, 0, 0, 0, 0, 0], 0)).namespaces.as_deref(), Some("any"));
        let d = detail(&raw("ptrace", [16, 4242, 0, 0, 0, 0], 0));
        assert_eq!((d.operation.as_deref(), d.target_pid), (Some("PTRACE_ATTACH"), Some(4242)));
        let mut b = raw("bpf", [5, 0x1000, 0, 0, 0, 0], 3);
        b.extra[0] = 2;
        let d = detail(&b);
        assert_eq!((d.operation.as_deref(), d.bpf_type.as_deref()), (Some("BPF_PROG_LOAD"), Some("kprobe")));
        assert_eq!(detail(&raw("capability", [10, 0, 0, 0, 0, 0], -1)).operation.as_deref(), Some("CAP_NET_BIND_SERVICE"));
    }

    #[test]
    fn counters_report_only_what_changed() {
        let k = CapKey { cgroup_id: 7, cap: 0, pad: 0 };
        let v = |g, d| CapVal { granted: g, denied: d, first_ns: 1, last_ns: 2 + g, ..Default::default() };
        let mut c = CapCounters::default();
        assert_eq!(c.diff([(k, v(2, 1))]), vec![CapDelta { cgroup_id: 7, cap: 0, granted: 2, denied: 1, denied_unrecorded: 0, first_boot_ns: 1, last_boot_ns: 4 }]);
        assert!(c.diff([(k, v(2, 1))]).is_empty(), "no change, no row");
        let d = c.diff([(k, v(5, 1))]);
        assert_eq!((d[0].granted, d[0].denied), (3, 0));
    }
}
