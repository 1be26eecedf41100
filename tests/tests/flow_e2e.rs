//! Privileged end-to-end tests of UDP and ICMP flows (`net_flow`): a UDP
//! exchange through a ClusterIP (iptables DNAT in a "node" namespace, as
//! kube-proxy does) and ICMP echoes from a raw and a ping socket, each counted
//! exactly on both sides; and a UDP flood of at least 100,000 datagrams/s for
//! 10 s, which gives a few rows per flow and accounts for every datagram.
//! Only 10.244.0.0/16 inside namespaces the tests create; all of it goes with
//! the namespaces on drop.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use podtrail_tests::privileged::{PodCgroup, PodPair, Recorder, Spawned, in_cgroup, in_ns};
use podtrail_tests::sql_json;

/// The server pod (`b`, 10.244.22.2): answers each UDP datagram on :9999 with
/// its first 10 bytes until 3 s pass without one; prints its pid when ready.
const UDP_SERVER: &str = r#"
import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.244.22.2", 9999)); s.settimeout(3)
print(os.getpid(), flush=True)
try:
    while True:
        d, a = s.recvfrom(65535); s.sendto(d[:10], a)
except socket.timeout:
    pass
"#;

/// The client pod (`a`, 10.244.21.2): five datagrams of 100..104 bytes to the
/// ClusterIP, each answered; then three echo requests (20..22 bytes of data)
/// to the server pod from a raw ICMP socket and three from a ping socket
/// (ping_group_range is set in the pod's own namespace). Prints its pid.
const CLIENT: &str = r#"
import os, socket, struct
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
for i in range(5):
    u.sendto(b"u" * (100 + i), ("10.244.100.77", 9999)); assert len(u.recv(100)) == 10
u.close()
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
for kind in (socket.SOCK_RAW, socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP); s.settimeout(5)
    for seq in range(3):
        data = b"p" * (20 + seq); data += b"\0" * (len(data) % 2)
        h = struct.pack("!BBHHH", 8, 0, 0, 0x1234, seq)
        h = struct.pack("!BBHHH", 8, 0, csum(h + data), 0x1234, seq)
        s.sendto(h + data, ("10.244.22.2", 0))
        while True:
            d = s.recv(2000)
            if kind == socket.SOCK_RAW:
                d = d[(d[0] & 0xf) * 4:]
            if d[0] == 0:
                break
    s.close()
print(os.getpid(), flush=True)
"#;

