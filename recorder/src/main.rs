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
#[expect(clippy::large_enum_variant, reason = "parsed once at start-up: the size of `Run`'s options does not matter")]
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
        /// Watch this node's pods (spec.nodeName = --node) on the Kubernetes API
        /// at URL, without credentials (e.g. `kubectl proxy`): names, namespaces,
        /// labels, owner, pod IPs, container ids and images, as `kubernetes` intervals.
        /// Default: the pod's service account when podtraild runs in a pod
        /// (KUBERNETES_SERVICE_HOST set), else no Kubernetes API source. Works
        /// alongside CRI; an unreachable API server is retried, recording goes on.
        #[arg(long, value_name = "URL", conflicts_with_all = ["kubeconfig", "no_kube"])]
        kube_api: Option<String>,
        /// Like --kube-api, with the server and credentials of this kubeconfig's
        /// current context.
        #[arg(long, value_name = "PATH", conflicts_with = "no_kube")]
        kubeconfig: Option<PathBuf>,
        /// Do not use the Kubernetes API even when running in a pod.
        #[arg(long)]
        no_kube: bool,
        /// Do not trace the privilege syscalls (set*id, capset, setns, unshare,
        /// mount, umount, ptrace, bpf, module loads, memfd_create) nor the file
        /// syscalls: no `privilege` rows for them and no `file` rows. The
        /// privilege syscalls are traced with fentry/fexit where the kernel
        /// allows it (no cost to other syscalls), else with syscall tracepoints;
        /// file operations with syscall tracepoints. While any syscall tracepoint
        /// is on the kernel sends every syscall of every process through its
        /// tracing entry path, which costs each untraced syscall 8-33 ns
        /// (BENCHMARKS.md); this removes that cost. The log and the catalog
        /// (`meta` `privilege_syscalls`, `file_events`) say which mode is in
        /// use. Capability counting (`cap_usage`) stays on.
        #[arg(long)]
        no_syscall_tracepoints: bool,
        /// Do not record file operations (no `file` rows; file.bpf.o is not loaded).
        #[arg(long)]
        no_file_events: bool,
        /// Also record every change (write, create, truncate, delete, rename,
        /// chmod, chown, setxattr, link, mknod, mkdir) under this path prefix
        /// (absolute, at most 128 bytes; repeatable). Always watched: /etc/,
        /// /root/, /var/spool/cron/, /var/log/, /lib/systemd/system/,
        /// /usr/lib/systemd/system/, /bin/, /sbin/, /usr/bin/, /usr/sbin/,
        /// /usr/local/bin/, /usr/local/sbin/, /lib/modules/, /boot/ and the
        /// service-account directories /var/run/secrets/kubernetes.io/ and
        /// /run/secrets/kubernetes.io/. Anywhere, always: hidden files and
        /// directories created (outside /root/ and /home/), execute and
        /// setuid/setgid bits given, `security.*` attributes (file
        /// capabilities) set, device nodes made, and the write of a file that
        /// is later executed (sent at the exec).
        #[arg(long, value_name = "PREFIX", conflicts_with = "no_file_events")]
        watch: Vec<String>,
        /// Also record read-only opens of paths under this prefix (absolute,
        /// repeatable; only opens that name the file by an absolute path).
        /// `~/PATH` means under any home directory (/root, /home/USER);
        /// `/proc/*/FILE` means that file of any process but the reader.
        /// Always: /etc/shadow, /etc/gshadow, /etc/sudoers*, /etc/ssh/ssh_host_*,
        /// ~/.ssh/, /proc/*/environ, /proc/*/mem and the pod's service-account
        /// token.
        #[arg(long, value_name = "PREFIX", conflicts_with = "no_file_events")]
        watch_read: Vec<String>,
        /// Also record changes to files of this name wherever they are (at most
        /// 31 bytes; repeatable). Always: shell start-up and history files
        /// (.bashrc, .profile, .bash_history, ...), authorized_keys, SSH private
        /// keys (id_rsa, id_ed25519, ...), .netrc, .git-credentials, .pgpass.
        #[arg(long, value_name = "NAME", conflicts_with = "no_file_events")]
        watch_name: Vec<String>,
        /// Ship every sealed segment and this node's identity snapshots to a lake
        /// (a directory or s3://BUCKET/PREFIX, the layout of `podtrail export`)
        /// shortly after sealing. Retries with backoff while the store is down;
        /// recording never waits for it. What shipped is recorded in the catalog.
        /// S3 settings as for `podtrail export` (AWS_* environment, AWS_PROFILE).
        #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
        ship_to: Option<String>,
        /// S3-compatible endpoint for --ship-to, e.g. http://127.0.0.1:9000.
        #[arg(long, value_name = "URL", requires = "ship_to")]
        endpoint: Option<String>,
        /// Region for --ship-to (default: AWS_REGION, the profile's, else us-east-1).
        #[arg(long, requires = "ship_to")]
        region: Option<String>,
        /// Address buckets as https://BUCKET.host/ (default: path-style).
        #[arg(long, requires = "ship_to")]
        virtual_hosted_style: bool,
        /// Keep at most this much sealed history on disk (e.g. 20G, 500M); the
        /// oldest segments go first, those already shipped before any that are not.
        /// Removing an unshipped segment is recorded as loss. Default: no limit.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        disk_budget: Option<u64>,
        /// Seal a segment (and so make it shippable) once it is this many seconds old.
        #[arg(long, value_name = "SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=3600))]
        segment_max_age: u64,
        /// Keep at least this much free on the data dir's filesystem (e.g. 2G,
        /// 500M; 0: no floor): below it the oldest sealed segments are removed,
        /// shipped ones first, unshipped ones counted as loss. Default: 5 % of
        /// the filesystem, at most 1G. If the disk fills all the same, podtraild
        /// keeps running (see --write-buffer) and writes again when space returns.
        #[arg(long, value_name = "SIZE", value_parser = parse_size_or_zero)]
        min_free: Option<u64>,
        /// While the data dir cannot be written (disk full, I/O errors), hold up
        /// to this much of new rows in memory (e.g. 48M); beyond it rows are
        /// dropped and counted in podtrail_loss (source `disk`, per table and
        /// pod). Every write is retried, and writing resumes within seconds of
        /// space returning. Default: 48M.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        write_buffer: Option<u64>,
    },
    /// Recover a data dir after a crash: remove half-written files, seal every hot
    /// tail up to its last complete flush, count what was lost (moving damaged
    /// files to quarantine/), close a run that never ended; then exit. The
    /// recorder does the same on every start.
    Recover {
        /// The catalog is damaged (podtraild and `podtrail verify` say so): keep
        /// it aside as catalog.db.damaged-<time> and build a new one from the
        /// sealed segment files, with what can still be read from the old one.
        /// The hash chain is then marked rebuilt: it proves the segments
        /// unaltered from now on, not before.
        #[arg(long)]
        rebuild_catalog: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
    ).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podtraild: error: {}", error_text(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, each cause once: our errors already
