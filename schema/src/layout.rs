//! Where things live inside a data dir. Writer and reader both take paths from here.
//!
//! ```text
//! <data-dir>/catalog.db                                   SQLite catalog (WAL)
//! <data-dir>/segments/<table>/date=YYYY-MM-DD/hour=HH/<segment-id>.parquet
//! <data-dir>/hot/<table>/<segment-id>.arrows              open segment's hot tail
//! <data-dir>/quarantine/<table>/...                       damaged files recovery moved aside
//! ```
//! A sealed segment is partitioned by its earliest row's time. The catalog, not the
//! directory tree, is the source of truth for which segments exist and what they hold.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub const CATALOG_FILE: &str = "catalog.db";
pub const SEGMENTS_DIR: &str = "segments";
pub const HOT_DIR: &str = "hot";
pub const SEGMENT_EXT: &str = "parquet";
pub const HOT_EXT: &str = "arrows";
/// Suffix of files being written; never read, removed by recovery.
pub const TMP_SUFFIX: &str = ".tmp";
/// Held (flock) by the one writer of a data dir; holds its pid.
pub const LOCK_FILE: &str = "LOCK";
/// Damaged files recovery moved aside (never read by queries; kept as evidence).
pub const QUARANTINE_DIR: &str = "quarantine";

pub fn catalog_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CATALOG_FILE)
}

pub fn hot_table_dir(data_dir: &Path, table: &str) -> PathBuf {
    data_dir.join(HOT_DIR).join(table)
}

pub fn hot_path(data_dir: &Path, table: &str, segment_id: &str) -> PathBuf {
    hot_table_dir(data_dir, table).join(format!("{segment_id}.{HOT_EXT}"))
}

/// Path of a sealed segment relative to the data dir (as stored in the catalog).
pub fn segment_rel_path(table: &str, time_min_ns: i64, segment_id: &str) -> PathBuf {
    let t = DateTime::<Utc>::from_timestamp_nanos(time_min_ns);
    PathBuf::from(SEGMENTS_DIR)
        .join(table)
        .join(format!("date={}", t.format("%Y-%m-%d")))
        .join(format!("hour={}", t.format("%H")))
        .join(format!("{segment_id}.{SEGMENT_EXT}"))
}

/// Segment ids sort by creation: `<table>-<UTC yyyymmddThhmmss>-<ns suffix>`.
pub fn segment_id(table: &str, created_ns: i64) -> String {
    let t = DateTime::<Utc>::from_timestamp_nanos(created_ns);
    format!("{table}-{}-{:09}", t.format("%Y%m%dT%H%M%S"), created_ns.rem_euclid(1_000_000_000))
}

/// The segment id a hot file belongs to, from its file name.
pub fn hot_file_segment_id(path: &Path) -> Option<String> {
    (path.extension()? == HOT_EXT).then(|| path.file_stem()?.to_str().map(str::to_owned))?
}

/// (bytes available to unprivileged writers, total bytes) of the filesystem
/// holding `dir`; None when it cannot be asked.
pub fn filesystem_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: a zeroed statvfs is a valid out-parameter; `c` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and out-pointer for the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize;
    Some((st.f_bavail * frsize, st.f_blocks * frsize))
}

/// Whether a writer (podtraild, podtrail-synth) holds the data dir's lock now:
/// Some(pid written in it, if any) when one does, None when none does or the
/// lock cannot be looked at (no LOCK file, no permission). Asks with a shared
/// lock taken and released at once, which a starting writer waits out.
pub fn writer_holding_lock(data_dir: &Path) -> Option<Option<u32>> {
    use std::os::fd::AsRawFd;
    let path = data_dir.join(LOCK_FILE);
    let f = std::fs::File::open(&path).ok()?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        // SAFETY: as above; releasing the lock just taken.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        return None;
    }
    Some(std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_path_is_hive_partitioned_by_utc_hour() {
        // 2026-11-17T14:03:00Z
        let ns = 1_763_388_180_000_000_000;
        let id = segment_id("net_conn", ns);
        assert_eq!(id, "net_conn-20251117T140300-000000000");
        assert_eq!(
            segment_rel_path("net_conn", ns, &id),
            PathBuf::from("segments/net_conn/date=2025-11-17/hour=14/net_conn-20251117T140300-000000000.parquet")
        );
        let hot = hot_path(Path::new("/d"), "net_conn", &id);
        assert_eq!(hot_file_segment_id(&hot).as_deref(), Some(id.as_str()));
        assert_eq!(hot_file_segment_id(Path::new("/d/x.parquet")), None);
    }
}
