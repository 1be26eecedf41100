//! `podtrail-vmtest`: the privileged capture checks of the kernel matrix.
//! `tests/vmtest.sh` boots each kernel under QEMU with this binary as the guest's
//! test (and runs it on the host kernel too). One recording of the real
//! `podtraild` (found next to this binary), every workload, then each case reads
//! the rows podtraild sealed: Parquet segments checked against the catalog's
//! SHA-256, read without DataFusion so the guest stays small and quick under
//! software emulation.
//!
//! Output: what the recorder reported it cannot record here, one line per case,
//! and a closing line (the runner parses them):
//! ```text
//! unavailable: cap_check (tp_btf/cap_capable): unknown BTF type `btf_trace_cap_capable`
//! case exec: ok
//! case tcp4: FAILED: expected one accept row in cgroup 1234, got [] ...
//! podtrail-vmtest: 12 passed, 1 failed
//! ```
//! Exit status 0 only when every case passed. Where the kernel lacks a feature the
//! recorder treats as optional (the `cap_capable` tracepoint), the case checks that
//! the recorder said so and recorded everything else, instead of skipping.
//!
//! `podtrail-vmtest child tcp|fork-connect|nat` are workloads it re-executes
//! itself for.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use podtrail_schema::catalog::{Catalog, META_CAPTURE_UNAVAILABLE};
use podtrail_schema::layout::catalog_path;
use podtrail_schema::tables;
use podtrail_tests::privileged::{PodCgroup, Recorder, in_cgroup};
use serde_json::{Value, json};

type Rows = Vec<Value>;
type Outcome = Result<(), String>;

/// Exec storm size: small enough for a software-emulated guest, large enough to
/// fill ring buffers in bursts.
const STORM: usize = 300;
/// Entries of the `established` map in the matrix's recorder (the other
/// workloads hold a handful of sockets at a time), and the connections the
/// `socket_map_full` workload holds open at once: twice as many sockets.
const ESTABLISHED_ENTRIES: usize = 64;
const HELD: usize = 64;
const V4_SENT: usize = 1234;
const V4_REPLY: usize = 4321;
const POD_ADDR: &str = "10.244.1.2";
/// The UDP port the tcp workload binds (and releases) in its pod.
const UDP_PORT: u16 = 5353;

macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(args.get(2).map(String::as_str).unwrap_or(""));
        return;
    }
    if args.len() > 1 {
        eprintln!("usage: podtrail-vmtest   (as root; runs every case, prints `case NAME: ok|FAILED: why`)");
        std::process::exit(2);
    }
    // Panics inside a case become its FAILED line, not a backtrace on the console.
    std::panic::set_hook(Box::new(|_| {}));
    let mut results: Vec<(&str, Outcome)> = Vec::new();
    match std::panic::catch_unwind(record) {
        Ok(Ok(run)) => {
            // What the recorder said this kernel cannot record (the runner shows it).
            for u in &run.unavailable {
                println!("unavailable: {}", u.lines().next().unwrap_or(""));
            }
            println!("privilege syscalls: {}", run.privilege_syscalls);
            for (name, case) in CASES {
                let outcome = std::panic::catch_unwind(|| case(&run)).unwrap_or_else(|p| Err(panic_text(p)));
                results.push((name, outcome));
            }
        }
        Ok(Err(why)) => results.push(("record", Err(why))),
        Err(p) => results.push(("record", Err(why_podtraild_failed(&panic_text(p))))),
    }
    let failed = results.iter().filter(|(_, o)| o.is_err()).count();
    for (name, outcome) in &results {
        match outcome {
            Ok(()) => println!("case {name}: ok"),
            // One line per case: the runner prints it beside the kernel.
            Err(why) => println!("case {name}: FAILED: {}", why.replace('\n', " | ")),
        }
    }
    println!("podtrail-vmtest: {} passed, {failed} failed", results.len() - failed);
    std::process::exit(i32::from(failed > 0));
}

/// From a failed start's message with podtraild's log in it: the error lines
/// first (they name the program and the kernel's reason), then its warnings.
fn why_podtraild_failed(text: &str) -> String {
    let (head, log) = text.split_once('\n').unwrap_or((text, ""));
    let errors = log.lines().filter(|l| l.contains("error"));
    let warnings = log.lines().filter(|l| l.contains(" WARN ") && !l.contains("error"));
    std::iter::once(head).chain(errors).chain(warnings).collect::<Vec<_>>().join("\n")
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "panic".into())
}

/// A case of the matrix: it runs against one booted kernel.
type Case = fn(&Run) -> Outcome;

const CASES: &[(&str, Case)] = &[
    ("programs", programs),
    ("exec", exec),
    ("cwd", cwd),
    ("exit", exit),
    ("fork", fork),
    ("tcp4", tcp4),
    ("tcp6", tcp6),
    ("listen", listen),
    ("conntrack", conntrack),
    ("conntrack6", conntrack6),
    ("dns", dns),
    ("flows", flows),
    ("storm", storm),
    ("socket_map_full", socket_map_full),
    ("privilege", privilege),
    ("file", file),
    ("capabilities", capabilities),
    ("modules", modules),
];

/// What the workloads did and what podtraild stored.
struct Run {
    summary: Value,
    /// Rows of each event table, as JSON objects.
    rows: BTreeMap<&'static str, Rows>,
    loss: Rows,
    unavailable: Vec<String>,
    /// How the recorder traced the privilege syscalls (`fentry`, `tracepoints`).
    privilege_syscalls: String,
    exec: ExecFacts,
    exit7_pid: u32,
    killed_pid: u32,
    fork: (u32, u32),
    net: NetFacts,
    /// The DNAT workload needs nftables in the guest: its failure is the
    /// `conntrack` case's, not every case's.
    nat: Result<NatFacts, String>,
    storm_probe: String,
    /// The `held` workload: its cgroup, pod and server port.
    held: Result<(u64, String, u16), String>,
    privilege: PrivFacts,
    file: Result<FileFacts, String>,
    /// The module the guest loaded while recording, and insmod's pid; None where
    /// there is none to load (the host: a kernel without module support).
    module: Option<Result<(PathBuf, u32), String>>,
}

struct ExecFacts {
    probe: String,
    /// Where the shell ran the probe from (a directory of the temp dir).
    dir: String,
    /// A probe run 40 directories deep, and that directory.
    deep_probe: String,
    deep_dir: Vec<String>,
    sh_pid: u32,
    script: String,
    cgroup: u64,
    pod_uid: String,
    container_id: String,
}

struct NetFacts {
    pid: u32,
    cgroup: u64,
    pod_uid: String,
    netns: u64,
    v6_port: u16,
}

struct NatFacts {
    pid: u32,
    cgroup: u64,
    pod_uid: String,
}

/// The file workload: in a pod cgroup, under a watched directory of the temp
/// dir (never the system's own files: the host is one of the kernels).
struct FileFacts {
    cgroup: u64,
    /// The watched directory (`--watch`), the credential file (`--watch-read`)
    /// and the unwatched directory the hidden file, setuid bit and dropper use.
    watched: String,
    secret: String,
    plain: String,
    /// The dropped program's SHA-256, device and inode (stat's).
    dropped_sha256: String,
    dropped: (u64, u64),
}

struct PrivFacts {
    cgroup: u64,
    fileless: String,
    refused: String,
    granted: String,
}

