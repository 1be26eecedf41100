//! OCSF: `podtrail export --schema ocsf` maps the event tables to OCSF 1.1.0
//! classes, for security-lake ingestion: `process_exec` / `process_exit` to
//! Process Activity (1007), `net_conn` and `net_flow` to Network Activity
//! (4001), `dns` to DNS Activity (4003), `file` to File System Activity (1001),
//! and `privilege` by kind: credential changes to Process Activity, module
//! loads to Kernel Extension Activity (1002), mounts to File System Activity,
//! the other system calls and refused capability checks to Kernel Activity
//! (1003). `cap_usage` holds counters, not events: it is not exported.
//! Every event declares the `container` profile (the pod's container is
//! `process.container` / `actor.process.container`).
//!
//! The mapping below is the one definition: it generates the SQL each segment is
//! converted with and the reference in `schema/OCSF.md` (`podtrail schema --ocsf`;
//! a test fails when that file is stale). Each field is a dotted OCSF path and an
//! SQL expression over one podtrail row; paths sharing a prefix become one struct.
//! Rules the OCSF schema sets, which the conformance test
//! (tests/ocsf_validate.py, run by tests/tests/lake_e2e.rs) checks event by
//! event: OCSF `integer_t` is a 32-bit integer (`CAST(.. AS INT)`), `long_t`
//! and `timestamp_t` (milliseconds) 64-bit; an object with no value is absent,
//! never a struct of nulls (a struct whose fields are all null is written as
//! null); a path whose value starts with `?` is not a field but the condition
//! under which its object exists at all (`container` needs its `uid`); a source
//! initiates a connection (`src_endpoint`), whichever side podtrail saw.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use datafusion::catalog::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

/// One source table's mapping.
pub struct Mapping {
    pub table: &'static str,
    /// Directory under `<lake>/ocsf/`.
    pub class_dir: &'static str,
    pub class_name: &'static str,
    pub class_uid: u32,
    /// The rows of the table this class takes (an SQL condition), when the
    /// table's rows go to several classes; each row goes to exactly one.
    pub rows: Option<&'static str>,
    /// Groups of (OCSF path, SQL expression), in output order.
    pub fields: &'static [&'static [(&'static str, &'static str)]],
}

type Fields = &'static [(&'static str, &'static str)];

/// The OCSF version every event declares.
pub const OCSF_VERSION: &str = "1.1.0";

/// Every event: when, what produced it, on which node (a server).
const COMMON: Fields = &[
    ("severity_id", "CAST(1 AS INT)"),
    ("severity", "'Informational'"),
    ("time", "CAST(time AS BIGINT) / 1000000"),
    ("metadata.version", "'1.1.0'"),
    ("metadata.profiles", "make_array('container', 'host')"),
    ("metadata.product.name", "'podtrail'"),
    ("metadata.product.vendor_name", "'podtrail'"),
    ("device.hostname", "node"),
    ("device.type_id", "CAST(1 AS INT)"),
    ("device.type", "'Server'"),
];

/// Class, category, activity and type of an event whose activity is the SQL
/// expression `activity` (an integer) named by `name`.
macro_rules! class {
    ($class:literal, $category:literal, $activity:expr, $name:expr) => {
        &[
            ("class_uid", concat!("CAST(", $class, " AS INT)")),
            ("category_uid", concat!("CAST(", $category, " AS INT)")),
            ("activity_id", concat!("CAST(", $activity, " AS INT)")),
            ("activity_name", $name),
            ("type_uid", concat!("CAST(", $class, " AS BIGINT) * 100 + ", $activity)),
        ]
    };
}

/// The pod around a row: its container (OCSF's container profile) where the
/// container is known, the pod's name and namespace (no OCSF place) always.
macro_rules! pod_of {
    ($process:literal) => {
        &[
            (concat!($process, ".container"), "?container_id IS NOT NULL"),
            (concat!($process, ".container.uid"), "container_id"),
            (concat!($process, ".container.pod_uuid"), "pod_uid"),
            (concat!($process, ".container.orchestrator"), "'Kubernetes'"),
        ]
    };
}

/// Pod columns OCSF has no place for (the pod's uid has one only inside a
/// known container).
const POD_UNMAPPED: Fields = &[
    ("unmapped.pod_uid", "CASE WHEN container_id IS NULL THEN pod_uid END"),
    ("unmapped.pod_name", "pod_name"),
    ("unmapped.pod_namespace", "pod_namespace"),
    ("unmapped.cgroup_id", "CAST(cgroup_id AS VARCHAR)"),
];

/// The process of a network or file event, as its actor.
const ACTOR: Fields = &[
    // OCSF's process needs a pid or uid (an accepted connection's listener
    // may be unknown).
    ("actor.process", "?pid IS NOT NULL OR exec_id IS NOT NULL"),
    ("actor.process.pid", "CAST(pid AS INT)"),
    ("actor.process.uid", "CAST(exec_id AS VARCHAR)"),
    ("actor.process.name", "comm"),
];

