//! `batch` stage: typed rows to per-table Arrow batches.
//!
//! In: exec/exit/connection events with their process-table ids and the pod
//! identity they had at event time. Out: `RecordBatch`es with exactly the schema of
//! `podtrail-schema`, handed to the segment store. The one place event rows are
//! built: the live recorder and `podtrail-synth` both go through it.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampNanosecondBuilder, UInt8Builder, UInt32Builder,
    UInt64Builder,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use podtrail_schema::tables::{CAP_USAGE, NET_CONN, PRIVILEGE, PROCESS_EXEC, PROCESS_EXIT};

use crate::decode::{Comm, ConnRaw, ExecRaw, ExitRaw, PrivRaw};
use crate::privilege::{CapDelta, cap_name, detail};

/// The pod a row belonged to at event time (see the `identity` stage); `None` on
/// a row means a host process or an unresolved cgroup, and leaves the columns null.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity {
    /// Null for a process in the pod's own cgroup rather than a container's.
    pub container_id: Option<String>,
    pub pod_uid: String,
    /// Name and namespace come only from metadata sources.
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
}

pub struct ExecRow {
    pub time: i64,
    pub raw: ExecRaw,
    pub exec_id: u64,
    pub parent_exec_id: Option<u64>,
    pub cwd: Option<String>,
    pub identity: Option<Arc<PodIdentity>>,
}

pub struct ExitRow {
    pub time: i64,
    pub raw: ExitRaw,
    pub exec_id: Option<u64>,
    pub duration_ns: Option<u64>,
    pub identity: Option<Arc<PodIdentity>>,
}

pub struct ConnRow {
    pub time: i64,
    pub raw: ConnRaw,
    pub exec_id: Option<u64>,
    pub identity: Option<Arc<PodIdentity>>,
}

pub struct PrivRow {
    pub time: i64,
    pub raw: PrivRaw,
    pub exec_id: Option<u64>,
    pub identity: Option<Arc<PodIdentity>>,
}

pub struct CapRow {
    /// The latest check counted in this row (wall clock, ns).
    pub time: i64,
    pub first_seen: i64,
    pub delta: CapDelta,
    pub identity: Option<Arc<PodIdentity>>,
}

/// Rows waiting for the next flush.
#[derive(Default)]
pub struct Batcher {
    pub exec: Vec<ExecRow>,
    pub exit: Vec<ExitRow>,
    pub conn: Vec<ConnRow>,
    pub privs: Vec<PrivRow>,
    pub caps: Vec<CapRow>,
    /// How many leading rows of each table the identity stage has stamped.
    pub stamped: Stamped,
    /// How many leading `conn` rows are known to be in the sealed key order
    /// (see [`Batcher::stamped_all`]): when all are, their batch is built
    /// without sorting (one pass over the rows fewer).
    conn_in_order: usize,
}

/// Whether a row with this identity stays for a later flush (see [`Batcher::take_except`]).
pub type Hold<'a> = &'a dyn Fn(Option<&PodIdentity>) -> bool;

/// Per table, how many leading rows of the [`Batcher`] are stamped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stamped {
    pub exec: usize,
    pub exit: usize,
    pub conn: usize,
    pub privs: usize,
    pub caps: usize,
}

impl Batcher {
    /// Rows waiting for a flush.
    pub fn pending(&self) -> usize {
        self.exec.len() + self.exit.len() + self.conn.len() + self.privs.len() + self.caps.len()
    }

    /// The time of the oldest row waiting (wall clock, ns), if any.
    pub fn oldest_time(&self) -> Option<i64> {
        let exec = self.exec.iter().map(|r| r.time);
        let exit = self.exit.iter().map(|r| r.time);
        let conn = self.conn.iter().map(|r| r.time);
        let privs = self.privs.iter().map(|r| r.time);
        let caps = self.caps.iter().map(|r| r.time);
        exec.chain(exit).chain(conn).chain(privs).chain(caps).min()
    }

    /// Every pending row is stamped: the identity stage calls this once it
    /// has stamped the rows that came since its last call. Connection rows
    /// stamped now extend the leading run known to be in key order for as long
    /// as they stay in it (a storm of one pod, or of the host, always does);
    /// they are checked here, while they are still in cache.
    pub fn stamped_all(&mut self) {
        let from = self.stamped.conn;
        if self.conn_in_order == from {
            self.conn_in_order = ordered_prefix(&self.conn, from);
        }
        self.mark_stamped();
    }

    /// Every pending row is stamped (rows already in key order are not
    /// looked for: see [`Batcher::stamped_all`]).
    pub fn mark_stamped(&mut self) {
        self.stamped = Stamped { exec: self.exec.len(), exit: self.exit.len(), conn: self.conn.len(), privs: self.privs.len(), caps: self.caps.len() };
    }
}

