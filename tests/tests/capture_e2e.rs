//! Privileged end-to-end tests of kernel capture: start the real `podtraild run`
//! on a temp data dir, trigger real processes in a real cgroup, stop it with
//! SIGTERM, then query what it stored with the real `podtrail`.
//! They need root and kernel BTF, and fail with an explanation otherwise.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use podtrail_tests::privileged::{PodCgroup, PodPair, Recorder, Spawned, in_cgroup, in_ns, ip, require_privileges};
use podtrail_tests::{bin, sql_json};

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
    let workdir = std::fs::canonicalize(tmp.path()).unwrap();
    let mut c = Command::new("/bin/sh").args(["-c", &script]).current_dir(&workdir).spawn().unwrap();
    let sh_pid = c.id();
    let status = c.wait().unwrap();
    assert!(status.success());
    let summary = rec.stop();
    let d = &rec.data_dir;

    let rows = rows_or_explain(
        d,
        &format!("SELECT pid, ppid, uid, args, cgroup_id, parent_exec_id, node, pod_uid, container_id, cwd FROM process_exec WHERE binary = '{}'", probe.display()),
        "the probe's exec",
    );
    assert_eq!(rows.len(), 1, "exactly one exec row: {rows:?}");
    let r = &rows[0];
    assert_eq!(r["args"], serde_json::json!([probe.to_str().unwrap(), "a", "b c", "d"]));
    assert_eq!(r["uid"], 0);
    assert_eq!(r["cwd"], workdir.to_str().unwrap(), "the working directory the shell ran it from");
    assert_eq!(r["ppid"].as_u64(), Some(u64::from(sh_pid)));
    assert_eq!(r["cgroup_id"].as_u64(), Some(cg.id()), "cgroup_id must be the inode of {}", cg.path().display());
    assert_eq!(r["node"], "test-node");
    assert_eq!((r["pod_uid"].as_str(), r["container_id"].as_str()), (Some(cg.uid.as_str()), Some(cg.container_id.as_str())), "identity from the cgroup path");
    let shell = rows_or_explain(d, &format!("SELECT exec_id, args FROM process_exec WHERE pid = {sh_pid}"), "the shell's exec");
    assert_eq!(shell.len(), 1, "{shell:?}");
    assert_eq!(r["parent_exec_id"], shell[0]["exec_id"], "parent_exec_id must be the spawning shell's exec_id");
    assert_eq!(shell[0]["args"], serde_json::json!(["/bin/sh", "-c", script]));
    assert!(summary["rows"]["process_exec"].as_u64().unwrap() >= 2, "{summary}");
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
    let lost = sql_json(d, "SELECT CAST(coalesce(sum(count), 0) AS BIGINT) AS n FROM podtrail_loss WHERE source IN ('kernel_ringbuf', 'kernel_map', 'kernel_skipped', 'decode')")[0]["n"].as_u64().unwrap();
    assert_eq!(lost, summary["kernel_drops"].as_u64().unwrap() + summary["decode_errors"].as_u64().unwrap(), "every drop the recorder saw is a loss row");
    // Loss is counted for all events, not per binary: with no loss the rows must be
    // exactly N; with loss, rows are short by no more than what was counted.
    assert!(rows as usize <= N, "{rows} rows for {N} spawns: invented rows");
    assert!(rows as usize + lost as usize >= N, "{rows} rows + {lost} counted loss < {N} spawns: silent loss");
    if lost == 0 {
        assert_eq!(rows as usize, N);
    }
}

/// Two pods (10.244.1.2 and 10.244.2.2) whose node DNATs the ClusterIP
/// 10.244.100.10:80 to pod B 10.244.2.2:8080 and masquerades, like kube-proxy.
fn net_lab() -> PodPair {
    let lab = PodPair::new("pt", 1, 2);
    in_ns(&lab.node, &["iptables", "-t", "nat", "-A", "PREROUTING", "-d", "10.244.100.10/32", "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", "10.244.2.2:8080"]);
    in_ns(&lab.node, &["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", &lab.node_dev_b, "-j", "MASQUERADE"]);
    lab
}

const SERVER: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.244.2.2", 8080)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
c.sendall(b"b" * 4321); c.close(); print(n, flush=True)
"#;

