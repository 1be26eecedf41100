//! Fault injection: the real `podtraild` under a full disk, kill -9, an evicted
//! and an overflowing socket map, damaged hot files and catalogs, a stopped
//! reader, and a long steady load. Each test accounts exactly: every event a
//! test pod produced is either stored or counted in `podtrail_loss` (for its
//! pod and table), or lies in a window the history marks as not recorded.
//! Root and kernel BTF are needed; each test fails with an explanation otherwise.
//!
//! The tests run one at a time (a lock): each storms a 2-core machine, and a
//! deadline ("stored within 5 s of space returning") means nothing next to
//! another test's storm.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use podtrail_tests::privileged::{PodCgroup, Recorder, Tmpfs, in_cgroup, require_privileges, rss_and_fds};
use podtrail_tests::{bin, run, run_ok, sql_count, sql_json};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Python interpreter itself: `python3` on PATH may be a shim that execs a
/// tree of helpers first (pyenv), which a test counting a pod's execs must not see.
fn python() -> &'static str {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        let o = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().expect("python3");
        String::from_utf8(o.stdout).unwrap().trim().to_owned()
    })
}

/// A copy of /bin/true under a unique path, so rows can be found by `binary`.
fn probe_binary(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy("/bin/true", &p).unwrap();
    p
}

