//! The SQLite catalog: DDL, migrations, and the read side shared by every reader.
//!
//! In: `<data-dir>/catalog.db`. Out: segment records for pruning and verification,
//! and the catalog tables (`pods`, `ip_owners`, ...) as Arrow batches.
//! Invariant: times are INTEGER nanoseconds since the Unix epoch (UTC); the SQLite
//! column names are the documented column names of [`crate::tables`], so one generic
//! converter serves every catalog table. WAL mode: readers never block the writer.
//! Writers: the recorder's `segments` stage (through [`Catalog::write_tx`]),
//! shipping ([`Catalog::mark_shipped`]) and [`Catalog::open_rw`]'s creation and
//! migration. Readers open it with [`Catalog::open_ro`] and only read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder, UInt16Builder,
    UInt32Builder, UInt64Builder, UInt8Builder,
};
use arrow::record_batch::RecordBatch;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::records::{ContainerRecord, IpOwnerRecord, PodRecord};
use crate::tables::{self, ColType, TableDef};

/// Bump with a new entry in [`MIGRATIONS`]; never edit a released migration.
pub const SCHEMA_VERSION: i64 = 4;

/// The oldest catalog version readers still read as is (later migrations only
/// relax constraints and add indexes; the recorder migrates on its next start).
pub const MIN_READABLE_VERSION: i64 = 1;