/// Builders of the columns every event row starts with.
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
    fn new() -> Self {
        Keys::with_capacity(0)
    }
    /// Sized for `rows` rows up front: no regrowth while a storm's flush is built.
    fn with_capacity(rows: usize) -> Self {
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
    fn push(&mut self, time: i64, cgroup: u64, identity: Option<&'a PodIdentity>) {
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
    /// In schema order: time, node (the same on every row), cgroup_id,
    /// container_id, pod_uid, pod_name, pod_namespace.
    fn finish(mut self, node: &str) -> Vec<ArrayRef> {
        self.end_run();
        let n = arrow::array::ArrayBuilder::len(&self.time);
        vec![
            Arc::new(self.time.finish()),
            repeated(node, n),
            Arc::new(self.cgroup.finish()),
            Arc::new(self.container_id.finish()),
            Arc::new(self.pod_uid.finish()),
            Arc::new(self.pod_name.finish()),
            Arc::new(self.pod_namespace.finish()),
        ]
    }
}

impl Batcher {
    /// Drain the pending rows into batches (table name, batch).
    pub fn take(&mut self, node: &str) -> Result<Vec<(&'static str, RecordBatch)>, ArrowError> {
        self.take_except(node, None)
    }

    /// Drain the pending rows into batches, except the ones `hold` keeps for a
    /// later call (rows waiting for their pod's metadata). Kept rows stay stamped.
    /// `None`: no row can be held (no pod waits), and none is looked at.
    pub fn take_except(&mut self, node: &str, hold: Option<Hold<'_>>) -> Result<Vec<(&'static str, RecordBatch)>, ArrowError> {
        // Rows are large: move them only when some really stay behind.
        fn split<R>(rows: &mut Vec<R>, hold: Option<Hold<'_>>, identity: impl Fn(&R) -> Option<&PodIdentity>) -> Vec<R> {
            let Some(hold) = hold else { return std::mem::take(rows) };
            let held = |r: &R| hold(identity(r));
            if !rows.iter().any(held) {
                return std::mem::take(rows);
            }
            let (keep, out): (Vec<R>, Vec<R>) = std::mem::take(rows).into_iter().partition(held);
            *rows = keep;
            out
        }
        let conn_in_order = self.conn_in_order == self.conn.len();
        let exec = split(&mut self.exec, hold, |r| r.identity.as_deref());
        let exit = split(&mut self.exit, hold, |r| r.identity.as_deref());
        let mut conn = split(&mut self.conn, hold, |r| r.identity.as_deref());
        // Rows taken from rows in order are in order, and so are the rows kept.
        self.conn_in_order = if conn_in_order { self.conn.len() } else { 0 };
        let privs = split(&mut self.privs, hold, |r| r.identity.as_deref());
        let caps = split(&mut self.caps, hold, |r| r.identity.as_deref());
        self.mark_stamped();
        let mut out = Vec::new();
        if !exec.is_empty() {
            out.push((PROCESS_EXEC.name, exec_batch(&exec, node)?));
        }
        if !exit.is_empty() {
            out.push((PROCESS_EXIT.name, exit_batch(&exit, node)?));
        }
        if !conn.is_empty() {
            out.push((NET_CONN.name, conn_batch(&conn, conn_in_order, node)?));
            // Keep the allocation for the next rows (a storm would otherwise
            // regrow it, moving every large row, at each flush).
            conn.clear();
            if self.conn.is_empty() {
                self.conn = conn;
            }
        }
        if !privs.is_empty() {
            out.push((PRIVILEGE.name, priv_batch(&privs, node)?));
        }
        if !caps.is_empty() {
            out.push((CAP_USAGE.name, cap_batch(&caps, node)?));
        }
        Ok(out)
    }
}

fn exec_batch(rows: &[ExecRow], node: &str) -> Result<RecordBatch, ArrowError> {
    let rows = in_key_order(rows, |r| (r.identity.as_deref(), r.raw.cgroup_id, r.time));
    let mut keys = Keys::new();
    let (mut id, mut parent, mut caps) = (UInt64Builder::new(), UInt64Builder::new(), UInt64Builder::new());
    let (mut pid, mut ppid, mut uid, mut gid, mut netns) = (UInt32Builder::new(), UInt32Builder::new(), UInt32Builder::new(), UInt32Builder::new(), UInt32Builder::new());
    let (mut comm, mut binary, mut cwd) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let mut args = ListBuilder::new(StringBuilder::new());
    let (mut trunc, mut fileless) = (BooleanBuilder::new(), BooleanBuilder::new());
    for r in rows {
        let e = &r.raw;
        keys.push(r.time, e.cgroup_id, r.identity.as_deref());
        id.append_value(r.exec_id);
        parent.append_option(r.parent_exec_id);
        pid.append_value(e.pid);
        ppid.append_value(e.ppid);
        uid.append_value(e.uid);
        gid.append_value(e.gid);
        comm.append_value(&e.comm);
        binary.append_value(&e.filename);
        for a in &e.args {
            args.values().append_value(a);
        }
        args.append(true);
        trunc.append_value(e.args_truncated);
        cwd.append_option(r.cwd.as_deref());
        caps.append_value(e.cap_effective);
        netns.append_value(e.netns);
        fileless.append_value(e.fileless);
    }
    let mut cols = keys.finish(node);
    cols.extend([
        Arc::new(id.finish()) as ArrayRef,
        Arc::new(parent.finish()),
        Arc::new(pid.finish()),
        Arc::new(ppid.finish()),
        Arc::new(uid.finish()),
        Arc::new(gid.finish()),
        Arc::new(comm.finish()),
        Arc::new(binary.finish()),
        Arc::new(args.finish()),
        Arc::new(trunc.finish()),
        Arc::new(cwd.finish()),
        Arc::new(caps.finish()),
        Arc::new(netns.finish()),
        Arc::new(fileless.finish()),
    ]);
    RecordBatch::try_new(PROCESS_EXEC.arrow_schema(), cols)
}

fn exit_batch(rows: &[ExitRow], node: &str) -> Result<RecordBatch, ArrowError> {
    let rows = in_key_order(rows, |r| (r.identity.as_deref(), r.raw.cgroup_id, r.time));
    let mut keys = Keys::new();
    let (mut id, mut dur) = (UInt64Builder::new(), UInt64Builder::new());
    let mut pid = UInt32Builder::new();
    let (mut code, mut sig) = (Int32Builder::new(), Int32Builder::new());
    for r in rows {
        keys.push(r.time, r.raw.cgroup_id, r.identity.as_deref());
        id.append_option(r.exec_id);
        pid.append_value(r.raw.pid);
        code.append_value(r.raw.exit_code);
        sig.append_value(r.raw.signal);
        dur.append_option(r.duration_ns);
    }
    let mut cols = keys.finish(node);
    cols.extend([Arc::new(id.finish()) as ArrayRef, Arc::new(pid.finish()), Arc::new(code.finish()), Arc::new(sig.finish()), Arc::new(dur.finish())]);
    RecordBatch::try_new(PROCESS_EXIT.arrow_schema(), cols)
}

/// A text column holding `value` on each of `n` rows, built in one go (a
/// builder append per row copies the few bytes through a call each).
fn repeated(value: &str, n: usize) -> ArrayRef {
    let offsets = arrow::buffer::OffsetBuffer::<i32>::from_lengths(std::iter::repeat_n(value.len(), n));
    Arc::new(arrow::array::StringArray::new(offsets, arrow::buffer::Buffer::from(value.repeat(n).into_bytes()), None))
}

/// `rows` in the order a sealed segment keeps them: `pod_uid` (host rows
/// first), `cgroup_id`, `time`; stable. The store sorts again when it seals, so
/// this order is never relied on for correctness; it lets the seal write a
/// segment's batches as a few long sorted runs instead of gathering every row.
/// Pods are ranked by `pod_uid` once, so rows sort on integers (comparing pod
/// UIDs row against row was most of building a batch of 50 pods' rows); rows
/// already in this order (one pod's storm) cost one scan.
fn in_key_order<R>(rows: &[R], key: impl Fn(&R) -> (Option<&PodIdentity>, u64, i64)) -> Vec<&R> {
    // One pass over the rows (they are large): each key's first field holds
    // its row's identity slot + 1 (0: a host row) until pods are ranked.
    // Distinct identities are looked up once per run of rows of one identity.
    let mut index: std::collections::HashMap<*const PodIdentity, u32> = std::collections::HashMap::new();
    let mut pods: Vec<&PodIdentity> = Vec::new();
    let mut last: Option<(*const PodIdentity, u32)> = None;
    let mut keys: Vec<(u32, u64, i64, usize)> = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let (identity, cgroup, time) = key(row);
        let slot = identity.map_or(0, |p| {
            let ptr: *const PodIdentity = p;
            match last {
                Some((q, s)) if q == ptr => s,
                _ => {
                    let s = *index.entry(ptr).or_insert_with(|| {
                        pods.push(p);
                        u32::try_from(pods.len()).expect("fewer than 4 billion pods")
                    });
                    last = Some((ptr, s));
                    s
                }
            }
        });
        // The row's index last: equal keys keep their arrival order.
        keys.push((slot, cgroup, time, i));
    }
    if !pods.is_empty() {
        // Rank 0: host rows; pods from 1 in pod_uid order (equal UIDs, equal rank).
        let mut by_uid: Vec<usize> = (0..pods.len()).collect();
        by_uid.sort_unstable_by(|&a, &b| pods[a].pod_uid.cmp(&pods[b].pod_uid));
        let mut rank = vec![0u32; pods.len() + 1];
        let mut r = 0u32;
        for (k, &i) in by_uid.iter().enumerate() {
            if k == 0 || pods[by_uid[k - 1]].pod_uid != pods[i].pod_uid {
                r += 1;
            }
            rank[i + 1] = r;
        }
        keys.iter_mut().for_each(|k| k.0 = rank[k.0 as usize]);
    }
    if !keys.is_sorted() {
        keys.sort_unstable();
    }
    keys.into_iter().map(|k| &rows[k.3]).collect()
}