/// An executable's file: its name is the path's last component.
const EXEC_FILE: Fields = &[
    ("process.file.name", "regexp_replace(binary, '^.*/', '')"),
    ("process.file.path", "binary"),
    ("process.file.type_id", "CAST(1 AS INT)"),
    ("process.file.type", "'Regular File'"),
    (
        "process.file.hashes",
        "CASE WHEN sha256 IS NOT NULL THEN make_array(named_struct('algorithm_id', CAST(3 AS INT), 'algorithm', 'SHA-256', 'value', sha256)) END",
    ),
    ("process.file.uid", "CASE WHEN inode IS NOT NULL THEN concat(CAST(device AS VARCHAR), ':', CAST(inode AS VARCHAR)) END"),
];

pub const PROCESS_EXEC: Mapping = Mapping {
    table: "process_exec",
    class_dir: "process_activity",
    class_name: "Process Activity",
    class_uid: 1007,
    rows: None,
    fields: &[
        class!("1007", "1", "1", "'Launch'"),
        COMMON,
        &[
            ("process.pid", "CAST(pid AS INT)"),
            ("process.uid", "CAST(exec_id AS VARCHAR)"),
            ("process.name", "comm"),
            ("process.cmd_line", "array_to_string(args, ' ')"),
            ("process.user.uid", "CAST(uid AS VARCHAR)"),
        ],
        EXEC_FILE,
        pod_of!("process"),
        &[
            ("process.parent_process.pid", "CAST(ppid AS INT)"),
            ("process.parent_process.uid", "CAST(parent_exec_id AS VARCHAR)"),
            // The parent launched it.
            ("actor.process.pid", "CAST(ppid AS INT)"),
            ("actor.process.uid", "CAST(parent_exec_id AS VARCHAR)"),
        ],
        POD_UNMAPPED,
        &[
            ("unmapped.gid", "CAST(gid AS VARCHAR)"),
            ("unmapped.cwd", "cwd"),
            ("unmapped.args_truncated", "args_truncated"),
            ("unmapped.cap_effective", "CAST(cap_effective AS VARCHAR)"),
            ("unmapped.netns", "CAST(netns AS VARCHAR)"),
            ("unmapped.fileless", "fileless"),
            ("unmapped.loader_env", "loader_env"),
            ("unmapped.env_truncated", "env_truncated"),
        ],
    ],
};

pub const PROCESS_EXIT: Mapping = Mapping {
    table: "process_exit",
    class_dir: "process_activity",
    class_name: "Process Activity",
    class_uid: 1007,
    rows: None,
    fields: &[
        class!("1007", "1", "2", "'Terminate'"),
        COMMON,
        &[("process.pid", "CAST(pid AS INT)"), ("process.uid", "CAST(exec_id AS VARCHAR)")],
        pod_of!("process"),
        &[
            // Who ended it is not recorded: the process itself, which exited
            // (or got the signal in `unmapped.signal`).
            ("actor.process.pid", "CAST(pid AS INT)"),
            ("actor.process.uid", "CAST(exec_id AS VARCHAR)"),
            ("exit_code", "exit_code"),
        ],
        POD_UNMAPPED,
        &[("unmapped.signal", "signal"), ("unmapped.duration_ns", "CAST(duration_ns AS VARCHAR)")],
    ],
};


