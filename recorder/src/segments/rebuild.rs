//! `podtraild recover --rebuild-catalog`: a new catalog from the sealed segments,
//! when the old one is damaged.
//!
//! In: the data dir's `segments/` and, when present, the damaged catalog. Out: a
//! new `catalog.db` whose segments are every readable segment file (hashed and
//! chained again, in the order they were created), with the identity history,
//! loss, runs and shipping records that could still be read from the damaged
//! catalog, and pods rebuilt from the segments' own pod columns where none
//! could. The damaged catalog is kept beside it (`catalog.db.damaged-<time>`),
//! untouched. Invariant: the chain is marked rebuilt (`meta` `chain_rebuilt`):
//! it proves the segments were not altered after the rebuild, not before, and
//! `podtrail verify` says so.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampNanosecondType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use podtrail_schema::catalog::Catalog;
use podtrail_schema::layout;
use podtrail_schema::tables::event_table;
use rusqlite::OpenFlags;

use super::catalog_write::{self, CatalogOp, LossRecord, PodRecord};
use super::parquet_out::WrittenSegment;
use super::{Result, SegmentError, create_private_dir, create_private_file, io_err, lock_data_dir, now_ns};

/// `meta` key of a rebuilt chain: JSON `{"at": ns, "segments": n, "damaged_catalog": path}`.
pub const META_CHAIN_REBUILT: &str = podtrail_schema::catalog::META_CHAIN_REBUILT;

#[derive(Debug, Default, serde::Serialize)]
pub struct RebuildReport {
    /// Where the damaged catalog (and its -wal/-shm) was kept.
    pub damaged_catalog_kept_as: Option<PathBuf>,
    pub segments: u64,
    pub rows: u64,
    /// Segment files that could not be read, moved to quarantine/.
    pub segments_quarantined: u64,
    /// Rows read back from the damaged catalog, per table.
    pub salvaged: BTreeMap<String, u64>,
    /// Tables of the damaged catalog that could not be read to the end (why).
    pub salvage_stopped: BTreeMap<String, String>,
    /// Pods recorded from the segments' pod columns (none salvaged for them).
    pub pods_from_segments: u64,
}

/// Per pod UID seen in the segments: its name, namespace, first and last time.
type SeenPods = BTreeMap<String, (Option<String>, Option<String>, i64, i64)>;

/// Tables copied from a damaged catalog, in an order that keeps references valid.
const SALVAGE: &[&str] = &["meta", "pods", "containers", "ip_owners", "loss", "runs", "shipped"];

