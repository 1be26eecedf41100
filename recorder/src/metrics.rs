//! `metrics` stage: the counters every stage bumps, served as Prometheus text on
//! `--metrics-addr` (off by default; 127.0.0.1:9464 when given without a value),
//! and the run summary podtraild prints at exit, which is a snapshot of them.
//!
//! Loss is also data: the same drops are rows of `podtrail_loss`; these counters
//! are for live monitoring, not the record.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use podtrail_schema::tables::EVENT_TABLES;

#[derive(Debug)]
pub struct Metrics {
    /// Rows handed to the store, per event table (in `EVENT_TABLES` order).
    rows: Vec<AtomicU64>,
    /// Events the kernel programs could not send (ring buffer or map full, runs skipped).
    pub kernel_drops: AtomicU64,
    /// Rows stored without part of their columns (kernel state gone).
    pub incomplete_rows: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Rows not stored because the data dir could not be written.
    pub disk_dropped_rows: AtomicU64,
    pub store_write_failures: AtomicU64,
    /// 1 while the store's writes fail (rows held in memory, then counted as loss).
    pub store_failing: AtomicU64,
    pub store_buffered_bytes: AtomicU64,
    pub disk_free_bytes: AtomicU64,
    pub segments_sealed: AtomicU64,
    pub bytes_sealed: AtomicU64,
    pub hot_flushes: AtomicU64,
    /// Rows whose cgroup could not be resolved to a path (pod columns null).
    pub identity_unresolved: AtomicU64,
    pub tracked_pods: AtomicU64,
    pub cgroup_walks: AtomicU64,
    pub cri_polls: AtomicU64,
    pub cri_errors: AtomicU64,
    /// Snapshots from the Kubernetes API source (one per pod change) and failed lists/watches.
    pub kube_updates: AtomicU64,
    pub kube_errors: AtomicU64,
    /// Shipping (`--ship-to`).
    pub segments_shipped: AtomicU64,
    pub bytes_shipped: AtomicU64,
    pub segments_already_shipped: AtomicU64,
    pub ship_failures: AtomicU64,
    pub ship_backlog: AtomicU64,
    /// The kernel ring buffers' fill, set once the probes are loaded.
    pub rings: std::sync::OnceLock<Vec<Arc<crate::probes::RingGauge>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            rows: EVENT_TABLES.iter().map(|_| AtomicU64::new(0)).collect(),
            kernel_drops: AtomicU64::default(),
            incomplete_rows: AtomicU64::default(),
            decode_errors: AtomicU64::default(),
            disk_dropped_rows: AtomicU64::default(),
            store_write_failures: AtomicU64::default(),
            store_failing: AtomicU64::default(),
            store_buffered_bytes: AtomicU64::default(),
            disk_free_bytes: AtomicU64::default(),
            segments_sealed: AtomicU64::default(),
            bytes_sealed: AtomicU64::default(),
            hot_flushes: AtomicU64::default(),
            identity_unresolved: AtomicU64::default(),
            tracked_pods: AtomicU64::default(),
            cgroup_walks: AtomicU64::default(),
            cri_polls: AtomicU64::default(),
            cri_errors: AtomicU64::default(),
            kube_updates: AtomicU64::default(),
            kube_errors: AtomicU64::default(),
            segments_shipped: AtomicU64::default(),
            bytes_shipped: AtomicU64::default(),
            segments_already_shipped: AtomicU64::default(),
            ship_failures: AtomicU64::default(),
            ship_backlog: AtomicU64::default(),
            rings: std::sync::OnceLock::new(),
        }
    }
}

