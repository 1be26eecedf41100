//! `podtrail`: thin CLI over podtrail-query.
//!
//! Exit codes: 0 ok, 1 runtime failure (or `verify` found a problem), 2 bad usage or
//! bad input (bad SQL, unknown table or column, refused statement, no data dir).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use podtrail_query::output::{self, Format};
use podtrail_query::{Engine, EngineOptions, QueryError, status, verify};

/// podtrail — query the history podtraild recorded on this node.
///
/// Tables: process_exec, process_exit, net_conn, privilege, cap_usage (events), pods, containers,
/// ip_owners (identity), podtrail_segments, podtrail_loss (system); table
/// function who_owned(ip, time). `podtrail schema` prints every column with its
/// meaning.
///
/// Times (--at, --since, --until, who_owned's time) accept RFC 3339, '2026-11-17
/// 14:03', '-2h', 'yesterday 09:30', 'last tuesday 14:00' (UTC; a bare weekday
/// means the most recent one that is not in the future).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Data directory written by podtraild (read-only here).
    #[arg(long, env = "PODTRAIL_DATA_DIR", default_value = "/var/lib/podtrail", global = true)]
    data_dir: PathBuf,
    /// Fail on a damaged or missing segment instead of skipping it with a warning.
    #[arg(long, global = true)]
    strict: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one SQL query (read-only) over the history.
    ///
    /// Example: podtrail sql "SELECT time, pod_name, binary, args FROM process_exec
    /// WHERE pod_namespace = 'payments' AND time > '2026-11-17T13:00:00Z' ORDER BY time"
    Sql {
        /// The query; `-` reads it from standard input. A query starting with a
        /// `--` comment must come after `--` or from --file.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        query: Option<String>,
        /// Read the query from FILE (e.g. one of sql-examples/).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Write the result to FILE instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Print how many segments the catalog let the query skip (to stderr).
        #[arg(long)]
        stats: bool,
        /// Skip the SHA-256 check of each segment before reading it (faster; a
        /// damaged segment may then fail the query instead of being skipped).
        #[arg(long)]
        no_verify: bool,
    },
    /// Which pod owned IP at a time; when nobody did, the nearest owners before and after.
    ///
    /// Example: podtrail who-owned 10.244.1.7 --at 'last tuesday 14:03'
    WhoOwned {
        /// The address (IPv4 or IPv6), e.g. from a firewall log.
        ip: String,
        /// The time (default: now). Relative times such as `-2h` work as is.
        #[arg(long, default_value = "now", allow_hyphen_values = true)]
        at: String,
        #[arg(long)]
        json: bool,
    },
    /// One pod's exec, exit, connection and privilege events in time order,
    /// indented by the process tree; works for pods deleted long ago.
    ///
    /// Example: podtrail timeline --pod web-7d9f-x2k4q --namespace frontend --since -2h
    Timeline {
        /// Pod name (looked up in the identity history) or pod UID.
        #[arg(long)]
        pod: String,
        /// Namespace, when the name exists in several.
        #[arg(long, short)]
        namespace: Option<String>,
        #[command(flatten)]
        window: Window,
        #[arg(long)]
        json: bool,
    },
    /// The least privilege a pod (or every container of an image) showed it needs,
    /// as a ready-to-paste Kubernetes securityContext with the evidence beside it.
    ///
    /// Capabilities with a granted check are added (after drop: [ALL]);
    /// allowPrivilegeEscalation is false unless a non-root process gained
    /// privilege; runAsNonRoot is proposed only when no exec ran as uid 0.
    ///
    /// Example: podtrail profile --pod web-7d9f-x2k4q --namespace frontend --since -7d
    #[command(group(clap::ArgGroup::new("subject").required(true).args(["pod", "image"])))]
    Profile {
        /// Pod name (looked up in the identity history) or pod UID.
        #[arg(long)]
        pod: Option<String>,
        /// Namespace, when the pod name exists in several.
        #[arg(long, short, requires = "pod")]
        namespace: Option<String>,
        /// Every container of this image reference (exactly as the runtime reported it).
        #[arg(long)]
        image: Option<String>,
        #[command(flatten)]
        window: Window,
        #[arg(long)]
        json: bool,
    },
    /// Time range, rows and bytes per table, segments, and recorded loss.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every sealed segment against the catalog's hash chain; exit 1 on any
    /// altered or missing segment.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Print the reference of every table and column (Markdown).
    Schema,
}

/// A time window of the history (timeline, profile).
#[derive(clap::Args)]
struct Window {
    /// Start of the window (default: the start of the history), e.g. `-2h`.
    #[arg(long, allow_hyphen_values = true)]
    since: Option<String>,
    /// End of the window, exclusive (default: now).
    #[arg(long, allow_hyphen_values = true)]
    until: Option<String>,
}

/// Write to standard output; a closed pipe (`| head`) is not an error worth a message.
fn print_out(buf: &[u8]) -> Result<(), QueryError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(buf).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(QueryError::Io { path: "<stdout>".into(), source: e }),
        _ => Ok(()),
    }
}

fn parse_time(s: &str) -> Result<i64, QueryError> {
    podtrail_query::timeexpr::parse(s, chrono::Utc::now()).map_err(QueryError::BadQuery)
}

