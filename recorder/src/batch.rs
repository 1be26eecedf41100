//! `batch` stage: released rows to per-table Arrow batches.
//!
//! In: rows the identity stage released (stamped, and named or done waiting).
//! Out: one `RecordBatch` per table with rows, with exactly the schema of
//! `podtrail-schema`, in the order a sealed segment keeps them, for the
//! `segments` stage. Columns are placed by their schema field name: a row
//! definition that builds a column the schema lacks, or leaves one out, fails
//! its batch with that name. The one place event batches are built: the live
//! recorder and `podtrail-synth` both go through it.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder, TimestampNanosecondBuilder, UInt64Builder};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use podtrail_schema::tables::TableDef;

use crate::columns::repeated;
use crate::rows::{PodIdentity, ReadRows, Row, RowSet, Table, in_key_order};

/// Every table of `rows` that has rows, as (table name, batch).
pub fn build(rows: &RowSet, node: &str) -> Result<Vec<(&'static str, RecordBatch)>, ArrowError> {
    struct Build<'a> {
        node: &'a str,
        out: Result<Vec<(&'static str, RecordBatch)>, ArrowError>,
    }
    impl ReadRows for Build<'_> {
        fn read<R: Row>(&mut self, t: &Table<R>) {
            if t.is_empty() {
                return;
            }
            if let Ok(out) = &mut self.out {
                match table_batch(t, self.node) {
                    Ok(b) => out.push((R::TABLE.name, b)),
                    Err(e) => self.out = Err(e),
                }
            }
        }
    }
    let mut b = Build { node, out: Ok(Vec::new()) };
    rows.read(&mut b);
    b.out
}

/// One table's rows as a batch, sorted into the sealed key order unless they
/// are known to be in it already.
fn table_batch<R: Row>(t: &Table<R>, node: &str) -> Result<RecordBatch, ArrowError> {
    let ordered: Vec<&R> = if t.in_key_order() { t.rows.iter().collect() } else { in_key_order(&t.rows) };
    let mut keys = Keys::with_capacity(ordered.len());
    for r in &ordered {
        keys.push(r.time(), r.cgroup_id(), r.identity().map(|i| &**i));
    }
    let mut named = keys.finish(node);
    named.extend(R::columns(&ordered));
    place(R::TABLE, named)
}

/// The named columns in `def`'s schema order.
fn place(def: &TableDef, named: Vec<(&'static str, ArrayRef)>) -> Result<RecordBatch, ArrowError> {
    let schema = def.arrow_schema();
    let mut cols: Vec<Option<ArrayRef>> = vec![None; schema.fields().len()];
    for (name, col) in named {
        let i = schema.index_of(name).map_err(|_| ArrowError::SchemaError(format!("{}: a row definition builds column {name}, which the table does not have", def.name)))?;
        if cols[i].replace(col).is_some() {
            return Err(ArrowError::SchemaError(format!("{}: column {name} built twice", def.name)));
        }
    }
    let cols = cols
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| c.ok_or_else(|| ArrowError::SchemaError(format!("{}: no row definition builds column {}", def.name, f.name()))))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(&schema), cols)
}

/// Builders of the columns every event row starts with (time, node, cgroup and
/// the pod identity the row was stamped with).
struct Keys<'a> {
    time: TimestampNanosecondBuilder,
    cgroup: UInt64Builder,
    container_id: StringBuilder,
    pod_uid: StringBuilder,
    pod_name: StringBuilder,
    pod_namespace: StringBuilder,
    /// The identity of the last rows pushed and how many in a row had it (rows
    /// come sorted by pod): its four columns are appended once per run.
    run: (Option<&'a PodIdentity>, usize),
}

