//! DNS: the packets the kernel sends (`decode::DnsPacketRaw`) parsed and paired
//! into `dns` records, one per query with its answer; and the names those
//! answers gave, which `net_conn` rows to the same address then carry
//! (`dst_name`).
//!
//! Part of the decode stage, on the ring reader's thread (it sees every record
//! in ring order, before rows are batched): [`Dns::packet`] takes each packet,
//! [`Dns::expire`] ends the queries whose answer did not come in time, and
//! [`Dns::drain`] those still waiting when the recorder stops. No I/O.
//!
//! Rules:
//! - A query and its answer are paired by socket cookie, transaction id and
//!   question (name case-insensitively, type): two concurrent queries for the
//!   same name with different ids are each paired with their own answer.
//! - Nothing is invented: a query without an answer within [`ANSWER_TIMEOUT_NS`]
//!   is `unanswered`; an answer without its query is a row of its own
//!   (`answer_only`); a message that does not parse keeps what did
//!   (`parse_error`); a packet too short for a DNS header (or a TCP segment
//!   that does not start a message) is counted as a decode loss, never a row.
//! - Parsing is bounded: names follow at most [`MAX_POINTERS`] compression
//!   pointers, each pointing strictly backwards, and are at most 255 bytes.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use crate::decode::{Comm, DnsPacketRaw};

/// How long a query waits for its answer before it is a row of its own
/// (`unanswered`): twice glibc's default timeout per try (5 s).
pub const ANSWER_TIMEOUT_NS: u64 = 10_000_000_000;

/// Queries waiting for their answer at most: beyond it the oldest is written
/// at once (status `pending`; its answer, if it comes, is an `answer_only` row).
pub const MAX_PENDING: usize = 65_536;

/// How long after an answer's TTL ran out its name is still given to
/// connections to its addresses: clients cache past the TTL (the JVM 30 s by
/// default, resolvers' stale answers), and connect some time after the lookup.
pub const NAME_MARGIN_NS: u64 = 60_000_000_000;

/// Addresses with a name remembered at most (the oldest answers' expire first;
/// beyond it new answers give no `dst_name` until some expire).
pub const MAX_NAMES: usize = 200_000;

/// Compression pointers followed in one name at most.
pub const MAX_POINTERS: usize = 32;

/// One `dns` row's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRaw {
    /// `answered`, `unanswered`, `answer_only` or `pending`.
    pub status: &'static str,
    /// Kernel time of the query (of the answer for `answer_only`).
    pub time_boot_ns: u64,
    pub cgroup_id: u64,
    pub cookie: u64,
    pub owner: Option<(u32, Comm)>,
    pub transport: &'static str,
    pub family: &'static str,
    pub txid: u16,
    pub question: Option<(String, u16)>,
    pub src: (IpAddr, u16),
    pub resolver: (IpAddr, u16),
    pub answered_by: Option<(IpAddr, u16)>,
    pub rcode: Option<u8>,
    pub answer_count: Option<u16>,
    pub answers: Option<String>,
    pub latency_ns: Option<u64>,
    pub parse_error: Option<String>,
}

/// One resource record of an answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub rtype: u16,
    pub ttl: u32,
    pub data: RecordData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    Addr(IpAddr),
    Name(String),
    /// Another type: its length in bytes.
    Bytes(usize),
}

/// A DNS message as far as it parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub id: u16,
    pub response: bool,
    pub rcode: u8,
    pub question: Option<(String, u16)>,
    pub ancount: u16,
    pub answers: Vec<Record>,
    /// Why parsing stopped early, when it did.
    pub error: Option<String>,
}

