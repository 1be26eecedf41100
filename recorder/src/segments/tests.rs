//! Segment store tests: temp dirs only, no root.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, StringBuilder, TimestampNanosecondBuilder, UInt32Builder, UInt64Builder};
use arrow::record_batch::RecordBatch;
use podtrail_schema::catalog::Catalog;
use podtrail_schema::tables::PROCESS_EXIT;
use podtrail_schema::{hot, layout};

use super::*;
use std::time::{Duration, Instant};

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
    let frame = hot::encode_frame(&exits(T0 + 50_000, 1_000, 9), (T0 + 50_000, T0 + 58_000)).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&hot_file).unwrap();
    std::io::Write::write_all(&mut f, &frame[..frame.len() / 2]).unwrap();
    drop(f);
    let (s2, report) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).unwrap();
    s2.close().unwrap();
    assert_eq!((report.hot_rows_recovered, report.rows_lost), (20, 9));
    let cat = Catalog::open_ro(&layout::catalog_path(tmp.path())).unwrap();
    let (src, count, from, to): (String, i64, i64, i64) = cat.conn().query_row("SELECT source, count, time_from, time_to FROM loss", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap();
    assert_eq!((src.as_str(), count, from, to), ("crash", 9, T0 + 50_000, T0 + 58_000), "the torn frame's own header says what it held");
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
fn a_second_writer_is_refused_naming_the_data_dir_and_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let first = store(tmp.path());
    let mut cfg = StoreConfig::new(tmp.path(), "n1");
    cfg.lock_wait = Duration::from_millis(200);
    let err = SegmentStore::open(cfg.clone()).err().expect("second writer must be refused").to_string();
    assert!(err.contains(&tmp.path().display().to_string()) && err.contains("another writer"), "{err}");
    assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
    drop(first);
    SegmentStore::open(cfg).expect("free again once the first writer is gone");
}

// Regression: a restart 0.8 s after a kill -9 was refused ("in use by another
// writer"): the dying recorder held the lock for ~0.9 s more.
#[test]
fn a_writer_waits_for_a_lock_that_is_being_released() {
    let tmp = tempfile::tempdir().unwrap();
    let first = store(tmp.path());
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(first);
    });
    let started = Instant::now();
    let (s, _) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).expect("waits, then opens");
    assert!(started.elapsed() >= Duration::from_millis(250), "it did wait");
    releaser.join().unwrap();
    drop(s);
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
    let budget = |b: u64| catalog_write::Retention { budget: Some(b), min_free: None, free: &|| None };
    let expired = catalog_write::enforce_retention(&mut cat, tmp.path(), &budget(2 * one), Some("s3://b/p")).unwrap();
    assert_eq!(expired, 2);
    let state: Vec<bool> = cat.segments().unwrap().iter().map(|s| s.expired).collect();
    assert_eq!(state, vec![false, false, true, true], "shipped segments expire before older unshipped ones");
    let loss: i64 = cat.conn().query_row("SELECT count(*) FROM loss", [], |r| r.get(0)).unwrap();
    assert_eq!(loss, 0);
    // Room for one: an unshipped segment must go, and its rows are counted as loss.
    assert_eq!(catalog_write::enforce_retention(&mut cat, tmp.path(), &budget(one), Some("s3://b/p")).unwrap(), 1);
    let (source, table, count, detail): (String, String, i64, String) =
        cat.conn().query_row("SELECT source, table_name, count, detail FROM loss", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap();
    assert_eq!((source.as_str(), table.as_str(), count), ("retention", "process_exit", 100));
    assert!(detail.contains("before it was shipped to s3://b/p"), "{detail}");
    assert!(!tmp.path().join(&segs[0].path).exists());
    // Without shipping, retention is plain oldest-first and counts nothing.
    let before: i64 = cat.conn().query_row("SELECT count(*) FROM loss", [], |r| r.get(0)).unwrap();
    catalog_write::enforce_retention(&mut cat, tmp.path(), &budget(0), None).unwrap();
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

#[test]
fn retention_keeps_free_space_above_the_floor_oldest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    for h in 0..4 {
        s.append("process_exit", exits(T0 + h * HOUR, 1_000_000, 100)).unwrap();
        s.seal("process_exit").unwrap();
    }
    s.close().unwrap();
    let mut cat = Catalog::open_rw(&layout::catalog_path(tmp.path())).unwrap();
    // A filesystem whose free space grows by what is removed: 10 bytes free
    // plus the bytes of every expired segment; the floor needs two segments' worth.
    let segs = cat.segments().unwrap();
    let freed = || -> u64 { segs.iter().filter(|s| !tmp.path().join(&s.path).exists()).map(|s| s.bytes).sum() };
    let free = || Some(10 + freed());
    let floor = segs[0].bytes + segs[1].bytes;
    let keep = catalog_write::Retention { budget: None, min_free: Some(floor), free: &free };
    assert_eq!(catalog_write::enforce_retention(&mut cat, tmp.path(), &keep, None).unwrap(), 2);
    let state: Vec<bool> = cat.segments().unwrap().iter().map(|s| s.expired).collect();
    assert_eq!(state, vec![true, true, false, false], "the two oldest go, and no more");
}