fn d(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `sh -c 'run PROBE 0 .. PROBE n-1'` in the pod cgroup; waits for it.
fn exec_storm(cg: &PodCgroup, probe: &Path, n: usize) {
    let script = format!("i=0; while [ $i -lt {n} ]; do {} $i; i=$((i+1)); done", probe.display());
    let st = in_cgroup(Command::new("/bin/sh").args(["-c", &script]), cg).status().unwrap();
    assert!(st.success(), "the exec storm failed");
}

/// Stored rows of `table` in the pod, and the rows counted lost for it there
/// (known counts; `sources` limits which).
fn stored_and_lost(dir: &Path, table: &str, pod: &str, sources: &[&str]) -> (u64, u64) {
    let stored = sql_count(dir, &format!("SELECT count(*) FROM {table} WHERE pod_uid = '{pod}'"));
    let src = sources.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
    let lost = sql_count(dir, &format!("SELECT CAST(coalesce(sum(count), 0) AS BIGINT) FROM podtrail_loss WHERE table_name = '{table}' AND pod_uid = '{pod}' AND source IN ({src})"));
    (stored, lost)
}

/// Runs of the kernel programs of `table` the kernel skipped (any pod): each
/// may have been a row, so they bound what a test can demand, from above.
fn skipped(dir: &Path, table: &str) -> u64 {
    sql_count(dir, &format!("SELECT CAST(coalesce(sum(count), 0) AS BIGINT) FROM podtrail_loss WHERE source = 'kernel_skipped' AND table_name = '{table}'"))
}

/// Every produced row is stored or counted: stored + counted (exact counts)
/// never exceeds what was produced (nothing invented), and falls short of it by
/// no more than the runs the kernel skipped (counted too, as an upper bound).
fn accounts(dir: &Path, what: &str, produced: u64, stored: u64, lost: u64, skipped: u64) {
    eprintln!("{what}: {stored} stored + {lost} counted lost = {} of {produced} ({skipped} kernel runs skipped)", stored + lost);
    assert!(stored + lost <= produced, "{what}: stored {stored} + counted {lost} > {produced} produced: rows or loss invented\nloss: {}", loss_table(dir));
    assert!(produced - (stored + lost) <= skipped, "{what}: {} rows neither stored nor counted ({skipped} skipped runs)\nloss: {}", produced - stored - lost, loss_table(dir));
}

fn loss_table(dir: &Path) -> String {
    serde_json::to_string_pretty(&sql_json(dir, "SELECT source, table_name, pod_uid, count, detail FROM podtrail_loss ORDER BY time_from")).unwrap()
}

fn verify_passes(dir: &Path) {
    let v = run("podtrail", &["--data-dir", d(dir), "verify"]);
    assert!(v.status.success(), "verify: {}{}", String::from_utf8_lossy(&v.stdout), String::from_utf8_lossy(&v.stderr));
}

// Regression: with the data dir on a full tmpfs podtraild exited ("No space
// left on device") and recorded nothing after, with no `disk` loss row.
#[test]
fn disk_full_never_stops_the_recorder_and_every_exec_is_stored_or_counted() {
    let _one = serial();
    const N: usize = 3000;
    let fs = Tmpfs::new("40m");
    let data = fs.path().join("data");
    // A small in-memory bound: a 3,000-exec storm must overflow it.
    let mut rec = Recorder::start_in(&data, &["--write-buffer", "256K"], &[]);
    let tools = tempfile::tempdir().unwrap();
    let probe = probe_binary(tools.path(), "pt-fault-diskfull");
    let back = probe_binary(tools.path(), "pt-fault-disk-back");
    let cg = PodCgroup::new("diskfull");
    fs.fill();
    exec_storm(&cg, &probe, N);
    std::thread::sleep(Duration::from_secs(2));
    assert!(rec.alive(), "podtraild exited on a full disk:\n{}", rec.log_tail(20));
    // The operator frees space: new events are stored within 5 s.
    fs.resize("400m");
    let freed = Instant::now();
    assert!(Command::new(&back).status().unwrap().success());
    let q = format!("SELECT count(*) FROM process_exec WHERE binary = '{}'", back.display());
    while sql_count(&data, &q) == 0 {
        assert!(freed.elapsed() < Duration::from_secs(5), "an exec 5 s after space returned is not stored:\n{}", rec.log_tail(20));
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("stored {:.2} s after space returned", freed.elapsed().as_secs_f64());
    let summary = rec.stop();
    verify_passes(&data);
    // The pod's execs: the shell and N probes, each stored or counted.
    let (stored, lost) = stored_and_lost(&data, "process_exec", &cg.uid, &["disk", "kernel_ringbuf", "decode"]);
    accounts(&data, "process_exec", N as u64 + 1, stored, lost, skipped(&data, "process_exec"));
    let disk = sql_count(&data, &format!("SELECT CAST(coalesce(sum(count), 0) AS BIGINT) FROM podtrail_loss WHERE source = 'disk' AND pod_uid = '{}'", cg.uid));
    assert!(disk > 0, "the storm did not overflow the write buffer: the test proves nothing\n{summary}");
    assert!(summary["store_write_failures"].as_u64().unwrap() > 0, "{summary}");
}

/// Spawns the probe until the stop file appears (at most 120 s), each
/// spawn's number and wall-clock time written just before it.
const STORM_PY: &str = r#"
import os, subprocess, sys, time
probe, stop, out = sys.argv[1], sys.argv[2], open(sys.argv[3], "w")
deadline, i = time.monotonic() + 120, 0
while not os.path.exists(stop) and time.monotonic() < deadline:
    out.write(f"{i} {time.time_ns()}\n"); out.flush()
    subprocess.run([probe, str(i)])
    i += 1
"#;

// Regression: after kill -9 mid-storm the last ~0.4 s of execs were missing with
// no loss row, the downtime was marked nowhere, and a restart 0.8 s after the
// kill was refused because the dying recorder still held the lock.
// The storm runs until the restarted recorder has recorded for a while: how
// long the killed one takes to die (the kernel detaching its programs) varies.
#[test]
fn kill_9_mid_storm_restarts_at_once_and_every_spawn_is_stored_or_in_a_window_not_recorded() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut rec = Recorder::start_in(&data, &[], &[]);
    let probe = probe_binary(tmp.path(), "pt-fault-kill9");
    let spawns = tmp.path().join("spawns.txt");
    let stop = tmp.path().join("stop");
    let cg = PodCgroup::new("kill9");
    let mut storm = in_cgroup(Command::new(python()).args(["-c", STORM_PY, d(&probe), d(&stop), d(&spawns)]), &cg).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let killing = Instant::now();
    rec.kill9();
    let killed = Instant::now();
    rec.restart(&[]);
    eprintln!("the killed recorder took {:.2} s to exit; recording again {:.2} s after that", (killed - killing).as_secs_f64(), killed.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(&stop, "").unwrap();
    assert!(storm.wait().unwrap().success());
    std::thread::sleep(Duration::from_secs(2));
    rec.stop();
    verify_passes(&data);

    let times: BTreeMap<u64, i64> = std::fs::read_to_string(&spawns)
        .unwrap()
        .lines()
        .map(|l| {
            let (i, t) = l.split_once(' ').unwrap();
            (i.parse().unwrap(), t.parse().unwrap())
        })
        .collect();
    let n = times.len();
    assert!(n > 0 && times.keys().next_back() == Some(&(n as u64 - 1)), "{n} spawns, numbered 0..{n}");
    let stored: BTreeSet<u64> = sql_json(&data, &format!("SELECT args[2] AS i FROM process_exec WHERE binary = '{}'", probe.display()))
        .iter()
        .map(|r| r["i"].as_str().unwrap().parse().unwrap())
        .collect();
    let windows: Vec<(i64, i64)> = sql_json(&data, "SELECT CAST(time_from AS BIGINT) AS f, CAST(time_to AS BIGINT) AS t FROM podtrail_loss WHERE source = 'crash' AND count IS NULL")
        .iter()
        .map(|r| (r["f"].as_i64().unwrap(), r["t"].as_i64().unwrap()))
        .collect();
    assert_eq!(windows.len(), 1, "one crash window of unknown count: {}", loss_table(&data));
    let (from, to) = windows[0];
    // A spawn's time is taken just before it: its exec comes a little later.
    const SPAWN_SLACK_NS: i64 = 100_000_000;
    let uncovered: Vec<(u64, i64)> = times.iter().filter(|(i, t)| !stored.contains(i) && !(from - SPAWN_SLACK_NS..=to).contains(*t)).map(|(i, t)| (*i, *t)).collect();
    assert!(uncovered.is_empty(), "{} spawns neither stored nor in the crash window {from}..{to}: {:?}", uncovered.len(), &uncovered[..uncovered.len().min(10)]);
    let missing = n - stored.len();
    let before = times.iter().filter(|(i, t)| stored.contains(i) && **t < from).count();
    let after = times.iter().filter(|(i, t)| stored.contains(i) && **t > to).count();
    eprintln!("{} of {n} spawns stored ({before} before the window, {after} after it); {missing} in the window not recorded ({:.2} s)", stored.len(), (to - from) as f64 / 1e9);
    assert!(before > 0 && after > 0 && missing > 0, "the kill did not land mid-storm, or the restarted recorder saw none of it");
    // podtrail status shows that window as not recorded.
    let st: serde_json::Value = serde_json::from_str(&run_ok("podtrail", &["--data-dir", d(&data), "status", "--json"])).unwrap();
    let gaps = st["not_recorded"].as_array().unwrap();
    assert!(gaps.iter().any(|g| g["why"].as_str().unwrap().contains("without shutting down")), "status shows no window: {st}");
}

const TCP_PY: &str = r#"
import resource, socket, sys, threading
n, concurrent = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(4096)
port = srv.getsockname()[1]
accepted = []
def serve():
    while True:
        c, _ = srv.accept()
        if concurrent: accepted.append(c)
        else: c.close()
threading.Thread(target=serve, daemon=True).start()
print(port, flush=True)
if concurrent:
    # Hold every connection open at once, then close them all.
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    while len(accepted) < n: pass
    for c in held: c.close()
    for c in accepted: c.close()
else:
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port)); c.close()
print("done", flush=True)
"#;

