//! The recording loop: the stages in their order, for every pass of the ring
//! reader ([`Pipeline::pass`]: procs, then identity), and about once a second
//! ([`Pipeline::tick`]: identity releases rows, batch builds them, segments
//! stores them; then [`Pipeline::losses`] records what was lost since the last
//! tick). Nothing the store meets stops the loop: a failing store keeps its rows
//! to a bound, counts the rest and retries (see `segments`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::identity::Identity;
use crate::loss::KernelLoss;
use crate::metrics::{Metrics, RunSummary};
use crate::flows::{FLOW_READ_INTERVAL, FlowCounters};
use crate::privilege::CapCounters;
use crate::probes::Probes;
use crate::procs::ProcTable;
use crate::rows::{CapRow, FlowRow, RowSet};
use crate::segments::{LossRecord, SegmentStore};
use crate::ship::Shipper;

use super::reader::Pass;
use super::{RunError, STOP, clock_ns, now_ns};

/// Rows held before a flush comes early (bounds memory under event storms):
/// about a second of a 50,000 rows/s storm, each flush filling half a segment,
/// which is then sealed at once instead of first written to the hot file
/// (BENCHMARKS.md, "A cheaper store").
pub const MAX_PENDING_ROWS: usize = 50_000;

/// Capability counter pairs kept before idle ones are pruned (map size 16384).
const CAP_KEYS_PRUNE_AT: usize = 12_000;

pub(super) struct Pipeline {
    pub node: String,
    pub data_dir: std::path::PathBuf,
    pub store: SegmentStore,
    pub probes: Probes,
    pub procs: ProcTable,
    pub identity: Identity,
    pub metrics: Arc<Metrics>,
    pub shipper: Option<Shipper>,
    /// Kernel times are CLOCK_BOOTTIME; rows carry UTC wall time.
    pub boot_to_wall: i64,
    pub cap_counters: CapCounters,
    /// The UDP/ICMP flow counters as last read, and when.
    pub flow_counters: FlowCounters,
    pub flows_read: Instant,
    pub kernel_loss: KernelLoss,
    /// Per program: the kernel's count of its skipped runs already recorded.
    pub skipped_before: HashMap<(&'static str, &'static str), u64>,
    /// Undecodable records since the last tick, per table.
    pub decode_errors: BTreeMap<Option<&'static str>, u64>,
    /// Start of the window the next loss rows cover.
    pub window_start: i64,
}