/// A store on `dir` with small limits, its rows held while writes fail.
fn small_store(dir: &Path, buffered: usize) -> SegmentStore {
    let mut cfg = StoreConfig::new(dir, "n1");
    cfg.max_buffered_bytes = buffered;
    SegmentStore::open(cfg).unwrap().0
}

/// Something in the way of the store's writes: files where its table
/// directories must be (root ignores permissions; a file in the path does not).
struct Blocker(Vec<std::path::PathBuf>);

impl Blocker {
    fn new(dir: &Path) -> Blocker {
        let paths = vec![layout::hot_table_dir(dir, "process_exit"), dir.join(layout::SEGMENTS_DIR).join("process_exit")];
        for p in &paths {
            std::fs::write(p, b"in the way").unwrap();
        }
        Blocker(paths)
    }
    fn remove(self) {
        for p in &self.0 {
            std::fs::remove_file(p).unwrap();
        }
    }
}

fn loss_rows(dir: &Path, source: &str) -> Vec<(Option<String>, Option<i64>, Option<String>)> {
    let cat = Catalog::open_ro(&layout::catalog_path(dir)).unwrap();
    let mut st = cat.conn().prepare("SELECT table_name, count, pod_uid FROM loss WHERE source = ?1 ORDER BY pod_uid").unwrap();
    st.query_map([source], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn writes_that_fail_keep_rows_up_to_the_bound_count_the_rest_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let one = exits(T0, 1_000, 30).get_array_memory_size();
    let mut s = small_store(tmp.path(), 3 * one);
    let blocked = Blocker::new(tmp.path());
    // 2 batches fit in memory while the flush fails; they stay, nothing dropped.
    s.append("process_exit", exits(T0, 1_000, 30)).unwrap();
    assert!(s.flush().is_err(), "the hot file cannot be written");
    assert!(s.write_state().failing_since.is_some());
    s.append("process_exit", exits(T0 + 100_000, 1_000, 30)).unwrap();
    assert_eq!(s.stats().rows_dropped_disk, 0);
    // Past the bound: batches are dropped and counted, per pod.
    for k in 0..3 {
        s.append("process_exit", exits(T0 + 200_000 + k * 100_000, 1_000, 30)).unwrap();
    }
    assert!(s.stats().rows_dropped_disk > 0);
    let dropped = s.stats().rows_dropped_disk;
    assert!(s.flush().is_err());
    // Space comes back: everything held is written, the drops are recorded.
    blocked.remove();
    s.flush().expect("writes again");
    assert_eq!(s.write_state(), WriteState { buffered_bytes: s.write_state().buffered_bytes, ..WriteState::default() }, "out of the failing mode");
    s.close().unwrap();
    let stored = sealed_rows(tmp.path());
    let lost: i64 = loss_rows(tmp.path(), "disk").iter().map(|r| r.1.unwrap()).sum();
    assert_eq!(lost as u64, dropped);
    assert_eq!(stored + dropped, 150, "stored + counted = appended, exactly");
    // exits() gives pods pod-0, pod-1 and host rows: loss is per pod (host: null).
    let pods: Vec<Option<String>> = loss_rows(tmp.path(), "disk").into_iter().map(|r| r.2).collect();
    assert_eq!(pods, vec![None, Some("pod-0".into()), Some("pod-1".into())]);
}

#[test]
fn a_failed_hot_append_is_cut_back_so_later_frames_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    s.append("process_exit", exits(T0, 1_000, 10)).unwrap();
    s.flush().unwrap();
    let hot_file = std::fs::read_dir(tmp.path().join("hot/process_exit")).unwrap().next().unwrap().unwrap().path();
    let len = std::fs::metadata(&hot_file).unwrap().len();
    // As after a failed write: junk after the last frame, cut back by the store.
    let seg = s.open.get_mut("process_exit").unwrap();
    std::io::Write::write_all(seg.hot.as_mut().unwrap(), b"half a frame").unwrap();
    seg.hot.as_mut().unwrap().set_len(seg.hot_len).unwrap();
    assert_eq!(std::fs::metadata(&hot_file).unwrap().len(), len);
    s.append("process_exit", exits(T0 + 50_000, 1_000, 5)).unwrap();
    s.flush().unwrap();
    drop(s);
    let (_s, report) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).unwrap();
    assert_eq!((report.hot_rows_recovered, report.rows_lost, report.losses_of_unknown_count), (15, 0, 0));
}