fn record() -> Result<Run, String> {
    // The file workload's directories exist before the recorder, which watches them.
    let ftmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let fdir = std::fs::canonicalize(ftmp.path()).map_err(|e| e.to_string())?;
    let (watched, plain, secret) = (fdir.join("watched"), fdir.join("plain"), fdir.join("secret"));
    for d in [&watched, &plain] {
        std::fs::create_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(&secret, "s3cret\n").map_err(|e| e.to_string())?;
    let watch = format!("{}/", watched.display());
    let mut rec = Recorder::start_with_env(&["--no-cri", "--watch", &watch, "--watch-read", secret.to_str().unwrap()], &[(podtrail_recorder::probes::MAP_ENTRIES_ENV, &format!("established={ESTABLISHED_ENTRIES}"))]);
    let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;

    // exec: a copy of /bin/true under a unique path, started by a shell inside a
    // kubelet-named pod cgroup (not the shell's last command, so it forks).
    let cg = PodCgroup::new("vm-exec");
    let probe = copy_true(tmp.path(), "pt-vm-args")?;
    let dir = std::fs::canonicalize(tmp.path()).map_err(|e| e.to_string())?.join("pt-vm-cwd");
    std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let script = format!("cd {} && echo $$ > {}/cgroup.procs && {} a 'b c' d; true", dir.display(), cg.path().display(), probe.display());
    let (sh_pid, status) = sh(&script)?;
    check!(status.success(), "exec workload: {script}: {status}");
    // Deeper than the 32 components the kernel side walks.
    let deep_dir: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
    let deep = deep_dir.iter().fold(dir.clone(), |p, c| p.join(c));
    std::fs::create_dir_all(&deep).map_err(|e| format!("{}: {e}", deep.display()))?;
    let deep_probe = copy_true(tmp.path(), "pt-vm-deep")?;
    let (_, status) = sh(&format!("cd {} && {}; true", deep.display(), deep_probe.display()))?;
    check!(status.success(), "deep exec workload: {status}");
    let exec = ExecFacts {
        probe: probe.display().to_string(),
        dir: dir.display().to_string(),
        deep_probe: deep_probe.display().to_string(),
        deep_dir,
        sh_pid,
        script,
        cgroup: cg.id(),
        pod_uid: cg.uid.clone(),
        container_id: cg.container_id.clone(),
    };

    let (exit7_pid, status) = sh("exit 7")?;
    check!(status.code() == Some(7), "sh -c 'exit 7': {status}");
    let (killed_pid, status) = sh("kill -KILL $$")?;
    check!(std::os::unix::process::ExitStatusExt::signal(&status) == Some(9), "sh -c 'kill -KILL $$': {status}");

    let out = self_child("fork-connect", None)?;
    let fork = out.split_once(' ').and_then(|(p, c)| Some((p.parse().ok()?, c.parse().ok()?))).ok_or_else(|| format!("fork-connect printed {out:?}"))?;

    let ncg = PodCgroup::new("vm-net");
    let out = self_child("tcp", Some(&ncg))?;
    let mut it = out.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(netns)), Some(Ok(v6_port))) = (it.next(), it.next(), it.next()) else {
        return Err(format!("tcp child printed {out:?}"));
    };
    let net = NetFacts { pid: pid as u32, cgroup: ncg.id(), pod_uid: ncg.uid.clone(), netns, v6_port: v6_port as u16 };

    let acg = PodCgroup::new("vm-nat");
    let nat = self_child("nat", Some(&acg)).and_then(|out| out.parse().map_err(|_| format!("nat child printed {out:?}"))).map(|pid| NatFacts { pid, cgroup: acg.id(), pod_uid: acg.uid.clone() });

    let storm = copy_true(tmp.path(), "pt-vm-storm")?;
    let (_, status) = sh(&format!("i=0; while [ $i -lt {STORM} ]; do {}; i=$((i+1)); done", storm.display()))?;
    check!(status.success(), "exec storm: {status}");

    let hcg = PodCgroup::new("vm-held");
    let held = self_child("held", Some(&hcg)).and_then(|out| out.parse().map_err(|_| format!("held child printed {out:?}"))).map(|port| (hcg.id(), hcg.uid.clone(), port));

    let pcg = PodCgroup::new("vm-priv");
    let sysprobe = podtrail_tests::bin("podtrail-sysprobe");
    let fileless = format!("pt-vm-fileless-{}", std::process::id());
    let refused = in_pod(&pcg, &sysprobe, &["as-user", "1000", "setuid", "0"])?;
    let granted = in_pod(&pcg, &sysprobe, &["setuid", "0"])?;
    in_pod(&pcg, &sysprobe, &["memfd-exec", "/bin/true", &fileless])?;
    let privilege = PrivFacts { cgroup: pcg.id(), fileless, refused, granted };

    // File techniques in a pod: a write and a rename and removal under the
    // watched directory, a read of the credential file, a hidden file, a setuid
    // bit, and a copied program run (the dropper). The shell lives on a second
    // after it, as a container would, so the recorder can hash the program.
    let fcg = PodCgroup::new("vm-file");
    let fscript = format!(
        "echo $$ > {cg}/cgroup.procs && echo x > {w}/cron && read l < {s} && mv {w}/cron {w}/cron2 && rm {w}/cron2 && touch {p}/.hidden && cp /bin/true {p}/tool && chmod 4755 {p}/tool && cp /bin/true {p}/drop && {p}/drop && sleep 1",
        cg = fcg.path().display(),
        w = watched.display(),
        s = secret.display(),
        p = plain.display()
    );
    let file = sh(&fscript).and_then(|(_, status)| {
        check!(status.success(), "file workload: {fscript}: {status}");
        let drop = plain.join("drop");
        let bytes = std::fs::read(&drop).map_err(|e| format!("{}: {e}", drop.display()))?;
        let m = std::fs::metadata(&drop).map_err(|e| e.to_string())?;
        use sha2::Digest;
        use std::os::unix::fs::MetadataExt;
        Ok(FileFacts {
            cgroup: fcg.id(),
            watched: watched.display().to_string(),
            secret: secret.display().to_string(),
            plain: plain.display().to_string(),
            dropped_sha256: sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect(),
            dropped: (m.dev(), m.ino()),
        })
    });

    // A module load (tests/vmtest.sh puts `dummy.ko` in the guest; no devices made).
    let module = guest_module().map(|ko| {
        let c = Command::new("insmod").arg(&ko).arg("numdummies=0").stderr(Stdio::piped()).spawn().map_err(|e| format!("insmod: {e}"))?;
        let pid = c.id();
        let o = c.wait_with_output().map_err(|e| e.to_string())?;
        check!(o.status.success(), "insmod {} numdummies=0: {}", ko.display(), String::from_utf8_lossy(&o.stderr).trim());
        Ok((ko, pid))
    });

    // Capability counts are written about once a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let summary = rec.stop();
    let catalog = Catalog::open_ro(&catalog_path(&rec.data_dir)).map_err(|e| e.to_string())?;
    let mut rows = BTreeMap::new();
    for def in tables::EVENT_TABLES {
        rows.insert(def.name, table_rows(&rec.data_dir, &catalog, def.name)?);
    }
    let loss = to_json(&[catalog.load_table(&tables::LOSS).map_err(|e| e.to_string())?])?;
    let unavailable_meta = catalog.meta(META_CAPTURE_UNAVAILABLE).map_err(|e| e.to_string())?.unwrap_or_default();
    let unavailable = serde_json::from_str::<Value>(&unavailable_meta)
        .map_err(|e| format!("catalog meta {META_CAPTURE_UNAVAILABLE} = {unavailable_meta:?}: {e}"))?["programs"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let mode_meta = catalog.meta(podtrail_recorder::probes::META_PRIVILEGE_SYSCALLS).map_err(|e| e.to_string())?.unwrap_or_default();
    let privilege_syscalls = match serde_json::from_str::<Value>(&mode_meta) {
        Ok(v) => match (v["mode"].as_str(), v["fentry_refused"].as_str()) {
            (Some(mode), Some(why)) => format!("{mode} (fentry: {why})"),
            (Some(mode), None) => mode.to_string(),
            _ => format!("unknown ({mode_meta:?})"),
        },
        Err(_) => format!("unknown ({mode_meta:?})"),
    };
    drop((cg, ncg, acg, hcg, pcg, fcg, ftmp));
    Ok(Run { summary, rows, loss, unavailable, privilege_syscalls, exec, exit7_pid, killed_pid, fork, net, nat, storm_probe: storm.display().to_string(), held, privilege, file, module })
}

