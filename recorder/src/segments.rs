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

mod catalog_write;
mod parquet_out;
mod recovery;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::{Array, TimestampNanosecondArray};
use arrow::record_batch::RecordBatch;
use podtrail_schema::catalog::{Catalog, CatalogError};
use podtrail_schema::tables::{TableDef, event_table};
use podtrail_schema::{hot, layout};

pub use catalog_write::{ContainerRecord, IpOwnerRecord, LossRecord, PodRecord};
pub use recovery::RecoveryReport;

const NS_PER_HOUR: i64 = 3_600_000_000_000;

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
    #[error("data dir {0} is in use by another writer (podtraild or podtrail-synth holds its LOCK file); one writer per data dir")]
    Locked(PathBuf),
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
    hot: Option<File>,
}

pub struct SegmentStore {
    // Held (flock) for the store's life: one writer per data dir.
    _lock: File,
    cfg: StoreConfig,
    catalog: Catalog,
    open: BTreeMap<&'static str, OpenSegment>,
    last_id_ns: i64,
    stats: StoreStats,
    /// The hot tail's frame buffer, kept across flushes (see `hot::encode_frame_into`).
    frame: Vec<u8>,
}

impl SegmentStore {
    /// Open (creating) the data dir, then recover whatever a previous writer left:
    /// temporary files, unrecorded segment files, and hot tails.
    pub fn open(cfg: StoreConfig) -> Result<(Self, RecoveryReport)> {
        for dir in [cfg.data_dir.clone(), cfg.data_dir.join(layout::SEGMENTS_DIR), cfg.data_dir.join(layout::HOT_DIR)] {
            create_private_dir(&dir)?;
        }
        let lock = lock_data_dir(&cfg.data_dir)?;
        let cat_path = layout::catalog_path(&cfg.data_dir);
        if !cat_path.exists() {
            // Created 0600 before SQLite opens it: SQLite gives its -wal and -shm
            // files the database file's permissions.
            create_private_file(&cat_path)?;
        }
        let catalog = Catalog::open_rw(&cat_path)?;
        catalog_write::set_meta(&catalog, "node", &cfg.node)?;
        let mut store = SegmentStore { _lock: lock, cfg, catalog, open: BTreeMap::new(), last_id_ns: 0, stats: StoreStats::default(), frame: Vec::new() };
        let report = recovery::recover(&mut store)?;
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

    /// Add rows to `table`'s open segment, sealing the open segment first when the
    /// batch would take it past an hour boundary, its age or its size.
    ///
    /// Invariant: every row of a segment lies in the same UTC clock hour (a batch
    /// that spans an hour boundary is split), so a segment's date and hour
    /// partitions hold for each of its rows; the lake prunes on that.
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
        if let Some(seg) = self.open.get(def.name) {
            let span = bmax.saturating_sub(seg.time_min).max(seg.time_max.saturating_sub(bmin));
            let roll = bmin.div_euclid(NS_PER_HOUR) != seg.time_min.div_euclid(NS_PER_HOUR)
                || span > self.cfg.max_segment_age.as_nanos() as i64
                || seg.opened.elapsed() >= self.cfg.max_segment_age
                || seg.mem_bytes >= self.cfg.max_segment_bytes;
            if roll {
                self.seal(def.name)?;
            }
        }
        let id_ns = self.next_id_ns();
        let seg = self.open.entry(def.name).or_insert_with(|| OpenSegment {
            def,
            id: layout::segment_id(def.name, id_ns),
            batches: Vec::new(),
            flushed: 0,
            rows: 0,
            mem_bytes: 0,
            time_min: bmin,
            time_max: bmax,
            opened: Instant::now(),
            hot: None,
        });
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
    /// segment, most rows never go through the hot file). A seal that fails
    /// here falls back to the hot file, so its rows are durable all the same;
    /// the error comes back when the segment must be sealed. The recorder calls
    /// this about once a second.
    pub fn flush(&mut self) -> Result<()> {
        let full: Vec<&'static str> = self
            .open
            .iter()
            .filter(|(_, s)| s.flushed < s.batches.len() && s.mem_bytes >= self.cfg.max_segment_bytes / 2)
            .map(|(t, _)| *t)
            .collect();
        for t in full {
            if let Err(e) = self.seal(t) {
                tracing::warn!(table = t, error = %e, "sealing a half-full segment failed; its rows go to the hot file instead");
            }
        }
        let dir = &self.cfg.data_dir;
        for seg in self.open.values_mut() {
            if seg.flushed == seg.batches.len() {
                continue;
            }
            let path = layout::hot_path(dir, seg.def.name, &seg.id);
            if seg.hot.is_none() {
                create_private_dir(&layout::hot_table_dir(dir, seg.def.name))?;
                let mut f = OpenOptions::new().create_new(true).append(true).mode(0o600).open(&path).map_err(io_err(&path))?;
                f.write_all(hot::MAGIC).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
                fsync_dir(path.parent().expect("hot file has a parent"))?;
                seg.hot = Some(f);
            }
            let pending = &seg.batches[seg.flushed..];
            let batch = if pending.len() == 1 {
                pending[0].clone()
            } else {
                arrow::compute::concat_batches(&seg.def.arrow_schema(), pending)
                    .map_err(|source| SegmentError::Arrow { segment: seg.id.clone(), source })?
            };
            hot::encode_frame_into(&batch, &mut self.frame).map_err(|source| SegmentError::Hot { path: path.clone(), source })?;
            let f = seg.hot.as_mut().expect("created above");
            f.write_all(&self.frame).map_err(io_err(&path))?;
            // Keep what a storm's flush needs, not the largest one ever seen.
            self.frame.clear();
            self.frame.shrink_to(8 << 20);
            f.sync_data().map_err(io_err(&path))?;
            seg.flushed = seg.batches.len();
            self.stats.hot_flushes += 1;
        }
        Ok(())
    }

    /// Seal segments that have been open longer than `max_segment_age` (wall clock).
    pub fn seal_aged(&mut self) -> Result<Vec<SealedSegment>> {
        let aged: Vec<&'static str> = self
            .open
            .iter()
            .filter(|(_, s)| s.opened.elapsed() >= self.cfg.max_segment_age)
            .map(|(t, _)| *t)
            .collect();
        let mut out = Vec::new();
        for t in aged {
            out.extend(self.seal(t)?);
        }
        Ok(out)
    }

    /// Seal every open segment (shutdown).
    pub fn close(mut self) -> Result<Vec<SealedSegment>> {
        let tables: Vec<&'static str> = self.open.keys().copied().collect();
        let mut out = Vec::new();
        for t in tables {
            out.extend(self.seal(t)?);
        }
        Ok(out)
    }

    /// Seal `table`'s open segment. On failure the segment stays open (in memory
    /// and in its hot file) so nothing is lost; the caller decides when to retry.
    pub fn seal(&mut self, table: &str) -> Result<Option<SealedSegment>> {
        let Some(seg) = self.open.remove(table) else { return Ok(None) };
        match self.write_sealed(&seg.id, seg.def, &seg.batches, seg.hot.is_some()) {
            Ok(sealed) => Ok(Some(sealed)),
            Err(e) => {
                self.open.insert(seg.def.name, seg);
                Err(e)
            }
        }
    }

    fn write_sealed(&mut self, id: &str, def: &'static TableDef, batches: &[RecordBatch], has_hot: bool) -> Result<SealedSegment> {
        let data_dir = self.cfg.data_dir.clone();
        let written = parquet_out::write_segment(&data_dir, def, id, batches, &self.cfg)?;
        catalog_write::commit_segment(&mut self.catalog, &written)?;
        // Only now may the hot copy go: the catalog owns these rows.
        if has_hot {
            let hot = layout::hot_path(&data_dir, def.name, id);
            match fs::remove_file(&hot) {
                Ok(()) => fsync_dir(hot.parent().expect("hot file has a parent"))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&hot)(e)),
            }
        }
        self.stats.segments_sealed += 1;
        self.stats.rows_sealed += written.rows;
        self.stats.bytes_sealed += written.bytes;
        if let Some(budget) = self.cfg.disk_budget_bytes {
            self.stats.segments_expired += catalog_write::enforce_budget(&mut self.catalog, &data_dir, budget, self.cfg.ship_target.as_deref())?;
        }
        Ok(SealedSegment { segment_id: id.to_owned(), table: def.name, path: data_dir.join(&written.rel_path), rows: written.rows, bytes: written.bytes })
    }

    /// Record pods, containers and IP ownership intervals (one transaction).
    pub fn write_identity(&mut self, pods: &[PodRecord], containers: &[ContainerRecord], ips: &[IpOwnerRecord]) -> Result<()> {
        catalog_write::write_identity(&mut self.catalog, pods, containers, ips)
    }

    /// Identity intervals of `source` that a previous run left open on this node.
    pub fn open_intervals(&self, source: &str) -> Result<(Vec<PodRecord>, Vec<ContainerRecord>, Vec<IpOwnerRecord>)> {
        catalog_write::open_intervals(&self.catalog, &self.cfg.node, source)
    }

    /// Set a catalog `meta` value (what the recorder knows about its own run).
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        catalog_write::set_meta(&self.catalog, key, value)
    }

    /// Record counted loss.
    pub fn record_loss(&mut self, loss: &LossRecord) -> Result<()> {
        catalog_write::record_loss(&self.catalog, loss)
    }

    fn next_id_ns(&mut self) -> i64 {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        self.last_id_ns = now.max(self.last_id_ns + 1);
        self.last_id_ns
    }
}

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

/// Take the data dir's writer lock, or say who holds it.
fn lock_data_dir(dir: &Path) -> Result<File> {
    let path = dir.join(layout::LOCK_FILE);
    let f = create_private_file(&path)?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.kind() == std::io::ErrorKind::WouldBlock { SegmentError::Locked(dir.to_owned()) } else { io_err(&path)(e) });
    }
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

#[cfg(test)]
mod tests;
