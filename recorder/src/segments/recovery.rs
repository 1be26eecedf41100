//! Start-up recovery of what a previous writer left behind (crash, kill -9, power
//! loss): temporary files are removed, segment files the catalog never recorded are
//! removed (their rows are still in the hot tail), and every hot tail is sealed up to
//! its last complete frame. A torn final frame becomes a `loss` row.

use std::fs;
use std::path::{Path, PathBuf};

use podtrail_schema::tables::event_table;
use podtrail_schema::{hot, layout};

use super::catalog_write::{LossRecord, record_loss};
use super::{Result, SegmentError, SegmentStore, fsync_dir, io_err, time_range, total_rows};

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryReport {
    pub temp_files_removed: u64,
    pub unrecorded_segments_removed: u64,
    pub hot_segments_sealed: u64,
    pub hot_rows_recovered: u64,
    pub hot_files_already_sealed: u64,
    /// Rows announced by torn frames (recorded as `crash` loss).
    pub rows_lost: u64,
}

pub fn recover(store: &mut SegmentStore) -> Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    let data_dir = store.cfg.data_dir.clone();
    let mut files = Vec::new();
    walk(&data_dir.join(layout::SEGMENTS_DIR), &mut files)?;
    walk(&data_dir.join(layout::HOT_DIR), &mut files)?;

    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(layout::TMP_SUFFIX) {
            tracing::warn!(file = %f.display(), "recovery: removing a half-written file");
            remove(f)?;
            report.temp_files_removed += 1;
        } else if f.extension().is_some_and(|e| e == layout::SEGMENT_EXT) {
            let id = f.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if !store.catalog.segment_exists(id)? {
                tracing::warn!(file = %f.display(), "recovery: removing a segment file the catalog never recorded; its rows are re-sealed from the hot tail");
                remove(f)?;
                report.unrecorded_segments_removed += 1;
            }
        }
    }

    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == layout::HOT_EXT)) {
        let Some(id) = layout::hot_file_segment_id(f) else { continue };
        let table = f.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("");
        let Some(def) = event_table(table) else {
            tracing::warn!(file = %f.display(), "recovery: hot file of an unknown table left in place");
            continue;
        };
        if store.catalog.segment_exists(&id)? {
            // Sealed and committed; the crash came before the hot copy was removed.
            remove(f)?;
            report.hot_files_already_sealed += 1;
            continue;
        }
        let bytes = fs::read(f).map_err(io_err(f))?;
        let (batches, tail) = hot::read_frames(&bytes).map_err(|source| SegmentError::Hot { path: f.clone(), source })?;
        // Frames written by an older podtrail lack the columns added since.
        let batches = batches
            .iter()
            .map(|b| podtrail_schema::tables::conform(def, b))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|source| SegmentError::Arrow { segment: id.clone(), source })?;
        let rows = total_rows(&batches);
        if tail.torn_bytes > 0 {
            let lost = u64::from(tail.torn_rows.unwrap_or(0));
            let (from, to) = match batches.last() {
                Some(b) if b.num_rows() > 0 => time_range(def, b)?,
                _ => {
                    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
                    (now, now)
                }
            };
            tracing::warn!(file = %f.display(), rows.lost = lost, reason = tail.reason.as_deref().unwrap_or(""), "recovery: torn frame at the end of a hot tail");
            record_loss(
                &store.catalog,
                &LossRecord {
                    time_from: from,
                    time_to: to,
                    source: "crash".into(),
                    table_name: Some(def.name.into()),
                    cpu: None,
                    count: lost,
                    detail: Some(format!(
                        "{}: {} torn bytes after the last complete frame ({}){}",
                        f.display(),
                        tail.torn_bytes,
                        tail.reason.unwrap_or_default(),
                        if tail.torn_rows.is_none() { "; row count unknown" } else { "" }
                    )),
                },
            )?;
            report.rows_lost += lost;
        }
        if rows > 0 {
            store.write_sealed(&id, def, &batches, true)?;
            report.hot_segments_sealed += 1;
            report.hot_rows_recovered += rows;
        } else {
            remove(f)?;
        }
    }
    if report != RecoveryReport::default() {
        tracing::info!(?report, "recovery finished");
    }
    Ok(report)
}

fn remove(path: &Path) -> Result<()> {
    fs::remove_file(path).map_err(io_err(path))?;
    fsync_dir(path.parent().expect("file has a parent"))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(io_err(&path))?.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