impl<'a> Keys<'a> {
    pub fn new() -> Self {
        Keys::with_capacity(0)
    }
    /// Sized for `rows` rows up front: no regrowth while a storm's flush is built.
    pub fn with_capacity(rows: usize) -> Self {
        let text = || StringBuilder::with_capacity(rows, rows * 8);
        Keys {
            time: TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            cgroup: UInt64Builder::with_capacity(rows),
            container_id: text(),
            pod_uid: text(),
            pod_name: text(),
            pod_namespace: text(),
            run: (None, 0),
        }
    }
    pub fn push(&mut self, time: i64, cgroup: u64, identity: Option<&'a PodIdentity>) {
        self.time.append_value(time);
        self.cgroup.append_value(cgroup);
        let same = match (self.run.0, identity) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        if !same {
            self.end_run();
            self.run.0 = identity;
        }
        self.run.1 += 1;
    }
    /// Append the current run's identity columns.
    fn end_run(&mut self) {
        let (identity, n) = std::mem::take(&mut self.run);
        if n == 0 {
            return;
        }
        fn text(b: &mut StringBuilder, value: Option<&str>, n: usize) {
            match value {
                Some(v) => b.append_value_n(v, n),
                None => b.append_nulls(n),
            }
        }
        text(&mut self.container_id, identity.and_then(|i| i.container_id.as_deref()), n);
        text(&mut self.pod_uid, identity.map(|i| i.pod_uid.as_str()), n);
        text(&mut self.pod_name, identity.and_then(|i| i.pod_name.as_deref()), n);
        text(&mut self.pod_namespace, identity.and_then(|i| i.pod_namespace.as_deref()), n);
    }
    /// The key columns, each with its name: time, node (the same on every
    /// row), cgroup_id, container_id, pod_uid, pod_name, pod_namespace.
    pub fn finish(mut self, node: &str) -> Vec<(&'static str, ArrayRef)> {
        self.end_run();
        let n = arrow::array::ArrayBuilder::len(&self.time);
        vec![
            ("time", Arc::new(self.time.finish()) as ArrayRef),
            ("node", repeated(node, n)),
            ("cgroup_id", Arc::new(self.cgroup.finish())),
            ("container_id", Arc::new(self.container_id.finish())),
            ("pod_uid", Arc::new(self.pod_uid.finish())),
            ("pod_name", Arc::new(self.pod_name.finish())),
            ("pod_namespace", Arc::new(self.pod_namespace.finish())),
        ]
    }
}


impl Default for Keys<'_> {
    fn default() -> Self {
        Keys::new()
    }
}

#[cfg(test)]
mod tests {
    use super::build;
    use crate::decode::ExitRaw;
    use crate::rows::{ExitRow, PodIdentity, RowSet, Table};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{TimestampNanosecondType, UInt32Type, UInt64Type};
    use std::net::IpAddr;
    use std::sync::Arc;

