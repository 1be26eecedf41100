//! `podtrail-synth`: write a realistic synthetic history into a data dir through
//! the recorder's segment store. Prints one JSON object: rows written per table.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::record_batch::RecordBatch;
use clap::Parser;
use podtrail_recorder::segments::{ContainerRecord, IpOwnerRecord, PodRecord};
use podtrail_recorder::{SegmentStore, StoreConfig};
use podtrail_tests::synth::{Sink, Synth, SynthConfig};

/// Generate a synthetic podtrail history (deterministic per seed).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[arg(long)]
    data_dir: PathBuf,
    /// Hours of event time to generate.
    #[arg(long, default_value_t = 1.0)]
    hours: f64,
    /// Concurrent pods on the node (each is replaced by a new pod when deleted).
    #[arg(long, default_value_t = 20)]
    pods: usize,
    /// Activities per second across the node (each yields 1-4 rows).
    #[arg(long, default_value_t = 100.0)]
    events_per_sec: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Event time of the first row (RFC 3339). Default: 2026-11-16T00:00:00Z;
    /// with --realtime, now.
    #[arg(long)]
    start: Option<String>,
    #[arg(long, default_value = "synth-node-1")]
    node: String,
    /// Pace event time to the wall clock and flush the hot tail every second, as
    /// the live recorder does (for crash tests).
    #[arg(long)]
    realtime: bool,
    /// Seal segments after this many seconds (event time, and wall time).
    #[arg(long, default_value_t = 600)]
    segment_age_secs: u64,
    /// Retention budget in bytes for sealed segments.
    #[arg(long)]
    disk_budget: Option<u64>,
    /// Write the small incident history that sql-examples/ are checked against
    /// (tests/src/fixture.rs) instead of a generated one; other options are ignored.
    #[arg(long)]
    incident: bool,
    /// Write a short history with one or more events of every kind the
    /// incident history lacks (every privilege kind, refused connects, every
    /// DNS status, every file operation, ...): what the OCSF conformance check
    /// exports (tests/tests/lake_e2e.rs). Other options are ignored.
    #[arg(long, conflicts_with = "incident")]
    every_kind: bool,
}

/// Paces to the wall clock and flushes each second, reporting what was flushed.
struct Realtime {
    store: SegmentStore,
    wall0: Instant,
    event0: i64,
    appended: std::collections::BTreeMap<&'static str, u64>,
}

impl Sink for Realtime {
    fn append(&mut self, table: &'static str, batch: RecordBatch) -> anyhow::Result<()> {
        *self.appended.entry(table).or_default() += batch.num_rows() as u64;
        Sink::append(&mut self.store, table, batch)
    }
    fn identity(&mut self, p: &[PodRecord], c: &[ContainerRecord], i: &[IpOwnerRecord]) -> anyhow::Result<()> {
        Sink::identity(&mut self.store, p, c, i)
    }
    fn tick(&mut self, event_time_ns: i64) -> anyhow::Result<()> {
        let due = Duration::from_nanos((event_time_ns - self.event0).max(0) as u64);
        if let Some(wait) = due.checked_sub(self.wall0.elapsed()) {
            std::thread::sleep(wait);
        }
        self.store.flush()?;
        self.store.seal_aged()?;
        eprintln!("{}", serde_json::json!({ "flushed": self.appended }));
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let start_ns = match &a.start {
        Some(s) => chrono_parse(s)?,
        None if a.realtime => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as i64,
        None => chrono_parse("2026-11-16T00:00:00Z")?,
    };
    if a.every_kind {
        podtrail_tests::fixture::write_every_kind(&a.data_dir).with_context(|| format!("writing the every-kind history into {}", a.data_dir.display()))?;
        println!("{{\"every_kind\": \"{}\"}}", a.data_dir.display());
        return Ok(());
    }
    if a.incident {
        podtrail_tests::fixture::write(&a.data_dir).with_context(|| format!("writing the incident history into {}", a.data_dir.display()))?;
        println!("{{\"incident\": \"{}\"}}", a.data_dir.display());
        return Ok(());
    }
    let mut cfg = StoreConfig::new(&a.data_dir, &a.node);
    cfg.max_segment_age = Duration::from_secs(a.segment_age_secs);
    cfg.disk_budget_bytes = a.disk_budget;
    let (store, _) = SegmentStore::open(cfg).with_context(|| format!("opening {}", a.data_dir.display()))?;
    let synth = Synth::new(SynthConfig {
        hours: a.hours,
        pods: a.pods,
        events_per_sec: a.events_per_sec,
        seed: a.seed,
        start_ns,
        node: a.node.clone(),
        batch_secs: if a.realtime { 1 } else { 10 },
    });
    let counts = if a.realtime {
        let mut sink = Realtime { store, wall0: Instant::now(), event0: start_ns, appended: Default::default() };
        let c = synth.run(&mut sink)?;
        sink.store.close()?;
        c
    } else {
        let mut store = store;
        let c = synth.run(&mut store)?;
        store.close()?;
        c
    };
    println!("{}", serde_json::to_string(&counts)?);
    Ok(())
}

fn chrono_parse(s: &str) -> anyhow::Result<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(s).with_context(|| format!("--start {s:?} is not RFC 3339"))?;
    t.timestamp_nanos_opt().context("--start out of range")
}
