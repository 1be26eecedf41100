//! End-to-end tests of the store and `podtrail`: they drive the real binaries
//! (`podtrail-synth`, `podtrail`, `podtraild`) on temporary data dirs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podtrail_tests::synth::SynthCounts;
use podtrail_tests::{bin, run, run_ok, sql_count, sql_json};

fn synth(dir: &Path, extra: &[&str]) -> SynthCounts {
    let mut args = vec!["--data-dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run_ok("podtrail-synth", &args);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("synth printed {out:?}: {e}"))
}

fn d(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out)
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p)
            }
        }
    }
    let mut v = Vec::new();
    walk(&dir.join("segments"), &mut v);
    v.sort();
    v
}

#[test]
fn synth_row_counts_equal_what_sql_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let c = synth(&dir, &["--hours", "3", "--pods", "15", "--events-per-sec", "20", "--seed", "7"]);
    assert!(c.process_exec > 1000 && c.net_conn > 1000 && c.process_exit > 1000, "synth wrote too little: {c:?}");
    for (table, want) in [
        ("process_exec", c.process_exec),
        ("process_exit", c.process_exit),
        ("net_conn", c.net_conn),
        ("pods", c.pods),
        ("containers", c.containers),
        ("ip_owners", c.ip_owners),
    ] {
        assert_eq!(sql_count(&dir, &format!("SELECT count(*) FROM {table}")), want, "rows in {table}");
    }
    // IP reuse happened, and the catalog keeps every owner of a reused address.
    let reused = sql_count(&dir, "SELECT count(*) FROM (SELECT ip FROM ip_owners GROUP BY ip HAVING count(*) > 1)");
    assert!(reused > 0, "no IP was reused in 3 h of churn");
    // Catalog rows agree with the segment files' rows.
    let seg_rows = sql_count(&dir, "SELECT CAST(sum(rows) AS BIGINT) FROM podtrail_segments");
    assert_eq!(seg_rows, c.process_exec + c.process_exit + c.net_conn);
    // Same seed, same history.
    let dir2 = tmp.path().join("again");
    assert_eq!(synth(&dir2, &["--hours", "3", "--pods", "15", "--events-per-sec", "20", "--seed", "7"]), c);
}

#[test]
fn data_dir_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    synth(&dir, &["--hours", "0.2", "--pods", "3", "--events-per-sec", "5"]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "data dir mode");
    assert_eq!(mode(&dir.join("catalog.db")), 0o600, "catalog mode");
    let files = segment_files(&dir);
    assert!(!files.is_empty());
    for f in files {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
        assert_eq!(mode(f.parent().unwrap()), 0o700, "{}", f.parent().unwrap().display());
    }
}

#[test]
fn one_pod_one_hour_opens_only_overlapping_segments_and_matches_a_full_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    synth(&dir, &["--hours", "24", "--pods", "12", "--events-per-sec", "3", "--seed", "3"]);
    let pods = sql_json(
        &dir,
        "SELECT pod_uid, count(*) AS n FROM net_conn WHERE pod_uid IS NOT NULL AND time >= '2026-11-16T10:00:00Z' \
         AND time < '2026-11-16T11:00:00Z' GROUP BY pod_uid ORDER BY n DESC, pod_uid LIMIT 1",
    );
    let pod = pods[0]["pod_uid"].as_str().unwrap().to_owned();
    let pruned = format!(
        "SELECT time, event, src_ip, src_port, dst_ip, dst_port, socket_cookie FROM net_conn \
         WHERE pod_uid = '{pod}' AND time >= '2026-11-16T10:00:00Z' AND time < '2026-11-16T11:00:00Z' ORDER BY time, socket_cookie, event"
    );
    // The same rows through a predicate the catalog cannot use (a disjunction with
    // a condition no row meets: cgroup ids are never 0), so every segment is opened.
    let full = format!(
        "SELECT time, event, src_ip, src_port, dst_ip, dst_port, socket_cookie FROM net_conn \
         WHERE (pod_uid = '{pod}' AND time >= '2026-11-16T10:00:00Z' AND time < '2026-11-16T11:00:00Z') OR cgroup_id = 0 \
         ORDER BY time, socket_cookie, event"
    );
    let out_p = run("podtrail", &["--data-dir", d(&dir), "sql", "--stats", "--format", "csv", &pruned]);
    let out_f = run("podtrail", &["--data-dir", d(&dir), "sql", "--stats", "--format", "csv", &full]);
    assert!(out_p.status.success() && out_f.status.success(), "{out_p:?} {out_f:?}");
    let rows_p = String::from_utf8(out_p.stdout.clone()).unwrap();
    assert!(rows_p.lines().count() > 5, "expected rows for the pod in that hour:\n{rows_p}");
    assert_eq!(rows_p, String::from_utf8(out_f.stdout.clone()).unwrap(), "pruned and full scans disagree");
    let stats = |o: &std::process::Output| -> (u64, u64) {
        let e = String::from_utf8_lossy(&o.stderr);
        let line = e.lines().find(|l| l.contains("scan:")).unwrap_or_else(|| panic!("no stats line in {e}"));
        let nums: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        (nums[0], nums[1])
    };
    let (opened, live) = stats(&out_p);
    let (opened_full, live_full) = stats(&out_f);
    assert_eq!(live, live_full);
    assert_eq!(opened_full, live, "the unprunable query must open every segment");
    // 24 h at <= 10 min a segment is >= 144 segments; one hour overlaps at most 7.
    assert!(live >= 144, "only {live} segments in 24 h");
    assert!((1..=7).contains(&opened), "opened {opened} of {live} segments for one hour");
}

