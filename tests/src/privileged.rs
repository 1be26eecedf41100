//! Helpers of the privileged end-to-end tests: the real `podtraild` on a temp
//! data dir, kubelet-named cgroups, processes started inside them, network
//! namespaces. Everything created here is removed on drop, also when a test fails;
//! processes are ended only by the pid this code spawned.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bin;

pub fn require_privileges() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "capture tests load eBPF programs and need root (CI runs as root); run tests/run.sh as root");
    assert!(Path::new("/sys/kernel/btf/vmlinux").exists(), "capture tests need kernel BTF (/sys/kernel/btf/vmlinux)");
}


/// A running `podtraild run`; stopped with SIGTERM (by pid) when dropped.
pub struct Recorder {
    child: Option<Child>,
    pub data_dir: PathBuf,
    /// Log lines up to and including "recording".
    pub log: String,
    /// Every log line so far (for failure messages).
    full_log: Arc<Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Recorder {
    pub fn start() -> Recorder {
        Recorder::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Recorder {
        Recorder::start_with_env(extra, &[])
    }

    /// With extra arguments and environment variables (e.g. AWS settings).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Recorder {
        require_privileges();
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let (child, log, full_log) = spawn_recorder(&data_dir, extra, env);
        Recorder { child: Some(child), data_dir, log, full_log, _tmp: Some(tmp) }
    }

    /// On a data dir of the caller's (e.g. on a small tmpfs).
    pub fn start_in(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Recorder {
        require_privileges();
        let (child, log, full_log) = spawn_recorder(data_dir, extra, env);
        Recorder { child: Some(child), data_dir: data_dir.to_owned(), log, full_log, _tmp: None }
    }

    /// The running podtraild's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Still running (not exited, not killed)?
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Send a signal to podtraild (by the pid this test spawned).
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of the child this test spawned.
        assert_eq!(unsafe { libc::kill(self.pid() as libc::pid_t, sig) }, 0);
    }

    /// kill -9, as a crash or the OOM killer would; returns once it is reaped.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let mut child = self.child.take().expect("running");
        let _ = child.wait();
    }

    /// The last lines it logged (for failure messages).
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.full_log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
    }

    /// Start again on the same data dir after [`Recorder::stop`] or [`Recorder::kill9`].
    pub fn restart(&mut self, extra: &[&str]) {
        assert!(self.child.is_none(), "stop it first");
        let (child, log, full_log) = spawn_recorder(&self.data_dir, extra, &[]);
        (self.child, self.log, self.full_log) = (Some(child), log, full_log);
    }

    /// SIGTERM, then require a clean exit: drained, flushed, sealed.
    pub fn stop(&mut self) -> serde_json::Value {
        let child = self.child.take().expect("running");
        // SAFETY: kill(2) on the pid of the child this test spawned.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            // The reader thread may still be taking the last lines.
            std::thread::sleep(Duration::from_millis(200));
            let log = self.full_log.lock().unwrap();
            let tail = &log[log.len().saturating_sub(30)..];
            panic!("podtraild exited with {}; last log lines:\n{}", out.status, tail.join("\n"));
        }
        serde_json::from_slice(&out.stdout).expect("podtraild prints a JSON summary")
    }
}

/// Spawn podtraild on `data_dir` and wait until it records; its log so far, and
/// a handle on every line it logs.
fn spawn_recorder(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(bin("podtraild"))
        .args(["--data-dir", data_dir.to_str().unwrap(), "run", "--node", "test-node"])
        .args(extra)
        // Never the in-cluster Kubernetes default, even if the machine running
        // the tests is a pod: only the tests' own emulator is ever asked.
        .env_remove("KUBERNETES_SERVICE_HOST")
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn podtraild");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let full_log: Arc<Mutex<Vec<String>>> = Arc::default();
    let full = Arc::clone(&full_log);
    std::thread::spawn(move || {
        let mut log = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // The lifecycle line `run: recording node=...`, not warnings that
            // mention recording.
            let ready = line.contains("podtrail_recorder::run: recording");
            full.lock().unwrap().push(line.clone());
            log.push(line);
            if ready {
                let _ = tx.send(Ok(log.join("\n")));
            }
        }
        let _ = tx.send(Err(log.join("\n")));
    });
    let log = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(log)) => log,
        Ok(Err(log)) => panic!("podtraild exited before recording:\n{log}"),
        Err(_) => panic!("podtraild not recording after 30 s"),
    };
    (child, log, full_log)
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid. SIGCONT too: a test that
            // failed while it had stopped the recorder must not hang here.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
                libc::kill(c.id() as libc::pid_t, libc::SIGCONT);
            }
            let _ = c.wait();
        }
    }
}

