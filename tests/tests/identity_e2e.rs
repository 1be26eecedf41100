//! Privileged end-to-end test of the identity stage with no metadata source at
//! all: pods are bare network namespaces plus kubelet-named cgroups. Pod A gets
//! 10.244.1.5 and connects out; A is deleted; pod B later gets the same address
//! and connects. The real `podtraild` records it; the real `podtrail` must answer
//! who owned the address at each time with the pod UIDs (source `observed`), stamp
//! each connection with its own pod, and show the deleted pod's timeline.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use podtrail_tests::privileged::{PodCgroup, Recorder, Spawned, in_cgroup, ip};
use podtrail_tests::{run_ok, sql_json};

/// A "node" network namespace with a TCP server on 10.244.1.1:8080 that answers
/// every connection with the byte count it read. Pods are attached and detached
/// by veth. Everything lives in namespaces this creates and goes with them.
struct Node {
    ns: String,
    server: std::process::Child,
    tag: String,
}

const SERVER: &str = r#"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.244.1.1", 8080)); s.listen(8); print("ready", flush=True)
while True:
    c, _ = s.accept(); n = 0
    while True:
        d = c.recv(65536)
        if not d: break
        n += len(d)
    c.sendall(str(n).encode()); c.close()
"#;

const CLIENT: &str = r#"
import socket, sys
c = socket.create_connection(("10.244.1.1", 8080), timeout=10)
c.sendall(b"x" * int(sys.argv[1])); c.shutdown(socket.SHUT_WR)
print(c.recv(100).decode(), flush=True); c.close()
"#;

