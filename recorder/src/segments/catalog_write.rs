//! The recorder's writes to the catalog: segment commits (hash chain), retention,
//! identity intervals and loss. Readers only ever see committed transactions.

use std::fs;
use std::path::Path;

use podtrail_schema::catalog::{CHAIN_GENESIS, Catalog, chain_sha256};
use rusqlite::{OptionalExtension, params};

use super::parquet_out::WrittenSegment;
use super::{Result, fsync_dir, io_err};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    pub pod_uid: String,
    /// Null when only the kernel's cgroup path is known (source `observed`).
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub node: String,
    pub labels: Option<String>,
    pub owner: Option<String>,
    pub qos_class: Option<String>,
    pub valid_from: i64,
    pub valid_to: Option<i64>,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    pub container_id: String,
    pub pod_uid: Option<String>,
    pub container_name: Option<String>,
    pub image: Option<String>,
    pub runtime: Option<String>,
    pub cgroup_id: Option<u64>,
    pub valid_from: i64,
    pub valid_to: Option<i64>,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpOwnerRecord {
    pub ip: String,
    pub pod_uid: String,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub node: String,
    pub valid_from: i64,
    pub valid_to: Option<i64>,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossRecord {
    pub time_from: i64,
    pub time_to: i64,
    pub source: String,
    pub table_name: Option<String>,
    pub cpu: Option<u32>,
    pub count: u64,
    pub detail: Option<String>,
}

pub fn set_meta(cat: &Catalog, key: &str, value: &str) -> Result<()> {
    cat.conn()
        .execute("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", params![key, value])
        .map_err(|e| cat.err(e))?;
    Ok(())
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

/// Remove the oldest sealed segments until the live ones fit in `budget` bytes.
/// The newest segment is always kept. Catalog rows stay (state `expired`) so the
/// hash chain still verifies and the history says what was removed and when.
///
/// With shipping on (`ship_target`), segments already shipped there go first; an
/// unshipped one is removed only when the shipped ones do not free enough, and its
/// rows are then recorded as `retention` loss: they are gone from everywhere.
pub fn enforce_budget(cat: &mut Catalog, data_dir: &Path, budget: u64, ship_target: Option<&str>) -> Result<u64> {
    let mut expired = 0;
    loop {
        let (total, count): (i64, i64) = cat
            .conn()
            .query_row("SELECT COALESCE(SUM(bytes), 0), COUNT(*) FROM segments WHERE state = 'sealed'", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| cat.err(e))?;
        if total as u64 <= budget || count <= 1 {
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
            tx.execute(
                "INSERT INTO loss (time_from, time_to, source, table_name, cpu, count, detail) VALUES (?1, ?2, 'retention', ?3, NULL, ?4, ?5)",
                params![time_min, time_max, table, rows, format!("segment {rel} removed by the disk budget before it was shipped to {target}")],
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
        tracing::info!(segment.path = %rel, "retention: expired segment to stay within the disk budget");
        expired += 1;
    }
}

fn sql_err_of(data_dir: &Path, source: rusqlite::Error) -> crate::segments::SegmentError {
    crate::segments::SegmentError::Catalog(podtrail_schema::CatalogError::Sqlite { path: podtrail_schema::layout::catalog_path(data_dir), source })
}

pub fn write_identity(cat: &mut Catalog, pods: &[PodRecord], containers: &[ContainerRecord], ips: &[IpOwnerRecord]) -> Result<()> {
    let path = cat.path().to_owned();
    let e = |e| podtrail_schema::CatalogError::Sqlite { path: path.clone(), source: e };
    let tx = cat.write_tx()?;
    {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO pods (pod_uid, pod_namespace, pod_name, node, labels, owner, qos_class, valid_from, valid_to, source) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (pod_uid, valid_from) DO UPDATE SET pod_namespace = excluded.pod_namespace, pod_name = excluded.pod_name, \
                 labels = excluded.labels, owner = excluded.owner, qos_class = excluded.qos_class, valid_to = excluded.valid_to, source = excluded.source",
            )
            .map_err(e)?;
        for p in pods {
            st.execute(params![p.pod_uid, p.pod_namespace, p.pod_name, p.node, p.labels, p.owner, p.qos_class, p.valid_from, p.valid_to, p.source])
                .map_err(e)?;
        }
        let mut st = tx
            .prepare_cached(
                "INSERT INTO containers (container_id, pod_uid, container_name, image, runtime, cgroup_id, valid_from, valid_to, source) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (container_id, valid_from) DO UPDATE SET valid_to = excluded.valid_to, image = excluded.image, source = excluded.source",
            )
            .map_err(e)?;
        for c in containers {
            st.execute(params![c.container_id, c.pod_uid, c.container_name, c.image, c.runtime, c.cgroup_id.map(|v| v as i64), c.valid_from, c.valid_to, c.source])
                .map_err(e)?;
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
            .map_err(e)?;
        for i in ips {
            st.execute(params![i.ip, i.pod_uid, i.pod_namespace, i.pod_name, i.node, i.valid_from, i.valid_to, i.source]).map_err(e)?;
        }
    }
    tx.commit().map_err(e)?;
    Ok(())
}

/// Intervals of `source` on `node` still open (valid_to null): what a previous
/// run of the recorder was tracking when it stopped.
pub fn open_intervals(cat: &Catalog, node: &str, source: &str) -> Result<(Vec<PodRecord>, Vec<ContainerRecord>, Vec<IpOwnerRecord>)> {
    let e = |e| cat.err(e);
    let mut st = cat
        .conn()
        .prepare("SELECT pod_uid, pod_namespace, pod_name, node, labels, owner, qos_class, valid_from, valid_to, source FROM pods WHERE valid_to IS NULL AND node = ?1 AND source = ?2")
        .map_err(e)?;
    let pods = st
        .query_map(params![node, source], |r| {
            Ok(PodRecord {
                pod_uid: r.get(0)?,
                pod_namespace: r.get(1)?,
                pod_name: r.get(2)?,
                node: r.get(3)?,
                labels: r.get(4)?,
                owner: r.get(5)?,
                qos_class: r.get(6)?,
                valid_from: r.get(7)?,
                valid_to: r.get(8)?,
                source: r.get(9)?,
            })
        })
        .map_err(e)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(e)?;
    // Containers record no node: the open ones of this node's open pods.
    let mut st = cat
        .conn()
        .prepare(
            "SELECT container_id, pod_uid, container_name, image, runtime, cgroup_id, valid_from, valid_to, source FROM containers \
             WHERE valid_to IS NULL AND source = ?2 AND pod_uid IN (SELECT pod_uid FROM pods WHERE valid_to IS NULL AND node = ?1 AND source = ?2)",
        )
        .map_err(e)?;
    let containers = st
        .query_map(params![node, source], |r| {
            Ok(ContainerRecord {
                container_id: r.get(0)?,
                pod_uid: r.get(1)?,
                container_name: r.get(2)?,
                image: r.get(3)?,
                runtime: r.get(4)?,
                cgroup_id: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                valid_from: r.get(6)?,
                valid_to: r.get(7)?,
                source: r.get(8)?,
            })
        })
        .map_err(e)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(e)?;
    let mut st = cat
        .conn()
        .prepare("SELECT ip, pod_uid, pod_namespace, pod_name, node, valid_from, valid_to, source FROM ip_owners WHERE valid_to IS NULL AND node = ?1 AND source = ?2")
        .map_err(e)?;
    let ips = st
        .query_map(params![node, source], |r| {
            Ok(IpOwnerRecord {
                ip: r.get(0)?,
                pod_uid: r.get(1)?,
                pod_namespace: r.get(2)?,
                pod_name: r.get(3)?,
                node: r.get(4)?,
                valid_from: r.get(5)?,
                valid_to: r.get(6)?,
                source: r.get(7)?,
            })
        })
        .map_err(e)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(e)?;
    Ok((pods, containers, ips))
}

pub fn record_loss(cat: &Catalog, l: &LossRecord) -> Result<()> {
    cat.conn()
        .execute(
            "INSERT INTO loss (time_from, time_to, source, table_name, cpu, count, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![l.time_from, l.time_to, l.source, l.table_name, l.cpu, l.count as i64, l.detail],
        )
        .map_err(|e| cat.err(e))?;
    Ok(())
}
