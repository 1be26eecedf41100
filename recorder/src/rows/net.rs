//! `net_conn` rows: one TCP lifecycle event each. The table a connection storm
//! fills: its columns are built with the lean builders of [`crate::columns`].
//! `net_listen` rows: a socket starting or stopping to take traffic.

use std::net::IpAddr;
use std::sync::Arc;

use arrow::array::ArrayRef;
use podtrail_schema::tables::{NET_CONN, NET_LISTEN, TableDef};

use super::{EventRow, Record};
use crate::columns::{CommText, IpText, Prim, Text, repeated};
use crate::decode::{ConnRaw, ListenRaw};

pub type ConnRow = EventRow<ConnRaw>;

impl Record for ConnRaw {
    const TABLE: &'static TableDef = &NET_CONN;
    fn time_boot_ns(&self) -> u64 {
        self.time_boot_ns
    }
    fn cgroup_id(&self) -> u64 {
        self.cgroup_id
    }
    /// The process that called connect(), or (accepted connections) the one
    /// that listened, when the kernel hooks saw it.
    fn pid(&self) -> Option<u32> {
        self.owner.as_ref().map(|o| o.0)
    }
    fn local_address(&self) -> Option<(IpAddr, u32)> {
        Some((self.src.0, self.netns))
    }
    fn columns(rows: &[&ConnRow]) -> Vec<(&'static str, ArrayRef)> {
        use arrow::datatypes::{UInt16Type, UInt32Type, UInt64Type};
        // Every column sized up front: no regrowth while a storm's flush is built.
        let n = rows.len();
        let text = |bytes: usize| Text::with_capacity(n, bytes);
        let (u64c, u32c, u16c) = (|| Prim::<UInt64Type>::with_capacity(n), || Prim::<UInt32Type>::with_capacity(n), || Prim::<UInt16Type>::with_capacity(n));
        // One per address column: each keeps its last text (rows are in pod
        // order, so a pod's own address repeats row after row).
        let (mut sip_text, mut dip_text, mut oip_text, mut nip_text) = (IpText::default(), IpText::default(), IpText::default(), IpText::default());
        let mut comm_text = CommText::default();
        let (mut event, mut comm, mut fam, mut err, mut name, mut sni, mut init) = (text(8), text(16), text(4), text(0), text(0), text(0), text(6));
        let (mut id, mut cookie, mut bs, mut br, mut dur) = (u64c(), u64c(), u64c(), u64c(), u64c());
        let (mut pid, mut netns) = (u32c(), u32c());
        let (mut sip, mut dip, mut oip, mut nip) = (text(12), text(12), text(12), text(12));
        let (mut sport, mut dport, mut oport, mut nport) = (u16c(), u16c(), u16c(), u16c());
        for r in rows {
            let c = &r.raw;
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
            name.push_opt(c.dst_name.as_deref());
            sni.push_opt(c.server_name.as_deref());
            init.push_opt(c.initiated);
        }
        vec![
            ("event", event.finish()),
            ("exec_id", Arc::new(id.finish()) as ArrayRef),
            ("pid", Arc::new(pid.finish())),
            ("comm", comm.finish()),
            ("protocol", repeated("tcp", n)),
            ("family", fam.finish()),
            ("src_ip", sip.finish()),
            ("src_port", Arc::new(sport.finish())),
            ("dst_ip", dip.finish()),
            ("dst_port", Arc::new(dport.finish())),
            ("orig_dst_ip", oip.finish()),
            ("orig_dst_port", Arc::new(oport.finish())),
            ("nat_dst_ip", nip.finish()),
            ("nat_dst_port", Arc::new(nport.finish())),
            ("netns", Arc::new(netns.finish())),
            ("socket_cookie", Arc::new(cookie.finish())),
            ("bytes_sent", Arc::new(bs.finish())),
            ("bytes_received", Arc::new(br.finish())),
            ("duration_ns", Arc::new(dur.finish())),
            ("error", err.finish()),
            ("dst_name", name.finish()),
            ("server_name", sni.finish()),
            ("initiated", init.finish()),
        ]
    }
}

pub type ListenRow = EventRow<ListenRaw>;

impl Record for ListenRaw {
    const TABLE: &'static TableDef = &NET_LISTEN;
    fn time_boot_ns(&self) -> u64 {
        self.time_boot_ns
    }
    fn cgroup_id(&self) -> u64 {
        self.cgroup_id
    }
    /// The process that called listen(2) or bind(2), or closed the socket.
    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }
    fn columns(rows: &[&ListenRow]) -> Vec<(&'static str, ArrayRef)> {
        use arrow::datatypes::{UInt16Type, UInt32Type, UInt64Type};
        let n = rows.len();
        let text = |bytes: usize| Text::with_capacity(n, bytes);
        let (mut ip_text, mut comm_text) = (IpText::default(), CommText::default());
        let (mut event, mut comm, mut proto, mut fam, mut ip) = (text(8), text(16), text(4), text(4), text(12));
        let (mut id, mut cookie) = (Prim::<UInt64Type>::with_capacity(n), Prim::<UInt64Type>::with_capacity(n));
        let (mut pid, mut netns) = (Prim::<UInt32Type>::with_capacity(n), Prim::<UInt32Type>::with_capacity(n));
        let mut port = Prim::<UInt16Type>::with_capacity(n);
        for r in rows {
            let l = &r.raw;
            event.push(l.event);
            id.push_opt(r.exec_id);
            pid.push(l.pid);
            comm.push(comm_text.get(&l.comm));
            proto.push(l.protocol);
            fam.push(l.family);
            ip.push(ip_text.get(&l.local.0));
            port.push(l.local.1);
            netns.push_opt(l.netns);
            cookie.push_opt(l.cookie);
        }
        vec![
            ("event", event.finish()),
            ("exec_id", Arc::new(id.finish()) as ArrayRef),
            ("pid", Arc::new(pid.finish())),
            ("comm", comm.finish()),
            ("protocol", proto.finish()),
            ("family", fam.finish()),
            ("ip", ip.finish()),
            ("port", Arc::new(port.finish())),
            ("netns", Arc::new(netns.finish())),
            ("socket_cookie", Arc::new(cookie.finish())),
        ]
    }
}