/// Every row of `table` in its sealed segments (all of them after a clean stop).
fn table_rows(data_dir: &Path, catalog: &Catalog, table: &str) -> Result<Rows, String> {
    let mut batches = Vec::new();
    for seg in catalog.segments().map_err(|e| e.to_string())?.iter().filter(|s| s.table_name == table && !s.expired) {
        let bytes = podtrail_schema::lake::read_segment(data_dir, seg).map_err(|e| e.to_string())?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| format!("segment {}: {e}", seg.path))?;
        for b in reader {
            batches.push(b.map_err(|e| format!("segment {}: {e}", seg.path))?);
        }
    }
    to_json(&batches)
}

fn to_json(batches: &[arrow::record_batch::RecordBatch]) -> Result<Rows, String> {
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<_> = batches.iter().collect();
    w.write_batches(&refs).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    let buf = w.into_inner();
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buf).map_err(|e| e.to_string())
}

/// `/lib/modules/<release>/extra/dummy.ko`, when this system has it.
fn guest_module() -> Option<PathBuf> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    Some(PathBuf::from(format!("/lib/modules/{}/extra/dummy.ko", release.trim()))).filter(|p| p.exists())
}

fn copy_true(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    // Named `true` so that a busybox-style multi-call binary still acts as true.
    let p = d.join("true");
    std::fs::copy("/bin/true", &p).map_err(|e| format!("copying /bin/true to {}: {e}", p.display()))?;
    Ok(p)
}

fn sh(script: &str) -> Result<(u32, std::process::ExitStatus), String> {
    let mut c = Command::new("/bin/sh").args(["-c", script]).spawn().map_err(|e| format!("/bin/sh: {e}"))?;
    let pid = c.id();
    Ok((pid, c.wait().map_err(|e| e.to_string())?))
}

fn in_pod(cg: &PodCgroup, program: &Path, args: &[&str]) -> Result<String, String> {
    let o = in_cgroup(Command::new(program).args(args), cg).output().map_err(|e| format!("{}: {e}", program.display()))?;
    check!(o.status.success(), "{} {args:?}: {}: {} {}", program.display(), o.status, String::from_utf8_lossy(&o.stdout).trim(), String::from_utf8_lossy(&o.stderr).trim());
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn self_child(what: &str, cg: Option<&PodCgroup>) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args(["child", what]).stderr(Stdio::piped());
    if let Some(cg) = cg {
        in_cgroup(&mut cmd, cg);
    }
    let o = cmd.output().map_err(|e| format!("child {what}: {e}"))?;
    check!(o.status.success(), "child {what}: {}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim());
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Workloads run in a process of their own.
fn child(what: &str) {
    let r = match what {
        "tcp" => child_tcp(),
        "fork-connect" => child_fork_connect(),
        "nat" => child_nat(),
        "held" => child_held(),
        _ => Err(format!("unknown child workload {what:?}")),
    };
    if let Err(e) = r {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

/// Into a network namespace of its own (a pod's) with `lo` up and the pod
/// address on it.
fn pod_netns() -> Outcome {
    // SAFETY: unshare(2) of this single-threaded process's network namespace.
    check!(unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
    for args in [&["link", "set", "lo", "up"][..], &["addr", "add", &format!("{POD_ADDR}/32"), "dev", "lo"]] {
        let o = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
        check!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}

/// The server name the tcp workload's IPv6 connection sends in a TLS ClientHello.
const TLS_NAME: &str = "tls.podtrail.test";

/// A TLS 1.2-style ClientHello record asking for `name` (one cipher suite, the
/// server_name extension only): what a TLS client's first segment starts with.
fn client_hello(name: &str) -> Vec<u8> {
    let n = name.len() as u16;
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(n + 5).to_be_bytes());
    ext.extend_from_slice(&(n + 3).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&n.to_be_bytes());
    ext.extend_from_slice(name.as_bytes());
    let mut hello = vec![0x03, 0x03];
    hello.extend_from_slice(&[7; 32]);
    hello.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    hello.extend_from_slice(&ext);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hello.len() as u16 + 4).to_be_bytes());
    rec.extend_from_slice(&[0x01, 0]);
    rec.extend_from_slice(&(hello.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hello);
    rec
}

/// In a pod's network namespace: a TCP exchange over IPv4 between two sockets on
/// the pod address, then one IPv6 connection to ::1 that sends a TLS ClientHello; a UDP socket bound and
/// closed, a raw ICMP socket and a packet socket opened and closed. Prints
/// `PID NETNS_INODE V6_PORT`.
fn child_tcp() -> Outcome {
    pod_netns()?;
    drop(UdpSocket::bind((POD_ADDR, UDP_PORT)).map_err(|e| format!("bind udp {POD_ADDR}:{UDP_PORT}: {e}"))?);
    for (family, kind, protocol) in [(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP), (libc::AF_PACKET, libc::SOCK_RAW, i32::from(0x0003u16.to_be()))] {
        // SAFETY: socket(2) with constant arguments; the descriptor is closed right away.
        let fd = unsafe { libc::socket(family, kind, protocol) };
        check!(fd >= 0, "socket({family}, SOCK_RAW, {protocol}): {}", std::io::Error::last_os_error());
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(fd) };
    }
    let netns = std::fs::metadata("/proc/self/ns/net").map_err(|e| e.to_string())?.ino();
    let l = TcpListener::bind((POD_ADDR, 8080)).map_err(|e| format!("bind {POD_ADDR}:8080: {e}"))?;
    let server = std::thread::spawn(move || -> Result<usize, String> {
        let (mut c, _) = l.accept().map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        c.read_to_end(&mut got).map_err(|e| e.to_string())?;
        c.write_all(&[b'b'; V4_REPLY]).map_err(|e| e.to_string())?;
        Ok(got.len())
    });
    let mut c = TcpStream::connect((POD_ADDR, 8080)).map_err(|e| format!("connect {POD_ADDR}:8080: {e}"))?;
    c.write_all(&[b'a'; V4_SENT]).map_err(|e| e.to_string())?;
    c.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).map_err(|e| e.to_string())?;
    drop(c);
    let got = server.join().map_err(|_| "server thread panicked".to_string())??;
    check!((got, reply.len()) == (V4_SENT, V4_REPLY), "exchanged {got}/{} bytes, expected {V4_SENT}/{V4_REPLY}", reply.len());

    let l6 = TcpListener::bind("[::1]:0").map_err(|e| format!("bind [::1]:0: {e}"))?;
    let port = l6.local_addr().map_err(|e| e.to_string())?.port();
    let mut c6 = TcpStream::connect(("::1", port)).map_err(|e| format!("connect [::1]:{port}: {e}"))?;
    // The first bytes a TLS client sends: a ClientHello naming TLS_NAME.
    c6.write_all(&client_hello(TLS_NAME)).map_err(|e| e.to_string())?;
    let (mut s6, _) = l6.accept().map_err(|e| e.to_string())?;
    let mut hello = vec![0u8; client_hello(TLS_NAME).len()];
    s6.read_exact(&mut hello).map_err(|e| e.to_string())?;
    drop(s6);
    drop(c6);
    println!("{} {netns} {port}", std::process::id());
    Ok(())
}

/// HELD connections on 127.0.0.1 open at once (more sockets than the
/// recorder's `established` map holds), then all closed. Prints the server port.
fn child_held() -> Outcome {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    let clients: Vec<TcpStream> = (0..HELD).map(|_| TcpStream::connect(("127.0.0.1", port))).collect::<Result<_, _>>().map_err(|e| format!("connect: {e}"))?;
    let servers: Vec<TcpStream> = (0..HELD).map(|_| l.accept().map(|(s, _)| s)).collect::<Result<_, _>>().map_err(|e| format!("accept: {e}"))?;
    drop(clients);
    drop(servers);
    // Closed: both sides' closes happen now (the server's on its FIN exchange).
    std::thread::sleep(std::time::Duration::from_millis(200));
    println!("{port}");
    Ok(())
}

/// A ClusterIP the namespace DNATs, like kube-proxy, to the pod's own address.
const CLUSTER_IP: &str = "10.244.100.10";
const NFT_DNAT: &str = "table ip podtrail_vmtest {
  chain out { type nat hook output priority -100; ip daddr 10.244.100.10 tcp dport 80 dnat to 10.244.1.2:8080; ip daddr 10.244.100.53 udp dport 53 dnat to 10.244.1.2:53; }
}
table ip6 podtrail_vmtest6 {
  chain out { type nat hook output priority -100; ip6 daddr ::1 tcp dport 81 dnat to [::1]:8081; }
}";

/// A kube-dns-like ClusterIP the nat workload's namespace DNATs to a resolver
/// on the pod's own address, the name it asks and the address it gets.
const DNS_CLUSTER_IP: &str = "10.244.100.53";
const DNS_NAME: &str = "app.podtrail.test";
const DNS_ANSWER: [u8; 4] = [10, 244, 7, 7];
const DNS_TXID: u16 = 0x5a5a;

/// A DNS query (one question, type A) or, with `answer`, its answer: the
/// question again and one A record pointing at it (TTL 30).
fn dns_message(answer: Option<[u8; 4]>) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [DNS_TXID, if answer.is_some() { 0x8180 } else { 0x0100 }, 1, u16::from(answer.is_some()), 0, 0] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    for label in DNS_NAME.split('.') {
        b.push(label.len() as u8);
        b.extend_from_slice(label.as_bytes());
    }
    b.extend_from_slice(&[0, 0, 1, 0, 1]);
    if let Some(a) = answer {
        b.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
        b.extend_from_slice(&a);
    }
    b
}