/// The length of the longest prefix of `rows` in the sealed key order (see
/// [`in_key_order`]), given that the first `known` rows are.
fn ordered_prefix(rows: &[ConnRow], known: usize) -> usize {
    let mut n = known.max(1).min(rows.len());
    while n < rows.len() && conn_key_le(&rows[n - 1], &rows[n]) {
        n += 1;
    }
    n
}

/// Whether `a` comes before `b` (or ties with it) in the sealed key order:
/// `pod_uid` (host rows first), `cgroup_id`, `time`.
fn conn_key_le(a: &ConnRow, b: &ConnRow) -> bool {
    let pods = match (&a.identity, &b.identity) {
        (Some(x), Some(y)) if Arc::ptr_eq(x, y) => std::cmp::Ordering::Equal,
        (x, y) => x.as_deref().map(|p| p.pod_uid.as_str()).cmp(&y.as_deref().map(|p| p.pod_uid.as_str())),
    };
    pods.then((a.raw.cgroup_id, a.time).cmp(&(b.raw.cgroup_id, b.time))).is_le()
}

/// An address as text, written into one reused buffer: `Ipv4Addr::to_string`
/// (the formatting machinery and an allocation per address) was a fifth of the
/// recorder's CPU under a connect storm. The last address is remembered: asked
/// for again, its text is not rebuilt.
#[derive(Default)]
struct IpText(String, Option<std::net::IpAddr>);