const CLIENT: &str = r#"
import socket
c = socket.create_connection(("10.244.100.10", 80), timeout=10)
c.sendall(b"a" * 1234); c.shutdown(socket.SHUT_WR); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
c.close(); print(n, flush=True)
"#;

#[test]
fn connect_through_dnat_records_pre_nat_source_cluster_ip_and_backend() {
    let mut rec = Recorder::start();
    let lab = net_lab();
    let (cga, cgb) = (PodCgroup::new("poda"), PodCgroup::new("podb"));
    let mut server = in_cgroup(Command::new("ip").args(["netns", "exec", &lab.b, "python3", "-c", SERVER]), &cgb)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server_out = BufReader::new(server.stdout.take().unwrap()).lines();
    assert_eq!(server_out.next().unwrap().unwrap(), "ready");
    let client = in_cgroup(Command::new("ip").args(["netns", "exec", &lab.a, "python3", "-c", CLIENT]), &cga).output().unwrap();
    assert!(client.status.success(), "client: {}", String::from_utf8_lossy(&client.stderr));
    assert_eq!(String::from_utf8_lossy(&client.stdout).trim(), "4321");
    assert_eq!(server_out.next().unwrap().unwrap(), "1234");
    assert!(server.wait().unwrap().success());
    rec.stop();
    let d = &rec.data_dir;
    let q = "SELECT event, pid, src_ip, src_port, dst_ip, dst_port, orig_dst_ip, orig_dst_port, nat_dst_ip, nat_dst_port, \
             bytes_sent, bytes_received, cgroup_id, netns, exec_id, pod_uid, initiated FROM net_conn WHERE src_ip LIKE '10.244.%' ORDER BY time";
    let rows = sql_json(d, q);
    let find = |event: &str, cg: u64| -> &serde_json::Value {
        rows.iter()
            .find(|r| r["event"] == event && r["cgroup_id"].as_u64() == Some(cg))
            .unwrap_or_else(|| panic!("no {event} row with cgroup {cg}; net_conn rows found:\n{}", serde_json::to_string_pretty(&rows).unwrap()))
    };
    let connect = find("connect", cga.id());
    assert_eq!(connect["pod_uid"], cga.uid.as_str(), "pod A's identity at event time");
    assert_eq!(connect["src_ip"], "10.244.1.2", "the pod's own pre-NAT address");
    assert_eq!((connect["dst_ip"].as_str(), connect["dst_port"].as_u64()), (Some("10.244.100.10"), Some(80)));
    assert_eq!((connect["orig_dst_ip"].as_str(), connect["orig_dst_port"].as_u64()), (Some("10.244.100.10"), Some(80)), "what the process asked for");
    assert_eq!((connect["nat_dst_ip"].as_str(), connect["nat_dst_port"].as_u64()), (Some("10.244.2.2"), Some(8080)), "the backend really reached");
    // `ip netns exec` execs in place (and python3 may be a shim that execs again):
    // the connect carries the last image that pid exec'd, in pod A's cgroup.
    let images = sql_json(d, &format!("SELECT exec_id, cgroup_id, args FROM process_exec WHERE pid = {} ORDER BY time", connect["pid"]));
    let last = images.last().unwrap_or_else(|| panic!("no exec row for the connecting pid {}", connect["pid"]));
    assert_eq!(connect["exec_id"], last["exec_id"], "connect exec_id vs the pid's images {images:?}");
    assert_eq!(last["cgroup_id"].as_u64(), Some(cga.id()));
    assert!(last["args"].to_string().contains("10.244.100.10"), "the connecting image runs the client: {last}");
    let accept = find("accept", cgb.id());
    assert_eq!(accept["pod_uid"], cgb.uid.as_str(), "the accepting socket's own pod, not the softirq's current task");
    assert_eq!((accept["src_ip"].as_str(), accept["src_port"].as_u64()), (Some("10.244.2.2"), Some(8080)));
    assert_eq!(accept["dst_ip"], "10.244.2.1", "pod B sees the masqueraded node address");
    assert_ne!(accept["netns"], connect["netns"], "each side carries its own socket's netns");
    let cclose = find("close", cga.id());
    assert_eq!((cclose["bytes_sent"].as_u64(), cclose["bytes_received"].as_u64()), (Some(1234), Some(4321)));
    assert_eq!(cclose["nat_dst_ip"], "10.244.2.2");
    let sclose = find("close", cgb.id());
    assert_eq!((sclose["bytes_sent"].as_u64(), sclose["bytes_received"].as_u64()), (Some(4321), Some(1234)));
    // Which side began it, on each side's rows (the OCSF export's source).
    let begun: Vec<_> = [&connect, &cclose, &accept, &sclose].iter().map(|r| r["initiated"].clone()).collect();
    assert_eq!(begun, ["local", "local", "remote", "remote"], "connect, its close, accept, its close");
    drop(lab);
}

