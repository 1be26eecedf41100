//! "Who owned this IP at T": the `who_owned(ip, time)` table function's logic and
//! `podtrail who-owned IP --at TIME`.
//!
//! In: the `ip_owners` intervals (catalog). Out: the owners whose interval holds T
//! (`valid_from <= T < valid_to`, open intervals still running), and when there is
//! none, the nearest owners before and after T so the user sees the gap.

use std::net::IpAddr;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::TimestampNanosecondType;
use arrow::record_batch::RecordBatch;

use crate::timeexpr::format_ns;
use crate::{Engine, QueryError};

/// Canonical text of an address (what the store keeps), or a clear error.
pub fn canonical_ip(s: &str) -> Result<String, String> {
    s.trim().parse::<IpAddr>().map(|ip| ip.to_string()).map_err(|_| format!("'{s}' is not an IP address (expected e.g. 10.244.1.7 or fd00::7)"))
}

/// Rows of `owners` (the `ip_owners` table) for `ip` whose interval holds `t`.
pub fn owners_at(owners: &RecordBatch, ip: &str, t: i64) -> Result<RecordBatch, arrow::error::ArrowError> {
    rows_where(owners, |ip_i, from, to| ip_i == ip && from <= t && to.is_none_or(|to| t < to))
}

fn rows_where(owners: &RecordBatch, keep: impl Fn(&str, i64, Option<i64>) -> bool) -> Result<RecordBatch, arrow::error::ArrowError> {
    let col = |name: &str| owners.column(owners.schema().index_of(name).expect("ip_owners column"));
    let ips = col("ip").as_string::<i32>().clone();
    let from = col("valid_from").as_primitive::<TimestampNanosecondType>().clone();
    let to = col("valid_to").as_primitive::<TimestampNanosecondType>().clone();
    let mask: BooleanArray = (0..owners.num_rows()).map(|i| Some(keep(ips.value(i), from.value(i), to.is_valid(i).then(|| to.value(i))))).collect();
    filter_record_batch(owners, &mask)
}

#[derive(Debug, serde::Serialize)]
pub struct Owner {
    pub pod_uid: String,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub node: String,
    pub valid_from: String,
    pub valid_to: Option<String>,
    pub source: String,
}

#[derive(Debug, serde::Serialize)]
pub struct Answer {
    pub ip: String,
    pub at: String,
    pub owners: Vec<Owner>,
    /// When nobody owned it at `at`: the last ownership that ended at or before it.
    pub before: Option<Owner>,
    /// ... and the first that started after it.
    pub after: Option<Owner>,
}

fn owners_of(batches: &[RecordBatch]) -> Vec<Owner> {
    let mut out = Vec::new();
    for b in batches {
        let s = |n: &str| b.column(b.schema().index_of(n).expect("column")).as_string::<i32>().clone();
        let t = |n: &str| b.column(b.schema().index_of(n).expect("column")).as_primitive::<TimestampNanosecondType>().clone();
        let (uid, ns, name, node, source) = (s("pod_uid"), s("pod_namespace"), s("pod_name"), s("node"), s("source"));
        let (from, to) = (t("valid_from"), t("valid_to"));
        for i in 0..b.num_rows() {
            let opt = |a: &arrow::array::StringArray| a.is_valid(i).then(|| a.value(i).to_string());
            out.push(Owner {
                pod_uid: uid.value(i).into(),
                pod_namespace: opt(&ns),
                pod_name: opt(&name),
                node: node.value(i).into(),
                valid_from: format_ns(from.value(i)),
                valid_to: to.is_valid(i).then(|| format_ns(to.value(i))),
                source: source.value(i).into(),
            });
        }
    }
    out
}

/// Answer "who owned `ip` at `t`" from the engine's catalog tables.
pub async fn who_owned(engine: &Engine, ip: &str, t: i64) -> Result<Answer, QueryError> {
    let ip = canonical_ip(ip).map_err(QueryError::BadQuery)?;
    let at = format_ns(t);
    let cols = "pod_uid, pod_namespace, pod_name, node, valid_from, valid_to, source";
    let (_, now) = engine.sql(&format!("SELECT {cols} FROM who_owned('{ip}', '{at}') ORDER BY valid_from")).await?;
    let owners = owners_of(&now);
    let (mut before, mut after) = (None, None);
    if owners.is_empty() {
        let (_, b) = engine
            .sql(&format!("SELECT {cols} FROM ip_owners WHERE ip = '{ip}' AND valid_to <= TIMESTAMP '{at}' ORDER BY valid_to DESC LIMIT 1"))
            .await?;
        before = owners_of(&b).pop();
        let (_, a) = engine.sql(&format!("SELECT {cols} FROM ip_owners WHERE ip = '{ip}' AND valid_from > TIMESTAMP '{at}' ORDER BY valid_from LIMIT 1")).await?;
        after = owners_of(&a).pop();
    }
    Ok(Answer { ip, at, owners, before, after })
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.pod_namespace, &self.pod_name) {
            (Some(ns), Some(name)) => write!(f, "pod {ns}/{name} (uid {})", self.pod_uid)?,
            _ => write!(f, "pod uid {} (name unknown: no metadata source had it)", self.pod_uid)?,
        }
        write!(f, " on node {}, from {} to {} (source {})", self.node, self.valid_from, self.valid_to.as_deref().unwrap_or("now (still owned)"), self.source)
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.owners.is_empty() {
            writeln!(f, "{} at {} was owned by:", self.ip, self.at)?;
            for o in &self.owners {
                writeln!(f, "  {o}")?;
            }
            return Ok(());
        }
        writeln!(f, "nobody is recorded owning {} at {}", self.ip, self.at)?;
        match (&self.before, &self.after) {
            (None, None) => writeln!(f, "  no pod is recorded with {} at any time in this history", self.ip),
            (b, a) => {
                if let Some(b) = b {
                    writeln!(f, "  before: {b}")?;
                }
                if let Some(a) = a {
                    writeln!(f, "  after:  {a}")?;
                }
                Ok(())
            }
        }
    }
}
