//! Segment store tests: temp dirs only, no root.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, StringBuilder, TimestampNanosecondBuilder, UInt32Builder, UInt64Builder};
use arrow::record_batch::RecordBatch;
use podtrail_schema::catalog::Catalog;
use podtrail_schema::tables::PROCESS_EXIT;
use podtrail_schema::{hot, layout};

use super::*;

const HOUR: i64 = 3_600_000_000_000;
const T0: i64 = 1_794_787_200_000_000_000; // 2026-11-16T00:00:00Z

/// `n` process_exit rows at `t0 + i*step`, alternating two pods and the host.
fn exits(t0: i64, step: i64, n: usize) -> RecordBatch {
    let mut time = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let (mut node, mut cid, mut uid, mut pname, mut pns) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let (mut cg, mut exec, mut dur) = (UInt64Builder::new(), UInt64Builder::new(), UInt64Builder::new());
    let mut pid = UInt32Builder::new();
    let (mut code, mut sig) = (Int32Builder::new(), Int32Builder::new());
    for i in 0..n {
        time.append_value(t0 + i as i64 * step);
        node.append_value("n1");
        match i % 3 {
            2 => {
                cg.append_value(1);
                cid.append_null();
                uid.append_null();
                pname.append_null();
                pns.append_null();
            }
            p => {
                cg.append_value(100 + p as u64);
                cid.append_value(format!("c{p}"));
                uid.append_value(format!("pod-{p}"));
                pname.append_value(format!("name-{p}"));
                pns.append_value("ns");
            }
        }
        exec.append_value(i as u64);
        pid.append_value(i as u32);
        code.append_value(0);
        sig.append_value(0);
        dur.append_null();
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        Arc::new(node.finish()),
        Arc::new(cg.finish()),
        Arc::new(cid.finish()),
        Arc::new(uid.finish()),
        Arc::new(pname.finish()),
        Arc::new(pns.finish()),
        Arc::new(exec.finish()),
        Arc::new(pid.finish()),
        Arc::new(code.finish()),
        Arc::new(sig.finish()),
        Arc::new(dur.finish()),
    ];
    RecordBatch::try_new(PROCESS_EXIT.arrow_schema(), cols).unwrap()
}

fn store(dir: &Path) -> SegmentStore {
    let (s, report) = SegmentStore::open(StoreConfig::new(dir, "n1")).unwrap();
    assert_eq!(report, RecoveryReport::default(), "fresh dir needs no recovery");
    s
}

/// `exits(T0, 1_000, n)` sealed into a fresh store: its data dir (removed when
/// dropped) and the one segment's file.
fn sealed_exits(n: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    s.append("process_exit", exits(T0, 1_000, n)).unwrap();
    let sealed = s.close().unwrap();
    assert_eq!(sealed.len(), 1, "{n} rows of one hour: one segment");
    let path = sealed[0].path.clone();
    (tmp, path)
}

fn sealed_rows(dir: &Path) -> u64 {
    let cat = Catalog::open_ro(&layout::catalog_path(dir)).unwrap();
    cat.segments().unwrap().iter().map(|s| s.rows).sum()
}

#[test]
fn segments_roll_at_hour_boundaries_and_record_pods() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    // 3 hours of rows, 1 per minute, in 10-minute batches.
    for b in 0..18 {
        s.append("process_exit", exits(T0 + b * HOUR / 6, 60_000_000_000, 10)).unwrap();
    }
    s.close().unwrap();
    let cat = Catalog::open_ro(&layout::catalog_path(tmp.path())).unwrap();
    let segs = cat.segments().unwrap();
    assert_eq!(segs.iter().map(|s| s.rows).sum::<u64>(), 180);
    for seg in &segs {
        assert_eq!(seg.time_min.div_euclid(HOUR), seg.time_max.div_euclid(HOUR), "{} spans an hour boundary", seg.segment_id);
        assert!(tmp.path().join(&seg.path).exists());
    }
    assert!(segs.len() >= 3);
    let pod0 = cat.segments_overlapping("process_exit", T0, T0 + HOUR - 1, Some(&["pod-0".into()])).unwrap();
    assert!(!pod0.is_empty() && pod0.iter().all(|s| s.time_min < T0 + HOUR));
    assert!(cat.segments_overlapping("process_exit", T0, T0 + 3 * HOUR, Some(&["pod-9".into()])).unwrap().is_empty());
}