pub const NET_CONN: Mapping = Mapping {
    table: "net_conn",
    class_dir: "network_activity",
    class_name: "Network Activity",
    class_uid: 4001,
    rows: None,
    fields: &[
        &[
            ("class_uid", "CAST(4001 AS INT)"),
            ("category_uid", "CAST(4 AS INT)"),
            ("activity_id", "CAST(CASE event WHEN 'connect' THEN 1 WHEN 'accept' THEN 1 WHEN 'close' THEN 2 WHEN 'fail' THEN (CASE WHEN error = 'ECONNREFUSED' THEN 5 ELSE 4 END) ELSE 0 END AS INT)"),
            (
                "activity_name",
                "CASE event WHEN 'connect' THEN 'Open' WHEN 'accept' THEN 'Open' WHEN 'close' THEN 'Close' WHEN 'fail' THEN (CASE WHEN error = 'ECONNREFUSED' THEN 'Refuse' ELSE 'Fail' END) ELSE 'Unknown' END",
            ),
            ("type_uid", "CAST(400100 + CASE event WHEN 'connect' THEN 1 WHEN 'accept' THEN 1 WHEN 'close' THEN 2 WHEN 'fail' THEN (CASE WHEN error = 'ECONNREFUSED' THEN 5 ELSE 4 END) ELSE 0 END AS BIGINT)"),
            ("status_id", "CAST(CASE event WHEN 'fail' THEN 2 ELSE 1 END AS INT)"),
            ("status", "CASE event WHEN 'fail' THEN 'Failure' ELSE 'Success' END"),
            ("status_detail", "error"),
        ],
        COMMON,
        &[
            // The initiator is the source: the peer of an accepted connection
            // (`initiated`; segments before that column: the accept rows).
            // When neither is known (a close of a connection older than the
            // recorder), the local side.
            ("src_endpoint.ip", "CASE WHEN (initiated = 'remote' OR event = 'accept') THEN dst_ip ELSE src_ip END"),
            ("src_endpoint.port", "CAST(CASE WHEN (initiated = 'remote' OR event = 'accept') THEN dst_port ELSE src_port END AS INT)"),
            ("dst_endpoint.ip", "CASE WHEN (initiated = 'remote' OR event = 'accept') THEN src_ip ELSE dst_ip END"),
            ("dst_endpoint.port", "CAST(CASE WHEN (initiated = 'remote' OR event = 'accept') THEN src_port ELSE dst_port END AS INT)"),
            ("dst_endpoint.hostname", "CASE WHEN NOT (initiated = 'remote' OR event = 'accept') THEN coalesce(server_name, dst_name) END"),
            ("connection_info.protocol_name", "lower(protocol)"),
            ("connection_info.protocol_num", "CAST(6 AS INT)"),
            ("connection_info.direction_id", "CAST(CASE WHEN (initiated = 'remote' OR event = 'accept') THEN 1 WHEN initiated = 'local' OR event IN ('connect', 'fail') THEN 2 ELSE 0 END AS INT)"),
            ("connection_info.direction", "CASE WHEN (initiated = 'remote' OR event = 'accept') THEN 'Inbound' WHEN initiated = 'local' OR event IN ('connect', 'fail') THEN 'Outbound' ELSE 'Unknown' END"),
            ("connection_info.uid", "CAST(socket_cookie AS VARCHAR)"),
            // Out: from the source (the initiator) to the destination.
            ("traffic.bytes_out", "CAST(CASE WHEN (initiated = 'remote' OR event = 'accept') THEN bytes_received ELSE bytes_sent END AS BIGINT)"),
            ("traffic.bytes_in", "CAST(CASE WHEN (initiated = 'remote' OR event = 'accept') THEN bytes_sent ELSE bytes_received END AS BIGINT)"),
            ("duration", "CAST(duration_ns / 1000000 AS INT)"),
        ],
        ACTOR,
        pod_of!("actor.process"),
        POD_UNMAPPED,
        &[
            ("unmapped.event", "event"),
            ("unmapped.initiated", "initiated"),
            ("unmapped.family", "family"),
            ("unmapped.local_ip", "src_ip"),
            ("unmapped.local_port", "CAST(src_port AS INT)"),
            ("unmapped.orig_dst_ip", "orig_dst_ip"),
            ("unmapped.orig_dst_port", "CAST(orig_dst_port AS INT)"),
            ("unmapped.nat_dst_ip", "nat_dst_ip"),
            ("unmapped.nat_dst_port", "CAST(nat_dst_port AS INT)"),
            ("unmapped.netns", "CAST(netns AS VARCHAR)"),
            ("unmapped.duration_ns", "CAST(duration_ns AS VARCHAR)"),
            ("unmapped.dst_name", "dst_name"),
            ("unmapped.server_name", "server_name"),
        ],
    ],
};

/// OCSF's protocol number of a `net_flow` protocol.
const FLOW_PROTO_NUM: &str = "CAST(CASE lower(protocol) WHEN 'udp' THEN 17 WHEN 'icmp' THEN 1 WHEN 'icmpv6' THEN 58 ELSE -1 END AS INT)";

pub const NET_FLOW: Mapping = Mapping {
    table: "net_flow",
    class_dir: "network_activity",
    class_name: "Network Activity",
    class_uid: 4001,
    rows: None,
    fields: &[
        class!("4001", "4", "6", "'Traffic'"),
        COMMON,
        &[
            // A flow the remote side began: the peer is the source.
            ("src_endpoint.ip", "CASE initiated WHEN 'remote' THEN dst_ip ELSE src_ip END"),
            ("src_endpoint.port", "CAST(CASE initiated WHEN 'remote' THEN dst_port ELSE src_port END AS INT)"),
            ("dst_endpoint.ip", "CASE initiated WHEN 'remote' THEN src_ip ELSE dst_ip END"),
            ("dst_endpoint.port", "CAST(CASE initiated WHEN 'remote' THEN src_port ELSE dst_port END AS INT)"),
            ("connection_info.protocol_name", "lower(protocol)"),
            ("connection_info.protocol_num", FLOW_PROTO_NUM),
            ("connection_info.direction_id", "CAST(CASE initiated WHEN 'remote' THEN 1 ELSE 2 END AS INT)"),
            ("connection_info.direction", "CASE initiated WHEN 'remote' THEN 'Inbound' ELSE 'Outbound' END"),
            ("connection_info.uid", "CAST(socket_cookie AS VARCHAR)"),
            // Out: from the source (the initiator) to the destination.
            ("traffic.packets_out", "CAST(CASE initiated WHEN 'remote' THEN packets_in ELSE packets_out END AS BIGINT)"),
            ("traffic.bytes_out", "CAST(CASE initiated WHEN 'remote' THEN bytes_in ELSE bytes_out END AS BIGINT)"),
            ("traffic.packets_in", "CAST(CASE initiated WHEN 'remote' THEN packets_out ELSE packets_in END AS BIGINT)"),
            ("traffic.bytes_in", "CAST(CASE initiated WHEN 'remote' THEN bytes_out ELSE bytes_in END AS BIGINT)"),
            ("start_time", "CAST(first_seen AS BIGINT) / 1000000"),
        ],
        ACTOR,
        pod_of!("actor.process"),
        POD_UNMAPPED,
        &[
            ("unmapped.family", "family"),
            ("unmapped.initiated", "initiated"),
            ("unmapped.local_ip", "src_ip"),
            ("unmapped.local_port", "CAST(src_port AS INT)"),
            ("unmapped.nat_dst_ip", "nat_dst_ip"),
            ("unmapped.nat_dst_port", "CAST(nat_dst_port AS INT)"),
            ("unmapped.icmp_types_out", "icmp_types_out"),
            ("unmapped.icmp_types_in", "icmp_types_in"),
        ],
    ],
};


