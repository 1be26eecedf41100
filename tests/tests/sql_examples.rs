//! Every `sql-examples/*.sql` runs against the known incident history of
//! `podtrail_tests::fixture` with the real `podtrail`, and its result is checked
//! against what the story says. A new example without a check fails the test.

use std::path::{Path, PathBuf};

use podtrail_tests::fixture::{self, UID_A};
use podtrail_tests::run_ok;
use serde_json::{Value, json};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql-examples")
}

/// Selected columns of every row, for compact comparisons.
fn pick(rows: &[Value], cols: &[&str]) -> Vec<Value> {
    rows.iter().map(|r| Value::Array(cols.iter().map(|c| r[*c].clone()).collect())).collect()
}

fn check(name: &str, rows: &[Value]) {
    match name {
        "01_who_owned_ip_at_time" => {
            assert_eq!(pick(rows, &["pod_namespace", "pod_name", "pod_uid", "source"]), vec![json!(["payments", "payments-api-1", UID_A, "synthetic"])]);
            assert_eq!(rows[0]["valid_to"], "2026-11-17T14:30:00Z");
        }
        "02_everything_a_pod_executed" => assert_eq!(
            pick(rows, &["binary", "parent_binary", "uid"]),
            vec![json!(["/usr/local/bin/payments-api", null, 1000]), json!(["/bin/sh", "/usr/local/bin/payments-api", 0]), json!(["/usr/bin/curl", "/bin/sh", 0])]
        ),
        "03_connections_outside_the_cluster" => assert_eq!(
            pick(rows, &["pod_name", "dst_ip", "dst_port"]),
            vec![json!(["payments-api-1", "203.0.113.50", 443]), json!(["debug-shell", "203.0.113.9", 80]), json!(["debug-shell", "198.51.100.7", 4444])]
        ),
        "04_shells_started_in_containers" => {
            assert_eq!(pick(rows, &["pod_name", "binary", "time"]), vec![json!(["payments-api-1", "/bin/sh", "2026-11-17T14:05:00Z"]), json!(["debug-shell", "/bin/sh", "2026-11-17T14:35:00Z"])])
        }
        "05_first_time_a_binary_was_seen" => {
            assert_eq!(
                pick(rows, &["binary", "first_seen", "executions", "pods"]),
                vec![
                    json!(["/usr/bin/tcpdump", "2026-11-17T14:44:00Z", 1, 1]),
                    json!(["/usr/bin/nc", "2026-11-17T14:43:00Z", 1, 1]),
                    json!(["/tmp/xmrig", "2026-11-17T14:40:00Z", 1, 1]),
                    json!(["memfd:kworker", "2026-11-17T14:38:01Z", 1, 1])
                ]
            )
        }
        "06_service_clusterip_callers_and_backends" => assert_eq!(
            pick(rows, &["pod_name", "orig_dst_ip", "orig_dst_port", "nat_dst_ip", "nat_dst_port", "backend_namespace", "backend_pod"]),
            vec![json!(["payments-api-1", "10.96.0.20", 80, "10.244.1.8", 8080, "payments", "ledger-0"])]
        ),
        "07_pods_that_talked_to_a_deleted_pod" => assert_eq!(
            pick(rows, &["pod_name", "event", "deleted_peer", "deleted_at"]),
            vec![json!(["ledger-0", "accept", "payments-api-1", "2026-11-17T14:30:00Z"])]
        ),
        "08_loss_during_an_incident_window" => {
            assert_eq!(pick(rows, &["source", "table_name", "pod_name", "events_lost", "losses_of_unknown_size"]), vec![json!(["kernel_ringbuf", "process_exec", "debug-shell", 12, 0])])
        }
        "09_process_tree_of_a_connection" => assert_eq!(
            pick(rows, &["pod_name", "process", "parent", "grandparent"]),
            vec![json!(["payments-api-1", "/usr/bin/curl", "/bin/sh", "/usr/local/bin/payments-api"])]
        ),
        "10_privilege_escalation_attempts" => {
            assert_eq!(pick(rows, &["pod_name", "kind", "uid", "new_uid", "result", "error", "time"]), vec![json!(["payments-api-1", "setuid", 1000, 0, -1, "EPERM", "2026-11-17T14:04:00Z"])])
        }
        "11_kernel_modules_and_bpf_programs" => assert_eq!(
            pick(rows, &["pod_name", "binary", "kind", "operation", "bpf_type", "file", "result", "error"]),
            vec![
                json!(["debug-shell", "memfd:kworker", "bpf", "BPF_PROG_LOAD", "kprobe", null, 7, null]),
                json!(["debug-shell", "memfd:kworker", "finit_module", null, null, "rootkit.ko", -1, "EPERM"])
            ]
        ),
        "12_fileless_executions" => assert_eq!(
            pick(rows, &["pod_name", "binary", "parent_binary", "memfd_created", "time"]),
            vec![json!(["debug-shell", "memfd:kworker", "/bin/sh", "2026-11-17T14:38:00Z", "2026-11-17T14:38:01Z"])]
        ),
        "14_time_not_recorded" => {
            assert_eq!(pick(rows, &["run_before", "run_after", "not_recorded_from", "not_recorded_until", "seconds", "how_the_run_before_ended"]), vec![json!([1, 2, "2026-11-17T14:12:03Z", "2026-11-17T14:12:48Z", 45.0, "unclean"])])
        }
        "13_containers_that_changed_namespaces_or_mounts" => assert_eq!(
            pick(rows, &["pod_name", "kind", "what", "target", "calls", "succeeded"]),
            vec![json!(["debug-shell", "unshare", "mnt,net", null, 1, 1]), json!(["debug-shell", "mount", "tmpfs", "/mnt/x", 1, 1])]
        ),
        "15_listeners_opened_in_pods" => assert_eq!(
            pick(rows, &["pod_name", "protocol", "ip", "port", "binary", "closed", "accepted"]),
            vec![json!(["ledger-0", "tcp", "0.0.0.0", 8080, "/usr/bin/java", null, 2]), json!(["debug-shell", "tcp", "0.0.0.0", 4444, "/usr/bin/nc", null, 0])]
        ),
        "16_raw_and_packet_sockets" => assert_eq!(
            pick(rows, &["pod_name", "binary", "uid", "socket", "result", "error"]),
            vec![json!(["debug-shell", "/usr/bin/tcpdump", 1000, "AF_PACKET SOCK_RAW protocol 0x0300", -1, "EPERM"])]
        ),
        "17_names_a_pod_resolved" => assert_eq!(
            pick(rows, &["query_name", "query_type", "rcode", "queries", "answers", "asked_by"]),
            vec![
                json!(["ledger.payments.svc.cluster.local", "A", "NOERROR", 1, "ledger.payments.svc.cluster.local A 10.96.0.20 ttl=30", "/usr/bin/curl"]),
                json!(["ledger.payments.svc.cluster.local", "AAAA", "NOERROR", 1, null, "/usr/bin/curl"]),
                json!(["api.stripe.example", "A", "NOERROR", 1, "api.stripe.example A 203.0.113.50 ttl=60", "/usr/local/bin/payments-api"]),
            ]
        ),
        "18_connections_to_addresses_never_resolved" => assert_eq!(
            pick(rows, &["pod_name", "dst_ip", "dst_port", "binary"]),
            vec![json!(["debug-shell", "203.0.113.9", 80, "/usr/bin/curl"]), json!(["debug-shell", "198.51.100.7", 4444, "/tmp/xmrig"]), json!(["debug-shell", "10.244.1.8", 8080, "/bin/sh"])]
        ),
        "19_dns_exfiltration_candidates" => assert_eq!(
            pick(rows, &["pod_name", "parent_domain", "distinct_names", "longest_name", "bytes_in_names"]),
            vec![json!(["debug-shell", "exfil-c2.example", 4, 53, 212])]
        ),
        "20_pods_that_resolved_a_name" => assert_eq!(
            pick(rows, &["pod_name", "query_name", "status", "rcode", "queries"]),
            vec![json!(["debug-shell", "pool.minexmr.example", "unanswered", null, 1])]
        ),
        "21_udp_and_icmp_peers_of_pods" => assert_eq!(
            pick(rows, &["pod_name", "protocol", "peers", "packets_out", "bytes_out", "packets_in", "peers_that_answered"]),
            vec![json!(["debug-shell", "icmp", 6, 6, 384, 2, 2]), json!(["debug-shell", "udp", 1, 30, 1440, 30, 1]), json!(["payments-api-1", "udp", 1, 2, 102, 2, 1])]
        ),
        "22_persistence_and_tampering" => assert_eq!(
            pick(rows, &["pod_name", "comm", "op", "path", "open_flags"]),
            vec![
                json!(["debug-shell", "sh", "open", "/etc/cron.d/backdoor", "O_WRONLY|O_CREAT|O_TRUNC"]),
                json!(["debug-shell", "sh", "open", "/root/.bashrc", "O_WRONLY|O_CREAT|O_APPEND"]),
                json!(["debug-shell", "sh", "open", "/root/.bash_history", "O_WRONLY|O_TRUNC"])
            ]
        ),
        "23_binaries_written_then_executed" => assert_eq!(
            pick(rows, &["pod_name", "binary", "writer", "writer_connections", "writer_peer"]),
            vec![json!(["debug-shell", "/tmp/xmrig", "curl", 1, "203.0.113.9:80"])]
        ),
        "24_credentials_read_and_privilege_bits" => assert_eq!(
            pick(rows, &["pod_name", "op", "path", "mode", "xattr", "reason"]),
            vec![
                json!(["debug-shell", "read", "/etc/shadow", null, null, "read:/etc/shadow"]),
                json!(["debug-shell", "chmod", "/tmp/su2", 0o4755, null, "exec_bit,setid"]),
                json!(["debug-shell", "setxattr", "/tmp/su2", null, "security.capability", "security_xattr"])
            ]
        ),
        other => panic!("sql-examples/{other}.sql has no expected result in tests/tests/sql_examples.rs: add one"),
    }
}

