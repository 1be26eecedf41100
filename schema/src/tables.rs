//! Every table podtrail stores, as one documented field list each.
//!
//! In: nothing. Out: [`TableDef`]s from which the Arrow schemas (writer and reader)
//! and `schema/TABLES.md` (people) are both generated, so the three never drift.
//! Invariant: column names and table names are never reused for a different meaning;
//! retired ones go to [`RESERVED_NAMES`].
//!
//! IP addresses are stored as canonical text (`10.244.1.7`, `fd00::1`): a query says
//! `WHERE dst_ip = '10.244.1.7'`, and the same string is what min/max statistics and
//! bloom filters are built on, so the natural predicate is also the prunable one.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Storage type of a column. A small closed set keeps the schema readable in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// UTC timestamp, nanoseconds since the Unix epoch.
    Time,
    Text,
    /// An IPv4 or IPv6 address in canonical text form.
    Ip,
    U8,
    U16,
    U32,
    U64,
    I32,
    I64,
    Bool,
    /// A list of strings (e.g. argv).
    TextList,
}

impl ColType {
    pub fn arrow(self) -> DataType {
        match self {
            ColType::Time => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            ColType::Text | ColType::Ip => DataType::Utf8,
            ColType::U8 => DataType::UInt8,
            ColType::U16 => DataType::UInt16,
            ColType::U32 => DataType::UInt32,
            ColType::U64 => DataType::UInt64,
            ColType::I32 => DataType::Int32,
            ColType::I64 => DataType::Int64,
            ColType::Bool => DataType::Boolean,
            ColType::TextList => {
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
            }
        }
    }

    fn sql_name(self) -> &'static str {
        match self {
            ColType::Time => "timestamp (ns, UTC)",
            ColType::Text => "text",
            ColType::Ip => "text (IP address)",
            ColType::U8 => "uint8",
            ColType::U16 => "uint16",
            ColType::U32 => "uint32",
            ColType::U64 => "uint64",
            ColType::I32 => "int32",
            ColType::I64 => "int64",
            ColType::Bool => "boolean",
            ColType::TextList => "list<text>",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    pub name: &'static str,
    pub ty: ColType,
    pub nullable: bool,
    pub doc: &'static str,
}

const fn col(name: &'static str, ty: ColType, doc: &'static str) -> ColumnDef {
    ColumnDef { name, ty, nullable: false, doc }
}

const fn opt(name: &'static str, ty: ColType, doc: &'static str) -> ColumnDef {
    ColumnDef { name, ty, nullable: true, doc }
}

/// Where a table lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Parquet segments plus the hot tail, written by the `segments` stage.
    Segments,
    /// Rows of the SQLite catalog (`catalog.db`), exposed read-only as a table.
    Catalog,
}

#[derive(Debug)]
pub struct TableDef {
    pub name: &'static str,
    pub storage: Storage,
    pub doc: &'static str,
    /// Event tables start with [`EVENT_KEY_COLUMNS`]; catalog tables do not.
    pub stamped: bool,
    pub own_columns: &'static [ColumnDef],
}

/// Columns every event row starts with: when, where, and the identity stamped at
/// event time (not looked up at query time: the pod may be long gone by then).
pub const EVENT_KEY_COLUMNS: &[ColumnDef] = &[
    col("time", ColType::Time, "When the kernel saw the event (UTC, ns)."),
    col("node", ColType::Text, "Node (host) name of the recorder that saw it."),
    col("cgroup_id", ColType::U64, "cgroup v2 id (the inode of the cgroup directory) of the process or socket."),
    opt("container_id", ColType::Text, "Container id at event time; null for host processes."),
    opt("pod_uid", ColType::Text, "Pod UID at event time; null for host processes."),
    opt("pod_name", ColType::Text, "Pod name at event time, when known."),
    opt("pod_namespace", ColType::Text, "Pod namespace at event time, when known."),
];

pub const PROCESS_EXEC: TableDef = TableDef {
    name: "process_exec",
    storage: Storage::Segments,
    doc: "One row per successful execve: a new process image.",
    stamped: true,
    own_columns: &[
        col("exec_id", ColType::U64, "Stable unique id of this process image, from (boot id, pid, image start: the exec time, or the /proc start time for processes that predate the recorder); see `exec_id()`."),
        opt("parent_exec_id", ColType::U64, "`exec_id` of the parent process image, when known."),
        col("pid", ColType::U32, "Process id (host pid namespace)."),
        col("ppid", ColType::U32, "Parent process id (host pid namespace)."),
        col("uid", ColType::U32, "Real user id."),
        col("gid", ColType::U32, "Real group id."),
        col("comm", ColType::Text, "Kernel command name (at most 15 bytes)."),
        col("binary", ColType::Text, "Path of the executed file, as passed to execve."),
        col("args", ColType::TextList, "argv, including argv[0]; bounded, see `args_truncated`."),
        col("args_truncated", ColType::Bool, "True when argv was longer than the recorder keeps."),
        opt("cwd", ColType::Text, "Working directory at exec, as a path from the process's own root (inside a container: from the container's root), walked up in the kernel across mounts. Starts with `.../` when the directory is deeper than the 32 components (or 256 bytes of names) kept; null for rows written before it was captured."),
        col("cap_effective", ColType::U64, "Effective capability set (bit mask, CAP_* bit numbers)."),
        col("netns", ColType::U32, "Network namespace inode number."),
        opt("fileless", ColType::Bool, "True when the executed file had no link left: a memfd (fileless execution; `binary` is then `memfd:<name>`) or a file deleted before the exec. Null in rows recorded before this column existed."),
        opt("device", ColType::U64, "The executed file's filesystem device, as `stat` gives `st_dev`; with `inode`, joins `file` rows of the same file (\"which process wrote the binary that ran?\"). Null in rows recorded before this column existed."),
        opt("inode", ColType::U64, "The executed file's inode number. Null in rows recorded before this column existed."),
        opt("loader_env", ColType::TextList, "The dynamic loader's variables in the new image's environment (`LD_PRELOAD=...`, `LD_LIBRARY_PATH=...`, `LD_AUDIT=...`; each at most 255 bytes): how a library is injected without changing the program. Empty when none; null in rows recorded before this column existed."),
        opt("env_truncated", ColType::Bool, "True when `loader_env` may be incomplete: the environment had more than 128 strings, a string could not be read, or the variables did not fit 256 bytes."),
        opt("sha256", ColType::Text, "SHA-256 of the executed file (lowercase hex), read through /proc while the process, or its parent, still holds a path to it, and only when that file has the device and inode the kernel reported for the exec. Cached by device, inode, change time and size (a binary replaced in place is hashed again). Null when the file could no longer be reached (a program that exited at once in a namespace that is gone), is larger than 128 MiB, or for rows recorded before this column existed."),
    ],
};

