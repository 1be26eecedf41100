//! `podtrail export`: the node's sealed history to a lake (directory or S3), as
//! Hive-partitioned Parquet that Trino, Spark, Athena, DuckDB or DataFusion read.
//!
//! In: a data dir (read-only) and a window. Out: every sealed segment overlapping the
//! window, byte for byte, at `<table>/date=/node=/<segment-id>.parquet`, then the
//! identity snapshots (`pods`, `containers`, `ip_owners`, `podtrail_loss`) of this
//! node. Whole segments, never slices of them: a segment that overlaps the window is
//! exported whole (a segment spans at most 10 minutes), so overlapping or repeated
//! exports always produce the same objects and the lake never holds a row twice.
//! Rows still in the hot tail are not exported (they are once sealed) and are
//! counted in the report.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use podtrail_schema::catalog::{Catalog, SegmentRecord};
use podtrail_lake::{self as lake, Lake, LakeError, Put, S3Options, Target};
use podtrail_schema::tables::EVENT_TABLES;
use podtrail_schema::{hot, layout};

use crate::QueryError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LakeSchema {
    /// The tables exactly as on the node (same Parquet files).
    Native,
    /// OCSF 1.1.0 Process Activity (1007) and Network Activity (4001); see schema/OCSF.md.
    Ocsf,
}

pub struct ExportOptions {
    pub to: Target,
    pub s3: S3Options,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Event tables to export (empty: all).
    pub tables: Vec<String>,
    /// Node name in the lake (default: the recorder's, from the catalog).
    pub node: Option<String>,
    pub schema: LakeSchema,
    /// Draw a progress line on stderr.
    pub progress: bool,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct ExportReport {
    pub target: String,
    pub node: String,
    pub schema: String,
    /// Segments overlapping the window (what this export covers).
    pub segments: u64,
    pub segments_written: u64,
    pub segments_already_there: u64,
    pub bytes_written: u64,
    pub rows_written: u64,
    /// Segments left out by `--schema ocsf` (tables OCSF does not map).
    pub segments_not_mapped: u64,
    pub snapshots_written: Vec<String>,
    pub snapshots_unchanged: Vec<String>,
    /// Rows recorded but not sealed yet: not exported by this run.
    pub hot_rows_not_exported: u64,
    /// Damaged or missing segments that were not exported (one line each).
    pub failed: Vec<String>,
    /// Segments whose rows span two UTC dates (written before the store split
    /// batches at hour boundaries): lake queries bounded by `time` prune on the
    /// first date and can miss their rows of the second.
    pub segments_spanning_dates: Vec<String>,
    pub seconds: f64,
}

impl std::fmt::Display for ExportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "exported {} of {} segments ({} rows, {:.1} MiB) to {} as node {} ({}); {} already there",
            self.segments_written,
            self.segments,
            self.rows_written,
            self.bytes_written as f64 / (1 << 20) as f64,
            self.target,
            self.node,
            self.schema,
            self.segments_already_there
        )?;
        if self.segments_not_mapped > 0 {
            writeln!(f, "{} segments of tables without an OCSF class left out", self.segments_not_mapped)?;
        }
        writeln!(f, "identity snapshots: {} written, {} unchanged", self.snapshots_written.len(), self.snapshots_unchanged.len())?;
        if self.hot_rows_not_exported > 0 {
            writeln!(f, "{} rows are not sealed yet and were not exported; they will be by an export after they are sealed", self.hot_rows_not_exported)?;
        }
        for x in &self.failed {
            writeln!(f, "FAILED {x}")?;
        }
        for x in &self.segments_spanning_dates {
            writeln!(f, "warning: segment {x} spans two dates (older podtrail); lake queries bounded by time may miss its rows after midnight: filter on `date` instead")?;
        }
        Ok(())
    }
}

fn lake_err(e: LakeError) -> QueryError {
    match e {
        LakeError::Usage(m) => QueryError::BadQuery(m),
        LakeError::Store(m) | LakeError::Source(m) => QueryError::Runtime(m),
    }
}

