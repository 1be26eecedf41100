//! podtrail-recorder: the stages of `podtraild`, each a module named for it:
//! `probes` (load eBPF, drain the ring buffer) -> `decode` -> `procs` (process
//! table, exec ids; `privilege` names the privilege records' numbers) -> `identity` (pod and container at event time, IP
//! ownership) -> `batch` (Arrow batches) -> `segments` (durable store).
//! `run` wires them together.

pub mod batch;
pub mod decode;
pub mod identity;
pub mod loss;
pub mod metrics;
pub mod privilege;
pub mod probes;
pub mod procs;
pub mod run;
pub mod segments;
pub mod ship;

pub use segments::{SegmentStore, StoreConfig};