pub const PROCESS_EXIT: TableDef = TableDef {
    name: "process_exit",
    storage: Storage::Segments,
    doc: "One row per process exit (thread-group leader).",
    stamped: true,
    own_columns: &[
        opt("exec_id", ColType::U64, "`exec_id` of the process image that exited (for a forked child that never exec'd: the image it inherited from its parent); null when unknown (a process that started before the recorder and escaped /proc seeding)."),
        col("pid", ColType::U32, "Process id (host pid namespace)."),
        col("exit_code", ColType::I32, "Exit status (0-255) when the process exited normally; 0 when killed by a signal."),
        col("signal", ColType::I32, "Number of the signal that killed the process, 0 when none."),
        opt("duration_ns", ColType::U64, "Time from exec (or fork, for a child that never exec'd) to exit, when seen."),
    ],
};

pub const NET_CONN: TableDef = TableDef {
    name: "net_conn",
    storage: Storage::Segments,
    doc: "One row per connection lifecycle event: `connect`, `accept`, `close` or `fail`.",
    stamped: true,
    own_columns: &[
        col("event", ColType::Text, "`connect` (outbound established), `accept` (inbound established), `close`, or `fail` (connect refused / timed out)."),
        opt("exec_id", ColType::U64, "`exec_id` of that process's image at the event (a forked child that never exec'd carries its parent's image), when known."),
        opt("pid", ColType::U32, "The process: on the connecting side the one that called connect(); on `accept` and the close of an accepted connection the one that put the listening socket in listen (see `net_listen`); null when the recorder did not see that call (a connection older than the recorder; a listener older than it carries the process found holding it in /proc at start)."),
        opt("comm", ColType::Text, "Command name of that process, when known."),
        col("protocol", ColType::Text, "`tcp` or `udp`."),
        col("family", ColType::Text, "`ipv4` or `ipv6`."),
        col("src_ip", ColType::Ip, "Local address of the socket as the pod saw it (pre-NAT)."),
        col("src_port", ColType::U16, "Local port; 0 on `fail` rows (the kernel released the port before the event)."),
        col("dst_ip", ColType::Ip, "Remote address of the socket as the pod saw it."),
        col("dst_port", ColType::U16, "Remote port."),
        opt("orig_dst_ip", ColType::Ip, "Destination the process asked for in connect() (e.g. a Service ClusterIP), before DNAT."),
        opt("orig_dst_port", ColType::U16, "Port the process asked for in connect()."),
        opt("nat_dst_ip", ColType::Ip, "Destination the traffic really went to after DNAT (e.g. the backend pod), when translated."),
        opt("nat_dst_port", ColType::U16, "Port after DNAT."),
        col("netns", ColType::U32, "Network namespace inode number of the socket."),
        col("socket_cookie", ColType::U64, "Kernel socket cookie: joins the rows of one connection."),
        opt("bytes_sent", ColType::U64, "On `close`: payload bytes sent and acknowledged by the peer (SYN and FIN excluded)."),
        opt("bytes_received", ColType::U64, "On `close`: payload bytes received (SYN and FIN excluded)."),
        opt("duration_ns", ColType::U64, "On `close`: time since the connection was established."),
        opt("error", ColType::Text, "On `fail`: why (e.g. `ECONNREFUSED`)."),
        opt("dst_name", ColType::Text, "On `connect`, `fail` and `close`: the name this socket's container (cgroup) most recently resolved to the destination (`orig_dst_ip`, else `dst_ip`) before the connection, from its `dns` rows, while the answer's TTL plus 60 s had not run out; null when none (a direct-to-IP connection, or a lookup the recorder did not see)."),
        opt("server_name", ColType::Text, "On `connect` and `close` of a TLS connection this socket opened: the server name (SNI) its ClientHello asked for. Names the site even when the lookup predates the recorder or went over DNS-over-HTTPS; null for other connections, or when the ClientHello was not in the first segment the socket sent."),
        opt("initiated", ColType::Text, "Which side began the connection: `local` (this socket connected: `connect`, `fail` and their `close`) or `remote` (it was accepted: `accept` and its `close`); null on the close of a connection the recorder saw neither begin (older than the recorder, or its state was not kept)."),
    ],
};