/// The node name the recorder stamped (catalog `meta`), else this host's name.
pub fn default_node(catalog: &Catalog) -> Result<String, QueryError> {
    if let Some(n) = catalog.meta("node")? {
        return Ok(n);
    }
    Ok(std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "unknown".into()))
}

pub async fn export(data_dir: &Path, opts: ExportOptions) -> Result<ExportReport, QueryError> {
    let started = Instant::now();
    let cat_path = layout::catalog_path(data_dir);
    if !cat_path.exists() {
        return Err(QueryError::NoData(format!("{} holds no podtrail history (no {})", data_dir.display(), layout::CATALOG_FILE)));
    }
    let catalog = Catalog::open_ro(&cat_path)?;
    let node = match opts.node {
        Some(n) => n,
        None => default_node(&catalog)?,
    };
    lake::check_node_name(&node).map_err(lake_err)?;
    for t in &opts.tables {
        if !EVENT_TABLES.iter().any(|d| d.name == t) {
            let names: Vec<&str> = EVENT_TABLES.iter().map(|d| d.name).collect();
            return Err(QueryError::BadQuery(format!("--table {t}: not an event table (one of {})", names.join(", "))));
        }
    }
    let (from, to) = (opts.since.unwrap_or(i64::MIN), opts.until.map(|u| u - 1).unwrap_or(i64::MAX));
    let mut segments: Vec<SegmentRecord> = Vec::new();
    for def in EVENT_TABLES.iter().filter(|d| opts.tables.is_empty() || opts.tables.iter().any(|t| t == d.name)) {
        segments.extend(catalog.segments_overlapping(def.name, from, to, None)?);
    }
    segments.sort_by_key(|s| s.seq);
    let mut report = ExportReport {
        target: opts.to.to_string(),
        node: node.clone(),
        schema: format!("{:?}", opts.schema).to_lowercase(),
        segments: segments.len() as u64,
        ..Default::default()
    };
    let lake = Lake::open(&opts.to, &opts.s3, true).map_err(lake_err)?;
    lake.check().await.map_err(lake_err)?;

    let total_bytes: u64 = segments.iter().map(|s| s.bytes).sum();
    let mut progress = Progress::new(opts.progress && std::io::stderr().is_terminal(), segments.len() as u64, total_bytes);
    let day = |ns: i64| chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(ns).date_naive();
    for seg in &segments {
        if day(seg.time_min) != day(seg.time_max) {
            report.segments_spanning_dates.push(seg.segment_id.clone());
        }
        let outcome = match opts.schema {
            LakeSchema::Native => lake.put_segment(data_dir, seg, &node).await.map(|(p, _)| (p, seg.bytes)),
            LakeSchema::Ocsf => {
                let classes = crate::ocsf::mappings_for(&seg.table_name);
                if classes.is_empty() {
                    report.segments_not_mapped += 1;
                    progress.step(seg.bytes);
                    continue;
                }
                export_ocsf(&lake, data_dir, seg, &classes, &node).await
            }
        };
        match outcome {
            Ok((Put::Written, bytes)) => {
                report.segments_written += 1;
                report.bytes_written += bytes;
                report.rows_written += seg.rows;
            }
            Ok((Put::AlreadyThere, _)) => report.segments_already_there += 1,
            // A damaged segment is skipped and reported; the store failing ends the run.
            Err(LakeError::Source(m)) => report.failed.push(m),
            Err(e) => {
                progress.finish();
                return Err(lake_err(e));
            }
        }
        progress.step(seg.bytes);
    }
    progress.finish();
    for def in lake::SNAPSHOT_TABLES {
        let bytes = lake::snapshot_parquet(&catalog, def, &node).map_err(lake_err)?;
        match lake.put_if_changed(&lake.snapshot_key(def.name, &node), bytes).await.map_err(lake_err)? {
            Put::Written => report.snapshots_written.push(def.name.to_owned()),
            Put::AlreadyThere => report.snapshots_unchanged.push(def.name.to_owned()),
        }
    }
    report.hot_rows_not_exported = hot_rows(data_dir, &catalog, &opts.tables);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// One segment to each OCSF class its rows go to: one object per class that
/// gets any (a class none of its rows map to gets no empty file). Written
/// when any object was new.
async fn export_ocsf(lake: &Lake, data_dir: &Path, seg: &SegmentRecord, classes: &[&crate::ocsf::Mapping], node: &str) -> Result<(Put, u64), LakeError> {
    let bytes = lake::read_segment(data_dir, seg)?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| LakeError::Source(format!("segment {} ({}): {e}", seg.path, seg.segment_id)))?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| LakeError::Source(format!("segment {} ({}): {e}", seg.path, seg.segment_id)))?;
    let (mut put, mut written) = (Put::AlreadyThere, 0);
    for m in classes {
        let (out, events) = crate::ocsf::convert(m, batches.clone()).await.map_err(|e| LakeError::Source(format!("segment {}: {e}", seg.segment_id)))?;
        if events == 0 {
            continue;
        }
        let len = out.len() as u64;
        let key = lake.segment_key(&format!("ocsf/{}", m.class_dir), seg.time_min, node, &seg.segment_id);
        if let Put::Written = lake.put_new(&key, out).await? {
            put = Put::Written;
            written += len;
        }
    }
    Ok((put, written))
}

