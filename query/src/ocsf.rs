//! OCSF: `podtrail export --schema ocsf` maps `process_exec` / `process_exit` to
//! Process Activity (class 1007) and `net_conn` to Network Activity (4001), OCSF
//! 1.1.0, for security-lake ingestion.
//!
//! The mapping below is the one definition: it generates the SQL each segment is
//! converted with and the reference in `schema/OCSF.md` (`podtrail schema --ocsf`;
//! a test fails when that file is stale). Each field is a dotted OCSF path and an
//! SQL expression over one podtrail row; paths sharing a prefix become one struct.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use datafusion::catalog::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

/// One source table's mapping.
pub struct Mapping {
    pub table: &'static str,
    /// Directory under `<lake>/ocsf/`.
    pub class_dir: &'static str,
    pub class_name: &'static str,
    pub class_uid: u32,
    /// Groups of (OCSF path, SQL expression), in output order.
    pub fields: &'static [&'static [(&'static str, &'static str)]],
}

type Fields = &'static [(&'static str, &'static str)];

/// Every event: when, what produced it, on which node.
const COMMON: Fields = &[
    ("severity_id", "1"),
    ("time", "CAST(time AS BIGINT) / 1000000"),
    ("metadata.version", "'1.1.0'"),
    ("metadata.product.name", "'podtrail'"),
    ("metadata.product.vendor_name", "'podtrail'"),
    ("device.hostname", "node"),
];

/// Every event of a process or socket in a pod.
const POD: Fields = &[
    ("container.uid", "container_id"),
    ("container.pod_uuid", "pod_uid"),
    ("unmapped.pod_name", "pod_name"),
    ("unmapped.pod_namespace", "pod_namespace"),
];

/// Process Activity: the process itself.
const PROCESS: Fields = &[("process.pid", "CAST(pid AS INT)"), ("process.uid", "CAST(exec_id AS VARCHAR)")];

pub const PROCESS_EXEC: Mapping = Mapping {
    table: "process_exec",
    class_dir: "process_activity",
    class_name: "Process Activity",
    class_uid: 1007,
    fields: &[
        &[
            ("class_uid", "1007"),
            ("category_uid", "1"),
            ("activity_id", "1"),
            ("activity_name", "'Launch'"),
            ("type_uid", "100701"),
        ],
        COMMON,
        PROCESS,
        &[
            ("process.name", "comm"),
            ("process.cmd_line", "array_to_string(args, ' ')"),
            ("process.file.path", "binary"),
            ("process.user.uid", "CAST(uid AS VARCHAR)"),
            ("process.parent_process.pid", "CAST(ppid AS INT)"),
            ("process.parent_process.uid", "CAST(parent_exec_id AS VARCHAR)"),
            ("actor.process.pid", "CAST(ppid AS INT)"),
            ("actor.process.uid", "CAST(parent_exec_id AS VARCHAR)"),
        ],
        POD,
        &[
            ("unmapped.cgroup_id", "CAST(cgroup_id AS VARCHAR)"),
            ("unmapped.gid", "CAST(gid AS VARCHAR)"),
            ("unmapped.args_truncated", "args_truncated"),
            ("unmapped.cap_effective", "CAST(cap_effective AS VARCHAR)"),
            ("unmapped.netns", "CAST(netns AS VARCHAR)"),
            ("unmapped.fileless", "fileless"),
        ],
    ],
};

pub const PROCESS_EXIT: Mapping = Mapping {
    table: "process_exit",
    class_dir: "process_activity",
    class_name: "Process Activity",
    class_uid: 1007,
    fields: &[
        &[
            ("class_uid", "1007"),
            ("category_uid", "1"),
            ("activity_id", "2"),
            ("activity_name", "'Terminate'"),
            ("type_uid", "100702"),
        ],
        COMMON,
        PROCESS,
        &[("exit_code", "exit_code")],
        POD,
        &[
            ("unmapped.cgroup_id", "CAST(cgroup_id AS VARCHAR)"),
            ("unmapped.signal", "signal"),
            ("unmapped.duration_ns", "CAST(duration_ns AS VARCHAR)"),
        ],
    ],
};

