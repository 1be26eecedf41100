//! "Who owned this IP at T": the `who_owned(ip, time)` table function's logic and
//! `podtrail who-owned IP --at TIME`, pure functions over the `ip_owners` rows.
//!
//! In: the `ip_owners` intervals (catalog). Out: the owners whose interval holds T
//! (`valid_from <= T < valid_to`, open intervals still running), and when there is
//! none, the nearest owners before and after T so the user sees the gap.

use std::net::IpAddr;

use arrow::array::{Array, AsArray, BooleanArray, StringArray, TimestampNanosecondArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::TimestampNanosecondType;
use arrow::record_batch::RecordBatch;

use crate::timeexpr::format_ns;
use crate::QueryError;

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

/// "Who owned `ip` at `t`", over the rows of `ip_owners`: the owners whose
/// interval holds `t` (by start), and when there is none, the last ownership that
/// ended at or before `t` and the first that started after it.
pub fn answer(owners: &RecordBatch, ip: &str, t: i64) -> Result<Answer, QueryError> {
    let ip = canonical_ip(ip).map_err(QueryError::BadQuery)?;
    let rows = Rows::of(owners).map_err(|e| QueryError::Runtime(format!("ip_owners: {e}")))?;
    let of_ip: Vec<usize> = (0..owners.num_rows()).filter(|&i| rows.ip.value(i) == ip).collect();
    let mut now: Vec<usize> = of_ip.iter().copied().filter(|&i| rows.from(i) <= t && rows.to(i).is_none_or(|to| t < to)).collect();
    now.sort_by_key(|&i| rows.from(i));
    let (mut before, mut after) = (None, None);
    if now.is_empty() {
        before = of_ip.iter().copied().filter(|&i| rows.to(i).is_some_and(|to| to <= t)).max_by_key(|&i| rows.to(i)).map(|i| rows.owner(i));
        after = of_ip.iter().copied().filter(|&i| rows.from(i) > t).min_by_key(|&i| rows.from(i)).map(|i| rows.owner(i));
    }
    Ok(Answer { ip, at: format_ns(t), owners: now.into_iter().map(|i| rows.owner(i)).collect(), before, after })
}

/// The columns of `ip_owners` an answer reads.
struct Rows {
    ip: StringArray,
    pod_uid: StringArray,
    pod_namespace: StringArray,
    pod_name: StringArray,
    node: StringArray,
    source: StringArray,
    valid_from: TimestampNanosecondArray,
    valid_to: TimestampNanosecondArray,
}

impl Rows {
    fn of(b: &RecordBatch) -> Result<Rows, String> {
        let col = |n: &str| b.schema().index_of(n).map(|i| b.column(i).clone()).map_err(|e| e.to_string());
        let s = |n: &str| -> Result<StringArray, String> { col(n)?.as_string_opt::<i32>().cloned().ok_or_else(|| format!("column {n} is not a string")) };
        let t = |n: &str| -> Result<TimestampNanosecondArray, String> {
            col(n)?.as_primitive_opt::<TimestampNanosecondType>().cloned().ok_or_else(|| format!("column {n} is not a timestamp"))
        };
        Ok(Rows {
            ip: s("ip")?,
            pod_uid: s("pod_uid")?,
            pod_namespace: s("pod_namespace")?,
            pod_name: s("pod_name")?,
            node: s("node")?,
            source: s("source")?,
            valid_from: t("valid_from")?,
            valid_to: t("valid_to")?,
        })
    }

    fn from(&self, i: usize) -> i64 {
        self.valid_from.value(i)
    }

    /// None: still owned.
    fn to(&self, i: usize) -> Option<i64> {
        self.valid_to.is_valid(i).then(|| self.valid_to.value(i))
    }

    fn owner(&self, i: usize) -> Owner {
        let opt = |a: &StringArray| a.is_valid(i).then(|| a.value(i).to_string());
        Owner {
            pod_uid: self.pod_uid.value(i).into(),
            pod_namespace: opt(&self.pod_namespace),
            pod_name: opt(&self.pod_name),
            node: self.node.value(i).into(),
            valid_from: format_ns(self.from(i)),
            valid_to: self.to(i).map(format_ns),
            source: self.source.value(i).into(),
        }
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringArray, TimestampNanosecondArray};
    use podtrail_schema::tables::IP_OWNERS;

    use super::*;

    /// An `ip_owners` row: (ip, pod_uid, valid_from, valid_to).
    type OwnerRow<'a> = (&'a str, &'a str, i64, Option<i64>);

    fn owners(rows: &[OwnerRow]) -> RecordBatch {
        let s = |f: fn(&OwnerRow) -> Option<String>| Arc::new(rows.iter().map(f).collect::<StringArray>()) as ArrayRef;
        let cols: Vec<ArrayRef> = vec![
            s(|r| Some(r.0.to_owned())),
            s(|r| Some(r.1.to_owned())),
            s(|_| Some("ns".to_owned())),
            s(|r| Some(format!("pod-{}", r.1))),
            s(|_| Some("node-1".to_owned())),
            Arc::new(TimestampNanosecondArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>()).with_timezone("UTC")),
            Arc::new(TimestampNanosecondArray::from(rows.iter().map(|r| r.3).collect::<Vec<_>>()).with_timezone("UTC")),
            s(|_| Some("cri".to_owned())),
        ];
        RecordBatch::try_new(IP_OWNERS.arrow_schema(), cols).unwrap()
    }

    #[test]
    fn owners_at_t_by_start_else_the_nearest_before_and_after() {
        let b = owners(&[
            ("10.244.0.7", "c", 300, None),
            ("10.244.0.7", "a", 100, Some(200)),
            ("10.244.0.7", "a0", 50, Some(150)),
            ("10.244.0.8", "x", 0, None),
            ("10.244.0.7", "b", 120, Some(250)),
        ]);
        let uids = |a: &Answer| a.owners.iter().map(|o| o.pod_uid.clone()).collect::<Vec<_>>();
        // Three overlapping intervals hold 130: all, earliest start first.
        let a = answer(&b, "10.244.0.7", 130).unwrap();
        assert_eq!(uids(&a), ["a0", "a", "b"]);
        assert!(a.before.is_none() && a.after.is_none());
        // valid_to is exclusive: at 250 nobody; before is b (ended at 250), after is c.
        let a = answer(&b, " 10.244.0.7", 250).unwrap();
        assert!(a.owners.is_empty());
        assert_eq!(a.before.as_ref().map(|o| o.pod_uid.as_str()), Some("b"));
        assert_eq!(a.after.as_ref().map(|o| o.pod_uid.as_str()), Some("c"));
        // An open interval holds every later time.
        assert_eq!(uids(&answer(&b, "10.244.0.7", i64::MAX).unwrap()), ["c"]);
        // Never owned: no owners, no neighbours; not an address: a clear error.
        let a = answer(&b, "10.244.0.9", 130).unwrap();
        assert!(a.owners.is_empty() && a.before.is_none() && a.after.is_none());
        assert!(matches!(answer(&b, "10.244.0", 1), Err(QueryError::BadQuery(m)) if m.contains("not an IP address")));
    }
}