/// Run the TCP load in the pod cgroup: its server port.
fn tcp_load(cg: &PodCgroup, n: usize, concurrent: bool) -> u16 {
    let mut c = in_cgroup(Command::new(python()).args(["-c", TCP_PY, &n.to_string(), if concurrent { "1" } else { "0" }]), cg).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap()).lines();
    let port: u16 = out.next().unwrap().unwrap().trim().parse().unwrap();
    assert_eq!(out.next().unwrap().unwrap(), "done");
    assert!(c.wait().unwrap().success());
    port
}

// Regression: of 24,000 connect+close pairs on 127.0.0.1 only 23,941 closes were
// stored, with no loss counted: a close was sent only for a socket found in an
// LRU map, which evicts before it is full.
#[test]
fn every_tcp_connection_has_its_close_row_or_is_counted() {
    let _one = serial();
    const N: usize = 100_000;
    let mut rec = Recorder::start();
    let cg = PodCgroup::new("tcp100k");
    let port = tcp_load(&cg, N, false);
    std::thread::sleep(Duration::from_secs(2));
    rec.stop();
    let data = rec.data_dir.clone();
    let uid = &cg.uid;
    // Client side: one connect and one close per connection, joined by cookie.
    let connects = sql_count(&data, &format!("SELECT count(*) FROM net_conn WHERE pod_uid = '{uid}' AND event = 'connect' AND dst_port = {port}"));
    let unclosed = sql_count(
        &data,
        &format!(
            "SELECT count(*) FROM net_conn c WHERE c.pod_uid = '{uid}' AND c.event = 'connect' AND c.dst_port = {port} \
             AND NOT EXISTS (SELECT 1 FROM net_conn x WHERE x.event = 'close' AND x.socket_cookie = c.socket_cookie)"
        ),
    );
    // All four rows of every connection (connect, accept, two closes), stored or counted.
    let rows = sql_count(&data, &format!("SELECT count(*) FROM net_conn WHERE pod_uid = '{uid}' AND (dst_port = {port} OR src_port = {port})"));
    let (_, lost) = stored_and_lost(&data, "net_conn", uid, &["kernel_ringbuf", "decode", "disk"]);
    let skipped = skipped(&data, "net_conn");
    eprintln!("{connects} connects, {unclosed} without a close");
    accounts(&data, "net_conn", 4 * N as u64, rows, lost, skipped);
    assert!(unclosed <= lost + skipped, "{unclosed} connects without a close, only {lost} + {skipped} counted");
    let incomplete = sql_count(&data, &format!("SELECT count(*) FROM podtrail_loss WHERE source = 'incomplete' AND pod_uid = '{uid}'"));
    assert_eq!(incomplete, 0, "the socket map was never full here: {}", loss_table(&data));
}

