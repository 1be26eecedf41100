//! A Kubernetes API for the tests: kmock's `KubernetesEmulator` (PyPI `kmock`,
//! installed by tests/setup.sh) served on 127.0.0.1, driven over plain HTTP.
//! It keeps the objects it is given and streams watch events; it does not assign
//! `resourceVersion` (every object here carries one) and ignores field selectors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::privileged::Spawned;

const SERVER: &str = r#"
import asyncio, kmock
async def main():
    async with kmock.KubernetesEmulator() as k, kmock.Server(k) as srv:
        k.resources["v1/pods"] = {}  # a real API server always serves pods
        print(srv.url, flush=True)
        await asyncio.Event().wait()
asyncio.run(main())
"#;

pub struct KubeApi {
    /// e.g. `http://127.0.0.1:41234`.
    pub url: String,
    addr: String,
    _server: Spawned,
    version: u64,
}

impl KubeApi {
    pub fn start() -> KubeApi {
        let probe = Command::new("python3").args(["-c", "import kmock"]).output().expect("python3");
        assert!(probe.status.success(), "the Kubernetes API emulator needs PyPI kmock (tests/setup.sh installs it): {}", String::from_utf8_lossy(&probe.stderr));
        let mut server = Spawned(Command::new("python3").args(["-c", SERVER]).stdout(Stdio::piped()).spawn().expect("spawn the kmock server"));
        let mut line = String::new();
        BufReader::new(server.0.stdout.take().unwrap()).read_line(&mut line).expect("kmock prints its URL");
        let url = line.trim().trim_end_matches('/').to_string();
        let addr = url.strip_prefix("http://").unwrap_or_else(|| panic!("kmock URL {url:?}")).to_string();
        KubeApi { url, addr, _server: server, version: 0 }
    }

    /// A kubeconfig whose current context is this server (no credentials).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kmock\n  cluster:\n    server: {}\nusers:\n- name: test\n  user: {{}}\n\
             contexts:\n- name: test\n  context:\n    cluster: kmock\n    user: test\ncurrent-context: test\n",
            self.url
        )
    }

    /// Create `pod` (its namespace from the object); sets a fresh resourceVersion.
    pub fn create_pod(&mut self, mut pod: serde_json::Value) {
        self.version += 1;
        pod["metadata"]["resourceVersion"] = self.version.to_string().into();
        let ns = pod["metadata"]["namespace"].as_str().expect("namespace").to_string();
        self.call("POST", &format!("/api/v1/namespaces/{ns}/pods"), Some(&pod));
    }

    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        self.call("DELETE", &format!("/api/v1/namespaces/{namespace}/pods/{name}"), None);
    }

    /// One HTTP/1.1 request; panics unless the answer is 2xx.
    fn call(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> String {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(&self.addr).unwrap_or_else(|e| panic!("kmock at {}: {e}", self.addr));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", self.addr, body.len()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = answer.split_whitespace().nth(1).unwrap_or("");
        assert!(status.starts_with('2'), "{method} {path} -> {}", answer.lines().next().unwrap_or(""));
        answer
    }
}

/// A running pod on node `test-node` as the API server reports it: `uid` and
/// `container_id` are the ones its cgroup path carries, `ip` its pod IP.
pub fn running_pod(name: &str, namespace: &str, uid: &str, container_id: &str, ip: &str) -> serde_json::Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "creationTimestamp": now, "labels": {"app": "web"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c", "uid": "rs-1", "controller": true}]},
        "spec": {"nodeName": "test-node", "containers": [{"name": "app", "image": "podtrail.test/web:1"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now,
                   "conditions": [{"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": now}],
                   "containerStatuses": [{"name": "app", "image": "podtrail.test/web:1", "imageID": "", "ready": true, "restartCount": 0,
                                          "containerID": format!("containerd://{container_id}"), "state": {"running": {"startedAt": now}}}]}
    })
}
