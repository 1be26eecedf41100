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
    /// Query a lake written by `podtrail export` / `podtraild --ship-to` (every
    /// node in it) instead of the data dir: a directory or s3://BUCKET/PREFIX.
    /// Works with sql, who-owned, timeline and profile; `date` and `node` are
    /// columns of every event table there (partitions: filter on them, or on
    /// `time`, to read less).
    #[arg(long, global = true, value_name = "DIR|s3://BUCKET/PREFIX")]
    lake: Option<String>,
    #[command(flatten)]
    s3: S3Args,
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
    /// Copy the sealed history to a lake: a directory or s3://BUCKET/PREFIX.
    ///
    /// Writes `<table>/date=YYYY-MM-DD/node=<node>/<segment-id>.parquet` (zstd, the
    /// node's own files) for every segment overlapping the window, then this node's
    /// `pods`, `containers`, `ip_owners` and `podtrail_loss` as
    /// `<table>/<node>.parquet`. Idempotent: objects already there are not written
    /// again, so a rerun (or an interrupted run rerun) ends with exactly one copy of
    /// each row. A segment overlapping the window is exported whole. Rows not yet
    /// sealed are counted, not exported.
    ///
    /// S3: credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/
    /// AWS_SESSION_TOKEN) or AWS_PROFILE (~/.aws/credentials); region from --region,
    /// AWS_REGION or the profile; --endpoint for S3-compatible stores (path-style
    /// requests unless --virtual-hosted-style).
    ///
    /// Example: podtrail export --to s3://forensics/podtrail --since yesterday --until today
    Export {
        /// Destination: a directory or s3://BUCKET/PREFIX.
        #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
        to: String,
        #[command(flatten)]
        window: Window,
        /// Only these event tables (repeatable; default all). Identity snapshots are always written.
        #[arg(long = "table", value_name = "TABLE")]
        tables: Vec<String>,
        /// Node name in the lake's paths (default: the recorder's node name).
        #[arg(long)]
        node: Option<String>,
        /// `native`: the tables as on the node; `ocsf`: OCSF Process Activity (1007)
        /// and Network Activity (4001) under ocsf/ (schema/OCSF.md).
        #[arg(long, value_enum, default_value_t = podtrail_query::export::LakeSchema::Native)]
        schema: podtrail_query::export::LakeSchema,
        #[arg(long)]
        json: bool,
    },
    /// Print the reference of every table and column (Markdown).
    Schema {
        /// Print the OCSF mapping of `export --schema ocsf` instead.
        #[arg(long)]
        ocsf: bool,
    },
}

/// S3 settings for --lake and export --to s3://.
#[derive(clap::Args)]
struct S3Args {
    /// S3-compatible endpoint, e.g. http://127.0.0.1:9000 (also AWS_ENDPOINT_URL).
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,
    /// Region (default: AWS_REGION, the profile's, else us-east-1).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Address buckets as https://BUCKET.host/ instead of https://host/BUCKET/.
    #[arg(long, global = true)]
    virtual_hosted_style: bool,
}

impl S3Args {
    fn options(&self) -> podtrail_lake::S3Options {
        podtrail_lake::S3Options {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            virtual_hosted_style: self.virtual_hosted_style,
            ..Default::default()
        }
    }
}