impl IpText {
    fn get(&mut self, ip: &std::net::IpAddr) -> &str {
        if self.1 == Some(*ip) {
            return &self.0;
        }
        self.1 = Some(*ip);
        self.0.clear();
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, o) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.0.push('.');
                    }
                    if o >= 100 {
                        self.0.push(char::from(b'0' + o / 100));
                    }
                    if o >= 10 {
                        self.0.push(char::from(b'0' + o / 10 % 10));
                    }
                    self.0.push(char::from(b'0' + o % 10));
                }
            }
            std::net::IpAddr::V6(v6) => {
                use std::fmt::Write;
                let _ = write!(self.0, "{v6}");
            }
        }
        &self.0
    }
}

/// A column built with plain vector pushes, inlined: under a connection storm
/// the arrow builders' per-value calls were a third of building a batch.
struct Prim<T: arrow::datatypes::ArrowPrimitiveType> {
    values: Vec<T::Native>,
    nulls: arrow::array::builder::NullBufferBuilder,
}

impl<T: arrow::datatypes::ArrowPrimitiveType> Prim<T> {
    fn with_capacity(n: usize) -> Self {
        Prim { values: Vec::with_capacity(n), nulls: arrow::array::builder::NullBufferBuilder::new(n) }
    }
    #[inline(always)]
    fn push(&mut self, v: T::Native) {
        self.values.push(v);
        self.nulls.append_non_null();
    }
    #[inline(always)]
    fn push_opt(&mut self, v: Option<T::Native>) {
        match v {
            Some(v) => self.push(v),
            None => {
                self.values.push(T::Native::default());
                self.nulls.append_null();
            }
        }
    }
    fn finish(mut self) -> arrow::array::PrimitiveArray<T> {
        arrow::array::PrimitiveArray::new(self.values.into(), self.nulls.finish())
    }
}

/// A text column built like [`Prim`].
struct Text {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    nulls: arrow::array::builder::NullBufferBuilder,
}