/// Parse a DNS message. Only a message shorter than its 12-byte header is an
/// error; anything after the header that does not parse ends parsing there
/// (`Message::error`), keeping what came before.
pub fn parse(b: &[u8]) -> Result<Message, String> {
    if b.len() < 12 {
        return Err(format!("{} bytes, shorter than a DNS header (12)", b.len()));
    }
    let be = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let flags = be(2);
    let mut m = Message { id: be(0), response: flags & 0x8000 != 0, rcode: (flags & 0xf) as u8, ancount: be(6), ..Message::default() };
    let qdcount = be(4);
    let mut at = 12;
    if qdcount == 0 {
        m.error = Some("no question".into());
        return Ok(m);
    }
    // Only the first question is kept (servers answer one; more is unusual).
    let q = name(b, at).and_then(|(n, next)| match b.get(next..next + 4) {
        Some(t) => Ok((n, u16::from_be_bytes([t[0], t[1]]), next + 4)),
        None => Err(format!("question cut at byte {}", b.len())),
    });
    match q {
        Ok((n, t, next)) => {
            m.question = Some((n, t));
            at = next;
        }
        Err(e) => {
            m.error = Some(format!("question: {e}"));
            return Ok(m);
        }
    }
    for _ in 1..qdcount {
        match name(b, at) {
            Ok((_, next)) if next + 4 <= b.len() => at = next + 4,
            Ok(_) => {
                m.error = Some(format!("question cut at byte {}", b.len()));
                return Ok(m);
            }
            Err(e) => {
                m.error = Some(format!("question: {e}"));
                return Ok(m);
            }
        }
    }
    for i in 0..m.ancount {
        match record(b, at) {
            Ok((r, next)) => {
                m.answers.push(r);
                at = next;
            }
            Err(e) => {
                m.error = Some(format!("answer {} of {}: {e}", i + 1, m.ancount));
                break;
            }
        }
    }
    Ok(m)
}

/// One resource record at `at`: it and where the next begins.
fn record(b: &[u8], at: usize) -> Result<(Record, usize), String> {
    let (owner, next) = name(b, at)?;
    let fixed = b.get(next..next + 10).ok_or_else(|| format!("record cut at byte {}", b.len()))?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    let start = next + 10;
    let rdata = b.get(start..start + len).ok_or_else(|| format!("record data cut at byte {} ({len} bytes announced)", b.len()))?;
    let data = match (rtype, len) {
        (1, 4) => RecordData::Addr(IpAddr::from(<[u8; 4]>::try_from(rdata).expect("4 bytes"))),
        (28, 16) => RecordData::Addr(IpAddr::from(<[u8; 16]>::try_from(rdata).expect("16 bytes"))),
        (5 | 2 | 12, _) => RecordData::Name(name(b, start)?.0),
        _ => RecordData::Bytes(len),
    };
    Ok((Record { name: owner, rtype, ttl, data }, start + len))
}

/// The name at `at` and where what follows it begins. Labels are joined by
/// dots (no final dot; the root is `.`); bytes outside printable ASCII, and
/// dots and backslashes inside a label, are written `\DDD` as dig does.
fn name(b: &[u8], mut at: usize) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut end = None; // where the name ends in the message (before the first pointer)
    let mut pointers = 0;
    let mut wire_len = 1usize; // the final zero
    loop {
        let len = *b.get(at).ok_or_else(|| format!("name cut at byte {}", b.len()))?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                let next = end.unwrap_or(at + 1);
                if out.is_empty() {
                    out.push('.');
                }
                return Ok((out, next));
            }
            0x00 => {
                let label = b.get(at + 1..at + 1 + usize::from(len)).ok_or_else(|| format!("name cut at byte {}", b.len()))?;
                wire_len += 1 + label.len();
                if wire_len > 255 {
                    return Err("name longer than 255 bytes".into());
                }
                if !out.is_empty() {
                    out.push('.');
                }
                for &c in label {
                    if c.is_ascii_graphic() && c != b'.' && c != b'\\' {
                        out.push(char::from(c));
                    } else {
                        out.push_str(&format!("\\{c:03}"));
                    }
                }
                at += 1 + usize::from(len);
            }
            0xc0 => {
                let lo = *b.get(at + 1).ok_or_else(|| format!("name cut at byte {}", b.len()))?;
                let target = usize::from(len & 0x3f) << 8 | usize::from(lo);
                // Strictly backwards: a pointer can never loop.
                if target >= at {
                    return Err(format!("compression pointer at byte {at} to byte {target} does not point backwards"));
                }
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return Err(format!("more than {MAX_POINTERS} compression pointers"));
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            _ => return Err(format!("label type 0x{:02x} at byte {at}", len & 0xc0)),
        }
    }
}

