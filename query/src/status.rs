//! `podtrail status`: what history a data dir holds, per table, what it does not
//! cover, and its loss. Computed with SQL over the engine's own system tables
//! (dogfooding them), plus two looks at the data dir itself: whether a recorder
//! holds its lock now, and the free space of its filesystem.

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, TimestampNanosecondType, UInt32Type};
use chrono::{DateTime, Utc};
use podtrail_schema::layout;
use podtrail_schema::tables::EVENT_TABLES;

use crate::{Engine, QueryError};

/// A recorder run's heartbeat older than this while it holds the lock: it is
/// alive but cannot write (its flushes fail).
const STALE_FLUSH_NS: i64 = 10_000_000_000;

#[derive(Debug, Default, serde::Serialize)]
pub struct TableStatus {
    pub table: String,
    pub segments: u64,
    pub rows_sealed: u64,
    pub rows_hot: u64,
    pub bytes: u64,
    pub time_min: Option<String>,
    pub time_max: Option<String>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct LossStatus {
    pub source: String,
    pub table: Option<String>,
    /// Events lost where the count is known.
    pub count: u64,
    /// Loss rows whose count cannot be known (e.g. a crashed run's unflushed rows).
    pub of_unknown_count: u64,
    pub time_from: String,
    pub time_to: String,
}

/// The recorder as the data dir shows it.
#[derive(Debug, Default, serde::Serialize)]
pub struct RecorderStatus {
    /// `recording`, `recording, but its writes fail`, `stopped` (its last run
    /// ended cleanly or failed), `stopped without shutting down` (killed or
    /// crashed; the next start records that window as loss), or `never ran`.
    pub state: String,
    pub run_id: Option<i64>,
    pub pid: Option<u32>,
    pub since: Option<String>,
    /// Its latest durable flush (events up to it are on disk).
    pub last_flush: Option<String>,
    pub ended_at: Option<String>,
}

/// A window no recorder run covered: events then were not recorded.
#[derive(Debug, Default, serde::Serialize)]
pub struct Gap {
    pub from: String,
    /// None: up to now (no recorder is running).
    pub to: Option<String>,
    pub seconds: f64,
    pub why: String,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct DiskStatus {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Status {
    pub recorder: RecorderStatus,
    pub tables: Vec<TableStatus>,
    pub expired_segments: u64,
    /// Windows between recorder runs (and after the last one, when none runs).
    pub not_recorded: Vec<Gap>,
    pub loss: Vec<LossStatus>,
    /// Programs the latest recorder run could not attach (or was told not
    /// to): `program (attach point): reason`. Their events are not recorded.
    pub unavailable: Vec<String>,
    /// Per `--ship-to` target: segments shipped, and sealed ones still waiting.
    pub shipping: Vec<ShippingStatus>,
    /// The data dir's filesystem.
    pub disk: Option<DiskStatus>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct ShippingStatus {
    pub target: String,
    pub shipped: u64,
    pub waiting: u64,
}

fn rfc3339(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One recorder run, as `podtrail_runs` has it.
struct Run {
    id: i64,
    pid: u32,
    started_at: i64,
    last_flush: Option<i64>,
    ended_at: Option<i64>,
    end_state: String,
}

pub async fn status(engine: &Engine, data_dir: &Path) -> Result<Status, QueryError> {
    let now = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let mut st = Status::default();
    let (_, seg) = engine
        .sql(
            "SELECT table_name, count(*), CAST(sum(rows) AS BIGINT), CAST(sum(bytes) AS BIGINT), min(time_min), max(time_max) \
             FROM podtrail_segments WHERE state = 'sealed' GROUP BY table_name",
        )
        .await?;
    for t in EVENT_TABLES {
        let mut ts = TableStatus { table: t.name.into(), ..Default::default() };
        for b in &seg {
            for i in 0..b.num_rows() {
                if b.column(0).as_string::<i32>().value(i) != t.name {
                    continue;
                }
                ts.segments = b.column(1).as_primitive::<Int64Type>().value(i) as u64;
                ts.rows_sealed = b.column(2).as_primitive::<Int64Type>().value(i) as u64;
                ts.bytes = b.column(3).as_primitive::<Int64Type>().value(i) as u64;
                ts.time_min = Some(rfc3339(b.column(4).as_primitive::<TimestampNanosecondType>().value(i)));
                ts.time_max = Some(rfc3339(b.column(5).as_primitive::<TimestampNanosecondType>().value(i)));
            }
        }
        ts.rows_hot = engine.hot_rows(t.name);
        st.tables.push(ts);
    }
    let (_, exp) = engine.sql("SELECT count(*) FROM podtrail_segments WHERE state = 'expired'").await?;
    st.expired_segments = exp.first().map(|b| b.column(0).as_primitive::<Int64Type>().value(0) as u64).unwrap_or(0);
    let (_, loss) = engine
        .sql(
            "SELECT source, table_name, CAST(coalesce(sum(count), 0) AS BIGINT), CAST(count(*) - count(count) AS BIGINT), min(time_from), max(time_to) \
             FROM podtrail_loss GROUP BY source, table_name ORDER BY source, table_name",
        )
        .await?;
    for b in &loss {
        for i in 0..b.num_rows() {
            let table = b.column(1).as_string::<i32>();
            st.loss.push(LossStatus {
                source: b.column(0).as_string::<i32>().value(i).to_owned(),
                table: (!table.is_null(i)).then(|| table.value(i).to_owned()),
                count: b.column(2).as_primitive::<Int64Type>().value(i) as u64,
                of_unknown_count: b.column(3).as_primitive::<Int64Type>().value(i) as u64,
                time_from: rfc3339(b.column(4).as_primitive::<TimestampNanosecondType>().value(i)),
                time_to: rfc3339(b.column(5).as_primitive::<TimestampNanosecondType>().value(i)),
            });
        }
    }
    let runs = runs(engine).await?;
    let holder = layout::writer_holding_lock(data_dir);
    st.recorder = recorder_status(runs.last(), holder, now);
    st.not_recorded = gaps(&runs, holder.is_some(), now);
    st.unavailable = engine.unavailable_programs()?;
    st.shipping = engine.shipping_state()?.into_iter().map(|(target, shipped, waiting)| ShippingStatus { target, shipped, waiting }).collect();
    st.disk = layout::filesystem_space(data_dir).map(|(free_bytes, total_bytes)| DiskStatus { free_bytes, total_bytes });
    Ok(st)
}

async fn runs(engine: &Engine) -> Result<Vec<Run>, QueryError> {
    let (_, batches) = engine.sql("SELECT run_id, pid, started_at, last_flush, ended_at, end_state FROM podtrail_runs ORDER BY run_id").await?;
    let mut out = Vec::new();
    for b in &batches {
        let ts = |c: usize, i: usize| {
            let a = b.column(c).as_primitive::<TimestampNanosecondType>();
            a.is_valid(i).then(|| a.value(i))
        };
        for i in 0..b.num_rows() {
            out.push(Run {
                id: b.column(0).as_primitive::<Int64Type>().value(i),
                pid: b.column(1).as_primitive::<UInt32Type>().value(i),
                started_at: ts(2, i).unwrap_or(0),
                last_flush: ts(3, i),
                ended_at: ts(4, i),
                end_state: b.column(5).as_string::<i32>().value(i).to_owned(),
            });
        }
    }
    Ok(out)
}

fn recorder_status(last: Option<&Run>, holder: Option<Option<u32>>, now: i64) -> RecorderStatus {
    let Some(r) = last else {
        return RecorderStatus { state: if holder.is_some() { "starting".into() } else { "never ran".into() }, ..Default::default() };
    };
    let state = match (r.end_state.as_str(), holder.is_some()) {
        ("running", true) if r.last_flush.is_none_or(|t| now - t > STALE_FLUSH_NS) => "recording, but its writes fail (no durable flush for over 10 s: disk full? see podtrail_loss source disk and its log)",
        ("running", true) => "recording",
        ("running", false) => "stopped without shutting down (killed or crashed); its next start records the window as loss",
        ("unclean", _) => "stopped without shutting down (killed or crashed)",
        ("failed", _) => "stopped, with rows it could not store (see podtrail_loss)",
        _ => "stopped",
    };
    RecorderStatus {
        state: state.into(),
        run_id: Some(r.id),
        pid: Some(r.pid),
        since: Some(rfc3339(r.started_at)),
        last_flush: r.last_flush.map(rfc3339),
        ended_at: r.ended_at.map(rfc3339),
    }
}

/// When each run stopped recording: its end, or for one that never ended, its
/// last durable flush.
fn run_end(r: &Run) -> i64 {
    r.ended_at.or(r.last_flush).unwrap_or(r.started_at)
}

fn gaps(runs: &[Run], running: bool, now: i64) -> Vec<Gap> {
    let gap = |from: i64, to: Option<i64>, why: String| Gap { from: rfc3339(from), to: to.map(rfc3339), seconds: (to.unwrap_or(now) - from).max(0) as f64 / 1e9, why };
    let mut out = Vec::new();
    for w in runs.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let end = run_end(a);
        if b.started_at > end {
            let how = match a.end_state.as_str() {
                "unclean" | "running" => "ended without shutting down",
                "failed" => "stopped with rows it could not store",
                _ => "was stopped",
            };
            out.push(gap(end, Some(b.started_at), format!("run {} {how}; run {} started", a.id, b.id)));
        }
    }
    if let Some(last) = runs.last()
        && !(running && last.end_state == "running")
    {
        out.push(gap(run_end(last), None, format!("no recorder running since run {} stopped", last.id)));
    }
    out
}

fn bytes_text(b: u64) -> String {
    const G: f64 = (1u64 << 30) as f64;
    const M: f64 = (1u64 << 20) as f64;
    if b as f64 >= G { format!("{:.1} GiB", b as f64 / G) } else { format!("{:.1} MiB", b as f64 / M) }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.recorder;
        match (r.run_id, &r.since) {
            (Some(id), Some(since)) => {
                write!(f, "recorder: {} (run {id}, pid {}, since {since}", r.state, r.pid.unwrap_or(0))?;
                if let Some(t) = &r.last_flush {
                    write!(f, ", last durable flush {t}")?;
                }
                if let Some(t) = &r.ended_at {
                    write!(f, ", ended {t}")?;
                }
                writeln!(f, ")")?;
            }
            _ => writeln!(f, "recorder: {}", r.state)?,
        }
        if let Some(d) = &self.disk {
            writeln!(f, "disk: {} free of {}", bytes_text(d.free_bytes), bytes_text(d.total_bytes))?;
        }
        let from = self.tables.iter().filter_map(|t| t.time_min.clone()).min();
        let to = self.tables.iter().filter_map(|t| t.time_max.clone()).max();
        match (from, to) {
            (Some(a), Some(b)) => writeln!(f, "sealed history: {a} .. {b}")?,
            _ => writeln!(f, "sealed history: none yet")?,
        }
        writeln!(f, "{:<14} {:>9} {:>14} {:>10} {:>14} {:>10}", "table", "segments", "rows sealed", "rows hot", "bytes", "bytes/row")?;
        for t in &self.tables {
            let per_row = if t.rows_sealed > 0 { format!("{:.1}", t.bytes as f64 / t.rows_sealed as f64) } else { "-".into() };
            writeln!(f, "{:<14} {:>9} {:>14} {:>10} {:>14} {:>10}", t.table, t.segments, t.rows_sealed, t.rows_hot, t.bytes, per_row)?;
        }
        if self.expired_segments > 0 {
            writeln!(f, "expired by retention: {} segments", self.expired_segments)?;
        }
        if !self.not_recorded.is_empty() {
            writeln!(f, "not recorded (no recorder running):")?;
            for g in &self.not_recorded {
                writeln!(f, "  {} .. {}  ({:.1} s; {})", g.from, g.to.as_deref().unwrap_or("now"), g.seconds, g.why)?;
            }
        }
        if !self.unavailable.is_empty() {
            writeln!(f, "not recorded by the latest recorder run (kernel feature missing or turned off):")?;
            for p in &self.unavailable {
                writeln!(f, "  {p}")?;
            }
        }
        for s in &self.shipping {
            writeln!(f, "shipped to {}: {} segments, {} sealed segments waiting", s.target, s.shipped, s.waiting)?;
        }
        if self.loss.is_empty() {
            writeln!(f, "loss: none recorded")?;
        } else {
            writeln!(f, "loss:")?;
            for l in &self.loss {
                let unknown = match l.of_unknown_count {
                    0 => String::new(),
                    1 => " + 1 loss of unknown size".into(),
                    n => format!(" + {n} losses of unknown size"),
                };
                writeln!(f, "  {:<16} {:<14} {:>10} events{unknown}  {} .. {}", l.source, l.table.as_deref().unwrap_or("-"), l.count, l.time_from, l.time_to)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: i64, started: i64, last_flush: Option<i64>, ended: Option<i64>, state: &str) -> Run {
        Run { id, pid: 100 + id as u32, started_at: started, last_flush, ended_at: ended, end_state: state.into() }
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn windows_between_runs_and_after_the_last_are_not_recorded() {
        let runs = [run(1, 10 * S, Some(19 * S), Some(20 * S), "clean"), run(2, 25 * S, Some(30 * S), Some(30 * S), "unclean"), run(3, 31 * S, Some(40 * S), None, "running")];
        // Run 3 holds the lock: covered up to now.
        let g = gaps(&runs, true, 50 * S);
        assert_eq!(g.iter().map(|g| (g.from.clone(), g.to.clone(), g.seconds)).collect::<Vec<_>>(), vec![
            (rfc3339(20 * S), Some(rfc3339(25 * S)), 5.0),
            (rfc3339(30 * S), Some(rfc3339(31 * S)), 1.0),
        ]);
        assert!(g[1].why.contains("without shutting down"), "{}", g[1].why);
        // Nobody holds the lock: run 3 died after its last flush; not recorded since.
        let g = gaps(&runs, false, 50 * S);
        assert_eq!((g[2].from.clone(), g[2].to.clone(), g[2].seconds), (rfc3339(40 * S), None, 10.0));
        assert!(recorder_status(runs.last(), None, 50 * S).state.starts_with("stopped without shutting down"));
    }

    #[test]
    fn a_recorder_holding_the_lock_without_recent_flushes_cannot_write() {
        let r = run(1, 0, Some(5 * S), None, "running");
        assert_eq!(recorder_status(Some(&r), Some(Some(101)), 6 * S).state, "recording");
        assert!(recorder_status(Some(&r), Some(Some(101)), 30 * S).state.contains("writes fail"));
        assert_eq!(recorder_status(None, None, 0).state, "never ran");
    }
}
