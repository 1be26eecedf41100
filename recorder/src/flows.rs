//! UDP and ICMP flows: the kernel counts every packet in its flow (socket,
//! peer) in net.bpf.o's `flows` map; about every [`FLOW_READ_INTERVAL`] this
//! stage reads the counters and turns what changed into `net_flow` rows.
//!
//! In: snapshots of the kernel's cumulative counters. Out: one [`FlowDelta`]
//! per flow that counted packets since the previous read, and the flows that
//! may be deleted from the kernel map.
//!
//! Rules: the counters in the kernel only grow, and only this stage deletes a
//! flow, after a read that found it unchanged (its counts are all in rows) and
//! when its socket is released (the creator's `flow_socks` entry is gone) or
//! it has been idle for [`FLOW_IDLE_FORGET`]. So the rows of a flow add up to
//! exactly what the kernel counted.

use std::collections::HashMap;
use std::time::Duration;

pub use podtrail_ebpf::{FLOW_HAS_OWNER, FlowKey, FlowVal};

/// How often the kernel's flow counters are read (and at the recorder's stop):
/// the period of a flow's rows, so a flow gives at most one row per period.
pub const FLOW_READ_INTERVAL: Duration = Duration::from_secs(10);

/// A flow whose socket was created before the recorder started (no creator in
/// `flow_socks`, so no release is seen) is deleted after this long without a
/// packet; one that sends again then starts a new flow (a new `first_seen`).
pub const FLOW_IDLE_FORGET: Duration = Duration::from_secs(600);

/// What one flow counted since the previous read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowDelta {
    pub key: FlowKey,
    /// The kernel's value at this read (cumulative; times CLOCK_BOOTTIME).
    pub val: FlowVal,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    /// The image the socket's creator ran at the flow's first packet.
    pub exec_id: Option<u64>,
}

struct Seen {
    val: FlowVal,
    exec_id: Option<u64>,
}

/// The last value read of every flow the kernel map holds.
#[derive(Default)]
pub struct FlowCounters {
    last: HashMap<FlowKey, Seen>,
}

impl FlowCounters {
    /// The flows of `snapshot` that counted packets since the previous read
    /// (oldest latest packet first), and the ones that did not (candidates
    /// for [`Self::forgettable`]). `exec_of(pid, first_ns)` gives a new flow's
    /// creator the image it ran at the flow's first packet.
    pub fn diff(&mut self, snapshot: Vec<(FlowKey, FlowVal)>, mut exec_of: impl FnMut(u32, u64) -> Option<u64>) -> (Vec<FlowDelta>, Vec<(FlowKey, FlowVal)>) {
        let mut changed = Vec::new();
        let mut idle = Vec::new();
        for (k, v) in snapshot {
            let seen = self.last.entry(k).or_insert_with(|| Seen {
                val: FlowVal::default(),
                exec_id: if v.flags & FLOW_HAS_OWNER as u16 != 0 { exec_of(v.pid, v.first_ns) } else { None },
            });
            let p = seen.val;
            let d = FlowDelta {
                key: k,
                val: v,
                packets_out: v.packets_out.saturating_sub(p.packets_out),
                bytes_out: v.bytes_out.saturating_sub(p.bytes_out),
                packets_in: v.packets_in.saturating_sub(p.packets_in),
                bytes_in: v.bytes_in.saturating_sub(p.bytes_in),
                exec_id: seen.exec_id,
            };
            seen.val = v;
            if d.packets_out > 0 || d.packets_in > 0 {
                changed.push(d);
            } else {
                idle.push((k, v));
            }
        }
        changed.sort_by_key(|d| (d.val.last_ns, d.key));
        (changed, idle)
    }

    /// Whether an idle flow may leave the kernel map: its socket was released
    /// (`socket_open` false for a socket whose creator was known), or it has
    /// been idle for [`FLOW_IDLE_FORGET`] at `now_boot_ns`.
    pub fn forgettable(val: &FlowVal, socket_open: impl FnOnce() -> bool, now_boot_ns: u64) -> bool {
        let idle_for = now_boot_ns.saturating_sub(val.last_ns);
        if idle_for >= FLOW_IDLE_FORGET.as_nanos() as u64 {
            return true;
        }
        val.flags & FLOW_HAS_OWNER as u16 != 0 && !socket_open()
    }

