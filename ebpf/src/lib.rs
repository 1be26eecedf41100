//! podtrail-ebpf: the compiled kernel programs, embedded, and `#[repr(C)]` mirrors
//! of the event structs in `ebpf/include/events.h`.
//!
//! Invariant: every mirror has the size and field offsets of its C struct in the
//! compiled object's BTF (checked by `mirrors_match_btf`), so a drift fails a test
//! instead of silently corrupting history.

/// An object file with the alignment ELF parsing wants.
#[repr(C, align(8))]
pub struct Aligned<B: ?Sized>(pub B);

static PROCESS_OBJ: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/process.bpf.o")));

static NET_OBJ: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/net.bpf.o")));

static FILE_OBJ: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/file.bpf.o")));

static PRIVILEGE_OBJ: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/privilege.bpf.o")));

/// `privilege.bpf.o`: `enter_<syscall>` / `exit_<syscall>`
/// (tracepoint/syscalls/sys_enter_|sys_exit_<syscall>) for every syscall in
/// [`PRIV_SYSCALLS`], `cap_check` (tp_btf/cap_capable), ring buffer `events`,
/// hash `cap_usage` ([`CapKey`] -> [`CapVal`]), global `noaudit_sites`,
/// per-CPU counters `drops` and per-cgroup `drops_by_cgroup` (common.h).
pub fn privilege_object() -> &'static [u8] {
    &PRIVILEGE_OBJ.0
}

/// `file.bpf.o`: `file_enter_<syscall>` / `file_exit_<syscall>`
/// (tracepoint/syscalls/sys_enter_|sys_exit_<syscall>) for every syscall in
/// [`FILE_SYSCALLS`], longest-prefix tries `write_watch` and `read_watch`
/// ([`FileMatchKey`] -> index), hash `name_watch` (NUL-padded file name of
/// [`FILE_BASENAME_MAX`] bytes -> index), ring buffer `events`, per-CPU
/// counters `drops` and per-cgroup `drops_by_cgroup`.
pub fn file_object() -> &'static [u8] {
    &FILE_OBJ.0
}

/// One file syscall `file.bpf.o` traces (a line of `PT_FILE_SYSCALLS` in
/// ebpf/include/events.h; the table is [`FILE_SYSCALLS`]). Argument positions
/// are 0..5 or one of [`FILE_ARG_CWD`], [`FILE_ARG_RAW`], [`FILE_ARG_NONE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSyscall {
    pub name: &'static str,
    /// Its `FILE_*` op, as records carry it.
    pub op: u32,
    pub nargs: u32,
    /// The directory descriptor its path is relative to (or the file's own descriptor).
    pub base: u32,
    /// The path argument.
    pub path: u32,
    /// The second file's base and path (rename/link new name; symlink target;
    /// setxattr attribute name).
    pub base2: u32,
    pub path2: u32,
}

/// One privilege syscall `privilege.bpf.o` traces (a line of `PT_PRIV_SYSCALLS`
/// in ebpf/include/events.h; the table is [`PRIV_SYSCALLS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivSyscall {
    pub name: &'static str,
    /// Its `PRIV_*` op, as records carry it.
    pub op: u32,
    /// Arguments kept.
    pub nargs: u32,
    /// Which 32-bit entries also reach it: [`IA32`], [`IA32_ID16`] or [`IA32_COMPAT`].
    pub ia32: u32,
}

/// `net.bpf.o`: `connect4`/`connect6` (cgroup/connect4|6), `nat_xmit`
/// (tp_btf/net_dev_start_xmit), `sock_state` (tp_btf/inet_sock_set_state),
/// `sock_destroy` (tp_btf/tcp_destroy_sock), `post_bind4`/`post_bind6`
/// (cgroup/post_bind4|6), `flow_sock` (cgroup/sock_create), `sock_release`
/// (cgroup/sock_release), `sendmsg4`/`sendmsg6` (cgroup/sendmsg4|6),
/// `skb_egress`/`skb_ingress` (cgroup_skb/egress|ingress), hash `listeners`
/// ([`ListenerKey`] -> [`ListenerOwner`]), hash `flows` ([`FlowKey`] ->
/// [`FlowVal`]), hash `flow_socks` (socket cookie -> [`FlowOwner`]),
/// ring buffer `events`, per-CPU counters `drops` and per-cgroup `drops_by_cgroup`.
pub fn net_object() -> &'static [u8] {
    &NET_OBJ.0
}