#[test]
fn a_batch_spanning_midnight_is_split_so_every_segment_holds_one_hour() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    // 60 rows, one a second, from 23:59:30 to 00:00:29: across a date boundary.
    s.append("process_exit", exits(T0 - 30_000_000_000, 1_000_000_000, 60)).unwrap();
    s.close().unwrap();
    let cat = Catalog::open_ro(&layout::catalog_path(tmp.path())).unwrap();
    let segs = cat.segments().unwrap();
    assert_eq!(segs.len(), 2, "{segs:#?}");
    assert_eq!(segs.iter().map(|s| s.rows).collect::<Vec<_>>(), vec![30, 30]);
    for seg in &segs {
        assert_eq!(seg.time_min.div_euclid(HOUR), seg.time_max.div_euclid(HOUR), "{} spans an hour boundary", seg.segment_id);
    }
    assert!(segs[0].path.contains("date=2026-11-15/hour=23") && segs[1].path.contains("date=2026-11-16/hour=00"), "{segs:#?}");
}

#[test]
fn sealed_segment_is_sorted_by_pod_then_time() {
    let (_tmp, path) = sealed_exits(300);
    let f = std::fs::File::open(path).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
    let batch = arrow::compute::concat_batches(&PROCESS_EXIT.arrow_schema(), &r.map(|b| b.unwrap()).collect::<Vec<_>>()).unwrap();
    let uid = batch.column_by_name("pod_uid").unwrap().as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
    let keys: Vec<Option<&str>> = uid.iter().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys[0], None, "host rows (null pod) sort first");
}

#[test]
fn columns_that_never_prune_carry_no_statistics_and_the_others_do() {
    let (_tmp, path) = sealed_exits(300);
    let meta = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let meta = parquet::file::reader::FileReader::metadata(&meta);
    let rg = meta.row_group(0);
    let stats = |name: &str| rg.columns().iter().find(|c| c.column_path().string() == name).unwrap_or_else(|| panic!("no column {name}")).statistics().is_some();
    assert!(!stats("node"), "node: the same value on every row");
    for c in ["time", "pod_uid", "cgroup_id", "pid", "exit_code"] {
        assert!(stats(c), "{c} keeps its statistics");
    }
}

#[test]
fn pages_hold_page_rows_each_plain_except_time() {
    use parquet::basic::Encoding;
    use parquet::column::page::Page;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let (_tmp, path) = sealed_exits(parquet_out::PAGE_ROWS * 2 + 100);
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let rg = reader.get_row_group(0).unwrap();
    for (i, col) in reader.metadata().row_group(0).columns().iter().enumerate() {
        let name = col.column_path().string();
        let mut pages = rg.get_column_page_reader(i).unwrap();
        let mut values = Vec::new();
        while let Some(page) = pages.get_next_page().unwrap() {
            match page {
                Page::DataPage { num_values, encoding, .. } => {
                    let want = if name == "time" { Encoding::DELTA_BINARY_PACKED } else { Encoding::PLAIN };
                    assert_eq!(encoding, want, "{name}");
                    values.push(num_values as usize);
                }
                other => panic!("{name}: a {:?} page, not a data page", other.page_type()),
            }
        }
        assert_eq!(values, [parquet_out::PAGE_ROWS, parquet_out::PAGE_ROWS, 100], "{name}: values per page");
    }
}

/// The one sealed segment's rows: asserts they are in key order (pod_uid,
/// cgroup_id, time), returns their (time, exec_id) pairs, sorted.
fn sealed_in_key_order(sealed: &[SealedSegment]) -> Vec<(i64, u64)> {
    assert_eq!(sealed.len(), 1);
    let f = std::fs::File::open(&sealed[0].path).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
    let batch = arrow::compute::concat_batches(&PROCESS_EXIT.arrow_schema(), &r.map(|b| b.unwrap()).collect::<Vec<_>>()).unwrap();
    let uid = batch.column_by_name("pod_uid").unwrap().as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
    let cg = batch.column_by_name("cgroup_id").unwrap().as_any().downcast_ref::<arrow::array::UInt64Array>().unwrap();
    let time = batch.column(0).as_any().downcast_ref::<arrow::array::TimestampNanosecondArray>().unwrap();
    let exec = batch.column_by_name("exec_id").unwrap().as_any().downcast_ref::<arrow::array::UInt64Array>().unwrap();
    let keys: Vec<(Option<&str>, u64, i64)> = (0..batch.num_rows()).map(|i| (uid.is_valid(i).then(|| uid.value(i)), cg.value(i), time.value(i))).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "sorted by (pod_uid, cgroup_id, time)");
    let mut got: Vec<(i64, u64)> = (0..batch.num_rows()).map(|i| (time.value(i), exec.value(i))).collect();
    got.sort();
    got
}

