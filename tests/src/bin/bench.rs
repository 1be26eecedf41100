//! `podtrail-bench`: prints the store's figures (BENCHMARKS.md). Not a test: this
//! machine is shared and noisy, so figures are printed, never asserted.
//!
//!   podtrail-bench ingest [--rows N]        segment-store ingest rate, one thread
//!   podtrail-bench seal [--from D]          store CPU per row (append, hot tail, seal) on rows podtraild recorded
//!   podtrail-bench size                     bytes per row: Parquet vs JSON lines vs zstd JSON lines
//!   podtrail-bench query [--dir D]          fresh-process query latency, podtrail vs DuckDB CLI
//!   podtrail-bench capture                  workload cost of podtraild (root): exec, connect, bind, DNS storms, UDP flood
//!   podtrail-bench identity [--dir D]       who-owned / timeline over 7 days vs DuckDB; enrichment ns/event, bytes/pod
//!   podtrail-bench lake [--dir D]           export to a local S3 server vs boto3; one pod, one day over a 2-node x 7-day lake

#[path = "bench/identity.rs"]
mod identity;
#[path = "bench/lake.rs"]
mod lake;

#[global_allocator]
static ALLOC: identity::Counting = identity::Counting;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use podtrail_recorder::{SegmentStore, StoreConfig};
use podtrail_tests::synth::{MemorySink, Sink, Synth, SynthConfig};