/// `process.bpf.o`: `handle_exec` (tp_btf/sched_process_exec) and `handle_exit`
/// (tp_btf/sched_process_exit), ring buffer `events`, per-CPU counters `drops`
/// and per-cgroup `drops_by_cgroup`.
pub fn process_object() -> &'static [u8] {
    &PROCESS_OBJ.0
}

/// What a count of one drop reason (`DROP_*`) means for `podtrail_loss` rows:
/// a line of `PT_DROP_MEANINGS` in ebpf/include/events.h (the table is
/// [`DROP_REASON_MEANINGS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropMeaning {
    /// The `DROP_*` number (its index in [`DROP_REASON_MEANINGS`]).
    pub reason: usize,
    /// `podtrail_loss.source`
    pub source: &'static str,
    /// `podtrail_loss.table_name`: the table whose rows were lost or stored
    /// incomplete (none for fork records, which are not rows).
    pub table: Option<&'static str>,
    /// `podtrail_loss.detail`
    pub detail: &'static str,
}

// The kinds, flags, limits and drop reasons of ebpf/include/events.h
// (`KIND_EXEC`, `CONN_HAS_BYTES`, `COMM_LEN`, `DROP_EXEC_RING`, ...),
// generated from the header by build.rs.
include!(concat!(env!("OUT_DIR"), "/events_consts.rs"));

/// Mirror of `struct pt_exec_event` (fixed part; `data` follows, variable length).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ExecEvent {
    pub kind: u32,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub netns: u32,
    pub filename_len: u32,
    pub args_len: u32,
    /// `EXEC_*` bits.
    pub flags: u32,
    pub time_ns: u64,
    pub cgroup_id: u64,
    pub cap_effective: u64,
    pub comm: [u8; COMM_LEN],
    /// Bytes of `cwd` used.
    pub cwd_len: u32,
    pub dev: u32,
    pub ino: u64,
    pub env_len: u32,
    pub reserved: u32,
    /// The working directory's components, leaf first, each NUL-terminated.
    pub cwd: [u8; CWD_MAX],
    /// The loader's variables (`LD_PRELOAD=...`), each NUL-terminated.
    pub env: [u8; ENV_MAX],
    pub data: [u8; FILENAME_MAX + ARGS_MAX],
}

/// Bytes before `data` in an exec record.
pub const EXEC_HEADER_LEN: usize = std::mem::offset_of!(ExecEvent, data);

/// Mirror of `struct pt_exit_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ExitEvent {
    pub kind: u32,
    pub pid: u32,
    pub tid: u32,
    pub exit_code: u32,
    pub time_ns: u64,
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// Mirror of `struct pt_fork_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ForkEvent {
    pub kind: u32,
    pub parent_pid: u32,
    pub child_pid: u32,
    pub reserved: u32,
    pub time_ns: u64,
}

/// Mirror of `struct pt_priv_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PrivEvent {
    pub kind: u32,
    pub op: u32,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
    pub ret: i64,
    pub time_ns: u64,
    pub cgroup_id: u64,
    pub cap_effective: u64,
    pub args: [u64; 6],
    pub extra: [u64; 3],
    pub str_len: [u16; 3],
    pub reserved: u16,
    pub comm: [u8; COMM_LEN],
    pub str: [[u8; PRIV_STR_MAX]; 3],
}

/// Bytes of a privilege record sent without its string slots.
pub const PRIV_SHORT_LEN: usize = std::mem::offset_of!(PrivEvent, str);

/// Mirror of `struct pt_file_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FileEvent {
    pub kind: u32,
    pub op: u32,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub euid: u32,
    pub ret: i64,
    pub time_ns: u64,
    pub cgroup_id: u64,
    pub args: [u64; 6],
    pub open_flags: u64,
    pub ino: u64,
    pub dev: u32,
    pub mnt_ns: u32,
    pub why: u32,
    pub flags: u32,
    pub watch: u16,
    pub name_watch: u16,
    pub path_len: u16,
    pub path2_len: u16,
    pub syscall: u16,
    pub reserved: u16,
    pub comm: [u8; COMM_LEN],
    pub path: [u8; FILE_PATH_MAX],
    pub path2: [u8; FILE_PATH_MAX],
}

