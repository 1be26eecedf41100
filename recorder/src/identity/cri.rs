//! CRI metadata source: the node's container runtime (containerd, CRI-O) over its
//! CRI socket. Node-local, so it works when the API server is unreachable.
//!
//! In: the runtime's pod sandboxes and containers (listed on every poll). Out:
//! pod names/namespaces/labels by UID for stamping, and `pods`, `containers` and
//! `ip_owners` intervals with source `cri`: from the runtime's creation time until
//! the sandbox stops (its IP is released then) or disappears.
//!
//! Every call has a timeout; a runtime that does not answer never blocks recording
//! (the caller counts the failure and tries again later).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ListContainersRequest, ListPodSandboxRequest, PodSandboxStatusRequest, VersionRequest};
use tonic::transport::{Channel, Endpoint, Uri};

use podtrail_schema::records::{ContainerRecord, IpOwnerRecord, PodRecord};

pub const SOURCE_CRI: &str = "cri";
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Sockets tried, in order, when none is configured.
pub const DEFAULT_SOCKETS: &[&str] = &["/run/containerd/containerd.sock", "/run/crio/crio.sock", "/var/run/containerd/containerd.sock", "/var/run/crio/crio.sock"];

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("CRI socket {socket}: {what}")]
    Call { socket: PathBuf, what: String },
}

/// One pod sandbox as the runtime reports it (or a Pod as the Kubernetes API
/// does, see [`super::kube`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriPod {
    pub sandbox_id: String,
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// Labels without the runtime's own `io.kubernetes.*` bookkeeping, as JSON.
    pub labels: String,
    pub created_at: i64,
    pub ready: bool,
    pub ips: Vec<String>,
    /// Controlling owner, `Kind/name` (the API knows it; the runtime does not).
    pub owner: Option<String>,
    /// Since when the pod had its network (its IPs are owned from then): the
    /// sandbox's creation for CRI.
    pub network_from: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriContainer {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub image: String,
    pub created_at: i64,
    pub running: bool,
    /// e.g. `containerd`, `cri-o`.
    pub runtime: String,
}

#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub pods: Vec<CriPod>,
    pub containers: Vec<CriContainer>,
}

pub struct CriClient {
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
    /// e.g. `containerd`, `cri-o`.
    pub runtime_name: String,
    /// IPs by sandbox id: a sandbox keeps its addresses for life, so its status
    /// is asked once, not on every poll.
    ips: HashMap<String, Vec<String>>,
}

