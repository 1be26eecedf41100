//! The lake end to end: `podtrail export` of two nodes' synthetic history to a real
//! S3-compatible server (moto on 127.0.0.1) and to a directory, read back with
//! `podtrail --lake` and DuckDB; reruns and interrupted runs; bad targets; OCSF;
//! and `podtraild run --ship-to` through an S3 outage (privileged).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use podtrail_tests::lake::{AWS_ENV, Moto, Relay, parquet_files};
use podtrail_tests::{bin, run_ok, sql_json};

fn d(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn synth(dir: &Path, node: &str, seed: &str, extra: &[&str]) {
    let mut args = vec!["--data-dir", d(dir), "--node", node, "--seed", seed, "--start", "2026-11-16T21:00:00Z"];
    args.extend_from_slice(extra);
    run_ok("podtrail-synth", &args);
}

/// `podtrail` with the AWS test credentials.
fn podtrail(args: &[&str]) -> Output {
    Command::new(bin("podtrail")).args(args).envs(AWS_ENV.iter().copied()).env_remove("PODTRAIL_DATA_DIR").output().unwrap()
}

fn podtrail_ok(args: &[&str]) -> String {
    let o = podtrail(args);
    assert!(o.status.success(), "podtrail {args:?}: {}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn export(data: &Path, to: &str, endpoint: Option<&str>, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--data-dir", d(data), "export", "--to", to, "--json"];
    if let Some(ep) = endpoint {
        args.extend(["--endpoint", ep]);
    }
    args.extend_from_slice(extra);
    serde_json::from_str(&podtrail_ok(&args)).unwrap()
}

/// Rows per (table, date, node) through `podtrail --lake`.
fn lake_counts(lake: &str, endpoint: Option<&str>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for t in ["process_exec", "process_exit", "net_conn"] {
        let mut args = vec!["--lake", lake];
        if let Some(ep) = endpoint {
            args.extend(["--endpoint", ep]);
        }
        let q = format!("SELECT date, node, count(*) AS n FROM {t} GROUP BY date, node ORDER BY date, node");
        args.extend(["sql", "--format", "json", "--", &q]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&podtrail_ok(&args)).unwrap();
        for r in rows {
            out.insert(format!("{t}/{}/{}", r["date"].as_str().unwrap(), r["node"].as_str().unwrap()), r["n"].as_u64().unwrap());
        }
    }
    out
}

/// The same from each node's own data dir (a row's date is its segment's).
fn node_counts(dirs: &[(&Path, &str)]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (dir, node) in dirs {
        for t in ["process_exec", "process_exit", "net_conn"] {
            let rows = sql_json(dir, &format!("SELECT to_char(time, '%Y-%m-%d') AS date, count(*) AS n FROM {t} GROUP BY 1 ORDER BY 1"));
            for r in rows {
                out.insert(format!("{t}/{}/{node}", r["date"].as_str().unwrap()), r["n"].as_u64().unwrap());
            }
        }
    }
    out
}

/// DuckDB over a local lake, Hive partitioning on.
fn duckdb_counts(lake: &Path) -> BTreeMap<String, u64> {
    let script = r#"
import duckdb, json, sys
lake = sys.argv[1]
con = duckdb.connect()
out = {}
for t in ["process_exec", "process_exit", "net_conn"]:
    q = f"SELECT CAST(date AS VARCHAR), node, count(*) FROM read_parquet('{lake}/{t}/**/*.parquet', hive_partitioning=true) GROUP BY ALL"
    for date, node, n in con.execute(q).fetchall():
        out[f"{t}/{date}/{node}"] = n
print(json.dumps(out))
"#;
    let o = Command::new("python3").args(["-c", script, d(lake)]).output().expect("python3");
    assert!(o.status.success(), "DuckDB (PyPI duckdb, installed by tests/setup.sh) failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// SHA-256 of every file of a data dir: what "untouched" means. SQLite readers
/// may create the WAL index (`-shm`) and an empty `-wal`: those hold no history.
fn tree_digest(dir: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap().flatten() {
            let path = e.path();
            let name = path.to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with("-shm") || (name.ends_with("-wal") && std::fs::metadata(&path).unwrap().len() == 0) {
                continue;
            } else {
                out.insert(path.strip_prefix(dir).unwrap().display().to_string(), podtrail_tests::hex(&sha2::Sha256::digest(std::fs::read(&path).unwrap())));
            }
        }
    }
    out
}

#[test]
fn two_nodes_exported_to_s3_agree_with_duckdb_and_a_rerun_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (n1, n2) = (tmp.path().join("n1"), tmp.path().join("n2"));
    // 21:00 to 03:00 UTC: two dates on each node.
    synth(&n1, "node-a", "1", &["--hours", "6", "--pods", "6", "--events-per-sec", "4"]);
    synth(&n2, "node-b", "2", &["--hours", "6", "--pods", "6", "--events-per-sec", "4"]);
    let before = (tree_digest(&n1), tree_digest(&n2));
    let moto = Moto::start();
    moto.create_bucket("forensics");
    let ep = moto.endpoint();
    let s3 = "s3://forensics/podtrail";
    let local = tmp.path().join("lake");

    let mut segments = 0;
    for dir in [&n1, &n2] {
        let r = export(dir, s3, Some(&ep), &[]);
        assert!(r["segments"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["segments_written"], r["segments"], "{r}");
        assert_eq!(r["snapshots_written"].as_array().unwrap().len(), 4, "{r}");
        assert!(r["failed"].as_array().unwrap().is_empty(), "{r}");
        segments += r["segments"].as_u64().unwrap();
        export(dir, d(&local), None, &[]);
    }
    let keys = moto.keys("forensics", "podtrail/");
    let seg_keys: Vec<&String> = keys.iter().filter(|k| k.contains("/date=")).collect();
    assert_eq!(seg_keys.len() as u64, segments, "one object per segment: {keys:#?}");
    assert!(seg_keys.iter().all(|k| k.contains("/node=node-a/") || k.contains("/node=node-b/")), "{keys:#?}");
    assert!(keys.contains(&"podtrail/ip_owners/node-a.parquet".to_owned()) && keys.contains(&"podtrail/pods/node-b.parquet".to_owned()), "{keys:#?}");

    // Counts per table, date and node: the nodes themselves, the S3 lake, the
    // local lake, and DuckDB over the local lake.
    let want = node_counts(&[(&n1, "node-a"), (&n2, "node-b")]);
    assert!(want.keys().any(|k| k.contains("2026-11-16")) && want.keys().any(|k| k.contains("2026-11-17")), "{want:?}");
    assert_eq!(lake_counts(s3, Some(&ep)), want, "podtrail --lake s3");
    assert_eq!(lake_counts(d(&local), None), want, "podtrail --lake dir");
    assert_eq!(duckdb_counts(&local), want, "DuckDB over the exported lake");

    // who-owned over the lake finds the pods of either node.
    for (dir, node) in [(&n1, "node-a"), (&n2, "node-b")] {
        let owner = &sql_json(dir, "SELECT ip, pod_uid, CAST(valid_from AS BIGINT) AS t FROM ip_owners WHERE valid_to IS NOT NULL ORDER BY valid_from LIMIT 1")[0];
        let at = chrono::DateTime::from_timestamp_nanos(owner["t"].as_i64().unwrap() + 1).to_rfc3339();
        let ans: serde_json::Value = serde_json::from_str(&podtrail_ok(&["--lake", s3, "--endpoint", &ep, "who-owned", owner["ip"].as_str().unwrap(), "--at", &at, "--json"])).unwrap();
        let owners = ans["owners"].as_array().unwrap();
        assert!(owners.iter().any(|o| o["pod_uid"] == owner["pod_uid"] && o["node"] == node), "{node}: {ans:#}");
    }
    // timeline and profile over the lake: a pod of node-b, by UID.
    let pod = &sql_json(&n2, "SELECT pod_uid, count(*) AS n FROM process_exec WHERE pod_uid IS NOT NULL GROUP BY pod_uid ORDER BY n DESC LIMIT 1")[0];
    let uid = pod["pod_uid"].as_str().unwrap();
    let tl: serde_json::Value = serde_json::from_str(&podtrail_ok(&["--lake", s3, "--endpoint", &ep, "timeline", "--pod", uid, "--json"])).unwrap();
    let local_tl: serde_json::Value = serde_json::from_str(&podtrail_ok(&["--data-dir", d(&n2), "timeline", "--pod", uid, "--json"])).unwrap();
    assert_eq!(tl["events"], local_tl["events"], "timeline over the lake == on the node");
    let prof = podtrail_ok(&["--lake", s3, "--endpoint", &ep, "profile", "--pod", uid]);
    assert!(prof.contains("capability profiling unavailable over a lake"), "{prof}");
    // A time predicate prunes whole dates; the answer is the same as without.
    let q = "SELECT count(*) AS n FROM net_conn WHERE time >= TIMESTAMP '2026-11-17T01:00:00Z' AND node = 'node-b'";
    let lake_n: Vec<serde_json::Value> = serde_json::from_str(&podtrail_ok(&["--lake", s3, "--endpoint", &ep, "sql", "--format", "json", "--", q])).unwrap();
    let node_n = sql_json(&n2, "SELECT count(*) AS n FROM net_conn WHERE time >= TIMESTAMP '2026-11-17T01:00:00Z'");
    assert_eq!(lake_n[0]["n"], node_n[0]["n"]);

    // Rerun: nothing new is written, the same objects are there.
    for dir in [&n1, &n2] {
        let r = export(dir, s3, Some(&ep), &[]);
        assert_eq!(r["segments_written"], 0, "{r}");
        assert_eq!(r["segments_already_there"], r["segments"], "{r}");
        assert_eq!(r["snapshots_unchanged"].as_array().unwrap().len(), 4, "{r}");
    }
    assert_eq!(moto.keys("forensics", "podtrail/"), keys);
    assert_eq!((tree_digest(&n1), tree_digest(&n2)), before, "export never changes the node's history");
}

#[test]
fn an_interrupted_export_completes_on_rerun_with_exactly_one_copy_of_each_row() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, "node-k", "5", &["--hours", "24", "--pods", "4", "--events-per-sec", "1", "--segment-age-secs", "120"]);
    let total = sql_json(&data, "SELECT count(*) AS n FROM podtrail_segments WHERE state = 'sealed'")[0]["n"].as_u64().unwrap();
    let moto = Moto::start();
    moto.create_bucket("killed");
    let ep = moto.endpoint();
    let seg_keys = |prefix: &str| moto.keys("killed", prefix).into_iter().filter(|k| k.contains("/date=")).count() as u64;
    // SIGKILL the export after a delay that lands halfway (adapted per attempt).
    let mut delay = Duration::from_millis(800);
    let mut killed = None;
    for attempt in 0..8 {
        let prefix = format!("try{attempt}");
        let mut child = Command::new(bin("podtrail"))
            .args(["--data-dir", d(&data), "export", "--to", &format!("s3://killed/{prefix}"), "--endpoint", &ep, "--json"])
            .envs(AWS_ENV.iter().copied())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        // SAFETY: kill(2) on the pid of the export this test started.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        let status = child.wait().unwrap();
        let partial = seg_keys(&format!("{prefix}/"));
        match (status.code(), partial) {
            (None, p) if p > 0 && p < total => {
                killed = Some((prefix, partial));
                break;
            }
            (_, 0) => delay *= 2,
            _ => delay /= 2,
        }
    }
    let (prefix, partial) = killed.expect("an export killed halfway in 8 attempts");
    let target = format!("s3://killed/{prefix}");
    let r = export(&data, &target, Some(&ep), &[]);
    assert_eq!(r["segments_written"].as_u64().unwrap() + r["segments_already_there"].as_u64().unwrap(), total, "{r}");
    assert_eq!(r["segments_already_there"].as_u64().unwrap(), partial, "the killed run's objects are complete and kept: {r}");
    assert_eq!(seg_keys(&format!("{prefix}/")), total);
    assert_eq!(lake_counts(&target, Some(&ep)), node_counts(&[(&data, "node-k")]), "exactly one copy of each row");
}

