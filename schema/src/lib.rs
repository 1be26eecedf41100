//! podtrail-schema: the on-disk contract shared by the recorder (writer) and the
//! query tool (reader). Table definitions, data-dir layout, the hot-tail frame format
//! and the SQLite catalog live here, so the two sides cannot disagree.

pub mod catalog;
pub mod hot;
pub mod lake;
pub mod layout;
pub mod records;
pub mod tables;

pub use catalog::{Catalog, CatalogError, SegmentRecord};
pub use tables::{ColType, ColumnDef, EVENT_TABLES, CATALOG_TABLES, Storage, TableDef};
