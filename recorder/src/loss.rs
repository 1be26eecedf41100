//! Kernel drop counters to `loss` rows. Pure: no I/O.
//!
//! In: the kernel programs' cumulative drop counters (per `DROP_*` reason, and
//! per (cgroup, reason) as far as the kernel's LRU map kept them), read about
//! once a second. Out: what they grew by since the previous read, per reason
//! and pod. Invariant: per reason, the counts handed out add up exactly to the
//! growth of the kernel's total; what no pod can be named for (host processes,
//! cgroups evicted from the map) is handed out without a pod, never dropped and
//! never counted twice.
//!
//! The two reads are not one snapshot. The totals are read first, then the
//! per-cgroup map; the kernel bumps a total just before its cgroup's entry, so
//! every drop in the totals read is in the map read after it (but one whose
//! program is between the two increments at that moment), and the map may
//! hold more: drops counted between the two reads. Those wait (per cgroup
//! entry, in `credited`) until the totals have grown by them at a later read,
//! and are then handed out with their pod. Capping a cgroup's growth at the
//! totals and forgetting the rest, as an earlier version did, lost the pod of
//! every drop of a burst that fell between the reads (a matrix run on Linux
//! 6.1 named the pod of 18 of 64).

use std::collections::{BTreeMap, HashMap};

use podtrail_ebpf::{DROP_REASONS, DropKey};

use crate::probes::DropCounts;

/// Loss counted since the previous [`KernelLoss::update`]: (reason, pod, count).
pub type Attributed = Vec<(usize, Option<String>, u64)>;

#[derive(Debug, Default)]
pub struct KernelLoss {
    /// The latest snapshot the counters were read from.
    last: DropCounts,
    /// Per reason: drops already handed out (attributed or not).
    written: [u64; DROP_REASONS],
    /// Per cgroup entry of the kernel map: how much of its count was handed
    /// out with its pod. Below the entry's count: drops not yet in the totals.
    credited: HashMap<DropKey, u64>,
}

impl KernelLoss {
    /// The snapshot to pass to `Probes::drop_counts` (it reads the per-cgroup
    /// map only when a total moved since this one: drops that were ahead of
    /// the totals at this read moved them after it).
    pub fn last(&self) -> &DropCounts {
        &self.last
    }