#[derive(Parser)]
#[command(about = "podtrail store benchmarks (prints figures)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Rows/s through the segment store: Arrow batches in, sealed zstd Parquet out.
    Ingest {
        #[arg(long, default_value_t = 3_000_000)]
        rows: u64,
        /// zstd level of sealed segments (the store's default when omitted).
        #[arg(long)]
        zstd_level: Option<i32>,
    },
    /// CPU per row of the recorder's store work on real rows: the `net_conn`
    /// segments of a podtraild data dir, re-appended in time order in batches of
    /// the recorder's early-flush size with a flush after each, at the recorder's
    /// segment size (so hot-tail writes and seals happen where the recorder's
    /// would). Thread CPU time, median of the runs.
    Seal {
        /// A data dir podtraild recorded into (its sealed `net_conn` segments are
        /// read). When it has no catalog, podtraild records 12 s of connections
        /// on 127.0.0.1 into it first (needs root).
        #[arg(long, default_value = "target/bench-seal-data")]
        from: PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Where a sealed segment's bytes go: per column, the bytes before and after
    /// compression, whether it carries statistics, and its bloom filter's
    /// bytes (read from the Parquet footer of FILE; no data is decoded).
    Layout { file: PathBuf },
    /// CPU per row of building `net_conn` batches from decoded rows (the
    /// recorder's batch stage alone): a 127.0.0.1 connection storm's rows (4 per
    /// connection, host cgroup) and the same rows in 50 pods. Thread CPU time,
    /// median of the runs.
    Batch {
        #[arg(long, default_value_t = 50_000)]
        rows: usize,
        #[arg(long, default_value_t = 9)]
        runs: usize,
    },
    /// Bytes on disk per row for each event table, against JSON lines.
    Size {
        #[arg(long, default_value_t = 2.0)]
        hours: f64,
    },
    /// Exec, connect, UDP bind and DNS query storms and a UDP flood, with and
    /// without `podtraild run` (needs root): each workload's throughput ratio,
    /// the daemon's CPU per million of its events, bytes per `dns` row, RSS.
    Capture {
        #[arg(long, default_value_t = 5000)]
        execs: u64,
        #[arg(long, default_value_t = 20000)]
        connects: u64,
        /// UDP sockets bound to 127.0.0.1 and closed (each gives a `net_listen`
        /// bind and unbind row).
        #[arg(long, default_value_t = 20000)]
        binds: u64,
        /// UDP DNS queries to a resolver on 127.0.0.1:53, each answered (each
        /// gives a `dns` row); port 53 of 127.0.0.1 must be free.
        #[arg(long, default_value_t = 20000)]
        queries: u64,
        /// 64-byte UDP datagrams to a socket on 127.0.0.1 (no row: the cost
        /// of the DNS packet programs on other UDP traffic).
        #[arg(long, default_value_t = 500000)]
        datagrams: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// File-heavy work with and without `podtraild run` (needs root): an
    /// untar of a source tree (/usr/include), a compiler run, read-only opens
    /// of a file nothing watches, and a storm of writes under a watched
    /// directory; each workload's ratio, the daemon's CPU per million `file`
    /// rows, and the storm's rows stored + counted lost against the writes made.
    Files {
        /// C files in the compiler run (`cc -c`, each including stdio.h, stdlib.h, string.h).
        #[arg(long, default_value_t = 40)]
        sources: u64,
        /// Read-only opens of an unwatched file (python3).
        #[arg(long, default_value_t = 1_000_000)]
        opens: u64,
        /// Files created under the watched directory (each gives one `file` row).
        #[arg(long, default_value_t = 100_000)]
        writes: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Connections on 127.0.0.1 at fixed rates while `podtraild run` records
    /// (needs root): rows/s reached, daemon CPU per million rows (sealing
    /// included), RSS idle and at most while sustained, kernel drops per rate.
    Sustained {
        /// Connections per second, comma-separated (each gives 4 net_conn rows).
        #[arg(long, default_value = "6250,12500,25000")]
        rates: String,
        #[arg(long, default_value_t = 20)]
        secs: u64,
    },
    /// A traced syscall (setuid to the same uid) and an untraced one (getpid) in
    /// tight loops, with and without `podtraild run` (needs root): ns per call,
    /// the ratio, and what the recorder stored for the traced calls.
    Privilege {
        #[arg(long, default_value_t = 200_000)]
        setuid_calls: u64,
        #[arg(long, default_value_t = 5_000_000)]
        getpid_calls: u64,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// `who-owned` and `timeline` over 7 days of churning pods (fresh process vs
    /// DuckDB CLI), enrichment cost per event and memory per tracked pod.
    Identity {
        /// Data dir to (re)use; generated when it has no catalog.
        #[arg(long, default_value = "target/bench-data-7d")]
        dir: PathBuf,
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// Pods in the cgroup tree of the enrichment measurement.
        #[arg(long, default_value_t = 1000)]
        pods: usize,
    },
    /// Export to a local S3 server vs boto3 uploading the same files; a lake query
    /// over 2 nodes x 7 days: time and bytes fetched vs bytes in the lake.
    Lake {
        /// Where the two nodes' histories are (re)used; generated when missing.
        #[arg(long, default_value = "target/bench-lake")]
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// "One pod, one hour" and "who used IP X at T" over 24 h x 200 pods x 500/s.
    Query {
        /// Data dir to (re)use; generated when it has no catalog.
        #[arg(long, default_value = "target/bench-data-24h")]
        dir: PathBuf,
        #[arg(long, default_value_t = 7)]
        runs: usize,
    },
}

const START: &str = "2026-11-16T00:00:00Z";

fn start_ns() -> i64 {
    chrono::DateTime::parse_from_rfc3339(START).expect("valid").timestamp_nanos_opt().expect("in range")
}

fn generate(hours: f64, pods: usize, eps: f64) -> anyhow::Result<MemorySink> {
    let mut sink = MemorySink::default();
    Synth::new(SynthConfig { hours, pods, events_per_sec: eps, seed: 42, start_ns: start_ns(), node: "bench-node".into(), batch_secs: 10 })
        .run(&mut sink)?;
    Ok(sink)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Ingest { rows, zstd_level } => ingest(rows, zstd_level),
        Cmd::Seal { from, runs } => seal(&from, runs),
        Cmd::Batch { rows, runs } => batch(rows, runs),
        Cmd::Size { hours } => size(hours),
        Cmd::Layout { file } => layout(&file),
        Cmd::Query { dir, runs } => query(&dir, runs),
        Cmd::Capture { execs, connects, binds, queries, datagrams, runs } => capture(execs, connects, binds, queries, datagrams, runs),
        Cmd::Sustained { rates, secs } => sustained(&rates, secs),
        Cmd::Files { sources, opens, writes, runs } => files(sources, opens, writes, runs),
        Cmd::Identity { dir, runs, pods } => identity::run(&dir, runs, pods),
        Cmd::Lake { dir, runs } => lake::run(&dir, runs),
        Cmd::Privilege { setuid_calls, getpid_calls, runs } => privilege(setuid_calls, getpid_calls, runs),
    }
}

/// Live sealed segments per table: (segments, rows, bytes), from the catalog.
fn sealed_by_table(store: &SegmentStore) -> anyhow::Result<std::collections::BTreeMap<String, (u64, u64, u64)>> {
    let mut m: std::collections::BTreeMap<String, (u64, u64, u64)> = Default::default();
    for s in store.catalog().segments()? {
        let e = m.entry(s.table_name.clone()).or_default();
        e.0 += 1;
        e.1 += s.rows;
        e.2 += s.bytes;
    }
    Ok(m)
}

fn ingest(rows: u64, zstd_level: Option<i32>) -> anyhow::Result<()> {
    // Generate first (not timed): 500 activities/s yield about 2 rows each.
    let hours = rows as f64 / (500.0 * 2.0 * 3600.0);
    let sink = generate(hours, 200, 500.0)?;
    let n: u64 = sink.batches.iter().map(|(_, b)| b.num_rows() as u64).sum();
    let tmp = tempfile::tempdir()?;
    let mut cfg = StoreConfig::new(tmp.path(), "bench-node");
    if let Some(l) = zstd_level {
        cfg.zstd_level = l;
    }
    let level = cfg.zstd_level;
    let (mut store, _) = SegmentStore::open(cfg)?;
    let t = Instant::now();
    for (table, batch) in sink.batches {
        store.append(table, batch)?;
    }
    let catalog_dir = tmp.path().to_owned();
    store.close()?;
    let secs = t.elapsed().as_secs_f64();
    let (store, _) = SegmentStore::open(StoreConfig::new(&catalog_dir, "bench-node"))?;
    let by_table = sealed_by_table(&store)?;
    let segs: u64 = by_table.values().map(|v| v.0).sum();
    let bytes: u64 = by_table.values().map(|v| v.2).sum();
    println!("ingest: {n} rows ({hours:.2} h of synthetic history, 200 pods, 500 activities/s), zstd level {level} -> {segs} sealed segments, {bytes} bytes");
    println!("ingest: {:.2} s, {:.0} rows/s on one thread (target >= 500000)", secs, n as f64 / secs);
    Ok(())
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn batch(rows: usize, runs: usize) -> anyhow::Result<()> {
    anyhow::ensure!(rows >= 1 && runs >= 1, "--rows and --runs must be at least 1 (got {rows} and {runs})");
    use podtrail_recorder::rows::{ConnRow, PodIdentity, RowSet};
    use podtrail_recorder::decode::ConnRaw;
    use std::net::{IpAddr, Ipv4Addr};
    let pods: Vec<std::sync::Arc<PodIdentity>> = (0..50)
        .map(|i| {
            std::sync::Arc::new(PodIdentity {
                container_id: Some(format!("{i:064x}")),
                pod_uid: format!("6f1c2a3b-0000-4000-8000-{i:012x}"),
                pod_name: Some(format!("web-7d9c-{i:05}")),
                pod_namespace: Some("shop".into()),
            })
        })
        .collect();
    // What podtraild decodes for one connection on 127.0.0.1: connect (with
    // its process), accept, and both closes with byte counts.
    let make = |in_pods: bool| -> Vec<ConnRow> {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        (0..rows)
            .map(|i| {
                let conn = (i / 4) as u64;
                let (event, owner, bytes) = match i % 4 {
                    0 => ("connect", Some((4242, "podtrail-bench".into())), None),
                    1 => ("accept", None, None),
                    _ => ("close", None, Some((1000 + conn, 2000, 150_000))),
                };
                let port = 30000 + (conn % 30000) as u16;
                let (src, dst) = if i % 4 == 1 || i % 4 == 3 { ((lo, 8080), (lo, port)) } else { ((lo, port), (lo, 8080)) };
                let pod = in_pods.then(|| std::sync::Arc::clone(&pods[(conn % 50) as usize]));
                ConnRow {
                    time: 1_764_000_000_000_000_000 + i as i64 * 20_000,
                    exec_id: owner.as_ref().map(|_| 77),
                    identity: pod,
                    raw: ConnRaw {
                        event,
                        owner,
                        family: "ipv4",
                        netns: 4026531840,
                        time_boot_ns: i as u64 * 20_000,
                        cgroup_id: if in_pods { 9000 + conn % 50 } else { 4242 },
                        cookie: 1_000_000 + conn * 2 + (i % 2) as u64,
                        src,
                        dst,
                        orig_dst: (i % 4 == 0).then_some((lo, 8080)),
                        nat_dst: None,
                        bytes,
                        error: None,
                        dst_name: None,
                        server_name: None,
                        initiated: Some("local"),
                    },
                }
            })
            .collect()
    };
    println!("batch: {rows} net_conn rows per batch (a 127.0.0.1 connection storm, 4 rows per connection); thread CPU, median of {runs}");
    for (what, in_pods) in [("host cgroup", false), ("50 pods", true)] {
        let mut per_row = Vec::new();
        for _ in 0..runs {
            let mut b = RowSet::default();
            b.conn.rows = make(in_pods);
            // As the identity stage leaves them (the check of their key order
            // included: a storm of one cgroup is in order, 50 pods' rows are not).
            let t0 = thread_cpu();
            b.check_order();
            let out = podtrail_recorder::batch::build(&b, "bench-node")?;
            per_row.push((thread_cpu() - t0).as_secs_f64() * 1e9 / rows as f64);
            anyhow::ensure!(out.len() == 1 && out[0].1.num_rows() == rows, "net_conn batch of {rows} rows expected");
        }
        println!("batch: {what:<12} {:.0} ns/row", median_f(per_row));
    }
    Ok(())
}

fn seal(from: &Path, runs: usize) -> anyhow::Result<()> {
    anyhow::ensure!(runs >= 1, "--runs must be at least 1");
    use arrow::array::AsArray;
    use arrow::datatypes::TimestampNanosecondType;
    if !podtrail_schema::layout::catalog_path(from).exists() {
        // SAFETY: geteuid has no preconditions.
        anyhow::ensure!(unsafe { libc::geteuid() } == 0, "{} has no recording; making one runs podtraild and needs root", from.display());
        println!("seal: recording 12 s of connections on 127.0.0.1 into {} (once)", from.display());
        let rec = start_podtraild(from, &["--no-cri"])?;
        std::thread::sleep(Duration::from_secs(3));
        let made = connect_at_rate(20_000, 12);
        std::thread::sleep(Duration::from_millis(1500));
        stop_podtraild(rec)?;
        made?;
    }
    let catalog = podtrail_schema::catalog::Catalog::open_ro(&podtrail_schema::layout::catalog_path(from))?;
    let mut batches = Vec::new();
    for s in catalog.segments()?.iter().filter(|s| s.table_name == "net_conn") {
        let path = from.join(&s.path);
        let file = std::fs::File::open(&path).with_context(|| path.display().to_string())?;
        for b in parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
            batches.push(b?);
        }
    }
    anyhow::ensure!(!batches.is_empty(), "{}: no sealed net_conn segments", from.display());
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches)?;
    drop(batches);
    let time = all.column_by_name("time").context("time column")?;
    let order = arrow::compute::sort_to_indices(time, None, None)?;
    let all = arrow::compute::take_record_batch(&all, &order)?;
    let n = all.num_rows();
    let t = all.column_by_name("time").context("time")?.as_primitive::<TimestampNanosecondType>();
    let span_s = (t.value(n - 1) - t.value(0)) as f64 / 1e9;
    let step = podtrail_recorder::run::MAX_PENDING_ROWS;
    println!(
        "seal: {n} net_conn rows recorded over {span_s:.1} s from {}; batches of {step} rows, a flush after each, segments of {} MiB; thread CPU, median of {runs}",
        from.display(),
        podtrail_recorder::run::RECORDER_SEGMENT_BYTES >> 20
    );
    let (mut appends, mut flushes, mut totals, mut segs) = (vec![], vec![], vec![], 0);
    for _ in 0..runs {
        let tmp = tempfile::tempdir()?;
        let mut cfg = StoreConfig::new(tmp.path(), "bench-node");
        cfg.max_segment_bytes = podtrail_recorder::run::RECORDER_SEGMENT_BYTES;
        let (mut store, _) = SegmentStore::open(cfg)?;
        let (mut a, mut f) = (Duration::ZERO, Duration::ZERO);
        for off in (0..n).step_by(step) {
            let b = all.slice(off, step.min(n - off));
            // A fresh copy, as the recorder's batch builder would make (a slice
            // would share, and be counted with, the whole data set's buffers).
            let b = arrow::compute::take_record_batch(&b, &arrow::array::UInt32Array::from_iter_values(0..b.num_rows() as u32))?;
            let t0 = thread_cpu();
            store.append("net_conn", b)?;
            let t1 = thread_cpu();
            store.flush()?;
            f += thread_cpu() - t1;
            a += t1 - t0;
        }
        let t0 = thread_cpu();
        segs = store.stats().segments_sealed as usize;
        segs += store.close()?.len();
        a += thread_cpu() - t0;
        appends.push(a);
        flushes.push(f);
        totals.push(a + f);
    }
    let per_row = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "seal: {segs} segments; append {:.3} us/row, flush {:.3} us/row (each seals where it must), total {:.3} us/row = CPU s per million rows",
        per_row(median(appends)),
        per_row(median(flushes)),
        per_row(median(totals))
    );
    Ok(())
}

fn layout(path: &Path) -> anyhow::Result<()> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    let reader = SerializedFileReader::new(file).with_context(|| format!("{}: not a Parquet file", path.display()))?;
    let meta = reader.metadata();
    let rows = meta.file_metadata().num_rows().max(1) as f64;
    let file_bytes = std::fs::metadata(path)?.len();
    println!("layout: {} — {} rows, {} row groups, {file_bytes} bytes ({:.2} bytes/row)", path.display(), rows, meta.num_row_groups(), file_bytes as f64 / rows);
    println!("{:<22} {:>12} {:>12} {:>7} {:>10} {:>6} {:>6}", "column", "raw bytes", "zstd bytes", "ratio", "bytes/row", "stats", "bloom");
    let ncols = meta.file_metadata().schema_descr().num_columns();
    let (mut raw_all, mut comp_all) = (0i64, 0i64);
    for c in 0..ncols {
        let (mut raw, mut comp, mut stats, mut bloom) = (0i64, 0i64, false, 0i64);
        for rg in meta.row_groups() {
            let col = rg.column(c);
            raw += col.uncompressed_size();
            comp += col.compressed_size();
            stats |= col.statistics().is_some();
            bloom += col.bloom_filter_length().unwrap_or(0) as i64;
        }
        raw_all += raw;
        comp_all += comp;
        let name = meta.file_metadata().schema_descr().column(c).path().string();
        println!("{name:<22} {raw:>12} {comp:>12} {:>7.1} {:>10.2} {:>6} {:>6}", raw as f64 / comp.max(1) as f64, comp as f64 / rows, if stats { "yes" } else { "-" }, if bloom > 0 { bloom.to_string() } else { "-".into() });
    }
    println!("{:<22} {raw_all:>12} {comp_all:>12} {:>7.1} {:>10.2}", "all columns", raw_all as f64 / comp_all.max(1) as f64, comp_all as f64 / rows);
    Ok(())
}

