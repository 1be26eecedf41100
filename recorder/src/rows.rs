//! Event rows: one typed row per event table, the pod identity each carries,
//! and the set of every table's rows as they flow through the pipeline.
//!
//! In: decoded kernel records (`decode`), given their process image by `procs`.
//! Out: rows the `identity` stage stamps and the `batch` stage builds into Arrow.
//!
//! Invariant: the event tables are listed once, in the `tables!` invocation
//! below; every stage handles rows through [`Row`] and a [`RowSet`] visitor,
//! never with code written once per table. A row definition (its struct, how it
//! comes from its decoded record, its columns) lives in one file of `rows/`.

mod dns;
mod file;
mod flow;
mod net;
mod privilege;
mod process;

use std::net::IpAddr;
use std::sync::Arc;

use arrow::array::ArrayRef;
use podtrail_schema::tables::TableDef;

use crate::decode::RawEvent;

pub use dns::DnsRow;
pub use flow::FlowRow;
pub use net::{ConnRow, ListenRow};
pub use file::{FileRow, detail as file_detail};
pub use privilege::{CapRow, PrivRow};
pub use process::{ExecRow, ExitRow};

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

/// What every event row is to the stages: when, in which cgroup, stamped with
/// which pod, made by which process, and its table's columns.
pub trait Row: Sized {
    /// The table these rows are stored in.
    const TABLE: &'static TableDef;
    /// Wall clock (UTC ns) of the event.
    fn time(&self) -> i64;
    /// The cgroup v2 id of the process or socket, as the kernel reported it.
    fn cgroup_id(&self) -> u64;
    fn identity(&self) -> Option<&Arc<PodIdentity>>;
    fn identity_mut(&mut self) -> &mut Option<Arc<PodIdentity>>;
    /// The process that made the event, whose image at the event's time the
    /// `procs` stage gives the row (`exec_id`); none for rows without one, or
    /// that carry their own (exec and exit rows).
    fn pid(&self) -> Option<u32> {
        None
    }
    fn set_exec_id(&mut self, _exec_id: Option<u64>) {}
    /// A local address and the network namespace it is used in (a socket's):
    /// outside the host's namespace, an address the row's pod owned then.
    fn local_address(&self) -> Option<(IpAddr, u32)> {
        None
    }
    /// The table's own columns (after the event key columns), each with its
    /// name, for `rows` in that order. The batch stage places them by name.
    fn columns(rows: &[&Self]) -> Vec<(&'static str, ArrayRef)>;
}

/// A row that is one kernel record as it came, given its wall time, its
/// process image and its pod: `net_conn`, `net_listen` and `privilege` rows.
/// What differs per table is the record and its columns ([`Record`]).
pub struct EventRow<R> {
    /// Wall clock (UTC ns) of the event.
    pub time: i64,
    pub raw: R,
    /// The image of the event's process then (see the `procs` stage), when known.
    pub exec_id: Option<u64>,
    pub identity: Option<Arc<PodIdentity>>,
}

/// A decoded kernel record that is one row of its table ([`EventRow`]).
pub trait Record: Sized {
    /// The table these rows are stored in.
    const TABLE: &'static TableDef;
    /// Kernel time of the event (CLOCK_BOOTTIME).
    fn time_boot_ns(&self) -> u64;
    /// The cgroup v2 id of the process or socket, as the kernel reported it.
    fn cgroup_id(&self) -> u64;
    /// The process that made the event, when the record names one.
    fn pid(&self) -> Option<u32>;
    /// See [`Row::local_address`].
    fn local_address(&self) -> Option<(IpAddr, u32)> {
        None
    }
    /// See [`Row::columns`].
    fn columns(rows: &[&EventRow<Self>]) -> Vec<(&'static str, ArrayRef)>;
}

impl<R: Record> EventRow<R> {
    /// The row of `raw`, its wall time from kernel time by `boot_to_wall`.
    pub fn new(raw: R, boot_to_wall: i64) -> Self {
        EventRow { time: raw.time_boot_ns() as i64 + boot_to_wall, raw, exec_id: None, identity: None }
    }
}

impl<R: Record> Row for EventRow<R> {
    const TABLE: &'static TableDef = R::TABLE;
    fn time(&self) -> i64 {
        self.time
    }
    fn cgroup_id(&self) -> u64 {
        self.raw.cgroup_id()
    }
    fn identity(&self) -> Option<&Arc<PodIdentity>> {
        self.identity.as_ref()
    }
    fn identity_mut(&mut self) -> &mut Option<Arc<PodIdentity>> {
        &mut self.identity
    }
    fn pid(&self) -> Option<u32> {
        self.raw.pid()
    }
    fn set_exec_id(&mut self, exec_id: Option<u64>) {
        self.exec_id = exec_id;
    }
    fn local_address(&self) -> Option<(IpAddr, u32)> {
        self.raw.local_address()
    }
    fn columns(rows: &[&Self]) -> Vec<(&'static str, ArrayRef)> {
        R::columns(rows)
    }
}

/// The rows of one table, and how many of them, from the first, are known to
/// be in the order a sealed segment keeps them (see [`key_le`]): a batch of
/// rows all in order is built without sorting them.
pub struct Table<R> {
    pub rows: Vec<R>,
    in_order: usize,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Table { rows: Vec::new(), in_order: 0 }
    }
}

impl<R: Row> Table<R> {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn push(&mut self, row: R) {
        self.rows.push(row);
    }