#[test]
fn connections_beyond_the_socket_map_are_still_closed_and_the_missing_state_counted() {
    let _one = serial();
    const N: usize = 2000;
    // 512 entries for 4,000 established sockets (both ends of each connection).
    let mut rec = Recorder::start_with_env(&[], &[("PODTRAIL_TEST_MAP_ENTRIES", "established=512")]);
    let cg = PodCgroup::new("tcpmap");
    let port = tcp_load(&cg, N, true);
    std::thread::sleep(Duration::from_secs(2));
    rec.stop();
    let data = rec.data_dir.clone();
    let uid = &cg.uid;
    let of_port = format!("pod_uid = '{uid}' AND (dst_port = {port} OR src_port = {port})");
    let closes = sql_count(&data, &format!("SELECT count(*) FROM net_conn WHERE {of_port} AND event = 'close'"));
    let stateless = sql_count(&data, &format!("SELECT count(*) FROM net_conn WHERE {of_port} AND event = 'close' AND bytes_sent IS NULL"));
    let counted = sql_count(&data, &format!("SELECT CAST(coalesce(sum(count), 0) AS BIGINT) FROM podtrail_loss WHERE source = 'incomplete' AND pod_uid = '{uid}' AND detail LIKE '%established%'"));
    let (_, lost) = stored_and_lost(&data, "net_conn", uid, &["kernel_ringbuf"]);
    let skipped = skipped(&data, "net_conn");
    eprintln!("{stateless} closes without state, {counted} counted incomplete");
    accounts(&data, "closes", 2 * N as u64, closes, lost, skipped);
    // A close the kernel skipped (counted in `skipped`) may be one of those
    // without state, so the closes not stored make up the difference: in one CI
    // run 131 of 4,000 closes were skipped and 3,357 stateless ones stored for
    // 3,488 counted.
    let not_stored = 2 * N as u64 - closes;
    assert!(
        stateless + not_stored >= (2 * N - 512) as u64,
        "at least the sockets the map could not hold close without state: {stateless} stored without state, {not_stored} not stored"
    );
    // Each socket the map could not hold is counted once; its close row has no bytes.
    // A socket whose change to established the kernel skipped has no state
    // either; that run is in `skipped`, not in `incomplete`.
    assert!(
        stateless <= counted + skipped && counted <= stateless + lost + skipped,
        "{stateless} closes without state, {counted} counted incomplete, {skipped} runs skipped\nloss: {}",
        loss_table(&data)
    );
}

