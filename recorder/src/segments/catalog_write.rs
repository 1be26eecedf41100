//! The recorder's writes to the catalog: segment commits (hash chain), retention,
//! identity intervals, loss, runs and hot-file row counts. Readers only ever see
//! committed transactions.

use std::fs;
use std::path::Path;

use podtrail_schema::catalog::{CHAIN_GENESIS, Catalog, chain_sha256};
use rusqlite::{OptionalExtension, params};

use super::parquet_out::WrittenSegment;
use super::{Result, fsync_dir, io_err};

pub use podtrail_schema::records::{ContainerRecord, IpOwnerRecord, LossRecord, PodRecord};

/// How a recorder run ended (`runs.end_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    Clean,
    Failed,
    Unclean,
}

impl RunEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            RunEnd::Clean => "clean",
            RunEnd::Failed => "failed",
            RunEnd::Unclean => "unclean",
        }
    }
}

/// A run that was still `running` in the catalog: at start, with the data
/// dir's lock held, one that did not end cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRun {
    pub run_id: i64,
    pub pid: u32,
    pub started_at: i64,
    pub last_flush: Option<i64>,
}

/// Rows durably flushed to an open segment's hot file, as last recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotFileRecord {
    pub segment_id: String,
    pub table_name: String,
    pub rows: u64,
    pub bytes: u64,
    pub time_min: i64,
    pub time_max: i64,
}

/// A catalog write that waits for the next transaction (the store keeps them
/// while the data dir cannot be written, and writes them in order).
#[derive(Debug, Clone)]
pub enum CatalogOp {
    Meta(String, String),
    Loss(LossRecord),
    Identity(Vec<PodRecord>, Vec<ContainerRecord>, Vec<IpOwnerRecord>),
    EndRun { run_id: i64, ended_at: i64, end: RunEnd, detail: Option<String> },
    ForgetHot(String),
}

/// Apply one queued write inside `tx`.
pub fn apply(tx: &rusqlite::Transaction<'_>, op: &CatalogOp) -> rusqlite::Result<()> {
    match op {
        CatalogOp::Meta(k, v) => {
            tx.execute("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", params![k, v])?;
        }
        CatalogOp::Loss(l) => insert_loss(tx, l)?,
        CatalogOp::Identity(p, c, i) => write_identity_in(tx, p, c, i)?,
        CatalogOp::EndRun { run_id, ended_at, end, detail } => {
            tx.execute(
                "UPDATE runs SET ended_at = ?2, end_state = ?3, detail = coalesce(?4, detail) WHERE run_id = ?1",
                params![run_id, ended_at, end.as_str(), detail],
            )?;
        }
        CatalogOp::ForgetHot(id) => {
            tx.execute("DELETE FROM hot_files WHERE segment_id = ?1", [id])?;
        }
    }
    Ok(())
}

pub fn insert_loss(tx: &rusqlite::Connection, l: &LossRecord) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO loss (time_from, time_to, source, table_name, cpu, count, detail, pod_uid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![l.time_from, l.time_to, l.source, l.table_name, l.cpu, l.count.map(|c| c as i64), l.detail, l.pod_uid],
    )?;
    Ok(())
}

/// Record a new run; its id.
pub fn insert_run(tx: &rusqlite::Connection, node: &str, pid: u32, started_at: i64) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO runs (node, pid, version, started_at) VALUES (?1, ?2, ?3, ?4)",
        params![node, pid, env!("CARGO_PKG_VERSION"), started_at],
    )?;
    Ok(tx.last_insert_rowid())
}

/// The latest durable flush of `run_id`: events up to `at` are on disk.
pub fn heartbeat(tx: &rusqlite::Connection, run_id: i64, at: i64) -> rusqlite::Result<()> {
    tx.execute("UPDATE runs SET last_flush = ?2 WHERE run_id = ?1", params![run_id, at])?;
    Ok(())
}

pub fn upsert_hot(tx: &rusqlite::Connection, h: &HotFileRecord) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO hot_files (segment_id, table_name, rows, bytes, time_min, time_max) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (segment_id) DO UPDATE SET rows = excluded.rows, bytes = excluded.bytes, time_min = excluded.time_min, time_max = excluded.time_max",
        params![h.segment_id, h.table_name, h.rows as i64, h.bytes as i64, h.time_min, h.time_max],
    )?;
    Ok(())
}