#[test]
fn every_sql_example_runs_and_returns_the_known_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fixture::write(&data).expect("writing the incident fixture");
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("sql-examples/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "at least 8 examples, found {files:?}");
    for f in &files {
        let name = f.file_stem().unwrap().to_str().unwrap();
        let sql = std::fs::read_to_string(f).unwrap();
        assert!(sql.trim_start().starts_with("--"), "{name}: starts with a comment saying what it answers");
        let out = run_ok("podtrail", &["--data-dir", data.to_str().unwrap(), "sql", "--format", "json", "--file", f.to_str().unwrap()]);
        let rows: Vec<Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {out}"));
        let shown = serde_json::to_string_pretty(&rows).unwrap();
        let result = std::panic::catch_unwind(|| check(name, &rows));
        assert!(result.is_ok(), "sql-examples/{name}.sql returned:\n{shown}");
    }
}

/// `podtrail profile` over the incident history: every rule of the profile
/// (capabilities used, escalation, runAsNonRoot, by pod and by image).
#[test]
fn profiles_of_the_incident_pods() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fixture::write(&data).expect("writing the incident fixture");
    let d = data.to_str().unwrap();
    let profile = |args: &[&str]| {
        let mut a = vec!["--data-dir", d, "profile"];
        a.extend_from_slice(args);
        let yaml = run_ok("podtrail", &a);
        (podtrail_tests::yaml_to_json(&yaml), yaml)
    };
    // ledger-0: uid 1000 only, but ping gained CAP_NET_RAW from file capabilities.
    let (v, yaml) = profile(&["--pod", "ledger-0"]);
    let sc = &v["securityContext"];
    assert_eq!(sc["capabilities"]["add"], json!(["NET_RAW"]), "{yaml}");
    assert_eq!(sc["allowPrivilegeEscalation"], true, "{yaml}");
    assert_eq!(sc["runAsNonRoot"], true, "{yaml}");
    // payments-api-1: a refused setuid(0) is an attempt, not an escalation; the
    // shell ran as root; no capability was granted.
    let (v, yaml) = profile(&["--pod", "payments-api-1", "--namespace", "payments"]);
    let sc = &v["securityContext"];
    assert_eq!(sc["capabilities"]["add"], json!([]), "{yaml}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{yaml}");
    assert!(sc.get("runAsNonRoot").is_none(), "{yaml}");
    assert!(yaml.contains("#   setuid: 1 (0 succeeded)"), "the refused attempt is evidence:\n{yaml}");
    // debug-shell by its image: CAP_SYS_ADMIN, and what it did with it.
    let (v, yaml) = profile(&["--image", "registry.example/debug-shell:1"]);
    assert_eq!(v["securityContext"]["capabilities"]["add"], json!(["SYS_ADMIN"]), "{yaml}");
    for op in ["unshare mnt,net: 1 (1 succeeded)", "mount tmpfs: 1 (1 succeeded)", "finit_module rootkit.ko: 1 (0 succeeded)", "memfd_create memfd:kworker: 1 (1 succeeded)"] {
        assert!(yaml.contains(op), "lacks {op:?}:\n{yaml}");
    }
    // A window before anything happened: no evidence, nothing proposed beyond drop ALL.
    let (v, yaml) = profile(&["--pod", "debug-shell", "--until", "2026-11-17T14:00:00Z"]);
    assert_eq!(v["securityContext"]["capabilities"]["add"], json!([]), "{yaml}");
    assert!(yaml.contains("runAsNonRoot: not proposed: no exec recorded"), "{yaml}");
}

