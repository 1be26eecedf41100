//! All DataFusion wiring: the one adapter between podtrail's store and the engine.
//!
//! In: a data dir (read-only). Out: a `SessionContext` with every event table (sealed
//! segments + hot tail as one table) and every catalog table registered, and a
//! read-only `sql()` entry point.
//!
//! The event-table provider asks the catalog which segments overlap the query's time
//! range and pods *before* any file is opened, then lets DataFusion prune row groups
//! and pages of those files (statistics, page index, bloom filters). Filter pushdown
//! is reported `Inexact`, so DataFusion re-checks every row: pruning can only skip
//! work, never change an answer.
//!
//! Consistency: one SQLite read transaction is held for the engine's life, and hot
//! tails are read after it began; a hot file whose segment that snapshot already
//! lists is skipped, so a concurrent seal can neither double nor drop rows.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{MemTable, Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, LogicalPlan, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use podtrail_schema::catalog::{Catalog, SegmentRecord};
use podtrail_schema::tables::{CATALOG_TABLES, EVENT_TABLES, IP_OWNERS, TableDef};
use podtrail_schema::{hot, layout};

use crate::QueryError;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// A damaged or missing segment fails the query instead of being skipped.
    pub strict: bool,
    /// Check each segment's SHA-256 against the catalog before reading it.
    pub verify_reads: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { strict: false, verify_reads: true }
    }
}

/// What the event-table providers did, summed over every scan of the engine.
#[derive(Debug, Default)]
pub struct ScanStats {
    /// Live sealed segments of the scanned tables (what a full scan would open).
    pub segments_live: AtomicU64,
    /// Segments the catalog said overlap the query: the only files opened.
    pub segments_selected: AtomicU64,
    /// Segments skipped because they are damaged or missing.
    pub segments_skipped: AtomicU64,
    pub hot_rows: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ScanStatsSnapshot {
    pub segments_live: u64,
    pub segments_selected: u64,
    pub segments_skipped: u64,
    pub hot_rows: u64,
}

struct Shared {
    data_dir: PathBuf,
    opts: EngineOptions,
    catalog: Mutex<Catalog>,
    stats: ScanStats,
    warnings: Mutex<Vec<String>>,
    /// seq -> verdict, so a self-join does not hash a file twice.
    verified: Mutex<HashMap<i64, Result<(), String>>>,
}

pub struct Engine {
    ctx: SessionContext,
    /// The node's data dir; None for an engine over a lake.
    shared: Option<Arc<Shared>>,
    hot_rows: HashMap<&'static str, u64>,
}

fn session_config() -> SessionConfig {
    SessionConfig::new()
        .with_target_partitions(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
        .with_information_schema(true)
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true)
}

impl Engine {
    /// Open `data_dir` read-only and register every table.
    pub async fn open(data_dir: &Path, opts: EngineOptions) -> Result<Engine, QueryError> {
        let cat_path = check_data_dir(data_dir)?;
        let catalog = Catalog::open_ro(&cat_path)?;
        // A hot file can vanish between listing and reading when the writer seals it;
        // then the snapshot is stale: start over with a fresh one.
        let mut attempt = 0;
        let mut hot_by_table = loop {
            attempt += 1;
            catalog.conn().execute_batch("BEGIN DEFERRED; SELECT count(*) FROM segments;").map_err(|e| catalog.err(e))?;
            match read_hot_tails(data_dir, &catalog) {
                Ok(h) => break h,
                Err(HotRead::Vanished(p)) if attempt < 5 => {
                    tracing::debug!(file = %p.display(), "hot file sealed while reading; retrying with a new snapshot");
                    catalog.conn().execute_batch("COMMIT").map_err(|e| catalog.err(e))?;
                }
                Err(HotRead::Vanished(p)) => {
                    return Err(QueryError::Runtime(format!("hot file {} keeps vanishing while read; is a writer sealing in a loop?", p.display())));
                }
                Err(HotRead::Failed(e)) => return Err(e),
            }
        };

        let mut catalog_batches = Vec::new();
        for def in CATALOG_TABLES {
            catalog_batches.push((*def, catalog.load_table(def)?));
        }
        let shared = Arc::new(Shared {
            data_dir: data_dir.to_owned(),
            opts,
            catalog: Mutex::new(catalog),
            stats: ScanStats::default(),
            warnings: Mutex::new(Vec::new()),
            verified: Mutex::new(HashMap::new()),
        });

        let ctx = SessionContext::new_with_config(session_config());
        let mut hot_rows = HashMap::new();
        for def in EVENT_TABLES {
            let hot = hot_by_table.remove(def.name).unwrap_or_default();
            hot_rows.insert(def.name, hot.iter().map(|b| b.num_rows() as u64).sum());
            let provider = SegmentTable { def, schema: def.arrow_schema(), hot, shared: Arc::clone(&shared) };
            ctx.register_table(def.name, Arc::new(provider))?;
        }
        for (def, batch) in catalog_batches {
            if def.name == IP_OWNERS.name {
                ctx.register_udtf("who_owned", Arc::new(WhoOwned { owners: batch.clone() }));
            }
            let t = MemTable::try_new(def.arrow_schema(), vec![vec![batch]])?;
            ctx.register_table(def.name, Arc::new(t))?;
        }
        Ok(Engine { ctx, shared: Some(shared), hot_rows })
    }

