//! `podtraild run`: the pipeline `probes -> decode -> procs -> identity -> batch -> segments`.
//!
//! Startup order: open the store (checking the catalog, recovering what a crash
//! left) -> record this run -> resume open identity intervals -> seed procs from
//! /proc -> load and attach probes -> loop. The loop polls the ring buffer, and
//! about once a second stamps the pending rows with their pod identity, appends
//! them, flushes the hot tail (rows are then durable and queryable), writes
//! changed identity intervals, seals aged segments and turns new kernel drops,
//! undecodable records and unresolved identities into `loss` rows, per table.
//! SIGTERM/SIGINT: drain the ring buffer, flush, seal, exit 0.
//!
//! Once recording, nothing the store meets stops the loop: a write that fails
//! (disk full, I/O error) puts the store in its failing mode (rows held in
//! memory up to a bound, then counted as `disk` loss; every write retried), and
//! the ring buffers keep being drained.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::batch::{Batcher, CapRow, ConnRow, ExecRow, ExitRow, PrivRow};
use crate::decode::{RawEvent, decode};
use crate::identity::{Identity, SOURCE_OBSERVED};
use crate::probes::{ProbeError, Probes};
use crate::procs::{ProcTable, boot_id};
use crate::segments::{LossRecord, SegmentError, SegmentStore, StoreConfig};
use crate::loss::KernelLoss;

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub data_dir: PathBuf,
    pub node: String,
    /// Record with whatever programs load instead of failing.
    pub allow_partial: bool,
    /// Serve Prometheus metrics here (off when None).
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub cri: CriChoice,
    /// Watch this node's pods on the Kubernetes API (off when None).
    pub kube: Option<crate::identity::kube::KubeChoice>,
    /// Trace the privilege syscalls (see `podtraild run --help`).
    pub syscall_tracepoints: bool,
    /// Ship sealed segments and identity snapshots to a lake (`--ship-to`).
    pub ship: Option<crate::ship::ShipConfig>,
    /// Remove the oldest sealed segments beyond this many bytes (`--disk-budget`).
    pub disk_budget_bytes: Option<u64>,
    /// Seal a segment once it spans this long (`--segment-max-age`; default 10 min).
    pub segment_max_age: Option<Duration>,
    /// Keep this many bytes free on the data dir's filesystem (`--min-free`);
    /// None: [`default_min_free`] of it.
    pub min_free_bytes: Option<u64>,
    /// Rows held in memory while the data dir cannot be written
    /// (`--write-buffer`); None: [`DEFAULT_WRITE_BUFFER`].
    pub write_buffer_bytes: Option<usize>,
}

/// Rows held in memory while the data dir cannot be written: three segments'
/// worth (RSS under a storm stays about one segment above idle).
pub const DEFAULT_WRITE_BUFFER: usize = 3 * RECORDER_SEGMENT_BYTES;

/// The free-space floor when none is given: 5 % of the data dir's filesystem,
/// at most 1 GiB (a small filesystem keeps most of itself for history; a large
/// one never gives up more than a gigabyte).
pub fn default_min_free(data_dir: &std::path::Path) -> Option<u64> {
    let (_, total) = crate::segments::filesystem_space(data_dir)?;
    Some((total / 20).min(1 << 30))
}

