//! `podtrail verify`: check the catalog itself, re-hash every sealed segment and
//! re-walk the hash chain.
//!
//! In: the catalog and the segment files. Out: one line per problem, naming the
//! catalog, or the segment and its file, and a summary. A catalog SQLite finds
//! damaged, any altered or missing segment, or a break in the chain (a catalog
//! row removed or edited) fails the verification. A chain rebuilt from the
//! segment files (`podtraild recover --rebuild-catalog`) is said, not failed: it
//! proves the segments unaltered since the rebuild only.

use std::path::Path;

use podtrail_schema::catalog::{CHAIN_GENESIS, Catalog, SegmentRecord, chain_sha256};

use crate::{QueryError, check_data_dir, one_line};

#[derive(Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub segments: u64,
    pub ok: u64,
    pub bytes_hashed: u64,
    pub expired: u64,
    pub problems: Vec<String>,
    /// When the chain was rebuilt from the segment files, what that means.
    pub chain_rebuilt: Option<String>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn verify(data_dir: &Path) -> Result<VerifyReport, QueryError> {
    let cat_path = check_data_dir(data_dir)?;
    let mut r = VerifyReport::default();
    let damaged = |r: &mut VerifyReport, why: String| {
        r.problems.push(format!(
            "catalog {}: {why}; the history it indexes cannot be trusted: rebuild it from the segments with `podtraild --data-dir {} recover --rebuild-catalog`",
            cat_path.display(),
            data_dir.display()
        ));
    };
    let cat = match Catalog::open_ro(&cat_path) {
        Ok(c) => c,
        Err(podtrail_schema::CatalogError::Damaged { problem, .. }) => {
            damaged(&mut r, format!("cannot be read ({problem})"));
            return Ok(r);
        }
        Err(e @ podtrail_schema::CatalogError::Sqlite { .. }) => {
            damaged(&mut r, format!("cannot be read ({})", one_line(&e.to_string())));
            return Ok(r);
        }
        Err(e) => return Err(e.into()),
    };
    match cat.check() {
        Ok(problems) if problems.is_empty() => {}
        Ok(problems) => {
            let more = if problems.len() > 1 { format!(" (and {} more)", problems.len() - 1) } else { String::new() };
            damaged(&mut r, format!("SQLite's integrity check fails: {}{more}", problems[0]));
        }
        Err(e) => damaged(&mut r, format!("SQLite's integrity check cannot run ({})", one_line(&e.to_string()))),
    }
    if let Ok(Some(meta)) = cat.meta(podtrail_schema::catalog::META_CHAIN_REBUILT) {
        let v: serde_json::Value = serde_json::from_str(&meta).unwrap_or_default();
        let at = v["at"].as_i64().map(|t| chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_else(|| "?".into());
        r.chain_rebuilt = Some(format!(
            "the hash chain was rebuilt from the segment files at {at} (podtraild recover --rebuild-catalog): it proves segments unaltered since then, not before"
        ));
    }
    let segments = match cat.segments() {
        Ok(s) => s,
        Err(e) => {
            damaged(&mut r, format!("its segment records cannot be read ({})", one_line(&e.to_string())));
            return Ok(r);
        }
    };
    let mut prev_chain = CHAIN_GENESIS.to_owned();
    let mut prev_seq = 0;
    for seg in segments {
        r.segments += 1;
        if seg.seq != prev_seq + 1 {
            r.problems.push(format!(
                "chain: catalog rows seq {}..{} are missing (segments removed from the catalog)",
                prev_seq + 1,
                seg.seq - 1
            ));
        }
        let want = chain_sha256(&prev_chain, &seg.segment_id, &seg.sha256);
        if want != seg.chain_sha256 {
            r.problems.push(format!("chain: broken at seq {} (segment {}): the catalog was altered at or before this row", seg.seq, seg.segment_id));
        }
        prev_chain = seg.chain_sha256.clone();
        prev_seq = seg.seq;
        if seg.expired {
            r.expired += 1;
            continue;
        }
        let path = data_dir.join(&seg.path);
        match check_file(&path, &seg, true) {
            Ok(()) => {
                r.ok += 1;
                r.bytes_hashed += seg.bytes;
            }
            Err(why) => r.problems.push(format!("segment {} ({}): {why}", seg.segment_id, path.display())),
        }
    }
    Ok(r)
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
