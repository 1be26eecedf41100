//! `segments` stage: durable writing of event rows.
//!
//! In: Arrow batches of an event table (schema exactly as `podtrail-schema` defines).
//! Out: sealed zstd Parquet segments recorded in the catalog, plus a hot tail that
//! makes recent rows crash-safe and queryable before they are sealed.
//!
//! Invariants:
//! - A row is in exactly one place a reader counts: the open segment's hot file
//!   until its segment is committed to the catalog, the sealed Parquet file after.
//!   Readers ignore a hot file whose segment id the catalog already lists, and the
//!   hot file is deleted only after that commit, so a crash at any point neither
//!   loses nor doubles rows.
//! - Sealed files are written to a temporary name, fsynced, renamed, the directory
//!   fsynced, then committed to the catalog with a SHA-256 chained to the previous
//!   segment's; a file not in the catalog is never read and is removed by recovery.
//! - Nothing is dropped silently: what recovery cannot read back is a `loss` row.
//! - A write that fails (disk full, I/O error) never loses what was appended and
//!   never stops the store: the segment stays in memory (and in its hot file)
//!   and every write is retried; while writes fail, new rows are held in memory
//!   up to [`StoreConfig::max_buffered_bytes`], and past it dropped and counted
//!   per table and pod as `disk` loss. Catalog writes (loss, identity, meta, the
//!   run's heartbeat) wait in order in a queue for the next transaction that can
//!   be written. The hot file is cut back to its last whole frame after a
//!   failed append, so later frames are never stranded behind a torn one.

mod catalog_write;
mod parquet_out;
mod rebuild;
mod recovery;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::{Array, StringArray, TimestampNanosecondArray};
use arrow::record_batch::RecordBatch;
use podtrail_schema::catalog::{Catalog, CatalogError};
use podtrail_schema::tables::{TableDef, event_table};
use podtrail_schema::{hot, layout};

pub use catalog_write::{CatalogOp, ContainerRecord, HotFileRecord, IpOwnerRecord, LossRecord, PodRecord, RunEnd};
pub use rebuild::{RebuildReport, rebuild_catalog};
pub use recovery::RecoveryReport;

const NS_PER_HOUR: i64 = 3_600_000_000_000;

/// Free space kept beyond what a write needs before it is tried while writes
/// fail (directory entries, the catalog's journal).
const WRITE_SLACK_BYTES: u64 = 1 << 20;

/// While writes fail, a failed seal is tried again after this long, doubling
/// up to [`SEAL_RETRY_MAX`] (a seal compresses a whole segment first); any
/// write that succeeds (space came back) makes the next one immediate.
const SEAL_RETRY_MIN: Duration = Duration::from_secs(1);
const SEAL_RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// Node name stored in the catalog's metadata.
    pub node: String,
    /// A segment is sealed once it spans this much event time or has been open this
    /// long on the wall clock, whichever comes first.
    pub max_segment_age: Duration,
    /// ... or once its rows take this much memory (Arrow buffers).
    pub max_segment_bytes: usize,
    /// Sealed segments beyond this many bytes on disk are removed, oldest first.
    pub disk_budget_bytes: Option<u64>,
    /// Keep at least this many bytes free on the data dir's filesystem: below
    /// it, the oldest sealed segments are removed (as with the budget), so the
    /// disk does not fill with history before it fills with something else.
    pub min_free_bytes: Option<u64>,
    /// While writes fail, rows of every table held in memory (open and unsealed
    /// segments) up to this many bytes; beyond it new rows are dropped and
    /// counted as `disk` loss.
    pub max_buffered_bytes: usize,
    /// How long [`SegmentStore::open`] waits for another writer's lock (a
    /// recorder that was killed keeps it while the kernel tears it down).
    pub lock_wait: Duration,
    /// Shipping target (`--ship-to`): retention removes segments shipped there
    /// first, and counts the rows of an unshipped one it must remove as loss.
    pub ship_target: Option<String>,
    /// Rows per Parquet row group: the unit of pruning by bloom filters and chunk
    /// statistics (pages of `parquet_out::PAGE_ROWS` rows inside are pruned by the page index).
    pub row_group_rows: usize,
    pub zstd_level: i32,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>, node: impl Into<String>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            node: node.into(),
            max_segment_age: Duration::from_secs(600),
            max_segment_bytes: 64 << 20,
            disk_budget_bytes: None,
            min_free_bytes: None,
            max_buffered_bytes: 256 << 20,
            lock_wait: Duration::from_secs(10),
            ship_target: None,
            row_group_rows: 64 * 1024,
            zstd_level: 3,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("unknown event table {0:?}")]
    UnknownTable(String),
    #[error("batch for table {table} does not match its schema: {detail}")]
    SchemaMismatch { table: String, detail: String },
    #[error("writing segment {segment}: {source}")]
    Parquet { segment: String, source: parquet::errors::ParquetError },
    #[error("segment {segment}: {source}")]
    Arrow { segment: String, source: arrow::error::ArrowError },
    #[error("hot file {path}: {source}")]
    Hot { path: PathBuf, source: hot::HotError },
    #[error("data dir {dir} is in use by another writer ({holder}; podtraild or podtrail-synth holds its LOCK file); one writer per data dir")]
    Locked { dir: PathBuf, holder: String },
    #[error("data dir {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{0}")]
    Unstored(String),
}

