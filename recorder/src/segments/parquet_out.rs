//! Sealing: one open segment's rows → one sorted zstd Parquet file, crash-safely.
//!
//! Rows are sorted by (`pod_uid`, `cgroup_id`, `time`) so that one pod's rows sit in
//! few row groups whose statistics exclude the rest; IP and pod columns get bloom
//! filters; page-level statistics feed the page index. The SHA-256 is computed while
//! writing (no second read of the file).

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::compute::{SortOptions, interleave_record_batch};
use arrow::row::{RowConverter, SortField};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use podtrail_schema::layout;
use podtrail_schema::tables::TableDef;
use sha2::{Digest, Sha256};

use super::{Result, SegmentError, StoreConfig, create_private_dir, fsync_dir, io_err, time_range};

/// Columns a sealed segment is sorted by, in order.
pub const SORT_KEY: [&str; 3] = ["pod_uid", "cgroup_id", "time"];

/// Sorted runs at least this long on average are written as slices of the
/// appended batches; shorter ones are gathered first (a write per few rows
/// costs more than the copy).
const MIN_AVG_RUN: usize = 1024;

#[derive(Debug, Clone)]
pub struct WrittenSegment {
    pub segment_id: String,
    pub table: &'static str,
    pub rel_path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub time_min: i64,
    pub time_max: i64,
    pub pods: Vec<String>,
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Columns whose min/max never prunes anything: the same few values on every
/// page (and `node` one value per file; the lake has it in its paths). Their
/// statistics cost two string comparisons per value and are not kept.
/// `comm` is a handful of names per pod, spread over every page: min/max over
/// them excluded nothing either.
const NO_STATISTICS: [&str; 5] = ["node", "event", "protocol", "family", "comm"];

/// Rows per data page, the unit the page index prunes within a row group. At
/// 8192 rather than 4096 a 50,000-row segment has half the pages (each with a
/// header, statistics and a zstd frame of its own).
pub const PAGE_ROWS: usize = 8192;

pub fn writer_properties(def: &TableDef, segment_id: &str, cfg: &StoreConfig) -> WriterProperties {
    let schema = def.arrow_schema();
    let sorting = SORT_KEY
        .iter()
        .map(|c| SortingColumn {
            column_idx: schema.index_of(c).expect("event tables have the sort key") as i32,
            descending: false,
            nulls_first: true,
        })
        .collect();
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(cfg.zstd_level).unwrap_or_default()))
        .set_max_row_group_row_count(Some(cfg.row_group_rows.max(1)))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_sorting_columns(Some(sorting))
        // Data pages v1: with v2 every buffered page keeps an allocation of its
        // uncompressed size until the row group is written, which costs more
        // memory than v2 saves in CPU (BENCHMARKS.md, "Fewer copies and passes").
        //
        // No dictionary pages: on sorted rows PLAIN pages compressed by zstd are
        // as small, and the dictionary encoder hashes every value
        // (BENCHMARKS.md, "A cheaper store").
        .set_dictionary_enabled(false)
        .set_column_encoding(ColumnPath::from("time"), Encoding::DELTA_BINARY_PACKED)
        .set_created_by(format!("podtrail {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("podtrail.table".into(), def.name.to_owned()),
            KeyValue::new("podtrail.segment_id".into(), segment_id.to_owned()),
        ]));
    for col in NO_STATISTICS.into_iter().filter(|c| schema.index_of(c).is_ok()) {
        b = b.set_column_statistics_enabled(ColumnPath::from(col), EnabledStatistics::None);
    }
    for col in def.bloom_columns() {
        b = b
            .set_column_bloom_filter_enabled(ColumnPath::from(col), true)
            .set_column_bloom_filter_fpp(ColumnPath::from(col), 0.01)
            .set_column_bloom_filter_max_ndv(ColumnPath::from(col), cfg.row_group_rows as u64);
    }
    b.build()
}