    /// Open a lake written by `podtrail export` / `podtraild --ship-to`: every
    /// node's event tables (partitioned by `date` and `node`, both columns here) and
    /// identity snapshots, with the same table names and `who_owned()`.
    ///
    /// Partition pruning: `date` and `node` predicates skip whole directories, and a
    /// bound on `time` is turned into a `date` bound (every row of a segment lies in
    /// the segment's UTC hour, so its `date` partition is each row's date).
    pub async fn open_lake(lake: &podtrail_schema::lake::Lake) -> Result<Engine, QueryError> {
        let ctx = SessionContext::new_with_config(session_config());
        if let Some(u) = lake.store_url() {
            let url = datafusion::execution::object_store::ObjectStoreUrl::parse(&u)?;
            ctx.register_object_store(url.as_ref(), lake.store());
        }
        let lake_err = |e: DataFusionError| QueryError::Runtime(format!("lake {}: {}", lake.target(), one_line(&e.to_string())));
        for def in EVENT_TABLES {
            // `node` comes from the partition path, so the file's own is not read.
            let base = def.arrow_schema();
            let file_schema = Arc::new(arrow::datatypes::Schema::new(base.fields().iter().filter(|f| f.name() != "node").cloned().collect::<Vec<_>>()));
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(layout::SEGMENT_EXT)
                .with_table_partition_cols(vec![("date".into(), DataType::Utf8), ("node".into(), DataType::Utf8)]);
            let url = ListingTableUrl::parse(lake.table_url(def.name)).map_err(lake_err)?;
            let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(file_schema);
            let inner = ListingTable::try_new(config).map_err(lake_err)?;
            ctx.register_table(def.name, Arc::new(LakeTable { name: def.name, inner }))?;
        }
        for def in podtrail_schema::lake::SNAPSHOT_TABLES {
            let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(layout::SEGMENT_EXT);
            let url = ListingTableUrl::parse(lake.table_url(def.name)).map_err(lake_err)?;
            let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(podtrail_schema::lake::snapshot_schema(def));
            ctx.register_table(def.name, Arc::new(ListingTable::try_new(config).map_err(lake_err)?))?;
        }
        let owners_schema = podtrail_schema::lake::snapshot_schema(&IP_OWNERS);
        let owners = ctx.sql("SELECT * FROM ip_owners").await?.collect().await.map_err(lake_err)?;
        let owners = arrow::compute::concat_batches(&owners_schema, &owners).map_err(|e| QueryError::Runtime(format!("lake {}: ip_owners: {e}", lake.target())))?;
        ctx.register_udtf("who_owned", Arc::new(WhoOwned { owners }));
        Ok(Engine { ctx, shared: None, hot_rows: HashMap::new() })
    }

    /// Rows of `table` in the hot tail (not yet sealed) when the engine opened.
    pub fn hot_rows(&self, table: &str) -> u64 {
        self.hot_rows.get(table).copied().unwrap_or(0)
    }

    /// Plan and run one read-only statement.
    pub async fn sql(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let df = self.plan(sql).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        Ok((schema, batches))
    }

