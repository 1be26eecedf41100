//! A real containerd for tests, and a CRI client to run pods in it.
//!
//! containerd (Debian package, with runc and the CNI plugins) runs with its own
//! config, root and state in a temp dir, inside a "node" network namespace this
//! creates (so the CNI bridge and every pod address live there, never in the
//! host's), with the cgroupfs driver under a cgroup parent unique to the test.
//! Images (`podtrail.test/pause:1`, `podtrail.test/busybox:1`) are built here
//! from Debian's static busybox and imported with `ctr`: nothing is pulled.
//! Everything is removed on drop: pods, containerd and its shims (by the pids
//! this started, found by their socket address), cgroups, the namespace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest, ImageSpec, LinuxContainerConfig, LinuxPodSandboxConfig, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxStatusRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest,
};
use sha2::{Digest, Sha256};
use tonic::transport::{Channel, Endpoint, Uri};

pub const PAUSE_IMAGE: &str = "podtrail.test/pause:1";
pub const BUSYBOX_IMAGE: &str = "podtrail.test/busybox:1";
/// The only address the test CNI network hands out: pods that follow each other
/// get the same IP, like a busy node reusing addresses within minutes.
pub const POD_IP: &str = "10.244.60.5";
/// The node side of the CNI bridge.
pub const GATEWAY: &str = "10.244.60.1";

