//! `decode` stage: ring-buffer bytes to typed raw events. Pure, no I/O.
//!
//! Invariant: a record whose length or fields do not fit its kind is an error
//! (counted by the caller as loss), never a guessed row.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use podtrail_ebpf::{
    ARGS_MAX, COMM_LEN, CONN_ACCEPT, CONN_ACCEPTED, CONN_CLOSE, CONN_CONNECT, CONN_FAIL, CONN_HAS_BYTES, CONN_HAS_NAT, CONN_HAS_ORIG, CONN_HAS_OWNER, CapEvent, ConnEvent,
    CWD_MAX, ENV_MAX, EXEC_ARGS_TRUNCATED, EXEC_CWD_TRUNCATED, EXEC_ENV_TRUNCATED, EXEC_FILELESS, EXEC_HEADER_LEN, ExecEvent, ExitEvent, FILENAME_MAX, ForkEvent, KIND_CAP, KIND_CONN, KIND_EXEC, KIND_EXIT,
    KIND_FORK, KIND_LISTEN, KIND_DNS, KIND_TLS, TLS_CAPTURE, TlsEvent, DNS_ANSWER, DNS_QUERY, DNS_CAPTURE, DNS_HAS_OWNER, DNS_HAS_ASKED, DNS_HAS_NAT, DnsEvent, KIND_PRIV, KIND_FILE, FILE_SHORT_LEN, FILE_PATH_MAX, FILE_SYSCALLS, FILE_HAS_INODE, FILE_OPEN, FILE_READ, FILE_UNLINK, FILE_RMDIR, FILE_RENAME, FILE_CHMOD, FILE_CHOWN, FILE_SETXATTR, FILE_LINK, FILE_SYMLINK, FILE_TRUNCATE, FILE_MKNOD, FILE_MKDIR, FileEvent, LISTEN_BIND, LISTEN_LISTEN, LISTEN_UNBIND, LISTEN_UNLISTEN, ListenEvent, PRIV_SHORT_LEN, PRIV_STR_MAX, PRIV_SYSCALLS, PrivEvent,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRaw {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub netns: u32,
    pub time_boot_ns: u64,
    pub cgroup_id: u64,
    pub cap_effective: u64,
    pub comm: String,
    pub filename: String,
    pub args: Vec<String>,
    pub args_truncated: bool,
    /// The file had no link left (memfd, deleted); `filename` is then its own name.
    pub fileless: bool,
    /// Working directory at exec, relative to the process's root; `.../` first
    /// when the kernel side kept only the components nearest the directory.
    pub cwd: String,
    /// The executed file's (kernel dev_t, inode).
    pub file_id: (u32, u64),
    /// The dynamic loader's variables of the environment (`LD_PRELOAD=...`).
    pub loader_env: Vec<String>,
    /// Some environment strings were not examined, or a variable did not fit.
    pub env_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRaw {
    pub pid: u32,
    pub time_boot_ns: u64,
    pub cgroup_id: u64,
    pub exit_code: i32,
    pub signal: i32,
    pub comm: String,
}

/// A new process (fork/clone without CLONE_THREAD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkRaw {
    pub parent_pid: u32,
    pub child_pid: u32,
    pub time_boot_ns: u64,
}

/// A task's command name as the kernel keeps it (`TASK_COMM_LEN` bytes, NUL
/// padded), held inline: a connection storm's rows allocate nothing for it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Comm([u8; COMM_LEN]);

impl Comm {
    /// The kernel's bytes as they came.
    pub fn from_kernel(bytes: [u8; COMM_LEN]) -> Self {
        Comm(bytes)
    }

    /// The name up to its NUL; bytes that are not UTF-8 become U+FFFD (the
    /// text is borrowed when they all are, as they nearly always are).
    pub fn text(&self) -> Cow<'_, str> {
        text_until_nul(&self.0)
    }
}

/// The first `COMM_LEN` bytes of `name`, as the kernel would keep them.
impl From<&str> for Comm {
    fn from(name: &str) -> Self {
        let mut b = [0u8; COMM_LEN];
        let n = name.len().min(COMM_LEN);
        b[..n].copy_from_slice(&name.as_bytes()[..n]);
        Comm(b)
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.text().fmt(f)
    }
}

/// One TCP lifecycle event, addresses as the socket saw them (pre-NAT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnRaw {
    pub event: &'static str,
    /// The process that called connect(), when the connect hook saw it.
    pub owner: Option<(u32, Comm)>,
    pub family: &'static str,
    pub netns: u32,
    pub time_boot_ns: u64,
    pub cgroup_id: u64,
    pub cookie: u64,
    pub src: (IpAddr, u16),
    pub dst: (IpAddr, u16),
    pub orig_dst: Option<(IpAddr, u16)>,
    pub nat_dst: Option<(IpAddr, u16)>,
    /// (bytes sent, bytes received, duration ns) at close.
    pub bytes: Option<(u64, u64, u64)>,
    pub error: Option<String>,
    /// The name the socket's cgroup resolved to the destination (set after
    /// decode, from the `dns` history; see `crate::dns`).
    pub dst_name: Option<Arc<str>>,
    /// The server name the socket's TLS ClientHello asked for (set after
    /// decode; see `crate::tls`).
    pub server_name: Option<Arc<str>>,
    /// Which side began the connection: `local` (this socket connected),
    /// `remote` (it was accepted), or unknown (the close of a connection
    /// neither the connect hook nor the `established` map saw).
    pub initiated: Option<&'static str>,
}