fn size(hours: f64) -> anyhow::Result<()> {
    let sink = generate(hours, 200, 500.0)?;
    let tmp = tempfile::tempdir()?;
    let (mut store, _) = SegmentStore::open(StoreConfig::new(tmp.path(), "bench-node"))?;
    let mut json: std::collections::BTreeMap<&str, (u64, Vec<u8>)> = Default::default();
    for (table, batch) in &sink.batches {
        let e = json.entry(table).or_default();
        e.0 += batch.num_rows() as u64;
        let mut w = arrow::json::LineDelimitedWriter::new(&mut e.1);
        w.write(batch)?;
        w.finish()?;
    }
    for (table, batch) in sink.batches {
        Sink::append(&mut store, table, batch)?;
    }
    let dir = tmp.path().to_owned();
    store.close()?;
    let (store, _) = SegmentStore::open(StoreConfig::new(&dir, "bench-node"))?;
    let by_table = sealed_by_table(&store)?;
    println!("size: {hours} h of synthetic history, 200 pods, 500 activities/s");
    println!("{:<14} {:>10} {:>14} {:>14} {:>16}", "table", "rows", "parquet B/row", "json B/row", "json+zstd B/row");
    for (table, (rows, js)) in &json {
        let (_, sealed_rows, pq) = by_table.get(*table).copied().unwrap_or_default();
        anyhow::ensure!(sealed_rows == *rows, "{table}: {sealed_rows} rows sealed, {rows} generated");
        let z = zstd::encode_all(&js[..], 3)?.len();
        let target = match *table {
            "process_exec" => " (target <= 60)",
            "net_conn" => " (target <= 40)",
            _ => "",
        };
        println!(
            "{:<14} {:>10} {:>14.1} {:>14.1} {:>16.1}{target}",
            table,
            rows,
            pq as f64 / *rows as f64,
            js.len() as f64 / *rows as f64,
            z as f64 / *rows as f64
        );
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_cmd(runs: usize, mut cmd: impl FnMut() -> Command) -> anyhow::Result<(Duration, String)> {
    let mut times = Vec::new();
    let mut out = String::new();
    for _ in 0..runs {
        let mut c = cmd();
        let t = Instant::now();
        let o = c.output()?;
        times.push(t.elapsed());
        if !o.status.success() {
            bail!("{c:?} failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        out = String::from_utf8_lossy(&o.stdout).into_owned();
    }
    Ok((median(times), out))
}

/// Generate a synthetic history into `dir` unless it already holds one.
fn ensure_history(dir: &Path, cfg: SynthConfig) -> anyhow::Result<()> {
    if dir.join("catalog.db").exists() {
        return Ok(());
    }
    eprintln!("bench: generating {} h x {} pods x {} activities/s into {} (once)", cfg.hours, cfg.pods, cfg.events_per_sec, dir.display());
    let t = Instant::now();
    let (mut store, _) = SegmentStore::open(StoreConfig::new(dir, cfg.node.clone()))?;
    let c = Synth::new(cfg).run(&mut store)?;
    store.close()?;
    eprintln!("bench: {c:?} in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn query(dir: &Path, runs: usize) -> anyhow::Result<()> {
    ensure_history(dir, SynthConfig { hours: 24.0, pods: 200, events_per_sec: 500.0, seed: 42, start_ns: start_ns(), node: "bench-node".into(), batch_secs: 10 })?;
    let podtrail = podtrail_tests::bin("podtrail");
    let duckdb = which("duckdb").context("DuckDB CLI not found: run tests/setup.sh (installs PyPI duckdb-cli)")?;
    let d = dir.to_str().context("utf-8 dir")?;
    // A pod alive at 14:00 with the most rows, and an IP used at 14:03.
    let pick = Command::new(&podtrail)
        .args(["--data-dir", d, "sql", "--format", "csv", "SELECT pod_uid, src_ip FROM net_conn WHERE time >= '2026-11-16T14:00:00Z' AND time < '2026-11-16T14:05:00Z' AND pod_uid IS NOT NULL AND event = 'connect' ORDER BY time LIMIT 1"])
        .output()?;
    let picked = String::from_utf8(pick.stdout)?;
    let line = picked.lines().nth(1).with_context(|| format!("no pod found: {picked}"))?;
    let (pod, ip) = line.split_once(',').context("two columns")?;
    let rows_total: String = Command::new(&podtrail).args(["--data-dir", d, "sql", "--format", "csv", "SELECT count(*) FROM net_conn"]).output().map(|o| String::from_utf8_lossy(&o.stdout).lines().nth(1).unwrap_or("?").to_owned())?;
    let files = format!("{d}/segments/net_conn/*/*/*.parquet");
    let queries = [
        (
            "one pod, one hour (net_conn)",
            format!("SELECT time, event, src_ip, src_port, dst_ip, dst_port, bytes_sent FROM {{T}} WHERE pod_uid = '{pod}' AND time >= '2026-11-16T14:00:00Z' AND time < '2026-11-16T15:00:00Z' ORDER BY time"),
        ),
        (
            "who used IP X at T (+-5 min)",
            format!("SELECT pod_uid, pod_name, pod_namespace, min(time) AS first, max(time) AS last, count(*) AS n FROM {{T}} WHERE src_ip = '{ip}' AND time >= '2026-11-16T13:58:00Z' AND time <= '2026-11-16T14:08:00Z' GROUP BY pod_uid, pod_name, pod_namespace"),
        ),
    ];
    println!("query: {rows_total} net_conn rows, 24 h, fresh process per run, median of {runs}");
    println!("{:<32} {:>12} {:>12} {:>8}", "query", "podtrail ms", "duckdb ms", "rows");
    for (name, q) in queries {
        let ours = q.replace("{T}", "net_conn");
        let theirs = q.replace("{T}", &format!("read_parquet('{files}')")).replace("time >= '", "time >= TIMESTAMPTZ '").replace("time < '", "time < TIMESTAMPTZ '").replace("time <= '", "time <= TIMESTAMPTZ '");
        let (tp, out_p) = time_cmd(runs, || {
            let mut c = Command::new(&podtrail);
            c.args(["--data-dir", d, "sql", "--format", "csv", &ours]);
            c
        })?;
        let (td, out_d) = time_cmd(runs, || {
            let mut c = Command::new(&duckdb);
            c.args(["-csv", "-c", &theirs]);
            c
        })?;
        let rp = out_p.lines().count().saturating_sub(1);
        let rd = out_d.lines().count().saturating_sub(1);
        if rp != rd {
            bail!("{name}: podtrail returned {rp} rows, duckdb {rd}");
        }
        println!("{:<32} {:>12.1} {:>12.1} {:>8}", name, tp.as_secs_f64() * 1e3, td.as_secs_f64() * 1e3, rp);
    }
    Ok(())
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|p| Path::new(p).join(name)).find(|p| p.is_file())
}

const CONNECT_STORM: &str = r#"
import socket, sys, threading, time
n = int(sys.argv[1])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(1024)
def serve():
    for _ in range(n):
        c, _ = s.accept(); c.close()
t = threading.Thread(target=serve); t.start()
addr = s.getsockname(); t0 = time.perf_counter()
for _ in range(n):
    c = socket.create_connection(addr); c.close()
t.join(); print(time.perf_counter() - t0)
"#;

fn exec_storm(n: u64) -> anyhow::Result<f64> {
    let t = Instant::now();
    let st = Command::new("/bin/sh").args(["-c", &format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done")]).status()?;
    anyhow::ensure!(st.success(), "exec storm failed");
    Ok(t.elapsed().as_secs_f64())
}

fn connect_storm(n: u64) -> anyhow::Result<f64> {
    python_storm(CONNECT_STORM, n)
}

/// `n` UDP sockets, each bound to a free port of 127.0.0.1 and closed.
const BIND_STORM: &str = r#"
import socket, sys, time
n = int(sys.argv[1]); t0 = time.perf_counter()
for _ in range(n):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); u.close()
print(time.perf_counter() - t0)
"#;

/// `n` DNS queries over UDP, each for a distinct name, each answered (one A
/// record) by a resolver thread on 127.0.0.1:53 before the next is sent.
const DNS_STORM: &str = r#"
import socket, struct, sys, threading, time
n = int(sys.argv[1])
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(("127.0.0.1", 53))
def serve():
    for k in range(n):
        q, a = srv.recvfrom(512)
        srv.sendto(q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00" + q[12:] + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x1e\x00\x04" + bytes([10, 244, (k >> 8) & 255, k & 255]), a)
t = threading.Thread(target=serve); t.start()
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); t0 = time.perf_counter()
for i in range(n):
    name = "h%06d.ns%d.svc.cluster.local" % (i, i % 37)
    q = struct.pack(">HHHHHH", i & 0xffff, 0x0100, 1, 0, 0, 0) + b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0\0\1\0\1"
    c.sendto(q, ("127.0.0.1", 53)); c.recv(512)
t.join(); print(time.perf_counter() - t0)
"#;

/// `n` 64-byte datagrams to a UDP socket on 127.0.0.1 (not port 53), read
/// back in bursts of 256 so none is dropped: the cost the packet programs add
/// to UDP traffic that is not DNS (flow counting on both sockets).
const UDP_FLOOD: &str = r#"
import socket, sys, time
n = int(sys.argv[1])
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 0))
r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(r.getsockname())
msg = b"x" * 64; t0 = time.perf_counter(); sent = 0
while sent < n:
    burst = min(256, n - sent)
    for _ in range(burst):
        s.send(msg)
    for _ in range(burst):
        r.recv(64)
    sent += burst
print(time.perf_counter() - t0)
"#;

/// Seconds a python3 storm script took for `n` iterations (it prints them).
fn python_storm(script: &str, n: u64) -> anyhow::Result<f64> {
    let o = Command::new("python3").args(["-c", script, &n.to_string()]).output()?;
    anyhow::ensure!(o.status.success(), "storm: {}", String::from_utf8_lossy(&o.stderr));
    Ok(String::from_utf8(o.stdout)?.trim().parse()?)
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// (utime + stime seconds, peak RSS KiB) of a process, from /proc.
fn cpu_and_rss(pid: u32) -> anyhow::Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (f[11].parse::<f64>()? + f[12].parse::<f64>()?) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).context("VmHWM")?.parse()?;
    Ok((cpu, hwm))
}

fn vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).context("VmRSS")?.parse()?)
}