impl Text {
    fn with_capacity(n: usize, bytes_per_row: usize) -> Self {
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        Text { offsets, bytes: Vec::with_capacity(n * bytes_per_row), nulls: arrow::array::builder::NullBufferBuilder::new(n) }
    }
    #[inline(always)]
    fn push(&mut self, v: &str) {
        self.bytes.extend_from_slice(v.as_bytes());
        self.end_value();
        self.nulls.append_non_null();
    }
    #[inline(always)]
    fn push_opt(&mut self, v: Option<&str>) {
        match v {
            Some(v) => self.push(v),
            None => {
                self.end_value();
                self.nulls.append_null();
            }
        }
    }
    /// The offset that ends the value just pushed (empty for a null).
    #[inline(always)]
    fn end_value(&mut self) {
        self.offsets.push(i32::try_from(self.bytes.len()).expect("a batch holds less than 2 GiB of text per column"));
    }
    fn finish(mut self) -> ArrayRef {
        let offsets = arrow::buffer::OffsetBuffer::new(self.offsets.into());
        // SAFETY: `bytes` is a concatenation of `&str`s (valid UTF-8), each
        // offset is the end of one of them (non-decreasing, within `bytes`,
        // checked to fit i32 when pushed), and there is one null bit per value.
        // (Validating it all again was 2 % of the recorder under a storm.)
        Arc::new(unsafe { arrow::array::StringArray::new_unchecked(offsets, self.bytes.into(), self.nulls.finish()) })
    }
}

/// A process name as text: the last one is remembered (a storm repeats one
/// name row after row), so its bytes are not scanned again.
#[derive(Default)]
struct CommText(String, Option<Comm>);

impl CommText {
    fn get(&mut self, comm: &Comm) -> &str {
        if self.1.as_ref() != Some(comm) {
            self.0.clear();
            self.0.push_str(&comm.text());
            self.1 = Some(*comm);
        }
        &self.0
    }
}

/// `in_order`: the rows are known to be in key order already (see
/// [`Batcher::stamped_all`]).
fn conn_batch(rows: &[ConnRow], in_order: bool, node: &str) -> Result<RecordBatch, ArrowError> {
    if in_order {
        debug_assert_eq!(ordered_prefix(rows, 0), rows.len(), "rows said to be in key order are not");
        conn_columns(rows.iter(), node)
    } else {
        conn_columns(in_key_order(rows, |r| (r.identity.as_deref(), r.raw.cgroup_id, r.time)).into_iter(), node)
    }
}

fn conn_columns<'a>(rows: impl ExactSizeIterator<Item = &'a ConnRow>, node: &str) -> Result<RecordBatch, ArrowError> {
    use arrow::datatypes::{UInt16Type, UInt32Type, UInt64Type};
    // The table a connection storm fills: every column sized up front.
    let n = rows.len();
    let text = |bytes: usize| Text::with_capacity(n, bytes);
    let (u64c, u32c, u16c) = (|| Prim::<UInt64Type>::with_capacity(n), || Prim::<UInt32Type>::with_capacity(n), || Prim::<UInt16Type>::with_capacity(n));
    // One per address column: each keeps its last text (rows are in pod
    // order, so a pod's own address repeats row after row).
    let (mut sip_text, mut dip_text, mut oip_text, mut nip_text) = (IpText::default(), IpText::default(), IpText::default(), IpText::default());
    let mut comm_text = CommText::default();
    let mut keys = Keys::with_capacity(n);
    let (mut event, mut comm, mut fam, mut err) = (text(8), text(16), text(4), text(0));
    let (mut id, mut cookie, mut bs, mut br, mut dur) = (u64c(), u64c(), u64c(), u64c(), u64c());
    let (mut pid, mut netns) = (u32c(), u32c());
    let (mut sip, mut dip, mut oip, mut nip) = (text(12), text(12), text(12), text(12));
    let (mut sport, mut dport, mut oport, mut nport) = (u16c(), u16c(), u16c(), u16c());
    for r in rows {
        let c = &r.raw;
        keys.push(r.time, c.cgroup_id, r.identity.as_deref());
        event.push(c.event);
        id.push_opt(r.exec_id);
        pid.push_opt(c.owner.as_ref().map(|o| o.0));
        comm.push_opt(c.owner.as_ref().map(|o| comm_text.get(&o.1)));
        fam.push(c.family);
        sip.push(sip_text.get(&c.src.0));
        sport.push(c.src.1);
        dip.push(dip_text.get(&c.dst.0));
        dport.push(c.dst.1);
        oip.push_opt(c.orig_dst.as_ref().map(|a| oip_text.get(&a.0)));
        oport.push_opt(c.orig_dst.map(|a| a.1));
        nip.push_opt(c.nat_dst.as_ref().map(|a| nip_text.get(&a.0)));
        nport.push_opt(c.nat_dst.map(|a| a.1));
        netns.push(c.netns);
        cookie.push(c.cookie);
        bs.push_opt(c.bytes.map(|b| b.0));
        br.push_opt(c.bytes.map(|b| b.1));
        dur.push_opt(c.bytes.map(|b| b.2));
        err.push_opt(c.error.as_deref());
    }
    let mut cols = keys.finish(node);
    cols.extend([
        event.finish(),
        Arc::new(id.finish()),
        Arc::new(pid.finish()),
        comm.finish(),
        repeated("tcp", n),
        fam.finish(),
        sip.finish(),
        Arc::new(sport.finish()),
        dip.finish(),
        Arc::new(dport.finish()),
        oip.finish(),
        Arc::new(oport.finish()),
        nip.finish(),
        Arc::new(nport.finish()),
        Arc::new(netns.finish()),
        Arc::new(cookie.finish()),
        Arc::new(bs.finish()),
        Arc::new(br.finish()),
        Arc::new(dur.finish()),
        err.finish(),
    ]);
    RecordBatch::try_new(NET_CONN.arrow_schema(), cols)
}