#[cfg(test)]
impl ConnRaw {
    /// A `connect` on 127.0.0.1:80 at `time_boot_ns` in `cgroup_id`, by `pid`
    /// (comm `curl`) when given: the rows unit tests push.
    pub fn localhost(time_boot_ns: u64, cgroup_id: u64, pid: Option<u32>) -> ConnRaw {
        let a = (IpAddr::V4(Ipv4Addr::LOCALHOST), 80);
        ConnRaw { event: "connect", owner: pid.map(|p| (p, "curl".into())), family: "ipv4", netns: 1, time_boot_ns, cgroup_id, cookie: time_boot_ns, src: a, dst: a, orig_dst: None, nat_dst: None, bytes: None, error: None, dst_name: None, server_name: None, initiated: Some("local") }
    }
}

/// One privilege syscall with its result (kind = the syscall's name), or a
/// refused capability check (kind `capability`). Credentials are the caller's
/// before the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivRaw {
    pub kind: &'static str,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
    pub cap_effective: u64,
    pub result: i64,
    pub time_boot_ns: u64,
    pub cgroup_id: u64,
    pub comm: String,
    pub args: [u64; 6],
    pub extra: [u64; 3],
    /// String arguments, by `pt_priv_event.str` slot.
    pub strs: [Option<String>; 3],
}

/// One watched file operation with its result (file.bpf.o).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRaw {
    /// `open`, `read`, `unlink`, `rmdir`, `rename`, ... (the `op` column).
    pub op: &'static str,
    /// The syscall (`openat`, `renameat2`, ...): how `args` read.
    pub syscall: &'static podtrail_ebpf::FileSyscall,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub euid: u32,
    pub result: i64,
    pub time_boot_ns: u64,
    pub cgroup_id: u64,
    pub comm: String,
    pub path: String,
    /// rename/link: the new name; symlink: the target; setxattr: the attribute.
    pub path2: Option<String>,
    pub args: [u64; 6],
    pub open_flags: u64,
    /// (kernel dev_t, inode), when the kernel had the file.
    pub inode: Option<(u32, u64)>,
    pub mnt_ns: u32,
    /// `FILE_WHY_*` bits, and the indexes of the prefix and name matched.
    pub why: u32,
    pub watch: u16,
    pub name_watch: u16,
    /// `FILE_*` flags (`FILE_CREATED`, ...).
    pub flags: u32,
}

/// A socket starting or stopping to take traffic: a TCP listener, a bound UDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenRaw {
    /// `listen`, `unlisten`, `bind` or `unbind`.
    pub event: &'static str,
    /// The calling process (listen(2), bind(2), the close).
    pub pid: u32,
    pub comm: Comm,
    pub protocol: &'static str,
    pub family: &'static str,
    /// None where the kernel hook does not expose it (UDP binds).
    pub netns: Option<u32>,
    pub time_boot_ns: u64,
    pub cgroup_id: u64,
    /// None: the kernel had given the socket no cookie.
    pub cookie: Option<u64>,
    pub local: (IpAddr, u16),
}

/// One DNS packet a socket sent to port 53 (a query) or received from there
/// (an answer), with the first bytes of its message; `crate::dns` parses and
/// pairs them into `dns` rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPacketRaw {
    pub answer: bool,
    /// `udp` or `tcp` (the message then starts with its 2-byte length).
    pub transport: &'static str,
    pub family: &'static str,
    /// The process that aimed the socket at port 53, when the hooks saw it.
    pub owner: Option<(u32, Comm)>,
    pub time_boot_ns: u64,
    pub cgroup_id: u64,
    pub cookie: u64,
    /// The socket's side of the packet.
    pub local: (IpAddr, u16),
    /// The other side: a query's destination, an answer's source.
    pub remote: (IpAddr, u16),
    /// The destination the process gave (before DNAT).
    pub asked: Option<(IpAddr, u16)>,
    /// Answers: the backend conntrack translated the query to.
    pub nat: Option<(IpAddr, u16)>,
    /// The transport payload's whole length (`data` holds at most its first `DNS_CAPTURE` bytes).
    pub payload_len: u32,
    pub data: Vec<u8>,
}