/// A record type's name (`TYPE<n>` for the ones not listed).
pub fn type_name(t: u16) -> std::borrow::Cow<'static, str> {
    let n = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        t => return format!("TYPE{t}").into(),
    };
    n.into()
}

/// A response code's name (`RCODE<n>` for the others).
pub fn rcode_name(r: u8) -> std::borrow::Cow<'static, str> {
    let n = match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        r => return format!("RCODE{r}").into(),
    };
    n.into()
}

fn answers_text(records: &[Record]) -> String {
    let mut out = String::new();
    for r in records {
        if !out.is_empty() {
            out.push_str("; ");
        }
        let data = match &r.data {
            RecordData::Addr(a) => a.to_string(),
            RecordData::Name(n) => n.clone(),
            RecordData::Bytes(n) => format!("({n} bytes)"),
        };
        out.push_str(&format!("{} {} {} ttl={}", r.name, type_name(r.rtype), data, r.ttl));
    }
    out
}

/// A query waiting for its answer.
struct Pending {
    /// Its place in arrival order (see `Dns::arrivals`).
    seq: u64,
    packet: DnsPacketRaw,
    message: Message,
}

/// Why a packet gave no row (counted by the caller as a decode loss).
#[derive(Debug, PartialEq, Eq)]
pub struct NotDns(pub String);

/// Queries waiting for their answer, and the names answers gave.
#[derive(Default)]
pub struct Dns {
    /// By (socket cookie, transaction id), oldest first.
    pending: HashMap<(u64, u16), VecDeque<Pending>>,
    pending_len: usize,
    /// Every query that waited, in arrival order: (kernel time, key, seq).
    /// Answered ones are dropped from the front lazily, so the oldest waiting
    /// query and the expired ones are found without a scan of `pending`.
    arrivals: VecDeque<(u64, (u64, u16), u64)>,
    next_seq: u64,
    /// (cgroup, address) -> (name, kernel time until which it is given).
    names: HashMap<(u64, IpAddr), (Arc<str>, u64)>,
    /// Kernel time of the next sweep of `names` (once a second: a scan of
    /// every name at each reader pass would cost more than the DNS itself).
    next_sweep: u64,
}

impl Dns {
    /// Queries waiting for their answer.
    pub fn pending(&self) -> usize {
        self.pending_len
    }

    /// Kernel time of the oldest query waiting, if any (the front of the
    /// arrivals once answered ones are dropped from it, see [`Dns::expire`];
    /// until then an older time, never a younger one).
    pub fn oldest_pending(&self) -> Option<u64> {
        if self.pending_len == 0 {
            return None;
        }
        self.arrivals.front().map(|a| a.0)
    }

    /// Whether the arrival `(key, seq)` still waits.
    fn waiting(&self, key: &(u64, u16), seq: u64) -> bool {
        self.pending.get(key).is_some_and(|q| q.iter().any(|p| p.seq == seq))
    }

    /// Take the waiting query `(key, seq)` out.
    fn remove(&mut self, key: &(u64, u16), seq: u64) -> Option<Pending> {
        let waiting = self.pending.get_mut(key)?;
        let i = waiting.iter().position(|p| p.seq == seq)?;
        let q = waiting.remove(i);
        if waiting.is_empty() {
            self.pending.remove(key);
        }
        self.pending_len -= usize::from(q.is_some());
        q
    }

    /// Drop answered queries from the front of the arrivals.
    fn trim_arrivals(&mut self) {
        while let Some(&(_, key, seq)) = self.arrivals.front() {
            if self.waiting(&key, seq) {
                break;
            }
            self.arrivals.pop_front();
        }
    }

