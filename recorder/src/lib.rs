//! podtrail-recorder: the stages of `podtraild`, each a module named for it:
//! `probes` (load eBPF, drain the ring buffer) -> `decode` -> `procs` (process
//! table, exec ids) -> `batch` (Arrow batches) -> `segments` (durable store).
//! `run` wires them together. Identity (pods) and network capture come next.

pub mod batch;
pub mod decode;
pub mod metrics;
pub mod probes;
pub mod procs;
pub mod run;
pub mod segments;

pub use segments::{SegmentStore, StoreConfig};