pub const NET_CONN: Mapping = Mapping {
    table: "net_conn",
    class_dir: "network_activity",
    class_name: "Network Activity",
    class_uid: 4001,
    fields: &[
        &[
            ("class_uid", "4001"),
            ("category_uid", "4"),
            (
                "activity_id",
                "CASE event WHEN 'connect' THEN 1 WHEN 'accept' THEN 1 WHEN 'close' THEN 2 WHEN 'fail' THEN 4 ELSE 0 END",
            ),
            (
                "activity_name",
                "CASE event WHEN 'connect' THEN 'Open' WHEN 'accept' THEN 'Open' WHEN 'close' THEN 'Close' WHEN 'fail' THEN 'Fail' ELSE 'Unknown' END",
            ),
            (
                "type_uid",
                "400100 + CASE event WHEN 'connect' THEN 1 WHEN 'accept' THEN 1 WHEN 'close' THEN 2 WHEN 'fail' THEN 4 ELSE 0 END",
            ),
            ("status_id", "CASE event WHEN 'fail' THEN 2 ELSE 1 END"),
            ("status_detail", "error"),
        ],
        COMMON,
        &[
            ("src_endpoint.ip", "src_ip"),
            ("src_endpoint.port", "CAST(src_port AS INT)"),
            ("dst_endpoint.ip", "dst_ip"),
            ("dst_endpoint.port", "CAST(dst_port AS INT)"),
            ("connection_info.protocol_name", "protocol"),
            (
                "connection_info.direction_id",
                "CASE event WHEN 'accept' THEN 1 WHEN 'connect' THEN 2 ELSE 0 END",
            ),
            ("connection_info.uid", "CAST(socket_cookie AS VARCHAR)"),
            ("traffic.bytes_out", "CAST(bytes_sent AS BIGINT)"),
            ("traffic.bytes_in", "CAST(bytes_received AS BIGINT)"),
            ("actor.process.pid", "CAST(pid AS INT)"),
            ("actor.process.name", "comm"),
            ("actor.process.uid", "CAST(exec_id AS VARCHAR)"),
        ],
        POD,
        &[
            ("unmapped.event", "event"),
            ("unmapped.family", "family"),
            ("unmapped.orig_dst_ip", "orig_dst_ip"),
            ("unmapped.orig_dst_port", "CAST(orig_dst_port AS INT)"),
            ("unmapped.nat_dst_ip", "nat_dst_ip"),
            ("unmapped.nat_dst_port", "CAST(nat_dst_port AS INT)"),
            ("unmapped.netns", "CAST(netns AS VARCHAR)"),
            ("unmapped.duration_ns", "CAST(duration_ns AS VARCHAR)"),
        ],
    ],
};

pub const MAPPINGS: &[&Mapping] = &[&PROCESS_EXEC, &PROCESS_EXIT, &NET_CONN];

pub fn mapping_for(table: &str) -> Option<&'static Mapping> {
    MAPPINGS.iter().copied().find(|m| m.table == table)
}