    /// Take one packet: a query waits for its answer (records come back only
    /// when [`MAX_PENDING`] forces the oldest out); an answer completes its
    /// query's record, or is a record of its own.
    pub fn packet(&mut self, p: DnsPacketRaw, out: &mut Vec<DnsRaw>) -> Result<(), NotDns> {
        let message = parse(message_bytes(&p)?).map_err(NotDns)?;
        if !p.answer {
            if self.pending_len >= MAX_PENDING
                && let Some(oldest) = self.take_oldest()
            {
                out.push(record_of(oldest, None, "pending"));
            }
            let (key, seq) = ((p.cookie, message.id), self.next_seq);
            self.next_seq += 1;
            self.arrivals.push_back((p.time_boot_ns, key, seq));
            self.pending.entry(key).or_default().push_back(Pending { seq, packet: p, message });
            self.pending_len += 1;
            // Answers out of arrival order leave answered entries behind an
            // old waiting one: compact when they outnumber the waiting ones.
            if self.arrivals.len() > 4 * MAX_PENDING {
                let pending = &self.pending;
                self.arrivals.retain(|(_, k, s)| pending.get(k).is_some_and(|q| q.iter().any(|p| p.seq == *s)));
            }
            return Ok(());
        }
        let key = (p.cookie, message.id);
        let query = self.pending.get_mut(&key).and_then(|waiting| {
            let i = waiting.iter().position(|q| same_question(&q.message.question, &message.question))?;
            waiting.remove(i)
        });
        if self.pending.get(&key).is_some_and(VecDeque::is_empty) {
            self.pending.remove(&key);
        }
        match query {
            Some(q) => {
                self.pending_len -= 1;
                // Answered in arrival order (the common case): the front goes.
                if self.arrivals.front().is_some_and(|a| a.2 == q.seq) {
                    self.arrivals.pop_front();
                    self.trim_arrivals();
                }
                self.remember_names(&q.packet, &q.message, &p, &message);
                out.push(record_of(q, Some((p, message)), "answered"));
            }
            None => out.push(answer_only(p, message)),
        }
        Ok(())
    }

    /// Queries waiting since before `now - ANSWER_TIMEOUT_NS` become
    /// `unanswered` records; names whose time ran out are forgotten.
    pub fn expire(&mut self, now_boot_ns: u64, out: &mut Vec<DnsRaw>) {
        let deadline = now_boot_ns.saturating_sub(ANSWER_TIMEOUT_NS);
        while let Some(&(t, key, seq)) = self.arrivals.front() {
            if t >= deadline && self.waiting(&key, seq) {
                break;
            }
            self.arrivals.pop_front();
            if t < deadline
                && let Some(q) = self.remove(&key, seq)
            {
                out.push(record_of(q, None, "unanswered"));
            }
        }
        if self.pending_len == 0 {
            self.arrivals.clear();
        }
        if now_boot_ns >= self.next_sweep {
            self.names.retain(|_, (_, until)| *until >= now_boot_ns);
            self.next_sweep = now_boot_ns + 1_000_000_000;
        }
    }

    /// Every query still waiting, as `pending` records (the recorder stops).
    pub fn drain(&mut self, out: &mut Vec<DnsRaw>) {
        let mut all: Vec<Pending> = self.pending.drain().flat_map(|(_, q)| q).collect();
        self.pending_len = 0;
        self.arrivals.clear();
        all.sort_by_key(|q| q.packet.time_boot_ns);
        out.extend(all.into_iter().map(|q| record_of(q, None, "pending")));
    }

    /// The name `cgroup_id` most recently resolved to `addr`, if it is still
    /// given at kernel time `at` (see [`NAME_MARGIN_NS`]).
    pub fn name_for(&self, cgroup_id: u64, addr: IpAddr, at: u64) -> Option<Arc<str>> {
        self.names.get(&(cgroup_id, addr)).filter(|(_, until)| *until >= at).map(|(n, _)| n.clone())
    }

    fn take_oldest(&mut self) -> Option<Pending> {
        self.trim_arrivals();
        let (_, key, seq) = self.arrivals.pop_front()?;
        self.remove(&key, seq)
    }