    #[test]
    fn batches_are_built_in_the_sealed_key_order_with_every_row() {
        let pod = |uid: &str| Some(Arc::new(PodIdentity { pod_uid: uid.into(), container_id: Some(format!("c-{uid}")), pod_name: Some(format!("name-{uid}")), pod_namespace: None }));
        let (b, a) = (pod("pod-b"), pod("pod-a"));
        // Arrival order: pods interleaved, the host's rows between, one pod's rows
        // in two cgroups, and a pod's later row before its earlier one.
        let rows = [(50, &b, 7), (10, &None, 1), (40, &a, 9), (30, &b, 7), (20, &a, 8), (60, &None, 1), (5, &a, 9), (35, &pod("pod-b"), 7)];
        let mut set = RowSet::default();
        for (i, (time, identity, cgroup_id)) in rows.iter().enumerate() {
            let raw = ExitRaw { pid: i as u32, time_boot_ns: 0, cgroup_id: *cgroup_id, exit_code: 0, signal: 0, comm: "x".into() };
            set.exit.push(ExitRow { time: *time, raw, exec_id: None, duration_ns: None, identity: (*identity).clone() });
        }
        let out = build(&set, "n1").unwrap();
        let batch = &out[0].1;
        let uid = batch.column_by_name("pod_uid").unwrap().as_string::<i32>();
        let cg = batch.column_by_name("cgroup_id").unwrap().as_primitive::<UInt64Type>();
        let time = batch.column_by_name("time").unwrap().as_primitive::<TimestampNanosecondType>();
        let pid = batch.column_by_name("pid").unwrap().as_primitive::<UInt32Type>();
        let node = batch.column_by_name("node").unwrap().as_string::<i32>();
        assert_eq!((node.len(), node.null_count()), (rows.len(), 0));
        assert!(node.iter().all(|n| n == Some("n1")), "{node:?}");
        // The pod columns are appended once per run of rows of one identity:
        // each row still has its own pod's values, host rows nulls.
        let text = |name: &str| -> Vec<Option<String>> { batch.column_by_name(name).unwrap().as_string::<i32>().iter().map(|v| v.map(str::to_owned)).collect() };
        let of_uid = |f: &dyn Fn(&str) -> String| -> Vec<Option<String>> { uid.iter().map(|u| u.map(f)).collect() };
        assert_eq!(text("container_id"), of_uid(&|u| format!("c-{u}")));
        assert_eq!(text("pod_name"), of_uid(&|u| format!("name-{u}")));
        assert_eq!(text("pod_namespace"), vec![None; rows.len()]);
        let got: Vec<(Option<&str>, u64, i64, u32)> = (0..batch.num_rows()).map(|i| (uid.is_valid(i).then(|| uid.value(i)), cg.value(i), time.value(i), pid.value(i))).collect();
        assert_eq!(
            got,
            vec![
                (None, 1, 10, 1),
                (None, 1, 60, 5),
                (Some("pod-a"), 8, 20, 4),
                (Some("pod-a"), 9, 5, 6),
                (Some("pod-a"), 9, 40, 2),
                (Some("pod-b"), 7, 30, 3),
                (Some("pod-b"), 7, 35, 7),
                (Some("pod-b"), 7, 50, 0),
            ]
        );
    }