/// A network namespace of its own (a test pod's), with only loopback up;
/// deleted on drop, also when the test fails.
struct PodNetns(String);

impl PodNetns {
    fn new(tag: &str) -> PodNetns {
        let name = format!("pt{}-{tag}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = PodNetns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's inode number, as rows carry it in `netns`.
    fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.0)).unwrap().ino()
    }
}

impl Drop for PodNetns {
    fn drop(&mut self) {
        if let Err(e) = Command::new("ip").args(["netns", "del", &self.0]).status() {
            eprintln!("cleanup: ip netns del {}: {e}", self.0);
        }
    }
}

/// In a pod: a TCP listener, a bound UDP socket, a raw ICMP socket and a packet
/// socket; a second process connects to the listener, which accepts; then
/// everything closes. Prints the server's pid and the client's.
const LISTENER: &str = r#"
import os, socket, subprocess, sys
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 8443)); t.listen(4)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5353))
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
client = subprocess.Popen([sys.executable, "-c", "import socket; c = socket.create_connection(('127.0.0.1', 8443)); c.sendall(b'x'); c.recv(1); c.close()"])
c, _ = t.accept(); c.recv(1); c.close(); client.wait()
r.close(); p.close(); u.close(); t.close()
print(os.getpid(), client.pid, flush=True)
"#;