fn priv_batch(rows: &[PrivRow], node: &str) -> Result<RecordBatch, ArrowError> {
    let rows = in_key_order(rows, |r| (r.identity.as_deref(), r.raw.cgroup_id, r.time));
    let mut keys = Keys::new();
    let s = StringBuilder::new;
    let (mut kind, mut comm, mut error, mut nss, mut source, mut target, mut fstype, mut operation, mut bpf_type, mut file) = (s(), s(), s(), s(), s(), s(), s(), s(), s(), s());
    let u32b = UInt32Builder::new;
    let (mut pid, mut tid, mut uid, mut euid, mut gid, mut egid, mut target_pid) = (u32b(), u32b(), u32b(), u32b(), u32b(), u32b(), u32b());
    let (mut new_uid, mut new_euid, mut new_suid, mut new_gid, mut new_egid, mut new_sgid) = (u32b(), u32b(), u32b(), u32b(), u32b(), u32b());
    let u64b = UInt64Builder::new;
    let (mut id, mut caps, mut ncap_e, mut ncap_p, mut ncap_i, mut flags) = (u64b(), u64b(), u64b(), u64b(), u64b(), u64b());
    let mut result = Int64Builder::new();
    for r in rows {
        let p = &r.raw;
        let d = detail(p);
        keys.push(r.time, p.cgroup_id, r.identity.as_deref());
        kind.append_value(p.kind);
        id.append_option(r.exec_id);
        pid.append_value(p.pid);
        tid.append_value(p.tid);
        comm.append_value(&p.comm);
        uid.append_value(p.uid);
        euid.append_value(p.euid);
        gid.append_value(p.gid);
        egid.append_value(p.egid);
        caps.append_value(p.cap_effective);
        result.append_value(p.result);
        error.append_option(d.error);
        new_uid.append_option(d.new_uid);
        new_euid.append_option(d.new_euid);
        new_suid.append_option(d.new_suid);
        new_gid.append_option(d.new_gid);
        new_egid.append_option(d.new_egid);
        new_sgid.append_option(d.new_sgid);
        ncap_e.append_option(d.new_caps.map(|c| c.0));
        ncap_p.append_option(d.new_caps.map(|c| c.1));
        ncap_i.append_option(d.new_caps.map(|c| c.2));
        nss.append_option(d.namespaces);
        flags.append_option(d.flags);
        source.append_option(d.source);
        target.append_option(d.target);
        fstype.append_option(d.fstype);
        operation.append_option(d.operation);
        target_pid.append_option(d.target_pid);
        bpf_type.append_option(d.bpf_type);
        file.append_option(d.file);
    }
    let mut cols = keys.finish(node);
    cols.extend([
        Arc::new(kind.finish()) as ArrayRef,
        Arc::new(id.finish()),
        Arc::new(pid.finish()),
        Arc::new(tid.finish()),
        Arc::new(comm.finish()),
        Arc::new(uid.finish()),
        Arc::new(euid.finish()),
        Arc::new(gid.finish()),
        Arc::new(egid.finish()),
        Arc::new(caps.finish()),
        Arc::new(result.finish()),
        Arc::new(error.finish()),
        Arc::new(new_uid.finish()),
        Arc::new(new_euid.finish()),
        Arc::new(new_suid.finish()),
        Arc::new(new_gid.finish()),
        Arc::new(new_egid.finish()),
        Arc::new(new_sgid.finish()),
        Arc::new(ncap_e.finish()),
        Arc::new(ncap_p.finish()),
        Arc::new(ncap_i.finish()),
        Arc::new(nss.finish()),
        Arc::new(flags.finish()),
        Arc::new(source.finish()),
        Arc::new(target.finish()),
        Arc::new(fstype.finish()),
        Arc::new(operation.finish()),
        Arc::new(target_pid.finish()),
        Arc::new(bpf_type.finish()),
        Arc::new(file.finish()),
    ]);
    RecordBatch::try_new(PRIVILEGE.arrow_schema(), cols)
}