    #[test]
    fn net_conn_rows_keep_every_value_and_every_null() {
        use crate::decode::ConnRaw;
        use crate::rows::ConnRow;
        use arrow::datatypes::UInt16Type;
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let connect = ConnRaw {
            event: "connect",
            owner: Some((77, "curl".into())),
            family: "ipv4",
            netns: 4026532001,
            time_boot_ns: 0,
            cgroup_id: 5,
            cookie: 900,
            src: (ip("10.244.1.2"), 40000),
            dst: (ip("10.244.2.2"), 8080),
            orig_dst: Some((ip("10.244.100.10"), 80)),
            nat_dst: Some((ip("10.244.2.2"), 8080)),
            bytes: None,
            error: None,
            dst_name: None,
            server_name: None,
            initiated: Some("local"),
        };
        let close = ConnRaw { event: "close", owner: None, orig_dst: None, nat_dst: None, bytes: Some((11, 22, 33)), initiated: None, ..connect.clone() };
        let fail = ConnRaw { event: "fail", family: "ipv6", src: (ip("fd00::1"), 0), dst: (ip("fd00::2"), 443), orig_dst: None, nat_dst: None, error: Some("ECONNREFUSED".into()), ..connect.clone() };
        let mut set = RowSet::default();
        for (i, raw) in [connect, close, fail].into_iter().enumerate() {
            set.conn.push(ConnRow { time: 100 + i as i64, exec_id: (i != 1).then_some(9), identity: None, raw });
        }
        let out = build(&set, "n1").unwrap();
        let b = &out[0].1;
        let text = |name: &str| -> Vec<Option<&str>> { b.column_by_name(name).unwrap().as_string::<i32>().iter().collect() };
        let u16s = |name: &str| -> Vec<Option<u16>> { b.column_by_name(name).unwrap().as_primitive::<UInt16Type>().iter().collect() };
        let u64s = |name: &str| -> Vec<Option<u64>> { b.column_by_name(name).unwrap().as_primitive::<UInt64Type>().iter().collect() };
        assert_eq!(text("event"), [Some("connect"), Some("close"), Some("fail")]);
        assert_eq!(text("comm"), [Some("curl"), None, Some("curl")]);
        assert_eq!(b.column_by_name("pid").unwrap().as_primitive::<UInt32Type>().iter().collect::<Vec<_>>(), [Some(77), None, Some(77)]);
        assert_eq!(u64s("exec_id"), [Some(9), None, Some(9)]);
        assert_eq!(text("protocol"), [Some("tcp"); 3]);
        assert_eq!(text("family"), [Some("ipv4"), Some("ipv4"), Some("ipv6")]);
        assert_eq!(text("src_ip"), [Some("10.244.1.2"), Some("10.244.1.2"), Some("fd00::1")]);
        assert_eq!(u16s("src_port"), [Some(40000), Some(40000), Some(0)]);
        assert_eq!(text("dst_ip"), [Some("10.244.2.2"), Some("10.244.2.2"), Some("fd00::2")]);
        assert_eq!(u16s("dst_port"), [Some(8080), Some(8080), Some(443)]);
        assert_eq!(text("orig_dst_ip"), [Some("10.244.100.10"), None, None]);
        assert_eq!(u16s("orig_dst_port"), [Some(80), None, None]);
        assert_eq!(text("nat_dst_ip"), [Some("10.244.2.2"), None, None]);
        assert_eq!(u16s("nat_dst_port"), [Some(8080), None, None]);
        assert_eq!(u64s("socket_cookie"), [Some(900); 3]);
        assert_eq!(u64s("bytes_sent"), [None, Some(11), None]);
        assert_eq!(u64s("bytes_received"), [None, Some(22), None]);
        assert_eq!(u64s("duration_ns"), [None, Some(33), None]);
        assert_eq!(text("error"), [None, None, Some("ECONNREFUSED")]);
        assert_eq!(text("pod_uid"), [None; 3]);
    }

    /// Connection rows at (time, pod, cgroup), stamped, as a pass of the pipeline.
    fn conns(rows: &[(i64, &Option<Arc<PodIdentity>>, u64)]) -> Table<crate::rows::ConnRow> {
        use crate::decode::ConnRaw;
        use crate::rows::ConnRow;
        let mut t = Table::default();
        for &(time, identity, cgroup_id) in rows {
            t.push(ConnRow { time, raw: ConnRaw::localhost(time as u64, cgroup_id, None), exec_id: None, identity: identity.clone() });
        }
        t
    }

    /// (pod_uid, cgroup_id, time) of a net_conn batch's rows.
    fn conn_keys(batch: &arrow::record_batch::RecordBatch) -> Vec<(Option<String>, u64, i64)> {
        let uid = batch.column_by_name("pod_uid").unwrap().as_string::<i32>();
        let cg = batch.column_by_name("cgroup_id").unwrap().as_primitive::<UInt64Type>();
        let time = batch.column_by_name("time").unwrap().as_primitive::<TimestampNanosecondType>();
        (0..batch.num_rows()).map(|i| (uid.is_valid(i).then(|| uid.value(i).to_owned()), cg.value(i), time.value(i))).collect()
    }