pub struct Containerd {
    pub dir: tempfile::TempDir,
    pub netns: String,
    child: Option<Child>,
    pub cgroup_parent: String,
    /// containerd 1.6 puts shim sockets under /run/containerd/s whatever its
    /// config says: removed on drop when this test created it and it is empty.
    made_run_dir: bool,
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

impl Containerd {
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    pub fn start() -> Containerd {
        for tool in ["containerd", "ctr", "runc", "nsenter", "tar"] {
            assert!(which(tool).is_some(), "{tool} not found: run tests/setup.sh (installs containerd, runc, containernetworking-plugins)");
        }
        assert!(Path::new("/usr/lib/cni/bridge").exists(), "/usr/lib/cni/bridge missing: run tests/setup.sh (containernetworking-plugins)");
        let dir = tempfile::Builder::new().prefix("podtrail-ctd").tempdir().expect("temp dir");
        let t = dir.path();
        let netns = format!("ptctd{}", std::process::id());
        crate::privileged::ip(&["netns", "add", &netns]);
        crate::privileged::ip(&["-n", &netns, "link", "set", "lo", "up"]);
        std::fs::create_dir_all(t.join("cni")).unwrap();
        std::fs::write(
            t.join("cni/10-podtrail-test.conflist"),
            format!(
                r#"{{"cniVersion": "0.4.0", "name": "podtrail-test", "plugins": [{{"type": "bridge", "bridge": "ptcni0", "isGateway": true, "ipMasq": false,
                   "ipam": {{"type": "host-local", "dataDir": "{}", "ranges": [[{{"subnet": "10.244.60.0/24", "rangeStart": "{POD_IP}", "rangeEnd": "{POD_IP}", "gateway": "{GATEWAY}"}}]]}}}}]}}"#,
                t.join("ipam").display()
            ),
        )
        .unwrap();
        std::fs::write(
            t.join("config.toml"),
            format!(
                r#"version = 2
root = "{t}/root"
state = "{t}/state"
[grpc]
  address = "{t}/containerd.sock"
[ttrpc]
  address = "{t}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{t}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{t}/cni"
"#,
                t = t.display()
            ),
        )
        .unwrap();
        let made_run_dir = !Path::new("/run/containerd").exists();
        let log = std::fs::File::create(t.join("containerd.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{netns}"))
            .args(["containerd", "--config"])
            .arg(t.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting containerd");
        let socket = t.join("containerd.sock");
        let started = Instant::now();
        while !ctr(&socket, &["version"]).status.success() {
            assert!(started.elapsed() < Duration::from_secs(20), "containerd not answering after 20 s; log:\n{}", std::fs::read_to_string(t.join("containerd.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(100));
        }
        build_images(t);
        let out = ctr(&socket, &["-n", "k8s.io", "images", "import", "--all-platforms", t.join("images.tar").to_str().unwrap()]);
        assert!(out.status.success(), "ctr images import: {}", String::from_utf8_lossy(&out.stderr));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let path = socket.clone();
        let channel = rt
            .block_on(Endpoint::try_from("http://[::]:50051").unwrap().connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            })))
            .expect("CRI connection");
        Containerd {
            dir,
            netns,
            child: Some(child),
            cgroup_parent: format!("podtrail-test-{}", std::process::id()),
            made_run_dir,
            rt,
            client: RuntimeServiceClient::new(channel),
        }
    }

    /// Run a pod with one busybox container running `sh -c script`; returns
    /// (sandbox id, container id, pod IP).
    pub fn run_pod(&mut self, name: &str, namespace: &str, uid: &str, script: &str) -> (String, String, String) {
        let logs = self.dir.path().join("logs").join(uid);
        std::fs::create_dir_all(&logs).unwrap();
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata { name: name.into(), uid: uid.into(), namespace: namespace.into(), attempt: 0 }),
            hostname: name.into(),
            log_directory: logs.to_string_lossy().into_owned(),
            labels: [("app".to_string(), name.to_string())].into(),
            linux: Some(LinuxPodSandboxConfig { cgroup_parent: format!("/{}/kubepods/besteffort/pod{uid}", self.cgroup_parent), ..Default::default() }),
            ..Default::default()
        };
        let client = &mut self.client;
        self.rt.block_on(async {
            let sid = client
                .run_pod_sandbox(RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() })
                .await
                .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {}", e.message()))
                .into_inner()
                .pod_sandbox_id;
            let cc = ContainerConfig {
                metadata: Some(ContainerMetadata { name: "app".into(), attempt: 0 }),
                image: Some(ImageSpec { image: BUSYBOX_IMAGE.into(), ..Default::default() }),
                command: vec!["/bin/sh".into(), "-c".into(), script.into()],
                log_path: "app.log".into(),
                linux: Some(LinuxContainerConfig::default()),
                ..Default::default()
            };
            let cid = client
                .create_container(CreateContainerRequest { pod_sandbox_id: sid.clone(), config: Some(cc), sandbox_config: Some(config) })
                .await
                .unwrap_or_else(|e| panic!("CreateContainer in {name}: {}", e.message()))
                .into_inner()
                .container_id;
            client.start_container(StartContainerRequest { container_id: cid.clone() }).await.unwrap_or_else(|e| panic!("StartContainer in {name}: {}", e.message()));
            let st = client.pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: sid.clone(), verbose: false }).await.expect("PodSandboxStatus").into_inner();
            let ip = st.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
            (sid, cid, ip)
        })
    }

    /// Wait until the container exited; its exit code.
    pub fn wait_exit(&mut self, cid: &str) -> i32 {
        let started = Instant::now();
        loop {
            let st = self.rt.block_on(self.client.container_status(ContainerStatusRequest { container_id: cid.into(), verbose: false })).expect("ContainerStatus").into_inner();
            let s = st.status.expect("status");
            if s.state == k8s_cri::v1::ContainerState::ContainerExited as i32 {
                return s.exit_code;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "container {cid} still running after 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Delete the pod the way kubelet does: stop the sandbox (releases the IP), remove it.
    pub fn delete_pod(&mut self, sid: &str) {
        let client = &mut self.client;
        self.rt.block_on(async {
            client.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sid.into() }).await.unwrap_or_else(|e| panic!("StopPodSandbox: {}", e.message()));
            client.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sid.into() }).await.unwrap_or_else(|e| panic!("RemovePodSandbox: {}", e.message()));
        });
    }

    /// A command inside the node network namespace (where the pods' bridge is).
    pub fn in_node(&self, cmd: &mut Command) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/var/run/netns/{}", self.netns)).arg(cmd.get_program()).args(cmd.get_args());
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let socket = self.socket();
        // Pods the test left (a failed assertion): stop and remove them.
        let client = &mut self.client;
        let left = self.rt.block_on(client.list_pod_sandbox(k8s_cri::v1::ListPodSandboxRequest { filter: None })).map(|r| r.into_inner().items).unwrap_or_default();
        for s in left {
            let _ = self.rt.block_on(client.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: s.id.clone() }));
            let _ = self.rt.block_on(client.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: s.id }));
        }
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of the nsenter/containerd this started.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let _ = c.wait();
        }
        // containerd's shims outlive it by design: end the ones serving this socket.
        for pid in pids_with_arg(socket.to_str().unwrap_or_default()) {
            // SAFETY: kill(2) on a shim started for this test's containerd.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        remove_cgroup_tree(&self.cgroup_parent);
        if self.made_run_dir {
            // Only empty directories go: never anything a real containerd uses.
            let _ = std::fs::remove_dir("/run/containerd/s");
            let _ = std::fs::remove_dir("/run/containerd");
        }
        if let Err(e) = Command::new("ip").args(["netns", "del", &self.netns]).status() {
            eprintln!("cleanup: ip netns del {}: {e}", self.netns);
        }
    }
}