pub const DNS: Mapping = Mapping {
    table: "dns",
    class_dir: "dns_activity",
    class_name: "DNS Activity",
    class_uid: 4003,
    rows: None,
    fields: &[
        &[
            ("class_uid", "CAST(4003 AS INT)"),
            ("category_uid", "CAST(4 AS INT)"),
            ("activity_id", "CAST(CASE status WHEN 'answered' THEN 6 WHEN 'answer_only' THEN 2 ELSE 1 END AS INT)"),
            ("activity_name", "CASE status WHEN 'answered' THEN 'Traffic' WHEN 'answer_only' THEN 'Response' ELSE 'Query' END"),
            ("type_uid", "CAST(400300 + CASE status WHEN 'answered' THEN 6 WHEN 'answer_only' THEN 2 ELSE 1 END AS BIGINT)"),
        ],
        COMMON,
        &[
            ("src_endpoint.ip", "src_ip"),
            ("src_endpoint.port", "CAST(src_port AS INT)"),
            // The resolver as the process asked for it (a Service address).
            ("dst_endpoint.ip", "resolver_ip"),
            ("dst_endpoint.port", "CAST(resolver_port AS INT)"),
            ("connection_info.protocol_name", "lower(transport)"),
            ("connection_info.protocol_num", "CAST(CASE lower(transport) WHEN 'udp' THEN 17 WHEN 'tcp' THEN 6 ELSE -1 END AS INT)"),
            ("connection_info.direction_id", "CAST(2 AS INT)"),
            ("connection_info.direction", "'Outbound'"),
            ("connection_info.uid", "CAST(socket_cookie AS VARCHAR)"),
            // An answer whose query was not seen may lack the question:
            // OCSF's query needs a name.
            ("query", "?query_name IS NOT NULL"),
            ("query.hostname", "query_name"),
            ("query.type", "query_type"),
            ("query.packet_uid", "CAST(txid AS INT)"),
            ("query_time", "CASE WHEN status <> 'answer_only' THEN CAST(time AS BIGINT) / 1000000 END"),
            ("response_time", "CASE WHEN latency_ns IS NOT NULL THEN (CAST(time AS BIGINT) + CAST(latency_ns AS BIGINT)) / 1000000 END"),
            ("rcode_id", "CASE WHEN rcode IS NOT NULL THEN CAST(CASE rcode WHEN 'NOERROR' THEN 0 WHEN 'FORMERR' THEN 1 WHEN 'SERVFAIL' THEN 2 WHEN 'NXDOMAIN' THEN 3 WHEN 'NOTIMP' THEN 4 WHEN 'REFUSED' THEN 5 WHEN 'YXDOMAIN' THEN 6 WHEN 'YXRRSET' THEN 7 WHEN 'NXRRSET' THEN 8 WHEN 'NOTAUTH' THEN 9 WHEN 'NOTZONE' THEN 10 ELSE 99 END AS INT) END"),
            ("rcode", "CASE rcode WHEN 'NOERROR' THEN 'NoError' WHEN 'FORMERR' THEN 'FormError' WHEN 'SERVFAIL' THEN 'ServError' WHEN 'NXDOMAIN' THEN 'NXDomain' WHEN 'NOTIMP' THEN 'NotImp' WHEN 'REFUSED' THEN 'Refused' WHEN 'YXDOMAIN' THEN 'YXDomain' WHEN 'YXRRSET' THEN 'YXRRSet' WHEN 'NXRRSET' THEN 'NXRRSet' WHEN 'NOTAUTH' THEN 'NotAuth' WHEN 'NOTZONE' THEN 'NotZone' ELSE rcode END"),
        ],
        ACTOR,
        pod_of!("actor.process"),
        POD_UNMAPPED,
        &[
            ("unmapped.status", "status"),
            ("unmapped.txid", "CASE WHEN query_name IS NULL THEN CAST(txid AS INT) END"),
            ("unmapped.family", "family"),
            ("unmapped.answered_by_ip", "answered_by_ip"),
            ("unmapped.answered_by_port", "CAST(answered_by_port AS INT)"),
            ("unmapped.answer_count", "CAST(answer_count AS INT)"),
            ("unmapped.answers", "answers"),
            ("unmapped.latency_ns", "CAST(latency_ns AS VARCHAR)"),
            ("unmapped.parse_error", "parse_error"),
        ],
    ],
};


