//! `podtrail timeline --pod NAME|UID`: one pod's exec, exit, connection, UDP/ICMP flow, listener, DNS and privilege events
//! in time order, indented by the process tree, also for pods long deleted.
//!
//! In: a pod name (resolved through `pods` and `ip_owners`, optionally within a
//! namespace) or UID, and a time window. Out: [`Timeline`]: events ordered by time
//! with their depth in the pod's process tree (a process whose parent was not
//! exec'd inside the window starts a new root).

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, Int64Type, TimestampNanosecondType, UInt16Type, UInt32Type, UInt64Type};
use arrow::record_batch::RecordBatch;

use crate::timeexpr::format_ns;
use crate::{Engine, QueryError};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    pub time: String,
    /// `exec`, `exit`, the `net_conn` event (`connect`, `accept`, `close`,
    /// `fail`), the `net_listen` event (`listen`, `unlisten`, `bind`, `unbind`),
    /// `dns`, `flow` (a `net_flow` row: a UDP/ICMP flow's traffic in a
    /// period), or the `privilege` kind.
    pub event: String,
    pub pod_uid: String,
    pub container_id: Option<String>,
    pub pid: Option<u32>,
    pub exec_id: Option<u64>,
    pub parent_exec_id: Option<u64>,
    /// Depth in the pod's process tree (0: a root within the window).
    pub depth: usize,
    pub detail: String,
    #[serde(skip)]
    time_ns: i64,
    /// The table the event came from.
    #[serde(skip)]
    table: &'static str,
}