pub type Result<T, E = SegmentError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SegmentError + '_ {
    move |source| SegmentError::Io { path: path.to_owned(), source }
}

/// Counters a benchmark or the metrics stage reads.
#[derive(Debug, Default, Clone)]
pub struct StoreStats {
    pub rows_appended: u64,
    pub segments_sealed: u64,
    pub rows_sealed: u64,
    pub bytes_sealed: u64,
    pub hot_flushes: u64,
    pub segments_expired: u64,
    /// Rows dropped because the data dir could not be written and the memory
    /// bound was reached (counted as `disk` loss).
    pub rows_dropped_disk: u64,
    /// Writes (hot appends, seals, catalog transactions) that failed.
    pub write_failures: u64,
}

/// Whether the store can write, for metrics and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteState {
    /// Wall clock (ns) of the first failed write of the current failure, if any.
    pub failing_since: Option<i64>,
    /// That failure.
    pub error: Option<String>,
    /// Bytes of rows held in memory (open and unsealed segments).
    pub buffered_bytes: u64,
    /// Segments closed for appends that wait for a seal that works.
    pub unsealed_segments: u64,
    /// Catalog writes waiting for a transaction.
    pub pending_catalog_writes: u64,
}

/// What one seal produced.
#[derive(Debug, Clone)]
pub struct SealedSegment {
    pub segment_id: String,
    pub table: &'static str,
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

struct OpenSegment {
    def: &'static TableDef,
    id: String,
    batches: Vec<RecordBatch>,
    /// `batches[flushed..]` are not yet in the hot file.
    flushed: usize,
    rows: usize,
    mem_bytes: usize,
    time_min: i64,
    time_max: i64,
    opened: Instant,
    /// Open for appending frames; none before the first flush, or for a
    /// segment recovered from a hot file (all its rows are in it already).
    hot: Option<File>,
    /// A hot file of this segment exists on disk (removed once it is sealed).
    hot_exists: bool,
    /// Bytes of the hot file that hold whole frames.
    hot_len: u64,
    /// Rows durably in the hot file, and their time range.
    hot_rows: u64,
    hot_time: Option<(i64, i64)>,
    /// `hot_rows` changed since the catalog last recorded it.
    hot_dirty: bool,
    /// A failed append could not be cut back: no more frames go to this file.
    hot_broken: bool,
}

impl OpenSegment {
    fn new(def: &'static TableDef, id: String, time: (i64, i64)) -> Self {
        OpenSegment {
            def,
            id,
            batches: Vec::new(),
            flushed: 0,
            rows: 0,
            mem_bytes: 0,
            time_min: time.0,
            time_max: time.1,
            opened: Instant::now(),
            hot: None,
            hot_exists: false,
            hot_len: 0,
            hot_rows: 0,
            hot_time: None,
            hot_dirty: false,
            hot_broken: false,
        }
    }

    fn unflushed_rows(&self) -> u64 {
        total_rows(&self.batches[self.flushed..])
    }
}

/// The failure the store is in: writes are retried, rows held up to a bound.
struct Failing {
    since: Instant,
    since_ns: i64,
    error: String,
    /// The next time a failed seal is tried again, and the wait after that.
    next_seal: Instant,
    seal_backoff: Duration,
    /// The last time a batch over the bound made the store retry its writes.
    last_drop_retry: Option<Instant>,
}

/// Rows not stored for a full (or failing) disk, per table and pod, since the
/// catalog last recorded them.
#[derive(Debug, Clone, Copy)]
struct DiskLoss {
    rows: u64,
    time_from: i64,
    time_to: i64,
}

/// This writer's run in the catalog (`runs`), when it records one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    None,
    /// To be inserted at the next transaction (the first attempt failed).
    Pending { started_at: i64 },
    Active { id: i64, started_at: i64 },
}