pub const FILE: Mapping = Mapping {
    table: "file",
    class_dir: "file_activity",
    class_name: "File System Activity",
    class_uid: 1001,
    rows: None,
    fields: &[
        &[
            ("class_uid", "CAST(1001 AS INT)"),
            ("category_uid", "CAST(1 AS INT)"),
            ("activity_id", "CAST(CASE op WHEN 'open' THEN (CASE WHEN created THEN 1 ELSE 3 END) WHEN 'read' THEN 2 WHEN 'unlink' THEN 4 WHEN 'rmdir' THEN 4 WHEN 'rename' THEN 5 WHEN 'chmod' THEN 7 WHEN 'chown' THEN 7 WHEN 'setxattr' THEN 6 WHEN 'link' THEN 1 WHEN 'symlink' THEN 1 WHEN 'truncate' THEN 3 WHEN 'mknod' THEN 1 WHEN 'mkdir' THEN 1 ELSE 99 END AS INT)"),
            ("activity_name", "CASE op WHEN 'open' THEN (CASE WHEN created THEN 'Create' ELSE 'Update' END) WHEN 'read' THEN 'Read' WHEN 'unlink' THEN 'Delete' WHEN 'rmdir' THEN 'Delete' WHEN 'rename' THEN 'Rename' WHEN 'chmod' THEN 'Set Security' WHEN 'chown' THEN 'Set Security' WHEN 'setxattr' THEN 'Set Attributes' WHEN 'truncate' THEN 'Update' ELSE 'Create' END"),
            ("type_uid", "CAST(100100 + CASE op WHEN 'open' THEN (CASE WHEN created THEN 1 ELSE 3 END) WHEN 'read' THEN 2 WHEN 'unlink' THEN 4 WHEN 'rmdir' THEN 4 WHEN 'rename' THEN 5 WHEN 'chmod' THEN 7 WHEN 'chown' THEN 7 WHEN 'setxattr' THEN 6 WHEN 'link' THEN 1 WHEN 'symlink' THEN 1 WHEN 'truncate' THEN 3 WHEN 'mknod' THEN 1 WHEN 'mkdir' THEN 1 ELSE 99 END AS BIGINT)"),
            ("status_id", "CAST(CASE WHEN result < 0 THEN 2 ELSE 1 END AS INT)"),
            ("status", "CASE WHEN result < 0 THEN 'Failure' ELSE 'Success' END"),
            ("status_detail", "error"),
        ],
        COMMON,
        &[
            ("file.name", "regexp_replace(path, '^.*/', '')"),
            ("file.path", "path"),
            // Known from the operation: a directory, a link, a device node, a
            // regular file opened; otherwise unknown (0).
            (
                "file.type_id",
                "CAST(CASE WHEN op IN ('mkdir', 'rmdir') THEN 2 WHEN op = 'symlink' THEN 7 WHEN op = 'mknod' THEN (CASE mode & 61440 WHEN 8192 THEN 3 WHEN 24576 THEN 4 WHEN 4096 THEN 6 WHEN 49152 THEN 5 ELSE 1 END) WHEN op IN ('open', 'read', 'truncate') THEN 1 ELSE 0 END AS INT)",
            ),
            ("file.uid", "CASE WHEN inode IS NOT NULL THEN concat(CAST(device AS VARCHAR), ':', CAST(inode AS VARCHAR)) END"),
            ("file.owner.uid", "CASE WHEN op = 'chown' THEN CAST(owner_uid AS VARCHAR) END"),
            // A rename's or link's new name.
            ("file_result.name", "regexp_replace(new_path, '^.*/', '')"),
            ("file_result.path", "new_path"),
            ("file_result.type_id", "CASE WHEN new_path IS NOT NULL THEN CAST(0 AS INT) END"),
        ],
        ACTOR,
        &[("actor.process.user.uid", "CAST(uid AS VARCHAR)")],
        pod_of!("actor.process"),
        POD_UNMAPPED,
        &[
            ("unmapped.op", "op"),
            ("unmapped.tid", "CAST(tid AS INT)"),
            ("unmapped.euid", "CAST(euid AS VARCHAR)"),
            ("unmapped.target", "target"),
            ("unmapped.xattr", "xattr"),
            ("unmapped.open_flags", "open_flags"),
            ("unmapped.created", "created"),
            ("unmapped.mode", "CAST(mode AS INT)"),
            ("unmapped.owner_gid", "CASE WHEN op = 'chown' THEN CAST(owner_gid AS VARCHAR) END"),
            ("unmapped.length", "length"),
            ("unmapped.mnt_ns", "CAST(mnt_ns AS VARCHAR)"),
            ("unmapped.result", "result"),
            ("unmapped.reason", "reason"),
            ("unmapped.path_truncated", "path_truncated"),
        ],
    ],
};

/// `privilege` kinds that change a process's credentials: Process Activity.
const PRIV_CREDENTIALS: &str = "kind IN ('setuid', 'setgid', 'setreuid', 'setregid', 'setresuid', 'setresgid', 'capset')";
/// Module loads: Kernel Extension Activity.
const PRIV_MODULES: &str = "kind IN ('init_module', 'finit_module')";
/// Mounts: File System Activity.
const PRIV_MOUNTS: &str = "kind IN ('mount', 'umount')";
/// Every other kind (namespaces, ptrace, bpf, memfd_create, raw sockets,
/// refused capability checks): Kernel Activity.
const PRIV_KERNEL: &str = "kind NOT IN ('setuid', 'setgid', 'setreuid', 'setregid', 'setresuid', 'setresgid', 'capset', 'init_module', 'finit_module', 'mount', 'umount')";

/// A privilege row's outcome.
const PRIV_STATUS: Fields = &[
    ("status_id", "CAST(CASE WHEN result < 0 THEN 2 ELSE 1 END AS INT)"),
    ("status", "CASE WHEN result < 0 THEN 'Failure' ELSE 'Success' END"),
    ("status_detail", "error"),
];