fn cap_batch(rows: &[CapRow], node: &str) -> Result<RecordBatch, ArrowError> {
    let rows = in_key_order(rows, |r| (r.identity.as_deref(), r.delta.cgroup_id, r.time));
    let mut keys = Keys::new();
    let mut name = StringBuilder::new();
    let mut cap = UInt8Builder::new();
    let (mut granted, mut denied, mut unrec) = (UInt64Builder::new(), UInt64Builder::new(), UInt64Builder::new());
    let mut first = TimestampNanosecondBuilder::new().with_timezone("UTC");
    for r in rows {
        let d = &r.delta;
        keys.push(r.time, d.cgroup_id, r.identity.as_deref());
        name.append_value(cap_name(d.cap));
        cap.append_value(u8::try_from(d.cap).unwrap_or(u8::MAX));
        granted.append_value(d.granted);
        denied.append_value(d.denied);
        unrec.append_value(d.denied_unrecorded);
        first.append_value(r.first_seen);
    }
    let mut cols = keys.finish(node);
    cols.extend([
        Arc::new(name.finish()) as ArrayRef,
        Arc::new(cap.finish()),
        Arc::new(granted.finish()),
        Arc::new(denied.finish()),
        Arc::new(unrec.finish()),
        Arc::new(first.finish()),
    ]);
    RecordBatch::try_new(CAP_USAGE.arrow_schema(), cols)
}

#[cfg(test)]
mod tests {
    use super::{Batcher, ExitRow, IpText, PodIdentity};
    use crate::decode::ExitRaw;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{TimestampNanosecondType, UInt32Type, UInt64Type};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    #[test]
    fn batches_are_built_in_the_sealed_key_order_with_every_row() {
        let pod = |uid: &str| Some(Arc::new(PodIdentity { pod_uid: uid.into(), container_id: Some(format!("c-{uid}")), pod_name: Some(format!("name-{uid}")), pod_namespace: None }));
        let (b, a) = (pod("pod-b"), pod("pod-a"));
        // Arrival order: pods interleaved, the host's rows between, one pod's rows
        // in two cgroups, and a pod's later row before its earlier one.
        let rows = [(50, &b, 7), (10, &None, 1), (40, &a, 9), (30, &b, 7), (20, &a, 8), (60, &None, 1), (5, &a, 9), (35, &pod("pod-b"), 7)];
        let mut batcher = Batcher::default();
        for (i, (time, identity, cgroup_id)) in rows.iter().enumerate() {
            let raw = ExitRaw { pid: i as u32, time_boot_ns: 0, cgroup_id: *cgroup_id, exit_code: 0, signal: 0, comm: "x".into() };
            batcher.exit.push(ExitRow { time: *time, raw, exec_id: None, duration_ns: None, identity: (*identity).clone() });
        }
        let out = batcher.take("n1").unwrap();
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
        use crate::batch::ConnRow;
        use crate::decode::ConnRaw;
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
        };
        let close = ConnRaw { event: "close", owner: None, orig_dst: None, nat_dst: None, bytes: Some((11, 22, 33)), ..connect.clone() };
        let fail = ConnRaw { event: "fail", family: "ipv6", src: (ip("fd00::1"), 0), dst: (ip("fd00::2"), 443), orig_dst: None, nat_dst: None, error: Some("ECONNREFUSED".into()), ..connect.clone() };
        let mut batcher = Batcher::default();
        for (i, raw) in [connect, close, fail].into_iter().enumerate() {
            batcher.conn.push(ConnRow { time: 100 + i as i64, exec_id: (i != 1).then_some(9), identity: None, raw });
        }
        let out = batcher.take("n1").unwrap();
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

    /// Connection rows at (time, pod, cgroup), pushed as the pipeline does.
    fn push_conns(b: &mut Batcher, rows: &[(i64, &Option<Arc<PodIdentity>>, u64)]) {
        use crate::batch::ConnRow;
        use crate::decode::ConnRaw;
        for &(time, identity, cgroup_id) in rows {
            b.conn.push(ConnRow { time, raw: ConnRaw::localhost(time as u64, cgroup_id, None), exec_id: None, identity: identity.clone() });
        }
    }

    /// (pod_uid, cgroup_id, time) of a net_conn batch's rows.
    fn conn_keys(batch: &arrow::record_batch::RecordBatch) -> Vec<(Option<String>, u64, i64)> {
        let uid = batch.column_by_name("pod_uid").unwrap().as_string::<i32>();
        let cg = batch.column_by_name("cgroup_id").unwrap().as_primitive::<UInt64Type>();
        let time = batch.column_by_name("time").unwrap().as_primitive::<TimestampNanosecondType>();
        (0..batch.num_rows()).map(|i| (uid.is_valid(i).then(|| uid.value(i).to_owned()), cg.value(i), time.value(i))).collect()
    }