pub const NET_LISTEN: TableDef = TableDef {
    name: "net_listen",
    storage: Storage::Segments,
    doc: "One row per socket starting or stopping to take traffic: a TCP socket put in listen and its close, a UDP socket bound with bind() and its release. A reverse shell's or a stray server's listener in a pod shows here; connections it accepts are `net_conn` `accept` rows carrying its process.",
    stamped: true,
    own_columns: &[
        col("event", ColType::Text, "`listen` (TCP listen()), `unlisten` (that listener closed), `bind` (UDP bind()), or `unbind` (that UDP socket released). A UDP socket the kernel bound implicitly at its first send has no row."),
        opt("exec_id", ColType::U64, "`exec_id` of the calling process image, when known."),
        col("pid", ColType::U32, "The process that called listen() or bind(), or closed the socket (host pid namespace)."),
        col("comm", ColType::Text, "Command name of that process."),
        col("protocol", ColType::Text, "`tcp` or `udp`."),
        col("family", ColType::Text, "`ipv4` or `ipv6` (an IPv6 socket bound to a v4-mapped address shows the IPv4 address)."),
        col("ip", ColType::Ip, "Local address the socket takes traffic on: `0.0.0.0` or `::` for every address of its namespace."),
        col("port", ColType::U16, "Local port."),
        opt("netns", ColType::U32, "Network namespace inode number of the socket; null on UDP rows (the kernel's bind hook does not expose it: the pod columns name the pod)."),
        opt("socket_cookie", ColType::U64, "Kernel socket cookie, when the kernel had given the socket one: joins a UDP socket's `bind` and `unbind`."),
    ],
};

pub const NET_FLOW: TableDef = TableDef {
    name: "net_flow",
    storage: Storage::Segments,
    doc: "UDP and ICMP traffic per flow, not per datagram: one flow is one socket and one peer, counted in the kernel (packets and bytes each way) and written about every 10 s for the flows that changed, so a flood is a few rows. The sum of a flow's rows is all its traffic since its first packet; `first_seen` and `socket_cookie` with the addresses name the flow. ICMP is counted on sockets a process created while the recorder ran (ping sockets, raw ICMP sockets): the kernel's own echo replies and errors are not flows of any process. A recorder killed between two reads loses up to 10 s of counts (a normal stop writes them).",
    stamped: true,
    own_columns: &[
        col("protocol", ColType::Text, "`udp`, `icmp` or `icmpv6`."),
        col("family", ColType::Text, "`ipv4` or `ipv6`: of the packets (an IPv6 socket talking to an IPv4 peer counts `ipv4`)."),
        opt("exec_id", ColType::U64, "`exec_id` of the process image that created the socket, as it ran at the flow's first packet; null when not known (a process that exec'd since, or ended more than a minute before the read)."),
        opt("pid", ColType::U32, "The process that created the socket (host pid namespace); null for a socket created before the recorder started (or not remembered: counted in `podtrail_loss`)."),
        opt("comm", ColType::Text, "Command name of that process."),
        col("initiated", ColType::Text, "`local` when the flow's first packet was sent by this socket, `remote` when it was received (a server's flow with a client)."),
        col("src_ip", ColType::Ip, "Local address of the socket, as its packets carry it."),
        col("src_port", ColType::U16, "Local port (0 for ICMP)."),
        col("dst_ip", ColType::Ip, "The peer as this socket's packets name it: the address the process sent to (before any DNAT on the way: a Service ClusterIP), the source of what it received."),
        col("dst_port", ColType::U16, "The peer's port (0 for ICMP)."),
        opt("nat_dst_ip", ColType::Ip, "UDP: the backend conntrack translated what this socket sent to (after DNAT), looked up at the first packet received; null when not DNATed or nothing came back."),
        opt("nat_dst_port", ColType::U16, "Port of that backend."),
        col("packets_out", ColType::U64, "Packets sent in this row's period (a GSO packet counts its segments)."),
        col("bytes_out", ColType::U64, "Bytes sent in this row's period: UDP payload (datagram data, without headers); ICMP messages with their ICMP header."),
        col("packets_in", ColType::U64, "Packets received in this row's period (by this socket: after the kernel's filters, before its receive queue; a datagram dropped for a full receive buffer is counted)."),
        col("bytes_in", ColType::U64, "Bytes received in this row's period (as `bytes_out`)."),
        opt("icmp_types_out", ColType::Text, "ICMP: the message types sent since the flow's first packet, comma-separated (`echo_request`, `echo_reply`, `dest_unreachable`, `time_exceeded`, ... or `type<n>`)."),
        opt("icmp_types_in", ColType::Text, "ICMP: the message types received since the flow's first packet."),
        col("first_seen", ColType::Time, "The flow's first packet. `time` is the latest packet counted in this row."),
        col("socket_cookie", ColType::U64, "Kernel socket cookie: joins a socket's flows with its `net_listen` `bind` row and its `dns` rows."),
    ],
};