/// A data dir where one hot file of `rows` rows was flushed (and recorded in
/// the catalog), then the writer crashed: its path.
fn crashed_with_hot_file(dir: &Path, rows: usize) -> std::path::PathBuf {
    let mut s = store(dir);
    s.append("process_exit", exits(T0, 1_000, rows)).unwrap();
    s.flush().unwrap();
    drop(s);
    std::fs::read_dir(dir.join("hot/process_exit")).unwrap().next().unwrap().unwrap().path()
}

fn quarantined(dir: &Path) -> Vec<String> {
    let q = dir.join(layout::QUARANTINE_DIR).join("process_exit");
    let mut names: Vec<String> = std::fs::read_dir(q).map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    names.sort();
    names
}

fn one_loss(dir: &Path) -> (String, Option<i64>, String) {
    let cat = Catalog::open_ro(&layout::catalog_path(dir)).unwrap();
    let rows: Vec<(String, Option<i64>, String)> = {
        let mut st = cat.conn().prepare("SELECT source, count, detail FROM loss").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(rows.len(), 1, "{rows:#?}");
    rows.into_iter().next().unwrap()
}

// Regression: 5,000 random bytes appended to a hot file made recovery record a
// loss of 2,416,152,939 rows (a number read from the garbage).
#[test]
fn garbage_appended_to_a_hot_file_is_quarantined_and_counts_nothing_the_catalog_saw_flushed() {
    let tmp = tempfile::tempdir().unwrap();
    let hot_file = crashed_with_hot_file(tmp.path(), 722);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let junk: Vec<u8> = (0..5000).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }).collect();
    let mut f = std::fs::OpenOptions::new().append(true).open(&hot_file).unwrap();
    std::io::Write::write_all(&mut f, &junk).unwrap();
    drop(f);
    let (s, report) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).unwrap();
    s.close().unwrap();
    assert_eq!((report.hot_rows_recovered, report.rows_lost, report.files_quarantined), (722, 0, 1), "{report:?}");
    assert_eq!(sealed_rows(tmp.path()), 722);
    let (source, count, detail) = one_loss(tmp.path());
    assert_eq!((source.as_str(), count), ("corrupt", Some(0)));
    let q = quarantined(tmp.path());
    assert_eq!(q.len(), 1);
    assert!(detail.contains(&q[0]), "the loss row names the quarantined bytes: {detail}");
    let kept = std::fs::read(tmp.path().join(layout::QUARANTINE_DIR).join("process_exit").join(&q[0])).unwrap();
    assert_eq!(kept, junk, "the damaged bytes are kept as they were");
}