    /// Every row is in the sealed key order.
    pub fn in_key_order(&self) -> bool {
        self.in_order == self.rows.len()
    }

    /// Move `other`'s rows to the end (into this table's allocation, which a
    /// storm has grown: taking a smaller one would regrow it by doubling). With
    /// `check_order`, the rows added are compared with their predecessors while
    /// still in cache, extending the run known to be in key order (pass it once
    /// rows are stamped: the order is by pod).
    pub fn append(&mut self, other: &mut Table<R>, check_order: bool) {
        self.rows.append(&mut other.rows);
        other.in_order = 0;
        if check_order {
            self.check_order();
        }
    }

    /// Give back the allocation of rows that were built and stored: kept for
    /// the next rows when this table has none.
    pub fn recycle(&mut self, mut spent: Table<R>) {
        spent.rows.clear();
        if self.rows.is_empty() && spent.rows.capacity() > self.rows.capacity() {
            self.rows = spent.rows;
            self.in_order = 0;
        }
    }

    /// Extend the run known to be in key order over rows added since (they
    /// are stamped now).
    pub fn check_order(&mut self) {
        self.in_order = ordered_prefix(&self.rows, self.in_order);
    }

    /// Take the rows `hold` does not keep, in their order; the kept ones stay,
    /// in theirs (both runs stay in key order when all rows were). Rows are
    /// large: they are moved only when some really stay.
    pub fn release(&mut self, hold: Option<Hold<'_>>) -> Table<R> {
        let all_in_order = self.in_key_order();
        let taken = match hold {
            Some(hold) if self.rows.iter().any(|r| hold(r.identity().map(|i| &**i))) => {
                let (keep, out): (Vec<R>, Vec<R>) = std::mem::take(&mut self.rows).into_iter().partition(|r| hold(r.identity().map(|i| &**i)));
                self.rows = keep;
                out
            }
            _ => std::mem::take(&mut self.rows),
        };
        self.in_order = if all_in_order { self.rows.len() } else { 0 };
        let in_order = if all_in_order { taken.len() } else { 0 };
        Table { rows: taken, in_order }
    }
}

/// Whether a row with this identity stays for a later flush (rows waiting for
/// their pod's metadata; see the identity stage).
pub type Hold<'a> = &'a dyn Fn(Option<&PodIdentity>) -> bool;

/// Something done to every table's rows: how a stage handles every table with
/// one generic path ([`RowSet::visit`]).
pub trait VisitRows {
    fn visit<R: Row>(&mut self, table: &mut Table<R>);
}

/// Something read from every table's rows ([`RowSet::read`]).
pub trait ReadRows {
    fn read<R: Row>(&mut self, table: &Table<R>);
}

macro_rules! tables {
    ($($field:ident: $row:ty),* $(,)?) => {
        /// Rows of every event table.
        #[derive(Default)]
        pub struct RowSet {
            $(pub $field: Table<$row>,)*
        }

        impl RowSet {
            /// Every table to `v`, in one fixed order.
            pub fn visit(&mut self, v: &mut impl VisitRows) {
                $(v.visit(&mut self.$field);)*
            }

            /// Every table to `v`, in the order of [`RowSet::visit`].
            pub fn read(&self, v: &mut impl ReadRows) {
                $(v.read(&self.$field);)*
            }

            /// Move every row of `other` to the end of this set (see [`Table::append`]).
            pub fn append(&mut self, other: &mut RowSet, check_order: bool) {
                $(self.$field.append(&mut other.$field, check_order);)*
            }

            /// The rows `hold` does not keep (see [`Table::release`]).
            pub fn release(&mut self, hold: Option<Hold<'_>>) -> RowSet {
                RowSet { $($field: self.$field.release(hold),)* }
            }

            /// Keep the allocations of `spent`'s tables (see [`Table::recycle`]).
            pub fn recycle(&mut self, spent: RowSet) {
                $(self.$field.recycle(spent.$field);)*
            }
        }
    };
}

// The event tables of the pipeline, each once.
tables! {
    exec: ExecRow,
    exit: ExitRow,
    conn: ConnRow,
    listen: ListenRow,
    flows: FlowRow,
    dns: DnsRow,
    files: FileRow,
    privs: PrivRow,
    caps: CapRow,
}

impl RowSet {
    /// Rows held.
    pub fn len(&self) -> usize {
        struct Count(usize);
        impl ReadRows for Count {
            fn read<R: Row>(&mut self, t: &Table<R>) {
                self.0 += t.len();
            }
        }
        let mut c = Count(0);
        self.read(&mut c);
        c.0
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The time of the oldest row held (wall clock, ns), if any.
    pub fn oldest_time(&self) -> Option<i64> {
        struct Oldest(Option<i64>);
        impl ReadRows for Oldest {
            fn read<R: Row>(&mut self, t: &Table<R>) {
                if let Some(m) = t.rows.iter().map(Row::time).min() {
                    self.0 = Some(self.0.map_or(m, |o| o.min(m)));
                }
            }
        }
        let mut o = Oldest(None);
        self.read(&mut o);
        o.0
    }

    /// Rows per table, in the order of [`RowSet::visit`].
    pub fn lens(&self) -> Vec<usize> {
        struct Lens(Vec<usize>);
        impl ReadRows for Lens {
            fn read<R: Row>(&mut self, t: &Table<R>) {
                self.0.push(t.len());
            }
        }
        let mut l = Lens(Vec::new());
        self.read(&mut l);
        l.0
    }

    /// Room for `lens[i]` more rows in the i-th table (see [`RowSet::lens`]).
    pub fn reserve(&mut self, lens: &[usize]) {
        struct Reserve<'a>(&'a [usize], usize);
        impl VisitRows for Reserve<'_> {
            fn visit<R: Row>(&mut self, t: &mut Table<R>) {
                t.rows.reserve(self.0.get(self.1).copied().unwrap_or(0));
                self.1 += 1;
            }
        }
        self.visit(&mut Reserve(lens, 0));
    }