    /// Plan one statement, refusing anything that is not a query.
    pub async fn plan(&self, sql: &str) -> Result<datafusion::dataframe::DataFrame, QueryError> {
        let plan = self.ctx.state().create_logical_plan(sql).await?;
        if let Err(e) = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false).verify_plan(&plan) {
            let what = match &plan {
                LogicalPlan::Ddl(d) => d.name().to_owned(),
                LogicalPlan::Dml(d) => d.op.to_string(),
                LogicalPlan::Copy(_) => "COPY".to_owned(),
                LogicalPlan::Statement(s) => s.name().to_owned(),
                _ => one_line(&e.to_string()),
            };
            return Err(QueryError::ReadOnly(what));
        }
        Ok(self.ctx.execute_logical_plan(plan).await?)
    }

    /// Programs the latest recorder run could not attach or was told not to
    /// (`program (attach point): reason`, from the catalog's `meta`).
    pub fn unavailable_programs(&self) -> Result<Vec<String>, QueryError> {
        let Some(shared) = &self.shared else { return Ok(Vec::new()) };
        let Some(meta) = shared.catalog.lock().expect("poisoned").meta(podtrail_schema::catalog::META_CAPTURE_UNAVAILABLE)? else { return Ok(Vec::new()) };
        let v: serde_json::Value =
            serde_json::from_str(&meta).map_err(|e| QueryError::Runtime(format!("catalog meta capture_unavailable is not JSON ({e}): {meta}")))?;
        Ok(v["programs"].as_array().into_iter().flatten().filter_map(|p| p.as_str().map(str::to_owned)).collect())
    }

    /// Per shipping target: segments shipped and sealed ones waiting (data dir only).
    pub fn shipping_state(&self) -> Result<Vec<(String, u64, u64)>, QueryError> {
        let Some(shared) = &self.shared else { return Ok(Vec::new()) };
        Ok(shared.catalog.lock().expect("poisoned").shipping_state()?)
    }

    /// Warnings raised so far (damaged segments skipped, ...), oldest first.
    pub fn warnings(&self) -> Vec<String> {
        self.shared.as_ref().map(|s| s.warnings.lock().expect("poisoned").clone()).unwrap_or_default()
    }

    /// Over a lake (`podtrail sql --lake`) rather than a node's data dir.
    pub fn is_lake(&self) -> bool {
        self.shared.is_none()
    }

    pub fn scan_stats(&self) -> ScanStatsSnapshot {
        let Some(shared) = &self.shared else { return ScanStatsSnapshot { segments_live: 0, segments_selected: 0, segments_skipped: 0, hot_rows: 0 } };
        let s = &shared.stats;
        ScanStatsSnapshot {
            segments_live: s.segments_live.load(Ordering::Relaxed),
            segments_selected: s.segments_selected.load(Ordering::Relaxed),
            segments_skipped: s.segments_skipped.load(Ordering::Relaxed),
            hot_rows: s.hot_rows.load(Ordering::Relaxed),
        }
    }
}

enum HotRead {
    Vanished(PathBuf),
    Failed(QueryError),
}

/// Hot-tail rows of every event table that the catalog snapshot does not already
/// hold as a sealed segment.
fn read_hot_tails(data_dir: &Path, catalog: &Catalog) -> Result<HashMap<&'static str, Vec<RecordBatch>>, HotRead> {
    let mut out = HashMap::new();
    for def in EVENT_TABLES {
        let dir = layout::hot_table_dir(data_dir, def.name);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(HotRead::Failed(QueryError::Runtime(format!("reading {}: {e}", dir.display())))),
        };
        let mut batches = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| HotRead::Failed(QueryError::Runtime(format!("reading {}: {e}", dir.display()))))?.path();
            let Some(id) = layout::hot_file_segment_id(&path) else { continue };
            if catalog.segment_exists(&id).map_err(|e| HotRead::Failed(e.into()))? {
                continue;
            }
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(HotRead::Vanished(path)),
                Err(e) => return Err(HotRead::Failed(QueryError::Runtime(format!("reading {}: {e}", path.display())))),
            };
            match hot::read_frames(&bytes) {
                // Frames written by an older podtrail lack the columns added since.
                Ok((b, _tail)) => {
                    for batch in &b {
                        match podtrail_schema::tables::conform(def, batch) {
                            Ok(c) => batches.push(c),
                            Err(e) => tracing::warn!(file = %path.display(), "skipping a hot frame: {e}"),
                        }
                    }
                }
                Err(e) => tracing::warn!(file = %path.display(), "skipping hot file: {e}"),
            }
        }
        out.insert(def.name, batches);
    }
    Ok(out)
}