/// A helper process this test started, ended (by its pid) when dropped, also
/// when the test fails.
pub struct Spawned(pub Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child this test spawned.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// The cgroup v2 mount, from /proc/self/mountinfo (never a fixed path: this
/// machine mounts v2 in the hybrid layout).
pub fn cgroup2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in info.lines() {
        let (pre, post) = line.split_once(" - ").unwrap();
        if post.split_whitespace().next() == Some("cgroup2") {
            return PathBuf::from(pre.split_whitespace().nth(4).unwrap());
        }
    }
    panic!("no cgroup2 mount in /proc/self/mountinfo");
}

/// A kubelet-named pod cgroup (systemd driver naming, a real-looking pod UID) with
/// one `cri-containerd-<id>.scope` container cgroup inside; removed on drop.
pub struct PodCgroup {
    /// Container, pod, test slice: removal order.
    dirs: Vec<PathBuf>,
    pub uid: String,
    pub container_id: String,
}

impl PodCgroup {
    pub fn new(tag: &str) -> PodCgroup {
        use std::hash::{BuildHasher, Hasher};
        // Unique per test process and tag; shaped like the UIDs the API server assigns.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(tag.as_bytes());
        let r = h.finish();
        let uid = format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", std::process::id(), r & 0xffff, (r >> 16) & 0xfff, (r >> 28) & 0xfff, r >> 16);
        let container_id = format!("{:016x}{:016x}{:016x}{:016x}", r, r.rotate_left(16), r.rotate_left(32), u64::from(std::process::id()));
        let root = cgroup2_mount().join(format!("podtrail-test-{}-{tag}.slice", std::process::id()));
        let pod = root.join(format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_")));
        let container = pod.join(format!("cri-containerd-{container_id}.scope"));
        std::fs::create_dir_all(&container).unwrap_or_else(|e| panic!("creating {}: {e}", container.display()));
        PodCgroup { dirs: vec![container, pod, root], uid, container_id }
    }
    /// The container's cgroup: where processes are started.
    pub fn path(&self) -> &Path {
        &self.dirs[0]
    }
    /// cgroup v2 id (inode) of [`PodCgroup::path`].
    pub fn id(&self) -> u64 {
        std::fs::metadata(self.path()).unwrap().ino()
    }
    /// Remove the cgroups now (the pod is deleted); processes in it must have exited.
    pub fn remove(&mut self) {
        for d in self.dirs.drain(..) {
            if let Err(e) = std::fs::remove_dir(&d) {
                eprintln!("cleanup: removing {}: {e}", d.display());
            }
        }
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}


/// Start the command inside `cg`: the child moves itself before exec (`ip netns
/// exec` remounts /sys, so the cgroup path is not visible after it).
pub fn in_cgroup<'a>(cmd: &'a mut Command, cg: &PodCgroup) -> &'a mut Command {
    use std::os::unix::process::CommandExt;
    let procs = std::ffi::CString::new(cg.path().join("cgroup.procs").to_str().unwrap()).unwrap();
    // SAFETY: between fork and exec only async-signal-safe calls (open, write,
    // close) on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if ok { Ok(()) } else { Err(err) }
        })
    }
}

pub fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