// Regression: a junk hot file made recovery count billions of lost rows, a bad
// magic stopped `recover` and `run`, and a truncated file was recovered with
// rows_lost 0.
#[test]
fn damaged_hot_files_never_stop_the_recorder_and_loss_never_exceeds_what_was_written() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut rec = Recorder::start_in(&data, &[], &[]);
    let cg = PodCgroup::new("hotfaults");
    let probe = probe_binary(tmp.path(), "pt-fault-hot");
    exec_storm(&cg, &probe, 300);
    tcp_load(&cg, 300, false);
    // A privilege row and a capability check (cap_usage) too.
    assert!(in_cgroup(Command::new("unshare").args(["-n", "true"]), &cg).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(2500)); // flushed, and recorded as flushed
    rec.kill9();
    // What the catalog saw flushed to each hot file.
    let cat = rusqlite::Connection::open(data.join("catalog.db")).unwrap();
    let flushed: BTreeMap<String, (String, i64)> = {
        let mut st = cat.prepare("SELECT segment_id, table_name, rows FROM hot_files").unwrap();
        st.query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))).unwrap().map(Result::unwrap).collect()
    };
    drop(cat);
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("hot")).unwrap().flat_map(|t| std::fs::read_dir(t.unwrap().path()).unwrap()).map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 4, "want a hot file per fault, got {files:?}");
    let faults = ["garbage appended", "bad magic", "cut to 5 bytes", "emptied"];
    let mut damaged = BTreeMap::new();
    for (f, fault) in files.iter().zip(faults.iter().cycle()) {
        let bytes = std::fs::read(f).unwrap();
        let new = match *fault {
            "garbage appended" => [bytes.clone(), (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()].concat(),
            "bad magic" => [b"GARBAGE!".to_vec(), bytes[8..].to_vec()].concat(),
            "cut to 5 bytes" => bytes[..5].to_vec(),
            _ => Vec::new(),
        };
        std::fs::write(f, new).unwrap();
        let id = f.file_stem().unwrap().to_str().unwrap().to_owned();
        damaged.insert(id, *fault);
    }
    // The recorder starts and records all the same.
    rec.restart(&[]);
    let after = probe_binary(tmp.path(), "pt-fault-hot-after");
    assert!(Command::new(&after).status().unwrap().success());
    std::thread::sleep(Duration::from_secs(2));
    rec.stop();
    assert_eq!(sql_count(&data, &format!("SELECT count(*) FROM process_exec WHERE binary = '{}'", after.display())), 1, "recording after the damage");
    verify_passes(&data);
    let loss = sql_json(&data, "SELECT source, table_name, count, detail FROM podtrail_loss WHERE source IN ('corrupt', 'crash')");
    for (id, fault) in &damaged {
        let (table, rows) = flushed.get(id).cloned().unwrap_or_else(|| panic!("the catalog recorded no flushed rows for {id}"));
        let row = loss.iter().find(|l| l["detail"].as_str().unwrap_or("").contains(id.as_str())).unwrap_or_else(|| panic!("no loss row names {id} ({fault}): {}", loss_table(&data)));
        let count = row["count"].as_i64();
        assert_eq!(row["table_name"], table.as_str());
        match *fault {
            "garbage appended" => assert_eq!(count, Some(0), "{fault}: nothing flushed was lost: {row}"),
            _ => assert_eq!(count, Some(rows), "{fault}: every row flushed to it is counted, no more: {row}"),
        }
        // The damaged bytes are kept in quarantine/, named in the loss row.
        let q = data.join("quarantine").join(&table);
        let kept: Vec<String> = std::fs::read_dir(&q).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.contains(id.as_str())).collect();
        assert!(!kept.is_empty(), "{fault}: nothing of {id} in {}", q.display());
        assert!(kept.iter().any(|k| row["detail"].as_str().unwrap().contains(k)), "{fault}: the loss row names the quarantined file: {row}");
    }
}