/// `MIGRATIONS[i]` takes the catalog from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE segments (
    seq           INTEGER PRIMARY KEY,
    segment_id    TEXT NOT NULL UNIQUE,
    table_name    TEXT NOT NULL,
    path          TEXT NOT NULL,
    time_min      INTEGER NOT NULL,
    time_max      INTEGER NOT NULL,
    rows          INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    chain_sha256  TEXT NOT NULL,
    sealed_at     INTEGER NOT NULL,
    state         TEXT NOT NULL DEFAULT 'sealed' CHECK (state IN ('sealed', 'expired'))
);
CREATE INDEX segments_by_time ON segments (table_name, time_min);
CREATE TABLE segment_pods (
    pod_uid TEXT NOT NULL,
    seq     INTEGER NOT NULL REFERENCES segments (seq),
    PRIMARY KEY (pod_uid, seq)
) WITHOUT ROWID;
CREATE TABLE pods (
    pod_uid TEXT NOT NULL, pod_namespace TEXT NOT NULL, pod_name TEXT NOT NULL, node TEXT NOT NULL,
    labels TEXT, owner TEXT, qos_class TEXT,
    valid_from INTEGER NOT NULL, valid_to INTEGER, source TEXT NOT NULL,
    PRIMARY KEY (pod_uid, valid_from)
);
CREATE TABLE containers (
    container_id TEXT NOT NULL, pod_uid TEXT, container_name TEXT, image TEXT, runtime TEXT,
    cgroup_id INTEGER, valid_from INTEGER NOT NULL, valid_to INTEGER, source TEXT NOT NULL,
    PRIMARY KEY (container_id, valid_from)
);
CREATE TABLE ip_owners (
    ip TEXT NOT NULL, pod_uid TEXT NOT NULL, pod_namespace TEXT, pod_name TEXT, node TEXT NOT NULL,
    valid_from INTEGER NOT NULL, valid_to INTEGER, source TEXT NOT NULL,
    PRIMARY KEY (ip, valid_from, pod_uid)
);
CREATE TABLE loss (
    id INTEGER PRIMARY KEY,
    time_from INTEGER NOT NULL, time_to INTEGER NOT NULL, source TEXT NOT NULL,
    table_name TEXT, cpu INTEGER, count INTEGER NOT NULL, detail TEXT
);
"#,
// v2: pods known only from the kernel's cgroup path (source `observed`) have a
// UID but no name or namespace; lookups by time go through the interval indexes.
r#"
CREATE TABLE pods_v2 (
    pod_uid TEXT NOT NULL, pod_namespace TEXT, pod_name TEXT, node TEXT NOT NULL,
    labels TEXT, owner TEXT, qos_class TEXT,
    valid_from INTEGER NOT NULL, valid_to INTEGER, source TEXT NOT NULL,
    PRIMARY KEY (pod_uid, valid_from)
);
INSERT INTO pods_v2 SELECT pod_uid, pod_namespace, pod_name, node, labels, owner, qos_class, valid_from, valid_to, source FROM pods;
DROP TABLE pods;
ALTER TABLE pods_v2 RENAME TO pods;
CREATE INDEX pods_by_name ON pods (pod_name, pod_namespace);
CREATE INDEX ip_owners_open ON ip_owners (source, node) WHERE valid_to IS NULL;
"#,
// v3: segments shipped off the node (`podtraild run --ship-to`), per target.
r#"
CREATE TABLE shipped (
    segment_id TEXT NOT NULL,
    target     TEXT NOT NULL,
    key        TEXT NOT NULL,
    shipped_at INTEGER NOT NULL,
    PRIMARY KEY (segment_id, target)
) WITHOUT ROWID;
"#,
// v4: coverage and exact loss. `runs`: each recorder run, its last durable
// flush and how it ended (an unclean end leaves a window nobody recorded).
// `hot_files`: rows durably flushed to each open segment's hot file, so
// recovery knows what a damaged or truncated hot file held. `loss`: a count
// may be unknown (NULL), and loss is attributed to a pod when known.
r#"
CREATE TABLE runs (
    run_id     INTEGER PRIMARY KEY,
    node       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    version    TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    last_flush INTEGER,
    ended_at   INTEGER,
    end_state  TEXT NOT NULL DEFAULT 'running' CHECK (end_state IN ('running', 'clean', 'unclean', 'failed')),
    detail     TEXT
);
CREATE TABLE hot_files (
    segment_id TEXT PRIMARY KEY,
    table_name TEXT NOT NULL,
    rows       INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    time_min   INTEGER NOT NULL,
    time_max   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE loss_v4 (
    id INTEGER PRIMARY KEY,
    time_from INTEGER NOT NULL, time_to INTEGER NOT NULL, source TEXT NOT NULL,
    table_name TEXT, cpu INTEGER, count INTEGER, detail TEXT, pod_uid TEXT
);
INSERT INTO loss_v4 (id, time_from, time_to, source, table_name, cpu, count, detail)
    SELECT id, time_from, time_to, source, table_name, cpu, count, detail FROM loss;
DROP TABLE loss;
ALTER TABLE loss_v4 RENAME TO loss;
"#];

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("catalog {path} has schema version {found}, newer than this podtrail understands ({SCHEMA_VERSION}); upgrade podtrail")]
    TooNew { path: PathBuf, found: i64 },
    #[error("catalog {path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error(
        "catalog {path} is damaged ({problem}); nothing will be written into it. Rebuild it from the sealed segments with \
         `podtraild --data-dir {dir} recover --rebuild-catalog` (the damaged file is kept beside it)",
        dir = path.parent().map(|p| p.display().to_string()).unwrap_or_else(|| ".".into())
    )]
    Damaged { path: PathBuf, problem: String },
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// One sealed segment as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    pub seq: i64,
    pub segment_id: String,
    pub table_name: String,
    /// Relative to the data dir.
    pub path: String,
    pub time_min: i64,
    pub time_max: i64,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub chain_sha256: String,
    pub sealed_at: i64,
    pub expired: bool,
}

/// Chain value of a segment: commits to every earlier segment, so removing or
/// altering any one (file or catalog row) breaks every later link.
pub fn chain_sha256(prev_chain: &str, segment_id: &str, sha256: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_chain.as_bytes());
    h.update(b"\n");
    h.update(segment_id.as_bytes());
    h.update(b"\n");
    h.update(sha256.as_bytes());
    hex_lower(&h.finalize())
}

/// The chain value before the first segment.
pub const CHAIN_GENESIS: &str = "podtrail-chain-v1";

/// `meta` key: JSON `{"since": ns, "programs": ["program (attach point): reason", ...]}`,
/// the kernel programs the latest recorder run could not attach or was told not to.
pub const META_CAPTURE_UNAVAILABLE: &str = "capture_unavailable";

/// `meta` key of a chain rebuilt from the segment files (`podtraild recover
/// --rebuild-catalog`): JSON `{"at": ns, "segments": n, "damaged_catalog": path}`.
/// Such a chain proves the segments unaltered since the rebuild, not before.
pub const META_CHAIN_REBUILT: &str = "chain_rebuilt";