    /// Extend every table's run known to be in key order over rows added
    /// since they were stamped.
    pub fn check_order(&mut self) {
        struct Check;
        impl VisitRows for Check {
            fn visit<R: Row>(&mut self, t: &mut Table<R>) {
                t.check_order();
            }
        }
        self.visit(&mut Check);
    }

    /// Make a decoded record a row of its table (wall time from kernel time by
    /// `boot_to_wall`); records that are not rows (exec, exit, fork: the
    /// process table's, which makes their rows; DNS packets, which
    /// `crate::dns` pairs into rows) come back.
    pub fn push_event(&mut self, ev: RawEvent, boot_to_wall: i64) -> Option<RawEvent> {
        match ev {
            RawEvent::Conn(c) => self.conn.push(ConnRow::new(c, boot_to_wall)),
            RawEvent::Listen(l) => self.listen.push(ListenRow::new(l, boot_to_wall)),
            RawEvent::Priv(p) => self.privs.push(PrivRow::new(p, boot_to_wall)),
            RawEvent::File(f) => self.files.push(FileRow::new(f, boot_to_wall)),
            other => return Some(other),
        }
        None
    }
}

/// Whether `a` comes before `b` (or ties with it) in the sealed key order:
/// `pod_uid` (host rows first), `cgroup_id`, `time`. Rows of one pod share one
/// identity (an `Arc`): pointers are compared before text.
pub fn key_le<R: Row>(a: &R, b: &R) -> bool {
    let pods = match (a.identity(), b.identity()) {
        (Some(x), Some(y)) if Arc::ptr_eq(x, y) => std::cmp::Ordering::Equal,
        (x, y) => x.map(|p| p.pod_uid.as_str()).cmp(&y.map(|p| p.pod_uid.as_str())),
    };
    pods.then((a.cgroup_id(), a.time()).cmp(&(b.cgroup_id(), b.time()))).is_le()
}

