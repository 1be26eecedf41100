//! `podtrail status`: what history a data dir holds, per table, and its loss.
//! Computed with SQL over the engine's own system tables (dogfooding them).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, TimestampNanosecondType};
use chrono::{DateTime, Utc};
use podtrail_schema::tables::EVENT_TABLES;

use crate::{Engine, QueryError};

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
    pub count: u64,
    pub time_from: String,
    pub time_to: String,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Status {
    pub tables: Vec<TableStatus>,
    pub expired_segments: u64,
    pub loss: Vec<LossStatus>,
    /// Programs the latest recorder run could not attach (or was told not
    /// to): `program (attach point): reason`. Their events are not recorded.
    pub unavailable: Vec<String>,
    /// Per `--ship-to` target: segments shipped, and sealed ones still waiting.
    pub shipping: Vec<ShippingStatus>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct ShippingStatus {
    pub target: String,
    pub shipped: u64,
    pub waiting: u64,
}

fn rfc3339(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub async fn status(engine: &Engine) -> Result<Status, QueryError> {
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
        .sql("SELECT source, table_name, CAST(sum(count) AS BIGINT), min(time_from), max(time_to) FROM podtrail_loss GROUP BY source, table_name ORDER BY source, table_name")
        .await?;
    for b in &loss {
        for i in 0..b.num_rows() {
            let table = b.column(1).as_string::<i32>();
            st.loss.push(LossStatus {
                source: b.column(0).as_string::<i32>().value(i).to_owned(),
                table: (!table.is_null(i)).then(|| table.value(i).to_owned()),
                count: b.column(2).as_primitive::<Int64Type>().value(i) as u64,
                time_from: rfc3339(b.column(3).as_primitive::<TimestampNanosecondType>().value(i)),
                time_to: rfc3339(b.column(4).as_primitive::<TimestampNanosecondType>().value(i)),
            });
        }
    }
    st.unavailable = engine.unavailable_programs()?;
    st.shipping = engine.shipping_state()?.into_iter().map(|(target, shipped, waiting)| ShippingStatus { target, shipped, waiting }).collect();
    Ok(st)
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
                writeln!(f, "  {:<16} {:<14} {:>10} events  {} .. {}", l.source, l.table.as_deref().unwrap_or("-"), l.count, l.time_from, l.time_to)?;
            }
        }
        Ok(())
    }
}