/// Damage a catalog the way disks and people do.
fn damage(catalog: &Path, how: &str) {
    let mut bytes = std::fs::read(catalog).unwrap();
    match how {
        "pages" => {
            let pages = bytes.len() / 4096;
            for page in [1, pages / 2, pages - 1] {
                let at = page * 4096;
                for b in &mut bytes[at..at + 40] {
                    *b ^= 0xa5;
                }
            }
        }
        "truncated" => bytes.truncate(bytes.len() / 2),
        _ => unreachable!(),
    }
    std::fs::write(catalog, bytes).unwrap();
}

// Regression: with catalog pages corrupted `podtrail verify` said "0 problems"
// and podtraild recorded into the broken catalog without a warning.
#[test]
fn a_damaged_catalog_fails_verify_is_refused_by_run_and_is_rebuilt_from_the_segments() {
    let _one = serial();
    require_privileges();
    for how in ["pages", "truncated"] {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        run_ok("podtrail-synth", &["--data-dir", d(&data), "--hours", "2", "--pods", "6", "--events-per-sec", "20", "--seed", "11"]);
        let tables = ["process_exec", "process_exit", "net_conn"];
        let before: Vec<u64> = tables.iter().map(|t| sql_count(&data, &format!("SELECT count(*) FROM {t}"))).collect();
        let catalog = data.join("catalog.db");
        // Everything in the main file (readers may leave a WAL behind), so
        // the damage is not masked by newer copies of the pages in the WAL.
        rusqlite::Connection::open(&catalog).unwrap().execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
        damage(&catalog, how);

        let v = run("podtrail", &["--data-dir", d(&data), "verify"]);
        let out = String::from_utf8_lossy(&v.stdout);
        assert_eq!(v.status.code(), Some(1), "{how}: verify must fail: {out}{}", String::from_utf8_lossy(&v.stderr));
        assert!(out.contains(d(&catalog)) && out.contains("--rebuild-catalog"), "{how}: verify names the catalog and the way out: {out}");

        let r = Command::new(bin("podtraild")).args(["--data-dir", d(&data), "run", "--node", "n1"]).env("RUST_LOG", "off").output().unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{how}: run must refuse: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{how}: one line: {err}");
        assert!(err.contains("damaged") && err.contains("--rebuild-catalog") && err.contains(d(&catalog)), "{how}: {err}");

        let report: serde_json::Value = serde_json::from_str(run_ok("podtraild", &["--data-dir", d(&data), "recover", "--rebuild-catalog"]).trim()).unwrap();
        assert!(report["rebuild"]["damaged_catalog_kept_as"].as_str().is_some_and(|p| Path::new(p).exists()), "{report}");
        let after: Vec<u64> = tables.iter().map(|t| sql_count(&data, &format!("SELECT count(*) FROM {t}"))).collect();
        assert_eq!(before, after, "{how}: every sealed row is queryable again");
        let v = run_ok("podtrail", &["--data-dir", d(&data), "verify"]);
        assert!(v.contains("rebuilt"), "{how}: verify says the chain was rebuilt: {v}");
    }
}