#[test]
fn a_udp_exchange_through_a_cluster_ip_and_icmp_echoes_give_flow_rows_with_exact_counts_each_way() {
    let mut rec = Recorder::start();
    let lab = PodPair::new("pf", 21, 22);
    in_ns(&lab.node, &["iptables", "-t", "nat", "-A", "PREROUTING", "-d", "10.244.100.77/32", "-p", "udp", "--dport", "9999", "-j", "DNAT", "--to-destination", "10.244.22.2:9999"]);
    in_ns(&lab.a, &["sysctl", "-qw", "net.ipv4.ping_group_range=0 0"]);
    let (cgc, cgs) = (PodCgroup::new("flowc"), PodCgroup::new("flows"));
    let mut server = Spawned(in_cgroup(Command::new("ip").args(["netns", "exec", &lab.b, "python3", "-c", UDP_SERVER]), &cgs).stdout(Stdio::piped()).spawn().unwrap());
    let server_pid: u64 = BufReader::new(server.0.stdout.take().unwrap()).lines().next().unwrap().unwrap().trim().parse().unwrap();
    let out = in_cgroup(Command::new("ip").args(["netns", "exec", &lab.a, "python3", "-c", CLIENT]), &cgc).output().unwrap();
    assert!(out.status.success(), "the client pod's script: {}", String::from_utf8_lossy(&out.stderr));
    let client_pid: u64 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
    // The server ends 3 s after its last datagram; its socket is then released.
    server.0.wait().unwrap();
    rec.stop();
    let d = &rec.data_dir;
    let cols = "protocol, pid, comm, exec_id, initiated, src_ip, src_port, dst_ip, dst_port, nat_dst_ip, nat_dst_port, \
                CAST(sum(packets_out) AS BIGINT) AS po, CAST(sum(bytes_out) AS BIGINT) AS bo, CAST(sum(packets_in) AS BIGINT) AS pi, CAST(sum(bytes_in) AS BIGINT) AS bi, \
                max(icmp_types_out) AS t_out, max(icmp_types_in) AS t_in, pod_uid, count(*) AS rows";
    let group = "protocol, pid, comm, exec_id, initiated, src_ip, src_port, dst_ip, dst_port, nat_dst_ip, nat_dst_port, pod_uid, socket_cookie";
    let client = sql_json(d, &format!("SELECT {cols} FROM net_flow WHERE cgroup_id = {} GROUP BY {group} ORDER BY protocol DESC, min(time)", cgc.id()));
    let all = serde_json::to_string_pretty(&client).unwrap();
    assert_eq!(client.len(), 3, "one UDP flow and two ICMP flows (raw and ping socket): {all}");
    let udp = &client[0];
    assert_eq!(udp["protocol"], "udp", "{all}");
    assert_eq!((udp["po"].as_u64(), udp["bo"].as_u64(), udp["pi"].as_u64(), udp["bi"].as_u64()), (Some(5), Some(510), Some(5), Some(50)), "exact counts each way: {udp}");
    assert_eq!((udp["dst_ip"].as_str(), udp["dst_port"].as_u64()), (Some("10.244.100.77"), Some(9999)), "the ClusterIP as the pod asked: {udp}");
    assert_eq!((udp["nat_dst_ip"].as_str(), udp["nat_dst_port"].as_u64()), (Some("10.244.22.2"), Some(9999)), "the backend reached: {udp}");
    assert_eq!((udp["src_ip"].as_str(), udp["initiated"].as_str()), (Some("10.244.21.2"), Some("local")), "{udp}");
    assert_eq!((udp["pid"].as_u64(), udp["comm"].as_str()), (Some(client_pid), Some("python3")), "{udp}");
    assert!(udp["exec_id"].as_u64().is_some(), "{udp}");
    assert_eq!(udp["pod_uid"], cgc.uid.as_str(), "{udp}");
    for icmp in &client[1..] {
        assert_eq!((icmp["protocol"].as_str(), icmp["dst_ip"].as_str(), icmp["dst_port"].as_u64()), (Some("icmp"), Some("10.244.22.2"), Some(0)), "{all}");
        // 8-byte header + 20, 22 (21 padded to even) and 22 bytes of data.
        assert_eq!((icmp["po"].as_u64(), icmp["bo"].as_u64(), icmp["pi"].as_u64(), icmp["bi"].as_u64()), (Some(3), Some(88), Some(3), Some(88)), "exact counts each way: {icmp}");
        assert_eq!((icmp["t_out"].as_str(), icmp["t_in"].as_str()), (Some("echo_request"), Some("echo_reply")), "{icmp}");
        assert_eq!(icmp["pid"].as_u64(), Some(client_pid), "{icmp}");
        assert_eq!(icmp["pod_uid"], cgc.uid.as_str(), "{icmp}");
    }
    // The server's side of the UDP flow: the client as its packets name it,
    // started by the client; the server pod's kernel answered the echoes
    // itself (no process's flow).
    let srv = sql_json(d, &format!("SELECT {cols} FROM net_flow WHERE cgroup_id = {} GROUP BY {group}", cgs.id()));
    assert_eq!(srv.len(), 1, "{srv:#?}");
    let s = &srv[0];
    assert_eq!((s["protocol"].as_str(), s["initiated"].as_str(), s["dst_ip"].as_str(), s["src_port"].as_u64()), (Some("udp"), Some("remote"), Some("10.244.21.2"), Some(9999)), "{s}");
    assert_eq!((s["po"].as_u64(), s["bo"].as_u64(), s["pi"].as_u64(), s["bi"].as_u64()), (Some(5), Some(50), Some(5), Some(510)), "{s}");
    assert_eq!((s["pid"].as_u64(), s["pod_uid"].as_str()), (Some(server_pid), Some(cgs.uid.as_str())), "{s}");
    let loss = sql_json(d, "SELECT count(*) AS n FROM podtrail_loss WHERE table_name = 'net_flow'");
    assert_eq!(loss[0]["n"].as_u64(), Some(0), "nothing lost: {loss:?}");
    // The client pod's timeline shows its flows.
    let tl = podtrail_tests::run_ok("podtrail", &["--data-dir", d.to_str().unwrap(), "timeline", "--pod", &cgc.uid]);
    let want = format!("udp 10.244.21.2:{} -> 10.244.100.77:9999 (reached 10.244.22.2:9999), out 5 pkt 510 B, in 5 pkt 50 B by python3", udp["src_port"]);
    assert!(tl.contains(&want), "timeline lacks {want:?}:\n{tl}");
    assert!(tl.contains("icmp 10.244.21.2 -> 10.244.22.2, out 3 pkt 88 B, in 3 pkt 88 B, sent echo_request, received echo_reply by python3"), "{tl}");
    drop(lab);
}