#[test]
fn bad_targets_fail_with_one_line_and_leave_the_history_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, "node-x", "3", &["--hours", "1", "--pods", "3", "--events-per-sec", "2"]);
    let before = tree_digest(&data);
    let moto = Moto::start();
    let ep = moto.endpoint();
    let closed = format!("http://127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let one_line = |o: &Output, want: &str, what: &str| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{what}: succeeded");
        assert_eq!(err.trim().lines().count(), 1, "{what}: one line expected:\n{err}");
        assert!(err.contains(want), "{what}: expected {want:?} in {err}");
    };
    let dd = d(&data);
    one_line(&podtrail(&["--data-dir", dd, "export", "--to", "s3://no-such-bucket/x", "--endpoint", &ep]), "no-such-bucket", "missing bucket");
    let started = Instant::now();
    one_line(&podtrail(&["--data-dir", dd, "export", "--to", "s3://b/x", "--endpoint", &closed]), "127.0.0.1", "unreachable endpoint");
    assert!(started.elapsed() < Duration::from_secs(60), "an unreachable endpoint took {:?}", started.elapsed());
    let no_creds = Command::new(bin("podtrail"))
        .args(["--data-dir", dd, "export", "--to", "s3://b/x", "--endpoint", &ep])
        .env_clear()
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    one_line(&no_creds, "no AWS credentials", "no credentials");
    one_line(&podtrail(&["--data-dir", dd, "export", "--to", "gs://b/x"]), "unsupported scheme", "bad scheme");
    // Wrong credentials, against a server that checks them: one line naming the
    // target and the store's refusal, nothing written. (moto's signature check
    // also refuses object_store's correctly signed requests, so the right key is
    // not tried here: the default-mode tests cover writes that succeed.)
    let (authed, key, secret) = Moto::start_with_auth("locked");
    let wrong = Command::new(bin("podtrail"))
        .args(["--data-dir", dd, "export", "--to", "s3://locked/x", "--endpoint", &authed.endpoint()])
        .env("AWS_ACCESS_KEY_ID", &key)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    one_line(&wrong, "s3://locked/x", "wrong credentials");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("403"), "{}", String::from_utf8_lossy(&wrong.stderr));
    assert_eq!(authed.boto3_as(&key, &secret, "print(s3.list_objects_v2(Bucket='locked').get('KeyCount'))").trim(), "0", "nothing written with wrong credentials");
    one_line(&podtrail(&["--data-dir", dd, "export", "--to", d(&tmp.path().join("l")), "--node", "a/b"]), "node name", "bad node name");
    one_line(&podtrail(&["--data-dir", dd, "export", "--to", d(&tmp.path().join("l")), "--table", "nope"]), "not an event table", "bad table");
    // A read-only target: the export runs as nobody on a root-owned directory.
    let ro = tmp.path().join("readonly");
    std::fs::create_dir(&ro).unwrap();
    let copy = tmp.path().join("copy");
    assert!(Command::new("cp").args(["-a", dd, d(&copy)]).status().unwrap().success());
    assert!(Command::new("chmod").args(["-R", "a+rX", d(tmp.path())]).status().unwrap().success());
    let o = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--"])
        .arg(bin("podtrail"))
        .args(["--data-dir", d(&copy), "export", "--to", d(&ro.join("lake"))])
        .output()
        .unwrap();
    one_line(&o, "readonly", "read-only target");
    assert_eq!(parquet_files(&ro).len(), 0);
    assert_eq!(tree_digest(&data), before, "the node's history is untouched");
    // Queries of a missing lake say so.
    one_line(&podtrail(&["--lake", d(&tmp.path().join("nolake")), "sql", "SELECT 1"]), "does not exist", "missing lake dir");
}

