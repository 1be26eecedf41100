//! The lake's layout: the history off the node, as Parquet that any engine reads
//! directly. `podtrail export` and `podtraild run --ship-to` write it (through the
//! `podtrail-lake` client), `podtrail sql --lake` reads it; all take keys and
//! rules from here.
//!
//! ```text
//! <root>/<table>/date=YYYY-MM-DD/node=<node>/<segment-id>.parquet   event segments, byte for byte as sealed
//! <root>/<table>/<node>.parquet                                      identity snapshots: pods, containers,
//!                                                                    ip_owners, podtrail_loss (with `node`)
//! <root>/ocsf/<class>/date=YYYY-MM-DD/node=<node>/<segment-id>.parquet   `export --schema ocsf`
//! ```
//! `date` is the UTC date of the segment's rows: the recorder's store never lets
//! a segment cross an hour boundary (it splits a batch that would), so it is every
//! row's date and readers may prune on it exactly.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, SegmentRecord};
use crate::tables::{CONTAINERS, IP_OWNERS, LOSS, PODS, TableDef};

/// Catalog tables exported as one snapshot per node.
pub const SNAPSHOT_TABLES: &[&TableDef] = &[&PODS, &CONTAINERS, &IP_OWNERS, &LOSS];

/// Key of a segment's object under `dir` (the table, or `ocsf/<class>`), relative
/// to the lake's root.
pub fn segment_key(dir: &str, time_min_ns: i64, node: &str, segment_id: &str) -> String {
    let date = DateTime::<Utc>::from_timestamp_nanos(time_min_ns).format("%Y-%m-%d");
    format!("{dir}/date={date}/node={node}/{segment_id}.parquet")
}

/// Key of a node's snapshot of a catalog table, relative to the lake's root.
pub fn snapshot_key(table: &str, node: &str) -> String {
    format!("{table}/{node}.parquet")
}

/// A sealed segment's bytes, checked against the catalog (size and SHA-256).
pub fn read_segment(data_dir: &Path, seg: &SegmentRecord) -> Result<Bytes, String> {
    let path = data_dir.join(&seg.path);
    let bytes = std::fs::read(&path).map_err(|e| format!("segment {} ({}): {e}", path.display(), seg.segment_id))?;
    let sha = crate::catalog::hex_lower(&Sha256::digest(&bytes));
    if bytes.len() as u64 != seg.bytes || sha != seg.sha256 {
        return Err(format!(
            "segment {} ({}): {} bytes with SHA-256 {sha}, the catalog recorded {} bytes with {}; not exported (run `podtrail verify`)",
            path.display(),
            seg.segment_id,
            bytes.len(),
            seg.bytes,
            seg.sha256
        ));
    }
    Ok(Bytes::from(bytes))
}

/// A node name usable as a path part in every store and engine.
pub fn check_node_name(node: &str) -> Result<(), String> {
    let ok = !node.is_empty() && node.len() <= 253 && node.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') && !node.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!("node name '{node}' cannot name a lake partition: use letters, digits, '-', '.' and '_' (a Kubernetes node name)"))
    }
}

/// Schema of a snapshot table in the lake: the catalog table, plus `node` when the
/// table has no such column of its own.
pub fn snapshot_schema(def: &TableDef) -> SchemaRef {
    let base = def.arrow_schema();
    if base.field_with_name("node").is_ok() {
        return base;
    }
    let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("node", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// A catalog table as the Parquet snapshot the lake keeps per node. The same rows
/// give the same bytes, so an unchanged table is never uploaded again.
pub fn snapshot_parquet(catalog: &Catalog, def: &TableDef, node: &str) -> Result<Bytes, String> {
    let batch = catalog.load_table(def).map_err(|e| e.to_string())?;
    let schema = snapshot_schema(def);
    let batch = if schema.fields().len() == batch.num_columns() {
        batch
    } else {
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        cols.push(Arc::new(StringArray::from(vec![node; batch.num_rows()])));
        RecordBatch::try_new(Arc::clone(&schema), cols).map_err(|e| format!("snapshot of {}: {e}", def.name))?
    };
    parquet_bytes(schema, &[batch]).map_err(|e| format!("snapshot of {}: {e}", def.name))
}

/// Batches as one zstd Parquet file in memory, with fixed writer settings: the
/// same rows always give the same bytes (what makes rewrites detectable).
pub fn parquet_bytes(schema: SchemaRef, batches: &[RecordBatch]) -> Result<Bytes, parquet::errors::ParquetError> {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(parquet::basic::ZstdLevel::try_new(3)?))
        .set_created_by(format!("podtrail {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, Some(props))?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hive_partitioned_by_utc_date_and_node() {
        // 2025-11-17T14:03:00Z
        let k = segment_key("net_conn", 1_763_388_180_000_000_000, "node-1", "net_conn-20251117T140300-000000000");
        assert_eq!(k, "net_conn/date=2025-11-17/node=node-1/net_conn-20251117T140300-000000000.parquet");
        assert_eq!(snapshot_key("pods", "node-1"), "pods/node-1.parquet");
        assert!(check_node_name("ip-10-0-1-7.ec2.internal").is_ok());
        assert!(check_node_name("a/b").is_err() && check_node_name("").is_err() && check_node_name("..").is_err());
    }

    #[test]
    fn snapshots_add_node_only_where_missing_and_are_deterministic() {
        assert_eq!(snapshot_schema(&PODS), PODS.arrow_schema());
        assert_eq!(snapshot_schema(&CONTAINERS).fields().last().unwrap().name(), "node");
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open_rw(&dir.path().join("catalog.db")).unwrap();
        cat.conn().execute("INSERT INTO containers VALUES ('c1', 'u1', 'app', 'img', 'containerd', 5, 1, NULL, 'cri')", []).unwrap();
        let a = snapshot_parquet(&cat, &CONTAINERS, "n1").unwrap();
        assert_eq!(a, snapshot_parquet(&cat, &CONTAINERS, "n1").unwrap());
        assert_ne!(a, snapshot_parquet(&cat, &CONTAINERS, "n2").unwrap());
    }
}