/// Which CRI runtime to ask for pod names, namespaces, labels and IPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CriChoice {
    /// The first of the usual containerd / CRI-O sockets that exists, if any.
    Auto,
    Socket(PathBuf),
    Off,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("--ship-to: {0}")]
    Ship(podtrail_schema::lake::LakeError),
    #[error(transparent)]
    Store(#[from] SegmentError),
    #[error("building a batch: {0}")]
    Batch(#[from] arrow::error::ArrowError),
    #[error("installing signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("starting the ring buffer reader thread: {0}")]
    Reader(std::io::Error),
    #[error("the ring buffer reader thread stopped while recording (see the log); nothing after this point was recorded")]
    ReaderGone,
    #[error("metrics endpoint {addr}: {source}")]
    Metrics { addr: std::net::SocketAddr, source: std::io::Error },
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RunSummary {
    pub exec_rows: u64,
    pub exit_rows: u64,
    pub conn_rows: u64,
    pub privilege_rows: u64,
    pub cap_usage_rows: u64,
    /// Events the kernel programs could not send (ring buffer or map full).
    pub kernel_drops: u64,
    /// Rows stored without part of their columns (kernel state gone), counted as `incomplete` loss.
    pub incomplete_rows: u64,
    pub decode_errors: u64,
    /// Rows not stored because the data dir could not be written (`disk` loss).
    pub disk_dropped_rows: u64,
    /// Writes to the data dir that failed (each retried).
    pub store_write_failures: u64,
    /// Rows whose cgroup could not be resolved to a path (pod columns null).
    pub identity_unresolved: u64,
    pub cgroup_walks: u64,
    pub cri_polls: u64,
    pub cri_errors: u64,
    /// Snapshots from the Kubernetes API source (one per pod change) and failed
    /// lists/watches.
    pub kube_updates: u64,
    pub kube_errors: u64,
    /// Shipping (`--ship-to`): segments uploaded, found already there, failed
    /// attempts, and sealed segments still waiting at exit.
    pub segments_shipped: u64,
    pub bytes_shipped: u64,
    pub segments_already_shipped: u64,
    pub ship_failures: u64,
    pub ship_backlog: u64,
    /// Per ring buffer (object name): the highest fraction of it holding unread
    /// records at any reader wakeup (1.0: the kernel was dropping records).
    pub ringbuf_fill_peak: std::collections::BTreeMap<String, f64>,
}

/// A previous run's intervals from a metadata source that is off now cannot be
/// followed any more: they end no later than now, rather than staying open for ever.
fn close_orphaned_intervals(store: &mut SegmentStore, source: &str) -> Result<(), RunError> {
    let (mut pods, mut containers, mut ips) = store.open_intervals(source)?;
    if !(pods.is_empty() && containers.is_empty() && ips.is_empty()) {
        let now = now_ns();
        pods.iter_mut().for_each(|p| p.valid_to = Some(now.max(p.valid_from)));
        containers.iter_mut().for_each(|c| c.valid_to = Some(now.max(c.valid_from)));
        ips.iter_mut().for_each(|i| i.valid_to = Some(now.max(i.valid_from)));
        tracing::warn!(source, pods = pods.len(), ip_owners = ips.len(), "closing the open intervals of a previous run at this start: that metadata source is off now");
        store.write_identity(&pods, &containers, &ips)?;
    }
    Ok(())
}

/// Return freed heap pages to the kernel. Once, after loading the programs:
/// after every seal it cost the bulk store a fifth of its ingest rate for a few
/// MiB of RSS.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Arrow memory of an open segment before it is sealed, in the recorder (the
/// store's default, 64 MiB, suits bulk writers such as podtrail-synth).
pub const RECORDER_SEGMENT_BYTES: usize = 16 << 20;

/// Rows held before a flush comes early (bounds memory under event storms).
/// At 50,000 rather than 25,000, a 50,000 rows/s storm flushes about once a
/// second, each flush filling half a segment, which is then sealed at once
/// instead of first written to the hot file (RSS max then ~97 MiB at that
/// rate, against ~90 at 25,000; BENCHMARKS.md, "A cheaper store").
pub const MAX_PENDING_ROWS: usize = 50_000;

/// Capability counter pairs kept before idle ones are pruned (map size 16384).
const CAP_KEYS_PRUNE_AT: usize = 12_000;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signals() -> Result<(), RunError> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let prev = unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
        if prev == libc::SIG_ERR {
            return Err(RunError::Signal(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

fn now_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Passes of raw records the reader may hold before it waits for the pipeline
/// (while it waits, the kernel's buffers fill, and what they cannot take is
/// counted as loss). A pass holds at most what the ring buffers held, decoded:
/// the kernel's buffers absorb bursts at a fraction of the memory, so the queue
/// is short (8 passes let RSS pass 300 MiB in an 85,000 rows/s storm).
const READER_QUEUE_PASSES: usize = 2;

/// How long the ring reader waits for the kernel's wakeup before draining
/// anyway: the most a trickle of events waits before it enters the pipeline.
/// Short, because a new pod's first event is what asks the CRI runtime for its
/// metadata: at 50 ms a pod whose container ran and was deleted within that
/// window could lose its container record (seen in identity_e2e).
const READER_POLL_MS: i32 = 10;

/// The wait after a busy pass (at least [`BUSY_PASS_RECORDS`] records): under a
/// storm the 10 ms timeout only cut passes short: ~100 passes a second, each
/// waking this thread and the pipeline's (209 -> 83 wakeups a second at 50,000
/// rows/s). Now a storm is read 20 times a second, or at the kernel's wakeup
/// (PT_WAKEUP_BYTES pooled: about every 120 ms at 50,000 connection rows/s,
/// every 36 ms at 160,000) when that comes first. The price: while a storm of 25,000+
/// events/s goes on, a new pod's first event may reach the pipeline up to 50 ms
/// after it happened instead of 10 (see [`READER_POLL_MS`]); a trickle never
/// makes a busy pass.
const READER_POLL_BUSY_MS: i32 = 50;

/// A pass this large means a storm (25,000 events/s at 10 ms passes); the
/// reader goes back to the short wait when passes fall below it (5,000 events/s
/// at 50 ms).
const BUSY_PASS_RECORDS: usize = 256;

/// One drain of the ring buffers, decoded. Connections, the bulk of a storm,
/// are decoded straight into rows (wall time set, `exec_id` and identity not
/// yet): each is written once here and moved into the batcher in bulk, never
/// one by one through an enum of every event kind.
#[derive(Default)]
struct Pass {
    events: Vec<RawEvent>,
    conns: Vec<ConnRow>,
    /// Records that did not decode, per table their kind names (counted as
    /// loss, never guessed into rows).
    decode_errors: std::collections::BTreeMap<Option<&'static str>, u64>,
}

impl Pass {
    /// Move this pass to the end of `into`.
    fn take_into(mut self, into: &mut Pass) {
        move_all(&mut self.events, &mut into.events);
        move_all(&mut self.conns, &mut into.conns);
        for (table, n) in self.decode_errors {
            *into.decode_errors.entry(table).or_default() += n;
        }
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.conns.is_empty() && self.decode_errors.is_empty()
    }
}

/// Move `from`'s items to the end of `to` (no copy when `to` is empty).
fn move_all<T>(from: &mut Vec<T>, to: &mut Vec<T>) {
    if to.is_empty() {
        std::mem::swap(from, to);
    } else {
        to.append(from);
    }
}

/// Apply decoded events in kernel time order: the process table follows
/// exec/fork/exit, and rows go to the batcher. A connection's `exec_id` is
/// the image its process ran at the connection's time: each connection is
/// given it before any later process event is applied. At the same nanosecond
/// the connection comes first, as it did when both were one sorted list (the
/// reader drains connections before process events). Rows are not stamped with
/// identity here.
fn apply(mut events: Vec<RawEvent>, mut conns: Vec<ConnRow>, procs: &mut ProcTable, batcher: &mut Batcher, boot_to_wall: i64) {
    // Several ring buffers: restore kernel order (stable: ties keep the order
    // in which the buffers gave them). A pass of one buffer is nearly always in
    // order already: then this is one scan (the sort's scratch space is not
    // even allocated).
    let time_of = |ev: &RawEvent| match ev {
        RawEvent::Exec(e) => e.time_boot_ns,
        RawEvent::Exit(e) => e.time_boot_ns,
        RawEvent::Fork(f) => f.time_boot_ns,
        RawEvent::Conn(c) => c.time_boot_ns,
        RawEvent::Priv(p) => p.time_boot_ns,
    };
    if !events.is_sorted_by_key(time_of) {
        events.sort_by_key(time_of);
    }
    if !conns.is_sorted_by_key(|c| c.raw.time_boot_ns) {
        conns.sort_by_key(|c| c.raw.time_boot_ns);
    }
    // Connections before `until` (kernel time) get their exec_id from the
    // table as it is. Runs of one pid (a storm) look it up once.
    let mut next = 0;
    let mut own = |procs: &ProcTable, until: u64| {
        let mut last: Option<(u32, Option<u64>)> = None;
        while let Some(c) = conns.get_mut(next).filter(|c| c.raw.time_boot_ns < until) {
            if let Some((pid, _)) = c.raw.owner {
                c.exec_id = match last {
                    Some((p, id)) if p == pid => id,
                    _ => procs.current(pid).map(|i| i.exec_id),
                };
                last = Some((pid, c.exec_id));
            }
            next += 1;
        }
    };
    for ev in events {
        own(procs, time_of(&ev).saturating_add(1));
        match ev {
            RawEvent::Exec(e) => {
                let (img, parent) = procs.on_exec(&e);
                batcher.exec.push(ExecRow {
                    time: e.time_boot_ns as i64 + boot_to_wall,
                    exec_id: img.exec_id,
                    parent_exec_id: parent,
                    cwd: Some(e.cwd.clone()),
                    identity: None, // stamped by the identity stage
                    raw: e,
                });
            }
            RawEvent::Exit(e) => {
                let img = procs.on_exit(&e);
                batcher.exit.push(ExitRow {
                    time: e.time_boot_ns as i64 + boot_to_wall,
                    exec_id: img.map(|i| i.exec_id),
                    duration_ns: img.map(|i| e.time_boot_ns.saturating_sub(i.start_boot_ns)),
                    identity: None,
                    raw: e,
                });
            }
            RawEvent::Fork(f) => procs.on_fork(&f),
            RawEvent::Conn(c) => {
                // Not from the reader (it decodes connections into rows), kept
                // for completeness: a row like any other.
                let exec_id = c.owner.as_ref().and_then(|o| procs.current(o.0)).map(|i| i.exec_id);
                batcher.conn.push(ConnRow { time: c.time_boot_ns as i64 + boot_to_wall, exec_id, identity: None, raw: c });
            }
            RawEvent::Priv(p) => {
                let exec_id = procs.current(p.pid).map(|i| i.exec_id);
                batcher.privs.push(PrivRow { time: p.time_boot_ns as i64 + boot_to_wall, exec_id, identity: None, raw: p });
            }
        }
    }
    own(procs, u64::MAX);
    // Appended even when the batcher has no rows: its vector keeps the
    // capacity of earlier flushes (taking this pass's smaller one would regrow
    // it by doubling every flush: more copies, and RSS 100 -> 120 MiB at
    // 50,000 rows/s).
    batcher.conn.append(&mut conns);
}

/// Drain the kernel's ring buffers and decode on a thread of their own: they
/// keep emptying while the pipeline builds and writes a flush. Each pass is sent
/// as one [`Pass`]. After STOP the thread drains once more and ends, closing the
/// channel.
/// `read_to`: set after each pass is sent to the time (wall clock, ns) the pass
/// began draining: every event before it was in that pass or an earlier one.
fn spawn_ring_reader(mut reader: crate::probes::RingReader, boot_to_wall: i64, read_to: std::sync::Arc<std::sync::atomic::AtomicI64>) -> std::io::Result<(mpsc::Receiver<Pass>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel(READER_QUEUE_PASSES);
    let handle = std::thread::Builder::new().name("ring-reader".into()).spawn(move || {
        let mut errors_total = 0u64;
        // Sized like the previous pass: decoded events are large, and growing
        // the vector by doubling moved each of them about twice more.
        let (mut last_events, mut last_conns) = (0usize, 0usize);
        loop {
            let stopping = STOP.load(Ordering::SeqCst);
            let sized = |last: usize| (last + last / 4).min(1 << 16);
            let mut pass = Pass { events: Vec::with_capacity(sized(last_events)), conns: Vec::with_capacity(sized(last_conns)), decode_errors: Default::default() };
            let mut take = |rec: &[u8]| match decode(rec) {
                Ok(RawEvent::Conn(c)) => pass.conns.push(ConnRow { time: c.time_boot_ns as i64 + boot_to_wall, exec_id: None, identity: None, raw: c }),
                Ok(ev) => pass.events.push(ev),
                Err(err) => {
                    *pass.decode_errors.entry(crate::decode::table_of_record(rec)).or_default() += 1;
                    errors_total += 1;
                    if errors_total.is_power_of_two() {
                        tracing::warn!(len = rec.len(), errors.total = errors_total, "undecodable kernel record: {err}");
                    }
                }
            };
            // The kernel wakes us only once PT_WAKEUP_BYTES are pooled
            // (ebpf/include/common.h); a trickle is read at the timeout.
            let wait = match (stopping, last_events + last_conns >= BUSY_PASS_RECORDS) {
                (true, _) => 0,
                (false, true) => READER_POLL_BUSY_MS,
                (false, false) => READER_POLL_MS,
            };
            // Before the wait: events older than this are read by this pass.
            let began = now_ns();
            reader.poll(wait, &mut take);
            (last_events, last_conns) = (pass.events.len(), pass.conns.len());
            if !pass.is_empty() && tx.send(pass).is_err() {
                return; // the pipeline is gone
            }
            read_to.store(began, Ordering::Release);
            if stopping {
                return;
            }
        }
    })?;
    Ok((rx, handle))
}

/// Record until SIGTERM/SIGINT. `ready` is called once everything is attached.
pub fn run(cfg: RunConfig, ready: impl FnOnce(&[String])) -> Result<RunSummary, RunError> {
    crate::probes::check_privileges()?;
    install_signals()?;
    let mut store_cfg = StoreConfig::new(&cfg.data_dir, &cfg.node);
    store_cfg.disk_budget_bytes = cfg.disk_budget_bytes;
    // An open segment's rows stay in memory until it is sealed (they are also in
    // its hot file): under an event storm this bounds the recorder's RSS.
    store_cfg.max_segment_bytes = RECORDER_SEGMENT_BYTES;
    store_cfg.ship_target = cfg.ship.as_ref().map(|s| s.target.to_string());
    if let Some(age) = cfg.segment_max_age {
        store_cfg.max_segment_age = age;
    }
    store_cfg.min_free_bytes = cfg.min_free_bytes.or_else(|| default_min_free(&cfg.data_dir));
    store_cfg.max_buffered_bytes = cfg.write_buffer_bytes.unwrap_or(DEFAULT_WRITE_BUFFER);
    let (mut store, recovery) = SegmentStore::open(store_cfg)?;
    tracing::info!(?recovery, data_dir = %cfg.data_dir.display(), min_free_bytes = ?store.config().min_free_bytes, "store open");
    // After the store: the catalog exists (and is migrated) before the shipper opens it.
    let shipper = match &cfg.ship {
        Some(ship) => Some(crate::ship::Shipper::start(ship.clone(), cfg.data_dir.clone(), cfg.node.clone()).map_err(RunError::Ship)?),
        None => None,
    };
    let cgroup_root = crate::probes::cgroup2_mount(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()).ok_or(ProbeError::NoCgroup2)?;
    let mut identity = Identity::new(cgroup_root.clone(), cfg.node.clone(), crate::identity::host_netns());
    let (pods, containers, ips) = store.open_intervals(SOURCE_OBSERVED)?;
    tracing::info!(pods.open = pods.len(), ip_owners.open = ips.len(), "identity intervals resumed");
    identity.resume(pods, containers, ips);
    let socket = match &cfg.cri {
        CriChoice::Off => None,
        CriChoice::Socket(p) => Some(p.clone()),
        CriChoice::Auto => crate::identity::cri::DEFAULT_SOCKETS.iter().map(PathBuf::from).find(|p| p.exists()),
    };
    match socket {
        Some(socket) => {
            identity.with_cri(socket);
            let (pods, containers, ips) = store.open_intervals(crate::identity::cri::SOURCE_CRI)?;
            identity.resume_source(crate::identity::cri::SOURCE_CRI, pods, containers, ips);
        }
        None => {
            if cfg.kube.is_none() {
                tracing::info!("no CRI socket and no Kubernetes API: pods are identified by their cgroup path (UID), without names");
            }
            close_orphaned_intervals(&mut store, crate::identity::cri::SOURCE_CRI)?;
        }
    }
    match &cfg.kube {
        Some(choice) => {
            identity.with_kube(choice.clone());
            let (pods, containers, ips) = store.open_intervals(crate::identity::kube::SOURCE_KUBE)?;
            identity.resume_source(crate::identity::kube::SOURCE_KUBE, pods, containers, ips);
        }
        None => close_orphaned_intervals(&mut store, crate::identity::kube::SOURCE_KUBE)?,
    }
    let mut procs = ProcTable::new(boot_id());
    let seeded = procs.seed_from_proc();
    tracing::info!(procs.seeded = seeded, "process table seeded from /proc");
    let mut probes = Probes::load(cfg.allow_partial, cfg.syscall_tracepoints, &cgroup_root)?;
    // Parsing the kernel's BTF to load the programs took tens of MiB, now free:
    // hand it back (glibc keeps freed heap), idle RSS 85 -> 42 MiB.
    release_freed_memory();
    // What this run cannot record, for the readers (`podtrail profile` says
    // when capability profiling was unavailable rather than guess).
    let unavailable = serde_json::json!({ "since": now_ns(), "programs": probes.unavailable.iter().chain(probes.missing.iter()).collect::<Vec<_>>() });
    // Kept and retried by the store when the catalog cannot be written now.
    let _ = store.set_meta(podtrail_schema::catalog::META_CAPTURE_UNAVAILABLE, &unavailable.to_string());
    let _ = store.set_meta(crate::probes::META_PRIVILEGE_SYSCALLS, &serde_json::json!({ "since": now_ns(), "mode": probes.privilege_syscalls, "fentry_refused": probes.fentry_refused }).to_string());
    // Rows of this run come from these objects instead of the built-in ones.
    let _ = store.set_meta("bpf_objects_overridden", &serde_json::json!({ "since": now_ns(), "objects": probes.overridden }).to_string());
    let mut cap_counters = crate::privilege::CapCounters::default();
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    if let Some(addr) = cfg.metrics_addr {
        let bound = crate::metrics::serve(addr, std::sync::Arc::clone(&metrics)).map_err(|source| RunError::Metrics { addr, source })?;
        tracing::info!(metrics.addr = %bound, "serving Prometheus metrics");
    }
    // Kernel times are CLOCK_BOOTTIME; rows carry UTC wall time.
    let boot_to_wall = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME);
    let mut summary = RunSummary::default();
    let mut batcher = Batcher::default();
    // The passes taken since the last loop, decoded.
    let mut taken = Pass::default();
    let reader = probes.take_reader().expect("the ring buffers are taken once, here");
    let _ = metrics.rings.set(reader.gauges());
    let read_to = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(now_ns()));
    let (passes, reader_thread) = spawn_ring_reader(reader, boot_to_wall, std::sync::Arc::clone(&read_to)).map_err(RunError::Reader)?;
    let mut reader_thread = Some(reader_thread);
    let mut kernel_loss = KernelLoss::default();
    // Per program: the kernel's count of its skipped runs already recorded.
    let mut skipped_before: std::collections::HashMap<(&'static str, &'static str), u64> = std::collections::HashMap::new();
    let mut window_start = now_ns();
    let mut last_tick = Instant::now();
    let mut decode_errors_window: std::collections::BTreeMap<Option<&'static str>, u64> = Default::default();
    tracing::info!(node = %cfg.node, "recording");
    // Recording from here: the run (and the end of the window a crashed run left).
    if let Err(e) = store.begin_run() {
        tracing::warn!(error = %e, "recording this run in the catalog failed; retried at every flush");
    }
    ready(&probes.missing);

    loop {
        let stopping = STOP.load(Ordering::SeqCst);
        // Read before the passes are taken: every event older than it is in
        // them (the reader publishes it after sending its pass).
        let received_to = read_to.load(Ordering::Acquire);
        if stopping {
            // The reader drains the kernel's buffers once more after STOP and
            // ends: take everything it sent until then.
            for pass in passes.iter() {
                pass.take_into(&mut taken);
            }
            // The channel closed: the thread has ended.
            if let Some(Err(e)) = reader_thread.take().map(|h| h.join()) {
                tracing::error!("ring buffer reader panicked: {e:?}");
            }
        } else {
            match passes.recv_timeout(Duration::from_millis(100)) {
                Ok(pass) => pass.take_into(&mut taken),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // The reader ends after STOP, which the next pass sees.
                Err(mpsc::RecvTimeoutError::Disconnected) if STOP.load(Ordering::SeqCst) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(RunError::ReaderGone),
            }
            while let Ok(pass) = passes.try_recv() {
                pass.take_into(&mut taken);
            }
        }
        let Pass { events, conns, decode_errors } = std::mem::take(&mut taken);
        for (table, n) in decode_errors {
            *decode_errors_window.entry(table).or_default() += n;
        }
        apply(events, conns, &mut procs, &mut batcher, boot_to_wall);
        identity.stamp(&mut batcher, now_ns(), false);
        identity.refresh_waiting(now_ns());
        // Once a second, or sooner under a storm: pending rows are memory.
        // (Rows held for pod names count too: at most one early flush per 100 ms.)
        let since_tick = last_tick.elapsed();
        if stopping || since_tick >= Duration::from_secs(1) || (batcher.pending() >= MAX_PENDING_ROWS && since_tick >= Duration::from_millis(100)) {
            last_tick = Instant::now();
            for delta in cap_counters.diff(probes.cap_usage()) {
                batcher.caps.push(CapRow {
                    time: delta.last_boot_ns as i64 + boot_to_wall,
                    first_seen: delta.first_boot_ns as i64 + boot_to_wall,
                    identity: None,
                    delta,
                });
            }
            if cap_counters.len() > CAP_KEYS_PRUNE_AT {
                // The kernel map holds at most 16384 pairs: forget the ones idle
                // for ten minutes (their counts are already in rows).
                let stale = cap_counters.stale((clock_ns(libc::CLOCK_BOOTTIME) as u64).saturating_sub(600_000_000_000));
                probes.forget_cap_usage(&stale);
                stale.iter().for_each(|k| cap_counters.forget(k));
            }
            let now = now_ns();
            identity.stamp(&mut batcher, now, true);
            identity.name_pending(&mut batcher, now);
            // Rows of a pod the runtime has not reported yet wait (a few seconds at
            // most) for its name; at shutdown nothing waits.
            // (When no pod waits, the rows are not even looked at.)
            let wait = |id: Option<&crate::batch::PodIdentity>| identity.should_wait(id, now);
            let hold = (!stopping && identity.may_hold()).then_some(&wait as crate::batch::Hold<'_>);
            let held_before = batcher.pending();
            let mut refused: Vec<LossRecord> = Vec::new();
            match batcher.take_except(&cfg.node, hold) {
                Ok(batches) => {
                    for (table, batch) in batches {
                        let n = batch.num_rows() as u64;
                        let counter = match table {
                            "process_exec" => (&mut summary.exec_rows, &metrics.exec_rows),
                            "process_exit" => (&mut summary.exit_rows, &metrics.exit_rows),
                            "privilege" => (&mut summary.privilege_rows, &metrics.privilege_rows),
                            "cap_usage" => (&mut summary.cap_usage_rows, &metrics.cap_usage_rows),
                            _ => (&mut summary.conn_rows, &metrics.conn_rows),
                        };
                        *counter.0 += n;
                        counter.1.fetch_add(n, Ordering::Relaxed);
                        // Only a batch not of its table's schema is refused (a bug): counted, not fatal.
                        if let Err(e) = store.append(table, batch) {
                            tracing::error!(table, rows = n, error = %e, "the store refused a batch");
                            refused.push(LossRecord { source: "decode".into(), table_name: Some(table.into()), count: Some(n), detail: Some(format!("rows the store refused: {e}")), ..LossRecord::default() });
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "building a batch failed: its rows are lost");
                    let lost = held_before.saturating_sub(batcher.pending()) as u64;
                    refused.push(LossRecord { source: "decode".into(), count: Some(lost), detail: Some(format!("rows lost building a batch: {e}")), ..LossRecord::default() });
                }
            }
            // Every event before this is in the store now, or counted: what a
            // durable flush records as the run's last durable flush.
            store.set_watermark(batcher.oldest_time().map_or(received_to, |t| t.min(received_to)));
            // A failing store keeps its rows (up to a bound) and retries; it
            // logged the failure when it began.
            if let Err(e) = store.flush() {
                tracing::debug!(error = %e, "flush incomplete");
            }
            let writes = identity.tick(now_ns());
            if !writes.is_empty() {
                let _ = store.write_identity(&writes.pods, &writes.containers, &writes.ips);
            }
            let ids = identity.stats();
            metrics.identity_unresolved.store(ids.unresolved_rows, Ordering::Relaxed);
            metrics.tracked_pods.store(ids.open_pods as u64, Ordering::Relaxed);
            metrics.cri_errors.store(ids.cri_errors, Ordering::Relaxed);
            metrics.kube_errors.store(ids.kube_errors, Ordering::Relaxed);
            summary.identity_unresolved = ids.unresolved_rows;
            summary.cgroup_walks = ids.cgroup_walks;
            summary.cri_polls = ids.cri_polls;
            summary.cri_errors = ids.cri_errors;
            summary.kube_updates = ids.kube_updates;
            summary.kube_errors = ids.kube_errors;
            let sealed = store.seal_aged().unwrap_or_default();
            if let Some(sh) = &shipper {
                if !sealed.is_empty() {
                    sh.nudge();
                }
                let ss = sh.stats();
                metrics.segments_shipped.store(ss.segments_shipped.load(Ordering::Relaxed), Ordering::Relaxed);
                metrics.ship_failures.store(ss.failures.load(Ordering::Relaxed), Ordering::Relaxed);
                metrics.ship_backlog.store(ss.backlog.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            let st = store.stats();
            metrics.segments_sealed.store(st.segments_sealed, Ordering::Relaxed);
            metrics.bytes_sealed.store(st.bytes_sealed, Ordering::Relaxed);
            metrics.hot_flushes.store(st.hot_flushes, Ordering::Relaxed);
            metrics.disk_dropped_rows.store(st.rows_dropped_disk, Ordering::Relaxed);
            metrics.store_write_failures.store(st.write_failures, Ordering::Relaxed);
            summary.disk_dropped_rows = st.rows_dropped_disk;
            summary.store_write_failures = st.write_failures;
            let ws = store.write_state();
            metrics.store_failing.store(u64::from(ws.failing_since.is_some()), Ordering::Relaxed);
            metrics.store_buffered_bytes.store(ws.buffered_bytes, Ordering::Relaxed);
            metrics.disk_free_bytes.store(crate::segments::free_bytes(&cfg.data_dir).unwrap_or(0), Ordering::Relaxed);
            let window_end = now_ns();
            let window = |l: LossRecord| LossRecord { time_from: window_start, time_to: window_end, ..l };
            for l in refused {
                store.record_loss(&window(l)).ok();
            }
            let counts = probes.drop_counts(kernel_loss.last());
            for (reason, pod_uid, n) in kernel_loss.update(counts, |cg| identity.pod_of_cgroup(cg, window_end)) {
                let what = &crate::probes::DROP_REASONS[reason];
                if what.source == "incomplete" {
                    summary.incomplete_rows += n;
                } else {
                    summary.kernel_drops += n;
                    metrics.kernel_drops.fetch_add(n, Ordering::Relaxed);
                }
                let l = LossRecord { source: what.source.into(), table_name: what.table.map(Into::into), count: Some(n), detail: Some(what.detail.into()), pod_uid, ..LossRecord::default() };
                store.record_loss(&window(l)).ok();
            }
            for skipped in probes.skipped_runs() {
                let seen = skipped_before.entry((skipped.object, skipped.program)).or_default();
                let n = skipped.runs.saturating_sub(*seen);
                *seen = skipped.runs;
                if n == 0 {
                    continue;
                }
                summary.kernel_drops += n;
                metrics.kernel_drops.fetch_add(n, Ordering::Relaxed);
                let table = crate::probes::table_of_program(skipped.program).flatten();
                let detail = format!(
                    "runs of {} ({}) the kernel skipped: it was already running on that CPU when an interrupt hit its hook again; each skipped run may have been a row (at most this many)",
                    skipped.program, skipped.object
                );
                let l = LossRecord { source: "kernel_skipped".into(), table_name: table.map(Into::into), count: Some(n), detail: Some(detail), ..LossRecord::default() };
                store.record_loss(&window(l)).ok();
            }
            for (table, unresolved) in identity.take_unresolved() {
                let detail = "rows stored without pod identity: their cgroup was removed before it could be resolved";
                let l = LossRecord { source: "identity".into(), table_name: Some(table.into()), count: Some(unresolved), detail: Some(detail.into()), ..LossRecord::default() };
                store.record_loss(&window(l)).ok();
            }
            for (table, n) in std::mem::take(&mut decode_errors_window) {
                summary.decode_errors += n;
                metrics.decode_errors.fetch_add(n, Ordering::Relaxed);
                let detail = "kernel records that did not decode (kind, length or a field out of range): no row";
                let l = LossRecord { source: "decode".into(), table_name: table.map(Into::into), count: Some(n), detail: Some(detail.into()), ..LossRecord::default() };
                store.record_loss(&window(l)).ok();
            }
            window_start = window_end;
        }
        if stopping {
            break;
        }
    }
    store.close()?;
    if let Some(sh) = shipper {
        let ss = sh.stats();
        sh.stop();
        summary.segments_shipped = ss.segments_shipped.load(Ordering::Relaxed);
        summary.bytes_shipped = ss.bytes_shipped.load(Ordering::Relaxed);
        summary.segments_already_shipped = ss.segments_already_there.load(Ordering::Relaxed);
        summary.ship_failures = ss.failures.load(Ordering::Relaxed);
        summary.ship_backlog = ss.backlog.load(Ordering::Relaxed);
    }
    tracing::info!(?summary, "stopped: drained, flushed and sealed");
    for r in metrics.rings.get().map(Vec::as_slice).unwrap_or_default() {
        summary.ringbuf_fill_peak.insert(r.object.to_string(), r.peak_fill());
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{ConnRaw, ExecRaw, ExitRaw, ForkRaw};

    fn exec(pid: u32, t: u64) -> RawEvent {
        RawEvent::Exec(ExecRaw { pid, tid: pid, ppid: 1, uid: 0, gid: 0, netns: 0, time_boot_ns: t, cgroup_id: 1, cap_effective: 0, comm: "x".into(), filename: "/x".into(), args: vec![], args_truncated: false, fileless: false, cwd: "/".into() })
    }

    fn conn(pid: Option<u32>, t: u64, boot_to_wall: i64) -> ConnRow {
        ConnRow { time: t as i64 + boot_to_wall, raw: ConnRaw::localhost(t, 1, pid), exec_id: None, identity: None }
    }

    /// (kernel time, exec_id) of the batcher's connection rows, in their order.
    fn owners(b: &Batcher) -> Vec<(u64, Option<u64>)> {
        b.conn.iter().map(|c| (c.raw.time_boot_ns, c.exec_id)).collect()
    }

    #[test]
    fn a_connection_gets_the_image_its_process_ran_at_its_time() {
        let mut procs = ProcTable::new(7);
        let mut b = Batcher::default();
        // pid 10 execs at 100 and again at 300 (in place), exits at 500; pid 11
        // is forked from it at 200. Connections come in reader order, unsorted.
        let events = vec![
            exec(10, 100),
            RawEvent::Fork(ForkRaw { parent_pid: 10, child_pid: 11, time_boot_ns: 200 }),
            exec(10, 300),
            RawEvent::Exit(ExitRaw { pid: 10, time_boot_ns: 500, cgroup_id: 1, exit_code: 0, signal: 0, comm: "x".into() }),
        ];
        let conns = [50, 150, 250, 300, 301, 600].into_iter().map(|t| conn(Some(10), t, 1_000)).chain([conn(Some(11), 250, 1_000), conn(None, 260, 1_000)]).rev().collect();
        apply(events, conns, &mut procs, &mut b, 1_000);
        let first = b.exec[0].exec_id;
        let second = b.exec[1].exec_id;
        assert_ne!(first, second);
        let got: Vec<(u64, Option<u64>)> = owners(&b);
        assert_eq!(
            got,
            vec![
                (50, None),           // before any exec this table saw
                (150, Some(first)),   // after the first exec
                (250, Some(first)),   // pid 11 (the forked child): runs its parent's image
                (250, Some(first)),   // pid 10
                (260, None),          // no owner: nothing looked up
                (300, Some(first)),   // an exec of the same nanosecond applies after it
                (301, Some(second)),
                (600, None),          // after the exit
            ]
        );
        assert!(b.conn.iter().all(|c| c.time == c.raw.time_boot_ns as i64 + 1_000));
        // A second pass appends after the rows already waiting.
        apply(vec![exec(10, 700)], vec![conn(Some(10), 701, 1_000)], &mut procs, &mut b, 1_000);
        assert_eq!(b.conn.len(), 9);
        assert_eq!(owners(&b)[8], (701, Some(b.exec[2].exec_id)));
    }
}