    #[test]
    fn connection_rows_known_in_order_skip_the_sort_and_others_are_sorted() {
        let pod = |uid: &str| Some(Arc::new(PodIdentity { pod_uid: uid.into(), container_id: None, pod_name: None, pod_namespace: None }));
        let (a, a2, b) = (pod("pod-a"), pod("pod-a"), pod("pod-b"));
        let mut batcher = Batcher::default();
        // Two passes in key order: host rows, then pod-a (a second Arc of the
        // same pod, as after its name arrived), then pod-b.
        push_conns(&mut batcher, &[(5, &None, 1), (9, &None, 1), (3, &a, 7)]);
        batcher.stamped_all();
        push_conns(&mut batcher, &[(4, &a2, 7), (6, &a, 8), (1, &b, 2)]);
        batcher.stamped_all();
        assert_eq!(batcher.conn_in_order, 6);
        let out = batcher.take("n1").unwrap();
        let want = |v: &[(Option<&str>, u64, i64)]| -> Vec<(Option<String>, u64, i64)> { v.iter().map(|(u, c, t)| (u.map(str::to_owned), *c, *t)).collect() };
        assert_eq!(conn_keys(&out[0].1), want(&[(None, 1, 5), (None, 1, 9), (Some("pod-a"), 7, 3), (Some("pod-a"), 7, 4), (Some("pod-a"), 8, 6), (Some("pod-b"), 2, 1)]));
        assert_eq!(batcher.conn_in_order, 0);
        // A pass that goes back in time (pod-a after pod-b; then an earlier
        // host row): the run stops at the first row out of order, and stays
        // stopped; the batch is sorted instead.
        push_conns(&mut batcher, &[(10, &b, 2), (11, &a, 7), (12, &b, 2)]);
        batcher.stamped_all();
        assert_eq!(batcher.conn_in_order, 1);
        push_conns(&mut batcher, &[(13, &b, 2), (2, &None, 1)]);
        batcher.stamped_all();
        assert_eq!(batcher.conn_in_order, 1);
        let out = batcher.take("n1").unwrap();
        assert_eq!(conn_keys(&out[0].1), want(&[(None, 1, 2), (Some("pod-a"), 7, 11), (Some("pod-b"), 2, 10), (Some("pod-b"), 2, 12), (Some("pod-b"), 2, 13)]));
        // Rows held for a later flush: taken and kept rows both stay in order.
        push_conns(&mut batcher, &[(1, &None, 1), (2, &a, 7), (3, &b, 2)]);
        batcher.stamped_all();
        let hold = |p: Option<&PodIdentity>| p.is_some_and(|p| p.pod_uid == "pod-b");
        let out = batcher.take_except("n1", Some(&hold)).unwrap();
        assert_eq!(conn_keys(&out[0].1), want(&[(None, 1, 1), (Some("pod-a"), 7, 2)]));
        assert_eq!((batcher.conn.len(), batcher.conn_in_order), (1, 1));
        push_conns(&mut batcher, &[(4, &b, 2)]);
        batcher.stamped_all();
        assert_eq!(batcher.conn_in_order, 2);
    }

    #[test]
    fn comm_text_is_the_name_asked_for_not_the_last_one() {
        let mut t = super::CommText::default();
        for name in ["curl", "curl", "bash", "curl", "", "a-name-of-15-ch"] {
            assert_eq!(t.get(&name.into()), name);
        }
    }

    #[test]
    fn ip_text_is_what_std_prints() {
        let mut t = IpText::default();
        for o in 0..=255u8 {
            for ip in [Ipv4Addr::new(o, 0, 9, 10), Ipv4Addr::new(10, o, 99, o), Ipv4Addr::new(10, o, 99, o), Ipv4Addr::new(255, 100, o, 1)] {
                assert_eq!(t.get(&IpAddr::V4(ip)), ip.to_string());
            }
        }
        // The remembered address is the one asked for, not just any earlier one.
        assert_eq!(t.get(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))), "10.0.0.1");
        assert_eq!(t.get(&IpAddr::V6(Ipv6Addr::LOCALHOST)), "::1");
        assert_eq!(t.get(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))), "10.0.0.1");
        for ip in [Ipv6Addr::LOCALHOST, "fd00:10:244::2".parse().unwrap(), "::ffff:10.244.1.2".parse().unwrap()] {
            assert_eq!(t.get(&IpAddr::V6(ip)), ip.to_string());
        }
    }
}
