//! What the kernel programs lost: their drop counters per reason (each a table
//! and a loss source) and per cgroup, and the runs the kernel skipped.

use std::os::fd::{AsFd, AsRawFd};

use aya::Pod;
use podtrail_ebpf::DropKey;

use super::Probes;

/// What a count of one `drops` reason (`DROP_*` in ebpf/include/events.h) means,
/// for `loss` rows.
pub type DropReason = podtrail_ebpf::DropMeaning;

/// Every drop reason of the kernel programs, indexed by its `DROP_*` number
/// (generated from `PT_DROP_MEANINGS` in ebpf/include/events.h).
pub const DROP_REASONS: [DropReason; podtrail_ebpf::DROP_REASONS] = podtrail_ebpf::DROP_REASON_MEANINGS;

/// Runs of one program the kernel skipped since load: a tracing program is not
/// run again on a CPU where it is already running (an interrupt or softirq
/// hitting the same tracepoint while it runs); the kernel counts each skip in
/// the program's `recursion_misses` (Linux 5.12+; 0 before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkippedRuns {
    pub object: &'static str,
    pub program: &'static str,
    pub runs: u64,
}

/// Drop counters of every object, cumulative since load.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DropCounts {
    /// Per `DROP_*` reason, summed over CPUs: the exact totals.
    pub total: [u64; podtrail_ebpf::DROP_REASONS],
    /// Per (cgroup, reason), as far as the kernel's LRU map kept them: read
    /// after `total`, so they hold every drop in it, and maybe later ones.
    pub by_cgroup: Vec<(DropKey, u64)>,
}

#[derive(Clone, Copy)]
#[repr(transparent)]
pub(super) struct DropKeyPod(pub DropKey);
// SAFETY: DropKey is #[repr(C)] plain data (integers, explicit padding field).
unsafe impl Pod for DropKeyPod {}

impl Probes {
    /// Runs of each loaded program the kernel skipped since load (only those
    /// with any).
    pub fn skipped_runs(&self) -> Vec<SkippedRuns> {
        let mut out = Vec::new();
        for s in &self.sources {
            for &program in &s.programs {
                let Some(fd) = s._ebpf.program(program).and_then(|p| p.fd().ok()) else { continue };
                match recursion_misses(fd.as_fd()) {
                    Ok(0) => {}
                    Ok(runs) => out.push(SkippedRuns { object: s.object, program, runs }),
                    Err(e) => tracing::debug!(program.name = program, "reading recursion_misses: {e}"),
                }
            }
        }
        out
    }

    /// The drop counters of every object (cumulative since load): per reason,
    /// and per (cgroup, reason). The totals are read first: the kernel bumps
    /// the per-reason counter first, so the per-cgroup counts read after them
    /// hold every drop in them (and maybe later ones: see crate::loss). The
    /// map is read only when a total moved since `last`: nothing to attribute
    /// otherwise.
    pub fn drop_counts(&self, last: &DropCounts) -> DropCounts {
        let mut total = [0u64; podtrail_ebpf::DROP_REASONS];
        for s in &self.sources {
            for (reason, sum) in total.iter_mut().enumerate() {
                match s.drops.get(&(reason as u32), 0) {
                    Ok(v) => *sum += v.iter().sum::<u64>(),
                    Err(e) => tracing::warn!(object = s.object, reason, "reading the drop counters: {e}"),
                }
            }
        }
        if total == last.total {
            return last.clone();
        }
        let mut by_cgroup = Vec::new();
        for s in &self.sources {
            for item in s.drops_by_cgroup.iter() {
                match item {
                    Ok((k, n)) => by_cgroup.push((k.0, n)),
                    // A key evicted while iterating: its drops stay in the totals.
                    Err(e) => tracing::debug!(object = s.object, "reading drops_by_cgroup: {e}"),
                }
            }
        }
        DropCounts { total, by_cgroup }
    }
}


/// A program's `recursion_misses` (BPF_OBJ_GET_INFO_BY_FD). Kernels before
/// 5.12 have no such field and leave it 0.
fn recursion_misses(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<u64> {
    use aya_obj::generated::bpf_prog_info;
    /// `union bpf_attr`'s `info` member.
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // SAFETY: bpf_prog_info is plain integers; all zeros is a valid value.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr { bpf_fd: fd.as_raw_fd() as u32, info_len: std::mem::size_of::<bpf_prog_info>() as u32, info: &raw mut info as u64 };
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // SAFETY: a valid attr of its declared size; the kernel writes at most
    // info_len bytes into `info`, which outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &raw mut attr, std::mem::size_of::<InfoAttr>()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info.recursion_misses)
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drop_reason_is_described_at_its_own_number() {
        for (i, r) in DROP_REASONS.iter().enumerate() {
            assert_eq!(r.reason, i, "DROP_REASONS[{i}] describes reason {}", r.reason);
            assert!(super::super::objects::objects().iter().any(|o| r.detail.contains(o.name)), "reason {i} does not name its object: {}", r.detail);
            assert!(["kernel_ringbuf", "kernel_map", "incomplete"].contains(&r.source), "reason {i}: source {}", r.source);
            assert!(r.table.is_none_or(|t| podtrail_schema::tables::event_table(t).is_some()), "reason {i}: {:?} is not an event table", r.table);
        }
    }
}
