//! Privileged end-to-end test of DNS capture: a real resolver (dnsmasq) in a
//! test pod behind a ClusterIP (iptables DNAT in a "node" namespace, as
//! kube-proxy does), a client pod that resolves over UDP and TCP, gets an
//! NXDOMAIN, sends two concurrent queries for one name, one query nobody
//! answers and malformed packets, then connects to the answer, and over TLS
//! (openssl s_server) with a server name. Checks the `dns` rows, the
//! connections' `dst_name` and `server_name`, and the counted loss.
//! Only 10.244.0.0/16 inside namespaces the test creates; all of it goes with
//! the namespaces on drop.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use podtrail_tests::privileged::{PodCgroup, PodPair, Recorder, Spawned, in_cgroup, in_ns};
use podtrail_tests::sql_json;

/// Client pod (`a`) 10.244.11.2, resolver pod (`b`) 10.244.12.2 (dnsmasq on
/// :53, a TCP server on :8080, a TLS server on :8443), whose node DNATs the
/// kube-dns-like ClusterIP 10.244.100.53:53 (UDP and TCP) to the resolver.
fn dns_lab() -> PodPair {
    let lab = PodPair::new("pd", 11, 12);
    for proto in ["udp", "tcp"] {
        in_ns(&lab.node, &["iptables", "-t", "nat", "-A", "PREROUTING", "-d", "10.244.100.53/32", "-p", proto, "--dport", "53", "-j", "DNAT", "--to-destination", "10.244.12.2:53"]);
    }
    lab
}

fn dnsmasq() -> &'static str {
    if std::path::Path::new("/usr/sbin/dnsmasq").exists() { "/usr/sbin/dnsmasq" } else { "dnsmasq" }
}

/// The resolver pod's TCP server: accepts one connection, then exits.
const SERVER: &str = r#"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.244.12.2", 8080)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); c.recv(1); c.close()
"#;