    /// Each address an answered query gave becomes its question's name for
    /// the asking cgroup, until TTL + margin after the answer.
    fn remember_names(&mut self, query: &DnsPacketRaw, asked: &Message, answer: &DnsPacketRaw, message: &Message) {
        let Some((qname, _)) = &asked.question else { return };
        let name: Arc<str> = Arc::from(qname.as_str());
        for r in &message.answers {
            if let RecordData::Addr(a) = r.data {
                let until = answer.time_boot_ns + u64::from(r.ttl) * 1_000_000_000 + NAME_MARGIN_NS;
                let key = (query.cgroup_id, a);
                if self.names.len() < MAX_NAMES || self.names.contains_key(&key) {
                    self.names.insert(key, (name.clone(), until));
                }
            }
        }
    }
}

/// The DNS message in a packet's payload: UDP, all of it; TCP, after its
/// 2-byte length (only a segment that starts a message carries one).
fn message_bytes(p: &DnsPacketRaw) -> Result<&[u8], NotDns> {
    if p.transport == "udp" {
        return Ok(&p.data);
    }
    let len = match p.data.get(0..2) {
        Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])),
        None => return Err(NotDns(format!("TCP segment of {} bytes: no DNS length", p.payload_len))),
    };
    if len < 12 {
        return Err(NotDns(format!("TCP segment does not start a DNS message (length {len})")));
    }
    Ok(&p.data[2..p.data.len().min(2 + len)])
}

fn same_question(a: &Option<(String, u16)>, b: &Option<(String, u16)>) -> bool {
    match (a, b) {
        (Some((an, at)), Some((bn, bt))) => at == bt && an.eq_ignore_ascii_case(bn),
        // An answer without a parsed question pairs with the oldest query of its id.
        (_, None) => true,
        (None, Some(_)) => false,
    }
}

/// What the message misses because the kernel kept only its first bytes.
fn cut_note(p: &DnsPacketRaw, m: &Message) -> Option<String> {
    let kept = p.data.len() as u64;
    let whole = u64::from(p.payload_len);
    match (&m.error, kept < whole) {
        (Some(e), true) => Some(format!("{e} (only the first {kept} of {whole} bytes were kept)")),
        (Some(e), false) => Some(e.clone()),
        (None, true) if m.answers.len() < usize::from(m.ancount) => Some(format!("only the first {kept} of {whole} bytes were kept")),
        (None, _) => None,
    }
}

/// The record of a query, with its answer when one came.
fn record_of(q: Pending, answer: Option<(DnsPacketRaw, Message)>, status: &'static str) -> DnsRaw {
    let Pending { packet: p, message: m, .. } = q;
    let mut r = DnsRaw {
        status,
        time_boot_ns: p.time_boot_ns,
        cgroup_id: p.cgroup_id,
        cookie: p.cookie,
        owner: p.owner,
        transport: p.transport,
        family: p.family,
        txid: m.id,
        question: m.question.clone(),
        src: p.local,
        resolver: p.asked.unwrap_or(p.remote),
        answered_by: None,
        rcode: None,
        answer_count: None,
        answers: None,
        latency_ns: None,
        parse_error: cut_note(&p, &m).map(|e| format!("query: {e}")),
    };
    if let Some((a, am)) = answer {
        r.owner = r.owner.or(a.owner);
        r.answered_by = Some(a.nat.unwrap_or(a.remote));
        r.rcode = Some(am.rcode);
        r.answer_count = Some(am.ancount);
        r.answers = (!am.answers.is_empty()).then(|| answers_text(&am.answers));
        r.latency_ns = Some(a.time_boot_ns.saturating_sub(p.time_boot_ns));
        if let Some(e) = cut_note(&a, &am) {
            r.parse_error = Some(match r.parse_error {
                Some(q) => format!("{q}; answer: {e}"),
                None => format!("answer: {e}"),
            });
        }
    }
    r
}

