//! Kernel drop counters to `loss` rows. Pure: no I/O.
//!
//! In: the kernel programs' cumulative drop counters (per `DROP_*` reason, and
//! per (cgroup, reason) as far as the kernel's LRU map kept them), read about
//! once a second. Out: what they grew by since the previous read, per reason
//! and pod. Invariant: per reason, the counts handed out add up exactly to the
//! growth of the kernel's total; what no pod can be named for (host processes,
//! cgroups evicted from the map, drops counted between the two reads) is handed
//! out without a pod, never dropped and never counted twice.

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
}

impl KernelLoss {
    /// The snapshot to pass to `Probes::drop_counts` (it reads the per-cgroup
    /// map only when a total moved since this one).
    pub fn last(&self) -> &DropCounts {
        &self.last
    }

    /// Hand out what the counters grew by since the last call. `pod_of` names
    /// the pod of a cgroup (none for a host cgroup or an unknown one).
    pub fn update(&mut self, now: DropCounts, mut pod_of: impl FnMut(u64) -> Option<String>) -> Attributed {
        if now.total == self.last.total {
            return Vec::new();
        }
        let before: HashMap<DropKey, u64> = self.last.by_cgroup.iter().copied().collect();
        // Deterministic order: the same counters give the same rows.
        let mut grown: BTreeMap<(usize, Option<String>), u64> = BTreeMap::new();
        let mut by_cgroup = now.by_cgroup.clone();
        by_cgroup.sort_unstable();
        let mut budget: [u64; DROP_REASONS] = std::array::from_fn(|r| now.total[r].saturating_sub(self.written[r]));
        for (key, n) in &by_cgroup {
            let reason = key.reason as usize;
            if reason >= DROP_REASONS {
                continue;
            }
            // A key absent before (new, or evicted and counted again from 1)
            // grew by all it holds.
            let delta = n.saturating_sub(before.get(key).copied().unwrap_or(0)).min(budget[reason]);
            if delta == 0 {
                continue;
            }
            budget[reason] -= delta;
            *grown.entry((reason, pod_of(key.cgroup_id))).or_default() += delta;
        }
        for (reason, rest) in budget.iter().enumerate() {
            if *rest > 0 {
                *grown.entry((reason, None)).or_default() += rest;
            }
        }
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
    fn attribution_never_exceeds_the_total_even_when_a_cgroup_count_arrives_late() {
        let mut k = KernelLoss::default();
        let conn = DROP_CONN_RING;
        // A drop counted in the total but not yet in its cgroup's entry: handed
        // out without a pod now ...
        let a = k.update(counts(&[(conn, 3)], &[(7, conn, 2)]), pods);
        assert_eq!(sum(&a, conn), 3);
        // ... and its late per-cgroup count is not handed out a second time.
        let b = k.update(counts(&[(conn, 4)], &[(7, conn, 4)]), pods);
        assert_eq!(sum(&b, conn), 1, "{b:?}");
        // An entry evicted by the kernel's LRU and counted again from 1.
        let c = k.update(counts(&[(conn, 6)], &[(8, conn, 2)]), pods);
        assert_eq!(c, vec![(conn as usize, Some("pod-b".into()), 2)]);
        assert_eq!(sum(&a, conn) + sum(&b, conn) + sum(&c, conn), 6, "exactly the kernel's total");
    }
}
