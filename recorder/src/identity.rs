//! `identity` stage: who a row belonged to at event time.
//!
//! In: rows from `procs` (each carries the kernel's cgroup id of the process or
//! socket). Out: the same rows stamped with container id and pod UID (from the
//! cgroup path, see [`cgroup_path`]) and pod name, held here while a new pod's
//! name is asked for and then released to the `batch` stage; and the identity
//! history as catalog intervals: `pods`, `containers` and `ip_owners` rows with
//! source `observed`.
//!
//! - cgroup id -> path: the id is the inode of the cgroup directory; an unknown id
//!   triggers one walk of the cgroup v2 tree within milliseconds of the first
//!   event from it (walks rate-limited). Ids of removed cgroups stay resolvable
//!   for [`GONE_GRACE_NS`] so late events still get their pod. A cgroup created
//!   and removed between two walks cannot be resolved: its rows keep null pod
//!   columns and are counted as `identity` loss.
//! - `ip_owners` (observed): the local address of a pod's sockets, outside the
//!   host network namespace, is an address that pod owned at that moment. An
//!   interval opens at the first such event, and closes when another pod is seen
//!   with that address (at that event's time) or when the pod's cgroup disappears
//!   (at the time that was noticed, within about a second).
//! - `pods` / `containers` (observed): from the first event in the pod's /
//!   container's cgroup until that cgroup disappears.
//!
//! Nothing here invents a name: pod name and namespace come only from metadata
//! sources; with none, they stay null and the UID (from the kernel's cgroup path)
//! is what identifies the pod.

pub mod cgroup_path;
pub mod cri;
pub mod kube;
mod metadata;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::rows::{Hold, PodIdentity, ReadRows, Row, RowSet, Table, VisitRows};
use podtrail_schema::records::{ContainerRecord, IpOwnerRecord, PodRecord};
use cgroup_path::CgroupIdentity;

/// How long a removed cgroup's identity is kept for late events.
pub const GONE_GRACE_NS: i64 = 10 * 60 * 1_000_000_000;
/// How long an id that no walk found is not looked for again.
const UNKNOWN_RETRY_NS: i64 = 10 * 1_000_000_000;
/// Walks of the cgroup tree are at least this far apart (except at a flush).
pub const MIN_WALK_INTERVAL_NS: i64 = 20 * 1_000_000;

pub const SOURCE_OBSERVED: &str = "observed";

struct Resolved {
    path: PathBuf,
    parsed: CgroupIdentity,
    identity: Option<Arc<PodIdentity>>,
    /// Wall time the cgroup was found removed.
    gone_at: Option<i64>,
}

struct OpenPod {
    record: PodRecord,
    cgroup: PathBuf,
    dirty: bool,
}

struct OpenContainer {
    record: ContainerRecord,
    cgroup: PathBuf,
    dirty: bool,
}

struct OpenIp {
    record: IpOwnerRecord,
    dirty: bool,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityStats {
    /// Rows whose cgroup id no walk of the cgroup tree found (the cgroup was
    /// created and removed between walks): their pod columns are null.
    pub unresolved_rows: u64,
    pub cgroup_walks: u64,
    /// Metadata refreshes from the CRI runtime, and the ones that failed.
    pub cri_polls: u64,
    pub cri_errors: u64,
    /// Snapshots from the Kubernetes API source (one per pod change), and its failures.
    pub kube_updates: u64,
    pub kube_errors: u64,
    pub tracked_cgroups: usize,
    pub open_pods: usize,
    pub open_ips: usize,
}

/// Catalog rows to write: new intervals and ones that changed (upserts).
#[derive(Debug, Default)]
pub struct IdentityWrites {
    pub pods: Vec<PodRecord>,
    pub containers: Vec<ContainerRecord>,
    pub ips: Vec<IpOwnerRecord>,
}

impl IdentityWrites {
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.containers.is_empty() && self.ips.is_empty()
    }
}