/// `rate` connections per second to a listener on 127.0.0.1 for `secs`, from
/// this process (accepted and closed on both sides). Returns how many were made.
fn connect_at_rate(rate: u64, secs: u64) -> anyhow::Result<u64> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while n < due {
            let c = std::net::TcpStream::connect(addr)?;
            drop(l.accept()?);
            drop(c);
            n += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(n)
}

fn sustained(rates: &str, secs: u64) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "the sustained benchmark runs podtraild and needs root");
    let rates: Vec<u64> = rates.split(',').map(|r| r.trim().parse().with_context(|| format!("--rates: {r:?} is not a number"))).collect::<anyhow::Result<_>>()?;
    println!("sustained: {secs} s of TCP connections on 127.0.0.1 per rate (4 net_conn rows each), podtraild --no-cri, RSS (VmRSS) sampled every 200 ms");
    println!("{:>12} {:>10} {:>10} {:>12} {:>10} {:>10} {:>8} {:>9}", "conns/s", "rows/s", "CPU s/M", "RSS idle", "RSS max", "VmHWM", "drops", "segments");
    for rate in rates {
        let tmp = tempfile::tempdir()?;
        let data = tmp.path().join("data");
        let rec = start_podtraild(&data, &["--no-cri"])?;
        std::thread::sleep(Duration::from_secs(3));
        let pid = rec.id();
        let idle = vm_rss_kib(pid)?;
        let (cpu0, _) = cpu_and_rss(pid)?;
        let load = std::thread::spawn(move || connect_at_rate(rate, secs));
        let mut max = 0;
        while !load.is_finished() {
            max = max.max(vm_rss_kib(pid)?);
            std::thread::sleep(Duration::from_millis(200));
        }
        let made = load.join().map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        std::thread::sleep(Duration::from_millis(1500));
        let (cpu1, hwm) = cpu_and_rss(pid)?;
        let summary = stop_podtraild(rec)?;
        let rows = summary["rows"]["net_conn"].as_u64().unwrap_or(0);
        let catalog = podtrail_schema::catalog::Catalog::open_ro(&podtrail_schema::layout::catalog_path(&data))?;
        let segments = catalog.segments()?.iter().filter(|s| s.table_name == "net_conn").count();
        println!(
            "{:>12} {:>10.0} {:>10.2} {:>9.0} MiB {:>6.0} MiB {:>6.0} MiB {:>8} {:>9}",
            made / secs,
            rows as f64 / secs as f64,
            (cpu1 - cpu0) / (rows as f64 / 1e6),
            idle as f64 / 1024.0,
            max as f64 / 1024.0,
            hwm as f64 / 1024.0,
            summary["kernel_drops"],
            segments
        );
    }
    Ok(())
}