/// Runs still marked `running`.
pub fn open_runs(cat: &Catalog) -> Result<Vec<OpenRun>> {
    let mut st = cat.conn().prepare("SELECT run_id, pid, started_at, last_flush FROM runs WHERE end_state = 'running' ORDER BY run_id").map_err(|e| cat.err(e))?;
    let rows = st
        .query_map([], |r| Ok(OpenRun { run_id: r.get(0)?, pid: r.get::<_, i64>(1)? as u32, started_at: r.get(2)?, last_flush: r.get(3)? }))
        .map_err(|e| cat.err(e))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| cat.err(e))?)
}

/// Every hot file the catalog knows rows of.
pub fn hot_files(cat: &Catalog) -> Result<Vec<HotFileRecord>> {
    let mut st = cat.conn().prepare("SELECT segment_id, table_name, rows, bytes, time_min, time_max FROM hot_files").map_err(|e| cat.err(e))?;
    let rows = st
        .query_map([], |r| {
            Ok(HotFileRecord {
                segment_id: r.get(0)?,
                table_name: r.get(1)?,
                rows: r.get::<_, i64>(2)? as u64,
                bytes: r.get::<_, i64>(3)? as u64,
                time_min: r.get(4)?,
                time_max: r.get(5)?,
            })
        })
        .map_err(|e| cat.err(e))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| cat.err(e))?)
}

/// Record a sealed segment, chained to the last one, with its pods.
pub fn commit_segment(cat: &mut Catalog, s: &WrittenSegment) -> Result<()> {
    let path = cat.path().to_owned();
    let e = |e| podtrail_schema::CatalogError::Sqlite { path: path.clone(), source: e };
    let tx = cat.write_tx()?;
    let prev: Option<String> = tx
        .query_row("SELECT chain_sha256 FROM segments ORDER BY seq DESC LIMIT 1", [], |r| r.get(0))
        .optional()
        .map_err(e)?;
    let chain = chain_sha256(prev.as_deref().unwrap_or(CHAIN_GENESIS), &s.segment_id, &s.sha256);
    let sealed_at = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    // Its rows are the segment's now: the hot file's count is history.
    tx.execute("DELETE FROM hot_files WHERE segment_id = ?1", [&s.segment_id]).map_err(e)?;
    tx.execute(
        "INSERT INTO segments (segment_id, table_name, path, time_min, time_max, rows, bytes, sha256, chain_sha256, sealed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            s.segment_id,
            s.table,
            s.rel_path.to_string_lossy(),
            s.time_min,
            s.time_max,
            s.rows as i64,
            s.bytes as i64,
            s.sha256,
            chain,
            sealed_at
        ],
    )
    .map_err(e)?;
    let seq = tx.last_insert_rowid();
    {
        let mut ins = tx.prepare_cached("INSERT INTO segment_pods (pod_uid, seq) VALUES (?1, ?2)").map_err(e)?;
        for pod in &s.pods {
            ins.execute(params![pod, seq]).map_err(e)?;
        }
    }
    tx.commit().map_err(e)?;
    Ok(())
}

/// What retention keeps: sealed history within a byte budget, and free space
/// on the data dir's filesystem above a floor (measured by `free`).
pub struct Retention<'a> {
    pub budget: Option<u64>,
    pub min_free: Option<u64>,
    pub free: &'a dyn Fn() -> Option<u64>,
}