#[test]
fn ocsf_export_maps_process_and_network_activity() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    run_ok("podtrail-synth", &["--data-dir", d(&data), "--incident"]);
    let lake = tmp.path().join("lake");
    let r = export(&data, d(&lake), None, &["--schema", "ocsf"]);
    assert!(r["segments_written"].as_u64().unwrap() > 0 && r["failed"].as_array().unwrap().is_empty(), "{r}");
    let script = r#"
import duckdb, json, sys
lake, data = sys.argv[1], sys.argv[2]
con = duckdb.connect()
pa = f"read_parquet('{lake}/ocsf/process_activity/**/*.parquet', hive_partitioning=true, union_by_name=true)"
na = f"read_parquet('{lake}/ocsf/network_activity/**/net_conn-*.parquet', hive_partitioning=true)"
ex = f"read_parquet('{data}/segments/process_exec/**/*.parquet', union_by_name=true)"
xt = f"read_parquet('{data}/segments/process_exit/**/*.parquet')"
nc = f"read_parquet('{data}/segments/net_conn/**/*.parquet')"
q = lambda s: con.execute(s).fetchall()
out = {
  "launch": q(f"SELECT count(*) FROM {pa} WHERE class_uid = 1007 AND category_uid = 1 AND activity_id = 1 AND type_uid = 100701")[0][0],
  "exec": q(f"SELECT count(*) FROM {ex}")[0][0],
  "launch_mismatch": q(f"SELECT count(*) FROM {pa} o JOIN {ex} e ON o.process.uid = CAST(e.exec_id AS VARCHAR) WHERE o.activity_id = 1 AND (o.process.file.path IS DISTINCT FROM e.binary OR o.process.pid <> e.pid OR o.process.parent_process.pid <> e.ppid OR o.process.cmd_line IS DISTINCT FROM array_to_string(e.args, ' ') OR coalesce(o.process.container.pod_uuid, o.unmapped.pod_uid) IS DISTINCT FROM e.pod_uid OR o.device.hostname <> e.node OR o.time <> epoch_ns(e.time) // 1000000)")[0][0],
  "terminate": q(f"SELECT count(*) FROM {pa} WHERE activity_id = 2 AND type_uid = 100702")[0][0],
  "exit": q(f"SELECT count(*) FROM {xt}")[0][0],
  "exit_codes": sorted(r[0] for r in q(f"SELECT exit_code FROM {pa} WHERE activity_id = 2")),
  "exit_codes_src": sorted(r[0] for r in q(f"SELECT exit_code FROM {xt}")),
  "net": q(f"SELECT count(*) FROM {na} WHERE class_uid = 4001 AND category_uid = 4")[0][0],
  "conn": q(f"SELECT count(*) FROM {nc}")[0][0],
  "net_mismatch": q(f"SELECT count(*) FROM {na} o JOIN {nc} c ON o.connection_info.uid = CAST(c.socket_cookie AS VARCHAR) AND o.unmapped.event = c.event WHERE o.src_endpoint.ip <> (CASE c.initiated WHEN 'remote' THEN c.dst_ip ELSE c.src_ip END) OR o.dst_endpoint.ip <> (CASE c.initiated WHEN 'remote' THEN c.src_ip ELSE c.dst_ip END) OR o.dst_endpoint.port <> (CASE c.initiated WHEN 'remote' THEN c.src_port ELSE c.dst_port END) OR o.connection_info.direction_id <> (CASE c.initiated WHEN 'remote' THEN 1 ELSE 2 END) OR o.activity_id <> CASE c.event WHEN 'close' THEN 2 WHEN 'fail' THEN (CASE WHEN c.error = 'ECONNREFUSED' THEN 5 ELSE 4 END) ELSE 1 END OR o.type_uid <> 400100 + o.activity_id OR o.unmapped.orig_dst_ip IS DISTINCT FROM c.orig_dst_ip OR o.traffic.bytes_out IS DISTINCT FROM (CASE c.initiated WHEN 'remote' THEN c.bytes_received ELSE c.bytes_sent END)")[0][0],
  "net_joined": q(f"SELECT count(*) FROM {na} o JOIN {nc} c ON o.connection_info.uid = CAST(c.socket_cookie AS VARCHAR) AND o.unmapped.event = c.event")[0][0],
  "outbound": q(f"SELECT count(*) FROM {na} WHERE unmapped.event = 'connect' AND connection_info.direction_id = 2")[0][0],
  "connects": q(f"SELECT count(*) FROM {nc} WHERE event = 'connect'")[0][0],
}
print(json.dumps(out))
"#;
    let o = Command::new("python3").args(["-c", script, d(&lake), d(&data)]).output().unwrap();
    assert!(o.status.success(), "DuckDB: {}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["exec"].as_u64().unwrap() > 0 && v["conn"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["launch"], v["exec"], "{v}");
    assert_eq!(v["launch_mismatch"], 0, "{v}");
    assert_eq!(v["terminate"], v["exit"], "{v}");
    assert_eq!(v["exit_codes"], v["exit_codes_src"], "{v}");
    assert_eq!(v["net"], v["conn"], "{v}");
    assert_eq!(v["net_joined"], v["conn"], "{v}");
    assert_eq!(v["net_mismatch"], 0, "{v}");
    assert_eq!(v["outbound"], v["connects"], "{v}");
    // Every event of every class, checked against the OCSF schema itself.
    let validate = |lake: &Path| Command::new("python3").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/ocsf_validate.py")).arg(lake).output().unwrap();
    let o = validate(&lake);
    let report = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "OCSF validation:\n{report}");
    for class in ["process_activity", "network_activity", "dns_activity", "file_activity"] {
        assert!(report.lines().any(|l| l.starts_with(&format!("{class}: ")) && !l.contains(": 0 events")), "no {class} events validated:\n{report}");
    }
    // A history with every event kind the incident lacks (every privilege
    // kind, refused connects, every DNS status, every file operation, ...):
    // valid too, and each privilege row in exactly one class.
    let data2 = tmp.path().join("every-kind");
    run_ok("podtrail-synth", &["--data-dir", d(&data2), "--every-kind"]);
    let lake2 = tmp.path().join("lake2");
    let r = export(&data2, d(&lake2), None, &["--schema", "ocsf"]);
    assert!(r["failed"].as_array().unwrap().is_empty(), "{r}");
    let o = validate(&lake2);
    let report = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "OCSF validation of every kind:\n{report}");
    let count = r#"
