//! `dns` rows: one DNS query with its answer (see `crate::dns`).

use std::sync::Arc;

use arrow::array::ArrayRef;
use podtrail_schema::tables::{DNS, TableDef};

use super::{EventRow, Record};
use crate::columns::{CommText, IpText, Prim, Text};
use crate::dns::{DnsRaw, rcode_name, type_name};

pub type DnsRow = EventRow<DnsRaw>;

impl Record for DnsRaw {
    const TABLE: &'static TableDef = &DNS;
    fn time_boot_ns(&self) -> u64 {
        self.time_boot_ns
    }
    fn cgroup_id(&self) -> u64 {
        self.cgroup_id
    }
    /// The process that aimed the socket at the resolver, when seen.
    fn pid(&self) -> Option<u32> {
        self.owner.as_ref().map(|o| o.0)
    }
    fn columns(rows: &[&DnsRow]) -> Vec<(&'static str, ArrayRef)> {
        use arrow::datatypes::{UInt16Type, UInt32Type, UInt64Type};
        let n = rows.len();
        let text = |bytes: usize| Text::with_capacity(n, bytes);
        let (u64c, u16c) = (|| Prim::<UInt64Type>::with_capacity(n), || Prim::<UInt16Type>::with_capacity(n));
        let (mut src_text, mut res_text, mut by_text, mut comm_text) = (IpText::default(), IpText::default(), IpText::default(), CommText::default());
        let (mut status, mut comm, mut transport, mut fam, mut qname, mut qtype) = (text(8), text(16), text(3), text(4), text(24), text(2));
        let (mut sip, mut rip, mut bip, mut rcode, mut answers, mut err) = (text(12), text(12), text(12), text(7), text(32), text(0));
        let (mut id, mut latency, mut cookie) = (u64c(), u64c(), u64c());
        let mut pid = Prim::<UInt32Type>::with_capacity(n);
        let (mut txid, mut sport, mut rport, mut bport, mut ancount) = (u16c(), u16c(), u16c(), u16c(), u16c());
        for r in rows {
            let d = &r.raw;
            status.push(d.status);
            id.push_opt(r.exec_id);
            pid.push_opt(d.owner.as_ref().map(|o| o.0));
            comm.push_opt(d.owner.as_ref().map(|o| comm_text.get(&o.1)));
            transport.push(d.transport);
            fam.push(d.family);
            txid.push(d.txid);
            qname.push_opt(d.question.as_ref().map(|q| q.0.as_str()));
            qtype.push_opt(d.question.as_ref().map(|q| type_name(q.1)).as_deref());
            sip.push(src_text.get(&d.src.0));
            sport.push(d.src.1);
            rip.push(res_text.get(&d.resolver.0));
            rport.push(d.resolver.1);
            bip.push_opt(d.answered_by.as_ref().map(|a| by_text.get(&a.0)));
            bport.push_opt(d.answered_by.map(|a| a.1));
            rcode.push_opt(d.rcode.map(rcode_name).as_deref());
            ancount.push_opt(d.answer_count);
            answers.push_opt(d.answers.as_deref());
            latency.push_opt(d.latency_ns);
            err.push_opt(d.parse_error.as_deref());
            cookie.push(d.cookie);
        }
        vec![
            ("status", status.finish()),
            ("exec_id", Arc::new(id.finish()) as ArrayRef),
            ("pid", Arc::new(pid.finish())),
            ("comm", comm.finish()),
            ("transport", transport.finish()),
            ("family", fam.finish()),
            ("txid", Arc::new(txid.finish())),
            ("query_name", qname.finish()),
            ("query_type", qtype.finish()),
            ("src_ip", sip.finish()),
            ("src_port", Arc::new(sport.finish())),
            ("resolver_ip", rip.finish()),
            ("resolver_port", Arc::new(rport.finish())),
            ("answered_by_ip", bip.finish()),
            ("answered_by_port", Arc::new(bport.finish())),
            ("rcode", rcode.finish()),
            ("answer_count", Arc::new(ancount.finish())),
            ("answers", answers.finish()),
            ("latency_ns", Arc::new(latency.finish())),
            ("parse_error", err.finish()),
            ("socket_cookie", Arc::new(cookie.finish())),
        ]
    }
}