/// Bytes of a file record sent without its second path.
pub const FILE_SHORT_LEN: usize = std::mem::offset_of!(FileEvent, path2);

/// Mirror of `struct pt_file_match_key`: a watched prefix in `write_watch` or
/// `read_watch` (`prefixlen` in bits).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FileMatchKey {
    pub prefixlen: u32,
    pub data: [u8; FILE_MATCH_MAX],
}

/// Mirror of `struct pt_cap_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CapEvent {
    pub kind: u32,
    pub cap: u32,
    pub pid: u32,
    pub tid: u32,
    pub ret: i32,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
    pub reserved: u32,
    pub time_ns: u64,
    pub cgroup_id: u64,
    pub cap_effective: u64,
    pub comm: [u8; COMM_LEN],
}

/// Mirror of `struct pt_cap_key` (key of the `cap_usage` map).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapKey {
    pub cgroup_id: u64,
    pub cap: u32,
    pub pad: u32,
}

/// Mirror of `struct pt_cap_val`: cumulative counts since the object was loaded.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapVal {
    pub granted: u64,
    pub denied: u64,
    pub denied_unlogged: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub window_ns: u64,
    pub window_rows: u64,
}

/// Mirror of `struct pt_drop_key` (ebpf/include/common.h): key of every object's
/// `drops_by_cgroup` map, whose value is the `u64` count since load.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropKey {
    pub cgroup_id: u64,
    /// A `DROP_*` reason.
    pub reason: u32,
    pub pad: u32,
}

/// Mirror of `struct pt_conn_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ConnEvent {
    pub kind: u32,
    pub event: u32,
    pub pid: u32,
    pub family: u32,
    pub netns: u32,
    pub flags: u32,
    pub error: u32,
    pub sport: u16,
    pub dport: u16,
    pub orig_dport: u16,
    pub nat_dport: u16,
    pub time_ns: u64,
    pub cgroup_id: u64,
    pub cookie: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration_ns: u64,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub orig_daddr: [u8; 16],
    pub nat_daddr: [u8; 16],
    pub comm: [u8; COMM_LEN],
}

/// Mirror of `struct pt_listen_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ListenEvent {
    pub kind: u32,
    /// `LISTEN_*`.
    pub event: u32,
    pub pid: u32,
    pub family: u32,
    /// 0: unknown (the cgroup socket hooks do not expose it).
    pub netns: u32,
    pub port: u16,
    pub protocol: u8,
    pub reserved: u8,
    pub time_ns: u64,
    pub cgroup_id: u64,
    pub cookie: u64,
    pub addr: [u8; 16],
    pub comm: [u8; COMM_LEN],
}

/// Mirror of `struct pt_dns_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DnsEvent {
    pub kind: u32,
    /// `DNS_QUERY` or `DNS_ANSWER`.
    pub direction: u8,
    pub protocol: u8,
    pub family: u16,
    pub pid: u32,
    /// `DNS_HAS_*`.
    pub flags: u16,
    pub captured: u16,
    pub payload_len: u32,
    pub local_port: u16,
    pub remote_port: u16,
    pub asked_port: u16,
    pub nat_port: u16,
    pub reserved: u32,
    pub time_ns: u64,
    pub cgroup_id: u64,
    pub cookie: u64,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub asked_addr: [u8; 16],
    pub nat_addr: [u8; 16],
    pub comm: [u8; COMM_LEN],
    pub data: [u8; DNS_CAPTURE],
}

/// Mirror of `struct pt_tls_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TlsEvent {
    pub kind: u32,
    pub captured: u16,
    pub family: u16,
    pub payload_len: u32,
    pub reserved: u32,
    pub time_ns: u64,
    pub cgroup_id: u64,
    pub cookie: u64,
    pub data: [u8; TLS_CAPTURE],
}

/// Mirror of `struct pt_listener_key` (net.bpf.o's `listeners` map).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerKey {
    pub netns: u32,
    pub port: u16,
    pub pad: u16,
}