#[test]
fn duckdb_reads_every_sealed_segment_and_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let c = synth(&dir, &["--hours", "2", "--pods", "10", "--events-per-sec", "20", "--seed", "11"]);
    let script = r#"
import duckdb, json, sys
d = sys.argv[1]
con = duckdb.connect()
out = {}
for t in ["process_exec", "process_exit", "net_conn"]:
    q = f"SELECT count(*), count(DISTINCT pod_uid), CAST(sum(cgroup_id) AS VARCHAR) FROM read_parquet('{d}/segments/{t}/**/*.parquet')"
    out[t] = [str(v) for v in con.execute(q).fetchall()[0]]
out["bytes_sent"] = str(con.execute(f"SELECT sum(bytes_sent) FROM read_parquet('{d}/segments/net_conn/**/*.parquet')").fetchall()[0][0])
out["args"] = str(con.execute(f"SELECT count(*) FROM read_parquet('{d}/segments/process_exec/**/*.parquet') WHERE list_contains(args, '-c')").fetchall()[0][0])
print(json.dumps(out))
"#;
    let o = Command::new("python3").args(["-c", script, d(&dir)]).output().expect("python3");
    assert!(
        o.status.success(),
        "DuckDB (PyPI duckdb, installed by scripts/setup) failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let duck: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    for (t, n) in [("process_exec", c.process_exec), ("process_exit", c.process_exit), ("net_conn", c.net_conn)] {
        let ours = sql_json(
            &dir,
            &format!("SELECT count(*) AS n, count(DISTINCT pod_uid) AS p, CAST(sum(cgroup_id) AS VARCHAR) AS s FROM {t}"),
        );
        let want = vec![ours[0]["n"].to_string(), ours[0]["p"].to_string(), ours[0]["s"].as_str().unwrap().to_string()];
        assert_eq!(duck[t], serde_json::json!(want), "{t}: duckdb vs podtrail");
        assert_eq!(ours[0]["n"].as_u64(), Some(n));
    }
    let sent = sql_count(&dir, "SELECT CAST(sum(bytes_sent) AS BIGINT) FROM net_conn");
    assert_eq!(duck["bytes_sent"], serde_json::json!(sent.to_string()));
    let with_c = sql_count(&dir, "SELECT count(*) FROM process_exec WHERE array_has(args, '-c')");
    assert!(with_c > 0);
    assert_eq!(duck["args"], serde_json::json!(with_c.to_string()));
}