/// The length of the longest prefix of `rows` in the sealed key order, given
/// that the first `known` rows are.
fn ordered_prefix<R: Row>(rows: &[R], known: usize) -> usize {
    let mut n = known.max(1).min(rows.len());
    while n < rows.len() && key_le(&rows[n - 1], &rows[n]) {
        n += 1;
    }
    n
}

/// `rows` in the order a sealed segment keeps them: `pod_uid` (host rows
/// first), `cgroup_id`, `time`; stable. The store sorts again when it seals, so
/// this order is never relied on for correctness; it lets the seal write a
/// segment's batches as a few long sorted runs instead of gathering every row.
/// Pods are ranked by `pod_uid` once, so rows sort on integers (comparing pod
/// UIDs row against row was most of building a batch of 50 pods' rows); rows
/// already in this order (one pod's storm) cost one scan.
pub fn in_key_order<R: Row>(rows: &[R]) -> Vec<&R> {
    // One pass over the rows (they are large): each key's first field holds
    // its row's identity slot + 1 (0: a host row) until pods are ranked.
    // Distinct identities are looked up once per run of rows of one identity.
    let mut index: std::collections::HashMap<*const PodIdentity, u32> = std::collections::HashMap::new();
    let mut pods: Vec<&PodIdentity> = Vec::new();
    let mut last: Option<(*const PodIdentity, u32)> = None;
    let mut keys: Vec<(u32, u64, i64, usize)> = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let slot = row.identity().map_or(0, |p| {
            let ptr: *const PodIdentity = &**p;
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
        keys.push((slot, row.cgroup_id(), row.time(), i));
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::decode::{ConnRaw, ExecRaw, ExitRaw, ListenRaw, PrivRaw};
    use crate::privilege::CapDelta;

    /// A set with one row of every table, each in a pod.
    pub(crate) fn one_row_of_each_table() -> RowSet {
        let pod = Some(Arc::new(PodIdentity { pod_uid: "uid-a".into(), container_id: Some("c".into()), pod_name: Some("a".into()), pod_namespace: Some("ns".into()) }));
        let mut s = RowSet::default();
        let exec = ExecRaw { pid: 1, tid: 1, ppid: 0, uid: 0, gid: 0, netns: 1, time_boot_ns: 1, cgroup_id: 7, cap_effective: 0, comm: "sh".into(), filename: "/bin/sh".into(), args: vec!["sh".into()], args_truncated: false, fileless: false, cwd: "/".into(), file_id: (1, 1), loader_env: vec![], env_truncated: false };
        s.exec.push(ExecRow { time: 1, raw: exec, exec_id: 9, parent_exec_id: None, cwd: Some("/".into()), sha256: None, identity: pod.clone() });
        s.exit.push(ExitRow { time: 2, raw: ExitRaw { pid: 1, time_boot_ns: 2, cgroup_id: 7, exit_code: 0, signal: 0, comm: "sh".into() }, exec_id: Some(9), duration_ns: Some(1), identity: pod.clone() });
        s.conn.push(ConnRow { time: 3, raw: ConnRaw::localhost(3, 7, Some(1)), exec_id: Some(9), identity: pod.clone() });
        let privraw = PrivRaw { kind: "setuid", pid: 1, tid: 1, uid: 0, euid: 0, gid: 0, egid: 0, cap_effective: 0, result: 0, time_boot_ns: 4, cgroup_id: 7, comm: "sh".into(), args: [0; 6], extra: [0; 3], strs: [None, None, None] };
        s.privs.push(PrivRow { time: 4, raw: privraw, exec_id: Some(9), identity: pod.clone() });
        let delta = CapDelta { cgroup_id: 7, cap: 21, granted: 1, denied: 0, denied_unrecorded: 0, first_boot_ns: 5, last_boot_ns: 5 };
        s.caps.push(CapRow { time: 5, first_seen: 5, delta, identity: pod.clone() });
        let key = podtrail_ebpf::FlowKey { cookie: 3, peer: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], peer_port: 53, protocol: 17, family: 2, pad: 0 };
        let val = podtrail_ebpf::FlowVal { first_ns: 5, last_ns: 6, packets_out: 1, bytes_out: 40, cgroup_id: 7, ..Default::default() };
        let flow = crate::flows::FlowDelta { key, val, packets_out: 1, bytes_out: 40, packets_in: 0, bytes_in: 0, exec_id: None };
        s.flows.push(FlowRow { time: 6, first_seen: 5, delta: flow, identity: pod.clone() });
        let listen = ListenRaw {
            event: "listen",
            pid: 1,
            comm: "sh".into(),
            protocol: "tcp",
            family: "ipv4",
            netns: Some(1),
            time_boot_ns: 6,
            cgroup_id: 7,
            cookie: None,
            local: (std::net::Ipv4Addr::UNSPECIFIED.into(), 8080),
        };
        s.listen.push(ListenRow { time: 6, raw: listen, exec_id: Some(9), identity: pod.clone() });
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let dns = crate::dns::DnsRaw {
            status: "answered",
            time_boot_ns: 7,
            cgroup_id: 7,
            cookie: 3,
            owner: Some((1, "sh".into())),
            transport: "udp",
            family: "ipv4",
            txid: 9,
            question: Some(("example.com".into(), 1)),
            src: (ip("10.244.1.2"), 40000),
            resolver: (ip("10.96.0.10"), 53),
            answered_by: Some((ip("10.244.0.5"), 53)),
            rcode: Some(0),
            answer_count: Some(1),
            answers: Some("example.com A 10.0.0.1 ttl=30".into()),
            latency_ns: Some(100),
            parse_error: None,
        };
        s.dns.push(DnsRow { time: 7, raw: dns, exec_id: Some(9), identity: pod.clone() });
        let file = crate::decode::FileRaw {
            op: "open",
            syscall: &podtrail_ebpf::FILE_SYSCALLS[0],
            pid: 1,
            tid: 1,
            uid: 0,
            euid: 0,
            result: 3,
            time_boot_ns: 8,
            cgroup_id: 7,
            comm: "sh".into(),
            path: "/etc/cron.d/x".into(),
            path2: None,
            args: [0, 0, 0o1101, 0o644, 0, 0],
            open_flags: 0o1101,
            inode: Some((45, 12)),
            mnt_ns: 4026531841,
            why: podtrail_ebpf::FILE_WHY_WATCHED,
            watch: 0,
            name_watch: 0,
            flags: podtrail_ebpf::FILE_CREATED | podtrail_ebpf::FILE_HAS_INODE,
        };
        s.files.push(FileRow { time: 8, raw: file, exec_id: Some(9), identity: pod });
        s
    }

    #[test]
    fn a_set_counts_its_rows_and_knows_the_oldest() {
        let s = one_row_of_each_table();
        assert_eq!((s.len(), s.oldest_time()), (9, Some(1)));
        assert_eq!(RowSet::default().oldest_time(), None);
    }
}
