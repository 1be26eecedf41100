//! Start-up recovery of what a previous writer left behind (crash, kill -9, power
//! loss, damage): temporary files are removed, segment files the catalog never
//! recorded are removed (their rows are still in the hot tail), every hot tail is
//! sealed up to its last complete frame, and a run that never ended is closed.
//!
//! What was lost is counted only from what can be proven, never read from
//! damaged bytes: the catalog's record of each hot file's flushed rows
//! (`hot_files`), and the checksummed header of a torn frame. What cannot be
//! counted is a loss row with an unknown count, never zero. A damaged file is
//! moved to `quarantine/` (kept as evidence, named in its loss row) and never
//! stops recovery or the recorder. A hot tail that cannot be sealed now (a
//! full disk) stays with the store, which seals it later.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use podtrail_schema::tables::{TableDef, event_table};
use podtrail_schema::{hot, layout};

use super::catalog_write::{self, CatalogOp, HotFileRecord, LossRecord, RunEnd};
use super::{OpenSegment, Result, SegmentStore, create_private_dir, fsync_dir, now_ns, time_range, total_rows};

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryReport {
    pub temp_files_removed: u64,
    pub unrecorded_segments_removed: u64,
    pub hot_segments_sealed: u64,
    pub hot_rows_recovered: u64,
    pub hot_files_already_sealed: u64,
    /// Rows counted as lost (`crash`, `corrupt`) where the count is known.
    pub rows_lost: u64,
    /// Loss rows recorded with an unknown count (a crashed run's unflushed
    /// rows; damage whose size cannot be proven).
    pub losses_of_unknown_count: u64,
    /// Damaged files (or damaged tails of hot files) moved to `quarantine/`.
    pub files_quarantined: u64,
    /// Recorder runs that never ended (killed, crashed, power loss).
    pub unclean_runs: u64,
    /// Hot tails that could not be sealed now (the disk is full): the store
    /// keeps them and seals them once it can write.
    pub hot_segments_pending: u64,
}

pub fn recover(store: &mut SegmentStore) -> Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    let now = now_ns();
    // We hold the lock: a run still marked running did not end cleanly.
    for run in catalog_write::open_runs(&store.catalog)? {
        let ended_at = run.last_flush.unwrap_or(run.started_at);
        tracing::warn!(run.id = run.run_id, run.pid = run.pid, "recovery: the previous recorder run did not end cleanly (killed, crashed or power loss); what happened after its last durable flush until now was not recorded");
        // Written when recording starts again (begin_run: the window ends
        // then), or when the store closes without a run (`podtraild recover`):
        // a start that fails before either leaves the run open for the next.
        let end = CatalogOp::EndRun { run_id: run.run_id, ended_at, end: RunEnd::Unclean, detail: Some("found at the next start: it ended without shutting down (killed, crashed or power loss)".into()) };
        store.crash_windows.push((end, LossRecord {
            time_from: ended_at,
            time_to: now.max(ended_at),
            source: "crash".into(),
            count: None,
            detail: Some(format!(
                "recorder run {} (podtraild pid {}) ended without shutting down: events after its last durable flush, until this restart, were not recorded (how many cannot be known)",
                run.run_id, run.pid
            )),
            ..LossRecord::default()
        }));
        report.unclean_runs += 1;
        report.losses_of_unknown_count += 1;
    }

    let data_dir = store.cfg.data_dir.clone();
    let mut files = Vec::new();
    walk(&data_dir.join(layout::SEGMENTS_DIR), &mut files);
    walk(&data_dir.join(layout::HOT_DIR), &mut files);
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(layout::TMP_SUFFIX) {
            tracing::warn!(file = %f.display(), "recovery: removing a half-written file");
            if remove(f) {
                report.temp_files_removed += 1;
            }
        } else if f.extension().is_some_and(|e| e == layout::SEGMENT_EXT) {
            let id = f.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if !store.catalog.segment_exists(id)? {
                tracing::warn!(file = %f.display(), "recovery: removing a segment file the catalog never recorded; its rows are re-sealed from the hot tail");
                if remove(f) {
                    report.unrecorded_segments_removed += 1;
                }
            }
        }
    }

    let mut known: HashMap<String, HotFileRecord> = catalog_write::hot_files(&store.catalog)?.into_iter().map(|h| (h.segment_id.clone(), h)).collect();
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == layout::HOT_EXT)) {
        let Some(id) = layout::hot_file_segment_id(f) else { continue };
        let table = f.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("");
        let Some(def) = event_table(table) else {
            tracing::warn!(file = %f.display(), "recovery: hot file of an unknown table left in place (written by a newer podtrail?)");
            continue;
        };
        let flushed = known.remove(&id);
        if store.catalog.segment_exists(&id)? {
            // Sealed and committed; the crash came before the hot copy was removed.
            if remove(f) {
                report.hot_files_already_sealed += 1;
            }
            store.queue(CatalogOp::ForgetHot(id));
            continue;
        }
        recover_hot(store, &mut report, f, def, &id, flushed.as_ref());
    }
    // Hot files the catalog saw rows flushed to, that are gone.
    for (id, h) in known {
        if !store.catalog.segment_exists(&id)? {
            tracing::warn!(segment.id = %id, rows = h.rows, "recovery: a hot file with flushed rows is missing");
            store.queue(CatalogOp::Loss(LossRecord {
                time_from: h.time_min,
                time_to: h.time_max,
                source: "corrupt".into(),
                table_name: Some(h.table_name.clone()),
                count: Some(h.rows),
                detail: Some(format!("hot file of segment {id} is missing: its {} flushed rows are gone", h.rows)),
                ..LossRecord::default()
            }));
            report.rows_lost += h.rows;
        }
        store.queue(CatalogOp::ForgetHot(id));
    }
    if report != RecoveryReport::default() {
        tracing::info!(?report, "recovery finished");
    }
    Ok(report)
}

