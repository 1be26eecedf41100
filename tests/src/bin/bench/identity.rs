//! `podtrail-bench identity`: the identity stage's figures.
//! - `who-owned` and `timeline` over 7 days of synthetic history (pods created
//!   and deleted, IPs reused): fresh `podtrail` process vs DuckDB CLI on the same
//!   data (the event Parquet files, and `ip_owners` exported to Parquet).
//! - enrichment cost per event (ns) and memory per tracked pod (bytes), measured
//!   in-process on a cgroup tree of kubelet-named pods in a temp dir.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use podtrail_recorder::rows::{ConnRow, RowSet};
use podtrail_recorder::decode::ConnRaw;
use podtrail_recorder::identity::Identity;
use podtrail_tests::synth::SynthConfig;

use super::{ensure_history, start_ns, time_cmd, which};

/// Bytes currently allocated by this process (the bench's global allocator),
/// counted only while `COUNTING` is on so other benchmarks are not perturbed.
pub static ALLOCATED: AtomicI64 = AtomicI64::new(0);
pub static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub struct Counting;

// SAFETY: forwards to the system allocator; only adds bookkeeping.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATED.fetch_add(l.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: same layout contract as the caller's.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATED.fetch_sub(l.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: p was allocated by System with layout l.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATED.fetch_add(new as i64 - l.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: as for realloc on System.
        unsafe { std::alloc::System.realloc(p, l, new) }
    }
}

pub fn run(dir: &Path, runs: usize, pods: usize) -> anyhow::Result<()> {
    enrichment(pods)?;
    queries(dir, runs)
}

fn enrichment(pods: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut cgroups = Vec::new();
    for i in 0..pods {
        let uid = format!("{i:08x}-0000-4000-8000-{i:012x}");
        let p = tmp.path().join(format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{:064x}.scope", uid.replace('-', "_"), i));
        std::fs::create_dir_all(&p)?;
        cgroups.push(std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&p)?));
    }
    // Frees of memory allocated before counting started would make the count
    // negative: count from here, and only what the identity stage keeps.
    let mut b = RowSet::default();
    b.conn.rows.reserve(10_000);
    COUNTING.store(true, Ordering::Relaxed);
    let before = ALLOCATED.load(Ordering::Relaxed);
    let mut id = Identity::new(tmp.path().to_owned(), "bench".into(), 4026531840);
    let rows_total = 2_000_000usize;
    let chunk = 10_000usize;
    let template = ConnRaw {
        event: "connect",
        owner: None,
        family: "ipv4",
        netns: 4026532000,
        time_boot_ns: 0,
        cgroup_id: 0,
        cookie: 1,
        src: ("10.244.0.1".parse()?, 40000),
        dst: ("10.244.9.9".parse()?, 80),
        orig_dst: None,
        nat_dst: None,
        bytes: None,
        error: None,
        dst_name: None,
        server_name: None,
        initiated: Some("local"),
    };
    let mut stamping = std::time::Duration::ZERO;
    let mut t = start_ns();
    for n in 0..rows_total / chunk {
        for k in 0..chunk {
            let i = (n * chunk + k) * 7919 % pods;
            let raw = ConnRaw { cgroup_id: cgroups[i], src: (std::net::Ipv4Addr::from(0x0af4_0000u32 + i as u32 + 2).into(), 40000), ..template.clone() };
            t += 1000;
            b.conn.push(ConnRow { time: t, raw, exec_id: None, identity: None });
        }
        let s = Instant::now();
        id.accept(&mut b);
        id.stamp(t, true);
        stamping += s.elapsed();
        // Stored at once (no metadata source: nothing waits).
        let _ = id.release(t, true);
    }
    let _ = id.tick(t);
    let per_row = stamping.as_nanos() as f64 / rows_total as f64;
    let bytes = ALLOCATED.load(Ordering::Relaxed) - before;
    COUNTING.store(false, Ordering::Relaxed);
    let st = id.stats();
    println!("identity: enrichment {per_row:.0} ns per event ({rows_total} net_conn rows over {pods} pods, cgroup walks {}, incl. IP ownership tracking)", st.cgroup_walks);
    println!(
        "identity: memory {:.0} bytes per tracked pod ({} bytes for {} pods, {} cgroups, {} open IPs; heap bytes counted by the allocator)",
        bytes as f64 / pods as f64,
        bytes,
        st.open_pods,
        st.tracked_cgroups,
        st.open_ips
    );
    Ok(())
}