/// The process that made the call, as the actor (with its ids then).
const PRIV_ACTOR: Fields = &[
    ("actor.process.pid", "CAST(pid AS INT)"),
    ("actor.process.uid", "CAST(exec_id AS VARCHAR)"),
    ("actor.process.name", "comm"),
    ("actor.process.user.uid", "CAST(uid AS VARCHAR)"),
    ("actor.user.uid", "CAST(uid AS VARCHAR)"),
];

/// Columns of every privilege row OCSF has no place for.
const PRIV_UNMAPPED: Fields = &[
    ("unmapped.kind", "kind"),
    ("unmapped.tid", "CAST(tid AS INT)"),
    ("unmapped.euid", "CAST(euid AS VARCHAR)"),
    ("unmapped.gid", "CAST(gid AS VARCHAR)"),
    ("unmapped.egid", "CAST(egid AS VARCHAR)"),
    ("unmapped.cap_effective", "CAST(cap_effective AS VARCHAR)"),
    ("unmapped.result", "result"),
];

pub const PRIVILEGE_CREDENTIALS: Mapping = Mapping {
    table: "privilege",
    class_dir: "process_activity",
    class_name: "Process Activity",
    class_uid: 1007,
    rows: Some(PRIV_CREDENTIALS),
    fields: &[
        &[
            ("class_uid", "CAST(1007 AS INT)"),
            ("category_uid", "CAST(1 AS INT)"),
            // OCSF has Set User ID; group and capability changes are Other.
            ("activity_id", "CAST(CASE WHEN kind LIKE '%uid' THEN 5 ELSE 99 END AS INT)"),
            ("activity_name", "CASE WHEN kind LIKE '%uid' THEN 'Set User ID' WHEN kind = 'capset' THEN 'Set Capabilities' ELSE 'Set Group ID' END"),
            ("type_uid", "CAST(100700 + CASE WHEN kind LIKE '%uid' THEN 5 ELSE 99 END AS BIGINT)"),
        ],
        COMMON,
        PRIV_STATUS,
        &[
            // The process whose ids change, with the real uid it asked for.
            ("process.pid", "CAST(pid AS INT)"),
            ("process.uid", "CAST(exec_id AS VARCHAR)"),
            ("process.name", "comm"),
            ("process.user.uid", "CAST(new_uid AS VARCHAR)"),
        ],
        pod_of!("process"),
        PRIV_ACTOR,
        POD_UNMAPPED,
        PRIV_UNMAPPED,
        &[
            ("unmapped.new_uid", "CAST(new_uid AS VARCHAR)"),
            ("unmapped.new_euid", "CAST(new_euid AS VARCHAR)"),
            ("unmapped.new_suid", "CAST(new_suid AS VARCHAR)"),
            ("unmapped.new_gid", "CAST(new_gid AS VARCHAR)"),
            ("unmapped.new_egid", "CAST(new_egid AS VARCHAR)"),
            ("unmapped.new_sgid", "CAST(new_sgid AS VARCHAR)"),
            ("unmapped.new_cap_effective", "CAST(new_cap_effective AS VARCHAR)"),
            ("unmapped.new_cap_permitted", "CAST(new_cap_permitted AS VARCHAR)"),
            ("unmapped.new_cap_inheritable", "CAST(new_cap_inheritable AS VARCHAR)"),
        ],
    ],
};

pub const PRIVILEGE_MODULES: Mapping = Mapping {
    table: "privilege",
    class_dir: "kernel_extension_activity",
    class_name: "Kernel Extension Activity",
    class_uid: 1002,
    rows: Some(PRIV_MODULES),
    fields: &[
        class!("1002", "1", "1", "'Load'"),
        COMMON,
        PRIV_STATUS,
        &[
            // finit_module names the module's file; init_module loads an
            // image from memory (OCSF's driver needs a file name all the same).
            ("driver.file.name", "CASE WHEN kind = 'finit_module' THEN coalesce(regexp_replace(file, '^.*/', ''), '') ELSE '[memory]' END"),
            ("driver.file.path", "CASE WHEN kind = 'finit_module' THEN file END"),
            ("driver.file.type_id", "CAST(CASE WHEN kind = 'finit_module' THEN 1 ELSE 0 END AS INT)"),
        ],
        PRIV_ACTOR,
        pod_of!("actor.process"),
        POD_UNMAPPED,
        PRIV_UNMAPPED,
        &[("unmapped.flags", "CAST(flags AS VARCHAR)"), ("unmapped.params", "CASE WHEN kind = 'init_module' THEN file END")],
    ],
};

pub const PRIVILEGE_MOUNTS: Mapping = Mapping {
    table: "privilege",
    class_dir: "file_activity",
    class_name: "File System Activity",
    class_uid: 1001,
    rows: Some(PRIV_MOUNTS),
    fields: &[
        &[
            ("class_uid", "CAST(1001 AS INT)"),
            ("category_uid", "CAST(1 AS INT)"),
            ("activity_id", "CAST(CASE kind WHEN 'mount' THEN 12 ELSE 13 END AS INT)"),
            ("activity_name", "CASE kind WHEN 'mount' THEN 'Mount' ELSE 'Unmount' END"),
            ("type_uid", "CAST(100100 + CASE kind WHEN 'mount' THEN 12 ELSE 13 END AS BIGINT)"),
        ],
        COMMON,
        PRIV_STATUS,
        &[
            // The mount point.
            ("file.name", "coalesce(regexp_replace(target, '^.*/', ''), '')"),
            ("file.path", "target"),
            ("file.type_id", "CAST(2 AS INT)"),
        ],
        PRIV_ACTOR,
        pod_of!("actor.process"),
        POD_UNMAPPED,
        PRIV_UNMAPPED,
        &[("unmapped.source", "source"), ("unmapped.fstype", "fstype"), ("unmapped.flags", "CAST(flags AS VARCHAR)")],
    ],
};

