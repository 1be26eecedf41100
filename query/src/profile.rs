//! `podtrail profile --pod NAME|UID | --image IMAGE`: the least privilege a
//! workload showed it needs, as a Kubernetes `securityContext`.
//!
//! In: `cap_usage` (capability checks counted per cgroup), `privilege`
//! (privileged operations) and `process_exec` (uids, capabilities at exec) of one
//! pod or of every container of one image, in a time window. Out: [`Profile`],
//! printed as ready-to-paste YAML with the evidence beside each entry.
//!
//! Rules, all from recorded evidence only:
//! - `capabilities.add`: every capability with at least one granted check;
//!   refused-only ones are listed as evidence, not added.
//! - `allowPrivilegeEscalation: false` unless a non-root process gained
//!   privilege: a successful set*id to 0, or an exec by a non-root uid that left
//!   it with capabilities (setuid-root binary, file capabilities).
//! - `runAsNonRoot: true` only when execs were seen and none ran as uid 0.
//! - No capability evidence at all when the recorder could not count checks on
//!   its kernel: then the profile says so and proposes no capability list.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, TimestampNanosecondType, UInt64Type};
use arrow::record_batch::RecordBatch;

use crate::timeexpr::format_ns;
use crate::timeline::{PodRef, quote};
use crate::{Engine, QueryError};