/// In a pod's network namespace whose nftables DNAT the ClusterIP
/// 10.244.100.10:80 to 10.244.1.2:8080 (and, over IPv6 on loopback only, [::1]:81
/// to [::1]:8081): one connection to each, a few bytes each way; a DNS query
/// to 10.244.100.53:53, DNATed to a resolver on 10.244.1.2:53 that answers
/// it; and one over IPv6 to a resolver on [::1]:53. Prints `PID`. Everything
/// goes with the namespace.
fn child_nat() -> Outcome {
    pod_netns()?;
    let o = Command::new("ip").args(["route", "add", &format!("{CLUSTER_IP}/32"), "dev", "lo"]).output().map_err(|e| format!("ip: {e}"))?;
    check!(o.status.success(), "ip route add {CLUSTER_IP}/32 dev lo: {}", String::from_utf8_lossy(&o.stderr));
    let mut nft = Command::new("nft").args(["-f", "-"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| format!("nft (nftables): {e}"))?;
    nft.stdin.take().expect("piped").write_all(NFT_DNAT.as_bytes()).map_err(|e| e.to_string())?;
    let o = nft.wait_with_output().map_err(|e| e.to_string())?;
    check!(o.status.success(), "nft -f: {}", String::from_utf8_lossy(&o.stderr).trim());
    let l = TcpListener::bind((POD_ADDR, 8080)).map_err(|e| format!("bind {POD_ADDR}:8080: {e}"))?;
    let server = std::thread::spawn(move || -> Result<(), String> {
        let (mut c, _) = l.accept().map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        c.read_to_end(&mut got).map_err(|e| e.to_string())?;
        c.write_all(&got).map_err(|e| e.to_string())
    });
    let mut c = TcpStream::connect((CLUSTER_IP, 80)).map_err(|e| format!("connect {CLUSTER_IP}:80: {e}"))?;
    c.write_all(b"through the ClusterIP").map_err(|e| e.to_string())?;
    c.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let mut back = Vec::new();
    c.read_to_end(&mut back).map_err(|e| e.to_string())?;
    server.join().map_err(|_| "server thread panicked".to_string())??;
    check!(back == b"through the ClusterIP", "echo through the DNAT: {back:?}");
    let l6 = TcpListener::bind("[::1]:8081").map_err(|e| format!("bind [::1]:8081: {e}"))?;
    let c6 = TcpStream::connect(("::1", 81)).map_err(|e| format!("connect [::1]:81 (DNAT to 8081): {e}"))?;
    drop(l6.accept().map_err(|e| e.to_string())?);
    drop(c6);
    let o = Command::new("ip").args(["route", "add", &format!("{DNS_CLUSTER_IP}/32"), "dev", "lo"]).output().map_err(|e| format!("ip: {e}"))?;
    check!(o.status.success(), "ip route add {DNS_CLUSTER_IP}/32 dev lo: {}", String::from_utf8_lossy(&o.stderr));
    let resolver = UdpSocket::bind((POD_ADDR, 53)).map_err(|e| format!("bind udp {POD_ADDR}:53: {e}"))?;
    let client = UdpSocket::bind((POD_ADDR, 0)).map_err(|e| e.to_string())?;
    client.set_read_timeout(Some(std::time::Duration::from_secs(5))).map_err(|e| e.to_string())?;
    resolver.set_read_timeout(Some(std::time::Duration::from_secs(5))).map_err(|e| e.to_string())?;
    client.send_to(&dns_message(None), (DNS_CLUSTER_IP, 53)).map_err(|e| format!("send to {DNS_CLUSTER_IP}:53: {e}"))?;
    let mut buf = [0u8; 512];
    let (n, from) = resolver.recv_from(&mut buf).map_err(|e| format!("the resolver's recv: {e}"))?;
    check!(buf[..n] == dns_message(None)[..], "the resolver got {n} bytes, not the query");
    resolver.send_to(&dns_message(Some(DNS_ANSWER)), from).map_err(|e| e.to_string())?;
    let (n, _) = client.recv_from(&mut buf).map_err(|e| format!("the client's recv: {e}"))?;
    check!(buf[..n] == dns_message(Some(DNS_ANSWER))[..], "the client got {n} bytes, not the answer");
    // Over IPv6 on loopback, to a resolver on [::1]:53, from a connected socket.
    let resolver6 = UdpSocket::bind("[::1]:53").map_err(|e| format!("bind udp [::1]:53: {e}"))?;
    let client6 = UdpSocket::bind("[::1]:0").map_err(|e| e.to_string())?;
    resolver6.set_read_timeout(Some(std::time::Duration::from_secs(5))).map_err(|e| e.to_string())?;
    client6.set_read_timeout(Some(std::time::Duration::from_secs(5))).map_err(|e| e.to_string())?;
    client6.connect("[::1]:53").map_err(|e| format!("connect [::1]:53: {e}"))?;
    client6.send(&dns_message(None)).map_err(|e| e.to_string())?;
    let (_, from) = resolver6.recv_from(&mut buf).map_err(|e| format!("the v6 resolver's recv: {e}"))?;
    resolver6.send_to(&dns_message(Some(DNS_ANSWER)), from).map_err(|e| e.to_string())?;
    client6.recv(&mut buf).map_err(|e| format!("the v6 client's recv: {e}"))?;
    // One echo each over IPv4 and IPv6 from ping sockets (allowed in this
    // namespace only), for the flows case.
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 0").map_err(|e| format!("ping_group_range: {e}"))?;
    ping_once(false)?;
    ping_once(true)?;
    println!("{}", std::process::id());
    Ok(())
}

/// Bytes of data in the nat workload's echo requests (8-byte ICMP header more).
const PING_DATA: usize = 24;

/// One echo request to the pod's own address (IPv4) or ::1 from a ping socket
/// (SOCK_DGRAM, IPPROTO_ICMP[V6]: the kernel sets the id and checksum), and
/// its reply.
fn ping_once(v6: bool) -> Outcome {
    let (family, proto, request) = if v6 { (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8) } else { (libc::AF_INET, libc::IPPROTO_ICMP, 8u8) };
    // SAFETY: socket(2); the fd is closed below.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM, proto) };
    check!(fd >= 0, "ping socket (v6: {v6}): {}", std::io::Error::last_os_error());
    let mut msg = vec![request, 0, 0, 0, 0, 0, 0, 1];
    msg.extend(std::iter::repeat_n(b'p', PING_DATA));
    let sent = if v6 {
        let mut a: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        a.sin6_family = libc::AF_INET6 as u16;
        a.sin6_addr.s6_addr[15] = 1;
        // SAFETY: a valid sockaddr_in6 and buffer.
        unsafe { libc::sendto(fd, msg.as_ptr().cast(), msg.len(), 0, (&a as *const libc::sockaddr_in6).cast(), std::mem::size_of_val(&a) as u32) }
    } else {
        let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        a.sin_family = libc::AF_INET as u16;
        a.sin_addr.s_addr = u32::from_ne_bytes(POD_ADDR.parse::<std::net::Ipv4Addr>().expect("an address").octets());
        // SAFETY: a valid sockaddr_in and buffer.
        unsafe { libc::sendto(fd, msg.as_ptr().cast(), msg.len(), 0, (&a as *const libc::sockaddr_in).cast(), std::mem::size_of_val(&a) as u32) }
    };
    let sent_err = std::io::Error::last_os_error();
    let tv = libc::timeval { tv_sec: 5, tv_usec: 0 };
    let mut buf = [0u8; 256];
    // SAFETY: setsockopt with a timeval, recv into a buffer of its size, close of our fd.
    let got = unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&tv as *const libc::timeval).cast(), std::mem::size_of_val(&tv) as u32);
        libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0)
    };
    let got_err = std::io::Error::last_os_error();
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    check!(sent == msg.len() as isize, "ping sendto (v6: {v6}): {sent_err}");
    check!(got == msg.len() as isize, "ping reply (v6: {v6}): {got} bytes, {got_err}");
    Ok(())
}