import duckdb, json, sys
lake, data = sys.argv[1], sys.argv[2]
con = duckdb.connect()
q = lambda s: con.execute(s).fetchall()
classes = {c: q(f"SELECT count(*) FROM read_parquet('{lake}/ocsf/{c}/**/privilege-*.parquet', union_by_name=true)")[0][0]
           for c in ["process_activity", "kernel_extension_activity", "file_activity", "kernel_activity"]}
kinds = q(f"SELECT count(*), count(DISTINCT kind) FROM read_parquet('{data}/segments/privilege/**/*.parquet')")[0]
ids = sorted(r[0] for r in q(f"SELECT DISTINCT activity_id FROM read_parquet('{lake}/ocsf/network_activity/**/net_conn-*.parquet')"))
print(json.dumps({"classes": classes, "rows": kinds[0], "kinds": kinds[1], "conn_activities": ids}))
"#;
    let o = Command::new("python3").args(["-c", count, d(&lake2), d(&data2)]).output().unwrap();
    assert!(o.status.success(), "DuckDB: {}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let exported: u64 = v["classes"].as_object().unwrap().values().filter_map(|n| n.as_u64()).sum();
    assert!(v["kinds"] == 18 && exported == v["rows"].as_u64().unwrap(), "every privilege kind, each row in one class: {v}");
    assert!(v["classes"].as_object().unwrap().values().all(|n| n.as_u64() > Some(0)), "{v}");
    // Open (connect, accept), close, fail, refuse.
    assert_eq!(v["conn_activities"], serde_json::json!([1, 2, 4, 5]), "{v}");
    // The validator refuses what OCSF does not have: a field where the class
    // has none, and a 64-bit integer where OCSF's integer_t is 32-bit.
    let bad = tmp.path().join("bad");
    let pa = lake.join("ocsf/process_activity");
    let one = pa.join(parquet_files(&pa).into_iter().next().expect("a process_activity file"));
    let dir = bad.join("ocsf/process_activity");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = format!(
        "import duckdb; duckdb.connect().execute(\"COPY (SELECT * REPLACE (CAST(activity_id AS BIGINT) AS activity_id), 1 AS pod_restarts FROM read_parquet('{}', hive_partitioning = false)) TO '{}' (FORMAT parquet)\")",
        one.display(),
        dir.join("x.parquet").display()
    );
    let c = Command::new("python3").args(["-c", &copy]).output().unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let o = validate(&bad);
    let report = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{report}");
    assert!(report.contains("pod_restarts: no such OCSF attribute here") && report.contains("'pod_restarts' was unexpected"), "{report}");
    assert!(report.contains("activity_id: Parquet ('INT64', None) for OCSF integer_t"), "{report}");
    // Rerun: same objects, nothing written.
    let r = export(&data, d(&lake), None, &["--schema", "ocsf"]);
    assert_eq!(r["segments_written"], 0, "{r}");
}