/// An event table: sealed segments chosen through the catalog, plus the hot tail.
struct SegmentTable {
    def: &'static TableDef,
    schema: SchemaRef,
    hot: Vec<RecordBatch>,
    shared: Arc<Shared>,
}

impl fmt::Debug for SegmentTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentTable({})", self.def.name)
    }
}

/// What the filters say about which segments can hold matching rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFilter {
    pub time_from: i64,
    pub time_to: i64,
    pub pods: Option<Vec<String>>,
}

impl SegmentFilter {
    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut sf = SegmentFilter { time_from: i64::MIN, time_to: i64::MAX, pods: None };
        for conj in filters.iter().flat_map(split_conjunction) {
            match conj {
                Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                    let (col, op, lit) = match (column_name(left), literal(right), column_name(right), literal(left)) {
                        (Some(c), Some(l), _, _) => (c, *op, l),
                        (_, _, Some(c), Some(l)) => match op.swap() {
                            Some(op) => (c, op, l),
                            None => continue,
                        },
                        _ => continue,
                    };
                    match col {
                        "time" => {
                            let Some(t) = timestamp_ns(lit) else { continue };
                            match op {
                                Operator::Gt | Operator::GtEq => sf.time_from = sf.time_from.max(t),
                                Operator::Lt | Operator::LtEq => sf.time_to = sf.time_to.min(t),
                                Operator::Eq => {
                                    sf.time_from = sf.time_from.max(t);
                                    sf.time_to = sf.time_to.min(t);
                                }
                                _ => {}
                            }
                        }
                        "pod_uid" if op == Operator::Eq && sf.pods.is_none() => {
                            if let Some(s) = string(lit) {
                                sf.pods = Some(vec![s]);
                            }
                        }
                        _ => {}
                    }
                }
                Expr::Between(Between { expr, negated: false, low, high }) if column_name(expr) == Some("time") => {
                    if let (Some(lo), Some(hi)) = (literal(low).and_then(timestamp_ns), literal(high).and_then(timestamp_ns)) {
                        sf.time_from = sf.time_from.max(lo);
                        sf.time_to = sf.time_to.min(hi);
                    }
                }
                Expr::InList(il) if !il.negated && column_name(&il.expr) == Some("pod_uid") && sf.pods.is_none() => {
                    let vals: Option<Vec<String>> = il.list.iter().map(|e| literal(e).and_then(string)).collect();
                    sf.pods = vals;
                }
                _ => {}
            }
        }
        sf
    }
}

fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

fn timestamp_ns(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(*t),
        ScalarValue::TimestampMicrosecond(Some(t), _) => t.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(t), _) => t.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(t), _) => t.checked_mul(1_000_000_000),
        _ => None,
    }
}