pub const PRIVILEGE_KERNEL: Mapping = Mapping {
    table: "privilege",
    class_dir: "kernel_activity",
    class_name: "Kernel Activity",
    class_uid: 1003,
    rows: Some(PRIV_KERNEL),
    fields: &[
        // A system call made (a refused capability check: Other).
        &[
            ("class_uid", "CAST(1003 AS INT)"),
            ("category_uid", "CAST(1 AS INT)"),
            ("activity_id", "CAST(CASE kind WHEN 'capability' THEN 99 ELSE 4 END AS INT)"),
            ("activity_name", "CASE kind WHEN 'capability' THEN 'Capability Check' ELSE 'Invoke' END"),
            ("type_uid", "CAST(100300 + CASE kind WHEN 'capability' THEN 99 ELSE 4 END AS BIGINT)"),
        ],
        COMMON,
        PRIV_STATUS,
        &[
            ("kernel.name", "CASE kind WHEN 'capability' THEN operation ELSE kind END"),
            ("kernel.type_id", "CAST(CASE kind WHEN 'capability' THEN 99 ELSE 2 END AS INT)"),
            ("kernel.type", "CASE kind WHEN 'capability' THEN 'Capability' ELSE 'System Call' END"),
            ("kernel.system_call", "CASE WHEN kind <> 'capability' THEN kind END"),
        ],
        PRIV_ACTOR,
        pod_of!("actor.process"),
        POD_UNMAPPED,
        PRIV_UNMAPPED,
        &[
            ("unmapped.operation", "operation"),
            ("unmapped.namespaces", "namespaces"),
            ("unmapped.flags", "CAST(flags AS VARCHAR)"),
            ("unmapped.target_pid", "CAST(target_pid AS INT)"),
            ("unmapped.bpf_type", "bpf_type"),
            ("unmapped.file", "file"),
        ],
    ],
};

pub const MAPPINGS: &[&Mapping] = &[
    &PROCESS_EXEC,
    &PROCESS_EXIT,
    &NET_CONN,
    &NET_FLOW,
    &DNS,
    &FILE,
    &PRIVILEGE_CREDENTIALS,
    &PRIVILEGE_MODULES,
    &PRIVILEGE_MOUNTS,
    &PRIVILEGE_KERNEL,
];

/// The classes a table's rows go to (none: the table is not exported as OCSF).
pub fn mappings_for(table: &str) -> Vec<&'static Mapping> {
    MAPPINGS.iter().copied().filter(|m| m.table == table).collect()
}