pub fn rebuild_catalog(data_dir: &Path, node: &str) -> Result<RebuildReport> {
    if fs::metadata(data_dir).is_ok_and(|m| !m.is_dir()) {
        return Err(SegmentError::NotADirectory(data_dir.to_owned()));
    }
    create_private_dir(data_dir)?;
    let _lock = lock_data_dir(data_dir, std::time::Duration::from_secs(10))?;
    let mut report = RebuildReport::default();
    let cat_path = layout::catalog_path(data_dir);
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    if cat_path.exists() {
        let kept = PathBuf::from(format!("{}.damaged-{stamp}", cat_path.display()));
        for suffix in ["", "-wal", "-shm"] {
            let from = PathBuf::from(format!("{}{suffix}", cat_path.display()));
            if from.exists() {
                fs::rename(&from, format!("{}{suffix}", kept.display())).map_err(io_err(&from))?;
            }
        }
        tracing::warn!(kept = %kept.display(), "rebuild: the damaged catalog is kept beside the new one");
        report.damaged_catalog_kept_as = Some(kept);
    }
    create_private_file(&cat_path)?;
    let mut cat = Catalog::open_rw_checked(&cat_path, false)?;
    if let Some(kept) = report.damaged_catalog_kept_as.clone() {
        salvage(data_dir, &kept, &cat, &mut report)?;
    }

    let mut found = Vec::new();
    collect_parquet(&data_dir.join(layout::SEGMENTS_DIR), &mut found);
    let mut segments = Vec::new();
    let mut pods = SeenPods::new();
    let mut ops = Vec::new();
    for path in found {
        match read_segment(data_dir, &path, &mut pods) {
            Ok(s) => segments.push(s),
            Err(why) => {
                let table = path.parent().and_then(Path::parent).and_then(Path::parent).and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("unknown").to_owned();
                let dest = data_dir.join(layout::QUARANTINE_DIR).join(&table);
                let moved = create_private_dir(&dest).and_then(|()| {
                    let to = dest.join(path.file_name().unwrap_or_default());
                    fs::rename(&path, &to).map(|()| to).map_err(io_err(&path))
                });
                tracing::warn!(file = %path.display(), %why, "rebuild: an unreadable segment file was moved to quarantine/");
                report.segments_quarantined += 1;
                ops.push(CatalogOp::Loss(LossRecord {
                    time_from: now_ns(),
                    time_to: now_ns(),
                    source: "corrupt".into(),
                    table_name: event_table(&table).map(|d| d.name.to_owned()),
                    count: None,
                    detail: Some(format!(
                        "segment file {} is unreadable ({why}) and was not in the rebuilt catalog; {}",
                        path.display(),
                        match moved {
                            Ok(to) => format!("kept in {}", to.display()),
                            Err(e) => format!("moving it to quarantine failed: {e}"),
                        }
                    )),
                    ..LossRecord::default()
                }));
            }
        }
    }
    // Chain order: creation order (segment ids carry their creation time).
    segments.sort_by_key(|s| creation_key(&s.segment_id));
    for s in &segments {
        catalog_write::commit_segment(&mut cat, s)?;
        report.segments += 1;
        report.rows += s.rows;
    }
    let known: BTreeSet<String> = {
        let mut st = cat.conn().prepare("SELECT DISTINCT pod_uid FROM pods").map_err(|e| cat.err(e))?;
        let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(|e| cat.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| cat.err(e))?
    };
    let rebuilt: Vec<PodRecord> = pods
        .into_iter()
        .filter(|(uid, _)| !known.contains(uid))
        .map(|(pod_uid, (pod_name, pod_namespace, from, to))| PodRecord {
            pod_uid,
            pod_namespace,
            pod_name,
            node: node.to_owned(),
            labels: None,
            owner: None,
            qos_class: None,
            valid_from: from,
            valid_to: Some(to),
            source: "rebuilt".into(),
        })
        .collect();
    report.pods_from_segments = rebuilt.len() as u64;
    ops.push(CatalogOp::Identity(rebuilt, Vec::new(), Vec::new()));
    let now = now_ns();
    ops.push(CatalogOp::Meta(
        META_CHAIN_REBUILT.into(),
        serde_json::json!({ "at": now, "segments": report.segments, "damaged_catalog": report.damaged_catalog_kept_as }).to_string(),
    ));
    ops.push(CatalogOp::Meta("node".into(), node.to_owned()));
    ops.push(CatalogOp::Loss(LossRecord {
        time_from: now,
        time_to: now,
        source: "corrupt".into(),
        count: None,
        detail: Some(format!(
            "catalog rebuilt from {} segment files; rows salvaged from the damaged catalog: {:?}{}; records it could no longer give (expired segments, identity intervals, loss) are gone",
            report.segments,
            report.salvaged,
            if report.salvage_stopped.is_empty() { String::new() } else { format!(" (stopped early: {:?})", report.salvage_stopped) }
        )),
        ..LossRecord::default()
    }));
    let path = cat.path().to_owned();
    let tx = cat.write_tx()?;
    for op in &ops {
        catalog_write::apply(&tx, op).map_err(|source| SegmentError::Catalog(podtrail_schema::CatalogError::Sqlite { path: path.clone(), source }))?;
    }
    tx.commit().map_err(|source| SegmentError::Catalog(podtrail_schema::CatalogError::Sqlite { path: path.clone(), source }))?;
    tracing::info!(?report, "rebuild: catalog rebuilt from the segments");
    Ok(report)
}

/// Copy what can still be read from the damaged catalog `kept` into `cat`,
/// table by table, up to the first row that cannot be read. Read from a copy:
/// opening the evidence itself could let SQLite change it (a checkpoint).
fn salvage(data_dir: &Path, kept: &Path, cat: &Catalog, report: &mut RebuildReport) -> Result<()> {
    let tmp = tempfile::Builder::new().prefix(".rebuild-").tempdir_in(data_dir).map_err(io_err(data_dir))?;
    let copy = tmp.path().join("damaged.db");
    for suffix in ["", "-wal"] {
        let from = PathBuf::from(format!("{}{suffix}", kept.display()));
        if from.exists() {
            fs::copy(&from, format!("{}{suffix}", copy.display())).map_err(io_err(&from))?;
        }
    }
    let old = match rusqlite::Connection::open_with_flags(&copy, OpenFlags::SQLITE_OPEN_READ_WRITE) {
        Ok(c) => c,
        Err(e) => {
            report.salvage_stopped.insert("*".into(), e.to_string());
            return Ok(());
        }
    };
    for table in SALVAGE {
        let (n, stopped) = copy_table(&old, cat.conn(), table);
        if n > 0 {
            report.salvaged.insert((*table).to_owned(), n);
        }
        if let Some(why) = stopped {
            report.salvage_stopped.insert((*table).to_owned(), why);
        }
    }
    Ok(())
}

