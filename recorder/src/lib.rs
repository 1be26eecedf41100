//! podtrail-recorder: the stages of `podtraild`, each a module named for it, in
//! the order data flows: `probes` (load eBPF, drain the ring buffers) ->
//! `decode` (with `dns`, which pairs DNS queries with their answers, and
//! `tls`, which reads the server names of TLS connections) -> `procs` (process table, exec ids) -> `identity` (pod and
//! container at event time, IP ownership) -> `batch` (Arrow batches) ->
//! `segments` (durable store); `metrics` counts. `run` wires them together.
//!
//! Not stages: `rows` (the row of every event table and the identity it
//! carries: what flows between procs, identity and batch), `columns` (Arrow
//! column helpers for row definitions), `names` (the kernel's numbers as
//! names), `privilege` (what privilege records mean; capability counters),
//! `loss` (kernel drop counters to loss rows), `ship` (the lake shipper).
//! A module never imports a later stage.

pub mod batch;
pub mod columns;
pub mod decode;
pub mod exehash;
pub mod dns;
pub mod files;
pub mod flows;
pub mod identity;
pub mod loss;
pub mod metrics;
pub mod names;
pub mod privilege;
pub mod probes;
pub mod procs;
pub mod rows;
pub mod run;
pub mod segments;
pub mod ship;
pub mod tls;

pub use segments::{SegmentStore, StoreConfig};