    #[test]
    fn rows_known_in_order_skip_the_sort_and_others_are_sorted() {
        let pod = |uid: &str| Some(Arc::new(PodIdentity { pod_uid: uid.into(), container_id: None, pod_name: None, pod_namespace: None }));
        let (a, a2, b) = (pod("pod-a"), pod("pod-a"), pod("pod-b"));
        let mut set = RowSet::default();
        // Two passes in key order: host rows, then pod-a (a second Arc of the
        // same pod, as after its name arrived), then pod-b.
        set.conn.append(&mut conns(&[(5, &None, 1), (9, &None, 1), (3, &a, 7)]), true);
        set.conn.append(&mut conns(&[(4, &a2, 7), (6, &a, 8), (1, &b, 2)]), true);
        assert!(set.conn.in_key_order());
        let out = build(&set.release(None), "n1").unwrap();
        let want = |v: &[(Option<&str>, u64, i64)]| -> Vec<(Option<String>, u64, i64)> { v.iter().map(|(u, c, t)| (u.map(str::to_owned), *c, *t)).collect() };
        assert_eq!(conn_keys(&out[0].1), want(&[(None, 1, 5), (None, 1, 9), (Some("pod-a"), 7, 3), (Some("pod-a"), 7, 4), (Some("pod-a"), 8, 6), (Some("pod-b"), 2, 1)]));
        assert!(set.conn.is_empty());
        // A pass that goes back in time (pod-a after pod-b; then an earlier
        // host row): the run stops at the first row out of order, and stays
        // stopped; the batch is sorted instead.
        set.conn.append(&mut conns(&[(10, &b, 2), (11, &a, 7), (12, &b, 2)]), true);
        assert!(!set.conn.in_key_order());
        set.conn.append(&mut conns(&[(13, &b, 2), (2, &None, 1)]), true);
        let out = build(&set.release(None), "n1").unwrap();
        assert_eq!(conn_keys(&out[0].1), want(&[(None, 1, 2), (Some("pod-a"), 7, 11), (Some("pod-b"), 2, 10), (Some("pod-b"), 2, 12), (Some("pod-b"), 2, 13)]));
        // Rows held for a later flush: taken and kept rows both stay in order.
        set.conn.append(&mut conns(&[(1, &None, 1), (2, &a, 7), (3, &b, 2)]), true);
        let hold = |p: Option<&PodIdentity>| p.is_some_and(|p| p.pod_uid == "pod-b");
        let out = build(&set.release(Some(&hold)), "n1").unwrap();
        assert_eq!(conn_keys(&out[0].1), want(&[(None, 1, 1), (Some("pod-a"), 7, 2)]));
        assert_eq!(set.conn.len(), 1);
        assert!(set.conn.in_key_order());
        set.conn.append(&mut conns(&[(4, &b, 2)]), true);
        assert!(set.conn.in_key_order());
    }

    #[test]
    fn columns_are_placed_by_name_and_a_missing_or_unknown_one_is_an_error() {
        use arrow::array::{ArrayRef, UInt32Array};
        use podtrail_schema::tables::PROCESS_EXIT;
        let col = |n: u32| Arc::new(UInt32Array::from(vec![n])) as ArrayRef;
        let err = super::place(&PROCESS_EXIT, vec![("no_such_column", col(1))]).unwrap_err().to_string();
        assert!(err.contains("no_such_column") && err.contains("process_exit"), "{err}");
        let err = super::place(&PROCESS_EXIT, vec![("pid", col(1))]).unwrap_err().to_string();
        assert!(err.contains("process_exit") && err.contains("time"), "the first missing column is named: {err}");
        let err = super::place(&PROCESS_EXIT, vec![("pid", col(1)), ("pid", col(2))]).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn every_table_builds_with_exactly_its_schema() {
        // One row of each table through its row definition: every column of
        // the schema is built, by name, with its type (a row definition that
        // leaves one out or names one the schema lacks fails here).
        let set = crate::rows::tests::one_row_of_each_table();
        let out = build(&set, "n1").unwrap();
        let mut built: Vec<&str> = out.iter().map(|(t, b)| {
            assert_eq!(b.schema(), podtrail_schema::tables::event_table(t).unwrap().arrow_schema(), "{t}");
            *t
        }).collect();
        built.sort_unstable();
        let mut all: Vec<&str> = podtrail_schema::tables::EVENT_TABLES.iter().map(|t| t.name).collect();
        all.sort_unstable();
        assert_eq!(built, all, "a row definition for every event table");
    }
}