#[test]
fn kill_9_loses_no_sealed_row_and_recovers_the_hot_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut child = Command::new(bin("podtrail-synth"))
        .args(["--data-dir", d(&dir), "--realtime", "--hours", "1", "--pods", "8", "--events-per-sec", "200", "--segment-age-secs", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn synth");
    // Read the writer's "flushed" reports until segments were sealed and the hot
    // tail holds more, then kill it without warning.
    let mut last_flushed: Option<serde_json::Value> = None;
    let started = Instant::now();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    while started.elapsed() < Duration::from_secs(60) {
        let Some(Ok(line)) = lines.next() else { break };
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            last_flushed = Some(v["flushed"].clone());
        }
        if started.elapsed() > Duration::from_millis(5500) {
            break;
        }
    }
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on the pid of the child this test spawned.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    child.wait().unwrap();
    let flushed = last_flushed.expect("synth reported no flush before the kill");
    let flushed_total: u64 = flushed.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert!(flushed_total > 500, "too little written before the kill: {flushed}");

    let hot_files = std::fs::read_dir(dir.join("hot")).unwrap().flat_map(|t| std::fs::read_dir(t.unwrap().path()).unwrap()).count();
    assert!(hot_files > 0, "the kill left no hot tail to recover");
    let sealed_before: u64 = sql_count(&dir, "SELECT CAST(sum(rows) AS BIGINT) FROM podtrail_segments");
    assert!(sealed_before > 0, "nothing was sealed before the kill");
    let count_all = |dir: &Path| -> BTreeMap<&str, u64> {
        ["process_exec", "process_exit", "net_conn"].into_iter().map(|t| (t, sql_count(dir, &format!("SELECT count(*) FROM {t}")))).collect()
    };
    // Readers see the hot tail before any recovery ...
    let before = count_all(&dir);
    for (t, n) in flushed.as_object().unwrap() {
        assert!(before[t.as_str()] >= n.as_u64().unwrap(), "{t}: {} visible < {n} flushed before the kill", before[t.as_str()]);
    }
    // ... and after the recorder's recovery everything is sealed, nothing lost or doubled.
    let report: serde_json::Value = serde_json::from_str(run_ok("podtraild", &["--data-dir", d(&dir), "recover"]).trim()).unwrap();
    assert!(report["hot_segments_sealed"].as_u64().unwrap() > 0, "{report}");
    let after = count_all(&dir);
    assert_eq!(before, after, "rows changed across recovery: {report}");
    let sealed_after: u64 = sql_count(&dir, "SELECT CAST(sum(rows) AS BIGINT) FROM podtrail_segments");
    assert_eq!(sealed_after, after.values().sum::<u64>(), "after recovery every row is sealed");
    let v = run("podtrail", &["--data-dir", d(&dir), "verify"]);
    assert!(v.status.success(), "verify after recovery: {}", String::from_utf8_lossy(&v.stdout));
    // Loss from a torn frame, if any, is recorded as data, never silent.
    let lost = report["rows_lost"].as_u64().unwrap();
    assert_eq!(sql_count(&dir, "SELECT CAST(coalesce(sum(count), 0) AS BIGINT) FROM podtrail_loss WHERE source = 'crash'"), lost);
}

#[test]
fn flipped_byte_fails_verify_and_is_skipped_by_sql() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let c = synth(&dir, &["--hours", "1", "--pods", "6", "--events-per-sec", "20", "--seed", "5"]);
    let clean = run("podtrail", &["--data-dir", d(&dir), "verify"]);
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stdout));

    let victim = segment_files(&dir).into_iter().find(|p| p.to_string_lossy().contains("/net_conn/")).unwrap();
    let victim_id = victim.file_stem().unwrap().to_str().unwrap().to_owned();
    let victim_rows = sql_count(&dir, &format!("SELECT rows FROM podtrail_segments WHERE segment_id = '{victim_id}'"));
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();

    let v = run("podtrail", &["--data-dir", d(&dir), "verify"]);
    let vout = String::from_utf8_lossy(&v.stdout);
    assert_eq!(v.status.code(), Some(1), "verify must fail: {vout}");
    assert!(vout.contains(&victim_id) && vout.contains("SHA-256"), "verify must name the segment: {vout}");

    let q = run("podtrail", &["--data-dir", d(&dir), "sql", "--format", "csv", "SELECT count(*) AS n FROM net_conn"]);
    assert!(q.status.success());
    let err = String::from_utf8_lossy(&q.stderr);
    assert!(err.contains("warning") && err.contains(&victim_id), "sql must warn naming the segment: {err}");
    let n: u64 = String::from_utf8_lossy(&q.stdout).lines().nth(1).unwrap().parse().unwrap();
    assert_eq!(n, c.net_conn - victim_rows, "the damaged segment's rows are skipped, the rest counted");

    let strict = run("podtrail", &["--data-dir", d(&dir), "--strict", "sql", "SELECT count(*) FROM net_conn"]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&strict.stderr).contains(&victim_id));

    // A segment removed from disk is reported too.
    std::fs::remove_file(&victim).unwrap();
    let v = run("podtrail", &["--data-dir", d(&dir), "verify"]);
    assert_eq!(v.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&v.stdout).contains("missing"));
}

