//! `podtrail-bench`: prints the store's figures (BENCHMARKS.md). Not a test: this
//! machine is shared and noisy, so figures are printed, never asserted.
//!
//!   podtrail-bench ingest [--rows N]        segment-store ingest rate, one thread
//!   podtrail-bench size                     bytes per row: Parquet vs JSON lines vs zstd JSON lines
//!   podtrail-bench query [--dir D]          fresh-process query latency, podtrail vs DuckDB CLI

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
    /// Bytes on disk per row for each event table, against JSON lines.
    Size {
        #[arg(long, default_value_t = 2.0)]
        hours: f64,
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
        Cmd::Size { hours } => size(hours),
        Cmd::Query { dir, runs } => query(&dir, runs),
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

fn query(dir: &Path, runs: usize) -> anyhow::Result<()> {
    if !dir.join("catalog.db").exists() {
        eprintln!("bench: generating 24 h x 200 pods x 500 activities/s into {} (once)", dir.display());
        let t = Instant::now();
        let (mut store, _) = SegmentStore::open(StoreConfig::new(dir, "bench-node"))?;
        let c = Synth::new(SynthConfig { hours: 24.0, pods: 200, events_per_sec: 500.0, seed: 42, start_ns: start_ns(), node: "bench-node".into(), batch_secs: 10 })
            .run(&mut store)?;
        store.close()?;
        eprintln!("bench: {c:?} in {:.0} s", t.elapsed().as_secs_f64());
    }
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