// Regression: a hot file with a bad header stopped `recover` and `run`.
#[test]
fn a_hot_file_with_a_bad_magic_is_quarantined_and_its_flushed_rows_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let hot_file = crashed_with_hot_file(tmp.path(), 40);
    let mut bytes = std::fs::read(&hot_file).unwrap();
    bytes[..8].copy_from_slice(b"GARBAGE!");
    std::fs::write(&hot_file, bytes).unwrap();
    let (s, report) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).expect("recovery proceeds");
    s.close().unwrap();
    assert_eq!((report.rows_lost, report.files_quarantined), (40, 1));
    let (source, count, detail) = one_loss(tmp.path());
    assert_eq!((source.as_str(), count), ("corrupt", Some(40)), "{detail}");
    assert!(!hot_file.exists());
    assert_eq!(quarantined(tmp.path()), vec![hot_file.file_name().unwrap().to_string_lossy().into_owned()]);
}

// Regression: a hot file truncated to 3 bytes that held 722 rows was recovered
// with rows_lost 0.
#[test]
fn a_truncated_or_emptied_hot_file_counts_the_rows_the_catalog_saw_flushed() {
    for keep in [3usize, 0, 100] {
        let tmp = tempfile::tempdir().unwrap();
        let hot_file = crashed_with_hot_file(tmp.path(), 722);
        let bytes = std::fs::read(&hot_file).unwrap();
        std::fs::write(&hot_file, &bytes[..keep]).unwrap();
        let (s, report) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).expect("recovery proceeds");
        s.close().unwrap();
        assert_eq!(report.rows_lost, 722, "cut to {keep} bytes: {report:?}");
        let (source, count, _) = one_loss(tmp.path());
        assert_eq!((source.as_str(), count), ("corrupt", Some(722)), "cut to {keep} bytes");
    }
}

#[test]
fn a_damaged_hot_file_with_no_catalog_record_is_a_loss_of_unknown_count() {
    let tmp = tempfile::tempdir().unwrap();
    let hot_file = crashed_with_hot_file(tmp.path(), 10);
    // As if written by a writer that never recorded its hot files.
    Catalog::open_rw(&layout::catalog_path(tmp.path())).unwrap().conn().execute("DELETE FROM hot_files", []).unwrap();
    std::fs::write(&hot_file, b"PODTRAIL").unwrap();
    let (s, report) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).unwrap();
    s.close().unwrap();
    assert_eq!((report.rows_lost, report.losses_of_unknown_count), (0, 1));
    let (source, count, _) = one_loss(tmp.path());
    assert_eq!((source.as_str(), count), ("corrupt", None), "unknown, never zero");
}

#[test]
fn a_missing_hot_file_with_flushed_rows_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let hot_file = crashed_with_hot_file(tmp.path(), 33);
    std::fs::remove_file(&hot_file).unwrap();
    let (s, report) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).unwrap();
    s.close().unwrap();
    assert_eq!(report.rows_lost, 33);
    assert_eq!(one_loss(tmp.path()).1, Some(33));
}