/// The engine's warnings (skipped segments, ...) to stderr, then the answer as
/// text or JSON on stdout.
fn report<T: serde::Serialize + std::fmt::Display>(engine: &Engine, answer: Result<T, QueryError>, json: bool) -> Result<u8, QueryError> {
    for w in engine.warnings() {
        eprintln!("podtrail: warning: {w}");
    }
    let answer = answer?;
    let text = if json { serde_json::to_string_pretty(&answer).expect("serializable") + "\n" } else { answer.to_string() };
    print_out(text.as_bytes())?;
    Ok(0)
}

impl Window {
    /// `--since` / `--until` as ns, checked to be in order.
    fn parse(&self) -> Result<(Option<i64>, Option<i64>), QueryError> {
        let since = self.since.as_deref().map(parse_time).transpose()?;
        let until = self.until.as_deref().map(parse_time).transpose()?;
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                return Err(QueryError::BadQuery("--since must be before --until".into()));
            }
        }
        Ok((since, until))
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("podtrail: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<u8, QueryError> {
    match cli.cmd {
        Cmd::Schema => {
            print!("{}", podtrail_schema::tables::tables_markdown());
            Ok(0)
        }
        Cmd::Verify { json } => {
            let r = verify::verify(&cli.data_dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).expect("serializable"));
            } else {
                for p in &r.problems {
                    println!("FAIL {p}");
                }
                println!(
                    "verified {} segments: {} intact ({} bytes hashed), {} expired by retention, {} problem{}",
                    r.segments,
                    r.ok,
                    r.bytes_hashed,
                    r.expired,
                    r.problems.len(),
                    if r.problems.len() == 1 { "" } else { "s" }
                );
            }
            Ok(if r.passed() { 0 } else { 1 })
        }
        Cmd::WhoOwned { ip, at, json } => {
            let t = parse_time(&at)?;
            let engine = Engine::open(&cli.data_dir, EngineOptions { strict: cli.strict, verify_reads: true }).await?;
            let answer = podtrail_query::who_owned::who_owned(&engine, &ip, t).await?;
            let text = if json { serde_json::to_string_pretty(&answer).expect("serializable") + "\n" } else { answer.to_string() };
            print_out(text.as_bytes())?;
            Ok(0)
        }
        Cmd::Timeline { pod, namespace, window, json } => {
            let (since, until) = window.parse()?;
            let engine = Engine::open(&cli.data_dir, EngineOptions { strict: cli.strict, verify_reads: true }).await?;
            let pods = podtrail_query::timeline::resolve_pod(&engine, &pod, namespace.as_deref()).await?;
            let tl = podtrail_query::timeline::timeline(&engine, pods, since, until).await;
            report(&engine, tl, json)
        }
        Cmd::Profile { pod, namespace, image, window, json } => {
            let (since, until) = window.parse()?;
            let engine = Engine::open(&cli.data_dir, EngineOptions { strict: cli.strict, verify_reads: true }).await?;
            let subject = match (pod, image) {
                (Some(pod), _) => podtrail_query::profile::Subject::Pods(podtrail_query::timeline::resolve_pod(&engine, &pod, namespace.as_deref()).await?),
                (None, Some(image)) => podtrail_query::profile::Subject::Image(image),
                (None, None) => unreachable!("clap requires --pod or --image"),
            };
            let p = podtrail_query::profile::profile(&engine, subject, since, until).await;
            report(&engine, p, json)
        }
        Cmd::Status { json } => {
            let engine = Engine::open(&cli.data_dir, EngineOptions { strict: cli.strict, verify_reads: false }).await?;
            let st = status::status(&engine).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st).expect("serializable"));
            } else {
                println!("data dir: {}", cli.data_dir.display());
                print!("{st}");
            }
            Ok(0)
        }
        Cmd::Sql { query, file, format, output, stats, no_verify } => {
            let query = match (query.as_deref(), file) {
                (_, Some(path)) => std::fs::read_to_string(&path).map_err(|e| QueryError::BadQuery(format!("--file {}: {e}", path.display())))?,
                (Some("-"), None) => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s).map_err(|e| QueryError::Io { path: "<stdin>".into(), source: e })?;
                    s
                }
                (q, None) => q.unwrap_or_default().to_owned(),
            };
            if format == Format::Parquet && output.is_none() && std::io::stdout().is_terminal() {
                return Err(QueryError::BadQuery("--format parquet writes binary: give -o FILE or redirect standard output".into()));
            }
            let engine = Engine::open(&cli.data_dir, EngineOptions { strict: cli.strict, verify_reads: !no_verify }).await?;
            let result = engine.sql(&query).await;
            for w in engine.warnings() {
                eprintln!("podtrail: warning: {w}");
            }
            let (schema, batches) = result?;
            let mut buf = Vec::new();
            output::write(format, &schema, &batches, &mut buf).map_err(|e| QueryError::Runtime(format!("formatting the result: {e}")))?;
            match &output {
                Some(path) => std::fs::write(path, &buf).map_err(|e| QueryError::Io { path: path.clone(), source: e })?,
                None => print_out(&buf)?,
            }
            if stats {
                let s = engine.scan_stats();
                eprintln!(
                    "podtrail: scan: {} of {} live segments opened, {} skipped as damaged, {} hot rows",
                    s.segments_selected, s.segments_live, s.segments_skipped, s.hot_rows
                );
            }
            Ok(0)
        }
    }
}