// Regression: ring-buffer loss was one number for process_exec/process_exit
// (fork records counted in it): which table it hit was not known.
#[test]
fn a_stopped_reader_overflows_the_ring_buffers_and_each_table_accounts_exactly() {
    let _one = serial();
    const EXECS: usize = 12_000;
    const CONNS: usize = 15_000;
    let tmp = tempfile::tempdir().unwrap();
    let mut rec = Recorder::start();
    let cg = PodCgroup::new("overflow");
    let probe = probe_binary(tmp.path(), "pt-fault-overflow");
    rec.signal(libc::SIGSTOP);
    exec_storm(&cg, &probe, EXECS);
    tcp_load(&cg, CONNS, false);
    rec.signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(3));
    let summary = rec.stop();
    let data = rec.data_dir.clone();
    let uid = &cg.uid;
    // The pod's processes: the shell, the probes, python.
    let want = [("process_exec", EXECS as u64 + 2), ("process_exit", EXECS as u64 + 2), ("net_conn", 4 * CONNS as u64)];
    let mut total_lost = 0;
    for (table, produced) in want {
        let (stored, lost) = stored_and_lost(&data, table, uid, &["kernel_ringbuf"]);
        if stored + lost > produced {
            let by = sql_json(&data, &format!("SELECT comm, count(*) AS n FROM {table} WHERE pod_uid = '{uid}' GROUP BY comm ORDER BY n DESC LIMIT 10"));
            eprintln!("{table} rows of the pod by comm: {by:?}");
        }
        accounts(&data, table, produced, stored, lost, skipped(&data, table));
        total_lost += lost;
    }
    assert!(total_lost > 0, "nothing overflowed: the test proves nothing\n{summary}");
}