/// `podtrail timeline` over the incident history shows a pod's listeners and
/// its raw-socket attempts among its other events, at their process's depth.
#[test]
fn the_timeline_of_the_incident_pod_shows_its_bind_shell_and_packet_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fixture::write(&data).expect("writing the incident fixture");
    let out = run_ok("podtrail", &["--data-dir", data.to_str().unwrap(), "timeline", "--pod", "debug-shell", "--json"]);
    let tl: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let events = tl["events"].as_array().unwrap();
    let of = |event: &str| events.iter().filter(|e| e["event"] == event).map(|e| (e["time"].clone(), e["pid"].clone(), e["detail"].clone(), e["depth"].clone())).collect::<Vec<_>>();
    assert_eq!(of("listen"), vec![(json!("2026-11-17T14:43:00.000001Z"), json!(4300), json!("tcp 0.0.0.0:4444 by nc"), json!(1))], "{out}");
    assert_eq!(of("socket"), vec![(json!("2026-11-17T14:44:00.000001Z"), json!(4400), json!("socket(AF_PACKET SOCK_RAW protocol 0x0300) refused: EPERM by proc"), json!(1))], "{out}");
    let text = run_ok("podtrail", &["--data-dir", data.to_str().unwrap(), "timeline", "--pod", "debug-shell"]);
    assert!(text.lines().last().unwrap_or("").contains("1 listener"), "the summary counts the listener:\n{text}");
    // Its DNS: four exfiltrating TXT lookups (NXDOMAIN) and one unanswered, at the shell's depth.
    let dns = of("dns");
    assert_eq!(dns.len(), 5, "{out}");
    assert_eq!(
        dns[0],
        (json!("2026-11-17T14:45:00Z"), json!(4000), json!("TXT mzxw6ytboi2dmnzqgezdgnbvgy3tqojq.0.x.exfil-c2.example -> NXDOMAIN via udp 10.96.0.10 (answered by 10.244.0.5) by proc"), json!(0)),
        "{out}"
    );
    assert_eq!(dns[4].2, json!("A pool.minexmr.example (unanswered) via udp 10.96.0.10 by proc"), "{out}");
    assert!(text.lines().last().unwrap_or("").contains("5 dns"), "the summary counts the lookups:\n{text}");
    // Its flows: the ping sweep (one row per host) and the UDP to port 123.
    let flows = of("flow");
    assert_eq!(flows.len(), 7, "{out}");
    assert_eq!(flows[0].2, json!("icmp 10.244.1.7 -> 10.244.1.1, out 1 pkt 64 B, in 1 pkt 64 B, sent echo_request, received echo_reply by proc"), "{out}");
    assert_eq!(flows[6].2, json!("udp 10.244.1.7:40410 -> 198.51.100.7:123, out 30 pkt 1440 B, in 30 pkt 1440 B by proc"), "{out}");
    assert!(text.lines().last().unwrap_or("").contains("7 flow"), "the summary counts the flows:\n{text}");
}

/// Pod A's timeline: its connections carry the names it resolved before them.
#[test]
fn the_timeline_names_the_destinations_a_pod_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fixture::write(&data).expect("writing the incident fixture");
    let out = run_ok("podtrail", &["--data-dir", data.to_str().unwrap(), "timeline", "--pod", "payments-api-1", "--json"]);
    let tl: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let connects: Vec<&str> = tl["events"].as_array().unwrap().iter().filter(|e| e["event"] == "connect").map(|e| e["detail"].as_str().unwrap()).collect();
    assert_eq!(connects.len(), 2, "{out}");
    assert!(connects[0].ends_with("[ledger.payments.svc.cluster.local]") && connects[1].ends_with("[api.stripe.example]"), "{connects:#?}");
}