/// Seal one hot file up to its last whole frame; count and quarantine what
/// follows it; never fail.
fn recover_hot(store: &mut SegmentStore, report: &mut RecoveryReport, f: &Path, def: &'static TableDef, id: &str, flushed: Option<&HotFileRecord>) {
    let mut found = Vec::new();
    let readable = read_hot(&store.cfg.data_dir, report, f, def, flushed, &mut found);
    for l in found {
        store.queue(CatalogOp::Loss(l));
    }
    let Some((batches, good_len)) = readable else {
        store.queue(CatalogOp::ForgetHot(id.to_owned()));
        return;
    };
    let rows = total_rows(&batches);
    if rows == 0 {
        if remove(f) {
            store.queue(CatalogOp::ForgetHot(id.to_owned()));
        }
        return;
    }
    match store.write_sealed(id, def, &batches, true) {
        Ok(_) => {
            report.hot_segments_sealed += 1;
            report.hot_rows_recovered += rows;
        }
        Err(e) => {
            // A full disk at start: the store keeps the rows (they are in the
            // hot file too) and seals them once it can write.
            store.fail(&e);
            let (time_min, time_max) = batches.iter().filter(|b| b.num_rows() > 0).filter_map(|b| time_range(def, b).ok()).fold((i64::MAX, i64::MIN), |(lo, hi), (a, b)| (lo.min(a), hi.max(b)));
            let mut seg = OpenSegment::new(def, id.to_owned(), (time_min, time_max));
            seg.rows = rows as usize;
            seg.mem_bytes = batches.iter().map(RecordBatch::get_array_memory_size).sum();
            seg.flushed = batches.len();
            seg.batches = batches;
            seg.hot_exists = true;
            seg.hot_len = good_len;
            seg.hot_rows = rows;
            seg.hot_time = Some((time_min, time_max));
            seg.hot_dirty = true;
            store.unsealed.push(seg);
            report.hot_segments_pending += 1;
            report.hot_rows_recovered += rows;
        }
    }
}