fn ctr(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new("ctr").arg("-a").arg(socket).args(args).output().expect("ctr")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').chain(["/usr/sbin", "/sbin"]).map(|p| Path::new(p).join(name)).find(|p| p.is_file())
}

/// Processes whose command line contains `arg` (containerd shims name their
/// containerd's socket address).
fn pids_with_arg(arg: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        if cmd.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Remove `/<top>` and everything below it in every mounted cgroup hierarchy
/// (runc creates the pod cgroups; kubelet, absent here, would remove them).
fn remove_cgroup_tree(top: &str) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        if !matches!(post.split_whitespace().next(), Some("cgroup" | "cgroup2")) {
            continue;
        }
        let Some(mnt) = pre.split_whitespace().nth(4) else { continue };
        let root = Path::new(mnt).join(top);
        if root.exists() {
            remove_dirs(&root);
        }
    }
}

fn remove_dirs(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_dirs(&e.path());
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        eprintln!("cleanup: removing {}: {e}", dir.display());
    }
}

/// An OCI image layout tarball holding the pause and busybox images, both one
/// layer of Debian's static busybox.
fn build_images(t: &Path) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).exists()).expect("busybox-static: run tests/setup.sh");
    let rootfs = t.join("image/rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for a in ["sh", "sleep", "nc", "echo", "cat", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    let layer = t.join("image/layer.tar");
    let st = Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&layer).arg(".").status().unwrap();
    assert!(st.success(), "tar of the image layer");
    let layout = t.join("image/oci");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let blob = |data: &[u8]| -> (String, usize) {
        let h = crate::hex(&Sha256::digest(data));
        std::fs::write(layout.join("blobs/sha256").join(&h), data).unwrap();
        (format!("sha256:{h}"), data.len())
    };
    let (ldig, lsize) = blob(&std::fs::read(&layer).unwrap());
    let mut manifests = Vec::new();
    for (name, cmd) in [(PAUSE_IMAGE, vec!["/bin/sleep", "2147483647"]), (BUSYBOX_IMAGE, vec!["/bin/sh"])] {
        let cfg = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": cmd, "Env": ["PATH=/bin"]}, "rootfs": {"type": "layers", "diff_ids": [ldig]}});
        let (cdig, csize) = blob(cfg.to_string().as_bytes());
        let man = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": csize},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ldig, "size": lsize}]});
        let (mdig, msize) = blob(man.to_string().as_bytes());
        manifests.push(serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig, "size": msize,
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "1"},
            "platform": {"architecture": "amd64", "os": "linux"}}));
    }
    std::fs::write(layout.join("index.json"), serde_json::json!({"schemaVersion": 2, "manifests": manifests}).to_string()).unwrap();
    std::fs::File::create(layout.join("oci-layout")).unwrap().write_all(br#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
    let st = Command::new("tar").arg("-C").arg(&layout).arg("-cf").arg(t.join("images.tar")).args(["index.json", "oci-layout", "blobs"]).status().unwrap();
    assert!(st.success(), "tar of the image layout");
}