    /// Forget a flow deleted from the kernel map.
    pub fn forget(&mut self, key: &FlowKey) {
        self.last.remove(key);
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// ICMP message type names, for a mask of `pt_flow_val` (events.h: IPv4 bit =
/// type; ICMPv6 errors 1..4 = bits 1..4, types 128..154 = bits 5..31).
pub fn icmp_types(mask: u32, v6: bool) -> Option<String> {
    if mask == 0 {
        return None;
    }
    let name = |bit: u32| -> String {
        let n = if v6 {
            match bit {
                1 => "dest_unreachable",
                2 => "packet_too_big",
                3 => "time_exceeded",
                4 => "parameter_problem",
                5 => "echo_request",
                6 => "echo_reply",
                b if b >= 7 => return format!("type{}", b + 123),
                b => return format!("type{b}"),
            }
        } else {
            match bit {
                0 => "echo_reply",
                3 => "dest_unreachable",
                4 => "source_quench",
                5 => "redirect",
                8 => "echo_request",
                11 => "time_exceeded",
                12 => "parameter_problem",
                13 => "timestamp",
                14 => "timestamp_reply",
                b => return format!("type{b}"),
            }
        };
        n.to_string()
    };
    Some((0..32).filter(|b| mask & (1 << b) != 0).map(name).collect::<Vec<_>>().join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        FlowKey { cookie: 7, peer: [10, 244, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], peer_port: port, protocol: 17, family: 2, pad: 0 }
    }

    fn val(out: u64, inn: u64, last: u64) -> FlowVal {
        FlowVal { first_ns: 1, last_ns: last, packets_out: out, bytes_out: out * 100, packets_in: inn, bytes_in: inn * 10, pid: 42, flags: FLOW_HAS_OWNER as u16, ..Default::default() }
    }

    #[test]
    fn a_flow_gives_what_it_counted_since_the_last_read_and_nothing_when_idle() {
        let mut c = FlowCounters::default();
        let mut asked = Vec::new();
        let (d, idle) = c.diff(vec![(key(53), val(3, 1, 10))], |pid, at| {
            asked.push((pid, at));
            Some(99)
        });
        assert_eq!(asked, vec![(42, 1)], "the creator's image (at the first packet) is looked up once, for a new flow");
        assert!(idle.is_empty());
        assert_eq!((d[0].packets_out, d[0].bytes_out, d[0].packets_in, d[0].bytes_in, d[0].exec_id), (3, 300, 1, 10, Some(99)));
        let (d, idle) = c.diff(vec![(key(53), val(5, 1, 20))], |_, _| panic!("not a new flow"));
        assert_eq!((d[0].packets_out, d[0].bytes_out, d[0].packets_in, d[0].bytes_in, d[0].exec_id), (2, 200, 0, 0, Some(99)));
        assert!(idle.is_empty());
        let (d, idle) = c.diff(vec![(key(53), val(5, 1, 20))], |_, _| None);
        assert!(d.is_empty(), "no change, no row");
        assert_eq!(idle.len(), 1);
        // Rows add up to the kernel's totals.
        c.forget(&key(53));
        assert!(c.is_empty());
    }

    #[test]
    fn an_idle_flow_leaves_the_map_when_its_socket_is_released_or_after_ten_minutes() {
        let v = val(1, 1, 1_000);
        assert!(!FlowCounters::forgettable(&v, || true, 2_000), "socket open, idle 1 µs");
        assert!(FlowCounters::forgettable(&v, || false, 2_000), "socket released");
        let ownerless = FlowVal { flags: 0, ..v };
        assert!(!FlowCounters::forgettable(&ownerless, || false, 2_000), "no creator known: only idleness counts");
        assert!(FlowCounters::forgettable(&ownerless, || panic!("not asked"), 1_000 + FLOW_IDLE_FORGET.as_nanos() as u64));
    }

    #[test]
    fn icmp_masks_read_as_type_names() {
        assert_eq!(icmp_types(1 << 8 | 1, false).as_deref(), Some("echo_reply,echo_request"));
        assert_eq!(icmp_types(1 << 5 | 1 << 1, true).as_deref(), Some("dest_unreachable,echo_request"));
        assert_eq!(icmp_types(1 << 9, true).as_deref(), Some("type132"));
        assert_eq!(icmp_types(0, false), None);
    }
}