fn queries(dir: &Path, runs: usize) -> anyhow::Result<()> {
    // 7 days of 40 churning pods: about 2,000 pods created and deleted.
    ensure_history(dir, SynthConfig { hours: 168.0, pods: 40, events_per_sec: 20.0, seed: 7, start_ns: start_ns(), node: "bench-node".into(), batch_secs: 60 })?;
    let podtrail = podtrail_tests::bin("podtrail");
    let duckdb = which("duckdb").context("DuckDB CLI not found: run tests/setup.sh (installs PyPI duckdb-cli)")?;
    let d = dir.to_str().context("utf-8 dir")?;
    let sql = |q: &str| -> anyhow::Result<String> {
        let o = Command::new(&podtrail).args(["--data-dir", d, "sql", "--format", "csv", q]).output()?;
        if !o.status.success() {
            bail!("{q}: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(String::from_utf8(o.stdout)?)
    };
    let stats = sql("SELECT count(*), count(DISTINCT pod_uid), count(DISTINCT ip), count(valid_to) FROM ip_owners")?;
    let stats = stats.lines().nth(1).context("stats row")?.to_owned();
    // The IP with the most owners, at the middle of its third ownership; a pod
    // deleted mid-history, by name.
    let pick = sql("SELECT ip, arrow_cast(valid_from, 'Int64') + (arrow_cast(valid_to, 'Int64') - arrow_cast(valid_from, 'Int64')) / 2 FROM (SELECT ip, valid_from, valid_to, row_number() OVER (PARTITION BY ip ORDER BY valid_from) AS k, count(*) OVER (PARTITION BY ip) AS n FROM ip_owners) WHERE k = 3 AND valid_to IS NOT NULL ORDER BY n DESC, ip LIMIT 1")?;
    let (ip, mid) = pick.lines().nth(1).and_then(|l| l.split_once(',')).context("an IP with 3 owners")?;
    let at = chrono::DateTime::from_timestamp_nanos(mid.parse()?).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let at = at.as_str();
    let pod = sql("SELECT pod_name, pod_uid, valid_from, valid_to FROM pods WHERE valid_to IS NOT NULL AND valid_from > TIMESTAMP '2026-11-19T00:00:00Z' ORDER BY valid_from LIMIT 1")?;
    let pod_line = pod.lines().nth(1).context("a deleted pod")?.to_owned();
    let cols: Vec<&str> = pod_line.split(',').collect();
    let (pod_name, pod_uid, from, to) = (cols[0], cols[1], cols[2], cols[3]);
    // DuckDB reads the same data: the event Parquet files, and ip_owners exported to Parquet.
    let owners_parquet = dir.join("ip_owners.parquet");
    let o = Command::new(&podtrail).args(["--data-dir", d, "sql", "--format", "parquet", "-o", owners_parquet.to_str().context("utf-8")?, "SELECT * FROM ip_owners"]).output()?;
    if !o.status.success() {
        bail!("exporting ip_owners: {}", String::from_utf8_lossy(&o.stderr));
    }
    println!("identity: 7 days, ip_owners {stats} (rows, pods, IPs, closed intervals); fresh process per run, median of {runs}");
    println!("{:<44} {:>12} {:>12} {:>8}", "query", "podtrail ms", "duckdb ms", "rows");
    let cmp = |name: &str, ours: Vec<String>, theirs: String, expect_rows: Option<usize>| -> anyhow::Result<()> {
        let (tp, out_p) = time_cmd(runs, || {
            let mut c = Command::new(&podtrail);
            c.arg("--data-dir").arg(d).args(&ours);
            c
        })?;
        let (td, out_d) = time_cmd(runs, || {
            let mut c = Command::new(&duckdb);
            c.args(["-csv", "-c", &theirs]);
            c
        })?;
        let rd = out_d.lines().count().saturating_sub(1);
        if let Some(n) = expect_rows
            && n != rd
        {
            bail!("{name}: podtrail returned {n} rows, duckdb {rd}:\n{out_p}\n---\n{out_d}");
        }
        println!("{:<44} {:>12.1} {:>12.1} {:>8}", name, tp.as_secs_f64() * 1e3, td.as_secs_f64() * 1e3, rd);
        Ok(())
    };
    let op = owners_parquet.display();
    let who_sql = format!("SELECT pod_namespace, pod_name, pod_uid, valid_from, valid_to, source FROM who_owned('{ip}', TIMESTAMP '{at}')");
    let duck_who = format!(
        "SELECT pod_namespace, pod_name, pod_uid, valid_from, valid_to, source FROM read_parquet('{op}') WHERE ip = '{ip}' AND valid_from <= TIMESTAMPTZ '{at}' AND (valid_to IS NULL OR TIMESTAMPTZ '{at}' < valid_to)"
    );
    cmp("who_owned(ip, t) via sql", vec!["sql".into(), "--format".into(), "csv".into(), who_sql], duck_who.clone(), Some(1))?;
    cmp("podtrail who-owned IP --at T", vec!["who-owned".into(), ip.into(), "--at".into(), at.into()], duck_who, None)?;
    let files = |t: &str| format!("read_parquet('{d}/segments/{t}/*/*/*.parquet')");
    let hour_after = chrono::DateTime::from_timestamp(chrono_secs(from)? + 3600, 0).context("time")?.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for (label, until) in [("1 h window".to_string(), hour_after.as_str()), (format!("its whole life, {} h", (chrono_secs(to)? - chrono_secs(from)?) / 3600), to)] {
        let duck_tl = format!(
            "SELECT time, 'exec' AS event, pid FROM {e} WHERE pod_uid = '{pod_uid}' AND time >= TIMESTAMPTZ '{from}' AND time < TIMESTAMPTZ '{until}' \
             UNION ALL SELECT time, 'exit', pid FROM {x} WHERE pod_uid = '{pod_uid}' AND time >= TIMESTAMPTZ '{from}' AND time < TIMESTAMPTZ '{until}' \
             UNION ALL SELECT time, event, pid FROM {c} WHERE pod_uid = '{pod_uid}' AND time >= TIMESTAMPTZ '{from}' AND time < TIMESTAMPTZ '{until}' ORDER BY time",
            e = files("process_exec"),
            x = files("process_exit"),
            c = files("net_conn")
        );
        let args = ["timeline", "--pod", pod_name, "--since", from, "--until", until];
        let tl = Command::new(&podtrail).args(["--data-dir", d]).args(args).arg("--json").output()?;
        let tl: serde_json::Value = serde_json::from_slice(&tl.stdout).context("timeline --json")?;
        let n = tl["events"].as_array().map(|a| a.len()).context("events")?;
        cmp(&format!("timeline of a deleted pod, {label}"), args.iter().map(|a| a.to_string()).collect(), duck_tl, Some(n))?;
    }
    Ok(())
}

fn chrono_secs(s: &str) -> anyhow::Result<i64> {
    Ok(chrono::DateTime::parse_from_rfc3339(s).with_context(|| format!("{s} is not RFC 3339"))?.timestamp())
}
