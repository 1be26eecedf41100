//! Kubernetes API metadata source: the pods of this node (`spec.nodeName`),
//! listed then watched with kube-rs.
//!
//! In: Pod objects. Out: the same [`Snapshot`] the CRI source produces, so the
//! same tracker turns it into `pods`, `containers` and `ip_owners` intervals, here
//! with source `kubernetes`: name, namespace, labels, the controlling owner
//! (`ReplicaSet/web-7d9c`), pod IPs (not for `hostNetwork` pods: theirs is the
//! node's), and containers from their statuses (the previous instance of a
//! restarted container too).
//!
//! Intervals: a pod is open from its creation while it is neither `Succeeded` nor
//! `Failed` and has its IPs (kubelet releases them when the pod's sandbox stops);
//! it ends when it terminates or is deleted, at the time the recorder learns it.
//! Its IPs are owned from the moment its sandbox had its network
//! (`PodReadyToStartContainers`, Kubernetes 1.29+; else `status.startTime`; else
//! creation), so a reused address never has two owners at once.
//!
//! Every change is a full snapshot sent to the recorder (blocking: a pod created
//! and deleted between two recorder ticks is still seen). The API server may be
//! unreachable for a while: the thread reports the failure, recording goes on,
//! and it lists again (backing off to [`RETRY_MAX`]); the tracker closes what
//! disappeared in between at the time it learns it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Client, Config};

use super::cri::{CriContainer, CriPod, Snapshot};

pub const SOURCE_KUBE: &str = "kubernetes";
/// Retry a failed list or watch after this long, doubling to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// A watch is re-established (from its resource version) this often; the
/// server ends it then anyway.
const WATCH_TIMEOUT_S: u32 = 290;