/// The first bytes of a TLS ClientHello a socket sent (`crate::tls` reads
/// the server name from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsHelloRaw {
    pub time_boot_ns: u64,
    pub cgroup_id: u64,
    pub cookie: u64,
    /// The segment's whole payload length (`data` holds at most its first `TLS_CAPTURE` bytes).
    pub payload_len: u32,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEvent {
    Exec(ExecRaw),
    Exit(ExitRaw),
    Fork(ForkRaw),
    Conn(ConnRaw),
    Listen(ListenRaw),
    Dns(DnsPacketRaw),
    TlsHello(TlsHelloRaw),
    Priv(PrivRaw),
    File(FileRaw),
}

impl RawEvent {
    /// Kernel time of the event (CLOCK_BOOTTIME), the order events apply in.
    pub fn time_boot_ns(&self) -> u64 {
        match self {
            RawEvent::Exec(e) => e.time_boot_ns,
            RawEvent::Exit(e) => e.time_boot_ns,
            RawEvent::Fork(f) => f.time_boot_ns,
            RawEvent::Conn(c) => c.time_boot_ns,
            RawEvent::Listen(l) => l.time_boot_ns,
            RawEvent::Dns(d) => d.time_boot_ns,
            RawEvent::TlsHello(t) => t.time_boot_ns,
            RawEvent::Priv(p) => p.time_boot_ns,
            RawEvent::File(f) => f.time_boot_ns,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is too short for a header")]
    Short(usize),
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("{kind} record of {len} bytes, expected {want}")]
    Length { kind: &'static str, len: usize, want: usize },
    #[error("{kind} record with invalid {field} {value}")]
    Field { kind: &'static str, field: &'static str, value: u64 },
}

/// A C string's text: the bytes before the first NUL (all of them without
/// one), bytes that are not UTF-8 as U+FFFD.
fn text_until_nul(bytes: &[u8]) -> Cow<'_, str> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
}

/// A socket address family and how its 16-byte addresses read: `ipv4` (the
/// first 4 bytes) or `ipv6`; another family is an invalid record.
fn family(kind: &'static str, f: u32) -> Result<(&'static str, bool), DecodeError> {
    match f {
        2 => Ok(("ipv4", false)),
        10 => Ok(("ipv6", true)),
        f => Err(DecodeError::Field { kind, field: "family", value: u64::from(f) }),
    }
}

/// A kernel address (16 bytes, network order; IPv4 in the first 4).
pub(crate) fn ip(a: [u8; 16], v6: bool) -> IpAddr {
    if v6 {
        let v6 = Ipv6Addr::from(a);
        // An IPv4 peer of a dual-stack socket is shown as IPv4.
        v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }
}

fn cstr(bytes: &[u8]) -> String {
    text_until_nul(bytes).into_owned()
}

/// Read a `T` from the front of `b`; the caller checked the length.
fn read<T: Copy>(b: &[u8]) -> T {
    assert!(b.len() >= std::mem::size_of::<T>());
    // SAFETY: length checked above; T is a plain #[repr(C)] struct of integers and
    // byte arrays (every bit pattern valid); read_unaligned has no alignment needs.
    unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) }
}

/// A path from the kernel's components, leaf first, each NUL-terminated: `/a/b`
/// from `b\0a\0`; `/` from none; `.../a/b` when the walk stopped short of the root.
fn cwd_path(components: &[u8], truncated: bool) -> String {
    let mut parts: Vec<String> = components.split(|&c| c == 0).filter(|p| !p.is_empty()).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    parts.reverse();
    let path = format!("/{}", parts.join("/"));
    if truncated { format!("...{path}") } else { path }
}

/// The table a kernel record's rows go to, from its kind alone (fork records
/// are not rows; an unknown or short record has none): how an undecodable
/// record's loss is attributed.
pub fn table_of_record(b: &[u8]) -> Option<&'static str> {
    use podtrail_schema::tables::{DNS, FILE, NET_CONN, NET_LISTEN, PRIVILEGE, PROCESS_EXEC, PROCESS_EXIT};
    match u32::from_ne_bytes(b.get(0..4)?.try_into().ok()?) {
        KIND_EXEC => Some(PROCESS_EXEC.name),
        KIND_EXIT => Some(PROCESS_EXIT.name),
        KIND_CONN => Some(NET_CONN.name),
        KIND_LISTEN => Some(NET_LISTEN.name),
        KIND_DNS => Some(DNS.name),
        KIND_TLS => Some(NET_CONN.name),
        KIND_PRIV | KIND_CAP => Some(PRIVILEGE.name),
        KIND_FILE => Some(FILE.name),
        _ => None,
    }
}