pub struct Identity {
    root: PathBuf,
    node: String,
    host_netns: u32,
    cgroups: HashMap<u64, Resolved>,
    unknown: HashMap<u64, i64>,
    pods: HashMap<String, OpenPod>,
    containers: HashMap<String, OpenContainer>,
    ips: HashMap<IpAddr, OpenIp>,
    closed: IdentityWrites,
    stats: IdentityStats,
    unresolved_window: std::collections::BTreeMap<&'static str, u64>,
    last_walk: i64,
    /// Pod names by UID, from metadata sources, and when the source last listed each.
    meta: HashMap<String, cri::PodMeta>,
    meta_seen: HashMap<String, i64>,
    /// Pods seen without a name while a metadata source is configured, since when.
    nameless_since: HashMap<String, i64>,
    sources: Vec<metadata::SourceState>,
    /// Rows accepted and not stamped yet (a walk they need was not due).
    incoming: RowSet,
    /// Stamped rows not released yet.
    waiting: RowSet,
}

impl IdentityStats {
    /// The counter of a metadata source's good (`ok`) or failed reports.
    fn reports_of(&mut self, source: &str, ok: bool) -> &mut u64 {
        match (source == cri::SOURCE_CRI, ok) {
            (true, true) => &mut self.cri_polls,
            (true, false) => &mut self.cri_errors,
            (false, true) => &mut self.kube_updates,
            (false, false) => &mut self.kube_errors,
        }
    }
}

impl Identity {
    /// `root`: the cgroup v2 mount; `host_netns`: inode of the host network
    /// namespace (addresses used there are the node's, not a pod's).
    pub fn new(root: PathBuf, node: String, host_netns: u32) -> Self {
        Identity {
            root,
            node,
            host_netns,
            cgroups: HashMap::new(),
            unknown: HashMap::new(),
            pods: HashMap::new(),
            containers: HashMap::new(),
            ips: HashMap::new(),
            closed: IdentityWrites::default(),
            stats: IdentityStats::default(),
            unresolved_window: Default::default(),
            last_walk: i64::MIN / 2,
            meta: HashMap::new(),
            meta_seen: HashMap::new(),
            nameless_since: HashMap::new(),
            sources: Vec::new(),
            incoming: RowSet::default(),
            waiting: RowSet::default(),
        }
    }

    pub fn stats(&self) -> IdentityStats {
        IdentityStats { tracked_cgroups: self.cgroups.len(), open_pods: self.pods.len(), open_ips: self.ips.len(), ..self.stats }
    }

    /// Continue the intervals a previous run left open (observed, this node).
    /// Ones whose cgroup is gone are closed at the next [`Identity::tick`].
    pub fn resume(&mut self, pods: Vec<PodRecord>, containers: Vec<ContainerRecord>, ips: Vec<IpOwnerRecord>) {
        if !pods.is_empty() {
            self.walk();
        }
        for p in pods {
            let cgroup = self.pod_cgroup_of(&p.pod_uid);
            self.pods.insert(p.pod_uid.clone(), OpenPod { record: p, cgroup, dirty: false });
        }
        for c in containers {
            // Without the path, the container's end is its pod's end.
            let cgroup = c.pod_uid.as_ref().and_then(|u| self.pods.get(u)).map(|p| p.cgroup.clone()).unwrap_or_default();
            self.containers.insert(c.container_id.clone(), OpenContainer { record: c, cgroup, dirty: false });
        }
        for i in ips {
            match i.ip.parse::<IpAddr>() {
                Ok(key) => {
                    self.ips.insert(key, OpenIp { record: i, dirty: false });
                }
                Err(_) => tracing::warn!(ip = %i.ip, "catalog holds an open ip_owners row with an unparsable address; not resumed"),
            }
        }
    }

    /// Path of a resumed pod's cgroup, from the last walk (empty when it is gone).
    fn pod_cgroup_of(&self, uid: &str) -> PathBuf {
        self.cgroups
            .values()
            .find(|r| r.parsed.pod_uid.as_deref() == Some(uid))
            .and_then(|r| r.parsed.pod_cgroup.as_ref())
            .map(|p| self.root.join(p))
            .unwrap_or_default()
    }

    /// Take rows fresh from the process table (moved out of `fresh`): they stay
    /// here, stamped by [`Identity::stamp`], until [`Identity::release`] lets
    /// them go (at once, or once their pod is named or has waited long enough).
    pub fn accept(&mut self, fresh: &mut RowSet) {
        self.incoming.append(fresh, false);
    }