/// A child forked without exec connects to its parent: prints `PARENT CHILD`.
fn child_fork_connect() -> Outcome {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    // SAFETY: this process is single-threaded; the child only connects and _exits.
    let pid = unsafe { libc::fork() };
    check!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let ok = TcpStream::connect(addr).is_ok();
        // SAFETY: leaving the forked child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    drop(l.accept().map_err(|e| e.to_string())?);
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    check!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "forked child failed: status {status}");
    println!("{} {pid}", std::process::id());
    Ok(())
}

// ---- the cases -------------------------------------------------------------

fn rows<'a>(run: &'a Run, table: &str, pred: impl Fn(&Value) -> bool) -> Vec<&'a Value> {
    run.rows.get(table).map(|r| r.iter().filter(|v| pred(v)).collect()).unwrap_or_default()
}

fn tracefs_has(category: &str, event: &str) -> bool {
    ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"].iter().any(|d| Path::new(d).join(category).join(event).exists())
}

/// Every program the recorder reports unavailable must really lack its attach
/// point on this kernel (an optional feature), never be a broken program.
fn programs(run: &Run) -> Outcome {
    for entry in &run.unavailable {
        let point = entry.split_once(" (").and_then(|(_, rest)| rest.split_once("):")).map(|(p, _)| p).unwrap_or("");
        let present = if let Some(tp) = point.strip_prefix("tp_btf/") {
            ["capability", "sched", "sock", "net"].iter().any(|c| tracefs_has(c, tp))
        } else if let Some(rest) = point.strip_prefix("tracepoint/") {
            let (c, e) = rest.split_once('/').unwrap_or((rest, ""));
            tracefs_has(c, e)
        } else if let Some(function) = point.strip_prefix("fentry/").or_else(|| point.strip_prefix("fexit/")) {
            std::fs::read_to_string("/proc/kallsyms").unwrap_or_default().lines().any(|l| l.rsplit(' ').next() == Some(function))
        } else {
            true
        };
        check!(!present, "reported unavailable although the kernel has its attach point: {entry}");
    }
    Ok(())
}

fn exec(run: &Run) -> Outcome {
    let f = &run.exec;
    let probe = rows(run, "process_exec", |r| r["binary"] == f.probe.as_str());
    check!(probe.len() == 1, "expected one exec row for {}, got {probe:?}", f.probe);
    let r = probe[0];
    check!(r["args"] == json!([f.probe, "a", "b c", "d"]), "args {}", r["args"]);
    check!(r["uid"] == 0, "uid {}", r["uid"]);
    check!(r["ppid"].as_u64() == Some(u64::from(f.sh_pid)), "ppid {} but the shell was {}", r["ppid"], f.sh_pid);
    check!(r["cgroup_id"].as_u64() == Some(f.cgroup), "cgroup_id {} but the pod cgroup's inode is {}", r["cgroup_id"], f.cgroup);
    check!(r["pod_uid"] == f.pod_uid.as_str() && r["container_id"] == f.container_id.as_str(), "identity {} / {}", r["pod_uid"], r["container_id"]);
    let shell = rows(run, "process_exec", |s| s["pid"].as_u64() == Some(u64::from(f.sh_pid)));
    check!(shell.len() == 1, "the shell's exec rows: {shell:?}");
    check!(shell[0]["args"] == json!(["/bin/sh", "-c", f.script]), "shell args {}", shell[0]["args"]);
    check!(r["parent_exec_id"] == shell[0]["exec_id"], "parent_exec_id {} vs the shell's exec_id {}", r["parent_exec_id"], shell[0]["exec_id"]);
    Ok(())
}

/// The working directory at exec, walked up across mounts (the guest's /tmp is
/// a tmpfs on the initramfs root); a directory deeper than the walk keeps its
/// 32 nearest components after `...`.
fn cwd(run: &Run) -> Outcome {
    let f = &run.exec;
    let probe = rows(run, "process_exec", |r| r["binary"] == f.probe.as_str());
    check!(probe.len() == 1 && probe[0]["cwd"] == f.dir.as_str(), "cwd {:?}, expected {}", probe.iter().map(|r| &r["cwd"]).collect::<Vec<_>>(), f.dir);
    let deep = rows(run, "process_exec", |r| r["binary"] == f.deep_probe.as_str());
    let want = format!(".../{}", f.deep_dir[f.deep_dir.len() - 32..].join("/"));
    check!(deep.len() == 1 && deep[0]["cwd"] == want.as_str(), "deep cwd {:?}, expected {want}", deep.iter().map(|r| &r["cwd"]).collect::<Vec<_>>());
    Ok(())
}

fn exit(run: &Run) -> Outcome {
    for (pid, code, signal) in [(run.exit7_pid, 7, 0), (run.killed_pid, 0, 9)] {
        let x = rows(run, "process_exit", |r| r["pid"].as_u64() == Some(u64::from(pid)));
        check!(x.len() == 1, "pid {pid}: exit rows {x:?}");
        check!(x[0]["exit_code"] == code && x[0]["signal"] == signal, "pid {pid}: exit_code {} signal {}, expected {code} {signal}", x[0]["exit_code"], x[0]["signal"]);
        let e = rows(run, "process_exec", |r| r["pid"].as_u64() == Some(u64::from(pid)));
        check!(e.len() == 1 && x[0]["exec_id"] == e[0]["exec_id"], "pid {pid}: exit exec_id {} vs exec rows {e:?}", x[0]["exec_id"]);
    }
    Ok(())
}

fn fork(run: &Run) -> Outcome {
    let (parent, child) = run.fork;
    let conn = rows(run, "net_conn", |r| r["event"] == "connect" && r["pid"].as_u64() == Some(u64::from(child)));
    check!(conn.len() == 1, "the forked child's connect: {conn:?}");
    let images = rows(run, "process_exec", |r| r["pid"].as_u64() == Some(u64::from(parent)));
    let last = images.last().ok_or_else(|| format!("no exec row for the parent {parent}"))?;
    check!(conn[0]["exec_id"] == last["exec_id"], "child's connect exec_id {} vs the parent's image {}", conn[0]["exec_id"], last["exec_id"]);
    let exits = rows(run, "process_exit", |r| r["pid"].as_u64() == Some(u64::from(child)));
    check!(exits.len() == 1 && exits[0]["exec_id"] == last["exec_id"] && exits[0]["exit_code"] == 0, "the child's exit: {exits:?}");
    Ok(())
}