/// (time, exec_id) of every row `exits(t0, 10_000, n)` made for `parts`, sorted.
fn appended(parts: &[(i64, usize)]) -> Vec<(i64, u64)> {
    let mut want: Vec<(i64, u64)> = parts.iter().flat_map(|&(t0, n)| (0..n).map(move |i| (t0 + i as i64 * 10_000, i as u64))).collect();
    want.sort();
    want
}

#[test]
fn rows_of_many_appended_batches_are_sealed_once_each_in_key_order() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    // Later batches first and overlapping in time: the order comes from the sort alone.
    for (t0, n) in [(T0 + 500_000, 70), (T0, 50), (T0 + 250_000, 0), (T0 + 1_000, 31)] {
        if n > 0 {
            s.append("process_exit", exits(t0, 10_000, n)).unwrap();
        }
    }
    // Every appended row exactly once: (time, exec_id) pairs are unique per batch.
    assert_eq!(sealed_in_key_order(&s.close().unwrap()), appended(&[(T0 + 500_000, 70), (T0, 50), (T0 + 1_000, 31)]));
    let (lo, hi) = (T0, T0 + 500_000 + 69 * 10_000);
    let cat = Catalog::open_ro(&layout::catalog_path(tmp.path())).unwrap();
    let seg = &cat.segments().unwrap()[0];
    assert_eq!((seg.time_min, seg.time_max, seg.rows), (lo, hi, 151));
}

/// `batch` in the seal's key order, as the batcher builds batches.
fn in_key_order(batch: &RecordBatch) -> RecordBatch {
    let opts = Some(arrow::compute::SortOptions { descending: false, nulls_first: true });
    let cols: Vec<arrow::compute::SortColumn> =
        parquet_out::SORT_KEY.iter().map(|c| arrow::compute::SortColumn { values: batch.column_by_name(c).unwrap().clone(), options: opts }).collect();
    arrow::compute::take_record_batch(batch, &arrow::compute::lexsort_to_indices(&cols, None).unwrap()).unwrap()
}

#[test]
fn batches_already_in_key_order_are_sealed_from_their_runs_in_key_order_once_each() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    // Three batches in key order, later ones later in time: merged, they form 9
    // runs (3 keys x 3 batches) of ~1,333 rows, long enough to be written as
    // slices of the appended batches rather than gathered.
    let parts = [(T0 + 100_000_000, 4_000), (T0, 4_000), (T0 + 200_000_000, 4_000)];
    for (t0, n) in parts {
        s.append("process_exit", in_key_order(&exits(t0, 10_000, n))).unwrap();
    }
    assert_eq!(sealed_in_key_order(&s.close().unwrap()), appended(&parts), "every appended row exactly once");
}

#[test]
fn a_flush_seals_a_segment_past_half_its_size_limit_instead_of_writing_its_hot_file() {
    let tmp = tempfile::tempdir().unwrap();
    let batch = exits(T0, 1_000, 300);
    let mut cfg = StoreConfig::new(tmp.path(), "n1");
    cfg.max_segment_bytes = batch.get_array_memory_size() * 2;
    let (mut s, _) = SegmentStore::open(cfg).unwrap();
    // Below half the limit: the hot tail, nothing sealed.
    s.append("process_exit", exits(T0, 1_000, 100)).unwrap();
    s.flush().unwrap();
    assert_eq!((s.stats().hot_flushes, s.stats().segments_sealed), (1, 0));
    assert_eq!(sealed_rows(tmp.path()), 0);
    // Past half: sealed by the flush, its hot file gone, every row in the catalog.
    s.append("process_exit", batch).unwrap();
    s.flush().unwrap();
    assert_eq!((s.stats().hot_flushes, s.stats().segments_sealed), (1, 1));
    assert_eq!(sealed_rows(tmp.path()), 400);
    let hot_dir = layout::hot_table_dir(tmp.path(), "process_exit");
    assert_eq!(std::fs::read_dir(&hot_dir).unwrap().count(), 0, "{} still has a hot file", hot_dir.display());
    // A later flush with nothing new does nothing.
    s.flush().unwrap();
    assert_eq!((s.stats().hot_flushes, s.stats().segments_sealed), (1, 1));
}

