//! `net_flow` rows: what one UDP or ICMP flow counted in a period (see
//! `crate::flows`).

use std::sync::Arc;

use arrow::array::{ArrayRef, TimestampNanosecondBuilder};
use podtrail_ebpf::{FLOW_FIRST_IN, FLOW_HAS_NAT, FLOW_HAS_OWNER};
use podtrail_schema::tables::{NET_FLOW, TableDef};

use super::{PodIdentity, Row};
use crate::columns::{CommText, IpText, Prim, Text};
use crate::decode::{Comm, ip};
use crate::flows::{FlowDelta, icmp_types};

pub struct FlowRow {
    /// The latest packet counted in this row (wall clock, ns).
    pub time: i64,
    pub first_seen: i64,
    pub delta: FlowDelta,
    pub identity: Option<Arc<PodIdentity>>,
}

impl FlowRow {
    /// A row of what changed, kernel times made wall times by `boot_to_wall`.
    pub fn new(delta: FlowDelta, boot_to_wall: i64) -> Self {
        FlowRow { time: delta.val.last_ns as i64 + boot_to_wall, first_seen: delta.val.first_ns as i64 + boot_to_wall, delta, identity: None }
    }
}

fn protocol_name(p: u8) -> &'static str {
    match p {
        17 => "udp",
        1 => "icmp",
        58 => "icmpv6",
        _ => "other",
    }
}

impl Row for FlowRow {
    const TABLE: &'static TableDef = &NET_FLOW;
    fn time(&self) -> i64 {
        self.time
    }
    fn cgroup_id(&self) -> u64 {
        self.delta.val.cgroup_id
    }
    fn identity(&self) -> Option<&Arc<PodIdentity>> {
        self.identity.as_ref()
    }
    fn identity_mut(&mut self) -> &mut Option<Arc<PodIdentity>> {
        &mut self.identity
    }
    fn columns(rows: &[&Self]) -> Vec<(&'static str, ArrayRef)> {
        use arrow::datatypes::{UInt16Type, UInt32Type, UInt64Type};
        let n = rows.len();
        let text = |bytes: usize| Text::with_capacity(n, bytes);
        let (u64c, u16c) = (|| Prim::<UInt64Type>::with_capacity(n), || Prim::<UInt16Type>::with_capacity(n));
        let (mut src_text, mut dst_text, mut nat_text, mut comm_text) = (IpText::default(), IpText::default(), IpText::default(), CommText::default());
        let (mut proto, mut fam, mut comm, mut initiated) = (text(4), text(4), text(16), text(6));
        let (mut sip, mut dip, mut nip, mut icmp_out, mut icmp_in) = (text(12), text(12), text(0), text(0), text(0));
        let (mut id, mut pko, mut byo, mut pki, mut byi, mut cookie) = (u64c(), u64c(), u64c(), u64c(), u64c(), u64c());
        let mut pid = Prim::<UInt32Type>::with_capacity(n);
        let (mut sport, mut dport, mut nport) = (u16c(), u16c(), u16c());
        let mut first = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
        for r in rows {
            let (d, k, v) = (&r.delta, &r.delta.key, &r.delta.val);
            let v6 = k.family == 10;
            let owned = v.flags & FLOW_HAS_OWNER as u16 != 0;
            proto.push(protocol_name(k.protocol));
            fam.push(if v6 { "ipv6" } else { "ipv4" });
            id.push_opt(d.exec_id);
            pid.push_opt(owned.then_some(v.pid));
            comm.push_opt(owned.then(|| comm_text.get(&Comm::from_kernel(v.comm))));
            initiated.push(if v.flags & FLOW_FIRST_IN as u16 != 0 { "remote" } else { "local" });
            sip.push(src_text.get(&ip(v.local, v6)));
            sport.push(v.local_port);
            dip.push(dst_text.get(&ip(k.peer, v6)));
            dport.push(k.peer_port);
            let nat = v.flags & FLOW_HAS_NAT as u16 != 0;
            nip.push_opt(nat.then(|| nat_text.get(&ip(v.nat_addr, v6))));
            nport.push_opt(nat.then_some(v.nat_port));
            pko.push(d.packets_out);
            byo.push(d.bytes_out);
            pki.push(d.packets_in);
            byi.push(d.bytes_in);
            let icmp = k.protocol != 17;
            icmp_out.push_opt(icmp.then(|| icmp_types(v.icmp_out, v6)).flatten().as_deref());
            icmp_in.push_opt(icmp.then(|| icmp_types(v.icmp_in, v6)).flatten().as_deref());
            first.append_value(r.first_seen);
            cookie.push(k.cookie);
        }
        vec![
            ("protocol", proto.finish()),
            ("family", fam.finish()),
            ("exec_id", Arc::new(id.finish()) as ArrayRef),
            ("pid", Arc::new(pid.finish())),
            ("comm", comm.finish()),
            ("initiated", initiated.finish()),
            ("src_ip", sip.finish()),
            ("src_port", Arc::new(sport.finish())),
            ("dst_ip", dip.finish()),
            ("dst_port", Arc::new(dport.finish())),
            ("nat_dst_ip", nip.finish()),
            ("nat_dst_port", Arc::new(nport.finish())),
            ("packets_out", Arc::new(pko.finish())),
            ("bytes_out", Arc::new(byo.finish())),
            ("packets_in", Arc::new(pki.finish())),
            ("bytes_in", Arc::new(byi.finish())),
            ("icmp_types_out", icmp_out.finish()),
            ("icmp_types_in", icmp_in.finish()),
            ("first_seen", Arc::new(first.finish())),
            ("socket_cookie", Arc::new(cookie.finish())),
        ]
    }
}