/// What the profile is about.
pub enum Subject {
    Pods(Vec<PodRef>),
    Image(String),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CapEvidence {
    /// e.g. `CAP_NET_BIND_SERVICE`
    pub capability: String,
    pub granted: u64,
    pub denied: u64,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct OpEvidence {
    /// `privilege.kind`
    pub kind: String,
    /// namespaces, fstype, request or file, when the kind has one
    pub what: String,
    pub count: u64,
    pub succeeded: u64,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Profile {
    pub subject: String,
    pub since: Option<String>,
    pub until: Option<String>,
    /// Why there is no capability evidence (the recorder's kernel could not
    /// count checks); the capability list is then left out.
    pub capabilities_unavailable: Option<String>,
    /// Capabilities with at least one granted check: the ones to add.
    pub add: Vec<CapEvidence>,
    /// Capabilities only ever refused.
    pub refused: Vec<CapEvidence>,
    pub operations: Vec<OpEvidence>,
    pub execs: u64,
    pub root_execs: u64,
    /// Evidence of a non-root process gaining privilege.
    pub escalations: u64,
    pub allow_privilege_escalation: bool,
    pub run_as_non_root: bool,
}

fn u64_at(b: &RecordBatch, col: usize, i: usize) -> u64 {
    let c = b.column(col);
    if c.is_null(i) {
        return 0;
    }
    match c.data_type() {
        arrow::datatypes::DataType::Int64 => c.as_primitive::<Int64Type>().value(i).max(0) as u64,
        _ => c.as_primitive::<UInt64Type>().value(i),
    }
}

fn time_at(b: &RecordBatch, col: usize, i: usize) -> String {
    let c = b.column(col);
    if c.is_null(i) { String::new() } else { format_ns(c.as_primitive::<TimestampNanosecondType>().value(i)) }
}

pub async fn profile(engine: &Engine, subject: Subject, since: Option<i64>, until: Option<i64>) -> Result<Profile, QueryError> {
    let (who, label) = match &subject {
        Subject::Pods(pods) => {
            let uids: Vec<String> = pods.iter().map(|p| quote(&p.pod_uid)).collect();
            let names: Vec<String> = pods
                .iter()
                .map(|p| match (&p.pod_namespace, &p.pod_name) {
                    (Some(ns), Some(n)) => format!("pod {ns}/{n} (uid {})", p.pod_uid),
                    _ => format!("pod uid {}", p.pod_uid),
                })
                .collect();
            (format!("pod_uid IN ({})", uids.join(", ")), names.join(", "))
        }
        Subject::Image(image) => {
            let (_, b) = engine.sql(&format!("SELECT count(*) FROM containers WHERE image = {}", quote(image))).await?;
            if b.first().map(|b| b.column(0).as_primitive::<Int64Type>().value(0)).unwrap_or(0) == 0 {
                let (_, known) = engine.sql("SELECT DISTINCT image FROM containers WHERE image IS NOT NULL ORDER BY image LIMIT 20").await?;
                let list: Vec<String> = known.iter().flat_map(|b| (0..b.num_rows()).map(|i| b.column(0).as_string::<i32>().value(i).to_string()).collect::<Vec<_>>()).collect();
                return Err(QueryError::BadQuery(format!(
                    "no container with image '{image}' in this history (images come from a CRI metadata source); known images: {}",
                    if list.is_empty() { "none".to_string() } else { list.join(", ") }
                )));
            }
            (format!("container_id IN (SELECT container_id FROM containers WHERE image = {})", quote(image)), format!("image {image}"))
        }
    };
    let mut filter = who;
    if let Some(s) = since {
        filter.push_str(&format!(" AND time >= TIMESTAMP '{}'", format_ns(s)));
    }
    if let Some(u) = until {
        filter.push_str(&format!(" AND time < TIMESTAMP '{}'", format_ns(u)));
    }

    let capabilities_unavailable = cap_unavailable(engine)?;
    let (mut add, mut refused) = (Vec::new(), Vec::new());
    let (_, caps) = engine
        .sql(&format!(
            "SELECT capability, CAST(SUM(granted) AS BIGINT), CAST(SUM(denied) AS BIGINT), MIN(first_seen), MAX(time) \
             FROM cap_usage WHERE {filter} GROUP BY capability ORDER BY capability"
        ))
        .await?;
    for b in &caps {
        for i in 0..b.num_rows() {
            let e = CapEvidence {
                capability: b.column(0).as_string::<i32>().value(i).to_string(),
                granted: u64_at(b, 1, i),
                denied: u64_at(b, 2, i),
                first_seen: time_at(b, 3, i),
                last_seen: time_at(b, 4, i),
            };
            if e.granted > 0 { add.push(e) } else { refused.push(e) }
        }
    }

    let (_, ops) = engine
        .sql(&format!(
            "SELECT kind, COALESCE(namespaces, fstype, operation, file, ''), COUNT(*), \
                    SUM(CASE WHEN result >= 0 THEN 1 ELSE 0 END), MIN(time), MAX(time) \
             FROM privilege WHERE {filter} AND kind <> 'capability' GROUP BY 1, 2 ORDER BY 1, 2"
        ))
        .await?;
    let mut operations = Vec::new();
    for b in &ops {
        for i in 0..b.num_rows() {
            operations.push(OpEvidence {
                kind: b.column(0).as_string::<i32>().value(i).to_string(),
                what: b.column(1).as_string::<i32>().value(i).to_string(),
                count: u64_at(b, 2, i),
                succeeded: u64_at(b, 3, i),
                first_seen: time_at(b, 4, i),
                last_seen: time_at(b, 5, i),
            });
        }
    }

    let (_, ex) = engine
        .sql(&format!(
            "SELECT COUNT(*), SUM(CASE WHEN uid = 0 THEN 1 ELSE 0 END), SUM(CASE WHEN uid <> 0 AND cap_effective <> 0 THEN 1 ELSE 0 END) \
             FROM process_exec WHERE {filter}"
        ))
        .await?;
    let (execs, root_execs, cap_execs) = ex.first().filter(|b| b.num_rows() > 0).map(|b| (u64_at(b, 0, 0), u64_at(b, 1, 0), u64_at(b, 2, 0))).unwrap_or_default();
    let (_, esc) = engine
        .sql(&format!(
            "SELECT COUNT(*) FROM privilege WHERE {filter} AND kind IN ('setuid', 'setreuid', 'setresuid', 'setgid', 'setregid', 'setresgid') \
             AND result >= 0 AND euid <> 0 \
             AND (new_uid = 0 OR new_euid = 0 OR new_suid = 0 OR new_gid = 0 OR new_egid = 0 OR new_sgid = 0)"
        ))
        .await?;
    let escalations = cap_execs + esc.first().filter(|b| b.num_rows() > 0).map(|b| u64_at(b, 0, 0)).unwrap_or(0);

    Ok(Profile {
        subject: label,
        since: since.map(format_ns),
        until: until.map(format_ns),
        capabilities_unavailable,
        add,
        refused,
        operations,
        execs,
        root_execs,
        escalations,
        allow_privilege_escalation: escalations > 0,
        run_as_non_root: execs > 0 && root_execs == 0,
    })
}

/// Why the recorder could not count capability checks, if it could not.
fn cap_unavailable(engine: &Engine) -> Result<Option<String>, QueryError> {
    if engine.is_lake() {
        // Whether each node could count checks is in its own catalog, not the
        // lake: an empty `cap_usage` there proves nothing.
        return Ok(Some(
            "capability profiling unavailable over a lake: whether each node's recorder could count capability checks is kept in its data dir, not exported; run `podtrail profile` on the node".into(),
        ));
    }
    Ok(engine.unavailable_programs()?.into_iter().find(|p| p.starts_with("cap_check ")).map(|p| {
        format!("capability profiling unavailable: the recorder could not attach {p} (this kernel has no capability/cap_capable tracepoint or refused the program)")
    }))
}

impl std::fmt::Display for Profile {
    /// Kubernetes YAML: `securityContext` with the evidence as comments.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "# podtrail profile of {}", self.subject)?;
        writeln!(f, "# window: {} .. {}", self.since.as_deref().unwrap_or("start of history"), self.until.as_deref().unwrap_or("now"))?;
        writeln!(f, "# evidence: {} exec(s), {} capability(ies) used, {} kind(s) of privileged operation", self.execs, self.add.len(), self.operations.len())?;
        writeln!(f, "securityContext:")?;
        if self.allow_privilege_escalation {
            writeln!(f, "  allowPrivilegeEscalation: true  # {} time(s) a non-root process gained privilege (set*id to 0, or an exec that gave it capabilities)", self.escalations)?;
        } else {
            writeln!(f, "  allowPrivilegeEscalation: false  # no non-root process gained privilege")?;
        }
        match &self.capabilities_unavailable {
            Some(why) => writeln!(f, "  # capabilities: not proposed: {why}")?,
            None => {
                writeln!(f, "  capabilities:")?;
                writeln!(f, "    drop:")?;
                writeln!(f, "      - ALL")?;
                if self.add.is_empty() {
                    writeln!(f, "    add: []  # no capability check was granted")?;
                } else {
                    writeln!(f, "    add:")?;
                    for c in &self.add {
                        let name = c.capability.strip_prefix("CAP_").unwrap_or(&c.capability);
                        writeln!(f, "      - {name}  # granted {}, denied {}, first {}, last {}", c.granted, c.denied, c.first_seen, c.last_seen)?;
                    }
                }
            }
        }
        if self.run_as_non_root {
            writeln!(f, "  runAsNonRoot: true  # none of {} exec(s) ran as uid 0", self.execs)?;
        } else if self.execs == 0 {
            writeln!(f, "  # runAsNonRoot: not proposed: no exec recorded")?;
        } else {
            writeln!(f, "  # runAsNonRoot: not proposed: {} of {} exec(s) ran as uid 0", self.root_execs, self.execs)?;
        }
        if !self.refused.is_empty() {
            writeln!(f, "# refused capability checks (not added: the workload ran without them):")?;
            for c in &self.refused {
                writeln!(f, "#   {}  denied {}, first {}, last {}", c.capability, c.denied, c.first_seen, c.last_seen)?;
            }
        }
        if !self.operations.is_empty() {
            writeln!(f, "# privileged operations seen:")?;
            for o in &self.operations {
                let what = if o.what.is_empty() { String::new() } else { format!(" {}", o.what) };
                writeln!(f, "#   {}{what}: {} ({} succeeded), first {}, last {}", o.kind, o.count, o.succeeded, o.first_seen, o.last_seen)?;
            }
        }
        Ok(())
    }
}