#[test]
fn listeners_udp_binds_and_raw_sockets_in_a_pod_each_give_a_row_and_accepts_carry_the_listeners_process() {
    let mut rec = Recorder::start();
    let ns = PodNetns::new("lsn");
    let cg = PodCgroup::new("lsn");
    let out = in_cgroup(Command::new("ip").args(["netns", "exec", &ns.0, "python3", "-c", LISTENER]), &cg).output().unwrap();
    assert!(out.status.success(), "the pod's script: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (server, client) = text.trim().split_once(' ').unwrap();
    rec.stop();
    let d = &rec.data_dir;
    let netns = ns.inode();
    let images = sql_json(d, &format!("SELECT exec_id FROM process_exec WHERE pid = {server} ORDER BY time"));
    let server_image = images.last().unwrap_or_else(|| panic!("no exec row for the server pid {server}"))["exec_id"].clone();
    let listen = sql_json(
        d,
        &format!("SELECT event, pid, comm, exec_id, protocol, family, ip, port, netns, socket_cookie, pod_uid FROM net_listen WHERE cgroup_id = {} ORDER BY time", cg.id()),
    );
    let pick = |r: &serde_json::Value| (r["event"].as_str().unwrap().to_string(), r["protocol"].as_str().unwrap().to_string(), r["ip"].as_str().unwrap().to_string(), r["port"].as_u64().unwrap());
    let got: Vec<_> = listen.iter().map(pick).collect();
    let want = |e: &str, p: &str, port: u64| (e.to_string(), p.to_string(), "0.0.0.0".to_string(), port);
    assert_eq!(got, vec![want("listen", "tcp", 8443), want("bind", "udp", 5353), want("unbind", "udp", 5353), want("unlisten", "tcp", 8443)], "net_listen rows: {listen:#?}");
    for r in &listen {
        assert_eq!((r["pid"].to_string(), r["comm"].as_str()), (server.to_string(), Some("python3")), "each row's process is the server: {r}");
        assert_eq!(r["exec_id"], server_image, "{r}");
        assert_eq!(r["pod_uid"], cg.uid.as_str(), "{r}");
        assert_eq!(r["family"], "ipv4", "{r}");
        if r["protocol"] == "tcp" {
            assert_eq!(r["netns"].as_u64(), Some(netns), "a TCP listener carries its namespace: {r}");
        } else {
            assert!(r["netns"].is_null(), "the UDP bind hook does not expose the namespace: {r}");
        }
    }
    let (bind, unbind) = (&listen[1], &listen[2]);
    assert!(bind["socket_cookie"].as_u64().is_some_and(|c| c != 0) && bind["socket_cookie"] == unbind["socket_cookie"], "bind and unbind join on the cookie: {bind} {unbind}");
    let conns = sql_json(d, &format!("SELECT event, pid, comm, exec_id, src_port, dst_port FROM net_conn WHERE cgroup_id = {} ORDER BY time", cg.id()));
    let server_side: Vec<_> = conns.iter().filter(|r| r["src_port"] == 8443).collect();
    let events: Vec<&str> = server_side.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["accept", "close"], "the server side of the connection: {conns:#?}");
    for r in server_side {
        assert_eq!((r["pid"].to_string(), r["comm"].as_str()), (server.to_string(), Some("python3")), "the accepted connection carries the listener's process: {r}");
        assert_eq!(r["exec_id"], server_image, "{r}");
    }
    let connect = conns.iter().find(|r| r["event"] == "connect" && r["dst_port"] == 8443).unwrap_or_else(|| panic!("no connect row: {conns:#?}"));
    assert_eq!(connect["pid"].to_string(), client, "the connecting side is the client process");
    let raw = sql_json(d, &format!("SELECT pid, operation, result, error, exec_id FROM privilege WHERE kind = 'socket' AND cgroup_id = {} ORDER BY time", cg.id()));
    let ops: Vec<&str> = raw.iter().map(|r| r["operation"].as_str().unwrap()).collect();
    assert_eq!(ops, ["AF_INET SOCK_RAW protocol 0x0001", "AF_PACKET SOCK_RAW protocol 0x0300"], "only the raw and packet sockets, not the TCP and UDP ones: {raw:#?}");
    for r in &raw {
        assert_eq!(r["pid"].to_string(), server, "{r}");
        assert!(r["result"].as_i64().is_some_and(|fd| fd >= 0) && r["error"].is_null(), "root may open them: {r}");
    }
}

/// A server in a pod that listens before the recorder starts, then accepts
/// one connection once told to (a line on stdin), and prints its pid.
const OLD_LISTENER: &str = r#"
import os, socket, sys
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", 8444)); t.listen(4); print("ready", flush=True)
sys.stdin.readline()
c, _ = t.accept(); c.recv(1); c.close(); t.close(); print(os.getpid(), flush=True)
"#;

#[test]
fn a_listener_older_than_the_recorder_gives_its_accepts_its_process() {
    let ns = PodNetns::new("old");
    let cg = PodCgroup::new("old");
    let mut server = Spawned(in_cgroup(Command::new("ip").args(["netns", "exec", &ns.0, "python3", "-c", OLD_LISTENER]), &cg).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap());
    let mut out = BufReader::new(server.0.stdout.take().unwrap()).lines();
    assert_eq!(out.next().unwrap().unwrap(), "ready");
    let mut rec = Recorder::start();
    use std::io::Write;
    server.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut client = Command::new("ip");
    client.args(["netns", "exec", &ns.0, "python3", "-c", "import socket; c = socket.create_connection(('127.0.0.1', 8444)); c.sendall(b'x'); c.recv(1); c.close()"]);
    assert!(in_cgroup(&mut client, &cg).status().unwrap().success());
    let server_pid = out.next().unwrap().unwrap();
    rec.stop();
    let rows = sql_json(&rec.data_dir, &format!("SELECT event, pid, comm, exec_id FROM net_conn WHERE cgroup_id = {} AND src_port = 8444 ORDER BY time", cg.id()));
    let events: Vec<(&str, String, &str)> = rows.iter().map(|r| (r["event"].as_str().unwrap(), r["pid"].to_string(), r["comm"].as_str().unwrap_or("(null)"))).collect();
    assert_eq!(events, [("accept", server_pid.clone(), "python3"), ("close", server_pid, "python3")], "the accepting side carries the process found listening at start: {rows:#?}");
    assert!(rows.iter().all(|r| r["exec_id"].as_u64().is_some()), "and its image from the process table: {rows:#?}");
}