fn net_rows<'a>(run: &'a Run, event: &str, extra: impl Fn(&Value) -> bool) -> Result<&'a Value, String> {
    let n = &run.net;
    let found = rows(run, "net_conn", |r| r["event"] == event && r["cgroup_id"].as_u64() == Some(n.cgroup) && extra(r));
    match found.as_slice() {
        [one] => Ok(one),
        _ => Err(format!("expected one {event} row in cgroup {}, got {found:?}", n.cgroup)),
    }
}

fn tcp4(run: &Run) -> Outcome {
    let n = &run.net;
    let v4 = |r: &Value| r["dst_port"] == 8080 || r["src_port"] == 8080;
    let connect = net_rows(run, "connect", v4)?;
    check!(connect["pid"].as_u64() == Some(u64::from(n.pid)), "connect pid {} vs {}", connect["pid"], n.pid);
    check!(connect["src_ip"] == POD_ADDR && connect["dst_ip"] == POD_ADDR && connect["dst_port"] == 8080, "connect 5-tuple {connect}");
    check!(connect["orig_dst_ip"] == POD_ADDR && connect["orig_dst_port"] == 8080, "connect orig_dst {connect}");
    check!(connect["netns"].as_u64() == Some(n.netns), "connect netns {} vs the pod's {}", connect["netns"], n.netns);
    check!(connect["pod_uid"] == n.pod_uid.as_str(), "connect pod_uid {}", connect["pod_uid"]);
    let accept = net_rows(run, "accept", v4)?;
    check!(accept["src_port"] == 8080 && accept["netns"].as_u64() == Some(n.netns), "accept {accept}");
    let closes = rows(run, "net_conn", |r| r["event"] == "close" && r["cgroup_id"].as_u64() == Some(n.cgroup) && v4(r));
    let bytes: Vec<(u64, u64)> = closes.iter().map(|r| (r["bytes_sent"].as_u64().unwrap_or(0), r["bytes_received"].as_u64().unwrap_or(0))).collect();
    let (a, b) = ((V4_SENT as u64, V4_REPLY as u64), (V4_REPLY as u64, V4_SENT as u64));
    check!(bytes.len() == 2 && bytes.contains(&a) && bytes.contains(&b), "close rows bytes (sent, received) {bytes:?}, expected {a:?} and {b:?}");
    // Which side began it: the client's rows local, the server's remote.
    let begun: Vec<(u64, &Value)> = closes.iter().map(|r| (r["bytes_sent"].as_u64().unwrap_or(0), &r["initiated"])).collect();
    check!(connect["initiated"] == "local" && accept["initiated"] == "remote", "initiated: connect {} accept {}", connect["initiated"], accept["initiated"]);
    check!(begun.iter().all(|(sent, i)| *i == if *sent == V4_SENT as u64 { "local" } else { "remote" }), "initiated on the closes (bytes sent, initiated): {begun:?}");
    Ok(())
}

fn tcp6(run: &Run) -> Outcome {
    let port = run.net.v6_port;
    let connect = net_rows(run, "connect", |r| r["dst_port"] == port)?;
    check!(connect["dst_ip"] == "::1" && connect["orig_dst_ip"] == "::1" && connect["orig_dst_port"] == port, "IPv6 connect {connect}");
    check!(connect["server_name"] == TLS_NAME, "the server name of its TLS ClientHello: {connect}");
    net_rows(run, "accept", |r| r["src_port"] == port)?;
    Ok(())
}

/// The tcp workload's listener (TCP listen and its close, with the process and
/// namespace), its accept carrying the listener's process, its bound UDP socket
/// (bind and release) and its raw and packet sockets (privilege `socket` rows).
fn listen(run: &Run) -> Outcome {
    let n = &run.net;
    let of = |event: &str, port: u16| rows(run, "net_listen", |r| r["event"] == event && r["cgroup_id"].as_u64() == Some(n.cgroup) && r["port"] == port);
    for (event, port, proto, netns) in [("listen", 8080, "tcp", Some(n.netns)), ("unlisten", 8080, "tcp", Some(n.netns)), ("bind", UDP_PORT, "udp", None), ("unbind", UDP_PORT, "udp", None)] {
        let found = of(event, port);
        check!(found.len() == 1, "expected one {event} row for port {port} in cgroup {}, got {found:?}", n.cgroup);
        let r = found[0];
        check!(r["pid"].as_u64() == Some(u64::from(n.pid)) && r["protocol"] == proto && r["ip"] == POD_ADDR, "{event} row {r}");
        check!(r["netns"].as_u64() == netns && r["pod_uid"] == n.pod_uid.as_str(), "{event} row's namespace and pod: {r}");
    }
    let accept = net_rows(run, "accept", |r| r["src_port"] == 8080)?;
    check!(accept["pid"].as_u64() == Some(u64::from(n.pid)), "the accept carries the listener's process: {accept}");
    let raw = rows(run, "privilege", |r| r["kind"] == "socket" && r["cgroup_id"].as_u64() == Some(n.cgroup));
    let ops: Vec<&str> = raw.iter().filter_map(|r| r["operation"].as_str()).collect();
    check!(ops == ["AF_INET SOCK_RAW protocol 0x0001", "AF_PACKET SOCK_RAW protocol 0x0300"], "privilege socket rows {raw:?}");
    Ok(())
}

/// The one connect (and close) of the DNAT workload to `asked`: the destination
/// the process asked for and `reached`, the backend conntrack sent it to.
fn dnat_join<'a>(run: &'a Run, asked: (&str, u16), reached: (&str, u16)) -> Result<&'a Value, String> {
    let n = run.nat.as_ref().map_err(|e| format!("DNAT workload: {e}"))?;
    let conn = |event: &str| rows(run, "net_conn", |r| r["event"] == event && r["cgroup_id"].as_u64() == Some(n.cgroup) && r["dst_port"] == asked.1);
    let connect = conn("connect");
    check!(connect.len() == 1, "expected one connect to {}:{} in cgroup {}, got {connect:?}", asked.0, asked.1, n.cgroup);
    let c = connect[0];
    check!(c["pid"].as_u64() == Some(u64::from(n.pid)) && c["dst_ip"] == asked.0, "connect {c}");
    check!(c["orig_dst_ip"] == asked.0 && c["orig_dst_port"] == asked.1, "what the process asked for: {c}");
    check!(c["nat_dst_ip"] == reached.0 && c["nat_dst_port"] == reached.1, "the backend conntrack chose: {c}");
    let close = conn("close");
    check!(close.len() == 1 && close[0]["nat_dst_ip"] == reached.0 && close[0]["nat_dst_port"] == reached.1, "close rows {close:?}");
    Ok(c)
}

/// The ClusterIP the process asked for and the backend conntrack sent it to,
/// from the pod's own address.
fn conntrack(run: &Run) -> Outcome {
    let c = dnat_join(run, (CLUSTER_IP, 80), (POD_ADDR, 8080))?;
    check!(c["src_ip"] == POD_ADDR, "the pod's own pre-NAT address: {c}");
    Ok(())
}

