//! `podtraild run`: the stages wired in their order,
//! `probes -> decode -> procs -> identity -> batch -> segments` (and `metrics`).
//!
//! Startup order (here): open the store (checking the catalog, recovering what
//! a crash left) -> resume open identity intervals -> seed procs from /proc ->
//! load and attach probes -> seed the listeners already open -> start the ring
//! reader ([`reader`]) -> record this run -> the recording loop ([`pipeline`]).
//! SIGTERM/SIGINT: drain the ring buffers, flush, seal, exit 0.
//!
//! Once recording, nothing the store meets stops the loop: a write that fails
//! (disk full, I/O error) puts the store in its failing mode (rows held in
//! memory up to a bound, then counted as `disk` loss; every write retried), and
//! the ring buffers keep being drained.

mod pipeline;
mod reader;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::identity::{Identity, SOURCE_OBSERVED};
use crate::probes::{ProbeError, Probes};
use crate::procs::{ProcTable, boot_id};
use crate::segments::{SegmentError, SegmentStore, StoreConfig};

pub use crate::metrics::RunSummary;
pub use pipeline::MAX_PENDING_ROWS;
use pipeline::Pipeline;

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
    /// Trace the privilege and file syscalls (see `podtraild run --help`).
    pub syscall_tracepoints: bool,
    /// What the `file` table watches; None: not recorded (`--no-file-events`).
    pub file_watches: Option<crate::files::Watches>,
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
    Ship(podtrail_lake::LakeError),
    #[error(transparent)]
    Store(#[from] SegmentError),
    #[error("installing signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("starting the ring buffer reader thread: {0}")]
    Reader(std::io::Error),
    #[error("the ring buffer reader thread stopped while recording (see the log); nothing after this point was recorded")]
    ReaderGone,
    #[error("metrics endpoint {addr}: {source}")]
    Metrics { addr: std::net::SocketAddr, source: std::io::Error },
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
/// store's default, 64 MiB, suits bulk writers such as podtrail-synth): under
/// an event storm this bounds the recorder's RSS.
pub const RECORDER_SEGMENT_BYTES: usize = 16 << 20;

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
    if let Some(w) = &cfg.file_watches {
        // Rows name what they matched from the lists of this run.
        let _ = crate::files::ACTIVE.set(w.clone());
    }
    let mut probes = Probes::load(cfg.allow_partial, cfg.syscall_tracepoints, cfg.file_watches.as_ref(), &cgroup_root)?;
    // After attach: a listener opened since is the kernel side's, and kept.
    let listeners = probes.seed_listeners();
    tracing::info!(listeners.seeded = listeners, "TCP listeners already open found in /proc");
    // Parsing the kernel's BTF to load the programs took tens of MiB, now
    // free: hand it back (glibc keeps freed heap; BENCHMARKS.md, idle RSS).
    release_freed_memory();
    // What this run cannot record, for the readers (`podtrail profile` says
    // when capability profiling was unavailable rather than guess).
    let unavailable = serde_json::json!({ "since": now_ns(), "programs": probes.unavailable.iter().chain(probes.missing.iter()).collect::<Vec<_>>() });
    // Kept and retried by the store when the catalog cannot be written now.
    let _ = store.set_meta(podtrail_schema::catalog::META_CAPTURE_UNAVAILABLE, &unavailable.to_string());
    let _ = store.set_meta(crate::probes::META_PRIVILEGE_SYSCALLS, &serde_json::json!({ "since": now_ns(), "mode": probes.privilege_syscalls, "fentry_refused": probes.fentry_refused }).to_string());
    let watches = cfg.file_watches.as_ref().filter(|_| probes.file_events != "off");
    let _ = store.set_meta(
        crate::probes::META_FILE_EVENTS,
        &serde_json::json!({ "since": now_ns(), "mode": probes.file_events, "watch": watches.map(|w| &w.write), "watch_read": watches.map(|w| &w.read), "watch_name": watches.map(|w| &w.names) }).to_string(),
    );
    // Rows of this run come from these objects instead of the built-in ones.
    let _ = store.set_meta("bpf_objects_overridden", &serde_json::json!({ "since": now_ns(), "objects": probes.overridden }).to_string());
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    if let Some(addr) = cfg.metrics_addr {
        let bound = crate::metrics::serve(addr, std::sync::Arc::clone(&metrics)).map_err(|source| RunError::Metrics { addr, source })?;
        tracing::info!(metrics.addr = %bound, "serving Prometheus metrics");
    }
    // Kernel times are CLOCK_BOOTTIME; rows carry UTC wall time.
    let boot_to_wall = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME);
    let reader = probes.take_reader().expect("the ring buffers are taken once, here");
    let _ = metrics.rings.set(reader.gauges());
    let read_to = Arc::new(std::sync::atomic::AtomicI64::new(now_ns()));
    let (passes, reader_thread) = reader::spawn(reader, boot_to_wall, Arc::clone(&read_to)).map_err(RunError::Reader)?;
    tracing::info!(node = %cfg.node, "recording");
    // Recording from here: the run (and the end of the window a crashed run left).
    if let Err(e) = store.begin_run() {
        tracing::warn!(error = %e, "recording this run in the catalog failed; retried at every flush");
    }
    ready(&probes.missing);
    let pipeline = Pipeline {
        node: cfg.node.clone(),
        data_dir: cfg.data_dir.clone(),
        store,
        probes,
        procs,
        identity,
        metrics,
        shipper,
        boot_to_wall,
        cap_counters: Default::default(),
        flow_counters: Default::default(),
        flows_read: std::time::Instant::now(),
        kernel_loss: Default::default(),
        skipped_before: Default::default(),
        decode_errors: Default::default(),
        window_start: now_ns(),
    };
    let summary = pipeline.record(passes, reader_thread, read_to)?;
    tracing::info!(?summary, "stopped: drained, flushed and sealed");
    Ok(summary)
}
