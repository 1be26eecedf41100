//! Identity stage against a fake cgroup tree in a temp dir: the cgroup id of a
//! directory is its inode there too, so the walk and the stamping are the real ones.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::*;
use crate::rows::{ConnRow, ExecRow, RowSet};
use crate::decode::{ConnRaw, ExecRaw};

const UID_A: &str = "0d2f6c1e-8b1a-4c2e-9f3d-5a6b7c8d9e0f";
const UID_B: &str = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const CID: &str = "4f9c0b6d2e1a3c5b7d9e8f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c";
const HOST_NETNS: u32 = 4026531840;

fn pod_dir(root: &Path, uid: &str, container: Option<&str>) -> std::path::PathBuf {
    let mut p = root.join(format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice", uid.replace('-', "_")));
    if let Some(c) = container {
        p = p.join(format!("cri-containerd-{c}.scope"));
    }
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn ino(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

fn exec(cgroup_id: u64, time: i64) -> ExecRow {
    let raw = ExecRaw {
        pid: 10,
        tid: 10,
        ppid: 1,
        uid: 0,
        gid: 0,
        netns: 4026532001,
        time_boot_ns: 0,
        cgroup_id,
        cap_effective: 0,
        comm: "sh".into(),
        filename: "/bin/sh".into(),
        args: vec![],
        args_truncated: false,
        fileless: false,
        cwd: "/".into(),
        file_id: (0, 0),
        loader_env: vec![],
        env_truncated: false,
    };
    ExecRow { time, raw, exec_id: 1, parent_exec_id: None, cwd: None, sha256: None, identity: None }
}

fn conn(cgroup_id: u64, time: i64, src: &str, netns: u32) -> ConnRow {
    let raw = ConnRaw {
        event: "connect",
        owner: None,
        family: "ipv4",
        netns,
        time_boot_ns: 0,
        cgroup_id,
        cookie: 1,
        src: (src.parse().unwrap(), 40000),
        dst: ("10.244.9.9".parse().unwrap(), 80),
        orig_dst: None,
        nat_dst: None,
        bytes: None,
        error: None,
        dst_name: None,
        server_name: None,
        initiated: Some("local"),
    };
    ConnRow { time, raw, exec_id: None, identity: None }
}

impl Identity {
    /// Accept and stamp `b`'s rows, then hand them all back for inspection.
    fn stamp_all(&mut self, b: &mut RowSet, now: i64) {
        self.accept(b);
        self.stamp(now, true);
        *b = self.waiting.release(None);
    }
}

#[test]
fn rows_get_pod_and_container_and_host_rows_stay_null() {
    let tmp = tempfile::tempdir().unwrap();
    let c = pod_dir(tmp.path(), UID_A, Some(CID));
    let host = tmp.path().join("system.slice");
    std::fs::create_dir_all(&host).unwrap();
    let mut id = Identity::new(tmp.path().to_owned(), "n1".into(), HOST_NETNS);
    let mut b = RowSet::default();
    b.exec.push(exec(ino(&c), 100));
    b.exec.push(exec(ino(&host), 101));
    b.exec.push(exec(ino(c.parent().unwrap()), 102));
    id.stamp_all(&mut b, 1_000);
    let i = b.exec.rows[0].identity.as_deref().expect("container row stamped");
    assert_eq!((i.pod_uid.as_str(), i.container_id.as_deref(), i.pod_name.as_deref()), (UID_A, Some(CID), None));
    assert!(b.exec.rows[1].identity.is_none(), "a host cgroup has no pod");
    let p = b.exec.rows[2].identity.as_deref().expect("pod-level cgroup stamped");
    assert_eq!((p.pod_uid.as_str(), p.container_id.as_deref()), (UID_A, None));
    let w = id.tick(2_000);
    assert_eq!(w.pods.len(), 1);
    assert_eq!((w.pods[0].valid_from, w.pods[0].valid_to, w.pods[0].qos_class.as_deref()), (100, None, Some("burstable")));
    assert_eq!((w.containers[0].container_id.as_str(), w.containers[0].runtime.as_deref(), w.containers[0].cgroup_id), (CID, Some("containerd"), Some(ino(&c))));
    assert!(id.tick(3_000).is_empty(), "nothing changed, nothing rewritten");
}

#[test]
fn ip_reuse_closes_the_first_owner_and_opens_the_second() {
    let tmp = tempfile::tempdir().unwrap();
    let a = pod_dir(tmp.path(), UID_A, None);
    let mut id = Identity::new(tmp.path().to_owned(), "n1".into(), HOST_NETNS);
    let mut b = RowSet::default();
    b.conn.push(conn(ino(&a), 1_000, "10.244.1.5", 4026532001));
    b.conn.push(conn(ino(&a), 900, "10.244.1.5", 4026532001)); // out of order within a batch
    b.conn.push(conn(ino(&a), 950, "127.0.0.1", 4026532001)); // loopback: no owner
    id.stamp_all(&mut b, 2_000);
    let w = id.tick(2_000);
    assert_eq!(w.ips.len(), 1, "{w:?}");
    assert_eq!((w.ips[0].ip.as_str(), w.ips[0].pod_uid.as_str(), w.ips[0].valid_from, w.ips[0].valid_to), ("10.244.1.5", UID_A, 900, None));
    // Pod A is deleted (its cgroup removed), pod B later gets the same IP. (B's
    // directory is made first: a temp filesystem, unlike cgroupfs, reuses inodes.)
    let bdir = pod_dir(tmp.path(), UID_B, None);
    std::fs::remove_dir(&a).unwrap();
    let w = id.tick(5_000);
    assert_eq!(w.pods.iter().map(|p| (p.pod_uid.as_str(), p.valid_to)).collect::<Vec<_>>(), vec![(UID_A, Some(5_000))]);
    assert_eq!(w.ips.iter().map(|i| (i.pod_uid.as_str(), i.valid_from, i.valid_to)).collect::<Vec<_>>(), vec![(UID_A, 900, Some(5_000))]);
    let mut b = RowSet::default();
    b.conn.push(conn(ino(&bdir), 9_000, "10.244.1.5", 4026532002));
    id.stamp_all(&mut b, 10_000);
    let w = id.tick(10_000);
    assert_eq!(w.ips.iter().map(|i| (i.pod_uid.as_str(), i.valid_from, i.valid_to)).collect::<Vec<_>>(), vec![(UID_B, 9_000, None)]);
}

#[test]
fn a_second_pod_using_the_address_ends_the_first_ownership_at_its_first_use() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, bd) = (pod_dir(tmp.path(), UID_A, None), pod_dir(tmp.path(), UID_B, None));
    let mut id = Identity::new(tmp.path().to_owned(), "n1".into(), HOST_NETNS);
    let mut b = RowSet::default();
    b.conn.push(conn(ino(&a), 100, "10.244.1.5", 4026532001));
    b.conn.push(conn(ino(&bd), 300, "10.244.1.5", 4026532002));
    id.stamp_all(&mut b, 1_000);
    let mut w = id.tick(1_000).ips;
    w.sort_by_key(|i| i.valid_from);
    assert_eq!(w.iter().map(|i| (i.pod_uid.as_str(), i.valid_from, i.valid_to)).collect::<Vec<_>>(), vec![(UID_A, 100, Some(300)), (UID_B, 300, None)]);
}

#[test]
fn host_network_namespace_addresses_are_the_nodes_not_a_pods() {
    let tmp = tempfile::tempdir().unwrap();
    let a = pod_dir(tmp.path(), UID_A, None);
    let mut id = Identity::new(tmp.path().to_owned(), "n1".into(), HOST_NETNS);
    let mut b = RowSet::default();
    b.conn.push(conn(ino(&a), 100, "192.168.1.10", HOST_NETNS)); // a hostNetwork pod
    id.stamp_all(&mut b, 1_000);
    assert!(b.conn.rows[0].identity.is_some(), "the row still carries its pod");
    assert!(id.tick(1_000).ips.is_empty());
}

#[test]
fn late_events_of_a_removed_cgroup_keep_their_pod_and_unknown_ids_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let a = pod_dir(tmp.path(), UID_A, Some(CID));
    let cg = ino(&a);
    let mut id = Identity::new(tmp.path().to_owned(), "n1".into(), HOST_NETNS);
    let mut b = RowSet::default();
    b.exec.push(exec(cg, 100));
    id.stamp_all(&mut b, 1_000);
    std::fs::remove_dir(&a).unwrap();
    std::fs::remove_dir(a.parent().unwrap()).unwrap();
    id.tick(2_000);
    let mut b = RowSet::default();
    b.exec.push(exec(cg, 1_500)); // arrives after the removal was noticed
    b.exec.push(exec(999_999_999, 1_600)); // never existed in the tree
    id.stamp_all(&mut b, 3_000);
    assert_eq!(b.exec.rows[0].identity.as_deref().map(|i| i.pod_uid.as_str()), Some(UID_A));
    assert!(b.exec.rows[1].identity.is_none());
    assert_eq!(id.stats().unresolved_rows, 1);
    assert_eq!(id.take_unresolved(), [("process_exec", 1)].into(), "counted as an identity gap of its table");
    // Rows of one cgroup in a row are looked up once, but each unresolved row
    // is still counted, and a resolved one between them is not.
    let mut b = RowSet::default();
    for t in [1_610, 1_620] {
        b.exec.push(exec(999_999_999, t));
    }
    b.exec.push(exec(cg, 1_630));
    b.exec.push(exec(999_999_999, 1_640));
    id.stamp_all(&mut b, 3_100);
    assert_eq!(b.exec.rows.iter().map(|r| r.identity.is_some()).collect::<Vec<_>>(), [false, false, true, false]);
    assert_eq!(id.take_unresolved(), [("process_exec", 3)].into());
    let walks = id.stats().cgroup_walks;
    let mut b = RowSet::default();
    b.exec.push(exec(999_999_999, 1_700));
    id.stamp_all(&mut b, 4_000);
    assert_eq!(id.stats().cgroup_walks, walks, "an id no walk found is not walked for again at once");
    // Past the grace period the removed cgroup is forgotten.
    let tracked = id.stats().tracked_cgroups;
    id.tick(3_000 + GONE_GRACE_NS);
    assert_eq!(id.stats().tracked_cgroups, tracked - 2, "the pod's and the container's cgroups are forgotten");
}

