//! podtrail-query: the library behind the `podtrail` CLI. It reads a data dir
//! read-only (also while `podtraild` writes) and never depends on the recorder.

pub mod engine;
pub mod export;
pub mod ocsf;
pub mod output;
pub mod profile;
pub mod status;
pub mod timeexpr;
pub mod timeline;
pub mod verify;
pub mod who_owned;

pub use engine::{Engine, EngineOptions, ScanStatsSnapshot};

use datafusion::error::DataFusionError;
use podtrail_schema::CatalogError;

/// Errors of the query side. [`QueryError::exit_code`] maps them to the CLI's
/// documented exit codes: 2 for bad input, 1 for runtime failures.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    NoData(String),
    #[error("{0}")]
    BadQuery(String),
    #[error("refused: the history is read-only ({0} is not allowed); only queries (SELECT, EXPLAIN, SHOW, DESCRIBE) run")]
    ReadOnly(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    Runtime(String),
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

impl QueryError {
    pub fn exit_code(&self) -> u8 {
        match self {
            QueryError::NoData(_) | QueryError::BadQuery(_) | QueryError::ReadOnly(_) => 2,
            QueryError::Catalog(_) | QueryError::Runtime(_) | QueryError::Io { .. } => 1,
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        let msg = engine::one_line(&e.to_string());
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_) => QueryError::BadQuery(msg),
            _ => QueryError::Runtime(msg),
        }
    }
}