/// `podtraild run` on `data` (warnings to stderr, the JSON summary piped).
fn start_podtraild(data: &std::path::Path, extra: &[&str]) -> anyhow::Result<std::process::Child> {
    Ok(Command::new(podtrail_tests::bin("podtraild"))
        .args(["--data-dir", data.to_str().context("utf-8")?, "run"])
        .args(extra)
        .env_remove("KUBERNETES_SERVICE_HOST") // no in-cluster API source in benchmarks
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()?)
}

/// SIGTERM, a clean exit required; its JSON summary.
fn stop_podtraild(rec: std::process::Child) -> anyhow::Result<serde_json::Value> {
    // SAFETY: kill(2) on the pid of the child we spawned.
    unsafe { libc::kill(rec.id() as libc::pid_t, libc::SIGTERM) };
    let out = rec.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "podtraild exited with {}", out.status);
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// ns per call of `podtrail-sysprobe loop WHAT N`.
fn sysprobe_loop(what: &str, n: u64) -> anyhow::Result<f64> {
    let out = Command::new(podtrail_tests::bin("podtrail-sysprobe")).args(["loop", what, &n.to_string()]).output()?;
    anyhow::ensure!(out.status.success(), "podtrail-sysprobe loop {what}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

fn privilege(setuid_calls: u64, getpid_calls: u64, runs: usize) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "the privilege benchmark runs podtraild and needs root");
    let measure = || -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
        // getpid first: later the recorder is busy storing the setuid storm,
        // and on 2 cores that would be measured as the getpid loop's cost.
        let (mut s, mut g) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            g.push(sysprobe_loop("getpid", getpid_calls)?);
        }
        for _ in 0..runs {
            s.push(sysprobe_loop("setuid", setuid_calls)?);
        }
        Ok((s, g))
    };
    let (base_s, base_g) = measure()?;
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let rec = start_podtraild(&data, &["--no-cri"])?;
    std::thread::sleep(Duration::from_secs(3));
    let (cpu0, _) = cpu_and_rss(rec.id())?;
    let (with_s, with_g) = measure()?;
    std::thread::sleep(Duration::from_millis(1500));
    let (cpu1, rss_kib) = cpu_and_rss(rec.id())?;
    let summary = stop_podtraild(rec)?;
    let q = |sql: &str| -> anyhow::Result<String> {
        let o = Command::new(podtrail_tests::bin("podtrail")).args(["--data-dir", data.to_str().context("utf-8")?, "sql", "--format", "csv", "--", sql]).output()?;
        anyhow::ensure!(o.status.success(), "podtrail sql: {}", String::from_utf8_lossy(&o.stderr));
        Ok(String::from_utf8(o.stdout)?.lines().nth(1).unwrap_or("").to_string())
    };
    let rows = q("SELECT count(*) FROM privilege WHERE kind = 'setuid' AND comm = 'podtrail-syspro'")?;
    let caps = q("SELECT sum(granted) FROM cap_usage WHERE capability = 'CAP_SETUID'")?;
    // The same untraced loop with the recorder told not to use syscall tracepoints.
    let rec = start_podtraild(&data, &["--no-cri", "--no-syscall-tracepoints"])?;
    std::thread::sleep(Duration::from_secs(3));
    let mut off_g = Vec::new();
    for _ in 0..runs {
        off_g.push(sysprobe_loop("getpid", getpid_calls)?);
    }
    stop_podtraild(rec)?;
    let og = median_f(off_g);
    let (bs, ws, bg, wg) = (median_f(base_s), median_f(with_s), median_f(base_g), median_f(with_g));
    println!("privilege: {runs} runs each, medians; setuid loop = {setuid_calls} x setuid(0) as root (traced: a privilege row and a CAP_SETUID count each), getpid loop = {getpid_calls} x getpid (not traced)");
    println!("{:<14} {:>18} {:>16} {:>8}", "workload", "without (ns/call)", "with (ns/call)", "ratio");
    println!("{:<14} {:>18.1} {:>16.1} {:>8.3}", "setuid loop", bs, ws, ws / bs);
    println!("{:<14} {:>18.1} {:>16.1} {:>8.3}", "getpid loop", bg, wg, wg / bg);
    println!("{:<14} {:>18.1} {:>16.1} {:>8.3}   (podtraild --no-syscall-tracepoints)", "getpid loop", bg, og, og / bg);
    println!(
        "podtraild: {rows} setuid rows stored for {} calls made while recording, CAP_SETUID granted {caps}, {} kernel drops, {:.2} CPU s, peak RSS {:.1} MiB",
        setuid_calls * runs as u64,
        summary["kernel_drops"],
        cpu1 - cpu0,
        rss_kib as f64 / 1024.0
    );
    Ok(())
}