#[test]
fn resumed_intervals_close_when_their_pod_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let alive = pod_dir(tmp.path(), UID_B, None);
    let pod = |uid: &str| PodRecord {
        pod_uid: uid.into(),
        pod_namespace: None,
        pod_name: None,
        node: "n1".into(),
        labels: None,
        owner: None,
        qos_class: Some("burstable".into()),
        valid_from: 10,
        valid_to: None,
        source: SOURCE_OBSERVED.into(),
    };
    let ip = |uid: &str, ip: &str| IpOwnerRecord {
        ip: ip.into(),
        pod_uid: uid.into(),
        pod_namespace: None,
        pod_name: None,
        node: "n1".into(),
        valid_from: 10,
        valid_to: None,
        source: SOURCE_OBSERVED.into(),
    };
    let mut id = Identity::new(tmp.path().to_owned(), "n1".into(), HOST_NETNS);
    id.resume(vec![pod(UID_A), pod(UID_B)], vec![], vec![ip(UID_A, "10.244.1.5"), ip(UID_B, "10.244.1.6")]);
    let w = id.tick(50);
    assert_eq!(w.pods.iter().map(|p| (p.pod_uid.as_str(), p.valid_to)).collect::<Vec<_>>(), vec![(UID_A, Some(50))]);
    assert_eq!(w.ips.iter().map(|i| (i.ip.as_str(), i.valid_to)).collect::<Vec<_>>(), vec![("10.244.1.5", Some(50))]);
    assert!(alive.exists());
    assert_eq!(id.stats().open_pods, 1);
}