/// Sort `batches` and write them as segment `id` of `def`'s table.
pub fn write_segment(data_dir: &Path, def: &'static TableDef, id: &str, batches: &[RecordBatch], cfg: &StoreConfig) -> Result<WrittenSegment> {
    let arrow_err = |source| SegmentError::Arrow { segment: id.to_owned(), source };
    let schema = def.arrow_schema();
    let batches: Vec<&RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).collect();
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    if total == 0 {
        return Err(SegmentError::SchemaMismatch { table: def.name.into(), detail: format!("segment {id} has no rows to seal") });
    }
    let mut time_min = i64::MAX;
    let mut time_max = i64::MIN;
    for b in &batches {
        let (lo, hi) = time_range(def, b)?;
        time_min = time_min.min(lo);
        time_max = time_max.max(hi);
    }
    // Sort through Arrow's row format: one memcmp per comparison instead of a
    // column-by-column compare (pod_uid is a 36-byte string). The sort is
    // stable and the batcher builds each batch already in key order, so a
    // segment is a few sorted runs; where they are long, the writer takes
    // slices of the appended batches as they are (a gathered copy is a large
    // share of sealing; BENCHMARKS.md), otherwise the rows are gathered in order.
    let key_idx: Vec<usize> = SORT_KEY.iter().map(|c| schema.index_of(c).expect("sort key")).collect();
    let converter = RowConverter::new(
        key_idx
            .iter()
            .map(|&i| SortField::new_with_options(schema.field(i).data_type().clone(), SortOptions { descending: false, nulls_first: true }))
            .collect(),
    )
    .map_err(arrow_err)?;
    let mut rows = converter.empty_rows(total, total * 64);
    let mut at: Vec<(usize, usize)> = Vec::with_capacity(total);
    for (bi, b) in batches.iter().enumerate() {
        let cols: Vec<ArrayRef> = key_idx.iter().map(|&i| Arc::clone(b.column(i))).collect();
        converter.append(&mut rows, &cols).map_err(arrow_err)?;
        at.extend((0..b.num_rows()).map(|r| (bi, r)));
    }
    let mut order: Vec<u32> = (0..total as u32).collect();
    order.sort_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
    drop(rows);
    let picks: Vec<(usize, usize)> = order.iter().map(|&g| at[g as usize]).collect();
    drop((order, at));
    let runs = sorted_runs(&picks);
    let sorted: Vec<RecordBatch> = if runs.len() * MIN_AVG_RUN <= total {
        runs.iter().map(|&(bi, start, len)| batches[bi].slice(start, len)).collect()
    } else {
        vec![interleave_record_batch(&batches, &picks).map_err(arrow_err)?]
    };
    drop(picks);

    let pods = distinct_pods(&batches);
    let rel_path = layout::segment_rel_path(def.name, time_min, id);
    let path = data_dir.join(&rel_path);
    let dir = path.parent().expect("segment path has a parent");
    create_private_dir(dir)?;
    let tmp = PathBuf::from(format!("{}{}", path.display(), layout::TMP_SUFFIX));
    let written = write_file(&tmp, id, &schema, &sorted, writer_properties(def, id, cfg)).and_then(|w| {
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(w)
    });
    let (bytes, hasher) = match written {
        Ok(w) => w,
        Err(e) => {
            // A failed write (a full disk) must not keep its space until recovery.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    fsync_dir(dir)?;
    Ok(WrittenSegment {
        segment_id: id.to_owned(),
        table: def.name,
        rel_path,
        rows: total as u64,
        bytes,
        sha256: podtrail_schema::catalog::hex_lower(&hasher.finalize()),
        time_min,
        time_max,
        pods,
    })
}

/// Write `batches` as a Parquet file at `tmp` and fsync it: its size and hash.
fn write_file(tmp: &Path, id: &str, schema: &arrow::datatypes::SchemaRef, batches: &[RecordBatch], props: WriterProperties) -> Result<(u64, Sha256)> {
    let file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(tmp).map_err(io_err(tmp))?;
    let hw = HashingWriter { inner: BufWriter::with_capacity(1 << 20, file), hasher: Sha256::new(), bytes: 0 };
    let pq_err = |source| SegmentError::Parquet { segment: id.to_owned(), source };
    let mut w = ArrowWriter::try_new(hw, Arc::clone(schema), Some(props)).map_err(pq_err)?;
    for b in batches {
        w.write(b).map_err(pq_err)?;
    }
    let HashingWriter { inner, hasher, bytes } = w.into_inner().map_err(pq_err)?;
    let file = inner.into_inner().map_err(|e| io_err(tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err(tmp))?;
    Ok((bytes, hasher))
}

/// Runs of consecutive rows of one batch in `picks`: (batch, first row, rows).
fn sorted_runs(picks: &[(usize, usize)]) -> Vec<(usize, usize, usize)> {
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for &(bi, r) in picks {
        match runs.last_mut() {
            Some((b, start, len)) if *b == bi && *start + *len == r => *len += 1,
            _ => runs.push((bi, r, 1)),
        }
    }
    runs
}

fn distinct_pods(batches: &[&RecordBatch]) -> Vec<String> {
    let mut set: BTreeSet<&str> = BTreeSet::new();
    for b in batches {
        let Some(col) = b.column_by_name("pod_uid") else { return vec![] };
        let col = col.as_any().downcast_ref::<StringArray>().expect("pod_uid is Utf8");
        set.extend(col.iter().flatten());
    }
    set.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::sorted_runs;

    #[test]
    fn runs_are_consecutive_rows_of_one_batch() {
        let picks = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (0, 3), (0, 5), (1, 2)];
        assert_eq!(sorted_runs(&picks), vec![(0, 0, 3), (1, 0, 2), (0, 3, 1), (0, 5, 1), (1, 2, 1)]);
        assert!(sorted_runs(&[]).is_empty());
    }
}