fn string(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

impl SegmentTable {
    /// Segments to read: overlapping per the catalog, and intact.
    fn select_segments(&self, sf: &SegmentFilter) -> datafusion::error::Result<Vec<SegmentRecord>> {
        let (live, candidates) = {
            let cat = self.shared.catalog.lock().expect("poisoned");
            let live = cat.live_segment_count(self.def.name).map_err(|e| DataFusionError::External(Box::new(e)))?;
            let c = cat
                .segments_overlapping(self.def.name, sf.time_from, sf.time_to, sf.pods.as_deref())
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            (live, c)
        };
        let stats = &self.shared.stats;
        stats.segments_live.fetch_add(live, Ordering::Relaxed);
        let mut ok = Vec::with_capacity(candidates.len());
        for seg in candidates {
            match self.check_segment(&seg) {
                Ok(()) => ok.push(seg),
                Err(why) => {
                    let msg = format!("segment {} ({}): {why}; run `podtrail verify`", seg.path, seg.segment_id);
                    if self.shared.opts.strict {
                        return Err(DataFusionError::Execution(format!("{msg} (--strict)")));
                    }
                    stats.segments_skipped.fetch_add(1, Ordering::Relaxed);
                    let mut w = self.shared.warnings.lock().expect("poisoned");
                    let line = format!("skipped {msg}");
                    if !w.contains(&line) {
                        w.push(line);
                    }
                }
            }
        }
        stats.segments_selected.fetch_add(ok.len() as u64, Ordering::Relaxed);
        Ok(ok)
    }

    fn check_segment(&self, seg: &SegmentRecord) -> Result<(), String> {
        if let Some(v) = self.shared.verified.lock().expect("poisoned").get(&seg.seq) {
            return v.clone();
        }
        let verdict = check_file(&self.shared.data_dir.join(&seg.path), seg, self.shared.opts.verify_reads);
        self.shared.verified.lock().expect("poisoned").insert(seg.seq, verdict.clone());
        verdict
    }
}

/// Is the file on disk the one the catalog recorded? Size always; content when `hash`.
pub fn check_file(path: &Path, seg: &SegmentRecord, hash: bool) -> Result<(), String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("file is missing".into()),
        Err(e) => return Err(format!("cannot stat {}: {e}", path.display())),
    };
    if meta.len() != seg.bytes {
        return Err(format!("size {} bytes, catalog says {}", meta.len(), seg.bytes));
    }
    if hash {
        let got = podtrail_schema::catalog::sha256_file(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        if got != seg.sha256 {
            return Err(format!("SHA-256 {got} does not match the catalog's {}", seg.sha256));
        }
    }
    Ok(())
}

#[async_trait]
impl TableProvider for SegmentTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let sf = SegmentFilter::from_filters(filters);
        let segments = self.select_segments(&sf)?;
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !segments.is_empty() {
            let urls = segments
                .iter()
                .map(|s| ListingTableUrl::parse(self.shared.data_dir.join(&s.path).to_string_lossy()))
                .collect::<datafusion::error::Result<Vec<_>>>()?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(layout::SEGMENT_EXT);
            let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(Arc::clone(&self.schema));
            let table = ListingTable::try_new(config)?;
            inputs.push(table.scan(state, projection, filters, limit).await?);
        }
        let hot_rows: usize = self.hot.iter().map(|b| b.num_rows()).sum();
        if hot_rows > 0 || inputs.is_empty() {
            self.shared.stats.hot_rows.fetch_add(hot_rows as u64, Ordering::Relaxed);
            let mem = MemTable::try_new(Arc::clone(&self.schema), vec![self.hot.clone()])?;
            inputs.push(mem.scan(state, projection, filters, limit).await?);
        }
        UnionExec::try_new(inputs)
    }
}

/// An event table in the lake: a listing of `<table>/date=/node=/` whose scans also
/// get a `date` bound derived from any bound on `time`.
#[derive(Debug)]
struct LakeTable {
    name: &'static str,
    inner: ListingTable,
}

#[async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let mut filters = filters.to_vec();
        filters.extend(date_bounds(&SegmentFilter::from_filters(&filters)));
        tracing::debug!(table = self.name, ?filters, "lake scan");
        self.inner.scan(state, projection, &filters, limit).await
    }
}

/// `date` partition predicates implied by a time window. Exact: the store never
/// lets a segment cross an hour boundary (`SegmentStore::append` splits batches),
/// so a row's date is its segment's.
fn date_bounds(sf: &SegmentFilter) -> Vec<Expr> {
    use datafusion::prelude::{col, lit};
    let day = |ns: i64| chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(ns).format("%Y-%m-%d").to_string();
    let mut out = Vec::new();
    if sf.time_from != i64::MIN {
        out.push(col("date").gt_eq(lit(day(sf.time_from))));
    }
    if sf.time_to != i64::MAX {
        out.push(col("date").lt_eq(lit(day(sf.time_to))));
    }
    out
}

/// `who_owned(ip, time)`: the `ip_owners` rows whose interval holds `time`.
/// `time` is a timestamp or any time expression podtrail accepts (a string).
#[derive(Debug)]
struct WhoOwned {
    owners: RecordBatch,
}

