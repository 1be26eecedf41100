//! All DataFusion wiring: the one adapter between podtrail's store and the engine.
//!
//! In: a data dir (read-only). Out: a `SessionContext` with every event table (sealed
//! segments + hot tail as one table) and every catalog table registered, and a
//! read-only `sql()` entry point.
//!
//! The event-table provider (`engine/segment_table.rs`) asks the catalog which
//! segments overlap the query's time range and pods *before* any file is opened,
//! then lets DataFusion prune row groups and pages of those files (statistics,
//! page index, bloom filters). Filter pushdown is reported `Inexact`, so
//! DataFusion re-checks every row: pruning can only skip work, never change an
//! answer.
//!
//! Consistency: one SQLite read transaction is held for the engine's life, and hot
//! tails are read after it began; a hot file whose segment that snapshot already
//! lists is skipped, so a concurrent seal can neither double nor drop rows.

mod hot_tail;
mod lake_table;
mod segment_table;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemTable, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use podtrail_schema::catalog::Catalog;
use podtrail_schema::layout;
use podtrail_schema::tables::{CATALOG_TABLES, EVENT_TABLES, IP_OWNERS};

use self::hot_tail::{HotRead, read_hot_tails};
use self::lake_table::LakeTable;
pub use self::segment_table::SegmentFilter;
use self::segment_table::{SegmentTable, literal, timestamp_ns};
use crate::who_owned::Answer;
use crate::{QueryError, check_data_dir, one_line};

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
    /// The `ip_owners` table, for `who_owned`.
    owners: RecordBatch,
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
        let mut owners = RecordBatch::new_empty(IP_OWNERS.arrow_schema());
        for def in EVENT_TABLES {
            let hot = hot_by_table.remove(def.name).unwrap_or_default();
            hot_rows.insert(def.name, hot.iter().map(|b| b.num_rows() as u64).sum());
            let provider = SegmentTable { def, schema: def.arrow_schema(), hot, shared: Arc::clone(&shared) };
            ctx.register_table(def.name, Arc::new(provider))?;
        }
        for (def, batch) in catalog_batches {
            if def.name == IP_OWNERS.name {
                owners = batch.clone();
                ctx.register_udtf("who_owned", Arc::new(WhoOwned { owners: batch.clone() }));
            }
            let t = MemTable::try_new(def.arrow_schema(), vec![vec![batch]])?;
            ctx.register_table(def.name, Arc::new(t))?;
        }
        Ok(Engine { ctx, shared: Some(shared), hot_rows, owners })
    }

    /// Open a lake written by `podtrail export` / `podtraild --ship-to`: every
    /// node's event tables (partitioned by `date` and `node`, both columns here) and
    /// identity snapshots, with the same table names and `who_owned()`.
    ///
    /// Partition pruning: `date` and `node` predicates skip whole directories, and a
    /// bound on `time` is turned into a `date` bound (every row of a segment lies in
    /// the segment's UTC hour, so its `date` partition is each row's date).
    pub async fn open_lake(lake: &podtrail_lake::Lake) -> Result<Engine, QueryError> {
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
        ctx.register_udtf("who_owned", Arc::new(WhoOwned { owners: owners.clone() }));
        Ok(Engine { ctx, shared: None, hot_rows: HashMap::new(), owners })
    }

    /// Who owned `ip` at `t` (a node's or a lake's `ip_owners`), and when nobody
    /// did, the nearest owners before and after.
    pub fn who_owned(&self, ip: &str, t: i64) -> Result<Answer, QueryError> {
        crate::who_owned::answer(&self.owners, ip, t)
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