/// The engine over the data dir, or over the lake when --lake is given.
async fn open_engine(cli: &Cli, verify_reads: bool) -> Result<Engine, QueryError> {
    match &cli.lake {
        None => Engine::open(&cli.data_dir, EngineOptions { strict: cli.strict, verify_reads }).await,
        Some(l) => {
            let target = podtrail_lake::Target::parse(l).map_err(|e| QueryError::BadQuery(e.to_string()))?;
            let lake = podtrail_lake::Lake::open(&target, &cli.s3.options(), false).map_err(|e| match e {
                podtrail_lake::LakeError::Usage(m) => QueryError::BadQuery(m),
                e => QueryError::Runtime(e.to_string()),
            })?;
            lake.check().await.map_err(|e| QueryError::Runtime(e.to_string()))?;
            Engine::open_lake(&lake).await
        }
    }
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

/// Write to standard output; a closed pipe (`| head`, `| true`) ends the
/// output quietly, not with an error (every command's output goes through here:
/// `println!` panics on a closed pipe).
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
        if let (Some(s), Some(u)) = (since, until)
            && s >= u
        {
            return Err(QueryError::BadQuery("--since must be before --until".into()));
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

/// Commands that read a node's data dir only.
fn no_lake(cli: &Cli, cmd: &str) -> Result<(), QueryError> {
    match &cli.lake {
        Some(_) => Err(QueryError::BadQuery(format!("`podtrail {cmd}` works on a node's data dir, not on --lake"))),
        None => Ok(()),
    }
}

async fn run(cli: Cli) -> Result<u8, QueryError> {
    match &cli.cmd {
        Cmd::Schema { ocsf } => {
            let text = if *ocsf { podtrail_query::ocsf::markdown() } else { podtrail_schema::tables::tables_markdown() };
            print_out(text.as_bytes())?;
            Ok(0)
        }
        Cmd::Export { to, window, tables, node, schema, json } => {
            no_lake(&cli, "export")?;
            let (since, until) = window.parse()?;
            let to = podtrail_lake::Target::parse(to).map_err(|e| QueryError::BadQuery(e.to_string()))?;
            let opts = podtrail_query::export::ExportOptions {
                to,
                s3: cli.s3.options(),
                since,
                until,
                tables: tables.clone(),
                node: node.clone(),
                schema: *schema,
                progress: !*json,
            };
            let r = podtrail_query::export::export(&cli.data_dir, opts).await?;
            let text = if *json { serde_json::to_string_pretty(&r).expect("serializable") + "\n" } else { r.to_string() };
            print_out(text.as_bytes())?;
            Ok(if r.failed.is_empty() { 0 } else { 1 })
        }
        Cmd::Verify { json } => {
            no_lake(&cli, "verify")?;
            let r = verify::verify(&cli.data_dir)?;
            let mut text = String::new();
            if *json {
                text = serde_json::to_string_pretty(&r).expect("serializable") + "\n";
            } else {
                for p in &r.problems {
                    text.push_str(&format!("FAIL {p}\n"));
                }
                if let Some(note) = &r.chain_rebuilt {
                    text.push_str(&format!("note: {note}\n"));
                }
                text.push_str(&format!(
                    "verified {} segments: {} intact ({} bytes hashed), {} expired by retention, {} problem{}\n",
                    r.segments,
                    r.ok,
                    r.bytes_hashed,
                    r.expired,
                    r.problems.len(),
                    if r.problems.len() == 1 { "" } else { "s" }
                ));
            }
            print_out(text.as_bytes())?;
            Ok(if r.passed() { 0 } else { 1 })
        }
        Cmd::WhoOwned { ip, at, json } => {
            let t = parse_time(at)?;
            let engine = open_engine(&cli, true).await?;
            let answer = engine.who_owned(ip, t)?;
            let text = if *json { serde_json::to_string_pretty(&answer).expect("serializable") + "\n" } else { answer.to_string() };
            print_out(text.as_bytes())?;
            Ok(0)
        }
        Cmd::Timeline { pod, namespace, window, json } => {
            let (since, until) = window.parse()?;
            let engine = open_engine(&cli, true).await?;
            let pods = podtrail_query::timeline::resolve_pod(&engine, pod, namespace.as_deref()).await?;
            let tl = podtrail_query::timeline::timeline(&engine, pods, since, until).await;
            report(&engine, tl, *json)
        }
        Cmd::Profile { pod, namespace, image, window, json } => {
            let (since, until) = window.parse()?;
            let engine = open_engine(&cli, true).await?;
            let subject = match (pod, image) {
                (Some(pod), _) => podtrail_query::profile::Subject::Pods(podtrail_query::timeline::resolve_pod(&engine, pod, namespace.as_deref()).await?),
                (None, Some(image)) => podtrail_query::profile::Subject::Image(image.clone()),
                (None, None) => unreachable!("clap requires --pod or --image"),
            };
            let p = podtrail_query::profile::profile(&engine, subject, since, until).await;
            report(&engine, p, *json)
        }
        Cmd::Status { json } => {
            no_lake(&cli, "status")?;
            let engine = Engine::open(&cli.data_dir, EngineOptions { strict: cli.strict, verify_reads: false }).await?;
            let st = status::status(&engine, &cli.data_dir).await?;
            let text = if *json { serde_json::to_string_pretty(&st).expect("serializable") + "\n" } else { format!("data dir: {}\n{st}", cli.data_dir.display()) };
            print_out(text.as_bytes())?;
            Ok(0)
        }
        Cmd::Sql { query, file, format, output, stats, no_verify } => {
            let query = match (query.as_deref(), file) {
                (_, Some(path)) => std::fs::read_to_string(path).map_err(|e| QueryError::BadQuery(format!("--file {}: {e}", path.display())))?,
                (Some("-"), None) => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s).map_err(|e| QueryError::Io { path: "<stdin>".into(), source: e })?;
                    s
                }
                (q, None) => q.unwrap_or_default().to_owned(),
            };
            let format = *format;
            if format == Format::Parquet && output.is_none() && std::io::stdout().is_terminal() {
                return Err(QueryError::BadQuery("--format parquet writes binary: give -o FILE or redirect standard output".into()));
            }
            let engine = open_engine(&cli, !*no_verify).await?;
            let result = engine.sql(&query).await;
            for w in engine.warnings() {
                eprintln!("podtrail: warning: {w}");
            }
            let (schema, batches) = result?;
            let mut buf = Vec::new();
            output::write(format, &schema, &batches, &mut buf).map_err(|e| QueryError::Runtime(format!("formatting the result: {e}")))?;
            match output {
                Some(path) => std::fs::write(path, &buf).map_err(|e| QueryError::Io { path: path.clone(), source: e })?,
                None => print_out(&buf)?,
            }
            if *stats {
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