    /// Rows held here (not released yet).
    pub fn pending(&self) -> usize {
        self.incoming.len() + self.waiting.len()
    }

    /// The time of the oldest row held here, if any.
    pub fn oldest_pending(&self) -> Option<i64> {
        match (self.incoming.oldest_time(), self.waiting.oldest_time()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Stamp the rows accepted since the last call with their identity and
    /// record what they show (pods, containers, addresses). Called after every
    /// drain of the ring buffer, so a new cgroup is resolved within milliseconds
    /// of its first event, while it still exists. An unknown cgroup id triggers a
    /// walk of the cgroup tree, at most one per [`MIN_WALK_INTERVAL_NS`] unless
    /// `force` (the flush): rows waiting for a walk are stamped by a later call.
    /// `now`: wall clock, ns.
    pub fn stamp(&mut self, now: i64, force: bool) {
        if self.incoming.is_empty() {
            return;
        }
        // A storm's rows repeat one cgroup row after row: each run is checked once.
        struct Missing<'a> {
            known: &'a Identity,
            now: i64,
            prev: Option<u64>,
            ids: Vec<u64>,
        }
        impl ReadRows for Missing<'_> {
            fn read<R: Row>(&mut self, t: &Table<R>) {
                for r in &t.rows {
                    let id = r.cgroup_id();
                    if self.prev.replace(id) != Some(id) && !self.known.cgroups.contains_key(&id) && self.known.unknown.get(&id).is_none_or(|&t| self.now - t > UNKNOWN_RETRY_NS) {
                        self.ids.push(id);
                    }
                }
            }
        }
        let mut missing = Missing { known: self, now, prev: None, ids: Vec::new() };
        self.incoming.read(&mut missing);
        let missing = missing.ids;
        if !missing.is_empty() {
            if !force && now - self.last_walk < MIN_WALK_INTERVAL_NS {
                return;
            }
            self.last_walk = now;
            self.walk();
            for id in &missing {
                if !self.cgroups.contains_key(id) {
                    // Not looked for again for a while: no walk per batch for it.
                    self.unknown.insert(*id, now);
                }
            }
            // New pods: their names come from the metadata source, asked now;
            // their rows wait for the answer (bounded, see `should_wait`).
            if self.has_metadata_source() {
                let nameless: Vec<String> = missing.iter().filter_map(|id| self.cgroups.get(id)?.parsed.pod_uid.clone()).filter(|uid| !self.meta.contains_key(uid)).collect();
                if !nameless.is_empty() {
                    for uid in nameless {
                        self.nameless_since.entry(uid).or_insert(now);
                    }
                    self.poll_metadata(now);
                }
            }
        }
        // First sighting per cgroup and per (address, pod) in this call: what
        // may open an interval. Rows of already-known pods cost a lookup per
        // run of rows of one cgroup.
        struct Stamp<'a> {
            id: &'a mut Identity,
            last: Option<(u64, Option<Option<Arc<PodIdentity>>>)>,
            seen: Earliest<u64, ()>,
            addrs: Earliest<(IpAddr, *const PodIdentity), Arc<PodIdentity>>,
        }
        impl VisitRows for Stamp<'_> {
            fn visit<R: Row>(&mut self, t: &mut Table<R>) {
                for r in &mut t.rows {
                    let identity = self.id.lookup_run(&mut self.last, r.cgroup_id(), R::TABLE.name);
                    *r.identity_mut() = identity;
                    self.seen.note(r.cgroup_id(), r.time(), || ());
                    if let (Some(id), Some((ip, netns))) = (r.identity(), r.local_address())
                        && netns != self.id.host_netns
                        && is_pod_address(ip)
                    {
                        self.addrs.note((ip, Arc::as_ptr(id)), r.time(), || Arc::clone(id));
                    }
                }
            }
        }
        let mut rows = std::mem::take(&mut self.incoming);
        let mut st = Stamp { id: self, last: None, seen: Earliest::default(), addrs: Earliest::default() };
        rows.visit(&mut st);
        let Stamp { seen, addrs, .. } = st;
        self.waiting.append(&mut rows, true);
        // Emptied, with its allocation: the next rows go into it.
        self.incoming = rows;
        // Oldest first, so intervals open at the earliest event that shows them.
        for (t, cg, ()) in seen.into_oldest_first() {
            self.observe_cgroup(t, cg);
        }
        for (t, (ip, _), id) in addrs.into_oldest_first() {
            self.observe_ip(t, ip, &id);
        }
    }

    /// The rows ready to be stored: every stamped row, except those of a pod a
    /// metadata source has not named yet, which wait (a few seconds at most,
    /// see [`Identity::should_wait`]) unless `all` (shutdown). Rows of a pod
    /// named since they were stamped get its name first. Stamps what is still
    /// unstamped first (a walk if needed).
    pub fn release(&mut self, now: i64, all: bool) -> RowSet {
        self.stamp(now, true);
        self.name_waiting(now);
        let has_source = self.has_metadata_source();
        let nameless = &self.nameless_since;
        let wait = |id: Option<&PodIdentity>| waits(has_source, nameless, id, now);
        // When no pod waits, the rows are not even looked at.
        let hold = (!all && has_source && !nameless.is_empty()).then_some(&wait as Hold<'_>);
        self.waiting.release(hold)
    }

    /// Rows that were released and stored: their tables' allocations are kept
    /// for the next rows.
    pub fn recycle(&mut self, spent: RowSet) {
        self.waiting.recycle(spent);
    }

    /// The identity of a row of `cgroup_id` (none for a host cgroup, or when
    /// the cgroup is unresolved: such a row is counted as an identity gap).
    /// `last` remembers the last cgroup looked up and what it gave: a storm's
    /// rows repeat one cgroup row after row, and each such row then costs no
    /// hash lookup (unresolved rows are still counted one by one).
    #[expect(clippy::option_option, reason = "outer: not in the map; inner: a host cgroup")]
    fn lookup_run(&mut self, last: &mut Option<(u64, Option<Option<Arc<PodIdentity>>>)>, cgroup_id: u64, table: &'static str) -> Option<Arc<PodIdentity>> {
        let found = match last {
            Some((id, found)) if *id == cgroup_id => found,
            _ => &mut last.insert((cgroup_id, self.cgroups.get(&cgroup_id).map(|r| r.identity.clone()))).1,
        };
        match found {
            Some(identity) => identity.clone(),
            None => {
                self.stats.unresolved_rows += 1;
                *self.unresolved_window.entry(table).or_default() += 1;
                None
            }
        }
    }

    /// Rows stored without identity since the last call, per table (their
    /// cgroup was gone before it could be resolved): a gap to count as loss.
    pub fn take_unresolved(&mut self) -> std::collections::BTreeMap<&'static str, u64> {
        std::mem::take(&mut self.unresolved_window)
    }

    /// The pod UID of a cgroup (none for a host cgroup, or one gone before it
    /// could be resolved): how kernel drop counts per cgroup are put on a pod.
    /// A cgroup not seen yet is looked for in the tree now: its drops may be
    /// all that is known of it so far (its rows were the ones dropped).
    pub fn pod_of_cgroup(&mut self, cgroup_id: u64, now: i64) -> Option<String> {
        if !self.cgroups.contains_key(&cgroup_id) && self.unknown.get(&cgroup_id).is_none_or(|&t| now - t > UNKNOWN_RETRY_NS) {
            self.last_walk = now;
            self.walk();
            if !self.cgroups.contains_key(&cgroup_id) {
                self.unknown.insert(cgroup_id, now);
            }
        }
        self.cgroups.get(&cgroup_id)?.identity.as_ref().map(|i| i.pod_uid.clone())
    }

    fn observe_cgroup(&mut self, t: i64, cgroup_id: u64) {
        let Some(r) = self.cgroups.get(&cgroup_id) else { return };
        let (Some(uid), Some(pod_cgroup)) = (&r.parsed.pod_uid, &r.parsed.pod_cgroup) else { return };
        if r.gone_at.is_some() {
            // A late event of a removed cgroup: its intervals were already closed.
            return;
        }
        if self.pods.contains_key(uid) && r.parsed.container_id.as_ref().is_none_or(|c| self.containers.contains_key(c)) {
            return;
        }
        let pod = self.pods.entry(uid.clone()).or_insert_with(|| OpenPod {
            record: PodRecord {
                pod_uid: uid.clone(),
                pod_namespace: None,
                pod_name: None,
                node: self.node.clone(),
                labels: None,
                owner: None,
                qos_class: r.parsed.qos.map(|q| q.as_str().to_string()),
                valid_from: t,
                valid_to: None,
                source: SOURCE_OBSERVED.into(),
            },
            cgroup: self.root.join(pod_cgroup),
            dirty: true,
        });
        if pod.cgroup.as_os_str().is_empty() {
            pod.cgroup = self.root.join(pod_cgroup);
        }
        let Some(cid) = &r.parsed.container_id else { return };
        self.containers.entry(cid.clone()).or_insert_with(|| OpenContainer {
            record: ContainerRecord {
                container_id: cid.clone(),
                pod_uid: Some(uid.clone()),
                container_name: None,
                image: None,
                runtime: r.parsed.runtime.map(str::to_string),
                cgroup_id: Some(cgroup_id),
                valid_from: t,
                valid_to: None,
                source: SOURCE_OBSERVED.into(),
            },
            cgroup: r.path.clone(),
            dirty: true,
        });
    }

    fn observe_ip(&mut self, t: i64, key: IpAddr, id: &PodIdentity) {
        if let Some(cur) = self.ips.get_mut(&key) {
            if cur.record.pod_uid == id.pod_uid {
                return;
            }
            // Another pod uses the address now: the previous ownership ended.
            let mut done = self.ips.remove(&key).expect("present").record;
            done.valid_to = Some(t.max(done.valid_from));
            self.closed.ips.push(done);
        }
        let record = IpOwnerRecord {
            ip: key.to_string(),
            pod_uid: id.pod_uid.clone(),
            pod_namespace: id.pod_namespace.clone(),
            pod_name: id.pod_name.clone(),
            node: self.node.clone(),
            valid_from: t,
            valid_to: None,
            source: SOURCE_OBSERVED.into(),
        };
        self.ips.insert(key, OpenIp { record, dirty: true });
    }

    /// Close the intervals of pods and containers whose cgroup is gone, forget
    /// cgroups gone for longer than the grace period, and return every catalog
    /// row that is new or changed since the last call. `now`: wall clock, ns.
    pub fn tick(&mut self, now: i64) -> IdentityWrites {
        let mut out = std::mem::take(&mut self.closed);
        let gone_pods: Vec<String> = self.pods.iter().filter(|(_, p)| !exists(&p.cgroup)).map(|(u, _)| u.clone()).collect();
        for uid in gone_pods {
            let mut p = self.pods.remove(&uid).expect("present").record;
            p.valid_to = Some(now.max(p.valid_from));
            tracing::debug!(pod.uid = %uid, "pod cgroup gone: closing its intervals");
            out.pods.push(p);
            let ips: Vec<IpAddr> = self.ips.iter().filter(|(_, i)| i.record.pod_uid == uid).map(|(k, _)| *k).collect();
            for k in ips {
                let mut i = self.ips.remove(&k).expect("present").record;
                i.valid_to = Some(now.max(i.valid_from));
                out.ips.push(i);
            }
        }
        let gone_containers: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, c)| !exists(&c.cgroup) || c.record.pod_uid.as_ref().is_some_and(|u| !self.pods.contains_key(u)))
            .map(|(k, _)| k.clone())
            .collect();
        for cid in gone_containers {
            let mut c = self.containers.remove(&cid).expect("present").record;
            c.valid_to = Some(now.max(c.valid_from));
            out.containers.push(c);
        }
        for p in self.pods.values_mut().filter(|p| p.dirty) {
            p.dirty = false;
            out.pods.push(p.record.clone());
        }
        for c in self.containers.values_mut().filter(|c| c.dirty) {
            c.dirty = false;
            out.containers.push(c.record.clone());
        }
        for i in self.ips.values_mut().filter(|i| i.dirty) {
            i.dirty = false;
            out.ips.push(i.record.clone());
        }
        // Removed cgroups: remembered for late events, then forgotten.
        for r in self.cgroups.values_mut() {
            if r.gone_at.is_none() && r.parsed.pod_uid.is_some() && !exists(&r.path) {
                r.gone_at = Some(now);
            }
        }
        self.cgroups.retain(|_, r| r.gone_at.is_none_or(|g| now - g < GONE_GRACE_NS));
        self.unknown.retain(|_, &mut t| now - t <= UNKNOWN_RETRY_NS);
        self.nameless_since.retain(|_, &mut t| now - t < metadata::META_WAIT_NS);
        self.tick_metadata(now, &mut out);
        out
    }

    /// Walk the cgroup v2 tree and learn every directory not known yet.
    fn walk(&mut self) {
        use std::os::unix::fs::MetadataExt;
        self.stats.cgroup_walks += 1;
        let mut stack = vec![self.root.clone()];
        let mut found = 0usize;
        while let Some(dir) = stack.pop() {
            let Ok(md) = std::fs::metadata(&dir) else { continue };
            let id = md.ino();
            if !self.cgroups.contains_key(&id) {
                let rel = dir.strip_prefix(&self.root).unwrap_or(&dir).to_string_lossy().into_owned();
                let parsed = cgroup_path::parse(&rel);
                let identity = self.identity_of(&parsed);
                self.cgroups.insert(id, Resolved { path: dir.clone(), parsed, identity, gone_at: None });
                self.unknown.remove(&id);
                found += 1;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        tracing::debug!(cgroups.new = found, cgroups.known = self.cgroups.len(), "walked the cgroup v2 tree");
    }
}

/// The earliest time per key, for keys that come in runs (rows of one cgroup,
/// of one address): a run costs one map update, not one per row.
struct Earliest<K, V> {
    map: HashMap<K, (i64, V)>,
    run: Option<(K, i64, V)>,
}

impl<K, V> Default for Earliest<K, V> {
    fn default() -> Self {
        Earliest { map: HashMap::new(), run: None }
    }
}

impl<K: std::hash::Hash + Eq + Ord + Copy, V> Earliest<K, V> {
    /// `key` was seen at `t`; `value` is kept from its first sighting.
    fn note(&mut self, key: K, t: i64, value: impl FnOnce() -> V) {
        match &mut self.run {
            Some((k, first, _)) if *k == key => *first = (*first).min(t),
            _ => {
                self.end_run();
                self.run = Some((key, t, value()));
            }
        }
    }

    fn end_run(&mut self) {
        if let Some((k, t, v)) = self.run.take() {
            let e = self.map.entry(k).or_insert((t, v));
            e.0 = e.0.min(t);
        }
    }

    /// (time, key, value), oldest first (ties by key).
    fn into_oldest_first(mut self) -> Vec<(i64, K, V)> {
        self.end_run();
        let mut out: Vec<(i64, K, V)> = self.map.into_iter().map(|(k, (t, v))| (t, k, v)).collect();
        out.sort_unstable_by_key(|x| (x.0, x.1));
        out
    }
}

fn exists(p: &Path) -> bool {
    !p.as_os_str().is_empty() && p.exists()
}

/// An address a pod can own: not loopback, unspecified, multicast or link-local.
fn is_pod_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_loopback() || a.is_unspecified() || a.is_multicast() || a.is_link_local() || a.is_broadcast()),
        IpAddr::V6(a) => {
            let link_local = (a.segments()[0] & 0xffc0) == 0xfe80;
            !(a.is_loopback() || a.is_unspecified() || a.is_multicast() || link_local) && a.to_ipv4_mapped().is_none_or(|v4| !v4.is_loopback())
        }
    }
}

/// Inode of this process's network namespace (the recorder runs in the host's).
/// Whether a row of pod `id` waits for the pod's name: a metadata source is
/// configured (`has_source`), the pod has none yet, and was first seen (in
/// `nameless`, since when) less than `META_WAIT_NS` ago.
fn waits(has_source: bool, nameless: &HashMap<String, i64>, id: Option<&PodIdentity>, now: i64) -> bool {
    id.is_some_and(|id| has_source && id.pod_name.is_none() && nameless.get(&id.pod_uid).is_some_and(|&t| now - t < metadata::META_WAIT_NS))
}

pub fn host_netns() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net").map(|m| m.ino() as u32).unwrap_or(0)
}

#[cfg(test)]
mod tests;
