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

use std::path::{Path, PathBuf};

use datafusion::error::DataFusionError;
use podtrail_schema::CatalogError;
use podtrail_schema::layout;

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
        let msg = one_line(&e.to_string());
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

/// The catalog of `data_dir`, or one line saying why there is none to read: no
/// such directory, not a directory, no permission, or no history in it.
pub fn check_data_dir(data_dir: &Path) -> Result<PathBuf, QueryError> {
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

/// An error text on one line (DataFusion's and SQLite's span several).
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