/// The nat workload's DNS queries: a `dns` row each, answered; over IPv4 with
/// the ClusterIP the process asked, the resolver that answered (after DNAT),
/// the answer and the process and pod; over IPv6 from a connected socket.
fn dns(run: &Run) -> Outcome {
    let n = run.nat.as_ref().map_err(|e| format!("DNAT workload: {e}"))?;
    let found = rows(run, "dns", |r| r["cgroup_id"].as_u64() == Some(n.cgroup));
    check!(found.len() == 2, "expected two dns rows (IPv4, IPv6) in cgroup {}, got {found:?}", n.cgroup);
    let v6 = found[1];
    check!(v6["family"] == "ipv6" && v6["status"] == "answered" && v6["resolver_ip"] == "::1" && v6["answered_by_ip"] == "::1" && v6["pid"].as_u64() == Some(u64::from(n.pid)), "the IPv6 query (connect(), then send()): {v6}");
    let r = found[0];
    check!(r["status"] == "answered" && r["txid"] == DNS_TXID && r["query_name"] == DNS_NAME && r["query_type"] == "A" && r["rcode"] == "NOERROR", "dns row {r}");
    check!(r["resolver_ip"] == DNS_CLUSTER_IP && r["resolver_port"] == 53, "the ClusterIP as the process asked: {r}");
    check!(r["answered_by_ip"] == POD_ADDR && r["answered_by_port"] == 53, "the resolver that answered, after DNAT: {r}");
    check!(r["answers"] == format!("{DNS_NAME} A 10.244.7.7 ttl=30").as_str(), "answers: {r}");
    check!(r["pid"].as_u64() == Some(u64::from(n.pid)) && r["transport"] == "udp" && r["pod_uid"] == n.pod_uid.as_str(), "process and pod: {r}");
    Ok(())
}

/// The nat workload's UDP and ICMP flows, counted exactly with its process
/// and pod: the IPv6 DNS exchange (one flow to [::1]:53), and one echo each
/// from an IPv4 and an IPv6 ping socket. The IPv4 query went through a DNAT
/// in this namespace's OUTPUT chain, which rewrites the packet before the
/// egress program sees it: its datagram counts in a flow to the backend, the
/// answer in one from the ClusterIP (a flow in a pod, DNATed on the node,
/// has one peer); both are there, one packet each way in all.
fn flows(run: &Run) -> Outcome {
    let n = run.nat.as_ref().map_err(|e| format!("DNAT workload: {e}"))?;
    let of = |r: &&Value| r["cgroup_id"].as_u64() == Some(n.cgroup);
    let mine = rows(run, "net_flow", |r| of(&r));
    let one = |what: &str, pred: &dyn Fn(&Value) -> bool| -> Result<&Value, String> {
        let found: Vec<&&Value> = mine.iter().filter(|r| pred(r)).collect();
        check!(found.len() == 1, "expected one net_flow row for {what} in cgroup {}, got {found:?} (all: {mine:?})", n.cgroup);
        let r = *found[0];
        check!(r["pid"].as_u64() == Some(u64::from(n.pid)) && r["pod_uid"] == n.pod_uid.as_str(), "{what}: process and pod: {r}");
        Ok(r)
    };
    let dns_len = dns_message(None).len() as u64;
    let answer_len = dns_message(Some(DNS_ANSWER)).len() as u64;
    let v6 = one("the IPv6 DNS exchange", &|r| r["protocol"] == "udp" && r["dst_ip"] == "::1" && r["dst_port"] == 53)?;
    check!(v6["packets_out"] == 1 && v6["bytes_out"] == dns_len && v6["packets_in"] == 1 && v6["bytes_in"] == answer_len && v6["initiated"] == "local", "exact counts: {v6}");
    let v4: Vec<&&Value> = mine.iter().filter(|r| r["protocol"] == "udp" && r["family"] == "ipv4" && r["src_ip"] == POD_ADDR && r["dst_port"] == 53).collect();
    let sum = |f: &str| v4.iter().filter_map(|r| r[f].as_u64()).sum::<u64>();
    check!((sum("packets_out"), sum("bytes_out"), sum("packets_in"), sum("bytes_in")) == (1, dns_len, 1, answer_len), "the IPv4 DNS exchange's flows: {v4:?}");
    let bytes = (8 + PING_DATA) as u64;
    for (proto, peer) in [("icmp", POD_ADDR), ("icmpv6", "::1")] {
        let r = one(proto, &|r| r["protocol"] == proto && r["dst_ip"] == peer)?;
        check!(r["packets_out"] == 1 && r["bytes_out"] == bytes && r["packets_in"] == 1 && r["bytes_in"] == bytes, "exact counts: {r}");
        check!(r["icmp_types_out"] == "echo_request" && r["icmp_types_in"] == "echo_reply", "types: {r}");
    }
    Ok(())
}

/// The same join over IPv6: [::1]:81 asked for, [::1]:8081 reached.
fn conntrack6(run: &Run) -> Outcome {
    dnat_join(run, ("::1", 81), ("::1", 8081)).map(|_| ())
}

fn storm(run: &Run) -> Outcome {
    let n = rows(run, "process_exec", |r| r["binary"] == run.storm_probe.as_str()).len();
    // Every source the summary's kernel_drops + decode_errors count.
    let lost: u64 = run.loss.iter().filter(|r| ["kernel_ringbuf", "kernel_map", "kernel_skipped", "decode"].contains(&r["source"].as_str().unwrap_or(""))).filter_map(|r| r["count"].as_u64()).sum();
    let seen = run.summary["kernel_drops"].as_u64().unwrap_or(0) + run.summary["decode_errors"].as_u64().unwrap_or(0);
    check!(lost == seen, "loss rows count {lost}, the recorder saw {seen} drops: {}", run.summary);
    check!(n <= STORM, "{n} rows for {STORM} spawns: invented rows");
    check!(n as u64 + lost >= STORM as u64, "{n} rows + {lost} counted loss < {STORM} spawns: silent loss");
    check!(lost > 0 || n == STORM, "no loss counted but {n} rows for {STORM} spawns");
    Ok(())
}

/// More established sockets than the map holds: every connection still has its
/// close, the ones without state lack bytes and keep their local port, and each
/// of those is counted (`incomplete`, on the pod): no close is lost silently.
fn socket_map_full(run: &Run) -> Outcome {
    let (cgroup, pod, port) = run.held.clone()?;
    let of = |event: &str| rows(run, "net_conn", |r| r["cgroup_id"].as_u64() == Some(cgroup) && r["event"] == event && (r["dst_port"] == port || r["src_port"] == port));
    let (connects, closes) = (of("connect"), of("close"));
    let lost: u64 = run.loss.iter().filter(|r| r["table_name"] == "net_conn" && ["kernel_ringbuf", "kernel_skipped"].contains(&r["source"].as_str().unwrap_or(""))).filter_map(|r| r["count"].as_u64()).sum();
    check!(connects.len() == HELD || lost > 0, "{} connect rows of {HELD}", connects.len());
    check!(closes.len() + lost as usize >= 2 * HELD, "{} close rows of {} sockets, {lost} counted lost", closes.len(), 2 * HELD);
    let stateless: Vec<&&Value> = closes.iter().filter(|r| r["bytes_sent"].is_null()).collect();
    // A close the kernel skipped (counted in `lost`) may have been one without state.
    check!(stateless.len() + lost as usize >= 2 * HELD - ESTABLISHED_ENTRIES, "{} closes without state ({lost} counted lost), the map holds {ESTABLISHED_ENTRIES}", stateless.len());
    check!(stateless.iter().all(|r| r["src_port"].as_u64().is_some_and(|p| p > 0)), "a close without state lost its local port: {stateless:?}");
    let counted: u64 = run.loss.iter().filter(|r| r["source"] == "incomplete" && r["pod_uid"] == pod.as_str() && r["detail"].as_str().unwrap_or("").contains("established")).filter_map(|r| r["count"].as_u64()).sum();
    let unnamed: u64 = run.loss.iter().filter(|r| r["source"] == "incomplete" && r["pod_uid"].is_null() && r["detail"].as_str().unwrap_or("").contains("established")).filter_map(|r| r["count"].as_u64()).sum();
    check!(counted as usize >= stateless.len() && counted as usize <= stateless.len() + lost as usize, "{} closes without state, {counted} counted incomplete on the pod ({unnamed} without a pod)", stateless.len());
    Ok(())
}