/// Rows of the hot tails (recorded, not yet sealed) of the exported tables.
fn hot_rows(data_dir: &Path, catalog: &Catalog, tables: &[String]) -> u64 {
    let mut n = 0;
    for def in EVENT_TABLES.iter().filter(|d| tables.is_empty() || tables.iter().any(|t| t == d.name)) {
        let Ok(dir) = std::fs::read_dir(layout::hot_table_dir(data_dir, def.name)) else { continue };
        for entry in dir.flatten() {
            let path = entry.path();
            let Some(id) = layout::hot_file_segment_id(&path) else { continue };
            if catalog.segment_exists(&id).unwrap_or(false) {
                continue;
            }
            if let Ok(bytes) = std::fs::read(&path)
                && let Ok((batches, _)) = hot::read_frames(&bytes)
            {
                n += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
            }
        }
    }
    n
}

/// One progress line on a terminal: files, bytes, ETA. Silent otherwise.
struct Progress {
    on: bool,
    files: u64,
    bytes: u64,
    done_files: u64,
    done_bytes: u64,
    started: Instant,
    last_draw: Option<Instant>,
}

impl Progress {
    fn new(on: bool, files: u64, bytes: u64) -> Self {
        Progress { on, files, bytes, done_files: 0, done_bytes: 0, started: Instant::now(), last_draw: None }
    }

    fn step(&mut self, bytes: u64) {
        self.done_files += 1;
        self.done_bytes += bytes;
        if !self.on || self.last_draw.is_some_and(|t| t.elapsed().as_millis() < 100) && self.done_files < self.files {
            return;
        }
        self.last_draw = Some(Instant::now());
        let secs = self.started.elapsed().as_secs_f64();
        let eta = if self.done_bytes > 0 { secs * (self.bytes - self.done_bytes) as f64 / self.done_bytes as f64 } else { 0.0 };
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let _ = write!(
            std::io::stderr(),
            "\r\x1b[Kexport: {}/{} files, {:.1}/{:.1} MiB, {:.1} MiB/s, ETA {:.0}s",
            self.done_files,
            self.files,
            mib(self.done_bytes),
            mib(self.bytes),
            mib(self.done_bytes) / secs.max(1e-3),
            eta
        );
    }

    fn finish(&mut self) {
        if self.on && self.last_draw.is_some() {
            let _ = writeln!(std::io::stderr());
        }
        self.on = false;
    }
}