pub const DNS: TableDef = TableDef {
    name: "dns",
    storage: Storage::Segments,
    doc: "One row per DNS query a socket sent to port 53 (UDP or TCP), with its answer when one came: the name and type asked, the resolver as the process asked for it (a Service ClusterIP such as kube-dns) and the backend that answered (after DNAT), the response code and the answers. Paired by socket, transaction id and question; a query with no answer within 10 s is a row of status `unanswered`, an answer whose query was not seen is a row too (`answer_only`). Only the first 512 bytes of each message are kept (`parse_error` says when more was cut). A row is written when its answer comes (or 10 s after the query): a recorder killed in between loses the queries still waiting (at most 10 s of them; a normal stop writes them as `pending`).",
    stamped: true,
    own_columns: &[
        col("status", ColType::Text, "`answered`; `unanswered` (no answer within 10 s of the query); `answer_only` (an answer whose query was not seen: sent before the recorder started, lost, or not sent by this socket at all); `pending` (the recorder stopped, or held 65,536 queries waiting, before the answer or the timeout came)."),
        opt("exec_id", ColType::U64, "`exec_id` of the process image that sent the query, when known."),
        opt("pid", ColType::U32, "The process that aimed the socket at the resolver (connect() or sendmsg() with an address to port 53; TCP: connect()), when the recorder saw it."),
        opt("comm", ColType::Text, "Command name of that process, when known."),
        col("transport", ColType::Text, "`udp` or `tcp`."),
        col("family", ColType::Text, "`ipv4` or `ipv6`."),
        col("txid", ColType::U16, "DNS transaction id."),
        opt("query_name", ColType::Text, "The name asked, as sent (case kept; bytes outside printable ASCII as `\\DDD`), without the final dot; null when the question did not parse."),
        opt("query_type", ColType::Text, "`A`, `AAAA`, `CNAME`, `MX`, `TXT`, `PTR`, `SRV`, `NS`, `SOA`, `ANY`, `HTTPS`, `SVCB`, ... or `TYPE<n>`."),
        col("src_ip", ColType::Ip, "Local address of the socket that asked."),
        col("src_port", ColType::U16, "Local port of that socket."),
        col("resolver_ip", ColType::Ip, "The resolver as the process asked for it (before DNAT: e.g. the kube-dns ClusterIP); the query packet's destination when the recorder did not see the process aim the socket."),
        col("resolver_port", ColType::U16, "Port of that resolver (53)."),
        opt("answered_by_ip", ColType::Ip, "The resolver that answered: the backend conntrack had translated the query to (e.g. the CoreDNS pod) when the query was DNATed, else the answer's source; null without an answer."),
        opt("answered_by_port", ColType::U16, "Port of that resolver."),
        opt("rcode", ColType::Text, "Response code of the answer: `NOERROR`, `FORMERR`, `SERVFAIL`, `NXDOMAIN`, `NOTIMP`, `REFUSED`, ... or `RCODE<n>`; null without an answer."),
        opt("answer_count", ColType::U16, "Records in the answer section, as the answer's header says."),
        opt("answers", ColType::Text, "The answer section as parsed, `; `-separated, each `name TYPE data ttl=N` (`data` an address for A/AAAA, a name for CNAME/NS/PTR, the length in bytes otherwise)."),
        opt("latency_ns", ColType::U64, "Time from the query to its answer."),
        opt("parse_error", ColType::Text, "What could not be parsed (the row keeps what could), e.g. a compression loop or a message cut at the 512 bytes kept."),
        col("socket_cookie", ColType::U64, "Kernel socket cookie of the asking socket."),
    ],
};

pub const PRIVILEGE: TableDef = TableDef {
    name: "privilege",
    storage: Storage::Segments,
    doc: "One row per privilege-changing or box-escaping operation, refused ones too (an attempt is evidence): set*id, capset, setns, unshare, mount, umount, ptrace, bpf program loads and attaches, module loads, memfd_create, raw and packet sockets (socket() of `AF_INET`/`AF_INET6` `SOCK_RAW`, `AF_PACKET` or `SOCK_PACKET`: sniffing or crafting traffic; not netlink), and each refused capability check (`capability`, rate-limited; every check is counted in `cap_usage`).",
    stamped: true,
    own_columns: &[
        col("kind", ColType::Text, "`setuid`, `setgid`, `setreuid`, `setregid`, `setresuid`, `setresgid`, `capset`, `setns`, `unshare`, `mount`, `umount`, `ptrace`, `bpf`, `init_module`, `finit_module`, `memfd_create`, `socket` (raw and packet sockets only), or `capability` (a refused capability check)."),
        opt("exec_id", ColType::U64, "`exec_id` of the calling process image, when known."),
        col("pid", ColType::U32, "Calling process id (host pid namespace)."),
        col("tid", ColType::U32, "Calling thread id."),
        col("comm", ColType::Text, "Command name of the caller."),
        col("uid", ColType::U32, "Real uid of the caller before the call (`capability`: of the checked credentials)."),
        col("euid", ColType::U32, "Effective uid of the caller before the call."),
        col("gid", ColType::U32, "Real gid of the caller before the call."),
        col("egid", ColType::U32, "Effective gid of the caller before the call."),
        col("cap_effective", ColType::U64, "Effective capability set of the caller before the call (bit mask)."),
        col("result", ColType::I64, "The syscall's return value: 0 or more is success, negative is -errno (`capability`: the check's result)."),
        opt("error", ColType::Text, "When refused or failed: the errno name (e.g. `EPERM`)."),
        opt("new_uid", ColType::U32, "set*uid: the real (setuid: the only) uid asked for; null when left unchanged (-1)."),
        opt("new_euid", ColType::U32, "setreuid/setresuid: the effective uid asked for; null when unchanged."),
        opt("new_suid", ColType::U32, "setresuid: the saved uid asked for; null when unchanged."),
        opt("new_gid", ColType::U32, "set*gid: the real (setgid: the only) gid asked for; null when unchanged."),
        opt("new_egid", ColType::U32, "setregid/setresgid: the effective gid asked for; null when unchanged."),
        opt("new_sgid", ColType::U32, "setresgid: the saved gid asked for; null when unchanged."),
        opt("new_cap_effective", ColType::U64, "capset: the effective set asked for."),
        opt("new_cap_permitted", ColType::U64, "capset: the permitted set asked for."),
        opt("new_cap_inheritable", ColType::U64, "capset: the inheritable set asked for."),
        opt("namespaces", ColType::Text, "setns/unshare: the namespace types, comma-separated (`net`, `mnt`, `pid`, `uts`, `ipc`, `user`, `cgroup`, `time`); setns with type 0: `any`."),
        opt("flags", ColType::U64, "Raw flags argument: unshare flags, setns type, mount/umount flags, memfd_create flags, finit_module flags, socket type with its flags."),
        opt("source", ColType::Text, "mount: the source (device, `tmpfs`, bind source)."),
        opt("target", ColType::Text, "mount/umount: the mount point."),
        opt("fstype", ColType::Text, "mount: the filesystem type."),
        opt("operation", ColType::Text, "ptrace: the request (`PTRACE_ATTACH`, ...); bpf: the command (`BPF_PROG_LOAD`, ...); capability: the capability (`CAP_SYS_ADMIN`, ...); socket: family, type and protocol as given (`AF_PACKET SOCK_RAW protocol 0x0300`)."),
        opt("target_pid", ColType::U32, "ptrace: the traced process id."),
        opt("bpf_type", ColType::Text, "bpf: the program type of `BPF_PROG_LOAD` (e.g. `kprobe`) or the attach type number of `BPF_PROG_ATTACH` / `BPF_LINK_CREATE`."),
        opt("file", ColType::Text, "memfd_create: `memfd:<name>` (what an exec of it shows as `binary`); finit_module: the module file's name; init_module: the module parameters."),
    ],
};

