//! `metrics` stage: counters every stage bumps, served as Prometheus text on
//! `--metrics-addr` (off by default; 127.0.0.1:9464 when given without a value).
//!
//! Loss is also data: the same drops are rows of `podtrail_loss`; these counters
//! are for live monitoring, not the record.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub exec_rows: AtomicU64,
    pub exit_rows: AtomicU64,
    pub conn_rows: AtomicU64,
    pub privilege_rows: AtomicU64,
    pub cap_usage_rows: AtomicU64,
    pub kernel_drops: AtomicU64,
    pub decode_errors: AtomicU64,
    pub segments_sealed: AtomicU64,
    pub bytes_sealed: AtomicU64,
    pub hot_flushes: AtomicU64,
    pub identity_unresolved: AtomicU64,
    pub tracked_pods: AtomicU64,
    pub cri_errors: AtomicU64,
    pub kube_errors: AtomicU64,
    pub segments_shipped: AtomicU64,
    pub ship_failures: AtomicU64,
    pub ship_backlog: AtomicU64,
    /// Rows not stored because the data dir could not be written.
    pub disk_dropped_rows: AtomicU64,
    pub store_write_failures: AtomicU64,
    /// 1 while the store's writes fail (rows held in memory, then counted as loss).
    pub store_failing: AtomicU64,
    pub store_buffered_bytes: AtomicU64,
    pub disk_free_bytes: AtomicU64,
    /// The kernel ring buffers' fill, set once the probes are loaded.
    pub rings: std::sync::OnceLock<Vec<Arc<crate::probes::RingGauge>>>,
}

impl Metrics {
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
            .map(|kib| kib * 1024)
            .unwrap_or(0);
        let mut rings = String::from(
            "# HELP podtrail_ringbuf_fill_ratio Fraction of a kernel ring buffer holding unread records when the reader last woke up.\n\
             # TYPE podtrail_ringbuf_fill_ratio gauge\n",
        );
        let mut peaks = String::from(
            "# HELP podtrail_ringbuf_fill_peak_ratio Highest podtrail_ringbuf_fill_ratio since podtraild started (1 means records were being dropped).\n\
             # TYPE podtrail_ringbuf_fill_peak_ratio gauge\n",
        );
        for r in self.rings.get().map(Vec::as_slice).unwrap_or_default() {
            rings.push_str(&format!("podtrail_ringbuf_fill_ratio{{object=\"{}\"}} {:.6}\n", r.object, r.fill()));
            peaks.push_str(&format!("podtrail_ringbuf_fill_peak_ratio{{object=\"{}\"}} {:.6}\n", r.object, r.peak_fill()));
        }
        format!(
            "{rings}{peaks}# HELP podtrail_rows_total Event rows handed to the store, per table.\n\
             # TYPE podtrail_rows_total counter\n\
             podtrail_rows_total{{table=\"process_exec\"}} {}\n\
             podtrail_rows_total{{table=\"process_exit\"}} {}\n\
             podtrail_rows_total{{table=\"net_conn\"}} {}\n\
             podtrail_rows_total{{table=\"privilege\"}} {}\n\
             podtrail_rows_total{{table=\"cap_usage\"}} {}\n\
             # HELP podtrail_dropped_total Events lost, by where (also rows of podtrail_loss).\n\
             # TYPE podtrail_dropped_total counter\n\
             podtrail_dropped_total{{source=\"kernel_ringbuf\"}} {}\n\
             podtrail_dropped_total{{source=\"decode\"}} {}\n\
             podtrail_dropped_total{{source=\"disk\"}} {}\n\
             # HELP podtrail_store_write_failing 1 while writes to the data dir fail (rows are held in memory up to a bound, then counted as disk loss; writes are retried).\n\
             # TYPE podtrail_store_write_failing gauge\n\
             podtrail_store_write_failing {}\n\
             # HELP podtrail_store_write_failures_total Writes to the data dir that failed (each retried).\n\
             # TYPE podtrail_store_write_failures_total counter\n\
             podtrail_store_write_failures_total {}\n\
             # HELP podtrail_store_buffered_bytes Bytes of rows held in memory, not yet sealed.\n\
             # TYPE podtrail_store_buffered_bytes gauge\n\
             podtrail_store_buffered_bytes {}\n\
             # HELP podtrail_data_dir_free_bytes Free bytes on the data dir's filesystem.\n\
             # TYPE podtrail_data_dir_free_bytes gauge\n\
             podtrail_data_dir_free_bytes {}\n\
             # HELP podtrail_segments_sealed_total Segments sealed to Parquet.\n\
             # TYPE podtrail_segments_sealed_total counter\n\
             podtrail_segments_sealed_total {}\n\
             # HELP podtrail_segment_bytes_total Bytes of sealed segments written.\n\
             # TYPE podtrail_segment_bytes_total counter\n\
             podtrail_segment_bytes_total {}\n\
             # HELP podtrail_hot_flushes_total Hot-tail flushes (fsynced appends).\n\
             # TYPE podtrail_hot_flushes_total counter\n\
             podtrail_hot_flushes_total {}\n\
             # HELP podtrail_identity_unresolved_rows_total Rows whose cgroup id could not be resolved to a path (pod columns null).\n\
             # TYPE podtrail_identity_unresolved_rows_total counter\n\
             podtrail_identity_unresolved_rows_total {}\n\
             # HELP podtrail_identity_pods Pods with an open interval (alive, seen by the identity stage).\n\
             # TYPE podtrail_identity_pods gauge\n\
             podtrail_identity_pods {}\n\
             # HELP podtrail_cri_errors_total Failed CRI metadata refreshes (recording goes on).\n\
             # TYPE podtrail_cri_errors_total counter\n\
             podtrail_cri_errors_total {}\n\
             # HELP podtrail_kube_errors_total Failed Kubernetes API lists or watches (retried; recording goes on).\n\
             # TYPE podtrail_kube_errors_total counter\n\
             podtrail_kube_errors_total {}\n\
             # HELP podtrail_segments_shipped_total Segments uploaded to the --ship-to lake.\n\
             # TYPE podtrail_segments_shipped_total counter\n\
             podtrail_segments_shipped_total {}\n\
             # HELP podtrail_ship_failures_total Failed shipping attempts (retried with backoff; recording goes on).\n\
             # TYPE podtrail_ship_failures_total counter\n\
             podtrail_ship_failures_total {}\n\
             # HELP podtrail_ship_backlog_segments Sealed segments not shipped yet.\n\
             # TYPE podtrail_ship_backlog_segments gauge\n\
             podtrail_ship_backlog_segments {}\n\
             # HELP podtrail_process_resident_memory_bytes Resident memory of podtraild.\n\
             # TYPE podtrail_process_resident_memory_bytes gauge\n\
             podtrail_process_resident_memory_bytes {}\n",
            g(&self.exec_rows),
            g(&self.exit_rows),
            g(&self.conn_rows),
            g(&self.privilege_rows),
            g(&self.cap_usage_rows),
            g(&self.kernel_drops),
            g(&self.decode_errors),
            g(&self.disk_dropped_rows),
            g(&self.store_failing),
            g(&self.store_write_failures),
            g(&self.store_buffered_bytes),
            g(&self.disk_free_bytes),
            g(&self.segments_sealed),
            g(&self.bytes_sealed),
            g(&self.hot_flushes),
            g(&self.identity_unresolved),
            g(&self.tracked_pods),
            g(&self.cri_errors),
            g(&self.kube_errors),
            g(&self.segments_shipped),
            g(&self.ship_failures),
            g(&self.ship_backlog),
            rss
        )
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
