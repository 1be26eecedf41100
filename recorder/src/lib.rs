//! podtrail-recorder: the stages of `podtraild`. Today: `segments`, the durable
//! store every other stage writes into. Kernel capture (`probes`, `decode`, `procs`)
//! and `identity` come next; see the repository README for what is built.

pub mod segments;

pub use segments::{SegmentStore, StoreConfig};