/// Remove the oldest sealed segments until the live ones fit in the budget and
/// the free space is above the floor. The newest segment is always kept.
/// Catalog rows stay (state `expired`) so the hash chain still verifies and the
/// history says what was removed and when.
///
/// With shipping on (`ship_target`), segments already shipped there go first; an
/// unshipped one is removed only when the shipped ones do not free enough, and its
/// rows are then recorded as `retention` loss: they are gone from everywhere.
pub fn enforce_retention(cat: &mut Catalog, data_dir: &Path, keep: &Retention<'_>, ship_target: Option<&str>) -> Result<u64> {
    let mut expired = 0;
    loop {
        let (total, count): (i64, i64) = cat
            .conn()
            .query_row("SELECT COALESCE(SUM(bytes), 0), COUNT(*) FROM segments WHERE state = 'sealed'", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| cat.err(e))?;
        let over_budget = keep.budget.is_some_and(|b| total as u64 > b);
        let under_floor = keep.min_free.is_some_and(|floor| (keep.free)().is_some_and(|f| f < floor));
        if !(over_budget || under_floor) || count <= 1 {
            return Ok(expired);
        }
        let (seq, rel, table, rows, time_min, time_max, shipped): (i64, String, String, i64, i64, i64, bool) = cat
            .conn()
            .query_row(
                "SELECT seq, path, table_name, rows, time_min, time_max, segment_id IN (SELECT segment_id FROM shipped WHERE target = ?1) AS shipped \
                 FROM segments WHERE state = 'sealed' ORDER BY shipped DESC, time_min, seq LIMIT 1",
                [ship_target.unwrap_or("")],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
            )
            .map_err(|e| cat.err(e))?;
        // Catalog first: a reader must never be sent to a file that is gone.
        let tx = cat.write_tx()?;
        tx.execute("UPDATE segments SET state = 'expired' WHERE seq = ?1", [seq]).map_err(|e| sql_err_of(data_dir, e))?;
        if let (Some(target), false) = (ship_target, shipped) {
            let why = if over_budget { "the disk budget" } else { "the free-space floor" };
            insert_loss(
                &tx,
                &LossRecord {
                    time_from: time_min,
                    time_to: time_max,
                    source: "retention".into(),
                    table_name: Some(table.clone()),
                    count: Some(rows as u64),
                    detail: Some(format!("segment {rel} removed by {why} before it was shipped to {target}")),
                    ..LossRecord::default()
                },
            )
            .map_err(|e| sql_err_of(data_dir, e))?;
            tracing::warn!(segment.path = %rel, rows, target, "retention: removed a segment that was never shipped (counted as loss)");
        }
        tx.commit().map_err(|e| sql_err_of(data_dir, e))?;
        let path = data_dir.join(&rel);
        match fs::remove_file(&path) {
            Ok(()) => fsync_dir(path.parent().expect("segment has a parent"))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_err(&path)(err)),
        }
        tracing::info!(segment.path = %rel, over_budget, under_floor, "retention: expired a segment (to stay within the disk budget, or above the free-space floor)");
        expired += 1;
    }
}

fn sql_err_of(data_dir: &Path, source: rusqlite::Error) -> crate::segments::SegmentError {
    crate::segments::SegmentError::Catalog(podtrail_schema::CatalogError::Sqlite { path: podtrail_schema::layout::catalog_path(data_dir), source })
}

fn write_identity_in(tx: &rusqlite::Transaction<'_>, pods: &[PodRecord], containers: &[ContainerRecord], ips: &[IpOwnerRecord]) -> rusqlite::Result<()> {
    {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO pods (pod_uid, pod_namespace, pod_name, node, labels, owner, qos_class, valid_from, valid_to, source) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (pod_uid, valid_from) DO UPDATE SET pod_namespace = excluded.pod_namespace, pod_name = excluded.pod_name, \
                 labels = excluded.labels, owner = excluded.owner, qos_class = excluded.qos_class, valid_to = excluded.valid_to, source = excluded.source",
            )
            ?;
        for p in pods {
            st.execute(params![p.pod_uid, p.pod_namespace, p.pod_name, p.node, p.labels, p.owner, p.qos_class, p.valid_from, p.valid_to, p.source])
                ?;
        }
        let mut st = tx
            .prepare_cached(
                "INSERT INTO containers (container_id, pod_uid, container_name, image, runtime, cgroup_id, valid_from, valid_to, source) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (container_id, valid_from) DO UPDATE SET valid_to = excluded.valid_to, image = excluded.image, source = excluded.source",
            )
            ?;
        for c in containers {
            st.execute(params![c.container_id, c.pod_uid, c.container_name, c.image, c.runtime, c.cgroup_id.map(|v| v as i64), c.valid_from, c.valid_to, c.source])
                ?;
        }
        // An address seen before the runtime named its pod is written nameless,
        // then again with the name once it is known: the rewrite names it (and
        // never erases a name).
        let mut st = tx
            .prepare_cached(
                "INSERT INTO ip_owners (ip, pod_uid, pod_namespace, pod_name, node, valid_from, valid_to, source) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (ip, valid_from, pod_uid) DO UPDATE SET \
                 pod_namespace = coalesce(excluded.pod_namespace, ip_owners.pod_namespace), \
                 pod_name = coalesce(excluded.pod_name, ip_owners.pod_name), valid_to = excluded.valid_to, source = excluded.source",
            )
            ?;
        for i in ips {
            st.execute(params![i.ip, i.pod_uid, i.pod_namespace, i.pod_name, i.node, i.valid_from, i.valid_to, i.source])?;
        }
    }
    Ok(())
}

