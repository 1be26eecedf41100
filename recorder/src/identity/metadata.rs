//! The identity stage's side of metadata sources (CRI, the Kubernetes API):
//! refreshing them, naming the pods that cgroup paths identify, and turning their
//! reports into catalog intervals. The recorder works with no source at all.
//!
//! Each source runs on a thread of its own: the recording loop only sends
//! requests and picks up snapshots, so a slow or hung runtime or API server never
//! stalls it (rows of pods waiting for their names wait at most [`META_WAIT_NS`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

use super::cri::{CriClient, CriTracker, SOURCE_CRI, Snapshot};
use super::kube::{KubeChoice, SOURCE_KUBE};
use super::{Identity, IdentityWrites};
use crate::rows::{PodIdentity, ReadRows, Row, Table, VisitRows};
use podtrail_schema::records::{ContainerRecord, IpOwnerRecord, PodRecord};

/// Poll the runtime this often (new pods are also asked for on their first event).
const POLL: Duration = Duration::from_secs(2);
/// Reconnect attempts to an unreachable runtime are this far apart.
const RECONNECT: Duration = Duration::from_secs(10);
/// On-demand refreshes (a new pod's first event) are at least this far apart.
const MIN_REFRESH_NS: i64 = 100_000_000;
/// Rows of a pod the metadata source does not know yet wait at most this long
/// (from the pod's first event) for its name before they are written without.
pub const META_WAIT_NS: i64 = 3_000_000_000;

/// What a source's thread reports: a full snapshot, or why not (one line that
/// names the source).
type Report = Result<Snapshot, String>;

pub(super) struct SourceState {
    /// `cri` or `kubernetes`: the intervals' source.
    name: &'static str,
    /// On-demand refreshes (CRI; the API source pushes every change).
    requests: Option<SyncSender<()>>,
    reports: Receiver<Report>,
    tracker: CriTracker,
    last_request: i64,
    /// Open intervals of this source from a previous run, matched on the first snapshot.
    resume: Option<(Vec<PodRecord>, Vec<ContainerRecord>, Vec<IpOwnerRecord>)>,
    pending: IdentityWrites,
}

impl SourceState {
    fn new(name: &'static str, requests: Option<SyncSender<()>>, reports: Receiver<Report>) -> Self {
        SourceState { name, requests, reports, tracker: CriTracker::new(name), last_request: i64::MIN / 2, resume: None, pending: IdentityWrites::default() }
    }
}

impl Identity {
    /// Use the CRI runtime at `socket` as a metadata source. Connects now
    /// (bounded by the call timeout) so the log says at start whether names will
    /// come; when the runtime does not answer, recording goes on and the source's
    /// thread keeps retrying.
    pub fn with_cri(&mut self, socket: PathBuf) {
        let client = match CriClient::connect(&socket) {
            Ok(c) => {
                tracing::info!(cri.socket = %socket.display(), cri.runtime = %c.runtime_name, "CRI metadata source connected");
                Some(c)
            }
            Err(e) => {
                tracing::warn!("recording without CRI pod names for now (retrying every {} s): {e}", RECONNECT.as_secs());
                None
            }
        };
        let (requests, requested) = std::sync::mpsc::sync_channel::<()>(1);
        let (report, reports) = std::sync::mpsc::sync_channel::<Report>(4);
        let spawned = std::thread::Builder::new().name("cri".into()).spawn(move || cri_thread(socket, client, requested, report));
        if let Err(e) = spawned {
            tracing::warn!("recording without CRI pod names: starting its thread: {e}");
            return;
        }
        self.sources.push(SourceState::new(SOURCE_CRI, Some(requests), reports));
    }

    /// Use the Kubernetes API (the pods of this node) as a metadata source. Its
    /// thread connects, lists and watches; failures are logged and retried,
    /// recording goes on.
    pub fn with_kube(&mut self, choice: KubeChoice) {
        // Deep enough that a burst of pod changes never blocks the watch for
        // long; it blocks rather than drop a snapshot (a short-lived pod).
        let (report, reports) = std::sync::mpsc::sync_channel::<Report>(256);
        tracing::info!(kube.api = %choice, node = %self.node, "Kubernetes API metadata source: watching this node's pods");
        if let Err(e) = super::kube::spawn(choice, self.node.clone(), report) {
            tracing::warn!("recording without Kubernetes API pod metadata: starting its thread: {e}");
            return;
        }
        self.sources.push(SourceState::new(SOURCE_KUBE, None, reports));
    }