/// Where the API server is and how to authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeChoice {
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`, token and CA under
    /// /var/run/secrets/kubernetes.io/serviceaccount).
    InCluster,
    /// Server and credentials of this kubeconfig's current context.
    Kubeconfig(PathBuf),
    /// This URL, without credentials (e.g. `kubectl proxy`).
    Url(String),
}

impl std::fmt::Display for KubeChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KubeChoice::InCluster => write!(f, "in-cluster service account"),
            KubeChoice::Kubeconfig(p) => write!(f, "kubeconfig {}", p.display()),
            KubeChoice::Url(u) => write!(f, "{u}"),
        }
    }
}

/// What the thread reports: a full snapshot of this node's pods, or why not.
pub(super) type Report = Result<Snapshot, String>;

/// Run the source on a thread of its own until the recorder stops listening.
pub(super) fn spawn(choice: KubeChoice, node: String, report: SyncSender<Report>) -> std::io::Result<()> {
    std::thread::Builder::new().name("kube".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = report.send(Err(format!("Kubernetes API ({choice}): tokio runtime: {e}")));
                return;
            }
        };
        rt.block_on(watch_node(choice, node, report));
    })?;
    Ok(())
}

async fn client(choice: &KubeChoice) -> Result<Client, String> {
    let config = match choice {
        KubeChoice::InCluster => Config::incluster().map_err(|e| e.to_string())?,
        KubeChoice::Kubeconfig(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
            Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.map_err(|e| e.to_string())?
        }
        KubeChoice::Url(url) => Config::new(url.parse().map_err(|e| format!("not a URL: {e}"))?),
    };
    Client::try_from(config).map_err(|e| e.to_string())
}

/// List, then watch from the list's resource version; on any failure, report it
/// and list again after a backoff. Returns when the recorder has stopped.
async fn watch_node(choice: KubeChoice, node: String, report: SyncSender<Report>) {
    let fail = |what: String| Err(format!("Kubernetes API ({choice}): {what}"));
    let selector = format!("spec.nodeName={node}");
    let mut backoff = RETRY_MIN;
    let mut connected = false;
    loop {
        let attempt = async {
            let api: Api<Pod> = Api::all(client(&choice).await.map_err(|e| format!("client: {e}"))?);
            let list = api.list(&ListParams::default().fields(&selector)).await.map_err(|e| format!("listing pods of node {node}: {e}"))?;
            Ok::<_, String>((api, list))
        };
        let (api, list) = match attempt.await {
            Ok(ok) => ok,
            Err(e) => {
                connected = false;
                if report.send(fail(e)).is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
                continue;
            }
        };
        if !connected {
            tracing::info!(kube.api = %choice, node = %node, pods = list.items.len(), "Kubernetes API metadata source connected");
            connected = true;
        }
        backoff = RETRY_MIN;
        let mut pods: HashMap<String, Pod> = HashMap::new();
        for p in list.items {
            upsert(&mut pods, p, &node);
        }
        if report.send(Ok(snapshot(&pods))).is_err() {
            return;
        }
        let mut version = list.metadata.resource_version.unwrap_or_default();
        // Watch until the server ends it or the version is too old, then resume.
        loop {
            let started = tokio::time::Instant::now();
            let params = WatchParams::default().fields(&selector).timeout(WATCH_TIMEOUT_S);
            let mut stream = match api.watch(&params, &version).await {
                Ok(s) => Box::pin(s),
                Err(e) => {
                    if report.send(fail(format!("watching pods of node {node}: {e}"))).is_err() {
                        return;
                    }
                    break;
                }
            };
            let mut relist = false;
            loop {
                let event = match stream.try_next().await {
                    Ok(Some(ev)) => ev,
                    Ok(None) => break,
                    Err(e) => {
                        if report.send(fail(format!("watch stream of node {node}: {e}"))).is_err() {
                            return;
                        }
                        relist = true;
                        break;
                    }
                };
                match event {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                        version = p.metadata.resource_version.clone().unwrap_or(version);
                        upsert(&mut pods, p, &node);
                    }
                    WatchEvent::Deleted(p) => {
                        version = p.metadata.resource_version.clone().unwrap_or(version);
                        if let Some(uid) = &p.metadata.uid {
                            pods.remove(uid);
                        }
                    }
                    WatchEvent::Bookmark(b) => {
                        version = b.metadata.resource_version;
                        continue;
                    }
                    // 410 Gone: the version is too old; list again.
                    WatchEvent::Error(e) => {
                        if e.code != 410 && report.send(fail(format!("watch of node {node}: {} ({})", e.message, e.code))).is_err() {
                            return;
                        }
                        relist = true;
                        break;
                    }
                }
                if report.send(Ok(snapshot(&pods))).is_err() {
                    return;
                }
            }
            if relist {
                break;
            }
            // A server that ends watches at once must not make this spin.
            if started.elapsed() < RETRY_MIN {
                tokio::time::sleep(RETRY_MIN).await;
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Keep `p` when it is on this node (the server filters by field selector;
/// some do not, so check again).
fn upsert(pods: &mut HashMap<String, Pod>, p: Pod, node: &str) {
    let Some(uid) = p.metadata.uid.clone() else { return };
    if p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node) {
        pods.insert(uid, p);
    } else {
        pods.remove(&uid);
    }
}

fn snapshot(pods: &HashMap<String, Pod>) -> Snapshot {
    let mut s = Snapshot::default();
    for p in pods.values() {
        if let Some((pod, containers)) = convert(p) {
            s.pods.push(pod);
            s.containers.extend(containers);
        }
    }
    s
}

fn ns_of(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    i64::try_from(t.0.as_nanosecond()).unwrap_or(i64::MAX)
}

/// One Pod as the tracker sees it; `None` without UID, name or creation time.
pub(super) fn convert(p: &Pod) -> Option<(CriPod, Vec<CriContainer>)> {
    let md = &p.metadata;
    let uid = md.uid.clone()?;
    let created_at = ns_of(md.creation_timestamp.as_ref()?);
    let status = p.status.as_ref();
    let host_network = p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    let mut ips: Vec<String> = Vec::new();
    if !host_network && let Some(st) = status {
        for ip in st.pod_ips.iter().flatten().map(|i| i.ip.clone()).chain(st.pod_ip.clone()) {
            if !ip.is_empty() && !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let terminated = matches!(phase, "Succeeded" | "Failed");
    let ready = !terminated && (host_network || !ips.is_empty());
    let sandbox_ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodReadyToStartContainers" && c.status == "True"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(ns_of);
    let network_from = sandbox_ready.or_else(|| status.and_then(|s| s.start_time.as_ref()).map(ns_of)).unwrap_or(created_at).max(created_at);
    let owner = md.owner_references.iter().flatten().find(|o| o.controller == Some(true)).map(|o| format!("{}/{}", o.kind, o.name));
    let labels: BTreeMap<String, String> = md.labels.clone().unwrap_or_default();
    let pod = CriPod {
        sandbox_id: uid.clone(),
        uid: uid.clone(),
        name: md.name.clone()?,
        namespace: md.namespace.clone().unwrap_or_else(|| "default".into()),
        labels: serde_json::to_string(&labels).expect("strings serialize"),
        created_at,
        ready,
        ips,
        owner,
        network_from,
    };
    let mut containers = Vec::new();
    if let Some(st) = status {
        let all = st.init_container_statuses.iter().flatten().chain(st.container_statuses.iter().flatten()).chain(st.ephemeral_container_statuses.iter().flatten());
        for cs in all {
            containers.extend(containers_of(cs, &uid));
        }
    }
    Some((pod, containers))
}

/// The current instance of a container and, after a restart, the previous one.
fn containers_of(cs: &ContainerStatus, pod_uid: &str) -> Vec<CriContainer> {
    let mut out = Vec::new();
    let current = cs.container_id.as_deref().zip(cs.state.as_ref());
    let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()).and_then(|t| Some((t.container_id.as_deref()?, t)));
    if let Some((id, state)) = current {
        let (started, running) = match (&state.running, &state.terminated) {
            (Some(r), _) => (r.started_at.as_ref(), true),
            (None, Some(t)) => (t.started_at.as_ref(), false),
            // Waiting with an id: created, not started; nothing ran in it yet.
            (None, None) => (None, false),
        };
        if let (Some((runtime, id)), Some(started)) = (split_id(id), started) {
            out.push(CriContainer { id, sandbox_id: pod_uid.into(), name: cs.name.clone(), image: cs.image.clone(), created_at: ns_of(started), running, runtime });
        }
    }
    if let Some((id, t)) = last
        && let (Some((runtime, id)), Some(started)) = (split_id(id), t.started_at.as_ref())
        && !out.iter().any(|c| c.id == id)
    {
        out.push(CriContainer { id, sandbox_id: pod_uid.into(), name: cs.name.clone(), image: cs.image.clone(), created_at: ns_of(started), running: false, runtime });
    }
    out
}

/// `containerd://<id>` -> (`containerd`, `<id>`): the id the cgroup path carries.
fn split_id(s: &str) -> Option<(String, String)> {
    let (runtime, id) = s.split_once("://")?;
    (!id.is_empty()).then(|| (runtime.to_string(), id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_running_pod_becomes_a_pod_with_owner_labels_ips_and_containers() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "web-7d9c-abcde", "namespace": "shop", "uid": "u-1", "creationTimestamp": "2026-11-27T10:00:00Z",
                         "labels": {"app": "web"}, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c", "uid": "rs", "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "app"}]},
            "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}], "startTime": "2026-11-27T10:00:01Z",
                       "conditions": [{"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2026-11-27T10:00:02Z"}],
                       "containerStatuses": [{"name": "app", "image": "web:1", "imageID": "", "ready": true, "restartCount": 1,
                           "containerID": "containerd://c2", "state": {"running": {"startedAt": "2026-11-27T10:00:09Z"}},
                           "lastState": {"terminated": {"exitCode": 1, "containerID": "containerd://c1", "startedAt": "2026-11-27T10:00:03Z"}}}]}
        }));
        let (cp, cs) = convert(&p).unwrap();
        let t = |s: &str| s.parse::<k8s_openapi::jiff::Timestamp>().unwrap().as_nanosecond() as i64;
        assert_eq!((cp.uid.as_str(), cp.name.as_str(), cp.namespace.as_str()), ("u-1", "web-7d9c-abcde", "shop"));
        assert_eq!(cp.owner.as_deref(), Some("ReplicaSet/web-7d9c"));
        assert_eq!(cp.labels, r#"{"app":"web"}"#);
        assert_eq!(cp.ips, vec!["10.244.1.5", "fd00::5"]);
        assert!(cp.ready);
        assert_eq!((cp.created_at, cp.network_from), (t("2026-11-27T10:00:00Z"), t("2026-11-27T10:00:02Z")));
        assert_eq!(
            cs.iter().map(|c| (c.id.as_str(), c.runtime.as_str(), c.running, c.created_at)).collect::<Vec<_>>(),
            vec![("c2", "containerd", true, t("2026-11-27T10:00:09Z")), ("c1", "containerd", false, t("2026-11-27T10:00:03Z"))]
        );
    }

    #[test]
    fn host_network_pending_and_finished_pods_own_no_address() {
        let base = |status: serde_json::Value, host: bool| {
            pod(serde_json::json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u", "creationTimestamp": "2026-11-27T10:00:00Z"},
                "spec": {"nodeName": "n1", "hostNetwork": host, "containers": []}, "status": status}))
        };
        let host = convert(&base(serde_json::json!({"phase": "Running", "podIP": "192.0.2.10"}), true)).unwrap().0;
        assert!(host.ips.is_empty() && host.ready, "a hostNetwork pod's address is the node's");
        let pending = convert(&base(serde_json::json!({"phase": "Pending"}), false)).unwrap().0;
        assert!(!pending.ready, "no IP yet: not opened until it has one");
        let done = convert(&base(serde_json::json!({"phase": "Succeeded", "podIP": "10.244.1.9"}), false)).unwrap().0;
        assert!(!done.ready, "a finished pod's sandbox is stopped and its IP released");
        assert_eq!(done.network_from, done.created_at);
    }

    #[test]
    fn pods_of_other_nodes_are_dropped_even_when_the_server_ignores_the_selector() {
        let mut pods = HashMap::new();
        let on = |node: &str| pod(serde_json::json!({"metadata": {"name": "p", "uid": "u", "creationTimestamp": "2026-11-27T10:00:00Z"}, "spec": {"nodeName": node, "containers": []}}));
        upsert(&mut pods, on("other"), "n1");
        assert!(pods.is_empty());
        upsert(&mut pods, on("n1"), "n1");
        assert_eq!(pods.len(), 1);
        assert_eq!(snapshot(&pods).pods[0].namespace, "default");
    }
}