/// name their source in their own text ("PATH: No space left on device"), which
/// `{:#}` would repeat.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.ends_with(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Run { node, allow_partial, metrics_addr, cri_socket, no_cri, kube_api, kubeconfig, no_kube, no_syscall_tracepoints, no_file_events, watch, watch_read, watch_name, ship_to, endpoint, region, virtual_hosted_style, disk_budget, segment_max_age, min_free, write_buffer } => {
            use podtrail_recorder::run::CriChoice;
            let cri = match (cri_socket, no_cri) {
                (_, true) => CriChoice::Off,
                (Some(p), false) => CriChoice::Socket(p),
                (None, false) => CriChoice::Auto,
            };
            use podtrail_recorder::identity::kube::KubeChoice;
            let kube = match (kube_api, kubeconfig, no_kube) {
                (_, _, true) => None,
                (Some(url), _, false) => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        anyhow::bail!("--kube-api {url}: expected an http:// or https:// URL");
                    }
                    Some(KubeChoice::Url(url))
                }
                (None, Some(path), false) => {
                    // Read now: a bad file is one line and exit 1, not a source
                    // that fails and retries for ever while recording goes on.
                    if let Err(e) = kube::config::Kubeconfig::read_from(&path) {
                        let e = e.to_string();
                        anyhow::bail!("--kubeconfig {}: {}", path.display(), e.lines().next().unwrap_or(&e));
                    }
                    Some(KubeChoice::Kubeconfig(path))
                }
                (None, None, false) => std::env::var_os("KUBERNETES_SERVICE_HOST").map(|_| KubeChoice::InCluster),
            };
            let ship = match ship_to {
                None => None,
                Some(t) => Some(podtrail_recorder::ship::ShipConfig {
                    target: podtrail_lake::Target::parse(&t).map_err(|e| anyhow::anyhow!("--ship-to: {e}"))?,
                    s3: podtrail_lake::S3Options {
                        endpoint,
                        region,
                        virtual_hosted_style,
                        request_timeout: std::time::Duration::from_secs(60),
                        max_retries: 2,
                    },
                }),
            };
            let cfg = podtrail_recorder::run::RunConfig {
                data_dir: cli.data_dir,
                node: node.unwrap_or_else(hostname),
                allow_partial,
                metrics_addr,
                cri,
                kube,
                syscall_tracepoints: !no_syscall_tracepoints,
                file_watches: if no_file_events { None } else { Some(podtrail_recorder::files::Watches::new(&watch, &watch_read, &watch_name).map_err(|e| anyhow::anyhow!(e))?) },
                ship,
                disk_budget_bytes: disk_budget,
                segment_max_age: Some(std::time::Duration::from_secs(segment_max_age)),
                min_free_bytes: min_free,
                write_buffer_bytes: write_buffer.map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
            };
            let summary = podtrail_recorder::run::run(cfg, |missing| {
                if !missing.is_empty() {
                    eprintln!("podtraild: recording without: {}", missing.join("; "));
                }
            })?;
            println!("{}", serde_json::to_string(&summary)?);
            Ok(())
        }
        Cmd::Recover { rebuild_catalog } => {
            let node = hostname();
            let rebuilt = if rebuild_catalog { Some(podtrail_recorder::segments::rebuild_catalog(&cli.data_dir, &node)?) } else { None };
            let (store, report) = SegmentStore::open(StoreConfig::new(&cli.data_dir, node))?;
            store.close()?;
            let out = match rebuilt {
                Some(r) => serde_json::json!({ "rebuild": r, "recovery": report }),
                None => serde_json::to_value(&report)?,
            };
            println!("{out}");
            Ok(())
        }
    }
}

/// Like [`parse_size`], and `0` (off).
fn parse_size_or_zero(s: &str) -> Result<u64, String> {
    if s.trim() == "0" { Ok(0) } else { parse_size(s) }
}

/// `20G`, `500M`, `64k` or plain bytes (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("'{s}': unknown unit {c} (use K, M, G or T)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("'{s}' is not a size (e.g. 20G, 500M)"))?;
    n.checked_mul(mult).filter(|&b| b > 0).ok_or_else(|| format!("'{s}' is out of range"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(28);
        let e = anyhow::Error::new(podtrail_recorder::segments::SegmentError::Io { path: "/d/hot/x.arrows".into(), source: io });
        assert_eq!(error_text(&e), "/d/hot/x.arrows: No space left on device (os error 28)");
        let e = anyhow::anyhow!("inner").context("loading handle_exec");
        assert_eq!(error_text(&e), "loading handle_exec: inner");
    }
}