/// What podtraild prints (JSON) when it stops: the counters at that moment.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RunSummary {
    /// Rows handed to the store, per event table.
    pub rows: BTreeMap<&'static str, u64>,
    pub kernel_drops: u64,
    pub incomplete_rows: u64,
    pub decode_errors: u64,
    pub disk_dropped_rows: u64,
    pub store_write_failures: u64,
    pub identity_unresolved: u64,
    pub cgroup_walks: u64,
    pub cri_polls: u64,
    pub cri_errors: u64,
    pub kube_updates: u64,
    pub kube_errors: u64,
    pub segments_shipped: u64,
    pub bytes_shipped: u64,
    pub segments_already_shipped: u64,
    pub ship_failures: u64,
    /// Sealed segments still waiting to be shipped at exit.
    pub ship_backlog: u64,
    /// Per ring buffer (object name): the highest fraction of it holding unread
    /// records at any reader wakeup (1.0: the kernel was dropping records).
    pub ringbuf_fill_peak: BTreeMap<String, f64>,
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Metrics {
    /// `n` more rows of `table` handed to the store (an unknown name is a bug:
    /// the store refuses such a batch before this is called).
    pub fn add_rows(&self, table: &str, n: u64) {
        if let Some(i) = EVENT_TABLES.iter().position(|t| t.name == table) {
            self.rows[i].fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn summary(&self) -> RunSummary {
        RunSummary {
            rows: EVENT_TABLES.iter().zip(&self.rows).map(|(t, n)| (t.name, get(n))).collect(),
            kernel_drops: get(&self.kernel_drops),
            incomplete_rows: get(&self.incomplete_rows),
            decode_errors: get(&self.decode_errors),
            disk_dropped_rows: get(&self.disk_dropped_rows),
            store_write_failures: get(&self.store_write_failures),
            identity_unresolved: get(&self.identity_unresolved),
            cgroup_walks: get(&self.cgroup_walks),
            cri_polls: get(&self.cri_polls),
            cri_errors: get(&self.cri_errors),
            kube_updates: get(&self.kube_updates),
            kube_errors: get(&self.kube_errors),
            segments_shipped: get(&self.segments_shipped),
            bytes_shipped: get(&self.bytes_shipped),
            segments_already_shipped: get(&self.segments_already_shipped),
            ship_failures: get(&self.ship_failures),
            ship_backlog: get(&self.ship_backlog),
            ringbuf_fill_peak: self.rings.get().map(Vec::as_slice).unwrap_or_default().iter().map(|r| (r.object.to_string(), r.peak_fill())).collect(),
        }
    }

    pub fn render(&self) -> String {
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
            .map(|kib| kib * 1024)
            .unwrap_or(0);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in samples {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        let one = |a: &AtomicU64| vec![(String::new(), get(a) as f64)];
        let rings = self.rings.get().map(Vec::as_slice).unwrap_or_default();
        let fill: Vec<(String, f64)> = rings.iter().map(|r| (format!("{{object=\"{}\"}}", r.object), r.fill())).collect();
        let peak: Vec<(String, f64)> = rings.iter().map(|r| (format!("{{object=\"{}\"}}", r.object), r.peak_fill())).collect();
        metric("podtrail_ringbuf_fill_ratio", "gauge", "Fraction of a kernel ring buffer holding unread records when the reader last woke up.", &fill);
        metric("podtrail_ringbuf_fill_peak_ratio", "gauge", "Highest podtrail_ringbuf_fill_ratio since podtraild started (1 means records were being dropped).", &peak);
        let rows: Vec<(String, f64)> = EVENT_TABLES.iter().zip(&self.rows).map(|(t, n)| (format!("{{table=\"{}\"}}", t.name), get(n) as f64)).collect();
        metric("podtrail_rows_total", "counter", "Event rows handed to the store, per table.", &rows);
        let dropped = [("kernel", &self.kernel_drops), ("decode", &self.decode_errors), ("disk", &self.disk_dropped_rows), ("incomplete", &self.incomplete_rows)];
        let dropped: Vec<(String, f64)> = dropped.iter().map(|(s, a)| (format!("{{source=\"{s}\"}}"), get(a) as f64)).collect();
        metric("podtrail_dropped_total", "counter", "Events lost (kernel: ring buffer or map full, runs skipped; incomplete: rows stored without part of their columns), by where (also rows of podtrail_loss).", &dropped);
        metric("podtrail_store_write_failing", "gauge", "1 while writes to the data dir fail (rows are held in memory up to a bound, then counted as disk loss; writes are retried).", &one(&self.store_failing));
        metric("podtrail_store_write_failures_total", "counter", "Writes to the data dir that failed (each retried).", &one(&self.store_write_failures));
        metric("podtrail_store_buffered_bytes", "gauge", "Bytes of rows held in memory, not yet sealed.", &one(&self.store_buffered_bytes));
        metric("podtrail_data_dir_free_bytes", "gauge", "Free bytes on the data dir's filesystem.", &one(&self.disk_free_bytes));
        metric("podtrail_segments_sealed_total", "counter", "Segments sealed to Parquet.", &one(&self.segments_sealed));
        metric("podtrail_segment_bytes_total", "counter", "Bytes of sealed segments written.", &one(&self.bytes_sealed));
        metric("podtrail_hot_flushes_total", "counter", "Hot-tail flushes (fsynced appends).", &one(&self.hot_flushes));
        metric("podtrail_identity_unresolved_rows_total", "counter", "Rows whose cgroup id could not be resolved to a path (pod columns null).", &one(&self.identity_unresolved));
        metric("podtrail_identity_pods", "gauge", "Pods with an open interval (alive, seen by the identity stage).", &one(&self.tracked_pods));
        metric("podtrail_cri_errors_total", "counter", "Failed CRI metadata refreshes (recording goes on).", &one(&self.cri_errors));
        metric("podtrail_kube_errors_total", "counter", "Failed Kubernetes API lists or watches (retried; recording goes on).", &one(&self.kube_errors));
        metric("podtrail_segments_shipped_total", "counter", "Segments uploaded to the --ship-to lake.", &one(&self.segments_shipped));
        metric("podtrail_ship_failures_total", "counter", "Failed shipping attempts (retried with backoff; recording goes on).", &one(&self.ship_failures));
        metric("podtrail_ship_backlog_segments", "gauge", "Sealed segments not shipped yet.", &one(&self.ship_backlog));
        metric("podtrail_process_resident_memory_bytes", "gauge", "Resident memory of podtraild.", &[(String::new(), rss as f64)]);
        out
    }
}

/// Serve `metrics` on `addr` from a background thread; returns the bound address
/// (useful with port 0).
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut req = [0u8; 1024];
            let _ = conn.read(&mut req); // any request gets the metrics
            let body = metrics.render();
            let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    })?;
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_counted_per_table_in_the_summary_and_the_text() {
        let m = Metrics::default();
        m.add_rows("net_conn", 3);
        m.add_rows("process_exec", 2);
        m.add_rows("net_conn", 1);
        let s = m.summary();
        assert_eq!((s.rows["net_conn"], s.rows["process_exec"], s.rows["privilege"]), (4, 2, 0));
        let text = m.render();
        assert!(text.contains("podtrail_rows_total{table=\"net_conn\"} 4\n"), "{text}");
        assert!(text.contains("# TYPE podtrail_rows_total counter\n"), "{text}");
    }
}