impl Node {
    fn new() -> Node {
        // Unique per node: the tests of this file run in parallel in one process.
        static NODES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let tag = format!("pi{}n{}", std::process::id(), NODES.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let ns = format!("{tag}-node");
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &ns, "addr", "add", "10.244.1.1/24", "dev", "br0"]);
        ip(&["-n", &ns, "link", "set", "br0", "up"]);
        let mut server = Command::new("ip").args(["netns", "exec", &ns, "python3", "-c", SERVER]).stdout(Stdio::piped()).spawn().expect("server");
        let mut out = BufReader::new(server.stdout.take().unwrap()).lines();
        assert_eq!(out.next().unwrap().unwrap(), "ready");
        Node { ns, server, tag }
    }

    /// A pod network namespace with `addr`, attached to the node's bridge.
    fn attach(&self, pod: &str, addr: &str) -> String {
        let ns = format!("{}-{pod}", self.tag);
        let (v, n) = (format!("{}{pod}v", self.tag), format!("{}{pod}n", self.tag));
        ip(&["netns", "add", &ns]);
        ip(&["link", "add", &v, "netns", &ns, "type", "veth", "peer", "name", &n, "netns", &self.ns]);
        ip(&["-n", &self.ns, "link", "set", &n, "master", "br0", "up"]);
        ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", &v]);
        ip(&["-n", &ns, "link", "set", &v, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of the server this test spawned.
        unsafe { libc::kill(self.server.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.server.wait();
        if let Err(e) = Command::new("ip").args(["netns", "del", &self.ns]).status() {
            eprintln!("cleanup: ip netns del {}: {e}", self.ns);
        }
    }
}

struct PodNetns(String);

impl Drop for PodNetns {
    fn drop(&mut self) {
        if let Err(e) = Command::new("ip").args(["netns", "del", &self.0]).status() {
            eprintln!("cleanup: ip netns del {}: {e}", self.0);
        }
    }
}

/// Run the client in `netns` inside `cg`, sending `n` bytes; returns what the server counted.
fn connect_from(netns: &str, cg: &PodCgroup, n: usize) -> String {
    let out = in_cgroup(Command::new("ip").args(["netns", "exec", netns, "python3", "-c", CLIENT, &n.to_string()]), cg).output().unwrap();
    assert!(out.status.success(), "client in {netns}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn ip_reuse_without_metadata_sources_answers_with_pod_uids() {
    let mut rec = Recorder::start();
    let node = Node::new();
    // Pod A: owns 10.244.1.5, connects out, is deleted (netns and cgroups removed).
    let mut cga = PodCgroup::new("poda");
    let a_ns = PodNetns(node.attach("a", "10.244.1.5"));
    assert_eq!(connect_from(&a_ns.0, &cga, 1111), "1111");
    let uid_a = cga.uid.clone();
    drop(a_ns);
    cga.remove();
    // The recorder notices a removed pod cgroup within about a second.
    std::thread::sleep(Duration::from_millis(2500));
    // Pod B: same address, later.
    let cgb = PodCgroup::new("podb");
    let b_ns = PodNetns(node.attach("b", "10.244.1.5"));
    assert_eq!(connect_from(&b_ns.0, &cgb, 2222), "2222");
    rec.stop();
    let d = &rec.data_dir;
    let dir = d.to_str().unwrap();

    let conns = sql_json(d, "SELECT time, pod_uid, container_id, event, bytes_sent FROM net_conn WHERE src_ip = '10.244.1.5' AND event IN ('connect', 'close') ORDER BY time");
    let by = |uid: &str, event: &str| -> serde_json::Value {
        conns.iter().find(|r| r["pod_uid"] == uid && r["event"] == event).cloned().unwrap_or_else(|| panic!("no {event} row of pod {uid}; rows from 10.244.1.5:\n{conns:#?}"))
    };
    let (ca, cb) = (by(&uid_a, "connect"), by(&cgb.uid, "connect"));
    assert_eq!(ca["container_id"], cga.container_id.as_str());
    assert_eq!(cb["container_id"], cgb.container_id.as_str());
    assert_eq!(by(&uid_a, "close")["bytes_sent"], 1111);
    assert_eq!(by(&cgb.uid, "close")["bytes_sent"], 2222);
    assert_eq!(conns.len(), 4, "one connect and one close per pod: {conns:#?}");
    let (ta, tb) = (ca["time"].as_str().unwrap(), cb["time"].as_str().unwrap());

    // who_owned in SQL, at each pod's own connect time.
    for (t, uid) in [(ta, &uid_a), (tb, &cgb.uid)] {
        let owners = sql_json(d, &format!("SELECT pod_uid, source, valid_from, valid_to FROM who_owned('10.244.1.5', TIMESTAMP '{t}')"));
        assert_eq!(owners.len(), 1, "at {t}: {owners:?}");
        assert_eq!((owners[0]["pod_uid"].as_str(), owners[0]["source"].as_str()), (Some(uid.as_str()), Some("observed")), "at {t}");
    }
    // The CLI: A's interval closed when A was deleted, before B's first use.
    let answer: serde_json::Value = serde_json::from_str(&run_ok("podtrail", &["--data-dir", dir, "who-owned", "10.244.1.5", "--at", ta, "--json"])).unwrap();
    let owner = &answer["owners"][0];
    assert_eq!(owner["pod_uid"], uid_a.as_str(), "{answer:#}");
    let a_end = owner["valid_to"].as_str().unwrap_or_else(|| panic!("A is deleted: its ownership must be closed: {answer:#}"));
    assert!(a_end <= tb, "A's ownership ends ({a_end}) before B's first use ({tb})");
    // Between A's deletion and B's first use nobody owned it: say so, with both neighbours.
    let text = run_ok("podtrail", &["--data-dir", dir, "who-owned", "10.244.1.5", "--at", a_end]);
    assert!(text.contains("nobody is recorded owning") && text.contains(&uid_a) && text.contains(&cgb.uid), "{text}");

    // The deleted pod's timeline: its processes and its connection, in order.
    let tl: serde_json::Value = serde_json::from_str(&run_ok("podtrail", &["--data-dir", dir, "timeline", "--pod", &uid_a, "--json"])).unwrap();
    let events = tl["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    let pos = |k: &str| kinds.iter().position(|x| *x == k).unwrap_or_else(|| panic!("no {k} in A's timeline: {tl:#}"));
    assert!(pos("exec") < pos("connect") && pos("connect") < pos("close"), "order: {kinds:?}");
    assert!(events.iter().all(|e| e["pod_uid"] == uid_a.as_str()), "only pod A's events: {tl:#}");
    let times: Vec<&str> = events.iter().map(|e| e["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "time order: {times:?}");
    assert!(events.iter().any(|e| e["event"] == "exec" && e["detail"].as_str().unwrap().contains("python3")), "{tl:#}");

    // The identity history itself.
    let pods = sql_json(d, &format!("SELECT pod_uid, valid_to, qos_class, source FROM pods WHERE pod_uid IN ('{uid_a}', '{}') ORDER BY valid_from", cgb.uid));
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert!(pods[0]["valid_to"].is_string() && pods[1]["valid_to"].is_null(), "A ended, B still alive: {pods:?}");
    assert!(pods.iter().all(|p| p["qos_class"] == "besteffort" && p["source"] == "observed"), "{pods:?}");
    let containers = sql_json(d, &format!("SELECT container_id, runtime FROM containers WHERE pod_uid = '{uid_a}'"));
    assert_eq!(containers, vec![serde_json::json!({"container_id": cga.container_id, "runtime": "containerd"})]);
    drop(b_ns);
    drop(node);
}

/// The node-side server for the containerd pods: answers each connection with
/// the byte count of its first read.
const NODE_SERVER: &str = r#"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(8); print("ready", flush=True)
while True:
    c, _ = s.accept(); d = c.recv(65536)
    c.sendall(str(len(d)).encode()); c.close()
"#;

#[test]
fn ip_reuse_with_real_containerd_pods_carries_names_after_deletion() {
    use podtrail_tests::containerd::{Containerd, POD_IP};
    let mut ctd = Containerd::start();
    let mut rec = Recorder::start_with(&["--cri-socket", ctd.socket().to_str().unwrap()]);
    assert!(rec.log.contains("CRI metadata source connected"), "{}", rec.log);
    let mut server = Spawned(ctd.in_node(Command::new("python3").args(["-c", NODE_SERVER])).stdout(Stdio::piped()).spawn().expect("node server"));
    let mut out = BufReader::new(server.0.stdout.take().unwrap()).lines();
    assert_eq!(out.next().unwrap().unwrap(), "ready");
    let script = |msg: &str| format!("echo {msg} | nc {} 8080", podtrail_tests::containerd::GATEWAY);
    let (uid_a, uid_b) = ("0a0a0a0a-1111-4111-8111-0000000000a1", "0b0b0b0b-2222-4222-8222-0000000000b2");
    let (sa, ca, ip_a) = ctd.run_pod("web-a", "shop", uid_a, &script("from-a"));
    assert_eq!(ip_a, POD_IP);
    assert_eq!(ctd.wait_exit(&ca), 0, "pod A's client");
    ctd.delete_pod(&sa);
    // The recorder polls the runtime every 2 s: let it see A stop.
    std::thread::sleep(Duration::from_millis(2500));
    let (sb, cb, ip_b) = ctd.run_pod("web-b", "shop", uid_b, &script("from-b"));
    assert_eq!(ip_b, POD_IP, "the CNI range holds one address: B reuses A's");
    assert_eq!(ctd.wait_exit(&cb), 0, "pod B's client");
    std::thread::sleep(Duration::from_millis(1500));
    rec.stop();
    drop(server);
    ctd.delete_pod(&sb);
    let d = &rec.data_dir;
    let dir = d.to_str().unwrap();

    let conns = sql_json(d, &format!("SELECT time, pod_uid, pod_name, pod_namespace, container_id FROM net_conn WHERE src_ip = '{POD_IP}' AND event = 'connect' ORDER BY time"));
    assert_eq!(conns.len(), 2, "one connect per pod: {conns:#?}");
    assert_eq!((conns[0]["pod_uid"].as_str(), conns[0]["pod_name"].as_str(), conns[0]["pod_namespace"].as_str()), (Some(uid_a), Some("web-a"), Some("shop")), "{conns:#?}");
    assert_eq!((conns[1]["pod_uid"].as_str(), conns[1]["pod_name"].as_str()), (Some(uid_b), Some("web-b")), "{conns:#?}");
    assert_eq!(conns[0]["container_id"], ca.as_str());
    for (row, uid, name) in [(&conns[0], uid_a, "web-a"), (&conns[1], uid_b, "web-b")] {
        let t = row["time"].as_str().unwrap();
        let owners = sql_json(d, &format!("SELECT pod_uid, pod_name, source FROM who_owned('{POD_IP}', TIMESTAMP '{t}') ORDER BY source"));
        assert!(!owners.is_empty() && owners.iter().all(|o| o["pod_uid"] == uid && o["pod_name"] == name), "who_owned at {t}: {owners:#?}");
        assert!(owners.iter().any(|o| o["source"] == "cri"), "the runtime's own record is among the answers: {owners:#?}");
    }
    let text = run_ok("podtrail", &["--data-dir", dir, "who-owned", POD_IP, "--at", conns[0]["time"].as_str().unwrap()]);
    assert!(text.contains("pod shop/web-a"), "{text}");
    let pods = sql_json(d, &format!("SELECT pod_name, valid_to, labels FROM pods WHERE source = 'cri' AND pod_uid = '{uid_a}'"));
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert!(pods[0]["valid_to"].is_string(), "A was deleted: {pods:?}");
    assert_eq!(pods[0]["labels"], r#"{"app":"web-a"}"#);
    let containers = sql_json(d, &format!("SELECT image, container_name, runtime FROM containers WHERE source = 'cri' AND container_id = '{ca}'"));
    assert_eq!(containers, vec![serde_json::json!({"image": "podtrail.test/busybox:1", "container_name": "app", "runtime": "containerd"})]);
    // The deleted pod's timeline, by name.
    let tl = run_ok("podtrail", &["--data-dir", dir, "timeline", "--pod", "web-a", "--namespace", "shop"]);
    assert!(tl.contains("pod shop/web-a") && tl.contains("connect") && tl.contains("exec"), "{tl}");
    drop(ctd);
}

/// A CRI socket that accepts connections and never answers (a hung runtime).
const HUNG_RUNTIME: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(16); print("ready", flush=True)
held = []
while True:
    c, _ = s.accept(); held.append(c)
"#;

#[test]
fn a_hung_cri_runtime_never_stops_recording() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("hung.sock");
    let mut hung = Spawned(Command::new("python3").args(["-c", HUNG_RUNTIME, sock.to_str().unwrap()]).stdout(Stdio::piped()).spawn().unwrap());
    let mut out = BufReader::new(hung.0.stdout.take().unwrap()).lines();
    assert_eq!(out.next().unwrap().unwrap(), "ready");
    let mut rec = Recorder::start_with(&["--cri-socket", sock.to_str().unwrap()]);
    assert!(rec.log.contains("recording without CRI pod names"), "the start says names are missing and why:\n{}", rec.log);
    let cg = PodCgroup::new("hung");
    let marker = tmp.path().join("pt-hung-marker");
    std::fs::copy("/bin/true", &marker).unwrap();
    let st = Command::new("/bin/sh").args(["-c", &format!("echo $$ > {}/cgroup.procs && {} && true", cg.path().display(), marker.display())]).status().unwrap();
    assert!(st.success());
    let t0 = std::time::Instant::now();
    let summary = rec.stop();
    assert!(t0.elapsed() < Duration::from_secs(10), "stopping took {:?}", t0.elapsed());
    let rows = sql_json(&rec.data_dir, &format!("SELECT pod_uid, pod_name FROM process_exec WHERE binary = '{}'", marker.display()));
    assert_eq!(rows, vec![serde_json::json!({"pod_uid": cg.uid})], "recorded, with the UID from the cgroup path and no name: {summary}");
    drop(hung);
}

#[test]
fn ip_reuse_with_the_kubernetes_api_names_pods_and_keeps_their_owner_after_deletion() {
    use podtrail_tests::kmock::{KubeApi, running_pod};
    // 10.244.1.7: not the address of the test without metadata sources, which
    // may run at the same time (each recorder sees every pod on the machine).
    let mut api = KubeApi::start();
    // Through a kubeconfig, as outside a cluster (the URL form is in the next test).
    let kc_dir = tempfile::tempdir().unwrap();
    let kubeconfig = kc_dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let mut rec = Recorder::start_with(&["--no-cri", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    assert!(rec.log.contains("Kubernetes API metadata source"), "{}", rec.log);
    let node = Node::new();
    // Pod A: in the API with its cgroup's UID and container id, owns 10.244.1.7.
    let mut cga = PodCgroup::new("kubea");
    api.create_pod(running_pod("web-a", "shop", &cga.uid, &cga.container_id, "10.244.1.7"));
    let a_ns = PodNetns(node.attach("a", "10.244.1.7"));
    assert_eq!(connect_from(&a_ns.0, &cga, 1111), "1111");
    let uid_a = cga.uid.clone();
    // Deleted from the API, then its sandbox goes.
    api.delete_pod("shop", "web-a");
    drop(a_ns);
    cga.remove();
    std::thread::sleep(Duration::from_millis(2500));
    let cgb = PodCgroup::new("kubeb");
    api.create_pod(running_pod("web-b", "shop", &cgb.uid, &cgb.container_id, "10.244.1.7"));
    let b_ns = PodNetns(node.attach("b", "10.244.1.7"));
    assert_eq!(connect_from(&b_ns.0, &cgb, 2222), "2222");
    std::thread::sleep(Duration::from_millis(300));
    let summary = rec.stop();
    assert!(summary["kube_updates"].as_u64() >= Some(3) && summary["kube_errors"] == 0, "ADDED A, DELETED A, ADDED B at least, no failure: {summary}");
    let d = &rec.data_dir;
    let dir = d.to_str().unwrap();

    let conns = sql_json(d, "SELECT time, pod_uid, pod_name, pod_namespace FROM net_conn WHERE src_ip = '10.244.1.7' AND event = 'connect' ORDER BY time");
    assert_eq!(conns.len(), 2, "one connect per pod: {conns:#?}");
    for (row, uid, name) in [(&conns[0], &uid_a, "web-a"), (&conns[1], &cgb.uid, "web-b")] {
        assert_eq!((row["pod_uid"].as_str(), row["pod_name"].as_str(), row["pod_namespace"].as_str()), (Some(uid.as_str()), Some(name), Some("shop")), "{conns:#?}");
        let t = row["time"].as_str().unwrap();
        let owners = sql_json(d, &format!("SELECT pod_uid, pod_name, source FROM who_owned('10.244.1.7', TIMESTAMP '{t}') ORDER BY source"));
        assert!(!owners.is_empty() && owners.iter().all(|o| o["pod_uid"] == uid.as_str() && o["pod_name"] == name), "who_owned at {t}: {owners:#?}");
        assert!(owners.iter().any(|o| o["source"] == "kubernetes"), "the API's record is among the answers: {owners:#?}");
    }
    // A's API interval ended when it was deleted, before B's first use.
    let tb = conns[1]["time"].as_str().unwrap();
    let ips = sql_json(d, &format!("SELECT valid_to FROM ip_owners WHERE source = 'kubernetes' AND pod_uid = '{uid_a}'"));
    assert_eq!(ips.len(), 1, "{ips:?}");
    assert!(ips[0]["valid_to"].as_str().is_some_and(|end| end <= tb), "A's ownership ends before B's first use ({tb}): {ips:?}");
    let pods = sql_json(d, &format!("SELECT pod_name, owner, labels, valid_to FROM pods WHERE source = 'kubernetes' AND pod_uid = '{uid_a}'"));
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!((pods[0]["owner"].as_str(), pods[0]["labels"].as_str()), (Some("ReplicaSet/web-7d9c"), Some(r#"{"app":"web"}"#)), "{pods:?}");
    assert!(pods[0]["valid_to"].is_string(), "A was deleted: {pods:?}");
    let containers = sql_json(d, &format!("SELECT pod_uid, container_name, image, runtime FROM containers WHERE source = 'kubernetes' AND container_id = '{}'", cga.container_id));
    assert_eq!(containers, vec![serde_json::json!({"pod_uid": uid_a, "container_name": "app", "image": "podtrail.test/web:1", "runtime": "containerd"})]);
    let text = run_ok("podtrail", &["--data-dir", dir, "who-owned", "10.244.1.7", "--at", conns[0]["time"].as_str().unwrap()]);
    assert!(text.contains("pod shop/web-a"), "{text}");
    let tl = run_ok("podtrail", &["--data-dir", dir, "timeline", "--pod", "web-a", "--namespace", "shop"]);
    assert!(tl.contains("pod shop/web-a") && tl.contains("connect") && tl.contains("exec"), "{tl}");
    drop(b_ns);
    drop(node);
}

#[test]
fn an_unreachable_kubernetes_api_is_retried_and_never_stops_recording() {
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut rec = Recorder::start_with(&["--no-cri", "--kube-api", &format!("http://127.0.0.1:{port}")]);
    let cg = PodCgroup::new("kubedown");
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("pt-kube-marker");
    std::fs::copy("/bin/true", &marker).unwrap();
    let st = Command::new("/bin/sh").args(["-c", &format!("echo $$ > {}/cgroup.procs && {} && true", cg.path().display(), marker.display())]).status().unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(1500));
    let t0 = std::time::Instant::now();
    let summary = rec.stop();
    assert!(t0.elapsed() < Duration::from_secs(10), "stopping took {:?}", t0.elapsed());
    assert!(summary["kube_errors"].as_u64() >= Some(1), "the failure is counted: {summary}");
    let rows = sql_json(&rec.data_dir, &format!("SELECT pod_uid, pod_name FROM process_exec WHERE binary = '{}'", marker.display()));
    assert_eq!(rows, vec![serde_json::json!({"pod_uid": cg.uid})], "recorded, with the UID from the cgroup path and no name: {summary}");
}

#[test]
fn kubernetes_intervals_continue_across_a_restart_and_close_for_pods_deleted_meanwhile() {
    use podtrail_tests::kmock::{KubeApi, running_pod};
    let mut api = KubeApi::start();
    // Names only: these pods have no cgroups here; the API alone is the source.
    api.create_pod(running_pod("keep", "shop", "7e7e7e7e-0000-4000-8000-00000000000a", "c0ffee01", "10.244.2.10"));
    api.create_pod(running_pod("gone", "shop", "7e7e7e7e-0000-4000-8000-00000000000b", "c0ffee02", "10.244.2.11"));
    let url = api.url.clone();
    let args = ["--no-cri", "--kube-api", url.as_str()];
    let mut rec = Recorder::start_with(&args);
    std::thread::sleep(Duration::from_millis(1500));
    let first = rec.stop();
    assert!(first["kube_updates"].as_u64() >= Some(1), "{first}");
    // Deleted while no recorder ran: its intervals end at the next start.
    api.delete_pod("shop", "gone");
    let before_restart = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    rec.restart(&args);
    std::thread::sleep(Duration::from_millis(1500));
    rec.stop();
    let d = &rec.data_dir;
    let pods = sql_json(d, "SELECT pod_name, valid_to, owner FROM pods WHERE source = 'kubernetes' ORDER BY pod_name");
    assert_eq!(pods.len(), 2, "one interval per pod across both runs, none duplicated: {pods:#?}");
    assert_eq!((pods[0]["pod_name"].as_str(), pods[1]["pod_name"].as_str()), (Some("gone"), Some("keep")), "{pods:#?}");
    assert!(pods[0]["valid_to"].as_str().is_some_and(|t| t >= before_restart.as_str()), "closed at the restart that found it gone: {pods:#?}");
    assert!(pods[1]["valid_to"].is_null(), "still running: still open: {pods:#?}");
    let ips = sql_json(d, "SELECT ip, pod_name, valid_to FROM ip_owners WHERE source = 'kubernetes' ORDER BY ip");
    assert_eq!(ips.len(), 2, "{ips:#?}");
    assert!(ips[0]["pod_name"] == "keep" && ips[0]["valid_to"].is_null(), "{ips:#?}");
    assert!(ips[1]["pod_name"] == "gone" && ips[1]["valid_to"].is_string(), "{ips:#?}");
    let ctrs = sql_json(d, "SELECT container_id, valid_to FROM containers WHERE source = 'kubernetes' ORDER BY container_id");
    assert_eq!(ctrs.len(), 2, "{ctrs:#?}");
    assert!(ctrs[0]["valid_to"].is_null() && ctrs[1]["valid_to"].is_string(), "{ctrs:#?}");
}