    /// Continue the intervals a previous run of source `name` left open.
    pub fn resume_source(&mut self, name: &str, pods: Vec<PodRecord>, containers: Vec<ContainerRecord>, ips: Vec<IpOwnerRecord>) {
        if let Some(st) = self.sources.iter_mut().find(|s| s.name == name) {
            st.resume = Some((pods, containers, ips));
        }
    }

    pub(super) fn has_metadata_source(&self) -> bool {
        !self.sources.is_empty()
    }

    /// Ask the source for a fresh snapshot (rate-limited, never blocks), and
    /// apply the snapshots that have arrived.
    pub(super) fn poll_metadata(&mut self, now: i64) {
        for st in &mut self.sources {
            let Some(requests) = &st.requests else { continue };
            if now - st.last_request >= MIN_REFRESH_NS {
                st.last_request = now;
                // Full: a request is already waiting, which is as good.
                if let Err(TrySendError::Disconnected(())) = requests.try_send(()) {
                    tracing::warn!(source = st.name, "the metadata source's thread is gone: no more pod names from it");
                }
            }
        }
        self.drain_metadata(now);
    }

    /// Apply the snapshots that have arrived, without asking for a new one.
    fn drain_metadata(&mut self, now: i64) {
        let mut sources = std::mem::take(&mut self.sources);
        for st in &mut sources {
            loop {
                match st.reports.try_recv() {
                    Ok(Ok(snapshot)) => {
                        *self.stats.reports_of(st.name, true) += 1;
                        if let Some((p, c, i)) = st.resume.take() {
                            st.tracker.resume(p, c, i, &snapshot);
                        }
                        self.apply_snapshot(st, &snapshot, now);
                    }
                    Ok(Err(e)) => {
                        *self.stats.reports_of(st.name, false) += 1;
                        tracing::warn!(source = st.name, "metadata refresh failed, recording goes on without new pod names from it: {e}");
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
        }
        self.sources = sources;
    }

    fn apply_snapshot(&mut self, st: &mut SourceState, snapshot: &Snapshot, now: i64) {
        let qos_of = |uid: &str| self.cgroups.values().find(|r| r.parsed.pod_uid.as_deref() == Some(uid)).and_then(|r| r.parsed.qos).map(|q| q.as_str().to_string());
        let changes = st.tracker.apply(snapshot, &self.node, qos_of, now);
        st.pending.pods.extend(changes.pods);
        st.pending.containers.extend(changes.containers);
        st.pending.ips.extend(changes.ips);
        let mut named = Vec::new();
        for (uid, _) in &changes.meta {
            self.meta_seen.insert(uid.clone(), now);
        }
        for (uid, m) in changes.meta {
            if self.meta.get(&uid) != Some(&m) {
                named.push(uid.clone());
                self.meta.insert(uid, m);
            }
        }
        if named.is_empty() {
            return;
        }
        // Name the pods the cgroup paths already identified, and their open
        // observed intervals.
        for uid in &named {
            self.nameless_since.remove(uid);
        }
        let ids: Vec<u64> = self.cgroups.iter().filter(|(_, r)| r.parsed.pod_uid.as_ref().is_some_and(|u| named.contains(u))).map(|(id, _)| *id).collect();
        for id in ids {
            let identity = self.identity_of(&self.cgroups[&id].parsed);
            self.cgroups.get_mut(&id).expect("present").identity = identity;
        }
        for uid in &named {
            let m = &self.meta[uid];
            if let Some(p) = self.pods.get_mut(uid).filter(|p| p.record.pod_name.is_none()) {
                p.record.pod_name = Some(m.name.clone());
                p.record.pod_namespace = Some(m.namespace.clone());
                p.dirty = true;
            }
            for i in self.ips.values_mut().filter(|i| &i.record.pod_uid == uid && i.record.pod_name.is_none()) {
                i.record.pod_name = Some(m.name.clone());
                i.record.pod_namespace = Some(m.namespace.clone());
                i.dirty = true;
            }
        }
    }

    /// Before a release: give waiting rows of pods that were nameless when
    /// stamped the names a refresh has learned since (refreshing once more if
    /// some are still nameless).
    pub(super) fn name_waiting(&mut self, now: i64) {
        if !self.has_metadata_source() {
            return;
        }
        fn nameless(i: Option<&Arc<PodIdentity>>) -> bool {
            i.is_some_and(|i| i.pod_name.is_none())
        }
        struct Any(bool);
        impl ReadRows for Any {
            fn read<R: Row>(&mut self, t: &Table<R>) {
                self.0 = self.0 || t.rows.iter().any(|r| nameless(r.identity()));
            }
        }
        let mut any = Any(false);
        self.waiting.read(&mut any);
        if !any.0 {
            return;
        }
        self.poll_metadata(now);
        struct Rename<'a>(&'a std::collections::HashMap<u64, super::Resolved>);
        impl VisitRows for Rename<'_> {
            fn visit<R: Row>(&mut self, t: &mut Table<R>) {
                for r in &mut t.rows {
                    if nameless(r.identity())
                        && let Some(i) = self.0.get(&r.cgroup_id()).and_then(|c| c.identity.clone())
                    {
                        *r.identity_mut() = Some(i);
                    }
                }
            }
        }
        let mut waiting = std::mem::take(&mut self.waiting);
        waiting.visit(&mut Rename(&self.cgroups));
        self.waiting = waiting;
    }

    /// While pods wait for their names, ask the source again (every
    /// `MIN_REFRESH_NS` at most): a short-lived pod may be listed only for a
    /// moment between its first event and its deletion.
    pub fn refresh_waiting(&mut self, now: i64) {
        if self.has_metadata_source() && !self.nameless_since.is_empty() {
            self.poll_metadata(now);
        }
    }

    /// Whether a row with this identity should wait for its pod's name: a
    /// metadata source is configured, it does not know the pod (yet), and the
    /// pod was first seen less than [`META_WAIT_NS`] ago.
    pub fn should_wait(&self, id: Option<&PodIdentity>, now: i64) -> bool {
        super::waits(self.has_metadata_source(), &self.nameless_since, id, now)
    }

    /// Periodic refresh; hands over what the source changed.
    pub(super) fn tick_metadata(&mut self, now: i64, out: &mut IdentityWrites) {
        // The threads poll (or watch) on their own; pick up what they sent.
        self.drain_metadata(now);
        // Names of pods the runtime no longer lists stay for late events, then go.
        let forget: Vec<String> = self.meta_seen.iter().filter(|&(_, &t)| now - t > super::GONE_GRACE_NS).map(|(u, _)| u.clone()).collect();
        for uid in forget {
            self.meta_seen.remove(&uid);
            self.meta.remove(&uid);
        }
        for st in &mut self.sources {
            let p = std::mem::take(&mut st.pending);
            out.pods.extend(p.pods);
            out.containers.extend(p.containers);
            out.ips.extend(p.ips);
        }
    }

    /// The identity rows of a cgroup carry: its pod and container, named when a
    /// metadata source knows the pod.
    pub(super) fn identity_of(&self, parsed: &super::cgroup_path::CgroupIdentity) -> Option<Arc<PodIdentity>> {
        let uid = parsed.pod_uid.as_ref()?;
        let m = self.meta.get(uid);
        Some(Arc::new(PodIdentity {
            container_id: parsed.container_id.clone(),
            pod_uid: uid.clone(),
            pod_name: m.map(|m| m.name.clone()),
            pod_namespace: m.map(|m| m.namespace.clone()),
        }))
    }
}

/// The CRI thread: a snapshot on every request and every `POLL`; reconnects
/// after a failure, at most every `RECONNECT`.
fn cri_thread(socket: PathBuf, mut client: Option<CriClient>, requested: Receiver<()>, report: SyncSender<Report>) {
    let mut last_connect = std::time::Instant::now();
    loop {
        match requested.recv_timeout(POLL) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if client.is_none() {
            if last_connect.elapsed() < RECONNECT {
                continue;
            }
            last_connect = std::time::Instant::now();
            match CriClient::connect(&socket) {
                Ok(c) => {
                    tracing::info!(cri.socket = %socket.display(), cri.runtime = %c.runtime_name, "CRI metadata source connected");
                    client = Some(c);
                }
                Err(e) => {
                    tracing::debug!("CRI still unreachable: {e}");
                    continue;
                }
            }
        }
        let c = client.as_mut().expect("connected");
        let result = c.snapshot().map_err(|e| e.to_string());
        if result.is_err() {
            client = None;
            last_connect = std::time::Instant::now();
        }
        // The recorder has stopped when nobody receives.
        if report.send(result).is_err() {
            return;
        }
    }
}