impl Pipeline {
    /// Record until STOP: take the reader's passes, tick about once a second
    /// (sooner under a storm), and at STOP drain the reader, tick once more and
    /// close the store (seal everything, record how the run ended).
    pub fn record(mut self, passes: mpsc::Receiver<Pass>, reader_thread: std::thread::JoinHandle<()>, read_to: Arc<AtomicI64>) -> Result<RunSummary, RunError> {
        let mut reader_thread = Some(reader_thread);
        let mut taken = Pass::default();
        let mut last_tick = Instant::now();
        loop {
            let stopping = STOP.load(Ordering::SeqCst);
            // Read before the passes are taken: every event older than it is in
            // them (the reader publishes it after sending its pass).
            let received_to = read_to.load(Ordering::Acquire);
            if stopping {
                // The reader drains the kernel's buffers once more after STOP
                // and ends: take everything it sent until then.
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
            self.pass(std::mem::take(&mut taken));
            // Once a second, or sooner under a storm: pending rows are memory.
            // (Rows held for pod names count too: at most one early flush per 100 ms.)
            let since_tick = last_tick.elapsed();
            if stopping || since_tick >= Duration::from_secs(1) || (self.identity.pending() >= MAX_PENDING_ROWS && since_tick >= Duration::from_millis(100)) {
                last_tick = Instant::now();
                self.tick(stopping, received_to);
                self.losses();
            }
            if stopping {
                break;
            }
        }
        let Pipeline { store, shipper, metrics, .. } = self;
        store.close()?;
        if let Some(sh) = shipper {
            let stats = sh.stats();
            sh.stop();
            copy_ship_stats(&stats, &metrics);
        }
        Ok(metrics.summary())
    }

    /// One pass of the reader through procs (exec ids, exec and exit rows) and
    /// identity (stamped, held until released).
    fn pass(&mut self, pass: Pass) {
        let Pass { events, mut rows, decode_errors } = pass;
        for (table, n) in decode_errors {
            *self.decode_errors.entry(table).or_default() += n;
        }
        self.procs.apply(events, &mut rows, self.boot_to_wall);
        self.identity.accept(&mut rows);
        self.identity.stamp(now_ns(), false);
        self.identity.refresh_waiting(now_ns());
    }

    /// Capability counts become rows; identity releases the rows ready to be
    /// stored; they are built into batches and appended; the store flushes;
    /// identity intervals are written; aged segments are sealed.
    fn tick(&mut self, stopping: bool, received_to: i64) {
        let mut caps = RowSet::default();
        for delta in self.cap_counters.diff(self.probes.cap_usage()) {
            caps.caps.push(CapRow::new(delta, self.boot_to_wall));
        }
        if stopping || self.flows_read.elapsed() >= FLOW_READ_INTERVAL {
            self.flows_read = Instant::now();
            self.read_flows(&mut caps);
        }
        self.identity.accept(&mut caps);
        if self.cap_counters.len() > CAP_KEYS_PRUNE_AT {
            // The kernel map holds at most 16384 pairs: forget the ones idle
            // for ten minutes (their counts are already in rows).
            let stale = self.cap_counters.stale((clock_ns(libc::CLOCK_BOOTTIME) as u64).saturating_sub(600_000_000_000));
            self.probes.forget_cap_usage(&stale);
            stale.iter().for_each(|k| self.cap_counters.forget(k));
        }
        let now = now_ns();
        // Rows of a pod the runtime has not reported yet wait (a few seconds at
        // most) for its name; at shutdown nothing waits.
        let released = self.identity.release(now, stopping);
        match crate::batch::build(&released, &self.node) {
            Ok(batches) => {
                for (table, batch) in batches {
                    let n = batch.num_rows() as u64;
                    self.metrics.add_rows(table, n);
                    // Only a batch not of its table's schema is refused (a bug): counted, not fatal.
                    if let Err(e) = self.store.append(table, batch) {
                        tracing::error!(table, rows = n, error = %e, "the store refused a batch");
                        self.record_loss(LossRecord { source: "decode".into(), table_name: Some(table.into()), count: Some(n), detail: Some(format!("rows the store refused: {e}")), ..LossRecord::default() });
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "building a batch failed: its rows are lost");
                let lost = released.len() as u64;
                self.record_loss(LossRecord { source: "decode".into(), count: Some(lost), detail: Some(format!("rows lost building a batch: {e}")), ..LossRecord::default() });
            }
        }
        self.identity.recycle(released);
        // Every event before this is in the store now, or counted: what a
        // durable flush records as the run's last durable flush.
        self.store.set_watermark(self.identity.oldest_pending().map_or(received_to, |t| t.min(received_to)));
        // A failing store keeps its rows (up to a bound) and retries; it
        // logged the failure when it began.
        if let Err(e) = self.store.flush() {
            tracing::debug!(error = %e, "flush incomplete");
        }
        let writes = self.identity.tick(now_ns());
        if !writes.is_empty() {
            let _ = self.store.write_identity(&writes.pods, &writes.containers, &writes.ips);
        }
        let sealed = self.store.seal_aged().unwrap_or_default();
        if let Some(sh) = &self.shipper {
            if !sealed.is_empty() {
                sh.nudge();
            }
            copy_ship_stats(&sh.stats(), &self.metrics);
        }
        self.copy_stats();
    }

    /// Rows of the UDP/ICMP flows that counted packets since the last read;
    /// then flows all in rows whose socket is gone (or idle for 10 minutes)
    /// leave the kernel map (see `crate::flows`).
    fn read_flows(&mut self, rows: &mut RowSet) {
        let procs = &self.procs;
        let (changed, idle) = self.flow_counters.diff(self.probes.flows(), |pid, at| procs.image_at(pid, at).map(|i| i.exec_id));
        for delta in changed {
            rows.flows.push(FlowRow::new(delta, self.boot_to_wall));
        }
        let now_boot = clock_ns(libc::CLOCK_BOOTTIME) as u64;
        for (key, val) in idle {
            let probes = &self.probes;
            if FlowCounters::forgettable(&val, || probes.flow_socket_open(key.cookie), now_boot) && self.probes.forget_flow(&key, &val) {
                self.flow_counters.forget(&key);
            }
        }
    }

    /// Stage counters into the metrics (and so the run summary).
    fn copy_stats(&self) {
        let m = &self.metrics;
        let set = |a: &std::sync::atomic::AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        let ids = self.identity.stats();
        set(&m.identity_unresolved, ids.unresolved_rows);
        set(&m.tracked_pods, ids.open_pods as u64);
        set(&m.cgroup_walks, ids.cgroup_walks);
        set(&m.cri_polls, ids.cri_polls);
        set(&m.cri_errors, ids.cri_errors);
        set(&m.kube_updates, ids.kube_updates);
        set(&m.kube_errors, ids.kube_errors);
        let st = self.store.stats();
        set(&m.segments_sealed, st.segments_sealed);
        set(&m.bytes_sealed, st.bytes_sealed);
        set(&m.hot_flushes, st.hot_flushes);
        set(&m.disk_dropped_rows, st.rows_dropped_disk);
        set(&m.store_write_failures, st.write_failures);
        let ws = self.store.write_state();
        set(&m.store_failing, u64::from(ws.failing_since.is_some()));
        set(&m.store_buffered_bytes, ws.buffered_bytes);
        set(&m.disk_free_bytes, crate::segments::free_bytes(&self.data_dir).unwrap_or(0));
    }

    /// Loss since the last tick, per table (and pod where the kernel knows
    /// the cgroup): kernel drops, runs the kernel skipped, rows stored without
    /// their pod, undecodable records.
    fn losses(&mut self) {
        let counts = self.probes.drop_counts(self.kernel_loss.last());
        let window_end = now_ns();
        let identity = &mut self.identity;
        let grown = self.kernel_loss.update(counts, |cg| identity.pod_of_cgroup(cg, window_end));
        let mut loss = Vec::new();
        for (reason, pod_uid, n) in grown {
            let what = &crate::probes::DROP_REASONS[reason];
            let counter = if what.source == "incomplete" { &self.metrics.incomplete_rows } else { &self.metrics.kernel_drops };
            counter.fetch_add(n, Ordering::Relaxed);
            loss.push(LossRecord { source: what.source.into(), table_name: what.table.map(Into::into), count: Some(n), detail: Some(what.detail.into()), pod_uid, ..LossRecord::default() });
        }
        for skipped in self.probes.skipped_runs() {
            let seen = self.skipped_before.entry((skipped.object, skipped.program)).or_default();
            let n = skipped.runs.saturating_sub(*seen);
            *seen = skipped.runs;
            if n == 0 {
                continue;
            }
            self.metrics.kernel_drops.fetch_add(n, Ordering::Relaxed);
            let table = crate::probes::table_of_program(skipped.program).flatten();
            let detail = format!(
                "runs of {} ({}) the kernel skipped: it was already running on that CPU when an interrupt hit its hook again; each skipped run may have been a row (at most this many)",
                skipped.program, skipped.object
            );
            loss.push(LossRecord { source: "kernel_skipped".into(), table_name: table.map(Into::into), count: Some(n), detail: Some(detail), ..LossRecord::default() });
        }
        for (table, unresolved) in self.identity.take_unresolved() {
            let detail = "rows stored without pod identity: their cgroup was removed before it could be resolved";
            loss.push(LossRecord { source: "identity".into(), table_name: Some(table.into()), count: Some(unresolved), detail: Some(detail.into()), ..LossRecord::default() });
        }
        for (table, n) in std::mem::take(&mut self.decode_errors) {
            self.metrics.decode_errors.fetch_add(n, Ordering::Relaxed);
            let detail = "kernel records that did not decode (kind, length or a field out of range): no row";
            loss.push(LossRecord { source: "decode".into(), table_name: table.map(Into::into), count: Some(n), detail: Some(detail.into()), ..LossRecord::default() });
        }
        for l in loss {
            self.record_loss(LossRecord { time_from: self.window_start, time_to: window_end, ..l });
        }
        self.window_start = window_end;
    }

    /// Record loss (kept and retried by the store when it cannot write now).
    fn record_loss(&mut self, l: LossRecord) {
        let l = LossRecord { time_from: if l.time_from == 0 { self.window_start } else { l.time_from }, time_to: if l.time_to == 0 { now_ns() } else { l.time_to }, ..l };
        let _ = self.store.record_loss(&l);
    }
}

fn copy_ship_stats(ss: &crate::ship::ShipStats, m: &Metrics) {
    let copy = |from: &std::sync::atomic::AtomicU64, to: &std::sync::atomic::AtomicU64| to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
    copy(&ss.segments_shipped, &m.segments_shipped);
    copy(&ss.bytes_shipped, &m.bytes_shipped);
    copy(&ss.segments_already_there, &m.segments_already_shipped);
    copy(&ss.failures, &m.ship_failures);
    copy(&ss.backlog, &m.ship_backlog);
}