fn privilege(run: &Run) -> Outcome {
    let p = &run.privilege;
    let cg = |r: &Value| r["cgroup_id"].as_u64() == Some(p.cgroup);
    check!(p.refused == "setuid 0: Operation not permitted (os error 1)" && p.granted == "setuid 0: ok", "sysprobe said {:?} / {:?}", p.refused, p.granted);
    // The bpf hooks attach last: podtraild's own program loads and attaches
    // before them are not recorded (at most the last pair's own attaches).
    let own = rows(run, "privilege", |r| r["kind"] == "bpf" && r["comm"] == "podtraild");
    check!(own.len() <= 4, "{} bpf rows of podtraild's own loading ({}): {own:?}", own.len(), run.privilege_syscalls);
    let setuid = rows(run, "privilege", |r| cg(r) && r["kind"] == "setuid");
    check!(setuid.len() == 2, "one refused and one granted setuid: {setuid:?}");
    let got: Vec<_> = setuid.iter().map(|r| (r["uid"].clone(), r["result"].clone(), r["error"].clone(), r["new_uid"].clone())).collect();
    let want = vec![(json!(1000), json!(-1), json!("EPERM"), json!(0)), (json!(0), json!(0), Value::Null, json!(0))];
    check!(got == want, "setuid rows (uid, result, error, new_uid) {got:?}, expected {want:?}");
    let unshare = rows(run, "privilege", |r| r["kind"] == "unshare" && r["cgroup_id"].as_u64() == Some(run.net.cgroup));
    check!(unshare.len() == 1 && unshare[0]["namespaces"] == "net" && unshare[0]["result"] == 0, "the tcp workload's unshare(CLONE_NEWNET): {unshare:?}");
    let memfd = format!("memfd:{}", p.fileless);
    let made = rows(run, "privilege", |r| cg(r) && r["kind"] == "memfd_create");
    check!(made.len() == 1 && made[0]["file"] == memfd.as_str(), "memfd_create rows {made:?}");
    let execs = rows(run, "process_exec", |r| cg(r) && r["fileless"] == true);
    check!(execs.len() == 1 && execs[0]["binary"] == memfd.as_str(), "fileless exec rows {execs:?}");
    Ok(())
}

/// One row per file technique with its operation, path and result, filtered in
/// the kernel (tracepoint mode on every kernel); the dropper's write joins its
/// exec on device and inode, and the exec row has the program's SHA-256.
fn file(run: &Run) -> Outcome {
    let f = run.file.as_ref().map_err(|e| format!("file workload: {e}"))?;
    let mine = rows(run, "file", |r| r["cgroup_id"].as_u64() == Some(f.cgroup));
    let one = |op: &str, path: &str| -> Result<&Value, String> {
        let found: Vec<&&Value> = mine.iter().filter(|r| r["op"] == op && r["path"] == path).collect();
        check!(found.len() == 1, "expected one {op} row of {path}, got {found:?} (all: {mine:?})");
        let r = *found[0];
        check!(r["result"].as_i64().is_some_and(|v| v >= 0) && r["exec_id"].is_u64(), "{op} {path}: result and process: {r}");
        Ok(r)
    };
    let w = |name: &str| format!("{}/{name}", f.watched);
    let p = |name: &str| format!("{}/{name}", f.plain);
    let write = one("open", &w("cron"))?;
    check!(write["created"] == true && write["reason"] == format!("watch:{}/", f.watched).as_str(), "the watched write: {write}");
    let read = one("read", &f.secret)?;
    check!(read["reason"] == format!("read:{}", f.secret).as_str() && read["open_flags"].as_str().is_some_and(|f| f.starts_with("O_RDONLY")), "the credential read: {read}");
    let mv = one("rename", &w("cron"))?;
    check!(mv["new_path"] == w("cron2").as_str(), "the rename: {mv}");
    one("unlink", &w("cron2"))?;
    let hidden = one("open", &p(".hidden"))?;
    check!(hidden["reason"] == "hidden", "the hidden file: {hidden}");
    let setid = one("chmod", &p("tool"))?;
    check!(setid["mode"] == 0o4755 && setid["reason"] == "exec_bit,setid", "the setuid bit: {setid}");
    let dropped = one("open", &p("drop"))?;
    check!(dropped["reason"] == "executed" && (dropped["device"].as_u64(), dropped["inode"].as_u64()) == (Some(f.dropped.0), Some(f.dropped.1)), "the dropper's write ({:?}): {dropped}", f.dropped);
    let exec = rows(run, "process_exec", |r| r["cgroup_id"].as_u64() == Some(f.cgroup) && r["binary"] == p("drop").as_str());
    check!(exec.len() == 1, "the dropped program's exec: {exec:?}");
    check!((exec[0]["device"].as_u64(), exec[0]["inode"].as_u64()) == (Some(f.dropped.0), Some(f.dropped.1)), "exec device/inode: {}", exec[0]);
    check!(exec[0]["sha256"] == f.dropped_sha256.as_str(), "exec sha256 {} (want {})", exec[0]["sha256"], f.dropped_sha256);
    // Nothing else of this pod under the plain directory: its other writes (cp's of tool) are not watched.
    let extra: Vec<&&Value> = mine.iter().filter(|r| r["path"] == p("tool").as_str() && r["op"] == "open").collect();
    check!(extra.is_empty(), "an unwatched write became a row: {extra:?}");
    Ok(())
}

/// `cap_capable` (tracepoint since Linux 6.14 or so): counted checks when the kernel
/// has it; when it does not, the recorder says so and `cap_usage` stays empty.
fn capabilities(run: &Run) -> Outcome {
    let p = &run.privilege;
    let unavailable = run.unavailable.iter().any(|u| u.contains("cap_capable"));
    let usage = rows(run, "cap_usage", |_| true);
    if unavailable {
        check!(!tracefs_has("capability", "cap_capable"), "cap_capable reported unavailable but the tracepoint exists");
        check!(usage.is_empty(), "cap_capable unavailable, yet cap_usage rows: {usage:?}");
        return Ok(());
    }
    let setuid = rows(run, "cap_usage", |r| r["cgroup_id"].as_u64() == Some(p.cgroup) && r["capability"] == "CAP_SETUID");
    let granted: u64 = setuid.iter().filter_map(|r| r["granted"].as_u64()).sum();
    let denied: u64 = setuid.iter().filter_map(|r| r["denied"].as_u64()).sum();
    check!(granted >= 1 && denied >= 1, "CAP_SETUID in the privilege pod: granted {granted}, denied {denied} (rows {setuid:?})");
    Ok(())
}

/// A module load is one `init_module` or `finit_module` row with its result. On a
/// kernel without module support (the host here) there are no such syscalls: the
/// recorder must say both programs are unavailable.
fn modules(run: &Run) -> Outcome {
    let Some(module) = &run.module else {
        // The syscalls (and their tracepoints) exist only with module support.
        check!(!tracefs_has("syscalls", "sys_enter_init_module"), "this kernel loads modules but there is no module to load here (tests/vmtest.sh puts dummy.ko in the guests): nothing to check the rows against");
        // Through syscall tracepoints or fentry, whichever the recorder used.
        let listed = ["init_module", "finit_module"].iter().all(|p| run.unavailable.iter().any(|u| u.starts_with(&format!("enter_{p} ")) || u.starts_with(&format!("fentry_{p} "))));
        check!(listed, "no module support, yet init_module/finit_module not reported unavailable: {:?}", run.unavailable);
        return Ok(());
    };
    let (ko, pid) = module.as_ref().map_err(|e| format!("module workload: {e}"))?;
    let loads = rows(run, "privilege", |r| r["pid"].as_u64() == Some(u64::from(*pid)) && (r["kind"] == "init_module" || r["kind"] == "finit_module"));
    let ok = rows(run, "privilege", |r| r["pid"].as_u64() == Some(u64::from(*pid)) && r["result"] == 0 && (r["kind"] == "init_module" || r["kind"] == "finit_module"));
    check!(ok.len() == 1, "insmod (pid {pid}) loaded {}: expected one successful module-load row, got {loads:?}", ko.display());
    let file = ok[0]["file"].as_str().unwrap_or("");
    let want = if ok[0]["kind"] == "init_module" { "numdummies=0" } else { "dummy.ko" };
    check!(file.contains(want), "{} row: file {file:?}, expected it to contain {want:?}", ok[0]["kind"]);
    Ok(())
}
