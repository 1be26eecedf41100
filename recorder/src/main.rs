//! `podtraild`: thin binary over podtrail-recorder.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use podtrail_recorder::{SegmentStore, StoreConfig};

/// podtraild — podtrail's recorder daemon.
///
/// Kernel capture (`podtraild run`) is not built yet; today this binary maintains
/// a data dir written through the segment store (e.g. by `podtrail-synth`).
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
