//! Shipping: `podtraild run --ship-to DIR|s3://…` uploads every sealed segment and
//! this node's identity snapshots to a lake shortly after sealing.
//!
//! Its own thread, its own catalog connection and its own runtime: a slow or dead
//! store never blocks recording. What is shipped is recorded in the catalog
//! (`shipped`), so a restart resumes where the last run stopped; an object already
//! in the lake (an earlier attempt whose catalog write was lost, an export) is
//! recognised, never written twice. Failures back off (1 s doubling to 60 s) and
//! are logged when they start and when they end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use podtrail_schema::Catalog;
use podtrail_lake::{self as lake, Lake, LakeError, Put, S3Options, Target};

#[derive(Debug, Clone)]
pub struct ShipConfig {
    pub target: Target,
    pub s3: S3Options,
}

/// Counters for metrics and the run summary.
#[derive(Debug, Default)]
pub struct ShipStats {
    pub segments_shipped: AtomicU64,
    pub bytes_shipped: AtomicU64,
    /// Segments found already in the lake.
    pub segments_already_there: AtomicU64,
    pub failures: AtomicU64,
    /// Sealed segments not shipped yet (as of the last attempt).
    pub backlog: AtomicU64,
}

struct Signal {
    woken: Mutex<bool>,
    cv: Condvar,
}

pub struct Shipper {
    signal: Arc<Signal>,
    stop: Arc<AtomicBool>,
    stats: Arc<ShipStats>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// How long after SIGTERM the shipper may go on uploading what was sealed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);
const RESCAN_EVERY: Duration = Duration::from_secs(5);

impl Shipper {
    /// Check the settings (a bad location or missing credentials stop the start)
    /// and start the shipping thread. The store itself being down is not an error
    /// here: recording starts, shipping retries.
    pub fn start(cfg: ShipConfig, data_dir: PathBuf, node: String) -> Result<Shipper, LakeError> {
        lake::check_node_name(&node)?;
        let lake = Lake::open(&cfg.target, &cfg.s3, true)?;
        let target = cfg.target.to_string();
        let signal = Arc::new(Signal { woken: Mutex::new(false), cv: Condvar::new() });
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ShipStats::default());
        let worker = Worker { lake, data_dir, node, target: target.clone(), signal: Arc::clone(&signal), stop: Arc::clone(&stop), stats: Arc::clone(&stats) };
        let handle = std::thread::Builder::new()
            .name("shipper".into())
            .spawn(move || worker.run())
            .map_err(|e| LakeError::Store(format!("cannot start the shipping thread: {e}")))?;
        tracing::info!(target = %target, "shipping sealed segments");
        Ok(Shipper { signal, stop, stats, handle: Some(handle) })
    }

    pub fn stats(&self) -> Arc<ShipStats> {
        Arc::clone(&self.stats)
    }

    /// Something was sealed: look now rather than at the next rescan.
    pub fn nudge(&self) {
        *self.signal.woken.lock().expect("poisoned") = true;
        self.signal.cv.notify_one();
    }

    /// Ship what is sealed (at most [`SHUTDOWN_GRACE`]), then stop. What is left
    /// ships at the next start.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.nudge();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Worker {
    lake: Lake,
    data_dir: PathBuf,
    node: String,
    target: String,
    signal: Arc<Signal>,
    stop: Arc<AtomicBool>,
    stats: Arc<ShipStats>,
}