impl TableFunctionImpl for WhoOwned {
    fn call_with_args(&self, args: TableFunctionArgs) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let usage = "who_owned(ip, time) takes an IP address and a time: who_owned('10.244.1.7', '2026-11-17 14:03')";
        let [ip, time] = args.exprs() else {
            return Err(DataFusionError::Plan(format!("{usage}; got {} arguments", args.exprs().len())));
        };
        let ip = match literal_through_cast(ip) {
            Some(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s))) => {
                crate::who_owned::canonical_ip(s).map_err(|e| DataFusionError::Plan(format!("who_owned: {e}")))?
            }
            _ => return Err(DataFusionError::Plan(format!("{usage}; the IP must be a string literal, got {ip}"))),
        };
        let t = match literal_through_cast(time) {
            Some(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s))) => {
                crate::timeexpr::parse(s, chrono::Utc::now()).map_err(|e| DataFusionError::Plan(format!("who_owned: {e}")))?
            }
            Some(v) if timestamp_ns(v).is_some() => timestamp_ns(v).expect("checked"),
            _ => return Err(DataFusionError::Plan(format!("{usage}; the time must be a timestamp or string literal, got {time}"))),
        };
        let rows = crate::who_owned::owners_at(&self.owners, &ip, t)?;
        Ok(Arc::new(MemTable::try_new(self.owners.schema(), vec![vec![rows]])?))
    }
}

/// The literal inside `e`, also through a cast (`TIMESTAMP '...'` is a cast of a
/// string literal).
fn literal_through_cast(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Cast(c) => literal_through_cast(&c.expr),
        Expr::TryCast(c) => literal_through_cast(&c.expr),
        e => literal(e),
    }
}

/// The catalog of `data_dir`, or one line saying why there is none to read: no
/// such directory, not a directory, no permission, or no history in it.
pub fn check_data_dir(data_dir: &Path) -> Result<std::path::PathBuf, QueryError> {
    let start = || format!("start recording with `podtraild run --data-dir {}`", data_dir.display());
    match std::fs::metadata(data_dir) {
        Ok(m) if !m.is_dir() => return Err(QueryError::NoData(format!("data dir {} is not a directory", data_dir.display()))),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(QueryError::NoData(format!(
                "data dir {} does not exist; {} or point --data-dir / PODTRAIL_DATA_DIR at an existing one",
                data_dir.display(),
                start()
            )));
        }
        Err(e) => return Err(QueryError::NoData(format!("data dir {}: {e}", data_dir.display()))),
    }
    let cat_path = layout::catalog_path(data_dir);
    match std::fs::metadata(&cat_path) {
        Ok(_) => Ok(cat_path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(QueryError::NoData(format!("{} holds no podtrail history (no {}); {}", data_dir.display(), layout::CATALOG_FILE, start())))
        }
        // Permission denied on the data dir (0700, the recorder's user): say so.
        Err(e) => Err(QueryError::NoData(format!("{}: {e} (the data dir is readable by its owner only; run as that user or root)", cat_path.display()))),
    }
}

pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(ns: i64) -> Expr {
        Expr::Literal(ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into())), None)
    }

    #[test]
    fn time_and_pod_bounds_come_from_conjuncts_in_either_order() {
        let f = vec![
            col("time").gt_eq(ts(100)).and(ts(200).gt(col("time"))),
            col("pod_uid").eq(lit("abc")),
            col("comm").eq(lit("sh")),
        ];
        let sf = SegmentFilter::from_filters(&f);
        assert_eq!(sf, SegmentFilter { time_from: 100, time_to: 200, pods: Some(vec!["abc".into()]) });
    }

    #[test]
    fn disjunctions_and_negations_never_narrow_the_scan() {
        // Narrowing on an OR would skip segments that hold matching rows.
        let f = vec![col("time").gt(ts(100)).or(col("pod_uid").eq(lit("x"))), col("pod_uid").not_eq(lit("y"))];
        let sf = SegmentFilter::from_filters(&f);
        assert_eq!(sf, SegmentFilter { time_from: i64::MIN, time_to: i64::MAX, pods: None });
    }

    #[test]
    fn between_and_in_list() {
        let f = vec![col("time").between(ts(5), ts(9)), col("pod_uid").in_list(vec![lit("a"), lit("b")], false)];
        let sf = SegmentFilter::from_filters(&f);
        assert_eq!(sf, SegmentFilter { time_from: 5, time_to: 9, pods: Some(vec!["a".into(), "b".into()]) });
    }
}