#[derive(Debug, serde::Serialize)]
pub struct Timeline {
    pub pods: Vec<PodRef>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PodRef {
    pub pod_uid: String,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
}

fn looks_like_uid(s: &str) -> bool {
    (s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')) || (s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit()))
}

pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Which pod UIDs `pod` names: a UID as given, or every pod of that name (in
/// `namespace` when given) known to `pods` or `ip_owners`.
pub async fn resolve_pod(engine: &Engine, pod: &str, namespace: Option<&str>) -> Result<Vec<PodRef>, QueryError> {
    if looks_like_uid(pod) {
        let uid = pod.to_ascii_lowercase();
        let (_, b) = engine
            .sql(&format!("SELECT pod_uid, pod_namespace, pod_name FROM pods WHERE pod_uid = {} AND pod_name IS NOT NULL LIMIT 1", quote(&uid)))
            .await?;
        let known = pod_refs(&b).pop();
        return Ok(vec![known.unwrap_or(PodRef { pod_uid: uid, pod_namespace: None, pod_name: None })]);
    }
    let ns = namespace.map(|n| format!(" AND pod_namespace = {}", quote(n))).unwrap_or_default();
    let (_, b) = engine
        .sql(&format!(
            "SELECT DISTINCT pod_uid, pod_namespace, pod_name FROM (\
               SELECT pod_uid, pod_namespace, pod_name FROM pods WHERE pod_name = {n}{ns} \
               UNION ALL SELECT pod_uid, pod_namespace, pod_name FROM ip_owners WHERE pod_name = {n}{ns}) ORDER BY pod_namespace, pod_uid",
            n = quote(pod)
        ))
        .await?;
    let refs = pod_refs(&b);
    if refs.is_empty() {
        let where_ = namespace.map(|n| format!(" in namespace {n}")).unwrap_or_default();
        return Err(QueryError::BadQuery(format!(
            "no pod named '{pod}'{where_} in this history (pods, ip_owners); give its UID instead (events carry pod_uid even without a metadata source)"
        )));
    }
    let mut namespaces: Vec<&str> = refs.iter().filter_map(|r| r.pod_namespace.as_deref()).collect();
    namespaces.dedup();
    if namespace.is_none() && namespaces.len() > 1 {
        return Err(QueryError::BadQuery(format!("pod name '{pod}' exists in several namespaces ({}): add --namespace", namespaces.join(", "))));
    }
    Ok(refs)
}

fn pod_refs(batches: &[RecordBatch]) -> Vec<PodRef> {
    let mut out = Vec::new();
    for b in batches {
        let (uid, ns, name) = (b.column(0).as_string::<i32>(), b.column(1).as_string::<i32>(), b.column(2).as_string::<i32>());
        for i in 0..b.num_rows() {
            out.push(PodRef {
                pod_uid: uid.value(i).into(),
                pod_namespace: ns.is_valid(i).then(|| ns.value(i).into()),
                pod_name: name.is_valid(i).then(|| name.value(i).into()),
            });
        }
    }
    out
}

/// The events of `pods` in `[since, until)` (ns; open ends when None).
pub async fn timeline(engine: &Engine, pods: Vec<PodRef>, since: Option<i64>, until: Option<i64>) -> Result<Timeline, QueryError> {
    let uids: Vec<String> = pods.iter().map(|p| quote(&p.pod_uid)).collect();
    let mut filter = format!("pod_uid IN ({})", uids.join(", "));
    if let Some(s) = since {
        filter.push_str(&format!(" AND time >= TIMESTAMP '{}'", format_ns(s)));
    }
    if let Some(u) = until {
        filter.push_str(&format!(" AND time < TIMESTAMP '{}'", format_ns(u)));
    }
    let mut events = Vec::new();
    // The tables are scanned concurrently: most of the time is per-segment
    // work (open, footer, bloom filter, decode) that overlaps well.
    let exec_q = format!("SELECT time, pod_uid, container_id, pid, exec_id, parent_exec_id, uid, binary, args, args_truncated FROM process_exec WHERE {filter}");
    let exit_q = format!("SELECT time, pod_uid, container_id, pid, exec_id, exit_code, signal, duration_ns FROM process_exit WHERE {filter}");
    let conn_q = format!(
        "SELECT time, pod_uid, container_id, pid, exec_id, event, src_ip, src_port, dst_ip, dst_port, orig_dst_ip, orig_dst_port, \
         nat_dst_ip, nat_dst_port, bytes_sent, bytes_received, duration_ns, error, comm, dst_name FROM net_conn WHERE {filter}"
    );
    let priv_q = format!(
        "SELECT time, pod_uid, container_id, pid, exec_id, kind, result, error, comm, new_uid, new_euid, new_gid, new_egid, \
         namespaces, source, target, fstype, operation, target_pid, bpf_type, file FROM privilege WHERE {filter}"
    );
    let listen_q = format!("SELECT time, pod_uid, container_id, pid, exec_id, event, protocol, ip, port, comm FROM net_listen WHERE {filter}");
    let dns_q = format!(
        "SELECT time, pod_uid, container_id, pid, exec_id, status, query_type, query_name, rcode, answers, resolver_ip, answered_by_ip, comm, transport FROM dns WHERE {filter}"
    );
    let flow_q = format!(
        "SELECT time, pod_uid, container_id, pid, exec_id, protocol, src_ip, src_port, dst_ip, dst_port, nat_dst_ip, nat_dst_port, \
         packets_out, bytes_out, packets_in, bytes_in, icmp_types_out, icmp_types_in, comm, initiated FROM net_flow WHERE {filter}"
    );
    let (execs, exits, conns, listens, dns, privs, flows) = futures::try_join!(
        engine.sql(&exec_q),
        engine.sql(&exit_q),
        engine.sql(&conn_q),
        engine.sql(&listen_q),
        engine.sql(&dns_q),
        engine.sql(&priv_q),
        engine.sql(&flow_q)
    )?;
    for b in &execs.1 {
        let args = b.column(8).as_list::<i32>();
        for i in 0..b.num_rows() {
            let argv: Vec<String> = {
                let a = args.value(i);
                let a = a.as_string::<i32>();
                (0..a.len()).map(|j| shell_word(a.value(j))).collect()
            };
            let trunc = if b.column(9).as_boolean().value(i) { " …(args truncated)" } else { "" };
            let detail = format!("{} [{}] uid {}{trunc}", str_at(b, 7, i).unwrap_or_default(), argv.join(" "), b.column(6).as_primitive::<UInt32Type>().value(i));
            events.push(event(b, i, "exec", detail, Some(3), Some(4), Some(5)));
        }
    }
    for b in &exits.1 {
        for i in 0..b.num_rows() {
            let (code, sig) = (b.column(5).as_primitive::<Int32Type>().value(i), b.column(6).as_primitive::<Int32Type>().value(i));
            let how = if sig != 0 { format!("killed by signal {sig}") } else { format!("exit code {code}") };
            let dur = b.column(7).as_primitive::<UInt64Type>();
            let ran = if dur.is_valid(i) { format!(" after {}", human_ns(dur.value(i))) } else { String::new() };
            events.push(event(b, i, "exit", format!("{how}{ran}"), Some(3), Some(4), None));
        }
    }
    for b in &conns.1 {
        for i in 0..b.num_rows() {
            let kind = str_at(b, 5, i).unwrap_or_default();
            let port = |c: usize| b.column(c).as_primitive::<UInt16Type>().value(i);
            let mut d = format!("{}:{} -> {}:{}", str_at(b, 6, i).unwrap_or_default(), port(7), str_at(b, 8, i).unwrap_or_default(), port(9));
            if let (Some(o), Some(n)) = (str_at(b, 10, i), str_at(b, 12, i)) {
                d.push_str(&format!(" (asked for {o}:{}, reached {n}:{})", port(11), port(13)));
            }
            let u64_at = |c: usize| {
                let a = b.column(c).as_primitive::<UInt64Type>();
                a.is_valid(i).then(|| a.value(i))
            };
            if let (Some(s), Some(r), Some(t)) = (u64_at(14), u64_at(15), u64_at(16)) {
                d.push_str(&format!(", sent {s} B, received {r} B, open {}", human_ns(t)));
            }
            if let Some(e) = str_at(b, 17, i) {
                d.push_str(&format!(", {e}"));
            }
            if let Some(c) = str_at(b, 18, i) {
                d.push_str(&format!(" by {c}"));
            }
            if let Some(n) = str_at(b, 19, i) {
                d.push_str(&format!(" [{n}]"));
            }
            events.push(event(b, i, "net", d, Some(3), Some(4), None));
            let last = events.last_mut().expect("pushed");
            last.event = kind;
        }
    }
    for b in &listens.1 {
        for i in 0..b.num_rows() {
            let port = b.column(8).as_primitive::<UInt16Type>().value(i);
            let (ip, proto) = (str_at(b, 7, i).unwrap_or_default(), str_at(b, 6, i).unwrap_or_default());
            let at = if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
            let d = format!("{proto} {at} by {}", str_at(b, 9, i).unwrap_or_default());
            let mut e = event(b, i, "listen", d, Some(3), Some(4), None);
            e.event = str_at(b, 5, i).unwrap_or_default();
            events.push(e);
        }
    }
    for b in &dns.1 {
        for i in 0..b.num_rows() {
            let s = |c: usize| str_at(b, c, i);
            let mut d = format!("{} {}", s(6).unwrap_or_else(|| "?".into()), s(7).unwrap_or_else(|| "(unparsed)".into()));
            match (s(5).as_deref(), s(8)) {
                (Some("answered" | "answer_only"), Some(rcode)) => {
                    d.push_str(&format!(" -> {rcode}"));
                    if let Some(a) = s(9) {
                        d.push_str(&format!(": {a}"));
                    }
                }
                (status, _) => d.push_str(&format!(" ({})", status.unwrap_or_default())),
            }
            d.push_str(&format!(" via {} {}", s(13).unwrap_or_default(), s(10).unwrap_or_default()));
            if let Some(by) = s(11).filter(|by| Some(by) != s(10).as_ref()) {
                d.push_str(&format!(" (answered by {by})"));
            }
            if let Some(c) = s(12) {
                d.push_str(&format!(" by {c}"));
            }
            events.push(event(b, i, "dns", d, Some(3), Some(4), None));
        }
    }
    for b in &flows.1 {
        for i in 0..b.num_rows() {
            let s = |c: usize| str_at(b, c, i);
            let port = |c: usize| b.column(c).as_primitive::<UInt16Type>().value(i);
            let n = |c: usize| b.column(c).as_primitive::<UInt64Type>().value(i);
            let at = |ip: Option<String>, p: u16| {
                let ip = ip.unwrap_or_default();
                match (p, ip.contains(':')) {
                    (0, _) => ip,
                    (p, true) => format!("[{ip}]:{p}"),
                    (p, false) => format!("{ip}:{p}"),
                }
            };
            let arrow = if s(19).as_deref() == Some("remote") { "<-" } else { "->" };
            let mut d = format!("{} {} {arrow} {}", s(5).unwrap_or_default(), at(s(6), port(7)), at(s(8), port(9)));
            if let Some(nat) = s(10) {
                d.push_str(&format!(" (reached {})", at(Some(nat), port(11))));
            }
            d.push_str(&format!(", out {} pkt {} B, in {} pkt {} B", n(12), n(13), n(14), n(15)));
            if let Some(t) = s(16) {
                d.push_str(&format!(", sent {t}"));
            }
            if let Some(t) = s(17) {
                d.push_str(&format!(", received {t}"));
            }
            if let Some(c) = s(18) {
                d.push_str(&format!(" by {c}"));
            }
            events.push(event(b, i, "flow", d, Some(3), Some(4), None));
        }
    }
    for b in &privs.1 {
        for i in 0..b.num_rows() {
            let kind = str_at(b, 5, i).unwrap_or_default();
            let id = |c: usize| {
                let a = b.column(c).as_primitive::<UInt32Type>();
                a.is_valid(i).then(|| a.value(i).to_string())
            };
            let what: Vec<String> = match kind.as_str() {
                "mount" => vec![format!("{} {} on {}", str_at(b, 16, i).unwrap_or_default(), str_at(b, 14, i).unwrap_or_default(), str_at(b, 15, i).unwrap_or_default())],
                "umount" => vec![str_at(b, 15, i).unwrap_or_default()],
                "ptrace" => vec![str_at(b, 17, i).unwrap_or_default(), format!("pid {}", id(18).unwrap_or_default())],
                "bpf" => [str_at(b, 17, i), str_at(b, 19, i)].into_iter().flatten().collect(),
                "capability" | "socket" => vec![str_at(b, 17, i).unwrap_or_default()],
                _ => [id(9).map(|u| format!("uid {u}")), id(10).map(|u| format!("euid {u}")), id(11).map(|g| format!("gid {g}")), id(12).map(|g| format!("egid {g}")), str_at(b, 13, i), str_at(b, 20, i)]
                    .into_iter()
                    .flatten()
                    .collect(),
            };
            let result = b.column(6).as_primitive::<Int64Type>().value(i);
            let outcome = match str_at(b, 7, i) {
                Some(e) => format!("refused: {e}"),
                None => format!("= {result}"),
            };
            let d = format!("{kind}({}) {outcome} by {}", what.join(", "), str_at(b, 8, i).unwrap_or_default());
            let mut e = event(b, i, "privilege", d, Some(3), Some(4), None);
            e.event = kind;
            events.push(e);
        }
    }
    // Exec, exit, connect of one process at the same instant: keep that order.
    let rank = |e: &str| match e {
        "exec" => 0,
        "exit" => 2,
        _ => 1,
    };
    events.sort_by(|a, b| a.time_ns.cmp(&b.time_ns).then(rank(&a.event).cmp(&rank(&b.event))));
    // Process tree depth: an exec is one deeper than its parent exec (when the
    // parent is in this timeline); other events sit at their process's depth.
    let mut depth: HashMap<u64, usize> = HashMap::new();
    for e in events.iter_mut() {
        if e.event == "exec" {
            let d = e.parent_exec_id.and_then(|p| depth.get(&p)).map(|d| d + 1).unwrap_or(0);
            if let Some(id) = e.exec_id {
                depth.insert(id, d);
            }
            e.depth = d;
        } else {
            e.depth = e.exec_id.and_then(|id| depth.get(&id)).copied().unwrap_or(0);
        }
    }
    Ok(Timeline { pods, since: since.map(format_ns), until: until.map(format_ns), events })
}

fn str_at(b: &RecordBatch, c: usize, i: usize) -> Option<String> {
    let a = b.column(c).as_string::<i32>();
    a.is_valid(i).then(|| a.value(i).to_string())
}

fn event(b: &RecordBatch, i: usize, kind: &str, detail: String, pid: Option<usize>, exec_id: Option<usize>, parent: Option<usize>) -> Event {
    let u32_at = |c: usize| {
        let a = b.column(c).as_primitive::<UInt32Type>();
        a.is_valid(i).then(|| a.value(i))
    };
    let u64_at = |c: usize| {
        let a = b.column(c).as_primitive::<UInt64Type>();
        a.is_valid(i).then(|| a.value(i))
    };
    let time_ns = b.column(0).as_primitive::<TimestampNanosecondType>().value(i);
    let table = match kind {
        "exec" => "process_exec",
        "exit" => "process_exit",
        "privilege" => "privilege",
        "listen" => "net_listen",
        "dns" => "dns",
        "flow" => "net_flow",
        _ => "net_conn",
    };
    Event {
        table,
        time: format_ns(time_ns),
        event: kind.into(),
        pod_uid: str_at(b, 1, i).unwrap_or_default(),
        container_id: str_at(b, 2, i),
        pid: pid.and_then(u32_at),
        exec_id: exec_id.and_then(u64_at),
        parent_exec_id: parent.and_then(u64_at),
        depth: 0,
        detail,
        time_ns,
    }
}

/// A word as a shell would need it quoted (so `sh -c 'a b'` reads back right).
fn shell_word(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c)) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

fn human_ns(ns: u64) -> String {
    match ns {
        n if n < 1_000_000 => format!("{:.0} µs", n as f64 / 1e3),
        n if n < 1_000_000_000 => format!("{:.1} ms", n as f64 / 1e6),
        n => format!("{:.1} s", n as f64 / 1e9),
    }
}

impl std::fmt::Display for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.pods {
            match (&p.pod_namespace, &p.pod_name) {
                (Some(ns), Some(n)) => writeln!(f, "pod {ns}/{n} (uid {})", p.pod_uid)?,
                _ => writeln!(f, "pod uid {} (name unknown)", p.pod_uid)?,
            }
        }
        writeln!(f, "window: {} .. {}", self.since.as_deref().unwrap_or("start of history"), self.until.as_deref().unwrap_or("now"))?;
        let multi = self.pods.len() > 1;
        for e in &self.events {
            let pid = e.pid.map(|p| format!("pid {p}")).unwrap_or_default();
            let pod = if multi { format!(" [{}]", &e.pod_uid[..8.min(e.pod_uid.len())]) } else { String::new() };
            writeln!(f, "{:<30}{pod}  {:<8} {:<11} {}{}", e.time, e.event, pid, "  ".repeat(e.depth), e.detail)?;
        }
        if self.events.is_empty() {
            writeln!(f, "no events of this pod in the window: check the name or UID (`podtrail sql \"SELECT pod_uid, pod_name FROM pods\"`), or widen --since/--until")?;
        }
        let count = |t: &str| self.events.iter().filter(|e| e.table == t).count();
        writeln!(
            f,
            "{} events: {} exec, {} exit, {} connection, {} flow, {} listener, {} dns, {} privilege",
            self.events.len(),
            count("process_exec"),
            count("process_exit"),
            count("net_conn"),
            count("net_flow"),
            count("net_listen"),
            count("dns"),
            count("privilege")
        )
    }
}