#[test]
fn a_seal_that_fails_at_a_flush_leaves_the_rows_in_the_hot_file() {
    let tmp = tempfile::tempdir().unwrap();
    let batch = exits(T0, 1_000, 300);
    let mut cfg = StoreConfig::new(tmp.path(), "n1");
    cfg.max_segment_bytes = batch.get_array_memory_size();
    let (mut s, _) = SegmentStore::open(cfg.clone()).unwrap();
    // A file where the segment's hour directory must go: the seal cannot write.
    let hour_dir = tmp.path().join(layout::segment_rel_path("process_exit", T0, "x").parent().unwrap());
    std::fs::create_dir_all(hour_dir.parent().unwrap()).unwrap();
    std::fs::write(&hour_dir, b"in the way").unwrap();
    s.append("process_exit", batch).unwrap();
    s.flush().expect("the flush falls back to the hot file");
    assert_eq!((s.stats().hot_flushes, s.stats().segments_sealed), (1, 0));
    // As after a crash: the hot file holds every row, recovery seals them.
    drop(s);
    std::fs::remove_file(&hour_dir).unwrap();
    let (_s, report) = SegmentStore::open(cfg).unwrap();
    assert_eq!(report.hot_segments_sealed, 1);
    assert_eq!(sealed_rows(tmp.path()), 300);
}

#[test]
fn crash_after_flush_recovers_every_flushed_row() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    s.append("process_exit", exits(T0, 1_000, 50)).unwrap();
    s.flush().unwrap();
    s.append("process_exit", exits(T0 + 100_000, 1_000, 7)).unwrap();
    s.flush().unwrap();
    s.append("process_exit", exits(T0 + 200_000, 1_000, 5)).unwrap(); // never flushed
    drop(s); // like kill -9: nothing seals or flushes on drop; the lock is released as on death
    let (s2, report) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).unwrap();
    assert_eq!(report.hot_segments_sealed, 1);
    assert_eq!(report.hot_rows_recovered, 57);
    assert_eq!(report.rows_lost, 0);
    s2.close().unwrap();
    assert_eq!(sealed_rows(tmp.path()), 57);
    assert_eq!(std::fs::read_dir(tmp.path().join("hot/process_exit")).unwrap().count(), 0, "hot file removed after sealing");
}

#[test]
fn torn_hot_frame_is_recorded_as_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    s.append("process_exit", exits(T0, 1_000, 20)).unwrap();
    s.flush().unwrap();
    drop(s); // a crash: no close()
    // Simulate power loss mid-append: half of a 9-row frame reached the disk.
    let hot_dir = tmp.path().join("hot/process_exit");
    let hot_file = std::fs::read_dir(&hot_dir).unwrap().next().unwrap().unwrap().path();
    let frame = hot::encode_frame(&exits(T0 + 50_000, 1_000, 9)).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&hot_file).unwrap();
    std::io::Write::write_all(&mut f, &frame[..frame.len() / 2]).unwrap();
    drop(f);
    let (s2, report) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).unwrap();
    s2.close().unwrap();
    assert_eq!((report.hot_rows_recovered, report.rows_lost), (20, 9));
    let cat = Catalog::open_ro(&layout::catalog_path(tmp.path())).unwrap();
    let (src, count): (String, i64) = cat.conn().query_row("SELECT source, count FROM loss", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((src.as_str(), count), ("crash", 9));
}

#[test]
fn crash_between_commit_and_hot_delete_does_not_double_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    s.append("process_exit", exits(T0, 1_000, 30)).unwrap();
    s.flush().unwrap();
    let hot_file = std::fs::read_dir(tmp.path().join("hot/process_exit")).unwrap().next().unwrap().unwrap().path();
    let saved = std::fs::read(&hot_file).unwrap();
    s.close().unwrap();
    std::fs::write(&hot_file, saved).unwrap(); // the delete "never happened"
    let (s2, report) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).unwrap();
    s2.close().unwrap();
    assert_eq!(report.hot_files_already_sealed, 1);
    assert_eq!(sealed_rows(tmp.path()), 30);
}

#[test]
fn unrecorded_segment_file_and_temp_files_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    s.append("process_exit", exits(T0, 1_000, 30)).unwrap();
    s.flush().unwrap();
    drop(s); // a crash: no close()
    let stray = tmp.path().join("segments/process_exit/date=2026-11-16/hour=00");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("process_exit-x.parquet"), b"renamed but never committed").unwrap();
    std::fs::write(stray.join("process_exit-y.parquet.tmp"), b"half written").unwrap();
    let (s2, report) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).unwrap();
    s2.close().unwrap();
    assert_eq!((report.unrecorded_segments_removed, report.temp_files_removed), (1, 1));
    assert!(!stray.join("process_exit-x.parquet").exists());
    assert_eq!(sealed_rows(tmp.path()), 30);
}

