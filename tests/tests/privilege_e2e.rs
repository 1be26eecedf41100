//! Privileged end-to-end tests of privilege and capability events: the real
//! `podtraild` records real syscalls made by processes in a kubelet-named pod
//! cgroup (by `podtrail-sysprobe`, util-linux `unshare` and `mount`); the real
//! `podtrail` must show exactly one row per operation with its arguments, result
//! and pod, and `podtrail profile` must propose exactly the capabilities used.

use std::path::Path;
use std::process::Command;

use podtrail_tests::privileged::{PodCgroup, Recorder, in_cgroup};
use podtrail_tests::{bin, run, sql_json};

/// Run `cmd` inside the pod cgroup; returns its stdout (it must succeed).
fn in_pod(cg: &PodCgroup, program: &Path, args: &[&str]) -> String {
    let out = in_cgroup(Command::new(program).args(args), cg).output().unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    assert!(out.status.success(), "{} {args:?} in the pod failed: {}\n{}", program.display(), out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn each_privileged_operation_is_one_row_with_arguments_result_and_pod() {
    let mut rec = Recorder::start_with(&["--no-cri"]);
    assert!(!rec.log.contains("cap_check"), "cap_capable must attach on this kernel:\n{}", rec.log);
    let cg = PodCgroup::new("priv");
    let probe = bin("podtrail-sysprobe");
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();

    // Refused: a non-root process asking for uid 0. Granted: root asking for it.
    assert_eq!(in_pod(&cg, &probe, &["as-user", "1000", "setuid", "0"]).trim(), "setuid 0: Operation not permitted (os error 1)");
    assert_eq!(in_pod(&cg, &probe, &["setuid", "0"]).trim(), "setuid 0: ok");
    in_pod(&cg, Path::new("/usr/bin/unshare"), &["-n", "true"]);
    // In a private mount namespace of its own: nothing is mounted on the host.
    in_pod(&cg, Path::new("/usr/bin/unshare"), &["-m", "--propagation", "private", "mount", "-t", "tmpfs", "pt-test-tmpfs", mnt.to_str().unwrap()]);
    let fileless = format!("pt-fileless-{}", std::process::id());
    in_pod(&cg, &probe, &["memfd-exec", "/bin/true", &fileless]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let summary = rec.stop();
    let d = &rec.data_dir;
    assert_eq!(summary["kernel_drops"], 0, "{summary}");
    let pod = format!("pod_uid = '{}' AND container_id = '{}'", cg.uid, cg.container_id);

    let setuid = sql_json(d, &format!("SELECT uid, euid, result, error, new_uid, comm, exec_id FROM privilege WHERE {pod} AND kind = 'setuid' ORDER BY time"));
    assert_eq!(setuid.len(), 2, "one refused and one granted setuid: {setuid:?}");
    assert_eq!((&setuid[0]["uid"], &setuid[0]["euid"], &setuid[0]["result"], &setuid[0]["error"], &setuid[0]["new_uid"]), (&1000.into(), &1000.into(), &(-1).into(), &"EPERM".into(), &0.into()));
    assert_eq!((&setuid[1]["uid"], &setuid[1]["result"], &setuid[1]["error"], &setuid[1]["new_uid"]), (&0.into(), &0.into(), &serde_json::Value::Null, &0.into()));
    assert!(setuid.iter().all(|r| r["comm"] == "podtrail-syspro" && r["exec_id"].is_u64()), "{setuid:?}");
    // The drop to uid 1000 before the refused call is its own, granted, row.
    let drop = sql_json(d, &format!("SELECT new_uid, new_euid, new_suid, result FROM privilege WHERE {pod} AND kind = 'setresuid'"));
    assert_eq!(drop, vec![serde_json::json!({"new_uid": 1000, "new_euid": 1000, "new_suid": 1000, "result": 0})]);

    let unshare = sql_json(d, &format!("SELECT namespaces, result FROM privilege WHERE {pod} AND kind = 'unshare' ORDER BY time"));
    assert_eq!(unshare, vec![serde_json::json!({"namespaces": "net", "result": 0}), serde_json::json!({"namespaces": "mnt", "result": 0})], "unshare -n, then unshare -m");

    let mounts = sql_json(d, &format!("SELECT source, target, fstype, result, comm FROM privilege WHERE {pod} AND kind = 'mount' AND fstype = 'tmpfs'"));
    assert_eq!(mounts, vec![serde_json::json!({"source": "pt-test-tmpfs", "target": mnt.to_str().unwrap(), "fstype": "tmpfs", "result": 0, "comm": "mount"})]);

    let memfd = sql_json(d, &format!("SELECT file, result FROM privilege WHERE {pod} AND kind = 'memfd_create'"));
    assert_eq!(memfd.len(), 1, "{memfd:?}");
    assert_eq!(memfd[0]["file"], format!("memfd:{fileless}"));
    assert!(memfd[0]["result"].as_i64().unwrap() >= 0);
    let execs = sql_json(d, &format!("SELECT binary, fileless, args FROM process_exec WHERE {pod} AND fileless"));
    assert_eq!(execs, vec![serde_json::json!({"binary": format!("memfd:{fileless}"), "fileless": true, "args": [fileless]})], "the fileless exec is marked");
    // The timeline shows them among the pod's other events.
    let tl = podtrail_tests::run_ok("podtrail", &["--data-dir", d.to_str().unwrap(), "timeline", "--pod", &cg.uid]);
    for want in ["setuid(uid 0) refused: EPERM by podtrail-syspro", "setuid(uid 0) = 0 by podtrail-syspro", "unshare(net) = 0 by unshare", "mount(tmpfs pt-test-tmpfs on ", "memfd_create(memfd:"] {
        assert!(tl.contains(want), "timeline lacks {want:?}:\n{tl}");
    }
    // Every privilege row of the pod, refused capability checks included, and no other.
    let n = sql_json(d, &format!("SELECT count(*) AS n FROM privilege WHERE pod_uid = '{}'", cg.uid))[0]["n"].as_u64().unwrap();
    assert!(tl.trim_end().ends_with(&format!(", {n} privilege")), "timeline count vs {n} privilege rows:\n{tl}");
    // sysprobe x3, unshare + true, unshare + mount, and the sysprobe that made the memfd.
    assert_eq!(sql_json(d, &format!("SELECT count(*) AS n FROM process_exec WHERE {pod} AND NOT fileless"))[0]["n"], 7, "every other exec in the pod is not fileless");
}

/// `podtrail profile --pod UID`: its text, and that text parsed as YAML.
fn profile_yaml(data_dir: &str, uid: &str) -> (String, serde_json::Value) {
    let out = run("podtrail", &["--data-dir", data_dir, "profile", "--pod", uid]);
    let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "profile failed: {}\n{yaml}", String::from_utf8_lossy(&out.stderr));
    let v = podtrail_tests::yaml_to_json(&yaml);
    (yaml, v)
}

#[test]
fn profile_proposes_exactly_the_capabilities_used_as_valid_yaml() {
    let mut rec = Recorder::start_with(&["--no-cri"]);
    let cg = PodCgroup::new("profile");
    let probe = bin("podtrail-sysprobe");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("owned");
    std::fs::write(&file, "x").unwrap();
    // Port 99 < 1024 as root; ownership to another uid.
    assert_eq!(in_pod(&cg, &probe, &["bind", "99"]).trim(), "bind 99: ok");
    assert_eq!(in_pod(&cg, &probe, &["chown", file.to_str().unwrap(), "1000"]).trim(), "chown 1000: ok");
    std::thread::sleep(std::time::Duration::from_millis(300));
    rec.stop();
    let d = rec.data_dir.to_str().unwrap();

    let (yaml, v) = profile_yaml(d, &cg.uid);
    let sc = &v["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{yaml}");
    assert_eq!(sc["capabilities"]["add"], serde_json::json!(["CHOWN", "NET_BIND_SERVICE"]), "exactly what the pod used:\n{yaml}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{yaml}");
    assert!(sc.get("runAsNonRoot").is_none(), "the pod ran as root: no runAsNonRoot\n{yaml}");
    assert!(yaml.contains("CHOWN  # granted 1, denied 0"), "evidence beside the capability:\n{yaml}");

    // JSON for tools; an unknown image is bad input naming what is known.
    let json: serde_json::Value = serde_json::from_slice(&run("podtrail", &["--data-dir", d, "profile", "--pod", &cg.uid, "--json"]).stdout).unwrap();
    assert_eq!(json["add"].as_array().unwrap().len(), 2, "{json}");
    let bad = run("podtrail", &["--data-dir", d, "profile", "--image", "nginx:nope"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no container with image 'nginx:nope'"), "{}", String::from_utf8_lossy(&bad.stderr));
    let neither = run("podtrail", &["--data-dir", d, "profile"]);
    assert_eq!(neither.status.code(), Some(2), "--pod or --image is required");

    // What the run could not record is in the catalog: this kernel has the
    // capability tracepoint; module syscalls only where modules are built in.
    let catalog = rec.data_dir.join("catalog.db");
    let meta: String = rusqlite::Connection::open(&catalog).unwrap().query_row("SELECT value FROM meta WHERE key = 'capture_unavailable'", [], |r| r.get(0)).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    let programs: Vec<&str> = meta["programs"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(!programs.iter().any(|p| p.starts_with("cap_check ")), "{programs:?}");
    let modules = Path::new("/sys/kernel/tracing/events/syscalls/sys_enter_finit_module").exists();
    assert_eq!(programs.iter().any(|p| p.starts_with("enter_finit_module ")), !modules, "finit_module is unavailable exactly when the kernel has no such tracepoint: {programs:?}");
    // Unavailable for that reason only: a program the verifier refused would
    // also land here, and must not hide behind a missing tracepoint.
    for p in programs.iter().filter(|p| p.contains("module ")) {
        assert!(p.contains("_module/id`: No such file or directory"), "not a missing tracepoint: {p}");
    }

    // A recorder on a kernel without capability/cap_capable: the profile says
    // so and proposes no capability list rather than an empty (wrong) one.
    let no_cap = serde_json::json!({"since": 0, "programs": ["cap_check (tp_btf/cap_capable): no such tracepoint"]}).to_string();
    rusqlite::Connection::open(&catalog).unwrap().execute("UPDATE meta SET value = ?1 WHERE key = 'capture_unavailable'", [&no_cap]).unwrap();
    let (yaml, v) = profile_yaml(d, &cg.uid);
    assert!(v["securityContext"].get("capabilities").is_none(), "{yaml}");
    assert!(yaml.contains("capability profiling unavailable"), "{yaml}");
}