#[test]
fn stamping_is_incremental_and_walks_are_rate_limited_until_the_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let a = pod_dir(tmp.path(), UID_A, None);
    let mut id = Identity::new(tmp.path().to_owned(), "n1".into(), HOST_NETNS);
    let mut b = RowSet::default();
    b.exec.push(exec(ino(&a), 100));
    id.accept(&mut b);
    id.stamp(1_000_000_000, false);
    assert_eq!((id.incoming.len(), id.waiting.len()), (0, 1), "stamped");
    assert!(id.waiting.exec.rows[0].identity.is_some());
    // A new pod right after a walk: not walked for again until the interval passed.
    let bd = pod_dir(tmp.path(), UID_B, None);
    b.exec.push(exec(ino(&bd), 200));
    id.accept(&mut b);
    id.stamp(1_000_000_000 + MIN_WALK_INTERVAL_NS / 2, false);
    assert_eq!((id.incoming.len(), id.waiting.len()), (1, 1), "waits for the next walk");
    id.stamp(1_000_000_000 + MIN_WALK_INTERVAL_NS, false);
    assert_eq!((id.incoming.len(), id.waiting.len()), (0, 2));
    assert_eq!(id.waiting.exec.rows[1].identity.as_deref().map(|i| i.pod_uid.as_str()), Some(UID_B));
    let released = id.release(1_000_000_000 + MIN_WALK_INTERVAL_NS, true);
    assert_eq!((released.len(), id.pending()), (2, 0));
}