/// SHA-256 of a file's content, lower-case hex (what the catalog records).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex_lower(&h.finalize()))
}

pub fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

impl Catalog {
    /// Open for writing, creating and migrating as needed (the recorder only).
    /// A file SQLite finds damaged (not a database, a malformed page) is
    /// [`CatalogError::Damaged`]; so is one that fails [`Catalog::check`] when
    /// `check` is set (writers check before they write: a record sealed into a
    /// damaged catalog may never be read back).
    pub fn open_rw_checked(path: &Path, check: bool) -> Result<Self> {
        let damaged = |e: CatalogError| damaged_or(path, e);
        let conn = Connection::open(path).map_err(|e| damaged(sql_err(path, e)))?;
        let mut cat = Catalog { conn, path: path.to_owned() };
        cat.conn
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(|e| damaged(cat.err(e)))?;
        cat.conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| cat.err(e))?;
        if check {
            let problems = cat.check().map_err(damaged)?;
            if let Some(first) = problems.first() {
                let more = if problems.len() > 1 { format!(" and {} more problem(s)", problems.len() - 1) } else { String::new() };
                return Err(CatalogError::Damaged { path: path.to_owned(), problem: format!("integrity check: {first}{more}") });
            }
        }
        cat.migrate().map_err(damaged)?;
        Ok(cat)
    }

    /// [`Catalog::open_rw_checked`] without the integrity check (a second
    /// connection of a writer that checked at its start, e.g. the shipper).
    pub fn open_rw(path: &Path) -> Result<Self> {
        Self::open_rw_checked(path, false)
    }

    /// SQLite's own integrity check of every page and index: the problems it
    /// reports (empty when the catalog is sound).
    pub fn check(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check").map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| self.err(e))?;
        let lines = rows.collect::<rusqlite::Result<Vec<String>>>().map_err(|e| self.err(e))?;
        Ok(lines.into_iter().filter(|l| l != "ok").collect())
    }

    /// Open read-only. Never creates the file; fails clearly when it is missing.
    pub fn open_ro(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(CatalogError::Invalid { path: path.to_owned(), what: "no such file".into() });
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| damaged_or(path, sql_err(path, e)))?;
        let mut cat = Catalog { conn, path: path.to_owned() };
        cat.conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| cat.err(e))?;
        let v = match cat.version().map_err(|e| damaged_or(path, e)) {
            Ok(v) => v,
            // A reader without write access cannot create the WAL index (-shm) that
            // SQLite removes when the writer closes cleanly. With no -wal file there
            // is nothing outside the main file, so reading it as immutable is exact.
            Err(CatalogError::Sqlite { source: rusqlite::Error::SqliteFailure(e, _), .. })
                if e.code == rusqlite::ErrorCode::ReadOnly && !wal_path(path).exists() =>
            {
                cat.conn = Connection::open_with_flags(
                    format!("file:{}?immutable=1", uri_escape(path)),
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
                )
                .map_err(|e| sql_err(path, e))?;
                cat.version()?
            }
            Err(e) => return Err(e),
        };
        // A writer creating the catalog commits its whole schema in one
        // transaction: version 0 for a moment, then the current one.
        let mut v = v;
        let started = std::time::Instant::now();
        while v == 0 && started.elapsed() < std::time::Duration::from_secs(2) {
            std::thread::sleep(std::time::Duration::from_millis(20));
            v = cat.version()?;
        }
        if v > SCHEMA_VERSION {
            return Err(CatalogError::TooNew { path: path.to_owned(), found: v });
        }
        if v < MIN_READABLE_VERSION {
            return Err(CatalogError::Invalid {
                path: path.to_owned(),
                what: format!("schema version {v}: not initialised; is a podtraild creating it right now? run podtraild once to create it"),
            });
        }
        Ok(cat)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Begin a write transaction that takes the write lock up front
    /// (`BEGIN IMMEDIATE`), waiting up to the busy timeout for another writer.
    ///
    /// The recorder's writer and its shipping thread share the catalog. A
    /// deferred transaction that reads first and writes later cannot wait: if the
    /// other connection commits in between, SQLite fails the write at once with
    /// "database is locked" (its read snapshot is stale), and podtraild stopped
    /// on exactly that. Every multi-statement write goes through here.
    pub fn write_tx(&mut self) -> Result<rusqlite::Transaction<'_>> {
        let path = self.path.clone();
        self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| sql_err(&path, e))
    }

    pub fn err(&self, e: rusqlite::Error) -> CatalogError {
        sql_err(&self.path, e)
    }

    fn version(&self) -> Result<i64> {
        self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<()> {
        let v = self.version()?;
        if v > SCHEMA_VERSION {
            return Err(CatalogError::TooNew { path: self.path.clone(), found: v });
        }
        if v == SCHEMA_VERSION {
            return Ok(());
        }
        // All pending migrations in one transaction: a reader sees the catalog
        // before or after, never between two versions.
        let path = self.path.clone();
        let tx = self.write_tx()?;
        for sql in MIGRATIONS.iter().skip(v as usize) {
            tx.execute_batch(sql).map_err(|e| sql_err(&path, e))?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(|e| sql_err(&path, e))?;
        tx.commit().map_err(|e| sql_err(&path, e))?;
        Ok(())
    }

    /// Intervals of `source` on `node` still open (valid_to null): what a
    /// previous run of the recorder was tracking when it stopped. Containers
    /// record no node: the open ones of this node's open pods.
    pub fn open_intervals(&self, node: &str, source: &str) -> Result<(Vec<PodRecord>, Vec<ContainerRecord>, Vec<IpOwnerRecord>)> {
        let open_pods = "SELECT pod_uid FROM pods WHERE valid_to IS NULL AND node = ?1 AND source = ?2";
        let pods = self.records(&format!("SELECT {} FROM pods WHERE valid_to IS NULL AND node = ?1 AND source = ?2", PodRecord::COLUMNS), node, source, PodRecord::from_row)?;
        let containers = self.records(
            &format!("SELECT {} FROM containers WHERE valid_to IS NULL AND source = ?2 AND pod_uid IN ({open_pods})", ContainerRecord::COLUMNS),
            node,
            source,
            ContainerRecord::from_row,
        )?;
        let ips = self.records(&format!("SELECT {} FROM ip_owners WHERE valid_to IS NULL AND node = ?1 AND source = ?2", IpOwnerRecord::COLUMNS), node, source, IpOwnerRecord::from_row)?;
        Ok((pods, containers, ips))
    }

    fn records<T>(&self, sql: &str, node: &str, source: &str, from_row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>) -> Result<Vec<T>> {
        let mut st = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        let rows = st.query_map(params![node, source], from_row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every segment in chain order (including expired ones).
    pub fn segments(&self) -> Result<Vec<SegmentRecord>> {
        self.query_segments("SELECT seq, segment_id, table_name, path, time_min, time_max, rows, bytes, sha256, chain_sha256, sealed_at, state FROM segments ORDER BY seq", &[])
    }

    /// Live segments of `table` whose time range overlaps `[from, to]` (inclusive,
    /// ns) and, when `pods` is given, that hold at least one of those pods.
    pub fn segments_overlapping(&self, table: &str, from: i64, to: i64, pods: Option<&[String]>) -> Result<Vec<SegmentRecord>> {
        let base = "SELECT seq, segment_id, table_name, path, time_min, time_max, rows, bytes, sha256, chain_sha256, sealed_at, state \
                    FROM segments WHERE table_name = ?1 AND state = 'sealed' AND time_max >= ?2 AND time_min <= ?3";
        match pods {
            None => self.query_segments(&format!("{base} ORDER BY seq"), &[&table, &from, &to]),
            Some(pods) => {
                let pods_json = serde_json::to_string(pods).expect("strings serialize");
                self.query_segments(
                    &format!("{base} AND seq IN (SELECT seq FROM segment_pods WHERE pod_uid IN (SELECT value FROM json_each(?4))) ORDER BY seq"),
                    &[&table, &from, &to, &pods_json],
                )
            }
        }
    }

    /// How many sealed (not expired) segments `table` has: what a full scan opens.
    pub fn live_segment_count(&self, table: &str) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM segments WHERE table_name = ?1 AND state = 'sealed'", [table], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    fn query_segments(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<SegmentRecord>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(args, |r| {
                Ok(SegmentRecord {
                    seq: r.get(0)?,
                    segment_id: r.get(1)?,
                    table_name: r.get(2)?,
                    path: r.get(3)?,
                    time_min: r.get(4)?,
                    time_max: r.get(5)?,
                    rows: r.get::<_, i64>(6)? as u64,
                    bytes: r.get::<_, i64>(7)? as u64,
                    sha256: r.get(8)?,
                    chain_sha256: r.get(9)?,
                    sealed_at: r.get(10)?,
                    expired: r.get::<_, String>(11)? == "expired",
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Sealed (live) segments not yet shipped to `target`, in chain order.
    pub fn unshipped_segments(&self, target: &str) -> Result<Vec<SegmentRecord>> {
        self.query_segments(
            "SELECT seq, segment_id, table_name, path, time_min, time_max, rows, bytes, sha256, chain_sha256, sealed_at, state FROM segments \
             WHERE state = 'sealed' AND segment_id NOT IN (SELECT segment_id FROM shipped WHERE target = ?1) ORDER BY seq",
            &[&target],
        )
    }

    /// Record that `segment_id` is in `target` at `key`.
    pub fn mark_shipped(&self, segment_id: &str, target: &str, key: &str, at_ns: i64) -> Result<()> {
        self.conn
            .execute("INSERT OR IGNORE INTO shipped (segment_id, target, key, shipped_at) VALUES (?1, ?2, ?3, ?4)", params![segment_id, target, key, at_ns])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Per shipping target: segments shipped, and sealed segments still waiting
    /// (catalogs older than v3 have none).
    pub fn shipping_state(&self) -> Result<Vec<(String, u64, u64)>> {
        if self.version()? < 3 {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT t.target, (SELECT count(*) FROM shipped WHERE target = t.target), \
                 (SELECT count(*) FROM segments WHERE state = 'sealed' AND segment_id NOT IN (SELECT segment_id FROM shipped WHERE target = t.target)) \
                 FROM (SELECT DISTINCT target FROM shipped) t ORDER BY t.target",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64))).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    pub fn segment_exists(&self, segment_id: &str) -> Result<bool> {
        self.conn
            .query_row("SELECT 1 FROM segments WHERE segment_id = ?1", params![segment_id], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| self.err(e))
    }

    /// A catalog table as one Arrow batch with the documented schema.
    pub fn load_table(&self, def: &TableDef) -> Result<RecordBatch> {
        self.load_rows(def, "", &[])
    }

    /// Rows of a catalog table matching `filter` (an SQL `WHERE ...` clause over
    /// the documented column names, with `?N` parameters; empty for all rows).
    fn load_rows(&self, def: &TableDef, filter: &str, args: &[&dyn rusqlite::ToSql]) -> Result<RecordBatch> {
        let sqlite_table = sqlite_table_of(def).ok_or_else(|| CatalogError::Invalid {
            path: self.path.clone(),
            what: format!("{} is not a catalog table", def.name),
        })?;
        let cols: Vec<&tables::ColumnDef> = def.columns().collect();
        // A catalog of an older version lacks the tables and columns added since
        // (readers read versions from MIN_READABLE_VERSION on): they read as
        // no rows and as nulls.
        let present = self.sqlite_columns(sqlite_table)?;
        if present.is_empty() {
            return Ok(RecordBatch::new_empty(def.arrow_schema()));
        }
        let names: Vec<String> = cols.iter().map(|c| if present.iter().any(|p| p == c.name) { c.name.to_owned() } else { format!("NULL AS {}", c.name) }).collect();
        let sql = format!("SELECT {} FROM {sqlite_table} {filter}", names.join(", "));
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let mut builders: Vec<ColBuilder> = cols.iter().map(|c| ColBuilder::new(c.ty)).collect();
        let mut rows = stmt.query(args).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            for (i, b) in builders.iter_mut().enumerate() {
                b.push(row, i).map_err(|e| self.err(e))?;
            }
        }
        let arrays: Vec<ArrayRef> = builders.into_iter().map(ColBuilder::finish).collect();
        RecordBatch::try_new(def.arrow_schema(), arrays).map_err(|e| CatalogError::Invalid {
            path: self.path.clone(),
            what: format!("table {}: {e}", def.name),
        })
    }
}

impl Catalog {
    /// Column names of a SQLite table of the catalog (none when it does not exist).
    fn sqlite_columns(&self, table: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT name FROM pragma_table_info(?1)").map_err(|e| self.err(e))?;
        let rows = stmt.query_map([table], |r| r.get::<_, String>(0)).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }
}

/// `e`, or [`CatalogError::Damaged`] when SQLite says the file is damaged.
fn damaged_or(path: &Path, e: CatalogError) -> CatalogError {
    if let CatalogError::Sqlite { source: rusqlite::Error::SqliteFailure(f, msg), .. } = &e
        && matches!(f.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    {
        return CatalogError::Damaged { path: path.to_owned(), problem: msg.clone().unwrap_or_else(|| f.to_string()) };
    }
    e
}

fn wal_path(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", db.display()))
}

/// Percent-encode what an SQLite URI filename cannot carry literally.
fn uri_escape(path: &Path) -> String {
    let mut out = String::new();
    for b in path.to_string_lossy().bytes() {
        match b {
            b'%' | b'?' | b'#' | b' ' | 0..=0x1f | 0x7f.. => out.push_str(&format!("%{b:02X}")),
            _ => out.push(b as char),
        }
    }
    out
}

/// Which SQLite table backs a catalog table.
pub fn sqlite_table_of(def: &TableDef) -> Option<&'static str> {
    match def.name {
        "pods" => Some("pods"),
        "containers" => Some("containers"),
        "ip_owners" => Some("ip_owners"),
        "podtrail_segments" => Some("segments"),
        "podtrail_loss" => Some("loss"),
        "podtrail_runs" => Some("runs"),
        _ => None,
    }
}

fn sql_err(path: &Path, source: rusqlite::Error) -> CatalogError {
    CatalogError::Sqlite { path: path.to_owned(), source }
}

enum ColBuilder {
    Time(TimestampNanosecondBuilder),
    Text(StringBuilder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    Bool(BooleanBuilder),
}

impl ColBuilder {
    fn new(ty: ColType) -> Self {
        match ty {
            ColType::Time => ColBuilder::Time(TimestampNanosecondBuilder::new().with_timezone("UTC")),
            ColType::Text | ColType::Ip => ColBuilder::Text(StringBuilder::new()),
            ColType::U8 => ColBuilder::U8(UInt8Builder::new()),
            ColType::U16 => ColBuilder::U16(UInt16Builder::new()),
            ColType::U32 => ColBuilder::U32(UInt32Builder::new()),
            ColType::U64 => ColBuilder::U64(UInt64Builder::new()),
            ColType::I32 => ColBuilder::I32(Int32Builder::new()),
            ColType::I64 => ColBuilder::I64(Int64Builder::new()),
            ColType::Bool => ColBuilder::Bool(BooleanBuilder::new()),
            ColType::TextList => unreachable!("catalog tables have no list columns"),
        }
    }

    fn push(&mut self, row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<()> {
        match self {
            ColBuilder::Time(b) => b.append_option(row.get::<_, Option<i64>>(i)?),
            ColBuilder::Text(b) => b.append_option(row.get::<_, Option<String>>(i)?),
            ColBuilder::U8(b) => b.append_option(row.get::<_, Option<i64>>(i)?.map(|v| v as u8)),
            ColBuilder::U16(b) => b.append_option(row.get::<_, Option<i64>>(i)?.map(|v| v as u16)),
            ColBuilder::U32(b) => b.append_option(row.get::<_, Option<i64>>(i)?.map(|v| v as u32)),
            ColBuilder::U64(b) => b.append_option(row.get::<_, Option<i64>>(i)?.map(|v| v as u64)),
            ColBuilder::I32(b) => b.append_option(row.get::<_, Option<i32>>(i)?),
            ColBuilder::I64(b) => b.append_option(row.get::<_, Option<i64>>(i)?),
            ColBuilder::Bool(b) => b.append_option(row.get::<_, Option<bool>>(i)?),
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            ColBuilder::Time(mut b) => Arc::new(b.finish()),
            ColBuilder::Text(mut b) => Arc::new(b.finish()),
            ColBuilder::U8(mut b) => Arc::new(b.finish()),
            ColBuilder::U16(mut b) => Arc::new(b.finish()),
            ColBuilder::U32(mut b) => Arc::new(b.finish()),
            ColBuilder::U64(mut b) => Arc::new(b.finish()),
            ColBuilder::I32(mut b) => Arc::new(b.finish()),
            ColBuilder::I64(mut b) => Arc::new(b.finish()),
            ColBuilder::Bool(mut b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::CATALOG_TABLES;

    #[test]
    fn every_catalog_table_loads_with_its_documented_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let cat = Catalog::open_rw(&path).unwrap();
        cat.conn()
            .execute(
                "INSERT INTO ip_owners VALUES ('10.244.1.7', 'uid-a', 'ns', 'a', 'node1', 5, NULL, 'synthetic')",
                [],
            )
            .unwrap();
        drop(cat);
        let ro = Catalog::open_ro(&path).unwrap();
        for def in CATALOG_TABLES {
            let b = ro.load_table(def).unwrap_or_else(|e| panic!("{}: {e}", def.name));
            assert_eq!(b.schema(), def.arrow_schema(), "{}", def.name);
        }
        assert_eq!(ro.load_table(&crate::tables::IP_OWNERS).unwrap().num_rows(), 1);
    }

    #[test]
    fn a_v1_catalog_is_readable_and_migrates_in_place_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute("INSERT INTO pods VALUES ('uid-a', 'ns', 'a', 'node1', NULL, NULL, NULL, 5, NULL, 'synthetic')", []).unwrap();
        }
        let ro = Catalog::open_ro(&path).expect("readers read a v1 catalog as is");
        assert_eq!(ro.load_table(&crate::tables::PODS).unwrap().num_rows(), 1);
        drop(ro);
        let rw = Catalog::open_rw(&path).unwrap();
        assert_eq!(rw.version().unwrap(), SCHEMA_VERSION);
        assert_eq!(rw.load_table(&crate::tables::PODS).unwrap().num_rows(), 1, "the pod survives the table rebuild");
        // v2: a pod known only by UID (observed) has no name.
        rw.conn().execute("INSERT INTO pods VALUES ('uid-b', NULL, NULL, 'node1', NULL, NULL, 'burstable', 6, NULL, 'observed')", []).unwrap();
        assert_eq!(rw.load_table(&crate::tables::PODS).unwrap().num_rows(), 2);
    }

    #[test]
    fn a_read_then_write_transaction_waits_for_another_writer_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let mut recorder = Catalog::open_rw(&path).unwrap();
        let shipper = Catalog::open_rw(&path).unwrap();
        // commit_segment's shape: read the chain head, then insert.
        let tx = recorder.write_tx().unwrap();
        let before: i64 = tx.query_row("SELECT count(*) FROM meta", [], |r| r.get(0)).unwrap();
        // The shipping thread writes between that read and that insert.
        let other = std::thread::spawn(move || {
            shipper.conn().execute("INSERT INTO meta (key, value) VALUES ('from_shipper', '1')", []).map_err(|e| e.to_string())
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        tx.execute("INSERT INTO meta (key, value) VALUES ('from_recorder', ?1)", [before]).expect("the recorder's write must not fail with 'database is locked'");
        tx.commit().unwrap();
        other.join().unwrap().expect("the other writer waits for the lock, then writes");
        let keys: i64 = recorder.conn().query_row("SELECT count(*) FROM meta WHERE key IN ('from_shipper', 'from_recorder')", [], |r| r.get(0)).unwrap();
        assert_eq!(keys, 2);
    }

    #[test]
    fn read_only_open_never_creates_a_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        assert!(Catalog::open_ro(&path).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn chain_commits_to_previous_link() {
        let a = chain_sha256(CHAIN_GENESIS, "s1", "aa");
        assert_ne!(chain_sha256(&a, "s2", "bb"), chain_sha256(CHAIN_GENESIS, "s2", "bb"));
        assert_eq!(a.len(), 64);
    }
}