/// The whole frames of a hot file and the length they end at, or None when
/// the file is unreadable (it is quarantined). Loss found on the way goes to
/// `found`: counted only from the catalog's record of the rows flushed to the
/// file (`flushed`) and from checksummed frame headers.
fn read_hot(data_dir: &Path, report: &mut RecoveryReport, f: &Path, def: &'static TableDef, flushed: Option<&HotFileRecord>, found: &mut Vec<LossRecord>) -> Option<(Vec<RecordBatch>, u64)> {
    let now = now_ns();
    let mut loss = |report: &mut RecoveryReport, source: &str, count: Option<u64>, window: (i64, i64), detail: String| {
        match count {
            Some(n) => report.rows_lost += n,
            None => report.losses_of_unknown_count += 1,
        }
        tracing::warn!(file = %f.display(), source, rows.lost = ?count, "recovery: {detail}");
        found.push(LossRecord {
            time_from: window.0,
            time_to: window.1.max(window.0),
            source: source.into(),
            table_name: Some(def.name.into()),
            count,
            detail: Some(detail),
            ..LossRecord::default()
        });
    };
    let flushed_rows = flushed.map(|h| h.rows);
    let flushed_window = flushed.map_or((now, now), |h| (h.time_min, h.time_max));
    // The whole file is unreadable: what the catalog saw flushed to it is lost.
    let read = fs::read(f).map_err(|e| e.to_string()).and_then(|bytes| {
        let (batches, tail) = hot::read_frames(&bytes).map_err(|e| e.to_string())?;
        // Frames written by an older podtrail lack the columns added since.
        let batches: Vec<RecordBatch> =
            batches.iter().map(|b| podtrail_schema::tables::conform(def, b)).collect::<Result<_, _>>().map_err(|e| format!("frames not of table {}: {e}", def.name))?;
        Ok((bytes, batches, tail))
    });
    let (bytes, batches, tail) = match read {
        Ok(r) => r,
        Err(why) => {
            let moved = quarantine(data_dir, def.name, f, None);
            if moved.is_some() {
                report.files_quarantined += 1;
            }
            let count_text = flushed_rows.map_or("an unknown number of".to_owned(), |n| n.to_string());
            loss(report, "corrupt", flushed_rows, flushed_window, format!("hot file {} is unreadable ({why}): {count_text} rows lost; {}", f.display(), moved_text(moved.as_deref())));
            return None;
        }
    };
    let rows = total_rows(&batches);
    let last_time = batches.iter().rev().find(|b| b.num_rows() > 0).and_then(|b| time_range(def, b).ok()).map(|r| r.1);
    // Rows the catalog saw flushed to this file that it no longer holds: the
    // file was cut short or damaged inside the flushed part.
    if let Some(n) = flushed_rows.map(|n| n.saturating_sub(rows)).filter(|&n| n > 0) {
        let from = last_time.unwrap_or(flushed_window.0);
        loss(report, "corrupt", Some(n), (from, flushed_window.1), format!("hot file {} holds {rows} of the {} rows flushed to it (cut short or damaged)", f.display(), n + rows));
    }
    if tail.torn_bytes > 0 {
        let moved = quarantine(data_dir, def.name, f, Some((&bytes[tail.good_len..], tail.good_len)));
        if moved.is_some() {
            report.files_quarantined += 1;
        }
        // Past what the catalog saw flushed: a write cut short by the crash.
        let beyond_flushed = flushed.is_none_or(|h| tail.good_len as u64 >= h.bytes);
        let why = tail.reason.clone().unwrap_or_default();
        match (&tail.torn, beyond_flushed) {
            (Some(hot::Torn::Frame { rows: n, time_min, time_max }), true) => loss(
                report,
                "crash",
                Some(u64::from(*n)),
                (*time_min, *time_max),
                format!("hot file {}: a frame of {n} rows was cut short by the crash ({why}); {}", f.display(), moved_text(moved.as_deref())),
            ),
            // Inside the flushed part: counted above from the catalog.
            (_, false) => {}
            (_, true) if flushed.is_some() => loss(
                report,
                "corrupt",
                Some(0),
                (last_time.unwrap_or(now), now),
                format!("hot file {}: {} bytes after its last flushed frame are not a frame podtrail wrote ({why}); no flushed row was lost; {}", f.display(), tail.torn_bytes, moved_text(moved.as_deref())),
            ),
            _ => loss(
                report,
                "corrupt",
                None,
                (last_time.unwrap_or(now), now),
                format!("hot file {}: {} bytes after its last whole frame are not a frame podtrail wrote ({why}); whether they held rows cannot be known; {}", f.display(), tail.torn_bytes, moved_text(moved.as_deref())),
            ),
        }
        // Cut the file back to its whole frames, so that a second crash before
        // it is sealed does not count the same bytes twice.
        if let Err(e) = fs::OpenOptions::new().write(true).open(f).and_then(|h| h.set_len(tail.good_len as u64).and_then(|()| h.sync_all())) {
            tracing::warn!(file = %f.display(), error = %e, "recovery: could not cut the hot file back to its whole frames");
        }
    }
    Some((batches, tail.good_len as u64))
}

fn moved_text(moved: Option<&Path>) -> String {
    match moved {
        Some(p) => format!("the damaged bytes are kept in {}", p.display()),
        None => "moving the damaged bytes to quarantine/ failed (see the log)".into(),
    }
}

/// Move a damaged file (or, with `tail`, copy its damaged bytes from an offset)
/// to `<data-dir>/quarantine/<table>/`, under a name never used before. Where
/// it went, or None when that failed (logged; recovery goes on).
fn quarantine(data_dir: &Path, table: &str, file: &Path, tail: Option<(&[u8], usize)>) -> Option<PathBuf> {
    let dir = data_dir.join(layout::QUARANTINE_DIR).join(table);
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let base = match tail {
        Some((_, at)) => format!("{name}.tail-at-{at}"),
        None => name.to_owned(),
    };
    let moved = (|| -> std::io::Result<PathBuf> {
        create_private_dir(&dir).map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut dest = dir.join(&base);
        let mut n = 1;
        while dest.exists() {
            dest = dir.join(format!("{base}.{n}"));
            n += 1;
        }
        match tail {
            Some((bytes, _)) => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&dest)?;
                f.write_all(bytes)?;
                f.sync_all()?;
            }
            None => fs::rename(file, &dest)?,
        }
        fsync_dir(&dir).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(dest)
    })();
    match moved {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(file = %file.display(), quarantine = %dir.display(), error = %e, "recovery: could not move damaged bytes to quarantine");
            if tail.is_none() {
                // Out of the way all the same, so that no reader or later recovery trips on it.
                let aside = PathBuf::from(format!("{}.damaged", file.display()));
                let _ = fs::rename(file, aside);
            }
            None
        }
    }
}

/// Remove a file; false (logged) when that failed.
fn remove(path: &Path) -> bool {
    match fs::remove_file(path).map_err(|e| e.to_string()).and_then(|()| fsync_dir(path.parent().expect("file has a parent")).map_err(|e| e.to_string())) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "recovery: could not remove a file");
            false
        }
    }
}

/// Every file under `dir` (none when it does not exist; an unreadable
/// directory is logged and skipped).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "recovery: cannot list a directory; its files are left as they are");
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, out),
            Ok(_) => out.push(path),
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "recovery: cannot stat a file"),
        }
    }
}