#[test]
fn shipping_survives_an_s3_outage_without_pausing_recording_or_shipping_twice() {
    use podtrail_tests::privileged::Recorder;
    let moto = Moto::start();
    moto.create_bucket("ship");
    let mut relay = Relay::start(moto.port);
    let ep = relay.endpoint();
    let mut rec = Recorder::start_with_env(&["--no-cri", "--ship-to", "s3://ship/lake", "--endpoint", &ep, "--segment-max-age", "2"], AWS_ENV);
    let exec = |tag: &str| {
        for _ in 0..5 {
            assert!(Command::new("/bin/sh").args(["-c", &format!("true {tag}")]).status().unwrap().success());
        }
    };
    let shipped_ids = |moto: &Moto| -> Vec<String> {
        moto.keys("ship", "lake/").into_iter().filter(|k| k.contains("/date=")).map(|k| k.rsplit('/').next().unwrap().trim_end_matches(".parquet").to_owned()).collect()
    };
    // Before the outage: something is sealed and shipped.
    let started = Instant::now();
    while shipped_ids(&moto).is_empty() {
        exec("before");
        assert!(started.elapsed() < Duration::from_secs(60), "nothing shipped in 60 s");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Outage: the store is unreachable for 8 s while events keep coming.
    relay.down();
    let outage_from = chrono::Utc::now();
    let outage_start = Instant::now();
    while outage_start.elapsed() < Duration::from_secs(8) {
        exec("during-outage");
        std::thread::sleep(Duration::from_millis(300));
    }
    let outage_to = chrono::Utc::now();
    relay.up();
    exec("after");
    std::thread::sleep(Duration::from_secs(3));
    let summary = rec.stop();
    assert!(summary["ship_failures"].as_u64().unwrap() > 0, "the outage was noticed: {summary}");
    assert_eq!(summary["ship_backlog"], 0, "every sealed segment shipped before exit: {summary}");
    assert!(summary["segments_shipped"].as_u64().unwrap() > 0 && summary["bytes_shipped"].as_u64().unwrap() > 0, "{summary}");

    // Recording never paused: exec rows throughout the outage, in the node's history.
    let during = sql_json(
        &rec.data_dir,
        &format!(
            "SELECT count(*) AS n, count(DISTINCT date_trunc('second', time)) AS secs FROM process_exec WHERE time BETWEEN TIMESTAMP '{}' AND TIMESTAMP '{}' AND array_has(args, 'true during-outage')",
            outage_from.to_rfc3339(),
            outage_to.to_rfc3339()
        ),
    );
    assert!(during[0]["n"].as_u64().unwrap() >= 50 && during[0]["secs"].as_u64().unwrap() >= 6, "recording during the outage: {during:?}");
    // Every sealed segment arrived, each exactly once.
    let sealed: Vec<String> = sql_json(&rec.data_dir, "SELECT segment_id FROM podtrail_segments WHERE state = 'sealed' ORDER BY segment_id")
        .into_iter()
        .map(|r| r["segment_id"].as_str().unwrap().to_owned())
        .collect();
    let mut ids = shipped_ids(&moto);
    ids.sort();
    assert_eq!(ids, sealed, "lake objects vs sealed segments");
    let ep = moto.endpoint();
    for t in ["process_exec", "net_conn", "process_exit"] {
        let local = sql_json(&rec.data_dir, &format!("SELECT count(*) AS n FROM {t}"))[0]["n"].clone();
        let lake: Vec<serde_json::Value> =
            serde_json::from_str(&podtrail_ok(&["--lake", "s3://ship/lake", "--endpoint", &ep, "sql", "--format", "json", "--", &format!("SELECT count(*) AS n FROM {t}")])).unwrap();
        assert_eq!(lake[0]["n"], local, "{t}: rows in the lake vs on the node");
    }
    let keys = moto.keys("ship", "lake/");
    assert!(keys.contains(&"lake/ip_owners/test-node.parquet".to_owned()), "{keys:#?}");
}