pub const FILE: TableDef = TableDef {
    name: "file",
    storage: Storage::Segments,
    doc: "One row per watched file operation, refused ones too (an attempt is evidence): writes, creations and truncations, deletions, renames, mode, owner and extended attribute changes, links and device nodes under watched paths or of watched file names (shell rc and history files, `authorized_keys`, SSH keys), reads of watched credential files, and anywhere: a hidden file or directory created, an execute or setuid/setgid bit given, a `security.*` attribute (file capability) set, a device node made. `podtraild run --help` lists what is watched by default (`--watch`, `--watch-read`, `--watch-name` add to it); filtered in the kernel, so an open that matches nothing costs no row. Paths are as the process saw them: its working directory (or directory descriptor) joined to the string it gave, up to its own root: a container's view, in the mount namespace `mnt_ns`; `.`, `..` and symlinks are kept as given.",
    stamped: true,
    own_columns: &[
        col("op", ColType::Text, "`open` (for writing, creating or truncating), `read` (a read-only open of a watched credential path), `unlink`, `rmdir`, `rename`, `chmod`, `chown`, `setxattr`, `link`, `symlink`, `truncate`, `mknod`, `mkdir`."),
        opt("exec_id", ColType::U64, "`exec_id` of the calling process image, when known."),
        col("pid", ColType::U32, "Calling process id (host pid namespace)."),
        col("tid", ColType::U32, "Calling thread id."),
        col("comm", ColType::Text, "Command name of the caller."),
        col("uid", ColType::U32, "Real uid of the caller."),
        col("euid", ColType::U32, "Effective uid of the caller."),
        col("path", ColType::Text, "The file operated on (rename: its old name; link: the existing file; symlink: the new link), absolute in the caller's view."),
        opt("new_path", ColType::Text, "rename and link: the new name, absolute in the caller's view."),
        opt("target", ColType::Text, "symlink: the target, as given (not resolved)."),
        opt("xattr", ColType::Text, "setxattr: the attribute's name (`security.capability` is a file capability)."),
        opt("open_flags", ColType::Text, "open and read: the flags, e.g. `O_WRONLY|O_CREAT|O_TRUNC`."),
        col("created", ColType::Bool, "open: the call created the file (it did not exist)."),
        opt("mode", ColType::U32, "chmod: the new mode; open with `O_CREAT`, mkdir, mknod: the mode asked for (file type bits included for mknod). Octal in the kernel's sense: `mode & 2048` (04000) is setuid, `mode & 1024` setgid, `mode & 73` (0111) the execute bits."),
        opt("owner_uid", ColType::U32, "chown: the new owner; null when left unchanged (-1)."),
        opt("owner_gid", ColType::U32, "chown: the new group; null when left unchanged."),
        opt("length", ColType::I64, "truncate: the new length in bytes."),
        opt("device", ColType::U64, "The file's filesystem device, as `stat` gives `st_dev` (major * 256 + minor for small numbers): known for opens that succeeded and operations on a descriptor (fchmod, fchown, fsetxattr, ftruncate). Joins `process_exec.device`."),
        opt("inode", ColType::U64, "The file's inode number, when `device` is known. Joins `process_exec.inode`."),
        col("mnt_ns", ColType::U32, "Mount namespace inode of the caller: the namespace `path` is in."),
        col("result", ColType::I64, "The syscall's return value: 0 or more is success (open: the descriptor), negative is -errno."),
        opt("error", ColType::Text, "When refused or failed: the errno name (e.g. `EACCES`)."),
        col("reason", ColType::Text, "Why the operation was recorded, comma-separated: `watch:<prefix>` (under a watched prefix), `name:<name>` (a watched file name), `read:<prefix>` (a watched credential read), `hidden` (a hidden file or directory created), `exec_bit`, `setid`, `security_xattr`, `device_node`, `executed` (an open that created or truncated a file not otherwise watched, sent when that file was executed: the row has the open's own time and process, and `device`/`inode` join the exec's `process_exec` row)."),
        col("path_truncated", ColType::Bool, "`path` or `new_path` misses components nearest the root: the directory was deeper than 24 components or longer than 256 bytes."),
    ],
};