impl CriClient {
    /// Connect and ask the runtime's version (proves it speaks CRI v1).
    pub fn connect(socket: &Path) -> Result<Self, CriError> {
        let err = |what: String| CriError::Call { socket: socket.to_owned(), what };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| err(format!("tokio runtime: {e}")))?;
        let path = socket.to_owned();
        let channel = rt
            .block_on(async {
                // The URI is ignored: every connection goes to the socket.
                let ep = Endpoint::try_from("http://[::]:50051").expect("static URI").connect_timeout(CALL_TIMEOUT).timeout(CALL_TIMEOUT);
                tokio::time::timeout(
                    CALL_TIMEOUT,
                    ep.connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
                    })),
                )
                .await
            })
            .map_err(|_| err("no answer within 2 s".into()))?
            .map_err(|e| err(format!("connecting: {e}")))?;
        let mut client = RuntimeServiceClient::new(channel);
        let v = rt
            .block_on(client.version(VersionRequest { version: "v1".into() }))
            .map_err(|e| err(format!("Version: {}", e.message())))?
            .into_inner();
        let runtime_name = match v.runtime_name.as_str() {
            "cri-o" => "cri-o".to_string(),
            n if n.contains("containerd") => "containerd".to_string(),
            n => n.to_string(),
        };
        Ok(CriClient { socket: socket.to_owned(), rt, client, runtime_name, ips: HashMap::new() })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Every sandbox (with its IPs) and container the runtime knows.
    pub fn snapshot(&mut self) -> Result<Snapshot, CriError> {
        let socket = self.socket.clone();
        let err = |what: String| CriError::Call { socket: socket.clone(), what };
        let client = &mut self.client;
        let known_ips = &mut self.ips;
        let runtime = &self.runtime_name;
        self.rt.block_on(async {
            let sandboxes = client.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.map_err(|e| err(format!("ListPodSandbox: {}", e.message())))?.into_inner().items;
            let mut pods = Vec::with_capacity(sandboxes.len());
            for s in sandboxes {
                let Some(md) = s.metadata else { continue };
                let ready = s.state == k8s_cri::v1::PodSandboxState::SandboxReady as i32;
                let mut ips = Vec::new();
                if let Some(known) = known_ips.get(&s.id).filter(|_| ready) {
                    ips.clone_from(known);
                } else if ready {
                    let st = client
                        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: s.id.clone(), verbose: false })
                        .await
                        .map_err(|e| err(format!("PodSandboxStatus {}: {}", s.id, e.message())))?
                        .into_inner();
                    if let Some(net) = st.status.and_then(|s| s.network) {
                        ips.extend(std::iter::once(net.ip).chain(net.additional_ips.into_iter().map(|i| i.ip)).filter(|ip| !ip.is_empty()));
                    }
                    known_ips.insert(s.id.clone(), ips.clone());
                }
                let labels: BTreeMap<String, String> = s.labels.into_iter().filter(|(k, _)| !k.starts_with("io.kubernetes.")).collect();
                pods.push(CriPod {
                    sandbox_id: s.id,
                    uid: md.uid,
                    name: md.name,
                    namespace: md.namespace,
                    labels: serde_json::to_string(&labels).expect("strings serialize"),
                    created_at: s.created_at,
                    ready,
                    ips,
                    owner: None,
                    network_from: s.created_at,
                });
            }
            known_ips.retain(|id, _| pods.iter().any(|p| p.sandbox_id == *id && p.ready));
            let list = client.list_containers(ListContainersRequest { filter: None }).await.map_err(|e| err(format!("ListContainers: {}", e.message())))?.into_inner().containers;
            let containers = list
                .into_iter()
                .map(|c| CriContainer {
                    name: c.metadata.map(|m| m.name).unwrap_or_default(),
                    image: c.image.map(|i| i.image).filter(|i| !i.is_empty()).unwrap_or(c.image_ref),
                    running: c.state != k8s_cri::v1::ContainerState::ContainerExited as i32,
                    id: c.id,
                    sandbox_id: c.pod_sandbox_id,
                    created_at: c.created_at,
                    runtime: runtime.clone(),
                })
                .collect();
            Ok(Snapshot { pods, containers })
        })
    }
}

/// Pod metadata used to stamp rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMeta {
    pub name: String,
    pub namespace: String,
}

/// Turns successive snapshots of one source into intervals: what is new, what ended.
pub struct CriTracker {
    /// The intervals' `source` (`cri`, `kubernetes`).
    source: &'static str,
    /// sandbox id -> (pod record, its IP records); only sandboxes still open.
    pods: HashMap<String, (PodRecord, Vec<IpOwnerRecord>)>,
    containers: HashMap<String, ContainerRecord>,
    /// Containers whose interval is already closed, while the runtime still lists them.
    closed_containers: std::collections::HashSet<String>,
}

/// What one snapshot changed.
#[derive(Debug, Default)]
pub struct Changes {
    pub pods: Vec<PodRecord>,
    pub containers: Vec<ContainerRecord>,
    pub ips: Vec<IpOwnerRecord>,
    /// Metadata of every pod the runtime knows now (also stopped ones: late events).
    pub meta: Vec<(String, PodMeta)>,
}

impl CriTracker {
    pub fn new(source: &'static str) -> Self {
        CriTracker { source, pods: HashMap::new(), containers: HashMap::new(), closed_containers: Default::default() }
    }