const FORKER: &str = r#"
import os, socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
pid = os.fork()
if pid == 0:
    socket.create_connection(s.getsockname()).close(); os._exit(0)
s.accept()[0].close(); os.waitpid(pid, 0); print(os.getpid(), pid, flush=True)
"#;

#[test]
fn a_forked_child_that_never_execs_connects_as_its_parents_program() {
    let mut rec = Recorder::start();
    let out = Command::new("python3").args(["-c", FORKER]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (parent, child) = text.trim().split_once(' ').unwrap();
    rec.stop();
    let d = &rec.data_dir;
    let conn = sql_json(d, &format!("SELECT exec_id FROM net_conn WHERE event = 'connect' AND pid = {child}"));
    assert_eq!(conn.len(), 1, "the child's connect: {conn:?}");
    let images = sql_json(d, &format!("SELECT exec_id, binary FROM process_exec WHERE pid = {parent} ORDER BY time"));
    let last = images.last().unwrap_or_else(|| panic!("no exec row for the parent {parent}"));
    assert_eq!(conn[0]["exec_id"], last["exec_id"], "the child (pid {child}) ran the parent's program {last}");
    let exits = sql_json(d, &format!("SELECT exec_id FROM process_exit WHERE pid = {child}"));
    assert_eq!(exits, vec![serde_json::json!({"exec_id": last["exec_id"]})], "the child's exit names the image it ran");
}

#[test]
fn without_root_podtraild_says_what_it_needs() {
    require_privileges(); // to drop them: setpriv needs root
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let dir = tmp.path().join("data");
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin("podtraild").to_str().unwrap(), "--data-dir", dir.to_str().unwrap(), "run"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(last.contains("must run as root") && last.contains("uid 65534"), "{err}");
    assert!(!dir.exists(), "nothing is created before the privilege check");
}

#[test]
fn metrics_endpoint_counts_rows_on_loopback() {
    let mut rec = Recorder::start_with(&["--metrics-addr", "127.0.0.1:0"]);
    // The recorder mounts tracefs and bpffs when they are missing (a fresh node).
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for fs in ["tracefs", "bpf"] {
        assert!(info.lines().any(|l| l.split_once(" - ").is_some_and(|(_, post)| post.starts_with(&format!("{fs} ")))), "no {fs} mount after podtraild started:\n{}", rec.log);
    }
    let addr = rec
        .log
        .lines()
        .find_map(|l| l.split("metrics.addr=").nth(1))
        .map(|a| a.split_whitespace().next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{}", rec.log));
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let (_, status) = sh("true");
    assert!(status.success());
    let get = || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        c.read_to_string(&mut body).unwrap();
        body
    };
    let value = |body: &str, name: &str| -> u64 {
        body.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or_else(|| panic!("{name} not in:\n{body}"))
    };
    // Rows are handed to the store about once a second.
    let started = std::time::Instant::now();
    let mut body = get();
    while value(&body, "podtrail_rows_total{table=\"process_exec\"}") == 0 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(200));
        body = get();
    }
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(value(&body, "podtrail_rows_total{table=\"process_exec\"}") > 0, "{body}");
    assert!(value(&body, "podtrail_process_resident_memory_bytes") > 1 << 20, "{body}");
    assert_eq!(value(&body, "podtrail_dropped_total{source=\"kernel\"}"), 0);
    // One fill gauge per kernel ring buffer, a fraction of its size.
    for object in ["process.bpf.o", "net.bpf.o", "privilege.bpf.o"] {
        for gauge in ["podtrail_ringbuf_fill_ratio", "podtrail_ringbuf_fill_peak_ratio"] {
            let name = format!("{gauge}{{object=\"{object}\"}}");
            let v: f64 = body.lines().find(|l| l.starts_with(&name)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or_else(|| panic!("{name} not in:\n{body}"));
            assert!((0.0..=1.0).contains(&v), "{name} = {v}");
        }
    }
    let summary = rec.stop();
    assert!(summary["rows"]["process_exec"].as_u64().unwrap() >= value(&body, "podtrail_rows_total{table=\"process_exec\"}"));
}