#[test]
fn bad_input_gets_one_clear_line_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    synth(&dir, &["--hours", "0.2", "--pods", "3", "--events-per-sec", "5"]);
    let cases: &[(&str, &str)] = &[
        ("SELEC * FROM net_conn", "SQL"),
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("SELECT no_such_column FROM net_conn", "no_such_column"),
        ("DROP TABLE net_conn", "read-only"),
        ("CREATE TABLE x AS SELECT 1", "read-only"),
        ("INSERT INTO ip_owners SELECT * FROM ip_owners", "read-only"),
        ("DELETE FROM pods", "read-only"),
        ("COPY (SELECT 1) TO '/tmp/podtrail-copy-test.csv'", "read-only"),
        ("SET datafusion.execution.batch_size = 1", "read-only"),
    ];
    for (q, needle) in cases {
        let o = run("podtrail", &["--data-dir", d(&dir), "sql", q]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{q}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{q}: not one line: {err}");
        assert!(err.contains(needle), "{q}: {err:?} does not mention {needle}");
        assert!(o.stdout.is_empty(), "{q} printed a result");
    }
    assert!(!Path::new("/tmp/podtrail-copy-test.csv").exists());
    // The identity commands: bad IP, bad time, unknown pod, missing query file.
    let nofile = tmp.path().join("no-such.sql");
    let cmds: &[(&[&str], &str)] = &[
        (&["who-owned", "10.244.1.300"], "10.244.1.300"),
        (&["who-owned", "10.244.1.7", "--at", "soonish"], "soonish"),
        (&["timeline", "--pod", "no-such-pod"], "no-such-pod"),
        (&["timeline", "--pod", "x", "--since", "-1h", "--until", "-2h"], "--since"),
        (&["sql", "SELECT * FROM who_owned('10.244.1.7')"], "who_owned(ip, time)"),
        (&["sql", "--file", nofile.to_str().unwrap()], "no-such.sql"),
    ];
    for (args, needle) in cmds {
        let o = run("podtrail", &[&["--data-dir", d(&dir)], *args].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(err.contains(needle), "{args:?}: {err:?} does not mention {needle}");
    }

    let missing = tmp.path().join("nope");
    let o = run("podtrail", &["--data-dir", d(&missing), "sql", "SELECT 1"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("does not exist") && err.contains("podtraild run"), "{err}");
    std::fs::create_dir(&missing).unwrap();
    let o = run("podtrail", &["--data-dir", d(&missing), "status"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no podtrail history"));
    assert!(!missing.join("catalog.db").exists(), "a reader must never create a catalog");
}

#[test]
fn output_formats_and_status() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let c = synth(&dir, &["--hours", "0.5", "--pods", "4", "--events-per-sec", "10"]);
    let q = "SELECT pod_name, binary, args, time FROM process_exec WHERE pod_uid IS NOT NULL ORDER BY time LIMIT 3";
    let nd = run_ok("podtrail", &["--data-dir", d(&dir), "sql", "-f", "ndjson", q]);
    assert_eq!(nd.lines().count(), 3);
    let first: serde_json::Value = serde_json::from_str(nd.lines().next().unwrap()).unwrap();
    assert!(first["args"].is_array() && first["time"].as_str().unwrap().starts_with("2026-11-16T"), "{first}");
    let csv = run_ok("podtrail", &["--data-dir", d(&dir), "sql", "-f", "csv", q]);
    assert!(csv.starts_with("pod_name,binary,args,time\n"), "{csv}");
    let table = run_ok("podtrail", &["--data-dir", d(&dir), "sql", q]);
    assert!(table.contains("| pod_name") && table.trim_end().ends_with("3 rows"), "{table}");
    let empty = run_ok("podtrail", &["--data-dir", d(&dir), "sql", "-f", "json", "SELECT * FROM pods WHERE pod_uid = 'none'"]);
    assert_eq!(empty.trim(), "[]");
    let pq = tmp.path().join("out.parquet");
    run_ok("podtrail", &["--data-dir", d(&dir), "sql", "-f", "parquet", "-o", pq.to_str().unwrap(), "SELECT * FROM net_conn"]);
    let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&pq).unwrap()).unwrap();
    use parquet::file::reader::FileReader;
    assert_eq!(reader.metadata().file_metadata().num_rows() as u64, c.net_conn);

    let st: serde_json::Value = serde_json::from_str(&run_ok("podtrail", &["--data-dir", d(&dir), "status", "--json"])).unwrap();
    let tables = st["tables"].as_array().unwrap();
    let exec = tables.iter().find(|t| t["table"] == "process_exec").unwrap();
    assert_eq!(exec["rows_sealed"].as_u64(), Some(c.process_exec));
    assert!(exec["bytes"].as_u64().unwrap() > 0);
    assert!(exec["time_min"].as_str().unwrap().starts_with("2026-11-16T00:"));
    let text = run_ok("podtrail", &["--data-dir", d(&dir), "status"]);
    assert!(text.contains("net_conn") && text.contains("loss: none recorded"), "{text}");
}

#[test]
fn retention_expires_oldest_first_and_the_chain_still_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let c = synth(&dir, &["--hours", "6", "--pods", "8", "--events-per-sec", "10", "--disk-budget", "400000"]);
    let live_bytes = sql_count(&dir, "SELECT CAST(sum(bytes) AS BIGINT) FROM podtrail_segments WHERE state = 'sealed'");
    let expired = sql_count(&dir, "SELECT count(*) FROM podtrail_segments WHERE state = 'expired'");
    assert!(expired > 0, "a 400 kB budget must expire some of 6 h");
    assert!(live_bytes <= 400_000, "{live_bytes} bytes live over the budget");
    // Oldest first: every expired segment is older than every live one of its table.
    let bad = sql_count(
        &dir,
        "SELECT count(*) FROM podtrail_segments e JOIN podtrail_segments l ON e.table_name = l.table_name \
         WHERE e.state = 'expired' AND l.state = 'sealed' AND e.time_min > l.time_min",
    );
    assert_eq!(bad, 0);
    let v = run("podtrail", &["--data-dir", d(&dir), "verify"]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let live_rows = sql_count(&dir, "SELECT CAST(sum(rows) AS BIGINT) FROM podtrail_segments WHERE state = 'sealed' AND table_name = 'net_conn'");
    assert_eq!(sql_count(&dir, "SELECT count(*) FROM net_conn"), live_rows);
    assert!(live_rows < c.net_conn);
}

#[test]
fn queries_while_the_writer_seals_never_double_or_drop_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // Seal every second so that queries race seals; flush every second.
    let child = Command::new(bin("podtrail-synth"))
        .args(["--data-dir", d(&dir), "--realtime", "--hours", "0.002", "--pods", "6", "--events-per-sec", "150", "--segment-age-secs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn synth");
    let started = Instant::now();
    let mut seen: Vec<u64> = Vec::new();
    while started.elapsed() < Duration::from_secs(6) {
        if dir.join("catalog.db").exists() {
            let o = run("podtrail", &["--data-dir", d(&dir), "sql", "--format", "csv", "SELECT count(*) FROM net_conn"]);
            assert!(o.status.success(), "query during writing failed: {}", String::from_utf8_lossy(&o.stderr));
            seen.push(String::from_utf8_lossy(&o.stdout).lines().nth(1).unwrap().parse().unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let c: SynthCounts = serde_json::from_slice(&out.stdout).unwrap();
    assert!(seen.len() > 10, "too few queries ran: {seen:?}");
    assert!(seen.iter().any(|&n| n > 0 && n < c.net_conn), "no query saw a partial history: {seen:?}");
    // A seal racing a query would show as a count that later shrinks (doubled) or
    // as a final count that differs from what was written (dropped).
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "counts went backwards: {seen:?}");
    assert!(seen.iter().all(|&n| n <= c.net_conn), "a query counted more rows than were written: {seen:?} > {}", c.net_conn);
    assert_eq!(sql_count(&dir, "SELECT count(*) FROM net_conn"), c.net_conn);
    assert!(sql_count(&dir, "SELECT count(*) FROM podtrail_segments WHERE table_name = 'net_conn'") >= 3);
}

#[test]
fn an_unprivileged_user_with_read_access_can_query() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.path().join("data dir"); // a space, to exercise path escaping
    let c = synth(&dir, &["--hours", "0.3", "--pods", "4", "--events-per-sec", "10"]);
    // The writer closed cleanly, so SQLite removed its -wal and -shm files: the
    // hardest case for a reader that may create nothing.
    assert!(!dir.join("catalog.db-shm").exists());
    let o = Command::new("chmod").args(["-R", "a+rX", d(&dir)]).status().unwrap();
    assert!(o.success());
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin("podtrail").to_str().unwrap(), "--data-dir", d(&dir)])
        .args(["sql", "--format", "csv", "SELECT count(*) FROM process_exec"])
        .output()
        .expect("setpriv (util-linux)");
    assert!(o.status.success(), "as uid 65534: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().nth(1), Some(c.process_exec.to_string().as_str()));
    assert!(!dir.join("catalog.db-shm").exists(), "the reader must not have created files");
}
