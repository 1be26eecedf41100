//! The hot tail: rows written but not yet sealed into a segment, read from the
//! per-table hot files of the data dir.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use podtrail_schema::catalog::Catalog;
use podtrail_schema::tables::EVENT_TABLES;
use podtrail_schema::{hot, layout};

use crate::QueryError;

pub(super) enum HotRead {
    Vanished(PathBuf),
    Failed(QueryError),
}

/// Hot-tail rows of every event table that the catalog snapshot does not already
/// hold as a sealed segment.
pub(super) fn read_hot_tails(data_dir: &Path, catalog: &Catalog) -> Result<HashMap<&'static str, Vec<RecordBatch>>, HotRead> {
    let mut out = HashMap::new();
    for def in EVENT_TABLES {
        let dir = layout::hot_table_dir(data_dir, def.name);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(HotRead::Failed(QueryError::Runtime(format!("reading {}: {e}", dir.display())))),
        };
        let mut batches = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| HotRead::Failed(QueryError::Runtime(format!("reading {}: {e}", dir.display()))))?.path();
            let Some(id) = layout::hot_file_segment_id(&path) else { continue };
            if catalog.segment_exists(&id).map_err(|e| HotRead::Failed(e.into()))? {
                continue;
            }
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(HotRead::Vanished(path)),
                Err(e) => return Err(HotRead::Failed(QueryError::Runtime(format!("reading {}: {e}", path.display())))),
            };
            match hot::read_frames(&bytes) {
                // Frames written by an older podtrail lack the columns added since.
                Ok((b, _tail)) => {
                    for batch in &b {
                        match podtrail_schema::tables::conform(def, batch) {
                            Ok(c) => batches.push(c),
                            Err(e) => tracing::warn!(file = %path.display(), "skipping a hot frame: {e}"),
                        }
                    }
                }
                Err(e) => tracing::warn!(file = %path.display(), "skipping hot file: {e}"),
            }
        }
        out.insert(def.name, batches);
    }
    Ok(out)
}

