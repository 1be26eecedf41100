//! An event table of a lake: a listing of `<table>/date=/node=/` whose scans also
//! get a `date` bound derived from any bound on `time`.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::listing::ListingTable;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::segment_table::SegmentFilter;

#[derive(Debug)]
pub(super) struct LakeTable {
    pub(super) name: &'static str,
    pub(super) inner: ListingTable,
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