#[test]
fn a_run_that_never_ended_is_closed_as_unclean_with_a_crash_window_of_unknown_count() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    s.begin_run().unwrap();
    s.append("process_exit", exits(T0, 1_000, 10)).unwrap();
    s.flush().unwrap();
    drop(s); // kill -9
    let (s, report) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).unwrap();
    assert_eq!((report.unclean_runs, report.hot_rows_recovered), (1, 10));
    s.close().unwrap();
    let cat = Catalog::open_ro(&layout::catalog_path(tmp.path())).unwrap();
    let (state, last_flush, ended): (String, i64, i64) = cat.conn().query_row("SELECT end_state, last_flush, ended_at FROM runs", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
    assert_eq!((state.as_str(), ended), ("unclean", last_flush), "it ended at its last durable flush");
    let (source, count, detail) = one_loss(tmp.path());
    assert_eq!((source.as_str(), count), ("crash", None), "{detail}");
    let from: i64 = cat.conn().query_row("SELECT time_from FROM loss", [], |r| r.get(0)).unwrap();
    assert_eq!(from, last_flush);
    // A second start finds nothing more to close.
    let (s, report) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).unwrap();
    s.close().unwrap();
    assert_eq!(report.unclean_runs, 0);
}

#[test]
fn a_clean_close_ends_the_run_and_flushes_record_its_heartbeat() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    s.begin_run().unwrap();
    s.append("process_exit", exits(T0, 1_000, 10)).unwrap();
    s.flush().unwrap();
    let beat: Option<i64> = s.catalog().conn().query_row("SELECT last_flush FROM runs", [], |r| r.get(0)).unwrap();
    assert!(beat.is_some(), "a durable flush is recorded as the run's heartbeat");
    s.close().unwrap();
    let cat = Catalog::open_ro(&layout::catalog_path(tmp.path())).unwrap();
    let (state, pid): (String, i64) = cat.conn().query_row("SELECT end_state, pid FROM runs", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((state.as_str(), pid), ("clean", i64::from(std::process::id())));
}

#[test]
fn a_data_dir_that_is_a_file_is_named_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let err = SegmentStore::open(StoreConfig::new(&file, "n1")).err().unwrap().to_string();
    assert_eq!(err, format!("data dir {} is not a directory", file.display()));
}

#[test]
fn a_damaged_catalog_is_refused_and_rebuilt_from_the_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = store(tmp.path());
    for h in 0..3 {
        s.append("process_exit", exits(T0 + h * HOUR, 1_000_000, 100)).unwrap();
    }
    s.write_identity(&[PodRecord { pod_uid: "pod-0".into(), pod_namespace: Some("ns".into()), pod_name: Some("name-0".into()), node: "n1".into(), labels: None, owner: None, qos_class: None, valid_from: T0, valid_to: None, source: "cri".into() }], &[], &[]).unwrap();
    s.close().unwrap();
    let cat_path = layout::catalog_path(tmp.path());
    // Checkpoint the WAL into the file, then damage pages past the header.
    Catalog::open_rw(&cat_path).unwrap().conn().execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    let mut bytes = std::fs::read(&cat_path).unwrap();
    for at in [4096 + 100, 2 * 4096 + 8, bytes.len() - 200] {
        for b in &mut bytes[at..at + 40] {
            *b ^= 0x5a;
        }
    }
    std::fs::write(&cat_path, bytes).unwrap();
    let err = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).err().expect("a damaged catalog is refused").to_string();
    assert!(err.contains("is damaged") && err.contains("--rebuild-catalog") && err.contains(&cat_path.display().to_string()), "{err}");
    let report = rebuild_catalog(tmp.path(), "n1").unwrap();
    assert_eq!((report.segments, report.rows), (3, 300), "{report:?}");
    assert!(report.damaged_catalog_kept_as.as_ref().unwrap().exists());
    let (s, _) = SegmentStore::open(StoreConfig::new(tmp.path(), "n1")).expect("the rebuilt catalog opens");
    s.close().unwrap();
    assert_eq!(sealed_rows(tmp.path()), 300);
    let cat = Catalog::open_ro(&cat_path).unwrap();
    assert!(cat.meta(podtrail_schema::catalog::META_CHAIN_REBUILT).unwrap().is_some());
    let pods: i64 = cat.conn().query_row("SELECT count(*) FROM pods WHERE pod_uid = 'pod-0'", [], |r| r.get(0)).unwrap();
    assert_eq!(pods, 1, "the pod is known again (salvaged, or rebuilt from the segments)");
}