/// The flood's receiver (pod `b`): counts datagrams on :7777 until 3 s pass
/// without one; prints "ready", then the count.
const SINK: &str = r#"
import socket
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
r.bind(("10.244.32.2", 7777)); r.settimeout(3); n = 0
print("ready", flush=True)
try:
    while True:
        r.recv(2048); n += 1
except socket.timeout:
    pass
print(n, flush=True)
"#;

/// The flood (pod `a`): 64-byte datagrams as fast as it can for 10 s; prints
/// how many it sent and in how many seconds.
const FLOOD: &str = r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(("10.244.32.2", 7777))
msg = b"x" * 64; sent = 0; t0 = time.perf_counter(); end = t0 + 10; send = s.send
while time.perf_counter() < end:
    for _ in range(1000):
        send(msg)
    sent += 1000
print(sent, time.perf_counter() - t0, flush=True)
"#;

/// `Udp: ... RcvbufErrors` of a namespace: datagrams its sockets took in but
/// could not queue (counted by the flow, not read by the application).
fn udp_rcvbuf_errors(ns: &str) -> u64 {
    let out = Command::new("ip").args(["netns", "exec", ns, "cat", "/proc/net/snmp"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors").unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

#[test]
fn a_udp_flood_of_100k_datagrams_a_second_gives_a_few_rows_per_flow_and_counts_every_datagram() {
    let mut rec = Recorder::start();
    let lab = PodPair::new("pu", 31, 32);
    let (cga, cgb) = (PodCgroup::new("floodc"), PodCgroup::new("floods"));
    let mut sink = Spawned(in_cgroup(Command::new("ip").args(["netns", "exec", &lab.b, "python3", "-c", SINK]), &cgb).stdout(Stdio::piped()).spawn().unwrap());
    let mut lines = BufReader::new(sink.0.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let out = in_cgroup(Command::new("ip").args(["netns", "exec", &lab.a, "python3", "-c", FLOOD]), &cga).output().unwrap();
    assert!(out.status.success(), "the flood: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut f = text.split_whitespace();
    let (sent, secs): (u64, f64) = (f.next().unwrap().parse().unwrap(), f.next().unwrap().parse().unwrap());
    let rate = sent as f64 / secs;
    assert!(rate >= 100_000.0, "the flood must reach 100,000 datagrams/s to test anything: {sent} in {secs:.1} s ({rate:.0}/s)");
    let received: u64 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    let queue_full = udp_rcvbuf_errors(&lab.b);
    assert!(rec.alive(), "{}", rec.log_tail(20));
    rec.stop();
    let d = &rec.data_dir;
    let per_flow = |cg: u64| {
        sql_json(
            d,
            &format!(
                "SELECT count(*) AS rows, CAST(sum(packets_out) AS BIGINT) AS po, CAST(sum(bytes_out) AS BIGINT) AS bo, CAST(sum(packets_in) AS BIGINT) AS pi, CAST(sum(bytes_in) AS BIGINT) AS bi \
                 FROM net_flow WHERE cgroup_id = {cg} AND protocol = 'udp' GROUP BY socket_cookie, dst_ip, dst_port"
            ),
        )
    };
    let (tx, rx) = (per_flow(cga.id()), per_flow(cgb.id()));
    assert_eq!((tx.len(), rx.len()), (1, 1), "one flow each side: {tx:?} {rx:?}");
    // Read every 10 s and at the stop: a 10 s flood is at most 3 reads' rows.
    for f in [&tx[0], &rx[0]] {
        assert!(f["rows"].as_u64().is_some_and(|n| (1..=3).contains(&n)), "a bounded number of rows: {f}");
    }
    assert_eq!((tx[0]["po"].as_u64(), tx[0]["bo"].as_u64()), (Some(sent), Some(sent * 64)), "every datagram sent is counted: {}", tx[0]);
    // The receiver's socket counted what it read and what its full queue dropped.
    let got = received + queue_full;
    assert_eq!((rx[0]["pi"].as_u64(), rx[0]["bi"].as_u64()), (Some(got), Some(got * 64)), "read {received} + {queue_full} dropped at the full queue; sent {sent}: {}", rx[0]);
    let loss = sql_json(d, "SELECT count(*) AS n FROM podtrail_loss WHERE table_name = 'net_flow'");
    assert_eq!(loss[0]["n"].as_u64(), Some(0), "nothing lost: {loss:?}");
    eprintln!("flood: {sent} datagrams in {secs:.1} s ({rate:.0}/s); received {received}, queue drops {queue_full}; rows {} + {}", tx[0]["rows"], rx[0]["rows"]);
    drop(sink);
    drop(lab);
}

/// A pod (`a`) sends 10 datagrams to each of 40 ports of pod `b`, one socket
/// per port, with nothing listening.
const SPRAY: &str = r#"
import socket
for port in range(20000, 20040):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(10):
        s.sendto(b"z" * 32, ("10.244.42.2", port))
    s.close()
"#;

#[test]
fn flows_beyond_a_full_flow_map_are_counted_as_loss_packet_by_packet() {
    // A flow map of 16 entries (tests only), so the spray's 40 flows cannot
    // all be tracked (other sockets of the host, and the other tests of this
    // file running meanwhile, may take some or all of the 16 too).
    let mut rec = Recorder::start_with_env(&[], &[(podtrail_recorder::probes::MAP_ENTRIES_ENV, "flows=16")]);
    let lab = PodPair::new("pm", 41, 42);
    let cg = PodCgroup::new("flowfull");
    let out = in_cgroup(Command::new("ip").args(["netns", "exec", &lab.a, "python3", "-c", SPRAY]), &cg).output().unwrap();
    assert!(out.status.success(), "the spray: {}", String::from_utf8_lossy(&out.stderr));
    assert!(rec.alive(), "{}", rec.log_tail(20));
    rec.stop();
    let d = &rec.data_dir;
    let stored = podtrail_tests::sql_count(d, &format!("SELECT CAST(coalesce(sum(packets_out), 0) AS BIGINT) FROM net_flow WHERE cgroup_id = {}", cg.id()));
    let lost = podtrail_tests::sql_count(
        d,
        &format!("SELECT CAST(coalesce(sum(count), 0) AS BIGINT) FROM podtrail_loss WHERE table_name = 'net_flow' AND source = 'kernel_map' AND pod_uid = '{}'", cg.uid),
    );
    assert!(lost >= 240, "at least 24 of the 40 flows found the map full, each datagram counted: {lost} lost, {stored} stored");
    assert_eq!(stored + lost, 400, "every datagram is a stored count or a counted loss: {stored} stored, {lost} lost");
    eprintln!("full flow map: {stored} datagrams stored, {lost} counted lost");
    drop(lab);
}
