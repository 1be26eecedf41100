//! `podtraild`: thin binary over podtrail-recorder.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use podtrail_recorder::{SegmentStore, StoreConfig};

/// podtraild — podtrail's recorder daemon.
///
/// `podtraild run` records process exec/exit and TCP connection events from eBPF
/// (root needed), stamped with the pod they belonged to, into the data dir; query
/// it with `podtrail`.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Data directory (created 0700 if missing).
    #[arg(long, env = "PODTRAIL_DATA_DIR", default_value = "/var/lib/podtrail", global = true)]
    data_dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Record until SIGTERM/SIGINT, then drain, flush, seal and exit 0 (needs root
    /// and a kernel with BTF). Recovers what a previous crash left first.
    Run {
        /// Node name stamped on every row (default: the host name).
        #[arg(long)]
        node: Option<String>,
        /// Keep recording with the programs that load when some fail; the missing
        /// ones are named in the log.
        #[arg(long)]
        allow_partial: bool,
        /// Serve Prometheus metrics (events per table, drops, segment writes, RSS)
        /// on ADDR; off by default, 127.0.0.1:9464 when given without a value.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9464")]
        metrics_addr: Option<std::net::SocketAddr>,
        /// CRI socket of the node's container runtime, asked for pod names,
        /// namespaces, labels, IPs and container images. Default: the first of
        /// /run/containerd/containerd.sock and /run/crio/crio.sock that exists.
        /// Without one, pods are still identified by UID from their cgroup path.
        #[arg(long, value_name = "PATH", conflicts_with = "no_cri")]
        cri_socket: Option<PathBuf>,
        /// Do not use a CRI runtime even when its socket exists.
        #[arg(long)]
        no_cri: bool,
        /// Do not trace the privilege syscalls (set*id, capset, setns, unshare,
        /// mount, umount, ptrace, bpf, module loads, memfd_create): no `privilege`
        /// rows for them. While any syscall tracepoint is on, the kernel sends
        /// every syscall of every process through its tracing entry path, which
        /// costs each untraced syscall 8-33 ns (BENCHMARKS.md); this removes
        /// that cost. Capability counting (`cap_usage`) stays on.
        #[arg(long)]
        no_syscall_tracepoints: bool,
    },
    /// Recover a data dir after a crash: remove half-written files, seal every hot
    /// tail up to its last complete flush, record torn frames as loss; then exit.
    /// The recorder does the same on every start.
    Recover,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
    ).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podtraild: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Run { node, allow_partial, metrics_addr, cri_socket, no_cri, no_syscall_tracepoints } => {
            use podtrail_recorder::run::CriChoice;
            let cri = match (cri_socket, no_cri) {
                (_, true) => CriChoice::Off,
                (Some(p), false) => CriChoice::Socket(p),
                (None, false) => CriChoice::Auto,
            };
            let cfg = podtrail_recorder::run::RunConfig { data_dir: cli.data_dir, node: node.unwrap_or_else(hostname), allow_partial, metrics_addr, cri, syscall_tracepoints: !no_syscall_tracepoints };
            let summary = podtrail_recorder::run::run(cfg, |missing| {
                if !missing.is_empty() {
                    eprintln!("podtraild: recording without: {}", missing.join("; "));
                }
            })?;
            println!("{}", serde_json::to_string(&summary)?);
            Ok(())
        }
        Cmd::Recover => {
            let node = hostname();
            let (store, report) = SegmentStore::open(StoreConfig::new(&cli.data_dir, node))?;
            store.close()?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "unknown".into())
}