pub const CAP_USAGE: TableDef = TableDef {
    name: "cap_usage",
    storage: Storage::Segments,
    doc: "Capability checks, counted per cgroup and capability in the kernel and written about once a second for the pairs that changed: what each container really used. Join `containers` on `container_id` for the image. The kernel's own `CAP_SYS_ADMIN` probe on memory accounting (no program asked for it) is not counted.",
    stamped: true,
    own_columns: &[
        col("capability", ColType::Text, "Capability name, e.g. `CAP_NET_BIND_SERVICE`."),
        col("cap", ColType::U8, "Capability number."),
        col("granted", ColType::U64, "Checks granted since the previous row of this cgroup and capability."),
        col("denied", ColType::U64, "Checks refused since the previous row."),
        col("denied_unrecorded", ColType::U64, "Refused checks in this period without their own `privilege` row (more than 8 a second for this pair, or the ring buffer was full)."),
        col("first_seen", ColType::Time, "First check of this capability by this cgroup since the recorder started. `time` is the latest check in this row's period."),
    ],
};

pub const PODS: TableDef = TableDef {
    name: "pods",
    storage: Storage::Catalog,
    doc: "Pods seen on the node, one row per pod per validity interval. Deleted pods stay forever.",
    stamped: false,
    own_columns: &[
        col("pod_uid", ColType::Text, "Pod UID."),
        opt("pod_namespace", ColType::Text, "Namespace; null when only the kernel's cgroup path is known (source `observed`)."),
        opt("pod_name", ColType::Text, "Name; null when only the kernel's cgroup path is known (source `observed`)."),
        col("node", ColType::Text, "Node the pod ran on."),
        opt("labels", ColType::Text, "Labels as a JSON object."),
        opt("owner", ColType::Text, "Controlling owner, `Kind/name` (e.g. `ReplicaSet/web-7d9f`)."),
        opt("qos_class", ColType::Text, "`guaranteed`, `burstable` or `besteffort`."),
        col("valid_from", ColType::Time, "First time the pod was known to exist (`observed`: its first event)."),
        opt("valid_to", ColType::Time, "When the pod was deleted (`observed`: when its cgroup was found removed); null while it exists."),
        col("source", ColType::Text, "Where the record came from: `cri`, `kubernetes`, `observed` (the kernel's cgroup path of its events) or `synthetic`."),
    ],
};

pub const CONTAINERS: TableDef = TableDef {
    name: "containers",
    storage: Storage::Catalog,
    doc: "Containers seen on the node, with their pod and cgroup.",
    stamped: false,
    own_columns: &[
        col("container_id", ColType::Text, "Container id (runtime-specific, usually 64 hex digits)."),
        opt("pod_uid", ColType::Text, "Pod UID, when the container belongs to a pod."),
        opt("container_name", ColType::Text, "Container name in the pod spec."),
        opt("image", ColType::Text, "Image reference."),
        opt("runtime", ColType::Text, "`containerd`, `cri-o`, `docker`, ..."),
        opt("cgroup_id", ColType::U64, "cgroup v2 id of the container's cgroup."),
        col("valid_from", ColType::Time, "First time the container was known to exist."),
        opt("valid_to", ColType::Time, "When the container ended; null while it exists."),
        col("source", ColType::Text, "Where the record came from."),
    ],
};

pub const IP_OWNERS: TableDef = TableDef {
    name: "ip_owners",
    storage: Storage::Catalog,
    doc: "Which pod owned which IP address, as intervals: answers \"who owned 10.244.1.7 at T\" after the IP was reused.",
    stamped: false,
    own_columns: &[
        col("ip", ColType::Ip, "The address."),
        col("pod_uid", ColType::Text, "Pod that owned it."),
        opt("pod_namespace", ColType::Text, "That pod's namespace."),
        opt("pod_name", ColType::Text, "That pod's name."),
        col("node", ColType::Text, "Node the pod ran on."),
        col("valid_from", ColType::Time, "Start of ownership (`observed`: the first event of that pod using the address). A time T is in the interval when `valid_from <= T < valid_to`."),
        opt("valid_to", ColType::Time, "End of ownership (`observed`: another pod's first use of the address, or when the pod's cgroup was found removed); null while still owned."),
        col("source", ColType::Text, "Where the record came from: `cri`, `kubernetes`, `observed` (the local address of the pod's sockets outside the host network namespace) or `synthetic`."),
    ],
};

pub const SEGMENTS: TableDef = TableDef {
    name: "podtrail_segments",
    storage: Storage::Catalog,
    doc: "Every sealed segment ever written, including ones retention has since removed.",
    stamped: false,
    own_columns: &[
        col("seq", ColType::I64, "Position in the hash chain (1, 2, ...)."),
        col("segment_id", ColType::Text, "Segment id; also the file name without `.parquet`."),
        col("table_name", ColType::Text, "Event table the segment belongs to."),
        col("path", ColType::Text, "File path relative to the data dir."),
        col("time_min", ColType::Time, "Earliest `time` in the segment."),
        col("time_max", ColType::Time, "Latest `time` in the segment."),
        col("rows", ColType::U64, "Row count."),
        col("bytes", ColType::U64, "File size in bytes."),
        col("sha256", ColType::Text, "SHA-256 of the file, hex."),
        col("chain_sha256", ColType::Text, "SHA-256 over the previous segment's chain value, this segment's id and its sha256."),
        col("sealed_at", ColType::Time, "Wall-clock time the segment was sealed."),
        col("state", ColType::Text, "`sealed`, or `expired` once retention removed the file."),
    ],
};