/// Mirror of `struct pt_listener_owner`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ListenerOwner {
    /// 0: seeded by podtraild from /proc.
    pub sk: u64,
    pub pid: u32,
    pub pad: u32,
    pub comm: [u8; COMM_LEN],
}

/// Mirror of `struct pt_flow_key` (net.bpf.o's `flows` map).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub cookie: u64,
    pub peer: [u8; 16],
    pub peer_port: u16,
    pub protocol: u8,
    pub family: u8,
    pub pad: u32,
}

/// Mirror of `struct pt_flow_val`: a flow's counters since its first packet.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowVal {
    pub first_ns: u64,
    pub last_ns: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub cgroup_id: u64,
    pub pid: u32,
    pub local_port: u16,
    pub flags: u16,
    pub icmp_out: u32,
    pub icmp_in: u32,
    pub nat_port: u16,
    pub pad: [u16; 3],
    pub local: [u8; 16],
    pub nat_addr: [u8; 16],
    pub comm: [u8; COMM_LEN],
}

/// Mirror of `struct pt_flow_owner` (net.bpf.o's `flow_socks` map).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowOwner {
    pub pid: u32,
    pub pad: u32,
    pub comm: [u8; COMM_LEN],
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::mem::{offset_of, size_of};

    /// (size, field -> byte offset) of a struct, from `bpftool btf dump ... format raw`.
    fn btf_layout(obj: &[u8], name: &str) -> (usize, BTreeMap<String, usize>) {
        let dir = std::env::temp_dir().join(format!("podtrail-btf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("obj.o");
        std::fs::write(&path, obj).unwrap();
        let bpftool = if std::path::Path::new("/usr/sbin/bpftool").exists() { "/usr/sbin/bpftool" } else { "bpftool" };
        let out = std::process::Command::new(bpftool)
            .args(["btf", "dump", "file", path.to_str().unwrap(), "format", "raw"])
            .output()
            .expect("bpftool (Debian bpftool; tests/setup.sh installs it)");
        std::fs::remove_dir_all(&dir).ok();
        assert!(out.status.success(), "bpftool: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let head = format!("STRUCT '{name}' size=");
        let mut lines = text.lines().skip_while(|l| !l.contains(&head));
        let first = lines.next().unwrap_or_else(|| panic!("struct {name} not in the object's BTF"));
        let size: usize = first.split("size=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
        let mut fields = BTreeMap::new();
        for l in lines.take_while(|l| l.starts_with('\t')) {
            let fname = l.trim().split('\'').nth(1).unwrap().to_string();
            let bits: usize = l.split("bits_offset=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
            fields.insert(fname, bits / 8);
        }
        (size, fields)
    }

    macro_rules! layout {
        ($t:ty, $($f:ident),*) => {{
            let mut m = BTreeMap::new();
            $( m.insert(stringify!($f).to_string(), offset_of!($t, $f)); )*
            (size_of::<$t>(), m)
        }};
    }

    #[test]
    fn mirrors_match_btf() {
        let obj = process_object();
        assert_eq!(
            btf_layout(obj, "pt_exec_event"),
            layout!(ExecEvent, kind, pid, tid, ppid, uid, gid, netns, filename_len, args_len, flags, time_ns, cgroup_id, cap_effective, comm, cwd_len, dev, ino, env_len, reserved, cwd, env, data),
            "ExecEvent drifted from struct pt_exec_event"
        );
        assert_eq!(
            btf_layout(obj, "pt_exit_event"),
            layout!(ExitEvent, kind, pid, tid, exit_code, time_ns, cgroup_id, comm),
            "ExitEvent drifted from struct pt_exit_event"
        );
        assert_eq!(btf_layout(obj, "pt_fork_event"), layout!(ForkEvent, kind, parent_pid, child_pid, reserved, time_ns), "ForkEvent drifted from struct pt_fork_event");
        assert_eq!(
            btf_layout(net_object(), "pt_conn_event"),
            layout!(ConnEvent, kind, event, pid, family, netns, flags, error, sport, dport, orig_dport, nat_dport, time_ns, cgroup_id, cookie, bytes_sent, bytes_received, duration_ns, saddr, daddr, orig_daddr, nat_daddr, comm),
            "ConnEvent drifted from struct pt_conn_event"
        );
        assert_eq!(
            btf_layout(net_object(), "pt_listen_event"),
            layout!(ListenEvent, kind, event, pid, family, netns, port, protocol, reserved, time_ns, cgroup_id, cookie, addr, comm),
            "ListenEvent drifted from struct pt_listen_event"
        );
        assert_eq!(
            btf_layout(net_object(), "pt_dns_event"),
            layout!(DnsEvent, kind, direction, protocol, family, pid, flags, captured, payload_len, local_port, remote_port, asked_port, nat_port, reserved, time_ns, cgroup_id, cookie, local_addr, remote_addr, asked_addr, nat_addr, comm, data),
            "DnsEvent drifted from struct pt_dns_event"
        );
        assert_eq!(
            btf_layout(net_object(), "pt_tls_event"),
            layout!(TlsEvent, kind, captured, family, payload_len, reserved, time_ns, cgroup_id, cookie, data),
            "TlsEvent drifted from struct pt_tls_event"
        );
        assert_eq!(btf_layout(net_object(), "pt_listener_key"), layout!(ListenerKey, netns, port, pad), "ListenerKey drifted from struct pt_listener_key");
        assert_eq!(btf_layout(net_object(), "pt_listener_owner"), layout!(ListenerOwner, sk, pid, pad, comm), "ListenerOwner drifted from struct pt_listener_owner");
        assert_eq!(btf_layout(net_object(), "pt_flow_key"), layout!(FlowKey, cookie, peer, peer_port, protocol, family, pad), "FlowKey drifted from struct pt_flow_key");
        assert_eq!(
            btf_layout(net_object(), "pt_flow_val"),
            layout!(FlowVal, first_ns, last_ns, packets_out, bytes_out, packets_in, bytes_in, cgroup_id, pid, local_port, flags, icmp_out, icmp_in, nat_port, pad, local, nat_addr, comm),
            "FlowVal drifted from struct pt_flow_val"
        );
        assert_eq!(btf_layout(net_object(), "pt_flow_owner"), layout!(FlowOwner, pid, pad, comm), "FlowOwner drifted from struct pt_flow_owner");
        let obj = privilege_object();
        assert_eq!(
            btf_layout(obj, "pt_priv_event"),
            layout!(PrivEvent, kind, op, pid, tid, uid, euid, gid, egid, ret, time_ns, cgroup_id, cap_effective, args, extra, str_len, reserved, comm, str),
            "PrivEvent drifted from struct pt_priv_event"
        );
        let file = file_object();
        assert_eq!(
            btf_layout(file, "pt_file_event"),
            layout!(FileEvent, kind, op, pid, tid, uid, euid, ret, time_ns, cgroup_id, args, open_flags, ino, dev, mnt_ns, why, flags, watch, name_watch, path_len, path2_len, syscall, reserved, comm, path, path2),
            "FileEvent drifted from struct pt_file_event"
        );
        assert_eq!(btf_layout(file, "pt_file_match_key"), layout!(FileMatchKey, prefixlen, data), "FileMatchKey drifted from struct pt_file_match_key");
        assert_eq!(btf_layout(obj, "pt_cap_event"), layout!(CapEvent, kind, cap, pid, tid, ret, uid, euid, gid, egid, reserved, time_ns, cgroup_id, cap_effective, comm), "CapEvent drifted from struct pt_cap_event");
        assert_eq!(btf_layout(obj, "pt_cap_key"), layout!(CapKey, cgroup_id, cap, pad), "CapKey drifted from struct pt_cap_key");
        for obj in [process_object(), net_object(), file_object(), privilege_object()] {
            assert_eq!(btf_layout(obj, "pt_drop_key"), layout!(DropKey, cgroup_id, reason, pad), "DropKey drifted from struct pt_drop_key");
        }
        assert_eq!(
            btf_layout(obj, "pt_cap_val"),
            layout!(CapVal, granted, denied, denied_unlogged, first_ns, last_ns, window_ns, window_rows),
            "CapVal drifted from struct pt_cap_val"
        );
    }
}