// A long steady load: memory and open files stay flat, everything is stored.
// PODTRAIL_SOAK_SECS shortens it for a local run (default 600).
#[test]
fn a_ten_minute_soak_keeps_memory_and_files_flat_and_stores_everything() {
    let _one = serial();
    let secs: u64 = std::env::var("PODTRAIL_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let tmp = tempfile::tempdir().unwrap();
    // Segments sealed every `age` seconds: the soak spans several seal cycles,
    // so memory that is not given back would show as growth.
    let age = (secs / 10).clamp(5, 60);
    let mut rec = Recorder::start_with(&["--segment-max-age", &age.to_string()]);
    let pid = rec.pid();
    let cg = PodCgroup::new("soak");
    let probe = probe_binary(tmp.path(), "pt-fault-soak");
    // 50 execs and 200 connections a second.
    const LOAD_PY: &str = r#"
import socket, subprocess, sys, threading, time
probe, secs = sys.argv[1], float(sys.argv[2])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1024)
port = srv.getsockname()[1]
def serve():
    while True:
        c, _ = srv.accept(); c.close()
threading.Thread(target=serve, daemon=True).start()
execs = conns = 0
start = time.monotonic(); tick = start
while time.monotonic() - start < secs:
    subprocess.run([probe]); execs += 1
    for _ in range(4):
        socket.create_connection(("127.0.0.1", port)).close(); conns += 1
    tick += 0.02
    time.sleep(max(0, tick - time.monotonic()))
print(port, execs, conns, flush=True)
"#;
    let mut load = in_cgroup(Command::new(python()).args(["-c", LOAD_PY, d(&probe), &secs.to_string()]), &cg).stdout(Stdio::piped()).spawn().unwrap();
    let warmup = Duration::from_secs(2 * age);
    let started = Instant::now();
    let mut samples = Vec::new();
    while load.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_secs(5));
        assert!(rec.alive(), "podtraild died during the soak:\n{}", rec.log_tail(20));
        if started.elapsed() >= warmup {
            samples.push(rss_and_fds(pid));
        }
    }
    let out = String::from_utf8(load.wait_with_output().unwrap().stdout).unwrap();
    let nums: Vec<u64> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
    let (port, execs, conns) = (nums[0], nums[1], nums[2]);
    std::thread::sleep(Duration::from_secs(2));
    rec.stop();
    let data = rec.data_dir.clone();
    assert!(samples.len() >= 3, "too short a soak to judge: {samples:?}");
    let rss: Vec<u64> = samples.iter().map(|s| s.0).collect();
    let fds: Vec<usize> = samples.iter().map(|s| s.1).collect();
    // Flat: the second half after warm-up peaks no higher than the first.
    let half = rss.len() / 2;
    let (first, second) = (*rss[..half].iter().max().unwrap(), *rss[half..].iter().max().unwrap());
    let mib = |b: u64| b as f64 / 1048576.0;
    eprintln!(
        "soak {secs} s (segments sealed every {age} s): {execs} execs, {conns} connections; RSS peak {:.1} MiB in the first half after warm-up, {:.1} MiB in the second; fds {}..{}",
        mib(first),
        mib(second),
        fds.iter().min().unwrap(),
        fds.iter().max().unwrap()
    );
    assert!(second <= first + first / 10 + (4 << 20), "RSS grows: peak {first} then {second} bytes: {rss:?}");
    assert!(fds.iter().max().unwrap() - fds.iter().min().unwrap() <= 8, "open files not flat: {fds:?}");
    let stored_execs = sql_count(&data, &format!("SELECT count(*) FROM process_exec WHERE binary = '{}'", probe.display()));
    let stored_conns = sql_count(&data, &format!("SELECT count(*) FROM net_conn WHERE pod_uid = '{}' AND event = 'connect' AND dst_port = {port}", cg.uid));
    let lost = sql_count(&data, &format!("SELECT CAST(coalesce(sum(count), 0) AS BIGINT) FROM podtrail_loss WHERE pod_uid = '{}' AND source <> 'incomplete'", cg.uid));
    assert_eq!((stored_execs, stored_conns, lost), (execs, conns, 0), "stored = generated, nothing lost\nloss: {}", loss_table(&data));
}

// Regression: `podtrail status | true` panicked with exit 101; an unreadable data
// dir "held no history"; a file given as --data-dir "did not exist" (podtraild:
// "File exists (os error 17)").
#[test]
fn the_cli_says_what_is_wrong_with_a_pipe_a_permission_or_a_file() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    run_ok("podtrail-synth", &["--data-dir", d(&data), "--hours", "0.2", "--pods", "2", "--events-per-sec", "5"]);
    for cmd in [&["status"][..], &["verify"], &["schema"], &["sql", "SELECT * FROM process_exec"]] {
        let mut c = Command::new(bin("podtrail")).args(["--data-dir", d(&data)]).args(cmd).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(c.stdout.take()); // `| true`: the reader is gone before anything is written
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        use std::os::unix::process::ExitStatusExt;
        assert!(out.status.code() == Some(0) || out.status.signal() == Some(libc::SIGPIPE), "{cmd:?} into a closed pipe: {:?} {err}", out.status);
        assert!(!err.contains("panicked"), "{cmd:?}: {err}");
    }
    // A data dir only its owner may read, asked by another user.
    require_privileges();
    let o = Command::new("setpriv").args(["--reuid", "65534", "--regid", "65534", "--clear-groups"]).arg(bin("podtrail")).args(["--data-dir", d(&data), "status"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("Permission denied") && !err.contains("no podtrail history"), "{err}");
    // A file where a directory should be.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let o = run("podtrail", &["--data-dir", d(&file), "status"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a directory"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run("podtraild", &["--data-dir", d(&file), "recover"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not a directory") && err.contains(d(&file)), "{err}");
}
