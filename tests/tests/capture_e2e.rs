//! Privileged end-to-end tests of kernel capture: start the real `podtraild run`
//! on a temp data dir, trigger real processes in a real cgroup, stop it with
//! SIGTERM, then query what it stored with the real `podtrail`.
//! They need root and kernel BTF, and fail with an explanation otherwise.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use podtrail_tests::{bin, sql_json};

fn require_privileges() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "capture tests load eBPF programs and need root (CI runs as root); run tests/run.sh as root");
    assert!(Path::new("/sys/kernel/btf/vmlinux").exists(), "capture tests need kernel BTF (/sys/kernel/btf/vmlinux)");
}

/// A running `podtraild run`; stopped with SIGTERM (by pid) when dropped.
struct Recorder {
    child: Option<Child>,
    data_dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Recorder {
    fn start() -> Recorder {
        require_privileges();
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let mut child = Command::new(bin("podtraild"))
            .args(["--data-dir", data_dir.to_str().unwrap(), "run", "--node", "test-node"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn podtraild");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut log = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let ready = line.contains("recording");
                log.push(line);
                if ready {
                    let _ = tx.send(Ok(()));
                }
            }
            let _ = tx.send(Err(log.join("\n")));
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(log)) => panic!("podtraild exited before recording:\n{log}"),
            Err(_) => panic!("podtraild not recording after 30 s"),
        }
        Recorder { child: Some(child), data_dir, _tmp: tmp }
    }

    /// SIGTERM, then require a clean exit: drained, flushed, sealed.
    fn stop(&mut self) -> serde_json::Value {
        let child = self.child.take().expect("running");
        // SAFETY: kill(2) on the pid of the child this test spawned.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "podtraild exited with {}", out.status);
        serde_json::from_slice(&out.stdout).expect("podtraild prints a JSON summary")
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

/// The cgroup v2 mount, from /proc/self/mountinfo (never a fixed path: this
/// machine mounts v2 in the hybrid layout).
fn cgroup2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in info.lines() {
        let (pre, post) = line.split_once(" - ").unwrap();
        if post.split_whitespace().next() == Some("cgroup2") {
            return PathBuf::from(pre.split_whitespace().nth(4).unwrap());
        }
    }
    panic!("no cgroup2 mount in /proc/self/mountinfo");
}

/// A kubelet-named pod cgroup (systemd driver naming), removed on drop.
struct PodCgroup {
    dirs: Vec<PathBuf>,
}

impl PodCgroup {
    fn new(tag: &str) -> PodCgroup {
        let root = cgroup2_mount().join(format!("podtrail-test-{}-{tag}.slice", std::process::id()));
        let pod = root.join(format!("kubepods-besteffort-pod{}_{tag}.slice", std::process::id()));
        std::fs::create_dir_all(&pod).unwrap_or_else(|e| panic!("creating {}: {e}", pod.display()));
        PodCgroup { dirs: vec![pod, root] }
    }
    fn path(&self) -> &Path {
        &self.dirs[0]
    }
    fn id(&self) -> u64 {
        std::fs::metadata(self.path()).unwrap().ino()
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            if let Err(e) = std::fs::remove_dir(d) {
                eprintln!("cleanup: removing {}: {e}", d.display());
            }
        }
    }
}

/// A copy of /bin/true under a unique path, so rows can be found by `binary`.
fn probe_binary(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy("/bin/true", &p).unwrap();
    p
}

fn sh(script: &str) -> (u32, std::process::ExitStatus) {
    let mut c = Command::new("/bin/sh").args(["-c", script]).spawn().unwrap();
    let pid = c.id();
    (pid, c.wait().unwrap())
}

/// Print what was found next to what was expected when a lookup fails.
fn rows_or_explain(data_dir: &Path, query: &str, context: &str) -> Vec<serde_json::Value> {
    let rows = sql_json(data_dir, query);
    if rows.is_empty() {
        let recent = sql_json(data_dir, "SELECT pid, ppid, binary, args FROM process_exec ORDER BY time DESC LIMIT 20");
        panic!("{context}: no rows for {query}\nlast process_exec rows stored:\n{}", serde_json::to_string_pretty(&recent).unwrap());
    }
    rows
}