/// A tree of dotted paths: leaves are SQL expressions; a struct may carry the
/// condition under which it exists (a `?` value at its own path).
enum Node {
    Leaf(&'static str),
    Struct(Vec<(&'static str, Node)>, Option<&'static str>),
}

fn insert(children: &mut Vec<(&'static str, Node)>, path: &'static str, expr: &'static str) {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let Some(guard) = expr.strip_prefix('?') else {
        if rest.is_none() {
            children.push((path, Node::Leaf(expr)));
            return;
        }
        return insert_below(children, head, rest.unwrap_or_default(), expr);
    };
    match rest {
        Some(rest) => insert_below(children, head, rest, expr),
        None => {
            let idx = struct_at(children, head);
            if let Node::Struct(_, g) = &mut children[idx].1 {
                *g = Some(guard);
            }
        }
    }
}

fn insert_below(children: &mut Vec<(&'static str, Node)>, head: &'static str, rest: &'static str, expr: &'static str) {
    let idx = struct_at(children, head);
    match &mut children[idx].1 {
        Node::Struct(c, _) => insert(c, rest, expr),
        Node::Leaf(_) => unreachable!("struct_at returns structs"),
    }
}

/// The index of the struct `name` among `children`, added when absent.
fn struct_at(children: &mut Vec<(&'static str, Node)>, name: &'static str) -> usize {
    match children.iter().position(|(n, _)| *n == name) {
        Some(i) => {
            assert!(matches!(children[i].1, Node::Struct(..)), "OCSF mapping: {name} is both a value and a struct");
            i
        }
        None => {
            children.push((name, Node::Struct(Vec::new(), None)));
            children.len() - 1
        }
    }
}

/// A struct is null when its guard fails or every field is null (OCSF has
/// no empty objects); a constant field makes it always present.
fn render(node: &Node) -> String {
    match node {
        Node::Leaf(e) => (*e).to_owned(),
        Node::Struct(c, guard) => {
            let body = format!("named_struct({})", c.iter().map(|(n, v)| format!("'{n}', {}", render(v))).collect::<Vec<_>>().join(", "));
            let constant = c.iter().any(|(_, v)| matches!(v, Node::Leaf(e) if is_constant(e)));
            let mut absent: Vec<String> = guard.iter().map(|g| format!("NOT ({g})")).collect();
            if !constant {
                absent.push(c.iter().map(|(_, v)| format!("({}) IS NULL", render(v))).collect::<Vec<_>>().join(" AND "));
            }
            if absent.is_empty() { body } else { format!("CASE WHEN {} THEN NULL ELSE {body} END", absent.join(" OR ")) }
        }
    }
}

/// A literal, never null: `'text'`, a number, or a cast of one.
fn is_constant(e: &str) -> bool {
    let e = e.strip_prefix("CAST(").unwrap_or(e);
    e.starts_with('\'') || e.starts_with(|c: char| c.is_ascii_digit()) || e.starts_with("make_array('")
}

impl Mapping {
    /// Every (OCSF path, SQL expression), in output order.
    pub fn fields(&self) -> impl Iterator<Item = &'static (&'static str, &'static str)> + use<> {
        self.fields.iter().flat_map(|g| g.iter())
    }

    /// `SELECT ... FROM src`: one OCSF row per podtrail row, in the same order.
    pub fn sql(&self) -> String {
        let mut top = Vec::new();
        for (path, expr) in self.fields() {
            insert(&mut top, path, expr);
        }
        let cols: Vec<String> = top.iter().map(|(n, v)| format!("{} AS \"{n}\"", render(v))).collect();
        let filter = self.rows.map(|c| format!(" WHERE {c}")).unwrap_or_default();
        format!("SELECT {} FROM src{filter}", cols.join(", "))
    }
}

/// Convert one segment's rows (any schema version of the table) to the OCSF class
/// as Parquet bytes, with the number of events; the same rows give the same
/// bytes.
pub async fn convert(m: &Mapping, batches: Vec<RecordBatch>) -> Result<(Bytes, usize), String> {
    let def = podtrail_schema::tables::event_table(m.table).ok_or_else(|| format!("{} is not an event table", m.table))?;
    let batches = batches
        .iter()
        .map(|b| podtrail_schema::tables::conform(def, b))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", m.table))?;
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    let mem = MemTable::try_new(def.arrow_schema(), vec![batches]).map_err(|e| e.to_string())?;
    ctx.register_table("src", Arc::new(mem)).map_err(|e| e.to_string())?;
    let df = ctx.sql(&m.sql()).await.map_err(|e| format!("OCSF mapping of {}: {e}", m.table))?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let out = df.collect().await.map_err(|e| format!("OCSF mapping of {}: {e}", m.table))?;
    let events = out.iter().map(|b| b.num_rows()).sum();
    let bytes = podtrail_schema::lake::parquet_bytes(schema, &out).map_err(|e| format!("OCSF mapping of {} to {}: {e}", m.table, m.class_name))?;
    Ok((bytes, events))
}

/// The mapping as Markdown (`schema/OCSF.md`).
pub fn markdown() -> String {
    let mut s = format!(
        "# OCSF mapping\n\nGenerated by `podtrail schema --ocsf` from query/src/ocsf.rs; do not edit by hand.\n\n\
         `podtrail export --schema ocsf` writes one OCSF {OCSF_VERSION} event per podtrail row to\n\
         `<lake>/ocsf/<class>/date=YYYY-MM-DD/node=<node>/<segment-id>.parquet`. Nested fields are\n\
         Parquet structs; `unmapped` keeps podtrail columns OCSF has no attribute for. Every event\n\
         declares the `container` profile. OCSF integers (`integer_t`) are 32-bit, `long_t` and\n\
         timestamps (milliseconds) 64-bit; an object whose fields are all null is written as null.\n\
         `src_endpoint` is the side that began the connection or flow (the peer of an accepted\n\
         connection). Checked event by event against the OCSF schema by `tests/ocsf_validate.py`.\n\
         Files of one class written from different tables have different columns: read a class's\n\
         directory by column name (DuckDB `union_by_name=true`, Spark `mergeSchema`).\n\
         Each value is an SQL expression over the podtrail row (DataFusion dialect; `time` is ns).\n",
    );
    for m in MAPPINGS {
        s.push_str(&format!(
            "\n## `{}` → {} [{}] (`ocsf/{}`)\n\n| OCSF field | value |\n|---|---|\n",
            m.table, m.class_name, m.class_uid, m.class_dir
        ));
        for (path, expr) in m.fields() {
            let value = match expr.strip_prefix('?') {
                Some(cond) => format!("present only when `{}`", cond.replace('|', "\\|")),
                None => format!("`{}`", expr.replace('|', "\\|")),
            };
            s.push_str(&format!("| `{path}` | {value} |\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_reference_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/OCSF.md");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == markdown(),
            "schema/OCSF.md is stale: run `podtrail schema --ocsf > schema/OCSF.md`"
        );
    }

    #[test]
    fn paths_nest_into_structs() {
        let sql = PROCESS_EXIT.sql();
        assert!(
            sql.contains("named_struct('version', '1.1.0', 'profiles', make_array('container', 'host'), 'product', named_struct('name', 'podtrail', 'vendor_name', 'podtrail')) AS \"metadata\""),
            "{sql}"
        );
        // Every source column a mapping names exists in its table.
        for m in MAPPINGS {
            let def = podtrail_schema::tables::event_table(m.table).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let empty = RecordBatch::new_empty(def.arrow_schema());
            let (bytes, events) = rt.block_on(convert(m, vec![empty])).unwrap_or_else(|e| panic!("{} to {}: {e}", m.table, m.class_name));
            assert!(!bytes.is_empty() && events == 0);
        }
    }
}
