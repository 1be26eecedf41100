//! `podtrail-bench lake`: export throughput to a local S3 server (moto) against a
//! plain boto3 upload of the same files in the same run, and the lake query "one
//! pod, one day" over 2 nodes x 7 days: time, and bytes fetched from the store
//! (counted by a relay in front of it) against bytes in the lake.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use podtrail_tests::lake::{AWS_ENV, Moto, Relay};
use podtrail_tests::synth::SynthConfig;

pub fn run(dir: &Path, runs: usize) -> anyhow::Result<()> {
    let nodes = ["bench-node-a", "bench-node-b"];
    for (i, node) in nodes.iter().enumerate() {
        super::ensure_history(
            &dir.join(node),
            SynthConfig { hours: 24.0 * 7.0, pods: 50, events_per_sec: 5.0, seed: 100 + i as u64, start_ns: super::start_ns(), node: (*node).into(), batch_secs: 10 },
        )?;
    }
    let podtrail = podtrail_tests::bin("podtrail");
    let moto = Moto::start();
    let relay = Relay::start(moto.port);
    let ep = relay.endpoint();
    let lake_bytes: u64 = nodes.iter().map(|n| dir_bytes(&dir.join(n).join("segments"))).sum();
    let files: usize = nodes.iter().map(|n| podtrail_tests::lake::parquet_files(&dir.join(n).join("segments")).len()).sum();
    println!("lake: 2 nodes x 7 days, {files} segment files, {:.1} MiB; moto on 127.0.0.1; median of {runs}", lake_bytes as f64 / (1 << 20) as f64);

    // Export vs boto3 upload_file of the same files, alternating, fresh bucket each.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for r in 0..runs {
        let b = format!("exp{r}");
        moto.create_bucket(&b);
        let t = Instant::now();
        for (node, _) in nodes.iter().zip(0..) {
            let o = Command::new(&podtrail)
                .args(["--data-dir", dir.join(node).to_str().context("utf-8")?, "export", "--to", &format!("s3://{b}/lake"), "--endpoint", &ep, "--json"])
                .envs(AWS_ENV.iter().copied())
                .output()?;
            if !o.status.success() {
                bail!("export failed: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
        ours.push(t.elapsed().as_secs_f64());
        let b2 = format!("up{r}");
        moto.create_bucket(&b2);
        let script = format!(
            "import os, time\nt = time.perf_counter()\nfor node in {nodes:?}:\n    root = os.path.join('{d}', node, 'segments')\n    for dp, _, fs in os.walk(root):\n        for f in fs:\n            p = os.path.join(dp, f)\n            s3.upload_file(p, '{b2}', 'lake/' + node + '/' + os.path.relpath(p, root))\nprint(time.perf_counter() - t)",
            d = dir.display()
        );
        let out = podtrail_tests::lake::boto3(&relay.endpoint(), &script);
        theirs.push(out.trim().parse::<f64>().context("boto3 seconds")?);
    }
    let (o, t) = (super::median_f(ours), super::median_f(theirs));
    let mib = lake_bytes as f64 / (1 << 20) as f64;
    println!("export to S3 (podtrail export, 2 nodes)   {o:>7.2} s  {:>7.1} MiB/s", mib / o);
    println!("same files, boto3 upload_file              {t:>7.2} s  {:>7.1} MiB/s", mib / t);
    println!("ratio podtrail/boto3 throughput            {:>7.2} (target >= 0.8)", t / o);

    // One pod, one day, across both nodes: the lake written by the first export.
    let d = dir.join(nodes[1]);
    let pick = Command::new(&podtrail)
        .args(["--data-dir", d.to_str().context("utf-8")?, "sql", "--format", "csv", "SELECT pod_uid FROM net_conn WHERE time >= '2026-11-19T00:00:00Z' AND time < '2026-11-20T00:00:00Z' AND pod_uid IS NOT NULL LIMIT 1"])
        .output()?;
    let pod = String::from_utf8(pick.stdout)?.lines().nth(1).context("a pod on 2026-11-19")?.to_owned();
    let q = format!(
        "SELECT node, time, event, src_ip, dst_ip, dst_port FROM net_conn WHERE pod_uid = '{pod}' AND time >= '2026-11-19T00:00:00Z' AND time < '2026-11-20T00:00:00Z' ORDER BY time"
    );
    let mut times = Vec::new();
    let mut fetched = Vec::new();
    let mut rows = 0;
    for _ in 0..runs {
        let before = relay.bytes_down();
        let t = Instant::now();
        let o = Command::new(&podtrail).args(["--lake", "s3://exp0/lake", "--endpoint", &ep, "sql", "--format", "csv", &q]).envs(AWS_ENV.iter().copied()).output()?;
        times.push(t.elapsed().as_secs_f64());
        if !o.status.success() {
            bail!("lake query failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        rows = String::from_utf8_lossy(&o.stdout).lines().count().saturating_sub(1);
        fetched.push((relay.bytes_down() - before) as f64);
    }
    let local = Command::new(&podtrail).args(["--data-dir", d.to_str().context("utf-8")?, "sql", "--format", "csv", &q]).output()?;
    let local_rows = String::from_utf8_lossy(&local.stdout).lines().count().saturating_sub(1);
    if local_rows != rows {
        bail!("lake returned {rows} rows, the node {local_rows}");
    }
    let f = super::median_f(fetched);
    println!(
        "one pod, one day over the lake           {:>7.0} ms  {rows} rows; fetched {:.2} MiB of {:.1} MiB in the lake ({:.1} %)",
        super::median_f(times) * 1e3,
        f / (1 << 20) as f64,
        mib,
        100.0 * f / lake_bytes as f64
    );
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    podtrail_tests::lake::parquet_files(dir).iter().map(|f| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0)).sum()
}