pub const LOSS: TableDef = TableDef {
    name: "podtrail_loss",
    storage: Storage::Catalog,
    doc: "Counted loss: events the recorder saw happen (or may have) but could not keep whole. Loss is data: a gap in the history is recorded here, never silent.",
    stamped: false,
    own_columns: &[
        col("time_from", ColType::Time, "Start of the window in which the loss happened."),
        col("time_to", ColType::Time, "End of that window."),
        col("source", ColType::Text, "`kernel_ringbuf` (the kernel's ring buffer was full), `kernel_map` (a kernel map the event needed was full), `kernel_skipped` (runs of a kernel program the kernel skipped because it was already running on that CPU when an interrupt hit its hook again: each may have been a row, so the count is an upper bound), `disk` (the data dir could not be written: disk full, I/O error; rows were held in memory up to a bound, then dropped), `decode` (a kernel record userspace could not decode, or a row the store refused), `crash` (rows lost to a crash: after the last durable flush of a run that did not end cleanly, or in a torn hot-file frame), `corrupt` (a damaged file of the data dir, moved to `quarantine/`), `retention` (rows expired before shipping), `identity` (rows stored without their pod columns: the cgroup was removed before it could be resolved), `incomplete` (rows stored with some columns null because kernel state they needed was gone; `detail` names the columns). `userspace_queue` is reserved: the reader waits rather than drops."),
        opt("table_name", ColType::Text, "Table the lost rows belonged to, when known."),
        opt("cpu", ColType::U32, "CPU, for per-CPU kernel counters."),
        opt("count", ColType::U64, "Number of events (rows) lost; null when it cannot be known (e.g. the unflushed rows of a crashed run, bytes of a damaged file)."),
        opt("detail", ColType::Text, "Free-text explanation (file name, error)."),
        opt("pod_uid", ColType::Text, "Pod whose rows were lost, when known (the kernel counts drops per cgroup; rows dropped for a full disk are counted per pod); null for host rows or when unknown."),
    ],
};

pub const RUNS: TableDef = TableDef {
    name: "podtrail_runs",
    storage: Storage::Catalog,
    doc: "Each run of the recorder on this data dir: when it recorded, its last durable flush, and how it ended. Time between one run's end and the next one's start was not recorded (see `podtrail status`, sql-examples/14_time_not_recorded.sql).",
    stamped: false,
    own_columns: &[
        col("run_id", ColType::I64, "Run number (1, 2, ...)."),
        col("node", ColType::Text, "Node name the run recorded as."),
        col("pid", ColType::U32, "Process id of that podtraild."),
        col("version", ColType::Text, "podtrail version of that podtraild."),
        col("started_at", ColType::Time, "When it started recording."),
        opt("last_flush", ColType::Time, "Its latest durable flush (updated about once a second): events up to here are on disk."),
        opt("ended_at", ColType::Time, "When it ended: its shutdown; for an unclean end, its last durable flush (what came after is covered by a `crash` loss row). Null while running."),
        col("end_state", ColType::Text, "`running`, `clean` (drained, flushed and sealed), `failed` (stopped with rows it could not store, counted as loss), or `unclean` (killed, crashed or power loss; found at the next start)."),
        opt("detail", ColType::Text, "What ended it, when known."),
    ],
};

/// Tables stored as Parquet segments.
pub const EVENT_TABLES: &[&TableDef] = &[&PROCESS_EXEC, &PROCESS_EXIT, &NET_CONN, &NET_LISTEN, &NET_FLOW, &DNS, &FILE, &PRIVILEGE, &CAP_USAGE];

/// Tables kept in the SQLite catalog and exposed read-only to SQL.
pub const CATALOG_TABLES: &[&TableDef] = &[&PODS, &CONTAINERS, &IP_OWNERS, &SEGMENTS, &LOSS, &RUNS];

/// Names that were used once and must never be given a new meaning.
pub const RESERVED_NAMES: &[&str] = &[];

impl TableDef {
    /// All columns in storage order.
    pub fn columns(&self) -> impl Iterator<Item = &'static ColumnDef> + use<> {
        let key: &'static [ColumnDef] = if self.stamped { EVENT_KEY_COLUMNS } else { &[] };
        key.iter().chain(self.own_columns.iter())
    }

    pub fn column(&self, name: &str) -> Option<&'static ColumnDef> {
        self.columns().find(|c| c.name == name)
    }

    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> =
            self.columns().map(|c| Field::new(c.name, c.ty.arrow(), c.nullable)).collect();
        Arc::new(Schema::new(fields))
    }

    /// Columns that get Parquet bloom filters: equality lookups by IP or pod.
    pub fn bloom_columns(&self) -> impl Iterator<Item = &'static str> + use<> {
        self.columns()
            .filter(|c| c.ty == ColType::Ip || matches!(c.name, "pod_uid" | "pod_name" | "container_id" | "query_name" | "dst_name" | "server_name"))
            .map(|c| c.name)
    }
}

/// A batch in the current schema of `def`, from one written by an older
/// podtrail: columns are only ever added (nullable, at the end), so a missing
/// column becomes nulls. Anything else that differs is an error.
pub fn conform(def: &TableDef, batch: &arrow::record_batch::RecordBatch) -> Result<arrow::record_batch::RecordBatch, arrow::error::ArrowError> {
    let schema = def.arrow_schema();
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let cols = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => Ok(Arc::clone(c)),
            None if f.is_nullable() => Ok(arrow::array::new_null_array(f.data_type(), batch.num_rows())),
            None => Err(arrow::error::ArrowError::SchemaError(format!("{}: column {} missing from a stored batch", def.name, f.name()))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    arrow::record_batch::RecordBatch::try_new(schema, cols)
}

pub fn event_table(name: &str) -> Option<&'static TableDef> {
    EVENT_TABLES.iter().copied().find(|t| t.name == name)
}