/// Copy the rows of `table` (the columns both catalogs have) until the first
/// error; how many, and the error.
fn copy_table(from: &rusqlite::Connection, to: &rusqlite::Connection, table: &str) -> (u64, Option<String>) {
    let columns = |c: &rusqlite::Connection| -> rusqlite::Result<Vec<String>> {
        let mut st = c.prepare("SELECT name FROM pragma_table_info(?1)")?;
        let rows = st.query_map([table], |r| r.get::<_, String>(0))?;
        rows.collect()
    };
    let (have, want) = match (columns(from), columns(to)) {
        (Ok(h), Ok(w)) => (h, w),
        (Err(e), _) | (_, Err(e)) => return (0, Some(e.to_string())),
    };
    let cols: Vec<&String> = want.iter().filter(|c| have.contains(c)).collect();
    if cols.is_empty() {
        return (0, None);
    }
    let list = cols.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ");
    let marks = (1..=cols.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
    let mut n = 0;
    let mut run = || -> rusqlite::Result<()> {
        let mut read = from.prepare(&format!("SELECT {list} FROM {table}"))?;
        let mut write = to.prepare(&format!("INSERT OR IGNORE INTO {table} ({list}) VALUES ({marks})"))?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let values: Vec<rusqlite::types::Value> = (0..cols.len()).map(|i| row.get(i)).collect::<rusqlite::Result<_>>()?;
            write.execute(rusqlite::params_from_iter(values))?;
            n += 1;
        }
        Ok(())
    };
    let stopped = run().err().map(|e| e.to_string());
    (n, stopped)
}

/// A segment file's catalog record, from its footer and its key columns; its
/// pods' names and time ranges are added to `pods`.
fn read_segment(data_dir: &Path, path: &Path, pods: &mut SeenPods) -> std::result::Result<WrittenSegment, String> {
    let file = fs::File::open(path).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let kv = |key: &str| {
        builder.metadata().file_metadata().key_value_metadata().and_then(|kv| kv.iter().find(|k| k.key == key).and_then(|k| k.value.clone()))
    };
    let id = kv("podtrail.segment_id").or_else(|| path.file_stem().and_then(|s| s.to_str()).map(str::to_owned)).ok_or("no segment id")?;
    let table = kv("podtrail.table").ok_or("no podtrail.table in its footer: not a podtrail segment")?;
    let def = event_table(&table).ok_or_else(|| format!("unknown table {table}"))?;
    let schema = def.arrow_schema();
    let idx: Vec<usize> = ["time", "pod_uid", "pod_name", "pod_namespace"].iter().map(|c| schema.index_of(c).expect("event key column")).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), idx);
    let reader = builder.with_projection(mask).build().map_err(|e| e.to_string())?;
    let (mut rows, mut time_min, mut time_max) = (0u64, i64::MAX, i64::MIN);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        rows += batch.num_rows() as u64;
        let time = batch.column(0).as_primitive::<TimestampNanosecondType>();
        let (uid, name, ns) = (batch.column(1).as_string::<i32>(), batch.column(2).as_string::<i32>(), batch.column(3).as_string::<i32>());
        for i in 0..batch.num_rows() {
            let t = time.value(i);
            time_min = time_min.min(t);
            time_max = time_max.max(t);
            if uid.is_valid(i) {
                let u = uid.value(i);
                seen.insert(u.to_owned());
                let e = pods.entry(u.to_owned()).or_insert((None, None, t, t));
                if e.0.is_none() && name.is_valid(i) {
                    e.0 = Some(name.value(i).to_owned());
                }
                if e.1.is_none() && ns.is_valid(i) {
                    e.1 = Some(ns.value(i).to_owned());
                }
                e.2 = e.2.min(t);
                e.3 = e.3.max(t);
            }
        }
    }
    if rows == 0 {
        return Err("no rows".into());
    }
    let bytes = fs::metadata(path).map_err(|e| e.to_string())?.len();
    let sha256 = podtrail_schema::catalog::sha256_file(path).map_err(|e| e.to_string())?;
    let rel_path = path.strip_prefix(data_dir).map_err(|e| e.to_string())?.to_owned();
    Ok(WrittenSegment { segment_id: id, table: def.name, rel_path, rows, bytes, sha256, time_min, time_max, pods: seen.into_iter().collect() })
}

/// `<table>-<yyyymmddThhmmss>-<ns>` sorts by creation on (time, ns).
fn creation_key(id: &str) -> (String, String) {
    let mut parts = id.rsplitn(3, '-');
    let ns = parts.next().unwrap_or("").to_owned();
    let ts = parts.next().unwrap_or("").to_owned();
    (ts, ns)
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_parquet(&path, out);
        } else if path.extension().is_some_and(|e| e == layout::SEGMENT_EXT) {
            out.push(path);
        }
    }
}