#[test]
fn exec_row_has_exact_args_uid_parent_and_pod_cgroup() {
    let mut rec = Recorder::start();
    let tmp = tempfile::tempdir().unwrap();
    let probe = probe_binary(tmp.path(), "pt-probe-args");
    let cg = PodCgroup::new("args");
    // The shell moves itself into the pod cgroup, then forks the probe (not the
    // last command, so the shell forks rather than exec'ing in place).
    let script = format!("echo $$ > {}/cgroup.procs && {} a 'b c' d; true", cg.path().display(), probe.display());
    let (sh_pid, status) = sh(&script);
    assert!(status.success());
    let summary = rec.stop();
    let d = &rec.data_dir;

    let rows = rows_or_explain(
        d,
        &format!("SELECT pid, ppid, uid, args, cgroup_id, parent_exec_id, node FROM process_exec WHERE binary = '{}'", probe.display()),
        "the probe's exec",
    );
    assert_eq!(rows.len(), 1, "exactly one exec row: {rows:?}");
    let r = &rows[0];
    assert_eq!(r["args"], serde_json::json!([probe.to_str().unwrap(), "a", "b c", "d"]));
    assert_eq!(r["uid"], 0);
    assert_eq!(r["ppid"].as_u64(), Some(u64::from(sh_pid)));
    assert_eq!(r["cgroup_id"].as_u64(), Some(cg.id()), "cgroup_id must be the inode of {}", cg.path().display());
    assert_eq!(r["node"], "test-node");
    let shell = rows_or_explain(d, &format!("SELECT exec_id, args FROM process_exec WHERE pid = {sh_pid}"), "the shell's exec");
    assert_eq!(shell.len(), 1, "{shell:?}");
    assert_eq!(r["parent_exec_id"], shell[0]["exec_id"], "parent_exec_id must be the spawning shell's exec_id");
    assert_eq!(shell[0]["args"], serde_json::json!(["/bin/sh", "-c", script]));
    assert!(summary["exec_rows"].as_u64().unwrap() >= 2, "{summary}");
}

#[test]
fn exit_code_is_recorded() {
    let mut rec = Recorder::start();
    let (pid, status) = sh("exit 7");
    assert_eq!(status.code(), Some(7));
    rec.stop();
    let rows = rows_or_explain(
        &rec.data_dir,
        &format!("SELECT x.exit_code, x.signal, x.exec_id = e.exec_id AS same_image, x.duration_ns FROM process_exit x JOIN process_exec e ON x.pid = e.pid WHERE x.pid = {pid}"),
        "the exit of `sh -c 'exit 7'`",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["exit_code"], 7);
    assert_eq!(rows[0]["signal"], 0);
    assert_eq!(rows[0]["same_image"], true, "the exit row must carry its exec's exec_id");
    assert!(rows[0]["duration_ns"].as_u64().unwrap() > 0);
}

#[test]
fn exec_storm_rows_plus_counted_loss_equal_spawns() {
    const N: usize = 2000;
    let mut rec = Recorder::start();
    let tmp = tempfile::tempdir().unwrap();
    let probe = probe_binary(tmp.path(), "pt-probe-storm");
    let (_, status) = sh(&format!("i=0; while [ $i -lt {N} ]; do {}; i=$((i+1)); done", probe.display()));
    assert!(status.success());
    let summary = rec.stop();
    let d = &rec.data_dir;
    let rows = sql_json(d, &format!("SELECT count(*) AS n FROM process_exec WHERE binary = '{}'", probe.display()))[0]["n"].as_u64().unwrap();
    let lost = sql_json(d, "SELECT CAST(coalesce(sum(count), 0) AS BIGINT) AS n FROM podtrail_loss WHERE source IN ('kernel_ringbuf', 'decode')")[0]["n"].as_u64().unwrap();
    assert_eq!(lost, summary["kernel_drops"].as_u64().unwrap() + summary["decode_errors"].as_u64().unwrap(), "every drop the recorder saw is a loss row");
    // Loss is counted for all events, not per binary: with no loss the rows must be
    // exactly N; with loss, rows are short by no more than what was counted.
    assert!(rows as usize <= N, "{rows} rows for {N} spawns: invented rows");
    assert!(rows as usize + lost as usize >= N, "{rows} rows + {lost} counted loss < {N} spawns: silent loss");
    if lost == 0 {
        assert_eq!(rows as usize, N);
    }
}