    /// Hand out what the counters grew by since the last call. `pod_of` names
    /// the pod of a cgroup (none for a host cgroup or an unknown one).
    pub fn update(&mut self, now: DropCounts, mut pod_of: impl FnMut(u64) -> Option<String>) -> Attributed {
        if now == self.last {
            return Vec::new();
        }
        // Deterministic order: the same counters give the same rows.
        let mut grown: BTreeMap<(usize, Option<String>), u64> = BTreeMap::new();
        let mut by_cgroup = now.by_cgroup.clone();
        by_cgroup.sort_unstable();
        let mut budget: [u64; DROP_REASONS] = std::array::from_fn(|r| now.total[r].saturating_sub(self.written[r]));
        let mut credited = HashMap::with_capacity(by_cgroup.len());
        for (key, n) in &by_cgroup {
            let reason = key.reason as usize;
            if reason >= DROP_REASONS {
                continue;
            }
            // An entry absent before (new, or evicted and counted again from
            // 1) or below what was credited (evicted and counted again) grew
            // by all it holds.
            let before = self.credited.get(key).copied().filter(|c| c <= n).unwrap_or(0);
            let delta = (n - before).min(budget[reason]);
            credited.insert(*key, before + delta);
            if delta == 0 {
                continue;
            }
            budget[reason] -= delta;
            *grown.entry((reason, pod_of(key.cgroup_id))).or_default() += delta;
        }
        // Growth of the totals no cgroup entry holds: the entry was evicted
        // (with whatever it had not handed out), or the kernel could not add
        // one. Entries gone from the map are forgotten.
        for (reason, rest) in budget.iter().enumerate() {
            if *rest > 0 {
                *grown.entry((reason, None)).or_default() += rest;
            }
        }
        self.credited = credited;
        self.written = now.total;
        self.last = now;
        grown.into_iter().map(|((reason, pod), n)| (reason, pod, n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrail_ebpf::{DROP_CONN_RING, DROP_EXEC_RING, DROP_EXIT_RING};

    fn key(cgroup_id: u64, reason: u32) -> DropKey {
        DropKey { cgroup_id, reason, pad: 0 }
    }

    fn counts(total: &[(u32, u64)], by_cgroup: &[(u64, u32, u64)]) -> DropCounts {
        let mut t = [0u64; DROP_REASONS];
        for &(r, n) in total {
            t[r as usize] = n;
        }
        DropCounts { total: t, by_cgroup: by_cgroup.iter().map(|&(cg, r, n)| (key(cg, r), n)).collect() }
    }

    fn pods(cgroup: u64) -> Option<String> {
        match cgroup {
            7 => Some("pod-a".into()),
            8 => Some("pod-b".into()),
            _ => None, // the host, or a cgroup nobody knows
        }
    }

    fn sum(a: &Attributed, reason: u32) -> u64 {
        a.iter().filter(|r| r.0 == reason as usize).map(|r| r.2).sum()
    }

    #[test]
    fn growth_is_handed_out_per_pod_and_the_rest_without_one_adding_up_to_the_total() {
        let mut k = KernelLoss::default();
        let exec = DROP_EXEC_RING;
        // 10 exec drops: 6 in pod-a, 1 in the host cgroup, 3 no cgroup entry holds.
        let got = k.update(counts(&[(exec, 10)], &[(7, exec, 6), (1, exec, 1)]), pods);
        assert_eq!(got, vec![(exec as usize, None, 4), (exec as usize, Some("pod-a".into()), 6)]);
        // Then 5 more: 2 in pod-a, 3 in pod-b; and 1 exit drop with no cgroup entry.
        let got = k.update(counts(&[(exec, 15), (DROP_EXIT_RING, 1)], &[(7, exec, 8), (1, exec, 1), (8, exec, 3)]), pods);
        assert_eq!(got, vec![(exec as usize, Some("pod-a".into()), 2), (exec as usize, Some("pod-b".into()), 3), (DROP_EXIT_RING as usize, None, 1)]);
        // Nothing moved: nothing handed out.
        assert!(k.update(counts(&[(exec, 15), (DROP_EXIT_RING, 1)], &[(7, exec, 8), (1, exec, 1), (8, exec, 3)]), pods).is_empty());
    }

    #[test]
    fn a_cgroup_count_ahead_of_the_totals_waits_for_them_and_keeps_its_pod() {
        let mut k = KernelLoss::default();
        let conn = DROP_CONN_RING;
        // Two drops counted between the read of the totals and the read of
        // the map: pod-a's entry holds 5, the totals 3.
        let a = k.update(counts(&[(conn, 3)], &[(7, conn, 5)]), pods);
        assert_eq!(a, vec![(conn as usize, Some("pod-a".into()), 3)]);
        // The totals catch up: the two are pod-a's, not handed out twice.
        let b = k.update(counts(&[(conn, 5)], &[(7, conn, 5)]), pods);
        assert_eq!(b, vec![(conn as usize, Some("pod-a".into()), 2)]);
        // An entry evicted by the kernel's LRU and counted again from 1.
        let c = k.update(counts(&[(conn, 7)], &[(8, conn, 2)]), pods);
        assert_eq!(c, vec![(conn as usize, Some("pod-b".into()), 2)]);
        // A count below what was credited: evicted and counted again.
        let d = k.update(counts(&[(conn, 8)], &[(8, conn, 1)]), pods);
        assert_eq!(d, vec![(conn as usize, Some("pod-b".into()), 1)]);
        let all: u64 = [&a, &b, &c, &d].iter().map(|x| sum(x, conn)).sum();
        assert_eq!(all, 8, "exactly the kernel's total");
    }

    #[test]
    fn an_entry_evicted_before_the_totals_caught_up_leaves_its_rest_without_a_pod() {
        let mut k = KernelLoss::default();
        let conn = DROP_CONN_RING;
        assert_eq!(sum(&k.update(counts(&[(conn, 3)], &[(7, conn, 5)]), pods), conn), 3);
        // pod-a's entry is gone with 2 not handed out; pod-b's has 1.
        let b = k.update(counts(&[(conn, 6)], &[(8, conn, 1)]), pods);
        assert_eq!(b, vec![(conn as usize, None, 2), (conn as usize, Some("pod-b".into()), 1)]);
        // Nothing moved: nothing handed out, and the forgotten entry stays forgotten.
        assert!(k.update(counts(&[(conn, 6)], &[(8, conn, 1)]), pods).is_empty());
    }
}