pub struct SegmentStore {
    // Held (flock) for the store's life: one writer per data dir.
    _lock: File,
    cfg: StoreConfig,
    catalog: Catalog,
    open: BTreeMap<&'static str, OpenSegment>,
    /// Segments closed for appends (an hour boundary, their age or size) whose
    /// seal failed: kept in memory and in their hot files, sealed by a later
    /// flush, oldest first.
    unsealed: Vec<OpenSegment>,
    failing: Option<Failing>,
    /// Catalog writes waiting for the next transaction, in order.
    ops: Vec<CatalogOp>,
    disk_loss: BTreeMap<(&'static str, Option<String>), DiskLoss>,
    run: Run,
    /// See [`SegmentStore::set_watermark`].
    watermark: Option<i64>,
    /// Runs recovery found ended uncleanly (their end, and their `crash`
    /// loss), waiting for the time recording starts again (or the store
    /// closes) to end their window.
    crash_windows: Vec<(CatalogOp, LossRecord)>,
    last_id_ns: i64,
    stats: StoreStats,
    /// The hot tail's frame buffer, kept across flushes (see `hot::encode_frame_into`).
    frame: Vec<u8>,
}

impl SegmentStore {
    /// Open (creating) the data dir after checking its catalog, then recover
    /// whatever a previous writer left: temporary files, unrecorded segment
    /// files, hot tails, a run that never ended. Recovery never fails on a
    /// damaged hot file (it is quarantined and counted) or on a full disk (what
    /// cannot be sealed yet stays in memory and its hot file, retried later).
    pub fn open(cfg: StoreConfig) -> Result<(Self, RecoveryReport)> {
        match fs::metadata(&cfg.data_dir) {
            Ok(m) if !m.is_dir() => return Err(SegmentError::NotADirectory(cfg.data_dir.clone())),
            _ => {}
        }
        for dir in [cfg.data_dir.clone(), cfg.data_dir.join(layout::SEGMENTS_DIR), cfg.data_dir.join(layout::HOT_DIR)] {
            create_private_dir(&dir)?;
        }
        let lock = lock_data_dir(&cfg.data_dir, cfg.lock_wait)?;
        let cat_path = layout::catalog_path(&cfg.data_dir);
        if !cat_path.exists() {
            // Created 0600 before SQLite opens it: SQLite gives its -wal and -shm
            // files the database file's permissions.
            create_private_file(&cat_path)?;
        }
        let catalog = Catalog::open_rw_checked(&cat_path, true)?;
        let mut store = SegmentStore {
            _lock: lock,
            cfg,
            catalog,
            open: BTreeMap::new(),
            unsealed: Vec::new(),
            failing: None,
            ops: Vec::new(),
            disk_loss: BTreeMap::new(),
            run: Run::None,
            watermark: None,
            crash_windows: Vec::new(),
            last_id_ns: 0,
            stats: StoreStats::default(),
            frame: Vec::new(),
        };
        store.queue(CatalogOp::Meta("node".into(), store.cfg.node.clone()));
        let report = recovery::recover(&mut store)?;
        // Whatever recovery queued, in one transaction (kept for later if the
        // disk is full: the store opens all the same).
        if let Err(e) = store.commit_ops(false) {
            store.fail(&e);
        }
        Ok((store, report))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Whether writes currently fail, and what is held meanwhile.
    pub fn write_state(&self) -> WriteState {
        WriteState {
            failing_since: self.failing.as_ref().map(|f| f.since_ns),
            error: self.failing.as_ref().map(|f| f.error.clone()),
            buffered_bytes: self.buffered_bytes() as u64,
            unsealed_segments: self.unsealed.len() as u64,
            pending_catalog_writes: (self.ops.len() + self.disk_loss.len()) as u64,
        }
    }

    /// Record this writer as a recorder run (`runs`), recording from now on:
    /// from now every flush that makes all rows durable records the run's last
    /// durable flush, and [`SegmentStore::close`] records how the run ended. A
    /// run still open at the next start did not end cleanly. The windows of
    /// runs that recovery found ended uncleanly end now, when recording starts
    /// again.
    pub fn begin_run(&mut self) -> Result<()> {
        let now = now_ns();
        self.run = Run::Pending { started_at: now };
        self.close_crash_windows(now);
        self.commit_ops(false)
    }

    /// The events up to `ns` (wall clock) have all been handed to the store:
    /// what a durable flush records as the run's last durable flush (the
    /// recorder's pipeline holds younger events, and rows waiting for their pod).
    pub fn set_watermark(&mut self, ns: i64) {
        self.watermark = Some(ns);
    }

    /// Queue the runs recovery found ended uncleanly, with their windows
    /// ending at `until`.
    fn close_crash_windows(&mut self, until: i64) {
        for (end, mut l) in std::mem::take(&mut self.crash_windows) {
            l.time_to = until.max(l.time_from);
            self.queue(end);
            self.queue(CatalogOp::Loss(l));
        }
    }

    /// Over the bound while writes fail: before dropping rows, try the writes
    /// again if there may be room (space may have come back since the last
    /// flush), at most once a second. Whether the store writes again.
    fn retry_before_drop(&mut self) -> bool {
        let due = self.failing.as_ref().is_some_and(|f| f.last_drop_retry.is_none_or(|t| t.elapsed() >= SEAL_RETRY_MIN));
        if !due || !self.room_for(0) {
            return false;
        }
        if let Some(f) = &mut self.failing {
            f.last_drop_retry = Some(Instant::now());
        }
        let _ = self.flush();
        self.failing.is_none()
    }

    /// Bytes of rows held in memory.
    fn buffered_bytes(&self) -> usize {
        self.open.values().chain(self.unsealed.iter()).map(|s| s.mem_bytes).sum()
    }

    /// Add rows to `table`'s open segment, closing the open segment first when the
    /// batch would take it past an hour boundary, its age or its size (it is
    /// sealed, or kept unsealed when the seal fails).
    ///
    /// Invariant: every row of a segment lies in the same UTC clock hour (a batch
    /// that spans an hour boundary is split), so a segment's date and hour
    /// partitions hold for each of its rows; the lake prunes on that.
    ///
    /// Errors only for a batch that is not of `table`'s schema: a failed write
    /// never fails an append (see the module's invariants).
    pub fn append(&mut self, table: &str, batch: RecordBatch) -> Result<()> {
        let def = event_table(table).ok_or_else(|| SegmentError::UnknownTable(table.to_owned()))?;
        check_schema(def, &batch)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let (bmin, bmax) = time_range(def, &batch)?;
        if bmin.div_euclid(NS_PER_HOUR) != bmax.div_euclid(NS_PER_HOUR) {
            for part in split_by_hour(def, &batch)? {
                self.append(table, part)?;
            }
            return Ok(());
        }
        if self.failing.is_some() && self.buffered_bytes() + batch.get_array_memory_size() > self.cfg.max_buffered_bytes && !self.retry_before_drop() {
            self.count_disk_loss(def, &batch);
            return Ok(());
        }
        if let Some(seg) = self.open.get(def.name) {
            let span = bmax.saturating_sub(seg.time_min).max(seg.time_max.saturating_sub(bmin));
            let roll = bmin.div_euclid(NS_PER_HOUR) != seg.time_min.div_euclid(NS_PER_HOUR)
                || span > self.cfg.max_segment_age.as_nanos() as i64
                || seg.opened.elapsed() >= self.cfg.max_segment_age
                || seg.mem_bytes >= self.cfg.max_segment_bytes;
            if roll {
                if self.failing.is_some() {
                    // Writes fail: no seal is tried here (flush retries them).
                    let seg = self.open.remove(def.name).expect("checked above");
                    self.unsealed.push(seg);
                } else {
                    // A failure keeps the segment unsealed: nothing is lost.
                    let _ = self.seal(def.name);
                }
            }
        }
        let id_ns = self.next_id_ns();
        let seg = self.open.entry(def.name).or_insert_with(|| OpenSegment::new(def, layout::segment_id(def.name, id_ns), (bmin, bmax)));
        seg.time_min = seg.time_min.min(bmin);
        seg.time_max = seg.time_max.max(bmax);
        seg.rows += batch.num_rows();
        seg.mem_bytes += batch.get_array_memory_size();
        self.stats.rows_appended += batch.num_rows() as u64;
        seg.batches.push(batch);
        Ok(())
    }

    /// Make every appended row durable (and visible to readers): in the hot
    /// tail, or, for a segment already past half its size limit, by sealing it
    /// now (its rows would otherwise be written to the hot file only to be
    /// sealed moments later; under a storm, where a flush fills half a
    /// segment, most rows never go through the hot file). Retries what failed
    /// before: unsealed segments, queued catalog writes. Then records the
    /// hot files' row counts and the run's last durable flush. The recorder
    /// calls this about once a second.
    ///
    /// Errors when some row is not durable after it, or a catalog write
    /// failed; everything stays queued and is retried by the next call. A seal
    /// that fails while its rows reach the hot file is not an error here: they
    /// are durable, and the seal is retried.
    pub fn flush(&mut self) -> Result<()> {
        let mut first: Option<SegmentError> = None;
        let keep = |e: SegmentError, first: &mut Option<SegmentError>| {
            first.get_or_insert(e);
        };
        if self.below_free_floor()
            && let Err(e) = self.enforce_retention()
        {
            self.fail(&e);
        }
        self.retry_unsealed();
        if self.failing.is_none() {
            let full: Vec<&'static str> = self
                .open
                .iter()
                .filter(|(_, s)| s.flushed < s.batches.len() && s.mem_bytes >= self.cfg.max_segment_bytes / 2)
                .map(|(t, _)| *t)
                .collect();
            for t in full {
                // On failure the segment is unsealed: its rows go to the hot file below.
                if let Err(e) = self.seal(t) {
                    tracing::warn!(table = t, error = %e, "sealing a half-full segment failed; its rows go to the hot file instead");
                }
            }
        }
        let mut durable = true;
        let data_dir = self.cfg.data_dir.clone();
        let failing = self.failing.is_some();
        let mut failures = Vec::new();
        for seg in self.open.values_mut().chain(self.unsealed.iter_mut()) {
            match write_hot(&data_dir, seg, &mut self.frame, failing) {
                Ok(HotWrite::Nothing) => {}
                Ok(HotWrite::Written) => self.stats.hot_flushes += 1,
                Ok(HotWrite::Skipped) => durable = false,
                Err(e) => {
                    durable = false;
                    failures.push(e);
                }
            }
        }
        for e in failures {
            self.fail(&e);
            keep(e, &mut first);
        }
        if let Err(e) = self.commit_ops(durable) {
            self.fail(&e);
            keep(e, &mut first);
        }
        if first.is_none() && !durable {
            // Skipped for lack of space: not tried, still not durable.
            keep(SegmentError::Unstored(format!("{} unflushed rows wait for free space in {}", self.unflushed_rows(), self.cfg.data_dir.display())), &mut first);
        }
        match first {
            None => {
                self.recovered();
                Ok(())
            }
            Some(e) => Err(e),
        }
    }

    fn unflushed_rows(&self) -> u64 {
        self.open.values().chain(self.unsealed.iter()).map(OpenSegment::unflushed_rows).sum()
    }

    /// Seal segments that have been open longer than `max_segment_age` (wall
    /// clock). A seal that fails keeps its segment unsealed (flush retries it).
    pub fn seal_aged(&mut self) -> Result<Vec<SealedSegment>> {
        let aged: Vec<&'static str> = self
            .open
            .iter()
            .filter(|(_, s)| s.opened.elapsed() >= self.cfg.max_segment_age)
            .map(|(t, _)| *t)
            .collect();
        let mut out = Vec::new();
        for t in aged {
            if self.failing.is_some() {
                let seg = self.open.remove(t).expect("listed above");
                self.unsealed.push(seg);
                continue;
            }
            out.extend(self.seal(t)?);
        }
        Ok(out)
    }

    /// Seal every segment (shutdown), and record how the run ended. What cannot
    /// be sealed stays in its hot file (recovered at the next start); rows in
    /// no hot file are counted as `disk` loss. Errors naming what was not stored.
    pub fn close(mut self) -> Result<Vec<SealedSegment>> {
        let mut out = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        for seg in std::mem::take(&mut self.unsealed) {
            self.open_or_unsealed_seal(seg, &mut out, &mut errors);
        }
        let tables: Vec<&'static str> = self.open.keys().copied().collect();
        for t in tables {
            let seg = self.open.remove(t).expect("listed above");
            self.open_or_unsealed_seal(seg, &mut out, &mut errors);
        }
        // Not sealed: into its hot file if it can be written, else lost.
        let data_dir = self.cfg.data_dir.clone();
        let mut in_hot = 0u64;
        for mut seg in std::mem::take(&mut self.unsealed) {
            if write_hot(&data_dir, &mut seg, &mut self.frame, false).is_err() || seg.flushed < seg.batches.len() {
                let lost: Vec<RecordBatch> = seg.batches[seg.flushed..].to_vec();
                for b in &lost {
                    self.count_disk_loss(seg.def, b);
                }
            }
            in_hot += seg.hot_rows;
            self.unsealed.push(seg);
        }
        self.close_crash_windows(now_ns());
        let dropped = self.stats.rows_dropped_disk;
        let end = if errors.is_empty() { RunEnd::Clean } else { RunEnd::Failed };
        if let Run::Active { id, .. } = self.run {
            let detail = (end == RunEnd::Failed)
                .then(|| format!("stopped with {in_hot} rows left in hot files (sealed at the next start); {dropped} rows of this run not stored (disk loss): {}", errors.join("; ")));
            self.queue(CatalogOp::EndRun { run_id: id, ended_at: now_ns(), end, detail });
        }
        if let Err(e) = self.commit_ops(errors.is_empty()) {
            errors.push(format!("writing the catalog: {e}"));
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(SegmentError::Unstored(format!(
                "could not seal everything before stopping ({}); {in_hot} rows stay in hot files and are sealed at the next start; {dropped} rows of this run could not be stored at all (counted as disk loss)",
                errors.join("; ")
            )))
        }
    }

    fn open_or_unsealed_seal(&mut self, seg: OpenSegment, out: &mut Vec<SealedSegment>, errors: &mut Vec<String>) {
        match self.seal_segment(seg) {
            Ok(Some(s)) => out.push(s),
            Ok(None) => {}
            Err((seg, e)) => {
                errors.push(e.to_string());
                self.unsealed.push(seg);
            }
        }
    }

    /// Seal `table`'s open segment. On failure the segment is kept unsealed (in
    /// memory and in its hot file) so nothing is lost; a later flush retries it.
    pub fn seal(&mut self, table: &str) -> Result<Option<SealedSegment>> {
        let Some(seg) = self.open.remove(table) else { return Ok(None) };
        match self.seal_segment(seg) {
            Ok(s) => Ok(s),
            Err((seg, e)) => {
                self.fail(&e);
                self.unsealed.push(seg);
                Err(e)
            }
        }
    }

    /// Seal one segment; on failure hand it back with the error.
    #[expect(clippy::result_large_err, reason = "the segment comes back by value so that nothing is lost; boxing it would move its rows for no gain")]
    fn seal_segment(&mut self, seg: OpenSegment) -> std::result::Result<Option<SealedSegment>, (OpenSegment, SegmentError)> {
        if seg.rows == 0 {
            return Ok(None); // segments are made by an append: never empty
        }
        match self.write_sealed(&seg.id, seg.def, &seg.batches, seg.hot_exists) {
            Ok(sealed) => {
                if let Some(f) = &mut self.failing {
                    // A seal worked: whatever failed may work again now.
                    f.next_seal = Instant::now();
                    f.seal_backoff = SEAL_RETRY_MIN;
                }
                Ok(Some(sealed))
            }
            Err(e) => Err((seg, e)),
        }
    }

    /// Seal the unsealed segments, oldest first, when due (while writes fail: by
    /// backoff, and only when the filesystem has room for one).
    fn retry_unsealed(&mut self) {
        while !self.unsealed.is_empty() {
            if let Some(f) = &self.failing {
                // About a quarter of the rows' memory: a generous size of their Parquet file.
                let need = (self.unsealed[0].mem_bytes / 4) as u64;
                if Instant::now() < f.next_seal || !self.room_for(need) {
                    return;
                }
            }
            let seg = self.unsealed.remove(0);
            if let Err((seg, e)) = self.seal_segment(seg) {
                self.unsealed.insert(0, seg);
                self.fail(&e);
                if let Some(f) = &mut self.failing {
                    f.next_seal = Instant::now() + f.seal_backoff;
                    f.seal_backoff = (f.seal_backoff * 2).min(SEAL_RETRY_MAX);
                }
                return;
            }
        }
    }

    fn write_sealed(&mut self, id: &str, def: &'static TableDef, batches: &[RecordBatch], has_hot: bool) -> Result<SealedSegment> {
        let data_dir = self.cfg.data_dir.clone();
        let written = parquet_out::write_segment(&data_dir, def, id, batches, &self.cfg)?;
        if let Err(e) = catalog_write::commit_segment(&mut self.catalog, &written) {
            // Not in the catalog: the file is not history yet (recovery would
            // remove it); free its space now, the rows are still here.
            let _ = fs::remove_file(data_dir.join(&written.rel_path));
            return Err(e);
        }
        // Only now may the hot copy go: the catalog owns these rows.
        if has_hot {
            remove_file_if_any(&layout::hot_path(&data_dir, def.name, id))?;
        }
        self.stats.segments_sealed += 1;
        self.stats.rows_sealed += written.rows;
        self.stats.bytes_sealed += written.bytes;
        if self.cfg.disk_budget_bytes.is_some() || self.below_free_floor() {
            self.enforce_retention()?;
        }
        Ok(SealedSegment { segment_id: id.to_owned(), table: def.name, path: data_dir.join(&written.rel_path), rows: written.rows, bytes: written.bytes })
    }

    fn enforce_retention(&mut self) -> Result<()> {
        let data_dir = self.cfg.data_dir.clone();
        let free = || free_bytes(&data_dir);
        let keep = catalog_write::Retention { budget: self.cfg.disk_budget_bytes, min_free: self.cfg.min_free_bytes, free: &free };
        self.stats.segments_expired += catalog_write::enforce_retention(&mut self.catalog, &self.cfg.data_dir, &keep, self.cfg.ship_target.as_deref())?;
        Ok(())
    }

    fn below_free_floor(&self) -> bool {
        self.cfg.min_free_bytes.is_some_and(|floor| free_bytes(&self.cfg.data_dir).is_some_and(|f| f < floor))
    }

    /// Whether the data dir's filesystem has room for a write of `bytes`.
    fn room_for(&self, bytes: u64) -> bool {
        free_bytes(&self.cfg.data_dir).is_none_or(|f| f >= bytes.saturating_add(WRITE_SLACK_BYTES))
    }

    /// Record pods, containers and IP ownership intervals (one transaction; kept
    /// and retried when the catalog cannot be written now).
    pub fn write_identity(&mut self, pods: &[PodRecord], containers: &[ContainerRecord], ips: &[IpOwnerRecord]) -> Result<()> {
        self.queue_and_commit(CatalogOp::Identity(pods.to_vec(), containers.to_vec(), ips.to_vec()))
    }

    /// Identity intervals of `source` that a previous run left open on this node.
    pub fn open_intervals(&self, source: &str) -> Result<(Vec<PodRecord>, Vec<ContainerRecord>, Vec<IpOwnerRecord>)> {
        Ok(self.catalog.open_intervals(&self.cfg.node, source)?)
    }

    /// Set a catalog `meta` value (what the recorder knows about its own run).
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.queue_and_commit(CatalogOp::Meta(key.to_owned(), value.to_owned()))
    }