    /// Continue intervals a previous run left open (source `cri`, this node).
    pub fn resume(&mut self, pods: Vec<PodRecord>, containers: Vec<ContainerRecord>, ips: Vec<IpOwnerRecord>, snapshot: &Snapshot) {
        // Match by UID to the sandboxes of the first snapshot; the rest close on apply.
        for p in pods {
            let sid = snapshot.pods.iter().find(|s| s.uid == p.pod_uid && s.created_at == p.valid_from).map(|s| s.sandbox_id.clone()).unwrap_or_else(|| format!("gone:{}", p.pod_uid));
            let my_ips = ips.iter().filter(|i| i.pod_uid == p.pod_uid && i.valid_to.is_none()).cloned().collect();
            self.pods.insert(sid, (p, my_ips));
        }
        for c in containers {
            self.containers.insert(c.container_id.clone(), c);
        }
    }

    pub fn apply(&mut self, s: &Snapshot, node: &str, qos: impl Fn(&str) -> Option<String>, now: i64) -> Changes {
        let mut out = Changes::default();
        let by_sandbox: HashMap<&str, &CriPod> = s.pods.iter().map(|p| (p.sandbox_id.as_str(), p)).collect();
        for p in &s.pods {
            out.meta.push((p.uid.clone(), PodMeta { name: p.name.clone(), namespace: p.namespace.clone() }));
            if !p.ready || self.pods.contains_key(&p.sandbox_id) {
                continue;
            }
            let record = PodRecord {
                pod_uid: p.uid.clone(),
                pod_namespace: Some(p.namespace.clone()),
                pod_name: Some(p.name.clone()),
                node: node.into(),
                labels: Some(p.labels.clone()),
                owner: p.owner.clone(),
                qos_class: qos(&p.uid),
                valid_from: p.created_at,
                valid_to: None,
                source: self.source.into(),
            };
            let ips: Vec<IpOwnerRecord> = p
                .ips
                .iter()
                .map(|ip| IpOwnerRecord {
                    ip: ip.clone(),
                    pod_uid: p.uid.clone(),
                    pod_namespace: Some(p.namespace.clone()),
                    pod_name: Some(p.name.clone()),
                    node: node.into(),
                    valid_from: p.network_from,
                    valid_to: None,
                    source: self.source.into(),
                })
                .collect();
            out.pods.push(record.clone());
            out.ips.extend(ips.iter().cloned());
            self.pods.insert(p.sandbox_id.clone(), (record, ips));
        }
        // Sandboxes that stopped (their IP is released at stop) or disappeared.
        let ended: Vec<String> = self.pods.keys().filter(|sid| by_sandbox.get(sid.as_str()).is_none_or(|p| !p.ready)).cloned().collect();
        for sid in ended {
            let (mut pod, ips) = self.pods.remove(&sid).expect("present");
            pod.valid_to = Some(now.max(pod.valid_from));
            out.pods.push(pod);
            for mut ip in ips {
                ip.valid_to = Some(now.max(ip.valid_from));
                out.ips.push(ip);
            }
        }
        let live: HashMap<&str, &CriContainer> = s.containers.iter().map(|c| (c.id.as_str(), c)).collect();
        for c in &s.containers {
            if self.containers.contains_key(&c.id) || self.closed_containers.contains(&c.id) {
                continue;
            }
            // A container that ran and exited between two polls is still
            // history: its interval ends when the runtime first reported it exited.
            let record = ContainerRecord {
                container_id: c.id.clone(),
                pod_uid: by_sandbox.get(c.sandbox_id.as_str()).map(|p| p.uid.clone()),
                container_name: Some(c.name.clone()),
                image: Some(c.image.clone()),
                runtime: Some(c.runtime.clone()),
                cgroup_id: None,
                valid_from: c.created_at,
                valid_to: (!c.running).then_some(now.max(c.created_at)),
                source: self.source.into(),
            };
            out.containers.push(record.clone());
            if c.running {
                self.containers.insert(c.id.clone(), record);
            } else {
                self.closed_containers.insert(c.id.clone());
            }
        }
        let gone: Vec<String> = self.containers.keys().filter(|id| live.get(id.as_str()).is_none_or(|c| !c.running)).cloned().collect();
        for id in gone {
            let mut c = self.containers.remove(&id).expect("present");
            c.valid_to = Some(now.max(c.valid_from));
            out.containers.push(c);
            if live.contains_key(id.as_str()) {
                self.closed_containers.insert(id);
            }
        }
        self.closed_containers.retain(|id| live.contains_key(id.as_str()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(sid: &str, uid: &str, ready: bool, ip: &str, created: i64) -> CriPod {
        CriPod { sandbox_id: sid.into(), uid: uid.into(), name: format!("n-{uid}"), namespace: "ns".into(), labels: "{}".into(), created_at: created, ready, ips: vec![ip.into()], owner: None, network_from: created }
    }

    #[test]
    fn sandbox_lifecycle_becomes_intervals_and_a_stop_releases_the_ip() {
        let mut t = CriTracker::new(SOURCE_CRI);
        let s1 = Snapshot { pods: vec![pod("s1", "u1", true, "10.244.60.5", 100)], containers: vec![CriContainer { id: "c1".into(), sandbox_id: "s1".into(), name: "app".into(), image: "img:1".into(), created_at: 110, running: true, runtime: "containerd".into() }] };
        let c = t.apply(&s1, "n", |_| Some("besteffort".into()), 1_000);
        assert_eq!(c.pods.iter().map(|p| (p.pod_uid.as_str(), p.valid_from, p.valid_to)).collect::<Vec<_>>(), vec![("u1", 100, None)]);
        assert_eq!(c.ips.iter().map(|i| (i.ip.as_str(), i.valid_from, i.valid_to, i.pod_name.as_deref())).collect::<Vec<_>>(), vec![("10.244.60.5", 100, None, Some("n-u1"))]);
        assert_eq!(c.containers[0].pod_uid.as_deref(), Some("u1"));
        assert!(t.apply(&s1, "n", |_| None, 2_000).pods.is_empty(), "unchanged: nothing to write");
        // A container that started and exited between two polls is recorded, once.
        let quick = CriContainer { id: "c2".into(), sandbox_id: "s1".into(), name: "job".into(), image: "img:1".into(), created_at: 1_500, running: false, runtime: "containerd".into() };
        let s1b = Snapshot { pods: s1.pods.clone(), containers: vec![s1.containers[0].clone(), quick] };
        let c = t.apply(&s1b, "n", |_| None, 2_500);
        assert_eq!(c.containers.iter().map(|c| (c.container_id.as_str(), c.valid_to)).collect::<Vec<_>>(), vec![("c2", Some(2_500))]);
        assert!(t.apply(&s1b, "n", |_| None, 2_600).containers.is_empty());
        // Stopped: the pod and its IP end now; its metadata stays for late events.
        let s2 = Snapshot { pods: vec![pod("s1", "u1", false, "", 100)], containers: vec![] };
        let c = t.apply(&s2, "n", |_| None, 3_000);
        assert_eq!(c.pods.iter().map(|p| p.valid_to).collect::<Vec<_>>(), vec![Some(3_000)]);
        assert_eq!(c.ips.iter().map(|i| (i.ip.as_str(), i.valid_to)).collect::<Vec<_>>(), vec![("10.244.60.5", Some(3_000))]);
        assert_eq!(c.containers.iter().map(|c| c.valid_to).collect::<Vec<_>>(), vec![Some(3_000)]);
        assert_eq!(c.meta.len(), 1);
        // A new pod gets the same address.
        let s3 = Snapshot { pods: vec![pod("s2", "u2", true, "10.244.60.5", 4_000)], containers: vec![] };
        let c = t.apply(&s3, "n", |_| None, 5_000);
        assert_eq!(c.ips.iter().map(|i| (i.pod_uid.as_str(), i.valid_from, i.valid_to)).collect::<Vec<_>>(), vec![("u2", 4_000, None)]);
    }
}