impl Worker {
    fn run(self) {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "shipping disabled: cannot start its runtime");
                return;
            }
        };
        let cat_path = podtrail_schema::layout::catalog_path(&self.data_dir);
        let catalog = match Catalog::open_rw(&cat_path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "shipping disabled: cannot open the catalog");
                return;
            }
        };
        let mut backoff = Duration::from_secs(1);
        let mut failing_since: Option<Instant> = None;
        let mut last_snapshot: Option<Instant> = None;
        let mut stop_deadline: Option<Instant> = None;
        // Segments that cannot be read (damaged): reported once, not retried in a loop.
        let mut bad: std::collections::HashSet<String> = Default::default();
        // Snapshot bytes this run uploaded last, per table: unchanged ones are not
        // even compared with the lake again.
        let mut last_snapshots = std::collections::HashMap::new();
        loop {
            let stopping = self.stop.load(Ordering::SeqCst);
            if stopping && stop_deadline.is_none() {
                stop_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
            }
            let round = rt.block_on(async {
                let n = self.ship_pending(&catalog, &mut bad, stop_deadline).await?;
                if n > 0 || stopping || last_snapshot.is_none_or(|t| t.elapsed() >= SNAPSHOT_EVERY) {
                    self.ship_snapshots(&catalog, &mut last_snapshots).await?;
                    last_snapshot = Some(Instant::now());
                }
                Ok::<u64, LakeError>(n)
            });
            let wait = match round {
                Ok(_) => {
                    if let Some(since) = failing_since.take() {
                        tracing::info!(target = %self.target, down_for_s = since.elapsed().as_secs(), "shipping works again");
                    }
                    backoff = Duration::from_secs(1);
                    if stopping {
                        let left = self.stats.backlog.load(Ordering::Relaxed);
                        if left > 0 {
                            tracing::warn!(target = %self.target, backlog = left, "stopping with segments not shipped (shutdown grace over); they ship at the next start");
                        }
                        return;
                    }
                    RESCAN_EVERY
                }
                Err(e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        tracing::warn!(target = %self.target, error = %e, "shipping failed; recording goes on, retrying with backoff");
                    } else {
                        tracing::debug!(error = %e, "shipping still failing");
                    }
                    if stop_deadline.is_some_and(|d| Instant::now() >= d) {
                        tracing::warn!(target = %self.target, backlog = self.stats.backlog.load(Ordering::Relaxed), "stopping with segments not shipped; they ship at the next start");
                        return;
                    }
                    let w = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    w
                }
            };
            let mut woken = self.signal.woken.lock().expect("poisoned");
            if !*woken {
                let limit = stop_deadline.map(|d| d.saturating_duration_since(Instant::now())).unwrap_or(wait).min(wait);
                woken = self.signal.cv.wait_timeout(woken, limit).expect("poisoned").0;
            }
            *woken = false;
        }
    }

    /// Ship every sealed segment not yet in the lake; returns how many were shipped.
    async fn ship_pending(&self, catalog: &Catalog, bad: &mut std::collections::HashSet<String>, deadline: Option<Instant>) -> Result<u64, LakeError> {
        let pending = catalog.unshipped_segments(&self.target).map_err(|e| LakeError::Source(e.to_string()))?;
        self.stats.backlog.store(pending.len() as u64, Ordering::Relaxed);
        let mut shipped = 0;
        for seg in pending {
            if bad.contains(&seg.segment_id) {
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            match self.lake.put_segment(&self.data_dir, &seg, &self.node).await {
                Ok((put, key)) => {
                    catalog.mark_shipped(&seg.segment_id, &self.target, key.as_ref(), now_ns()).map_err(|e| LakeError::Source(e.to_string()))?;
                    match put {
                        Put::Written => {
                            self.stats.segments_shipped.fetch_add(1, Ordering::Relaxed);
                            self.stats.bytes_shipped.fetch_add(seg.bytes, Ordering::Relaxed);
                        }
                        Put::AlreadyThere => {
                            self.stats.segments_already_there.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    self.stats.backlog.fetch_sub(1, Ordering::Relaxed);
                    shipped += 1;
                }
                Err(LakeError::Source(m)) => {
                    // Retention may have removed it meanwhile: then it is not pending any more.
                    if catalog.unshipped_segments(&self.target).map(|p| p.iter().any(|s| s.segment_id == seg.segment_id)).unwrap_or(true) {
                        tracing::error!(segment = %seg.segment_id, error = %m, "segment cannot be shipped; left in place (run `podtrail verify`)");
                        bad.insert(seg.segment_id.clone());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(shipped)
    }

    /// Upload the snapshots that changed since this run last uploaded them.
    async fn ship_snapshots(&self, catalog: &Catalog, last: &mut std::collections::HashMap<&'static str, Bytes>) -> Result<(), LakeError> {
        for def in lake::SNAPSHOT_TABLES {
            let bytes = lake::snapshot_parquet(catalog, def, &self.node)?;
            if last.get(def.name) == Some(&bytes) {
                continue;
            }
            self.lake.put_if_changed(&self.lake.snapshot_key(def.name, &self.node), bytes.clone()).await?;
            last.insert(def.name, bytes);
        }
        Ok(())
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}