/// An answer whose query was not seen: a record of its own.
fn answer_only(a: DnsPacketRaw, m: Message) -> DnsRaw {
    DnsRaw {
        status: "answer_only",
        time_boot_ns: a.time_boot_ns,
        cgroup_id: a.cgroup_id,
        cookie: a.cookie,
        owner: a.owner,
        transport: a.transport,
        family: a.family,
        txid: m.id,
        question: m.question.clone(),
        src: a.local,
        resolver: a.asked.unwrap_or(a.remote),
        answered_by: Some(a.nat.unwrap_or(a.remote)),
        rcode: Some(m.rcode),
        answer_count: Some(m.ancount),
        answers: (!m.answers.is_empty()).then(|| answers_text(&m.answers)),
        latency_ns: None,
        parse_error: cut_note(&a, &m).map(|e| format!("answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message: header (id, flags, one question, `answers.len()` answers),
    /// the question `qname`/`qtype`, then each answer (a pointer to the
    /// question's name, type, class IN, ttl, rdata).
    pub(crate) fn message(id: u16, flags: u16, qname: &str, qtype: u16, answers: &[(u16, u32, Vec<u8>)]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [id, flags, 1, answers.len() as u16, 0, 0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for label in qname.split('.') {
            b.push(label.len() as u8);
            b.extend_from_slice(label.as_bytes());
        }
        b.push(0);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        for (t, ttl, rdata) in answers {
            b.extend_from_slice(&[0xc0, 12]);
            b.extend_from_slice(&t.to_be_bytes());
            b.extend_from_slice(&1u16.to_be_bytes());
            b.extend_from_slice(&ttl.to_be_bytes());
            b.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            b.extend_from_slice(rdata);
        }
        b
    }

    fn packet(answer: bool, cookie: u64, time: u64, data: Vec<u8>) -> DnsPacketRaw {
        DnsPacketRaw {
            answer,
            transport: "udp",
            family: "ipv4",
            owner: Some((42, "curl".into())),
            time_boot_ns: time,
            cgroup_id: 7,
            cookie,
            local: ("10.244.1.2".parse().unwrap(), 40000),
            remote: ("10.96.0.10".parse().unwrap(), 53),
            asked: Some(("10.96.0.10".parse().unwrap(), 53)),
            nat: answer.then(|| ("10.244.9.9".parse().unwrap(), 53)),
            payload_len: data.len() as u32,
            data,
        }
    }

    #[test]
    fn a_query_and_its_answer_make_one_row_with_resolver_backend_answers_and_latency() {
        let mut d = Dns::default();
        let mut out = Vec::new();
        d.packet(packet(false, 1, 1_000, message(0x1234, 0x0100, "api.example", 1, &[])), &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(d.pending(), 1);
        let answer = message(0x1234, 0x8180, "API.example", 1, &[(1, 30, vec![10, 244, 3, 7])]);
        d.packet(packet(true, 1, 5_000, answer), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!((r.status, r.txid, r.time_boot_ns, r.latency_ns), ("answered", 0x1234, 1_000, Some(4_000)));
        assert_eq!(r.question, Some(("api.example".into(), 1)));
        assert_eq!(r.resolver, ("10.96.0.10".parse().unwrap(), 53));
        assert_eq!(r.answered_by, Some(("10.244.9.9".parse().unwrap(), 53)));
        assert_eq!(r.answers.as_deref(), Some("API.example A 10.244.3.7 ttl=30"), "as the answer spelled it");
        assert_eq!((r.rcode, r.answer_count, r.parse_error.as_deref()), (Some(0), Some(1), None));
        assert_eq!(d.pending(), 0);
        // Its address now names connections from the same cgroup, TTL + margin long.
        let a: IpAddr = "10.244.3.7".parse().unwrap();
        assert_eq!(d.name_for(7, a, 6_000).as_deref(), Some("api.example"));
        assert_eq!(d.name_for(8, a, 6_000), None, "another cgroup did not resolve it");
        assert_eq!(d.name_for(7, a, 5_000 + 30_000_000_000 + NAME_MARGIN_NS + 1), None, "expired");
    }

    #[test]
    fn concurrent_queries_for_one_name_pair_by_transaction_id_and_a_lost_answer_times_out() {
        let mut d = Dns::default();
        let mut out = Vec::new();
        for (id, t) in [(1u16, 100u64), (2, 200), (3, 300)] {
            d.packet(packet(false, 9, t, message(id, 0x0100, "x.example", 1, &[])), &mut out).unwrap();
        }
        // Answers to 2 then 1 (out of order); 3 never.
        d.packet(packet(true, 9, 1_000, message(2, 0x8180, "x.example", 1, &[(1, 5, vec![1, 1, 1, 2])])), &mut out).unwrap();
        d.packet(packet(true, 9, 1_100, message(1, 0x8183, "x.example", 1, &[])), &mut out).unwrap();
        assert_eq!(out.iter().map(|r| (r.txid, r.rcode, r.latency_ns)).collect::<Vec<_>>(), [(2, Some(0), Some(800)), (1, Some(3), Some(1_000))]);
        out.clear();
        d.expire(300 + ANSWER_TIMEOUT_NS, &mut out);
        assert!(out.is_empty(), "not older than the timeout yet");
        d.expire(301 + ANSWER_TIMEOUT_NS, &mut out);
        assert_eq!(out.iter().map(|r| (r.status, r.txid, r.rcode)).collect::<Vec<_>>(), [("unanswered", 3, None)]);
        // Its answer, late: a row of its own.
        out.clear();
        d.packet(packet(true, 9, 2 * ANSWER_TIMEOUT_NS, message(3, 0x8180, "x.example", 1, &[])), &mut out).unwrap();
        assert_eq!(out.iter().map(|r| (r.status, r.txid)).collect::<Vec<_>>(), [("answer_only", 3)]);
    }

    #[test]
    fn a_flood_of_queries_stays_bounded_and_every_query_is_a_row_once() {
        let mut d = Dns::default();
        let mut out = Vec::new();
        // One old query never answered, then a flood answered out of order.
        d.packet(packet(false, 1, 1, message(1, 0x0100, "old.example", 1, &[])), &mut out).unwrap();
        let n = MAX_PENDING as u64 + 10;
        for i in 0..n {
            d.packet(packet(false, 2 + i, 10 + i, message(7, 0x0100, "f.example", 1, &[])), &mut out).unwrap();
        }
        // Past the bound the oldest were written at once, as `pending`.
        assert_eq!(out.iter().map(|r| (r.status, r.cookie)).collect::<Vec<_>>()[..2], [("pending", 1), ("pending", 2)]);
        assert_eq!((d.pending(), out.len()), (MAX_PENDING, 11));
        for i in (0..n).rev() {
            d.packet(packet(true, 2 + i, 20 + n + i, message(7, 0x8180, "f.example", 1, &[])), &mut out).unwrap();
        }
        let statuses = |out: &[DnsRaw], s: &str| out.iter().filter(|r| r.status == s).count();
        assert_eq!((statuses(&out, "answered"), statuses(&out, "answer_only"), statuses(&out, "pending")), (MAX_PENDING, 10, 11));
        assert_eq!((d.pending(), d.oldest_pending()), (0, None));
        assert!(d.arrivals.len() <= 4 * MAX_PENDING, "{}", d.arrivals.len());
        d.expire(u64::MAX / 2, &mut out);
        assert!(d.arrivals.is_empty());
    }

    #[test]
    fn an_answer_for_another_question_or_socket_does_not_pair() {
        let mut d = Dns::default();
        let mut out = Vec::new();
        d.packet(packet(false, 1, 10, message(5, 0x0100, "a.example", 1, &[])), &mut out).unwrap();
        d.packet(packet(true, 1, 20, message(5, 0x8180, "b.example", 1, &[])), &mut out).unwrap();
        d.packet(packet(true, 2, 30, message(5, 0x8180, "a.example", 1, &[])), &mut out).unwrap();
        d.packet(packet(true, 1, 40, message(5, 0x8180, "a.example", 28, &[])), &mut out).unwrap();
        assert_eq!(out.iter().map(|r| r.status).collect::<Vec<_>>(), ["answer_only"; 3]);
        out.clear();
        d.drain(&mut out);
        assert_eq!(out.iter().map(|r| (r.status, r.txid)).collect::<Vec<_>>(), [("pending", 5)]);
    }

    #[test]
    fn malformed_messages_never_panic_and_keep_what_parsed() {
        // Too short: no row.
        assert!(parse(&[0; 11]).is_err());
        // A pointer to itself, a forward pointer, a chain of pointers longer than allowed.
        let mut looped = message(1, 0x8180, "a", 1, &[]);
        looped.truncate(12);
        looped.extend_from_slice(&[0xc0, 12]);
        let m = parse(&looped).unwrap();
        assert!(m.error.as_deref().unwrap().contains("does not point backwards"), "{m:?}");
        let mut fwd = message(1, 0x8180, "a", 1, &[]);
        fwd.truncate(12);
        fwd.extend_from_slice(&[0xc0, 40]);
        assert!(parse(&fwd).unwrap().error.unwrap().contains("does not point backwards"));
        // Every truncation of a real answer parses to something (or is too short).
        let full = message(7, 0x8180, "www.example.com", 1, &[(5, 60, vec![3, b'c', b'd', b'n', 0xc0, 12]), (1, 60, vec![1, 2, 3, 4])]);
        let m = parse(&full).unwrap();
        assert_eq!(m.error, None);
        assert_eq!(answers_text(&m.answers), "www.example.com CNAME cdn.www.example.com ttl=60; www.example.com A 1.2.3.4 ttl=60");
        for n in 0..full.len() {
            let _ = parse(&full[..n]);
        }
        // Every byte flipped: never a panic.
        for i in 0..full.len() {
            for v in [0u8, 0x3f, 0x40, 0xc0, 0xff] {
                let mut b = full.clone();
                b[i] = v;
                let _ = parse(&b);
            }
        }
        // An oversized label sequence: longer than 255 bytes is refused.
        let long = message(1, 0x0100, &vec!["a".repeat(63); 5].join("."), 1, &[]);
        assert!(parse(&long).unwrap().error.unwrap().contains("longer than 255"));
        // Odd bytes in a label are escaped.
        let odd = message(1, 0x0100, "a\u{1}b.c", 16, &[]);
        assert_eq!(parse(&odd).unwrap().question, Some(("a\\001b.c".into(), 16)));
    }

    #[test]
    fn tcp_messages_start_with_their_length_and_other_segments_are_not_rows() {
        let mut d = Dns::default();
        let mut out = Vec::new();
        let q = message(77, 0x0100, "t.example", 1, &[]);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        let mut p = packet(false, 3, 10, framed);
        p.transport = "tcp";
        d.packet(p.clone(), &mut out).unwrap();
        assert_eq!(d.pending(), 1);
        p.data = vec![0, 5, 1, 2, 3, 4, 5];
        assert!(d.packet(p.clone(), &mut out).is_err());
        p.data = vec![0];
        assert!(d.packet(p, &mut out).is_err());
    }

    #[test]
    fn a_message_cut_by_the_capture_says_so() {
        let answers: Vec<(u16, u32, Vec<u8>)> = (0..60).map(|i| (1, 60, vec![10, 0, 0, i])).collect();
        let full = message(1, 0x8180, "many.example", 1, &answers);
        assert!(full.len() > 512);
        let mut d = Dns::default();
        let mut out = Vec::new();
        d.packet(packet(false, 1, 1, message(1, 0x0100, "many.example", 1, &[])), &mut out).unwrap();
        let mut a = packet(true, 1, 2, full[..512].to_vec());
        a.payload_len = full.len() as u32;
        d.packet(a, &mut out).unwrap();
        let e = out[0].parse_error.as_deref().unwrap();
        assert!(e.starts_with("answer: answer ") && e.ends_with(&format!("(only the first 512 of {} bytes were kept)", full.len())), "{e}");
        assert_eq!(out[0].answer_count, Some(60));
    }
}