#[test]
fn wrong_schema_is_refused_naming_table_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    let err = s.append("net_conn", exits(T0, 1, 3)).unwrap_err().to_string();
    assert!(err.contains("net_conn"), "{err}");
    let err = s.append("nope", exits(T0, 1, 3)).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn a_second_writer_is_refused_naming_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let first = store(tmp.path());
    let err = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).err().expect("second writer must be refused").to_string();
    assert!(err.contains(&tmp.path().display().to_string()) && err.contains("another writer"), "{err}");
    drop(first);
    SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).expect("free again once the first writer is gone");
}

#[test]
fn retention_removes_shipped_segments_first_and_counts_unshipped_ones_as_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    // Four one-hour segments of 100 rows each.
    for h in 0..4 {
        s.append("process_exit", exits(T0 + h * HOUR, 1_000_000, 100)).unwrap();
        s.seal("process_exit").unwrap();
    }
    s.close().unwrap();
    let path = layout::catalog_path(tmp.path());
    let mut cat = Catalog::open_rw(&path).unwrap();
    let segs = cat.segments().unwrap();
    assert_eq!(segs.len(), 4);
    // The two newest were shipped; the two oldest were not.
    for seg in &segs[2..] {
        cat.mark_shipped(&seg.segment_id, "s3://b/p", "k", 1).unwrap();
    }
    let one = segs[0].bytes.max(segs[1].bytes).max(segs[2].bytes).max(segs[3].bytes);
    // Room for two segments: the shipped ones go, the unshipped stay, no loss.
    let expired = catalog_write::enforce_budget(&mut cat, tmp.path(), 2 * one, Some("s3://b/p")).unwrap();
    assert_eq!(expired, 2);
    let state: Vec<bool> = cat.segments().unwrap().iter().map(|s| s.expired).collect();
    assert_eq!(state, vec![false, false, true, true], "shipped segments expire before older unshipped ones");
    let loss: i64 = cat.conn().query_row("SELECT count(*) FROM loss", [], |r| r.get(0)).unwrap();
    assert_eq!(loss, 0);
    // Room for one: an unshipped segment must go, and its rows are counted as loss.
    assert_eq!(catalog_write::enforce_budget(&mut cat, tmp.path(), one, Some("s3://b/p")).unwrap(), 1);
    let (source, table, count, detail): (String, String, i64, String) =
        cat.conn().query_row("SELECT source, table_name, count, detail FROM loss", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap();
    assert_eq!((source.as_str(), table.as_str(), count), ("retention", "process_exit", 100));
    assert!(detail.contains("before it was shipped to s3://b/p"), "{detail}");
    assert!(!tmp.path().join(&segs[0].path).exists());
    // Without shipping, retention is plain oldest-first and counts nothing.
    let before: i64 = cat.conn().query_row("SELECT count(*) FROM loss", [], |r| r.get(0)).unwrap();
    catalog_write::enforce_budget(&mut cat, tmp.path(), 0, None).unwrap();
    let after: i64 = cat.conn().query_row("SELECT count(*) FROM loss", [], |r| r.get(0)).unwrap();
    assert_eq!(before, after);
}

#[test]
fn an_address_written_before_its_pod_was_named_gets_the_name_and_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    let ip = |name: Option<&str>, valid_to: Option<i64>| IpOwnerRecord {
        ip: "10.244.1.5".into(),
        pod_uid: "uid-b".into(),
        pod_namespace: name.map(|_| "shop".into()),
        pod_name: name.map(Into::into),
        node: "n1".into(),
        valid_from: T0,
        valid_to,
        source: "observed".into(),
    };
    let read = |s: &SegmentStore| -> Vec<(Option<String>, Option<String>, Option<i64>)> {
        let mut st = s.catalog().conn().prepare("SELECT pod_namespace, pod_name, valid_to FROM ip_owners WHERE ip = '10.244.1.5'").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    };
    s.write_identity(&[], &[], &[ip(None, None)]).unwrap();
    assert_eq!(read(&s), vec![(None, None, None)]);
    s.write_identity(&[], &[], &[ip(Some("web-b"), None)]).unwrap();
    assert_eq!(read(&s), vec![(Some("shop".into()), Some("web-b".into()), None)]);
    // Closed by a record that never learned the name: the name stays.
    s.write_identity(&[], &[], &[ip(None, Some(T0 + HOUR))]).unwrap();
    assert_eq!(read(&s), vec![(Some("shop".into()), Some("web-b".into()), Some(T0 + HOUR))]);
}