pub fn all_tables() -> impl Iterator<Item = &'static TableDef> {
    EVENT_TABLES.iter().chain(CATALOG_TABLES.iter()).copied()
}

/// Stable id of a process image. Inputs are what the kernel reports, so the same
/// process gets the same id from every recorder run on that boot; the boot id keeps
/// ids of different boots apart. SplitMix64-style mixing: cheap, fixed forever
/// (changing it would break joins with existing history).
pub fn exec_id(boot_id: u64, pid: u32, start_time_ns: u64) -> u64 {
    let mut x = boot_id ^ (u64::from(pid)).rotate_left(40) ^ start_time_ns.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for _ in 0..2 {
        x ^= x >> 30;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
    }
    x
}

/// Markdown reference of every table, generated from the definitions above.
pub fn tables_markdown() -> String {
    let mut out = String::from(
        "# podtrail tables\n\n\
         Generated from `schema/src/tables.rs` by `podtrail schema`; do not edit by hand.\n\
         A test fails when this file is stale.\n\n\
         Times are UTC timestamps with nanosecond precision. IP addresses are text in\n\
         canonical form, so `WHERE dst_ip = '10.244.1.7'` both reads naturally and prunes.\n",
    );
    for t in all_tables() {
        let where_ = match t.storage {
            Storage::Segments => "Parquet segments + hot tail",
            Storage::Catalog => "SQLite catalog",
        };
        out.push_str(&format!("\n## `{}`\n\n{} Stored in: {}.\n\n", t.name, t.doc, where_));
        out.push_str("| column | type | null | meaning |\n|---|---|---|---|\n");
        for c in t.columns() {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                c.name,
                c.ty.sql_name(),
                if c.nullable { "yes" } else { "no" },
                c.doc.replace('|', "\\|")
            ));
        }
    }
    if !RESERVED_NAMES.is_empty() {
        out.push_str(&format!("\nReserved (retired) names: {}\n", RESERVED_NAMES.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_md_is_current() {
        let committed = include_str!("../TABLES.md");
        assert!(
            committed == tables_markdown(),
            "schema/TABLES.md is stale: regenerate it with \
             `cargo run --release -p podtrail-query --bin podtrail -- schema > schema/TABLES.md`"
        );
    }

    #[test]
    fn names_are_unique_snake_case_and_not_reserved() {
        let mut tables = std::collections::HashSet::new();
        for t in all_tables() {
            assert!(tables.insert(t.name), "table {} defined twice", t.name);
            assert!(!RESERVED_NAMES.contains(&t.name), "table {} uses a reserved name", t.name);
            let mut cols = std::collections::HashSet::new();
            for c in t.columns() {
                assert!(cols.insert(c.name), "{}.{} defined twice", t.name, c.name);
                assert!(
                    c.name.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                    "{}.{} is not snake_case",
                    t.name,
                    c.name
                );
                assert!(!c.doc.is_empty(), "{}.{} has no doc", t.name, c.name);
            }
        }
    }

    #[test]
    fn event_tables_carry_identity_and_ip_blooms() {
        let s = NET_CONN.arrow_schema();
        for k in ["time", "node", "cgroup_id", "container_id", "pod_uid", "pod_name", "pod_namespace"] {
            assert!(s.field_with_name(k).is_ok(), "net_conn lacks {k}");
        }
        let blooms: Vec<_> = NET_CONN.bloom_columns().collect();
        for c in ["src_ip", "dst_ip", "orig_dst_ip", "nat_dst_ip", "pod_uid"] {
            assert!(blooms.contains(&c), "no bloom filter on net_conn.{c}: {blooms:?}");
        }
    }

    #[test]
    fn batches_of_an_older_schema_gain_null_columns() {
        use arrow::array::{Array, BooleanArray};
        let full = PROCESS_EXEC.arrow_schema();
        let old = Arc::new(Schema::new(full.fields()[..full.fields().len() - 1].to_vec()));
        let cols: Vec<_> = old.fields().iter().map(|f| arrow::array::new_empty_array(f.data_type())).collect();
        let batch = arrow::record_batch::RecordBatch::try_new(old, cols).unwrap();
        let now = conform(&PROCESS_EXEC, &batch).unwrap();
        assert_eq!(now.schema(), full);
        assert!(now.column_by_name("fileless").unwrap().as_any().downcast_ref::<BooleanArray>().unwrap().is_empty());
        // A required column missing is an error, not invented data.
        let s = NET_CONN.arrow_schema();
        let short = Arc::new(Schema::new(s.fields()[1..].to_vec()));
        let cols: Vec<_> = short.fields().iter().map(|f| arrow::array::new_empty_array(f.data_type())).collect();
        assert!(conform(&NET_CONN, &arrow::record_batch::RecordBatch::try_new(short, cols).unwrap()).is_err());
    }

    #[test]
    fn exec_id_depends_on_every_input() {
        let base = exec_id(1, 100, 5_000);
        assert_ne!(base, exec_id(2, 100, 5_000));
        assert_ne!(base, exec_id(1, 101, 5_000));
        assert_ne!(base, exec_id(1, 100, 5_001));
        assert_eq!(base, exec_id(1, 100, 5_000));
    }
}
