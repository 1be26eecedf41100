//! The ring-reader thread: drains the kernel's ring buffers and decodes on a
//! thread of its own, so the buffers keep emptying while the pipeline builds and
//! writes a flush. Records are decoded straight into rows (process events stay
//! events, for the process table): each row is written once here and moved to
//! the pipeline in bulk.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;

use crate::decode::{ConnRaw, RawEvent, decode, table_of_record};
use crate::dns::{Dns, DnsRaw, NotDns};
use crate::rows::{DnsRow, RowSet};
use crate::tls::ServerNames;

use super::{STOP, clock_ns, now_ns};

/// Passes of raw records the reader may hold before it waits for the pipeline
/// (while it waits, the kernel's buffers fill, and what they cannot take is
/// counted as loss). A pass holds at most what the ring buffers held, decoded:
/// the kernel's buffers absorb bursts at a fraction of the memory, so the queue
/// is short (deeper queues let RSS grow in a storm; BENCHMARKS.md).
const READER_QUEUE_PASSES: usize = 2;

/// How long the ring reader waits for the kernel's wakeup before draining
/// anyway: the most a trickle of events waits before it enters the pipeline.
/// Short, because a new pod's first event is what asks the CRI runtime for its
/// metadata: a pod whose container ran and was deleted within a longer wait
/// could lose its container record. (A pass is sent one pass late, see
/// [`spawn`]: an event reaches the pipeline within two of these waits.)
const READER_POLL_MS: i32 = 10;

/// The wait after a busy pass (at least [`BUSY_PASS_RECORDS`] records): under a
/// storm a short timeout only cuts passes short, each waking this thread and
/// the pipeline's; a storm is read at this interval, or at the kernel's wakeup
/// (PT_WAKEUP_BYTES pooled) when that comes first (BENCHMARKS.md, wakeups). The
/// price: while a storm goes on, a new pod's first event may reach the pipeline
/// this late instead of [`READER_POLL_MS`]; a trickle never makes a busy pass.
const READER_POLL_BUSY_MS: i32 = 50;

/// A pass this large means a storm; the reader goes back to the short wait when
/// passes fall below it.
const BUSY_PASS_RECORDS: usize = 256;

/// One drain of the ring buffers, decoded.
#[derive(Default)]
pub(super) struct Pass {
    /// Process events (exec, exit, fork), for the process table.
    pub events: Vec<RawEvent>,
    /// Every other record, as rows of its table (wall time set; `exec_id` and
    /// identity not yet).
    pub rows: RowSet,
    /// Records that did not decode, per table their kind names (counted as
    /// loss, never guessed into rows).
    pub decode_errors: BTreeMap<Option<&'static str>, u64>,
}

impl Pass {
    /// Move this pass to the end of `into` (no copy of its rows when `into` has none).
    pub fn take_into(mut self, into: &mut Pass) {
        if into.events.is_empty() {
            std::mem::swap(&mut self.events, &mut into.events);
        } else {
            into.events.append(&mut self.events);
        }
        if into.rows.is_empty() {
            std::mem::swap(&mut self.rows, &mut into.rows);
        } else {
            into.rows.append(&mut self.rows, false);
        }
        for (table, n) in self.decode_errors {
            *into.decode_errors.entry(table).or_default() += n;
        }
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.rows.is_empty() && self.decode_errors.is_empty()
    }
}

/// A connection's `dst_name`: the name its cgroup resolved to the address it
/// asked for (`orig_dst`, else `dst`) when it connected (a close: when it was
/// established). Accepted connections have none (the peer chose us).
fn name_connection(dns: &Dns, c: &mut ConnRaw) {
    let at = match (c.event, c.bytes) {
        ("connect" | "fail", _) => c.time_boot_ns,
        ("close", Some((_, _, duration))) => c.time_boot_ns.saturating_sub(duration),
        ("close", None) => c.time_boot_ns,
        _ => return,
    };
    c.dst_name = dns.name_for(c.cgroup_id, c.orig_dst.unwrap_or(c.dst).0, at);
}

/// The server name of each connect row's socket, when its ClientHello came.
fn name_connects(pass: &mut Pass, tls: &ServerNames) {
    for r in pass.rows.conn.rows.iter_mut().filter(|r| r.raw.event == "connect" && r.raw.server_name.is_none()) {
        r.raw.server_name = tls.get(r.raw.cookie);
    }
}