pub fn decode(b: &[u8]) -> Result<RawEvent, DecodeError> {
    if b.len() < 4 {
        return Err(DecodeError::Short(b.len()));
    }
    let kind = u32::from_ne_bytes(b[0..4].try_into().expect("4 bytes"));
    match kind {
        KIND_EXEC => {
            if b.len() < EXEC_HEADER_LEN {
                return Err(DecodeError::Length { kind: "exec", len: b.len(), want: EXEC_HEADER_LEN });
            }
            // Copy the fixed part into a zeroed full-size struct: `data` is variable.
            let mut full = [0u8; std::mem::size_of::<ExecEvent>()];
            let n = b.len().min(full.len());
            full[..n].copy_from_slice(&b[..n]);
            let e: ExecEvent = read(&full);
            let fn_len = e.filename_len as usize;
            let args_len = e.args_len as usize;
            if fn_len > FILENAME_MAX || args_len > ARGS_MAX || EXEC_HEADER_LEN + fn_len + args_len != b.len() {
                return Err(DecodeError::Length { kind: "exec", len: b.len(), want: EXEC_HEADER_LEN + fn_len + args_len });
            }
            let data = &b[EXEC_HEADER_LEN..];
            let filename = cstr(&data[..fn_len]);
            let argv = &data[fn_len..fn_len + args_len];
            let mut args: Vec<String> = argv.split(|&c| c == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect();
            // argv ends with a NUL, which leaves one empty piece; a truncated argv
            // may end mid-argument, which is kept as it is.
            if argv.last() == Some(&0) {
                args.pop();
            }
            let cwd_len = e.cwd_len as usize;
            if cwd_len > CWD_MAX {
                return Err(DecodeError::Length { kind: "exec cwd", len: cwd_len, want: CWD_MAX });
            }
            let cwd = cwd_path(&e.cwd[..cwd_len], e.flags & EXEC_CWD_TRUNCATED != 0);
            let env_len = e.env_len as usize;
            if env_len > ENV_MAX {
                return Err(DecodeError::Length { kind: "exec env", len: env_len, want: ENV_MAX });
            }
            let loader_env: Vec<String> = e.env[..env_len].split(|&c| c == 0).filter(|v| !v.is_empty()).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
            Ok(RawEvent::Exec(ExecRaw {
                pid: e.pid,
                tid: e.tid,
                ppid: e.ppid,
                uid: e.uid,
                gid: e.gid,
                netns: e.netns,
                time_boot_ns: e.time_ns,
                cgroup_id: e.cgroup_id,
                cap_effective: e.cap_effective,
                comm: cstr(&e.comm),
                filename,
                args,
                args_truncated: e.flags & EXEC_ARGS_TRUNCATED != 0,
                fileless: e.flags & EXEC_FILELESS != 0,
                cwd,
                file_id: (e.dev, e.ino),
                loader_env,
                env_truncated: e.flags & EXEC_ENV_TRUNCATED != 0,
            }))
        }
        KIND_EXIT => {
            let want = std::mem::size_of::<ExitEvent>();
            if b.len() != want {
                return Err(DecodeError::Length { kind: "exit", len: b.len(), want });
            }
            let e: ExitEvent = read(b);
            Ok(RawEvent::Exit(ExitRaw {
                pid: e.pid,
                time_boot_ns: e.time_ns,
                cgroup_id: e.cgroup_id,
                exit_code: ((e.exit_code >> 8) & 0xff) as i32,
                signal: (e.exit_code & 0x7f) as i32,
                comm: cstr(&e.comm),
            }))
        }
        KIND_FORK => {
            let want = std::mem::size_of::<ForkEvent>();
            if b.len() != want {
                return Err(DecodeError::Length { kind: "fork", len: b.len(), want });
            }
            let e: ForkEvent = read(b);
            Ok(RawEvent::Fork(ForkRaw { parent_pid: e.parent_pid, child_pid: e.child_pid, time_boot_ns: e.time_ns }))
        }
        KIND_CONN => {
            let want = std::mem::size_of::<ConnEvent>();
            if b.len() != want {
                return Err(DecodeError::Length { kind: "conn", len: b.len(), want });
            }
            let e: ConnEvent = read(b);
            let (family, v6) = family("conn", e.family)?;
            let ip = |a: [u8; 16]| ip(a, v6);
            let event = match e.event {
                CONN_CONNECT => "connect",
                CONN_ACCEPT => "accept",
                CONN_CLOSE => "close",
                CONN_FAIL => "fail",
                v => return Err(DecodeError::Field { kind: "conn", field: "event", value: u64::from(v) }),
            };
            let has = |f: u32| e.flags & f != 0;
            Ok(RawEvent::Conn(ConnRaw {
                event,
                owner: has(CONN_HAS_OWNER).then_some((e.pid, Comm(e.comm))),
                family,
                netns: e.netns,
                time_boot_ns: e.time_ns,
                cgroup_id: e.cgroup_id,
                cookie: e.cookie,
                src: (ip(e.saddr), e.sport),
                dst: (ip(e.daddr), e.dport),
                orig_dst: has(CONN_HAS_ORIG).then(|| (ip(e.orig_daddr), e.orig_dport)),
                nat_dst: has(CONN_HAS_NAT).then(|| (ip(e.nat_daddr), e.nat_dport)),
                bytes: has(CONN_HAS_BYTES).then_some((e.bytes_sent, e.bytes_received, e.duration_ns)),
                error: (e.event == CONN_FAIL).then(|| errno_name(e.error)),
                dst_name: None,
                server_name: None,
                initiated: if has(CONN_ACCEPTED) {
                    Some("remote")
                } else if e.event == CONN_CONNECT || e.event == CONN_FAIL || has(CONN_HAS_ORIG) {
                    Some("local")
                } else {
                    None
                },
            }))
        }
        KIND_LISTEN => {
            let want = std::mem::size_of::<ListenEvent>();
            if b.len() != want {
                return Err(DecodeError::Length { kind: "listen", len: b.len(), want });
            }
            let e: ListenEvent = read(b);
            let (family, v6) = family("listen", e.family)?;
            let event = match e.event {
                LISTEN_LISTEN => "listen",
                LISTEN_UNLISTEN => "unlisten",
                LISTEN_BIND => "bind",
                LISTEN_UNBIND => "unbind",
                v => return Err(DecodeError::Field { kind: "listen", field: "event", value: u64::from(v) }),
            };
            let protocol = match (e.protocol, e.event) {
                (6, LISTEN_LISTEN | LISTEN_UNLISTEN) => "tcp",
                (17, LISTEN_BIND | LISTEN_UNBIND) => "udp",
                (p, _) => return Err(DecodeError::Field { kind: "listen", field: "protocol", value: u64::from(p) }),
            };
            Ok(RawEvent::Listen(ListenRaw {
                event,
                pid: e.pid,
                comm: Comm(e.comm),
                protocol,
                family,
                netns: (e.netns != 0).then_some(e.netns),
                time_boot_ns: e.time_ns,
                cgroup_id: e.cgroup_id,
                cookie: (e.cookie != 0).then_some(e.cookie),
                local: (ip(e.addr, v6), e.port),
            }))
        }
        KIND_DNS => {
            let want = std::mem::size_of::<DnsEvent>();
            if b.len() != want {
                return Err(DecodeError::Length { kind: "dns", len: b.len(), want });
            }
            let e: DnsEvent = read(b);
            let (family, v6) = family("dns", u32::from(e.family))?;
            let ip = |a: [u8; 16]| ip(a, v6);
            let answer = match u32::from(e.direction) {
                DNS_QUERY => false,
                DNS_ANSWER => true,
                v => return Err(DecodeError::Field { kind: "dns", field: "direction", value: u64::from(v) }),
            };
            let transport = match e.protocol {
                17 => "udp",
                6 => "tcp",
                p => return Err(DecodeError::Field { kind: "dns", field: "protocol", value: u64::from(p) }),
            };
            let captured = usize::from(e.captured);
            if captured == 0 || captured > DNS_CAPTURE || captured as u64 > u64::from(e.payload_len) {
                return Err(DecodeError::Field { kind: "dns", field: "captured", value: captured as u64 });
            }
            let has = |f: u32| u32::from(e.flags) & f != 0;
            Ok(RawEvent::Dns(DnsPacketRaw {
                answer,
                transport,
                family,
                owner: has(DNS_HAS_OWNER).then_some((e.pid, Comm(e.comm))),
                time_boot_ns: e.time_ns,
                cgroup_id: e.cgroup_id,
                cookie: e.cookie,
                local: (ip(e.local_addr), e.local_port),
                remote: (ip(e.remote_addr), e.remote_port),
                asked: has(DNS_HAS_ASKED).then(|| (ip(e.asked_addr), e.asked_port)),
                nat: has(DNS_HAS_NAT).then(|| (ip(e.nat_addr), e.nat_port)),
                payload_len: e.payload_len,
                data: e.data[..captured].to_vec(),
            }))
        }
        KIND_TLS => {
            let want = std::mem::size_of::<TlsEvent>();
            if b.len() != want {
                return Err(DecodeError::Length { kind: "tls", len: b.len(), want });
            }
            let e: TlsEvent = read(b);
            family("tls", u32::from(e.family))?;
            let captured = usize::from(e.captured);
            if captured == 0 || captured > TLS_CAPTURE || captured as u64 > u64::from(e.payload_len) {
                return Err(DecodeError::Field { kind: "tls", field: "captured", value: captured as u64 });
            }
            Ok(RawEvent::TlsHello(TlsHelloRaw { time_boot_ns: e.time_ns, cgroup_id: e.cgroup_id, cookie: e.cookie, payload_len: e.payload_len, data: e.data[..captured].to_vec() }))
        }
        KIND_PRIV => {
            // Without strings the record stops before `str`.
            let want = std::mem::size_of::<PrivEvent>();
            if b.len() != want && b.len() != PRIV_SHORT_LEN {
                return Err(DecodeError::Length { kind: "privilege", len: b.len(), want });
            }
            let mut full = [0u8; std::mem::size_of::<PrivEvent>()];
            full[..b.len()].copy_from_slice(b);
            let e: PrivEvent = read(&full);
            if b.len() == PRIV_SHORT_LEN && e.str_len != [0; 3] {
                return Err(DecodeError::Field { kind: "privilege", field: "str_len of a record without strings", value: e.str_len.iter().map(|&n| u64::from(n)).sum() });
            }
            let kind = PRIV_SYSCALLS
                .iter()
                .find(|s| s.op == e.op)
                .map(|s| s.name)
                .ok_or(DecodeError::Field { kind: "privilege", field: "op", value: u64::from(e.op) })?;
            let mut strs: [Option<String>; 3] = [None, None, None];
            for (i, slot) in strs.iter_mut().enumerate() {
                let n = usize::from(e.str_len[i]);
                if n > PRIV_STR_MAX {
                    return Err(DecodeError::Field { kind: "privilege", field: "str_len", value: n as u64 });
                }
                if n > 0 {
                    *slot = Some(cstr(&e.str[i][..n]));
                }
            }
            Ok(RawEvent::Priv(PrivRaw {
                kind,
                pid: e.pid,
                tid: e.tid,
                uid: e.uid,
                euid: e.euid,
                gid: e.gid,
                egid: e.egid,
                cap_effective: e.cap_effective,
                result: e.ret,
                time_boot_ns: e.time_ns,
                cgroup_id: e.cgroup_id,
                comm: cstr(&e.comm),
                args: e.args,
                extra: e.extra,
                strs,
            }))
        }
        KIND_FILE => {
            // Without a second path the record stops before `path2`.
            let want = std::mem::size_of::<FileEvent>();
            if b.len() != want && b.len() != FILE_SHORT_LEN {
                return Err(DecodeError::Length { kind: "file", len: b.len(), want });
            }
            let mut full = [0u8; std::mem::size_of::<FileEvent>()];
            full[..b.len()].copy_from_slice(b);
            let e: FileEvent = read(&full);
            let (path_len, path2_len) = (usize::from(e.path_len), usize::from(e.path2_len));
            if path_len > FILE_PATH_MAX || path2_len > FILE_PATH_MAX || (b.len() == FILE_SHORT_LEN && path2_len != 0) {
                return Err(DecodeError::Field { kind: "file", field: "path_len", value: (path_len.max(path2_len)) as u64 });
            }
            let op = match e.op {
                FILE_OPEN => "open",
                FILE_READ => "read",
                FILE_UNLINK => "unlink",
                FILE_RMDIR => "rmdir",
                FILE_RENAME => "rename",
                FILE_CHMOD => "chmod",
                FILE_CHOWN => "chown",
                FILE_SETXATTR => "setxattr",
                FILE_LINK => "link",
                FILE_SYMLINK => "symlink",
                FILE_TRUNCATE => "truncate",
                FILE_MKNOD => "mknod",
                FILE_MKDIR => "mkdir",
                other => return Err(DecodeError::Field { kind: "file", field: "op", value: u64::from(other) }),
            };
            let syscall = FILE_SYSCALLS
                .get(usize::from(e.syscall))
                .filter(|s| s.op == e.op || (e.op == FILE_READ && s.op == FILE_OPEN))
                .ok_or(DecodeError::Field { kind: "file", field: "syscall", value: u64::from(e.syscall) })?;
            // unlinkat with AT_REMOVEDIR removes a directory.
            let op = if syscall.name == "unlinkat" && e.args[2] & 0x200 != 0 { "rmdir" } else { op };
            Ok(RawEvent::File(FileRaw {
                op,
                syscall,
                pid: e.pid,
                tid: e.tid,
                uid: e.uid,
                euid: e.euid,
                result: e.ret,
                time_boot_ns: e.time_ns,
                cgroup_id: e.cgroup_id,
                comm: cstr(&e.comm),
                path: cstr(&e.path[..path_len]),
                path2: (path2_len > 0).then(|| cstr(&e.path2[..path2_len])),
                args: e.args,
                open_flags: e.open_flags,
                inode: (e.flags & FILE_HAS_INODE != 0).then_some((e.dev, e.ino)),
                mnt_ns: e.mnt_ns,
                why: e.why,
                watch: e.watch,
                name_watch: e.name_watch,
                flags: e.flags,
            }))
        }
        KIND_CAP => {
            let want = std::mem::size_of::<CapEvent>();
            if b.len() != want {
                return Err(DecodeError::Length { kind: "capability", len: b.len(), want });
            }
            let e: CapEvent = read(b);
            Ok(RawEvent::Priv(PrivRaw {
                kind: "capability",
                pid: e.pid,
                tid: e.tid,
                uid: e.uid,
                euid: e.euid,
                gid: e.gid,
                egid: e.egid,
                cap_effective: e.cap_effective,
                result: i64::from(e.ret),
                time_boot_ns: e.time_ns,
                cgroup_id: e.cgroup_id,
                comm: cstr(&e.comm),
                args: [u64::from(e.cap), 0, 0, 0, 0, 0],
                extra: [0; 3],
                strs: [None, None, None],
            }))
        }
        k => Err(DecodeError::UnknownKind(k)),
    }
}

fn errno_name(e: u32) -> String {
    match e {
        0 => "closed before established".into(),
        n => crate::names::errno_name(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a plain `#[repr(C)]` event mirror, as the kernel sends it.
    fn bytes_of<T: Copy>(e: &T) -> Vec<u8> {
        let mut b = vec![0u8; std::mem::size_of::<T>()];
        // SAFETY: T is a plain-old-data mirror; exactly size_of::<T>() bytes written.
        unsafe { std::ptr::write_unaligned(b.as_mut_ptr().cast::<T>(), *e) };
        b
    }

    fn exec_bytes(filename: &str, argv: &[&str]) -> Vec<u8> {
        let mut b = vec![0u8; EXEC_HEADER_LEN];
        let mut fname = filename.as_bytes().to_vec();
        fname.push(0);
        let mut args = Vec::new();
        for a in argv {
            args.extend_from_slice(a.as_bytes());
            args.push(0);
        }
        let put = |b: &mut Vec<u8>, off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        put(&mut b, 0, KIND_EXEC);
        put(&mut b, 4, 42);
        put(&mut b, std::mem::offset_of!(ExecEvent, filename_len), fname.len() as u32);
        put(&mut b, std::mem::offset_of!(ExecEvent, args_len), args.len() as u32);
        b[std::mem::offset_of!(ExecEvent, comm)..][..4].copy_from_slice(b"true");
        b.extend(fname);
        b.extend(args);
        b
    }

    #[test]
    fn exec_record_with_spaces_in_args() {
        let b = exec_bytes("/tmp/bin", &["/tmp/bin", "a", "b c", "d"]);
        let RawEvent::Exec(e) = decode(&b).unwrap() else { panic!("not exec") };
        assert_eq!(e.pid, 42);
        assert_eq!(e.filename, "/tmp/bin");
        assert_eq!(e.args, ["/tmp/bin", "a", "b c", "d"]);
        assert_eq!(e.comm, "true");
    }

    #[test]
    fn inconsistent_lengths_are_errors_not_rows() {
        let mut b = exec_bytes("/x", &["x"]);
        b.push(7); // one stray byte
        assert!(matches!(decode(&b), Err(DecodeError::Length { kind: "exec", .. })));
        assert_eq!(decode(&[1, 0]), Err(DecodeError::Short(2)));
        assert_eq!(decode(&99u32.to_ne_bytes()), Err(DecodeError::UnknownKind(99)));
        assert!(decode(&[2, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn conn_record_pre_and_post_nat() {
        let mut e: ConnEvent = read(&[0u8; std::mem::size_of::<ConnEvent>()]);
        e.kind = KIND_CONN;
        e.event = CONN_CONNECT;
        e.family = 2;
        e.flags = CONN_HAS_OWNER | CONN_HAS_ORIG | CONN_HAS_NAT;
        e.pid = 77;
        e.sport = 40000;
        e.dport = 80;
        e.saddr[..4].copy_from_slice(&[10, 244, 1, 2]);
        e.daddr[..4].copy_from_slice(&[10, 244, 100, 10]);
        e.orig_daddr[..4].copy_from_slice(&[10, 244, 100, 10]);
        e.orig_dport = 80;
        e.nat_daddr[..4].copy_from_slice(&[10, 244, 2, 2]);
        e.nat_dport = 8080;
        e.comm[..4].copy_from_slice(b"curl");
        let RawEvent::Conn(c) = decode(&bytes_of(&e)).unwrap() else { panic!() };
        assert_eq!(c.event, "connect");
        assert_eq!(c.owner, Some((77, "curl".into())));
        assert_eq!(c.src, ("10.244.1.2".parse().unwrap(), 40000));
        assert_eq!(c.orig_dst, Some(("10.244.100.10".parse().unwrap(), 80)));
        assert_eq!(c.nat_dst, Some(("10.244.2.2".parse().unwrap(), 8080)));
        assert_eq!(c.bytes, None);
        e.family = 99;
        assert!(matches!(decode(&bytes_of(&e)), Err(DecodeError::Field { field: "family", .. })));
    }

    #[test]
    fn listen_records_decode_and_inconsistent_ones_are_errors() {
        let mut e: ListenEvent = read(&[0u8; std::mem::size_of::<ListenEvent>()]);
        e.kind = KIND_LISTEN;
        e.event = LISTEN_LISTEN;
        e.family = 2;
        e.protocol = 6;
        e.pid = 42;
        e.netns = 4026531840;
        e.port = 8080;
        e.addr[..4].copy_from_slice(&[10, 244, 2, 2]);
        e.comm[..7].copy_from_slice(b"python3");
        let RawEvent::Listen(l) = decode(&bytes_of(&e)).unwrap() else { panic!() };
        assert_eq!((l.event, l.protocol, l.family, l.pid, l.netns, l.cookie), ("listen", "tcp", "ipv4", 42, Some(4026531840), None));
        assert_eq!(l.local, ("10.244.2.2".parse().unwrap(), 8080));
        assert_eq!(l.comm, "python3".into());
        // A UDP bind from the cgroup hook: no namespace; a v4-mapped address reads as IPv4.
        e.event = LISTEN_BIND;
        e.protocol = 17;
        e.netns = 0;
        e.family = 10;
        e.addr = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];
        let RawEvent::Listen(l) = decode(&bytes_of(&e)).unwrap() else { panic!() };
        assert_eq!((l.event, l.protocol, l.family, l.netns), ("bind", "udp", "ipv6", None));
        assert_eq!(l.local.0, "127.0.0.1".parse::<IpAddr>().unwrap());
        // A TCP protocol on a UDP event, an unknown event, a short record: errors.
        e.protocol = 6;
        assert!(matches!(decode(&bytes_of(&e)), Err(DecodeError::Field { field: "protocol", .. })));
        e.protocol = 17;
        e.event = 9;
        assert!(matches!(decode(&bytes_of(&e)), Err(DecodeError::Field { field: "event", .. })));
        assert!(matches!(decode(&bytes_of(&e)[..40]), Err(DecodeError::Length { kind: "listen", .. })));
    }

    #[test]
    fn a_comm_is_its_bytes_up_to_the_nul_and_never_fails() {
        assert_eq!(Comm(*b"curl\0\0\0\0\0\0\0\0\0\0\0\0").text(), "curl");
        assert_eq!(Comm(*b"0123456789abcdef").text(), "0123456789abcdef", "16 bytes without a NUL");
        assert_eq!(Comm(*b"a\xffb\0\0\0\0\0\0\0\0\0\0\0\0\0").text(), "a\u{fffd}b", "not UTF-8: replaced, not dropped");
        assert_eq!(Comm::from("a-very-long-command-name"), Comm(*b"a-very-long-comm"));
    }

    #[test]
    fn exit_status_and_signal() {
        let mut b = vec![0u8; std::mem::size_of::<ExitEvent>()];
        b[0..4].copy_from_slice(&KIND_EXIT.to_ne_bytes());
        b[12..16].copy_from_slice(&(7u32 << 8).to_ne_bytes());
        let RawEvent::Exit(e) = decode(&b).unwrap() else { panic!() };
        assert_eq!((e.exit_code, e.signal), (7, 0));
        b[12..16].copy_from_slice(&9u32.to_ne_bytes());
        let RawEvent::Exit(e) = decode(&b).unwrap() else { panic!() };
        assert_eq!((e.exit_code, e.signal), (0, 9));
    }

    #[test]
    fn privilege_records_with_and_without_strings() {
        let mut e: PrivEvent = read(&[0u8; std::mem::size_of::<PrivEvent>()]);
        e.kind = KIND_PRIV;
        e.op = podtrail_ebpf::PRIV_MOUNT;
        e.ret = -1;
        e.str_len = [6, 4, 0];
        e.str[0][..6].copy_from_slice(b"tmpfs\0");
        e.str[1][..4].copy_from_slice(b"/mn\0");
        let b = bytes_of(&e);
        let RawEvent::Priv(p) = decode(&b).unwrap() else { panic!() };
        assert_eq!((p.kind, p.result), ("mount", -1));
        assert_eq!(p.strs, [Some("tmpfs".to_string()), Some("/mn".to_string()), None]);
        // Cut before the strings while they claim bytes: an error, not a guess.
        assert!(matches!(decode(&b[..PRIV_SHORT_LEN]), Err(DecodeError::Field { .. })));
        e.str_len = [0; 3];
        e.op = podtrail_ebpf::PRIV_SETUID;
        let b = bytes_of(&e);
        let RawEvent::Priv(p) = decode(&b[..PRIV_SHORT_LEN]).unwrap() else { panic!() };
        assert_eq!((p.kind, p.strs.clone()), ("setuid", [None, None, None]));
        assert!(matches!(decode(&b[..PRIV_SHORT_LEN + 1]), Err(DecodeError::Length { kind: "privilege", .. })));
        e.op = 99;
        assert!(matches!(decode(&bytes_of(&e)), Err(DecodeError::Field { field: "op", .. })));
    }


    #[test]
    fn fork_record_decodes_and_a_wrong_size_is_an_error() {
        let mut b = vec![0u8; std::mem::size_of::<ForkEvent>()];
        b[0..4].copy_from_slice(&KIND_FORK.to_ne_bytes());
        b[4..8].copy_from_slice(&100u32.to_ne_bytes());
        b[8..12].copy_from_slice(&101u32.to_ne_bytes());
        b[16..24].copy_from_slice(&5u64.to_ne_bytes());
        assert_eq!(decode(&b), Ok(RawEvent::Fork(ForkRaw { parent_pid: 100, child_pid: 101, time_boot_ns: 5 })));
        assert!(matches!(decode(&b[..20]), Err(DecodeError::Length { kind: "fork", .. })));
    }
}