    /// Record counted loss (kept and retried when the catalog cannot be written now).
    pub fn record_loss(&mut self, loss: &LossRecord) -> Result<()> {
        self.queue_and_commit(CatalogOp::Loss(loss.clone()))
    }

    fn queue(&mut self, op: CatalogOp) {
        self.ops.push(op);
    }

    /// Queue `op`, and write the queue now unless writes are failing (then the
    /// next flush does).
    fn queue_and_commit(&mut self, op: CatalogOp) -> Result<()> {
        self.queue(op);
        if self.failing.is_some() {
            return Ok(());
        }
        self.commit_ops(false).inspect_err(|e| self.fail(e))
    }

    /// Write every queued catalog change in one transaction: the run (when its
    /// insert is pending), queued writes in order, `disk` loss, the hot files'
    /// row counts, and, when `durable` (every appended row is in a hot file or
    /// sealed), the run's last durable flush. On failure everything stays queued.
    fn commit_ops(&mut self, durable: bool) -> Result<()> {
        let hot: Vec<HotFileRecord> = self
            .open
            .values()
            .chain(self.unsealed.iter())
            .filter(|s| s.hot_dirty)
            .map(|s| {
                let (time_min, time_max) = s.hot_time.unwrap_or((s.time_min, s.time_max));
                HotFileRecord { segment_id: s.id.clone(), table_name: s.def.name.to_owned(), rows: s.hot_rows, bytes: s.hot_len, time_min, time_max }
            })
            .collect();
        let heartbeat = durable && !matches!(self.run, Run::None);
        if self.ops.is_empty() && self.disk_loss.is_empty() && hot.is_empty() && !heartbeat && !matches!(self.run, Run::Pending { .. }) {
            return Ok(());
        }
        let now = now_ns();
        let detail = self.disk_detail();
        let path = self.catalog.path().to_owned();
        let sql = |source| SegmentError::Catalog(CatalogError::Sqlite { path: path.clone(), source });
        let node = self.cfg.node.clone();
        let tx = self.catalog.write_tx()?;
        let mut run = self.run;
        if let Run::Pending { started_at } = run {
            let id = catalog_write::insert_run(&tx, &node, std::process::id(), started_at).map_err(sql)?;
            run = Run::Active { id, started_at };
        }
        for op in &self.ops {
            catalog_write::apply(&tx, op).map_err(sql)?;
        }
        for ((table, pod), l) in &self.disk_loss {
            let loss = LossRecord {
                time_from: l.time_from,
                time_to: l.time_to,
                source: "disk".into(),
                table_name: Some((*table).to_owned()),
                count: Some(l.rows),
                detail: Some(detail.clone()),
                pod_uid: pod.clone(),
                ..LossRecord::default()
            };
            catalog_write::insert_loss(&tx, &loss).map_err(sql)?;
        }
        for h in &hot {
            catalog_write::upsert_hot(&tx, h).map_err(sql)?;
        }
        if let (Run::Active { id, .. }, true) = (run, heartbeat) {
            catalog_write::heartbeat(&tx, id, self.watermark.map_or(now, |w| w.min(now))).map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        self.run = run;
        self.ops.clear();
        self.disk_loss.clear();
        for s in self.open.values_mut().chain(self.unsealed.iter_mut()) {
            s.hot_dirty = false;
        }
        Ok(())
    }

    fn disk_detail(&self) -> String {
        let why = self.failing.as_ref().map_or("a write failed", |f| f.error.as_str());
        format!(
            "not stored: the data dir {} could not be written ({why}); rows were held in memory up to {} MiB, then dropped",
            self.cfg.data_dir.display(),
            self.cfg.max_buffered_bytes >> 20
        )
    }

    /// Count the rows of `batch` as not stored, per pod.
    fn count_disk_loss(&mut self, def: &'static TableDef, batch: &RecordBatch) {
        let n = batch.num_rows();
        self.stats.rows_dropped_disk += n as u64;
        let times = batch.column(0).as_any().downcast_ref::<TimestampNanosecondArray>();
        let pods = batch.column_by_name("pod_uid").and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let now = now_ns();
        for i in 0..n {
            let pod = pods.and_then(|p| p.is_valid(i).then(|| p.value(i).to_owned()));
            let t = times.map_or(now, |t| t.value(i));
            let e = self.disk_loss.entry((def.name, pod)).or_insert(DiskLoss { rows: 0, time_from: t, time_to: t });
            e.rows += 1;
            e.time_from = e.time_from.min(t);
            e.time_to = e.time_to.max(t);
        }
    }

    /// A write failed: enter (or stay in) the failing mode.
    fn fail(&mut self, e: &SegmentError) {
        self.stats.write_failures += 1;
        match &mut self.failing {
            Some(f) => f.error = e.to_string(),
            None => {
                tracing::warn!(
                    error = %e,
                    buffer.max_mib = self.cfg.max_buffered_bytes >> 20,
                    "the store cannot write: recording goes on; rows are held in memory up to the bound, then counted as disk loss; every write is retried"
                );
                self.failing = Some(Failing {
                    since: Instant::now(),
                    since_ns: now_ns(),
                    error: e.to_string(),
                    next_seal: Instant::now() + SEAL_RETRY_MIN,
                    seal_backoff: SEAL_RETRY_MIN * 2,
                    last_drop_retry: None,
                });
            }
        }
    }

    /// Every write of a flush worked: leave the failing mode once nothing waits.
    fn recovered(&mut self) {
        if self.unsealed.is_empty()
            && self.ops.is_empty()
            && self.disk_loss.is_empty()
            && let Some(f) = self.failing.take()
        {
            tracing::info!(failed_for_s = f.since.elapsed().as_secs_f64(), rows.dropped_total = self.stats.rows_dropped_disk, "the store writes again");
        }
    }

    fn next_id_ns(&mut self) -> i64 {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        self.last_id_ns = now.max(self.last_id_ns + 1);
        self.last_id_ns
    }
}

/// What a hot-file write did.
enum HotWrite {
    /// Nothing was waiting.
    Nothing,
    Written,
    /// Not tried: writes fail and the filesystem has no room for it.
    Skipped,
}

/// Append `seg`'s unflushed batches to its hot file as one frame and fsync it.
/// A failed append is cut back to the last whole frame.
fn write_hot(data_dir: &Path, seg: &mut OpenSegment, frame: &mut Vec<u8>, failing: bool) -> Result<HotWrite> {
    if seg.flushed == seg.batches.len() {
        return Ok(HotWrite::Nothing);
    }
    if seg.hot_broken {
        return Ok(HotWrite::Skipped);
    }
    let pending = &seg.batches[seg.flushed..];
    let pending_bytes: usize = pending.iter().map(RecordBatch::get_array_memory_size).sum();
    if failing && free_bytes(data_dir).is_some_and(|f| f < (pending_bytes / 2) as u64 + WRITE_SLACK_BYTES) {
        return Ok(HotWrite::Skipped);
    }
    let path = layout::hot_path(data_dir, seg.def.name, &seg.id);
    if !seg.hot_exists {
        create_private_dir(&layout::hot_table_dir(data_dir, seg.def.name))?;
        create_hot_file(&path)?;
        seg.hot_exists = true;
        seg.hot_len = hot::MAGIC.len() as u64;
    }
    if seg.hot.is_none() {
        seg.hot = Some(OpenOptions::new().append(true).open(&path).map_err(io_err(&path))?);
    }
    let batch = if pending.len() == 1 {
        pending[0].clone()
    } else {
        arrow::compute::concat_batches(&seg.def.arrow_schema(), pending).map_err(|source| SegmentError::Arrow { segment: seg.id.clone(), source })?
    };
    let time = time_range(seg.def, &batch)?;
    hot::encode_frame_into(&batch, time, frame).map_err(|source| SegmentError::Hot { path: path.clone(), source })?;
    let f = seg.hot.as_mut().expect("opened above");
    let written = f.write_all(frame).and_then(|()| f.sync_data());
    // Keep what a storm's flush needs, not the largest one ever seen.
    let frame_len = frame.len() as u64;
    frame.clear();
    frame.shrink_to(8 << 20);
    if let Err(e) = written {
        // Part of the frame may be on disk: cut it off, or recovery would stop
        // there and never read the frames appended after it.
        if let Err(cut) = f.set_len(seg.hot_len).and_then(|()| f.sync_data()) {
            tracing::error!(file = %path.display(), error = %cut, "cutting a failed hot-file append back failed: no more frames go to this file (its rows stay in memory until sealed)");
            seg.hot_broken = true;
        }
        return Err(io_err(&path)(e));
    }
    seg.hot_len += frame_len;
    seg.hot_rows += batch.num_rows() as u64;
    seg.hot_time = Some(match seg.hot_time {
        Some((lo, hi)) => (lo.min(time.0), hi.max(time.1)),
        None => time,
    });
    seg.hot_dirty = true;
    seg.flushed = seg.batches.len();
    Ok(HotWrite::Written)
}

/// A new hot file holding only the magic, created under a temporary name and
/// renamed: a hot file shorter than the magic is never one the writer made.
fn create_hot_file(path: &Path) -> Result<()> {
    let tmp = PathBuf::from(format!("{}{}", path.display(), layout::TMP_SUFFIX));
    let made = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(hot::MAGIC)?;
        f.sync_all()
    })();
    if let Err(e) = made {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    fsync_dir(path.parent().expect("hot file has a parent"))
}

fn remove_file_if_any(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => fsync_dir(path.parent().expect("file has a parent")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Bytes an unprivileged writer may still use on `dir`'s filesystem.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    filesystem_space(dir).map(|(free, _)| free)
}

pub use podtrail_schema::layout::filesystem_space;

fn check_schema(def: &TableDef, batch: &RecordBatch) -> Result<()> {
    let want = def.arrow_schema();
    let got = batch.schema();
    if got.fields().len() != want.fields().len() {
        return Err(SegmentError::SchemaMismatch {
            table: def.name.into(),
            detail: format!("{} columns, expected {}", got.fields().len(), want.fields().len()),
        });
    }
    for (g, w) in got.fields().iter().zip(want.fields()) {
        if g.name() != w.name() || g.data_type() != w.data_type() || (g.is_nullable() && !w.is_nullable()) {
            return Err(SegmentError::SchemaMismatch {
                table: def.name.into(),
                detail: format!("column {} {:?} (nullable {}), expected {} {:?} (nullable {})", g.name(), g.data_type(), g.is_nullable(), w.name(), w.data_type(), w.is_nullable()),
            });
        }
    }
    Ok(())
}

/// The rows of `batch` grouped by UTC clock hour of `time`, in hour order (each
/// group keeps the batch's row order).
fn split_by_hour(def: &TableDef, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
    let times = batch.column(0).as_any().downcast_ref::<TimestampNanosecondArray>().expect("checked by time_range");
    let mut hours: Vec<i64> = times.values().iter().map(|t| t.div_euclid(NS_PER_HOUR)).collect();
    let per_row = hours.clone();
    hours.sort_unstable();
    hours.dedup();
    hours
        .into_iter()
        .map(|h| {
            let mask: arrow::array::BooleanArray = per_row.iter().map(|&r| Some(r == h)).collect();
            arrow::compute::filter_record_batch(batch, &mask).map_err(|source| SegmentError::Arrow { segment: format!("{} (splitting a batch by hour)", def.name), source })
        })
        .collect()
}

pub(crate) fn time_range(def: &TableDef, batch: &RecordBatch) -> Result<(i64, i64)> {
    let times = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .ok_or_else(|| SegmentError::SchemaMismatch { table: def.name.into(), detail: "first column is not `time`".into() })?;
    if times.null_count() > 0 {
        return Err(SegmentError::SchemaMismatch { table: def.name.into(), detail: "null `time`".into() });
    }
    let min = arrow::compute::min(times).expect("non-empty");
    let max = arrow::compute::max(times).expect("non-empty");
    Ok((min, max))
}

/// Take the data dir's writer lock, waiting up to `wait` for a holder that is
/// going away (a killed recorder holds it until the kernel has torn it down);
/// then write our pid into it, for the next one's message.
fn lock_data_dir(dir: &Path, wait: Duration) -> Result<File> {
    let path = dir.join(layout::LOCK_FILE);
    let mut f = create_private_file(&path)?;
    let started = Instant::now();
    let mut said = false;
    loop {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock {
            return Err(io_err(&path)(e));
        }
        let holder = match fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
            Some(pid) => format!("pid {pid}"),
            None => "pid unknown".into(),
        };
        if started.elapsed() >= wait {
            return Err(SegmentError::Locked { dir: dir.to_owned(), holder });
        }
        if !said {
            tracing::info!(data_dir = %dir.display(), holder, wait_s = wait.as_secs(), "another writer holds the data dir's LOCK; waiting for it to go away");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = format!("{}\n", std::process::id());
    f.set_len(0).and_then(|()| f.write_all(pid.as_bytes())).map_err(io_err(&path))?;
    Ok(f)
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

pub(crate) fn create_private_file(path: &Path) -> Result<File> {
    OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path).map_err(io_err(path))
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Rows of a batch list, for reports.
pub(crate) fn total_rows(batches: &[RecordBatch]) -> u64 {
    batches.iter().map(|b| b.num_rows() as u64).sum()
}

pub(crate) fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
