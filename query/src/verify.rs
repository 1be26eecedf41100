//! `podtrail verify`: re-hash every sealed segment and re-walk the hash chain.
//!
//! In: the catalog and the segment files. Out: one line per problem, naming the
//! segment and its file, and a summary. Any altered or missing segment, or a break
//! in the chain (a catalog row removed or edited), fails the verification.

use std::path::Path;

use podtrail_schema::catalog::{CHAIN_GENESIS, Catalog, chain_sha256};
use podtrail_schema::layout;

use crate::QueryError;
use crate::engine::check_file;

#[derive(Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub segments: u64,
    pub ok: u64,
    pub bytes_hashed: u64,
    pub expired: u64,
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn verify(data_dir: &Path) -> Result<VerifyReport, QueryError> {
    let cat_path = layout::catalog_path(data_dir);
    if !cat_path.exists() {
        return Err(QueryError::NoData(format!("{} holds no podtrail history (no {})", data_dir.display(), layout::CATALOG_FILE)));
    }
    let cat = Catalog::open_ro(&cat_path)?;
    let mut r = VerifyReport::default();
    let mut prev_chain = CHAIN_GENESIS.to_owned();
    let mut prev_seq = 0;
    for seg in cat.segments()? {
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