fn capture(execs: u64, connects: u64, binds: u64, queries: u64, datagrams: u64, runs: usize) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "the capture benchmark runs podtraild and needs root");
    // (name, iterations, unit of an iteration, storm), run in this order.
    type Storm = Box<dyn Fn() -> anyhow::Result<f64>>;
    let workloads: Vec<(&str, u64, &str, Storm)> = vec![
        ("exec storm", execs, "execs", Box::new(move || exec_storm(execs))),
        ("connect storm", connects, "connections", Box::new(move || connect_storm(connects))),
        ("bind storm", binds, "binds", Box::new(move || python_storm(BIND_STORM, binds))),
        ("dns storm", queries, "queries", Box::new(move || python_storm(DNS_STORM, queries))),
        ("udp flood", datagrams, "datagrams", Box::new(move || python_storm(UDP_FLOOD, datagrams))),
    ];
    // Each run: every storm without the recorder, then the recorder started
    // and every storm again, then it stops. Alternating runs (not all runs
    // without, then all with) keeps this machine's drift over minutes out of
    // the ratios; the same pause follows each storm in both (a pause before a
    // storm changes its speed here: CPU frequency, caches).
    let pause = Duration::from_millis(1500);
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let mut without = vec![Vec::new(); workloads.len()];
    let mut with = vec![Vec::new(); workloads.len()];
    // The daemon's CPU while each workload ran and its rows were taken in
    // (the pause after each storm covers the pipeline's tick and flush).
    let mut cpu = vec![0.0; workloads.len()];
    let (mut busy, mut rss_kib, mut drops) = (0.0, 0u64, 0u64);
    let mut rows_by_table: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut ring_peaks = Vec::new();
    for _ in 0..runs {
        for (i, w) in workloads.iter().enumerate() {
            without[i].push((w.3)()?);
            std::thread::sleep(pause);
        }
        let rec = start_podtraild(&data, &[])?;
        // Wait until attached: the first exec after attach shows up in the hot tail.
        std::thread::sleep(Duration::from_secs(2));
        let t_with = Instant::now();
        for (i, w) in workloads.iter().enumerate() {
            let (c0, _) = cpu_and_rss(rec.id())?;
            with[i].push((w.3)()?);
            std::thread::sleep(pause);
            cpu[i] += cpu_and_rss(rec.id())?.0 - c0;
        }
        busy += t_with.elapsed().as_secs_f64();
        rss_kib = rss_kib.max(cpu_and_rss(rec.id())?.1);
        let summary = stop_podtraild(rec)?;
        for (t, n) in summary["rows"].as_object().into_iter().flatten() {
            *rows_by_table.entry(t.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
        drops += summary["kernel_drops"].as_u64().unwrap_or(0);
        ring_peaks.push(summary["ringbuf_fill_peak"].clone());
    }
    let rows = |t: &str| rows_by_table.get(t).copied().unwrap_or(0);
    let events = ["process_exec", "process_exit", "net_conn", "net_listen", "dns"].iter().map(|k| rows(k)).sum::<u64>();
    println!(
        "capture: {runs} runs each, medians; exec storm = {execs} x /bin/true from sh, connect storm = {connects} TCP connections on 127.0.0.1, \
         bind storm = {binds} UDP sockets bound to 127.0.0.1 and closed, dns storm = {queries} UDP DNS queries answered by a resolver on 127.0.0.1:53 \
         (distinct names), udp flood = {datagrams} 64-byte datagrams to a UDP socket on 127.0.0.1 (python3)"
    );
    println!("{:<16} {:>14} {:>14} {:>8} {:>14}", "workload", "without (/s)", "with (/s)", "ratio", "podtraild CPU s");
    for (i, (name, n, unit, _)) in workloads.iter().enumerate() {
        let (b, w) = (median_f(without[i].clone()), median_f(with[i].clone()));
        let per_m = cpu[i] / ((*n * runs as u64) as f64 / 1e6);
        println!("{name:<16} {:>14.0} {:>14.0} {:>8.3} {per_m:>14.2} per M {unit}", *n as f64 / b, *n as f64 / w, b / w);
    }
    let dns_bytes = dir_bytes(&data.join("segments").join("dns"));
    println!(
        "dns rows: {} ({} queries sent), {dns_bytes} bytes of sealed dns segments -> {:.1} bytes per row",
        rows("dns"),
        queries * runs as u64,
        dns_bytes as f64 / rows("dns").max(1) as f64
    );
    println!(
        "podtraild: {events} rows ({:.0} events/s over the {busy:.1} s of storms), {drops} kernel drops, peak RSS {:.1} MiB",
        events as f64 / busy,
        rss_kib as f64 / 1024.0
    );
    println!("podtraild: ring buffer fill peak per run (fraction of its size unread at a reader wakeup): {}", serde_json::Value::Array(ring_peaks));
    Ok(())
}

const OPEN_STORM: &str = r#"
import os, sys, time
n, path = int(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
for _ in range(n):
    os.close(os.open(path, os.O_RDONLY))
print(time.perf_counter() - t0)
"#;

const WRITE_STORM: &str = r#"
import os, sys, time
n, d = int(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
for i in range(n):
    os.close(os.open(f"{d}/f{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
print(time.perf_counter() - t0)
"#;

/// Seconds `cmd` took (it must succeed).
fn timed(cmd: &mut Command) -> anyhow::Result<f64> {
    let t = Instant::now();
    let o = cmd.output()?;
    anyhow::ensure!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    Ok(t.elapsed().as_secs_f64())
}

fn files(sources: u64, opens: u64, writes: u64, runs: usize) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "the files benchmark runs podtraild and needs root");
    // The workloads write into memory (/dev/shm, a tmpfs, when there is one):
    // on this machine's disk an untar takes 3.5 to 9.7 s from one run to the
    // next, which drowns the recorder's cost. The recorder's data dir stays on disk.
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() { tempfile::tempdir_in(shm)? } else { tempfile::tempdir()? };
    let root = std::fs::canonicalize(tmp.path())?;
    let disk = tempfile::tempdir()?;
    let data = disk.path().join("data");
    let (watched, work) = (root.join("watched"), root.join("work"));
    std::fs::create_dir_all(&work)?;
    let tar = root.join("src.tar");
    anyhow::ensure!(Command::new("tar").args(["-C", "/usr", "-cf", tar.to_str().unwrap(), "include"]).status()?.success(), "tar of /usr/include");
    let tree_files = Command::new("tar").args(["-tf", tar.to_str().unwrap()]).output()?.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    let csrc = root.join("csrc");
    std::fs::create_dir_all(&csrc)?;
    for i in 0..sources {
        std::fs::write(csrc.join(format!("f{i}.c")), format!("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\nint f{i}(const char *s) {{ char b[64]; snprintf(b, sizeof b, \"%s{i}\", s); return (int)strlen(b) + atoi(s); }}\n"))?;
    }
    let plain = root.join("plain.txt");
    std::fs::write(&plain, "x")?;
    let watch = format!("{}/", watched.display());
    type Work<'a> = Box<dyn Fn() -> anyhow::Result<f64> + 'a>;
    let untar: Work = Box::new(|| {
        let out = work.join("tree");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out)?;
        let t = timed(Command::new("tar").args(["-xf", tar.to_str().unwrap(), "-C", out.to_str().unwrap()]))?;
        std::fs::remove_dir_all(&out)?;
        Ok(t)
    });
    let compile: Work = Box::new(|| {
        let srcs: Vec<String> = (0..sources).map(|i| format!("f{i}.c")).collect();
        let t = timed(Command::new("cc").arg("-c").args(&srcs).current_dir(&csrc))?;
        for i in 0..sources {
            std::fs::remove_file(csrc.join(format!("f{i}.o")))?;
        }
        Ok(t)
    });
    let open_storm: Work = Box::new(|| {
        let o = Command::new("python3").args(["-c", OPEN_STORM, &opens.to_string(), plain.to_str().unwrap()]).output()?;
        anyhow::ensure!(o.status.success(), "open storm: {}", String::from_utf8_lossy(&o.stderr));
        Ok(String::from_utf8(o.stdout)?.trim().parse()?)
    });
    let write_storm: Work = Box::new(|| {
        let _ = std::fs::remove_dir_all(&watched);
        std::fs::create_dir_all(&watched)?;
        let o = Command::new("python3").args(["-c", WRITE_STORM, &writes.to_string(), watched.to_str().unwrap()]).output()?;
        anyhow::ensure!(o.status.success(), "write storm: {}", String::from_utf8_lossy(&o.stderr));
        Ok(String::from_utf8(o.stdout)?.trim().parse()?)
    });
    let workloads: Vec<(&str, u64, &str, Work)> = vec![
        ("untar", tree_files as u64, "files", untar),
        ("compile", sources, "sources", compile),
        ("open storm", opens, "opens", open_storm),
        ("watched writes", writes, "writes", write_storm),
    ];
    // Alternating runs, the same pause after each workload (see `capture`).
    let pause = Duration::from_millis(1500);
    let mut without = vec![Vec::new(); workloads.len()];
    let mut with = vec![Vec::new(); workloads.len()];
    let mut cpu = vec![0.0; workloads.len()];
    let mut rows_by_workload = vec![0u64; workloads.len()];
    let (mut stored, mut lost) = (0u64, 0u64);
    for run in 0..runs {
        for (i, w) in workloads.iter().enumerate() {
            without[i].push((w.3)()?);
            std::thread::sleep(pause);
        }
        let run_data = data.join(format!("run{run}"));
        let rec = start_podtraild(&run_data, &["--no-cri", "--no-kube", "--watch", &watch])?;
        std::thread::sleep(Duration::from_secs(3));
        for (i, w) in workloads.iter().enumerate() {
            let (c0, _) = cpu_and_rss(rec.id())?;
            with[i].push((w.3)()?);
            std::thread::sleep(pause);
            cpu[i] += cpu_and_rss(rec.id())?.0 - c0;
        }
        stop_podtraild(rec)?;
        let count = |q: &str| -> anyhow::Result<u64> {
            let o = Command::new(podtrail_tests::bin("podtrail")).args(["--data-dir", run_data.to_str().unwrap(), "sql", "--format", "csv", q]).output()?;
            anyhow::ensure!(o.status.success(), "podtrail sql {q}: {}", String::from_utf8_lossy(&o.stderr));
            Ok(String::from_utf8(o.stdout)?.lines().nth(1).unwrap_or("0").trim().parse().unwrap_or(0))
        };
        let storm_rows = count(&format!("SELECT count(*) FROM file WHERE path LIKE '{}/f%' AND op = 'open'", watched.display()))?;
        let storm_lost = count("SELECT coalesce(sum(count), 0) FROM podtrail_loss WHERE table_name = 'file'")?;
        rows_by_workload[3] += storm_rows;
        rows_by_workload[0] += count("SELECT count(*) FROM file WHERE path LIKE '%/work/tree/%'")?;
        rows_by_workload[1] += count("SELECT count(*) FROM file WHERE comm IN ('cc', 'cc1', 'as', 'collect2', 'ld')")?;
        rows_by_workload[2] += count(&format!("SELECT count(*) FROM file WHERE path = '{}'", plain.display()))?;
        stored += storm_rows;
        lost += storm_lost;
        let _ = std::fs::remove_dir_all(&run_data);
    }
    println!(
        "files: {runs} runs each, medians; untar = tar -xf of /usr/include ({tree_files} entries), compile = cc -c of {sources} C files, \
         open storm = {opens} read-only opens of an unwatched file (python3), watched writes = {writes} files created under a --watch directory (python3); \
         file syscalls traced with tracepoints (this host refuses fentry); work files in {}",
        root.display()
    );
    println!("{:<16} {:>12} {:>12} {:>8} {:>12} {:>14}", "workload", "without (s)", "with (s)", "ratio", "file rows", "podtraild CPU s");
    for (i, (name, _, _, _)) in workloads.iter().enumerate() {
        let (b, w) = (median_f(without[i].clone()), median_f(with[i].clone()));
        println!("{name:<16} {b:>12.3} {w:>12.3} {:>8.3} {:>12} {:>14.2}", b / w, rows_by_workload[i], cpu[i]);
    }
    let per_m = cpu[3] / (rows_by_workload[3].max(1) as f64 / 1e6);
    println!("podtraild: {per_m:.2} CPU s per million file rows (watched writes)");
    println!("watched writes: {} made, {stored} rows stored + {lost} counted lost = {}", writes * runs as u64, stored + lost);
    Ok(())
}

/// Bytes of the files under `dir`, recursively (0 when it does not exist).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().map(|e| if e.path().is_dir() { dir_bytes(&e.path()) } else { e.metadata().map(|m| m.len()).unwrap_or(0) }).sum()
}
