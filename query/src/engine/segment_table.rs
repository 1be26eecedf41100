//! An event table of a node's data dir: the sealed segments the catalog says
//! overlap the query, checked against the catalog before they are read, plus the
//! hot tail.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{MemTable, Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use podtrail_schema::catalog::SegmentRecord;
use podtrail_schema::layout;
use podtrail_schema::tables::TableDef;

use super::Shared;
use crate::verify::check_file;

/// An event table: sealed segments chosen through the catalog, plus the hot tail.
pub(super) struct SegmentTable {
    pub(super) def: &'static TableDef,
    pub(super) schema: SchemaRef,
    pub(super) hot: Vec<RecordBatch>,
    pub(super) shared: Arc<Shared>,
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

pub(super) fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

pub(super) fn timestamp_ns(v: &ScalarValue) -> Option<i64> {
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