/// A tree of dotted paths: leaves are SQL expressions.
enum Node {
    Leaf(&'static str),
    Struct(Vec<(&'static str, Node)>),
}

fn insert(children: &mut Vec<(&'static str, Node)>, path: &'static str, expr: &'static str) {
    match path.split_once('.') {
        None => children.push((path, Node::Leaf(expr))),
        Some((head, rest)) => {
            let idx = match children.iter().position(|(n, _)| *n == head) {
                Some(i) => i,
                None => {
                    children.push((head, Node::Struct(Vec::new())));
                    children.len() - 1
                }
            };
            match &mut children[idx].1 {
                Node::Struct(c) => insert(c, rest, expr),
                Node::Leaf(_) => panic!("OCSF mapping: {head} is both a value and a struct"),
            }
        }
    }
}

fn render(node: &Node) -> String {
    match node {
        Node::Leaf(e) => (*e).to_owned(),
        Node::Struct(c) => format!(
            "named_struct({})",
            c.iter().map(|(n, v)| format!("'{n}', {}", render(v))).collect::<Vec<_>>().join(", ")
        ),
    }
}

impl Mapping {
    /// Every (OCSF path, SQL expression), in output order.
    pub fn fields(&self) -> impl Iterator<Item = &'static (&'static str, &'static str)> + use<> {
        self.fields.iter().flat_map(|g| g.iter())
    }

    /// `SELECT ... FROM src`: one OCSF row per podtrail row, in the same order.
    pub fn sql(&self) -> String {
        let mut top = Vec::new();
        for (path, expr) in self.fields() {
            insert(&mut top, path, expr);
        }
        let cols: Vec<String> = top.iter().map(|(n, v)| format!("{} AS \"{n}\"", render(v))).collect();
        format!("SELECT {} FROM src", cols.join(", "))
    }
}

/// Convert one segment's rows (any schema version of the table) to the OCSF class
/// as Parquet bytes; the same rows give the same bytes.
pub async fn convert(m: &Mapping, batches: Vec<RecordBatch>) -> Result<Bytes, String> {
    let def = podtrail_schema::tables::event_table(m.table).ok_or_else(|| format!("{} is not an event table", m.table))?;
    let batches = batches
        .iter()
        .map(|b| podtrail_schema::tables::conform(def, b))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", m.table))?;
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    let mem = MemTable::try_new(def.arrow_schema(), vec![batches]).map_err(|e| e.to_string())?;
    ctx.register_table("src", Arc::new(mem)).map_err(|e| e.to_string())?;
    let df = ctx.sql(&m.sql()).await.map_err(|e| format!("OCSF mapping of {}: {e}", m.table))?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let out = df.collect().await.map_err(|e| format!("OCSF mapping of {}: {e}", m.table))?;
    podtrail_schema::lake::parquet_bytes(schema, &out).map_err(|e| format!("OCSF mapping of {}: {e}", m.table))
}

/// The mapping as Markdown (`schema/OCSF.md`).
pub fn markdown() -> String {
    let mut s = String::from(
        "# OCSF mapping\n\nGenerated by `podtrail schema --ocsf` from query/src/ocsf.rs; do not edit by hand.\n\n\
         `podtrail export --schema ocsf` writes one OCSF 1.1.0 event per podtrail row to\n\
         `<lake>/ocsf/<class>/date=YYYY-MM-DD/node=<node>/<segment-id>.parquet`. Nested fields are\n\
         Parquet structs; `unmapped` keeps podtrail columns OCSF has no attribute for.\n\
         Each value is an SQL expression over the podtrail row (DataFusion dialect; `time` is ns).\n",
    );
    for m in MAPPINGS {
        s.push_str(&format!(
            "\n## `{}` → {} [{}] (`ocsf/{}`)\n\n| OCSF field | value |\n|---|---|\n",
            m.table, m.class_name, m.class_uid, m.class_dir
        ));
        for (path, expr) in m.fields() {
            s.push_str(&format!("| `{path}` | `{}` |\n", expr.replace('|', "\\|")));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_reference_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/OCSF.md");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == markdown(),
            "schema/OCSF.md is stale: run `podtrail schema --ocsf > schema/OCSF.md`"
        );
    }

    #[test]
    fn paths_nest_into_structs() {
        let sql = PROCESS_EXIT.sql();
        assert!(
            sql.contains("named_struct('version', '1.1.0', 'product', named_struct('name', 'podtrail', 'vendor_name', 'podtrail')) AS \"metadata\""),
            "{sql}"
        );
        // Every source column a mapping names exists in its table.
        for m in MAPPINGS {
            let def = podtrail_schema::tables::event_table(m.table).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let empty = RecordBatch::new_empty(def.arrow_schema());
            let bytes = rt.block_on(convert(m, vec![empty])).unwrap_or_else(|e| panic!("{}: {e}", m.table));
            assert!(!bytes.is_empty());
        }
    }
}