/// The client pod: each exchange in turn; prints its pid.
const CLIENT: &str = r#"
import os, socket, struct, time
DNS = ("10.244.100.53", 53)
def query(txid, name, qtype=1):
    q = struct.pack(">HHHHHH", txid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", qtype, 1)
def rcode(answer):
    return answer[3] & 0xf
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
# UDP: an answer, then an NXDOMAIN.
u.sendto(query(0x1001, "app.podtrail.test"), DNS); a = u.recv(4096); assert rcode(a) == 0, a
u.sendto(query(0x1002, "nope.podtrail.test"), DNS); a = u.recv(4096); assert rcode(a) == 3, a
# A connected UDP socket, as glibc's resolver uses: connect(), then send().
k = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); k.settimeout(5); k.connect(DNS)
k.send(query(0x1003, "app.podtrail.test")); a = k.recv(4096); assert rcode(a) == 0, a; k.close()
# Two concurrent queries for one name, different ids.
u.sendto(query(0x2001, "twice.podtrail.test"), DNS); u.sendto(query(0x2002, "twice.podtrail.test"), DNS)
got = sorted(struct.unpack(">H", u.recv(4096)[:2])[0] for _ in range(2)); assert got == [0x2001, 0x2002], got
# TCP: length-prefixed.
t = socket.create_connection(DNS, timeout=5)
q = query(0x3001, "app.podtrail.test"); t.sendall(struct.pack(">H", len(q)) + q)
n = struct.unpack(">H", t.recv(2))[0]; a = b""
while len(a) < n: a += t.recv(n - len(a))
assert rcode(a) == 0, a; t.close()
# A resolver address nobody answers at (no route past the node).
v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v.sendto(query(0x4001, "lost.podtrail.test"), ("10.244.100.54", 53))
# Malformed: too short for a header, a name that points at itself, an
# oversized query; the resolver's answers to them (if any) are not waited for.
m = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
m.sendto(b"\x12\x34\x01", DNS)
m.sendto(struct.pack(">HHHHHH", 0x5001, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01", DNS)
m.sendto(query(0x5002, "big.podtrail.test") + b"\xff" * 1400, DNS)
time.sleep(0.5)
# Connect to the address the name resolved to.
c = socket.create_connection(("10.244.12.2", 8080), timeout=5); c.sendall(b"x"); c.close()
# TLS to the resolver pod's openssl s_server, asking for a name never resolved.
import ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(socket.create_connection(("10.244.12.2", 8443), timeout=5), server_hostname="secure.podtrail.test")
t.sendall(b"hello\n"); t.close()
print(os.getpid(), flush=True)
"#;

#[test]
fn dns_over_udp_and_tcp_through_a_cluster_ip_is_recorded_with_resolver_backend_answers_and_names_the_connection() {
    let mut rec = Recorder::start();
    let lab = dns_lab();
    let (cgc, cgr) = (PodCgroup::new("dnsc"), PodCgroup::new("dnsr"));
    let resolver = Spawned(
        in_cgroup(
            Command::new("ip").args([
                "netns",
                "exec",
                &lab.b,
                dnsmasq(),
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--user=root",
                "--pid-file=",
                "--bind-interfaces",
                "--listen-address=10.244.12.2",
                "--address=/app.podtrail.test/10.244.12.2",
                "--address=/twice.podtrail.test/10.244.12.3",
                "--address=/big.podtrail.test/10.244.12.4",
                "--local=/podtrail.test/",
            ]),
            &cgr,
        )
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let mut server = Spawned(in_cgroup(Command::new("ip").args(["netns", "exec", &lab.b, "python3", "-c", SERVER]), &cgr).stdout(Stdio::piped()).spawn().unwrap());
    // A TLS server with a throwaway self-signed certificate.
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=podtrail-test", "-days", "1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (tests/setup.sh installs it)");
    assert!(made.status.success(), "openssl req: {}", String::from_utf8_lossy(&made.stderr));
    let tls_server = Spawned(
        in_cgroup(Command::new("ip").args(["netns", "exec", &lab.b, "openssl", "s_server", "-quiet", "-naccept", "1", "-accept", "10.244.12.2:8443", "-cert"]).arg(&cert).arg("-key").arg(&key), &cgr)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut ready = BufReader::new(server.0.stdout.take().unwrap()).lines();
    assert_eq!(ready.next().unwrap().unwrap(), "ready");
    // dnsmasq and s_server bind before they answer: wait until both ports
    // are taken (at most 5 s each).
    for (kind, port) in [("SOCK_DGRAM", 53), ("SOCK_STREAM", 8443)] {
        let probe = format!("import socket; s=socket.socket(socket.AF_INET, socket.{kind}); s.bind(('10.244.12.2', {port}))");
        for i in 0.. {
            let free = Command::new("ip").args(["netns", "exec", &lab.b, "python3", "-c", &probe]).stderr(Stdio::null()).status().unwrap();
            if !free.success() || i == 50 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let out = in_cgroup(Command::new("ip").args(["netns", "exec", &lab.a, "python3", "-c", CLIENT]), &cgc).output().unwrap();
    assert!(out.status.success(), "the client pod's script: {}", String::from_utf8_lossy(&out.stderr));
    let client_pid: u64 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
    // The unanswered query becomes a row after the 10 s answer timeout.
    std::thread::sleep(std::time::Duration::from_secs(11));
    assert!(rec.alive(), "the recorder survived the malformed packets: {}", rec.log_tail(20));
    rec.stop();
    drop(server);
    drop(tls_server);
    drop(resolver);
    let d = &rec.data_dir;
    let rows = sql_json(
        d,
        &format!(
            "SELECT status, pid, comm, exec_id, transport, txid, query_name, query_type, src_ip, resolver_ip, resolver_port, answered_by_ip, answered_by_port, \
             rcode, answer_count, answers, latency_ns, parse_error, pod_uid FROM dns WHERE cgroup_id = {} ORDER BY time",
            cgc.id()
        ),
    );
    let all = serde_json::to_string_pretty(&rows).unwrap();
    let by_txid = |txid: u64| rows.iter().find(|r| r["txid"].as_u64() == Some(txid)).unwrap_or_else(|| panic!("no dns row with txid {txid:#x}; rows:\n{all}"));
    for (txid, transport) in [(0x1001, "udp"), (0x3001, "tcp")] {
        let r = by_txid(txid);
        assert_eq!((r["status"].as_str(), r["transport"].as_str()), (Some("answered"), Some(transport)), "{r}");
        assert_eq!((r["query_name"].as_str(), r["query_type"].as_str(), r["rcode"].as_str()), (Some("app.podtrail.test"), Some("A"), Some("NOERROR")), "{r}");
        assert_eq!((r["resolver_ip"].as_str(), r["resolver_port"].as_u64()), (Some("10.244.100.53"), Some(53)), "the ClusterIP as the pod asked: {r}");
        assert_eq!((r["answered_by_ip"].as_str(), r["answered_by_port"].as_u64()), (Some("10.244.12.2"), Some(53)), "the backend that answered: {r}");
        assert!(r["answers"].as_str().is_some_and(|a| a.contains("A 10.244.12.2 ttl=")), "{r}");
        assert_eq!(r["answer_count"].as_u64(), Some(1), "{r}");
        assert!(r["latency_ns"].as_u64().is_some_and(|l| l > 0), "{r}");
        assert_eq!(r["pid"].as_u64(), Some(client_pid), "the process that asked: {r}");
        assert_eq!(r["pod_uid"], cgc.uid.as_str(), "{r}");
        assert!(r["exec_id"].as_u64().is_some(), "{r}");
        assert_eq!(r["src_ip"], "10.244.11.2", "{r}");
    }
    let connected = by_txid(0x1003);
    assert_eq!((connected["status"].as_str(), connected["query_type"].as_str()), (Some("answered"), Some("A")), "{connected}");
    assert_eq!((connected["resolver_ip"].as_str(), connected["answered_by_ip"].as_str()), (Some("10.244.100.53"), Some("10.244.12.2")), "connect() then send(): {connected}");
    assert_eq!(connected["pid"].as_u64(), Some(client_pid), "{connected}");
    let nx = by_txid(0x1002);
    assert_eq!((nx["status"].as_str(), nx["rcode"].as_str(), nx["query_name"].as_str()), (Some("answered"), Some("NXDOMAIN"), Some("nope.podtrail.test")), "{nx}");
    for txid in [0x2001, 0x2002] {
        let r = by_txid(txid);
        assert_eq!(r["status"], "answered", "each concurrent query is paired with its own answer: {r}");
        assert!(r["answers"].as_str().is_some_and(|a| a.contains("10.244.12.3")), "{r}");
    }
    let lost = by_txid(0x4001);
    assert_eq!((lost["status"].as_str(), lost["resolver_ip"].as_str()), (Some("unanswered"), Some("10.244.100.54")), "{lost}");
    assert!(lost["answered_by_ip"].is_null() && lost["rcode"].is_null() && lost["latency_ns"].is_null(), "{lost}");
    let looped = by_txid(0x5001);
    assert!(looped["query_name"].is_null() && looped["parse_error"].as_str().is_some_and(|e| e.contains("does not point backwards")), "a looping name is kept with what parsed: {looped}");
    let big = by_txid(0x5002);
    assert_eq!(big["query_name"], "big.podtrail.test", "an oversized query keeps its question: {big}");
    // The 3-byte packet is no row: a counted decode loss of the dns table.
    let loss = sql_json(d, "SELECT sum(count) AS n FROM podtrail_loss WHERE source = 'decode' AND table_name = 'dns'");
    assert!(loss[0]["n"].as_u64().is_some_and(|n| n >= 1), "the too-short packet is counted: {loss:?}");
    // The connection to the answer carries the name.
    let conns = sql_json(d, &format!("SELECT event, dst_ip, dst_port, dst_name, server_name FROM net_conn WHERE cgroup_id = {} AND dst_port IN (8080, 8443) ORDER BY time", cgc.id()));
    let names: Vec<(&str, u64, &str, &str)> = conns
        .iter()
        .map(|r| (r["event"].as_str().unwrap(), r["dst_port"].as_u64().unwrap(), r["dst_name"].as_str().unwrap_or("(null)"), r["server_name"].as_str().unwrap_or("(null)")))
        .collect();
    let want = [
        ("connect", 8080, "app.podtrail.test", "(null)"),
        ("close", 8080, "app.podtrail.test", "(null)"),
        // The TLS connection: the server name its ClientHello asked for (the
        // address was resolved as app.podtrail.test, which it carries too).
        ("connect", 8443, "app.podtrail.test", "secure.podtrail.test"),
        ("close", 8443, "app.podtrail.test", "secure.podtrail.test"),
    ];
    assert_eq!(names, want, "{conns:#?}");
    // The TCP/53 connection to the ClusterIP has no name: nothing resolved it.
    let dns_conn = sql_json(d, &format!("SELECT dst_name FROM net_conn WHERE cgroup_id = {} AND event = 'connect' AND dst_port = 53", cgc.id()));
    assert!(dns_conn.len() == 1 && dns_conn[0]["dst_name"].is_null(), "{dns_conn:?}");
    drop(lab);
}