pub fn in_ns(ns: &str, cmd: &[&str]) {
    let o = Command::new("ip").args(["netns", "exec", ns]).args(cmd).output().expect("ip netns exec");
    assert!(o.status.success(), "in {ns}: {cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// Two test pods (network namespaces) joined through a "node" namespace that
/// routes between them, like a node between its pods: pod `a` has
/// 10.244.`a_net`.2/24 (the node .1), pod `b` 10.244.`b_net`.2/24, each a
/// default route via the node. Only 10.244.0.0/16 inside namespaces it
/// creates; everything (veths, routes, rules added with [`in_ns`] on `node`,
/// the forwarding sysctl) lives in those namespaces and goes with them on drop,
/// also when the test fails.
pub struct PodPair {
    pub node: String,
    pub a: String,
    pub b: String,
    /// The node's side of pod `b`'s veth (for rules such as a MASQUERADE on it).
    pub node_dev_b: String,
}

impl PodPair {
    pub fn new(tag: &str, a_net: u8, b_net: u8) -> PodPair {
        let tag = format!("{tag}{}", std::process::id());
        let (va, na, vb, nb) = (format!("{tag}va"), format!("{tag}na"), format!("{tag}vb"), format!("{tag}nb"));
        let pair = PodPair { node: format!("{tag}-node"), a: format!("{tag}-a"), b: format!("{tag}-b"), node_dev_b: nb.clone() };
        for ns in [&pair.node, &pair.a, &pair.b] {
            ip(&["netns", "add", ns]);
        }
        ip(&["link", "add", &va, "netns", &pair.a, "type", "veth", "peer", "name", &na, "netns", &pair.node]);
        ip(&["link", "add", &vb, "netns", &pair.b, "type", "veth", "peer", "name", &nb, "netns", &pair.node]);
        let addr = |net: u8, host: u8| format!("10.244.{net}.{host}/24");
        for (ns, dev, a) in [(&pair.a, &va, addr(a_net, 2)), (&pair.node, &na, addr(a_net, 1)), (&pair.b, &vb, addr(b_net, 2)), (&pair.node, &nb, addr(b_net, 1))] {
            ip(&["-n", ns, "addr", "add", &a, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&["-n", &pair.a, "route", "add", "default", "via", &format!("10.244.{a_net}.1")]);
        ip(&["-n", &pair.b, "route", "add", "default", "via", &format!("10.244.{b_net}.1")]);
        in_ns(&pair.node, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        pair
    }
}

impl Drop for PodPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b, &self.node] {
            if let Err(e) = Command::new("ip").args(["netns", "del", ns]).status() {
                eprintln!("cleanup: ip netns del {ns}: {e}");
            }
        }
    }
}

/// A tmpfs of a given size mounted on a temporary directory (a filesystem a
/// test can fill); unmounted (lazily, so a process still in it cannot keep it)
/// and removed when dropped, also when the test fails.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `size`: as mount(8) takes it, e.g. `40m`.
    pub fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"]).arg(dir.path()).output().expect("mount");
        assert!(o.status.success(), "mounting a tmpfs: {}", String::from_utf8_lossy(&o.stderr));
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Grow (or shrink) it in place, as an operator freeing space would.
    pub fn resize(&self, size: &str) {
        let o = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(self.path()).output().expect("mount");
        assert!(o.status.success(), "resizing the tmpfs: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// Fill it up with a file of its own (not the recorder's): writes until the
    /// filesystem says it is full.
    pub fn fill(&self) -> u64 {
        use std::io::Write;
        let mut f = std::fs::File::create(self.path().join("filler")).unwrap();
        let chunk = vec![0u8; 64 << 10];
        let mut written = 0;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        let _ = f.sync_all();
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(e) = Command::new("umount").arg("-l").arg(self.path()).status() {
            eprintln!("cleanup: umount -l {}: {e}", self.path().display());
        }
    }
}

/// RSS (bytes) and open file descriptors of a process, from /proc.
pub fn rss_and_fds(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).unwrap_or(0) * 1024;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    (rss, fds)
}