/// Start the reader: each pass is sent as one [`Pass`]. After STOP the thread
/// drains once more and ends, closing the channel. `read_to` is set after each
/// pass is sent to the time (wall clock, ns) that pass began draining, or the
/// time of the oldest DNS query still waiting for its answer or in a `dns` row
/// not sent yet, when that is older: every event before it was in a pass sent.
///
/// Each pass is sent one pass late (10–50 ms): a TLS client sends its
/// ClientHello right after the handshake that a connect row records, so the
/// next pass has it, and the row its server name (`crate::tls`). The whole
/// pass waits, not its connect rows alone, so rows and process events still
/// reach the process table in the order they happened. A name stays until
/// its connection's close or fail has been sent.
pub(super) fn spawn(mut reader: crate::probes::RingReader, boot_to_wall: i64, read_to: Arc<AtomicI64>) -> std::io::Result<(mpsc::Receiver<Pass>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel(READER_QUEUE_PASSES);
    let handle = std::thread::Builder::new().name("ring-reader".into()).spawn(move || {
        let mut errors_total = 0u64;
        let mut last_records = 0usize;
        // Sized like the previous pass: decoded rows are large, and growing
        // a vector by doubling moves each of them about twice more.
        let (mut last_events, mut last_rows) = (0usize, Vec::new());
        let sized = |last: usize| (last + last / 4).min(1 << 16);
        let mut dns = Dns::default();
        let mut dns_rows: Vec<DnsRaw> = Vec::new();
        let mut not_dns_total = 0u64;
        let mut tls = ServerNames::default();
        // The previous pass, the sockets that closed in it, and when it began.
        let mut held: Option<(Pass, Vec<u64>, i64)> = None;
        loop {
            let stopping = STOP.load(Ordering::SeqCst);
            let mut pass = Pass { events: Vec::with_capacity(sized(last_events)), ..Pass::default() };
            pass.rows.reserve(&last_rows.iter().map(|&n| sized(n)).collect::<Vec<_>>());
            let mut records = 0usize;
            let mut closing = Vec::new();
            let mut take = |rec: &[u8]| {
                records += 1;
                match decode(rec) {
                    Ok(RawEvent::Dns(p)) => {
                        if let Err(NotDns(why)) = dns.packet(p, &mut dns_rows) {
                            *pass.decode_errors.entry(Some(podtrail_schema::tables::DNS.name)).or_default() += 1;
                            not_dns_total += 1;
                            if not_dns_total.is_power_of_two() {
                                tracing::warn!(packets.total = not_dns_total, "a DNS packet that is not a DNS message: {why}");
                            }
                        }
                        for r in dns_rows.drain(..) {
                            pass.rows.dns.push(DnsRow::new(r, boot_to_wall));
                        }
                    }
                    Ok(RawEvent::TlsHello(t)) => tls.hello(t.cookie, &t.data),
                    Ok(RawEvent::Conn(mut c)) => {
                        name_connection(&dns, &mut c);
                        if matches!(c.event, "close" | "fail") {
                            c.server_name = tls.get(c.cookie);
                            closing.push(c.cookie);
                        }
                        pass.rows.push_event(RawEvent::Conn(c), boot_to_wall);
                    }
                    Ok(ev) => {
                        if let Some(ev) = pass.rows.push_event(ev, boot_to_wall) {
                            pass.events.push(ev);
                        }
                    }
                    Err(err) => {
                        *pass.decode_errors.entry(table_of_record(rec)).or_default() += 1;
                        errors_total += 1;
                        if errors_total.is_power_of_two() {
                            tracing::warn!(len = rec.len(), errors.total = errors_total, "undecodable kernel record: {err}");
                        }
                    }
                }
            };
            // The kernel wakes us only once PT_WAKEUP_BYTES are pooled
            // (ebpf/include/common.h); a trickle is read at the timeout.
            let wait = match (stopping, last_records >= BUSY_PASS_RECORDS) {
                (true, _) => 0,
                (false, true) => READER_POLL_BUSY_MS,
                (false, false) => READER_POLL_MS,
            };
            // Before the wait: events older than this are read by this pass.
            let began = now_ns();
            reader.poll(wait, &mut take);
            // Queries whose answer did not come in time; at the end, every
            // query still waiting.
            if stopping {
                dns.drain(&mut dns_rows);
            } else {
                dns.expire(clock_ns(libc::CLOCK_BOOTTIME) as u64, &mut dns_rows);
            }
            for r in dns_rows.drain(..) {
                pass.rows.dns.push(DnsRow::new(r, boot_to_wall));
            }
            last_records = records;
            (last_events, last_rows) = (pass.events.len(), pass.rows.lens());
            // The previous pass goes, its connect rows named; then the names
            // of the sockets that closed in it are forgotten. At the end this
            // pass goes too.
            let send = |mut p: Pass, closed: Vec<u64>, tls: &mut ServerNames| {
                name_connects(&mut p, tls);
                closed.into_iter().for_each(|cookie| drop(tls.closed(cookie)));
                p.is_empty() || tx.send(p).is_ok()
            };
            // Every event before this was in a pass sent.
            let mut sent_to = None;
            if let Some((prev, closed, prev_began)) = held.take() {
                if !send(prev, closed, &mut tls) {
                    return; // the pipeline is gone
                }
                sent_to = Some(prev_began);
            }
            if stopping {
                if !send(pass, closing, &mut tls) {
                    return;
                }
                sent_to = Some(began);
            } else {
                held = Some((pass, closing, began));
            }
            // DNS rows carry their query's time, which can be older than that
            // (a query answered or expired in the held pass): those count as
            // not sent yet, like the queries still waiting.
            if let Some(sent_to) = sent_to {
                let held_dns = held.as_ref().and_then(|(p, _, _)| p.rows.dns.rows.iter().map(|r| r.time).min()).unwrap_or(i64::MAX);
                let waiting = dns.oldest_pending().map_or(i64::MAX, |t| t as i64 + boot_to_wall);
                read_to.store(sent_to.min(waiting).min(held_dns), Ordering::Release);
            }
            if stopping {
                return;
            }
        }
    })?;
    Ok((rx, handle))
}
