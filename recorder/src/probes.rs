//! `probes` stage: load the kernel programs (aya), attach them, drain the ring buffer.
//!
//! In: the embedded objects of podtrail-ebpf. Out: raw records (bytes) and the
//! kernel's per-CPU drop counters. All aya calls live here, so an aya upgrade
//! touches one file. Only tracepoints / `tp_btf` are used (no kprobes, fentry or LSM).

use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, ProgramError};
use aya::{Btf, Ebpf, EbpfLoader};

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// Programs of `process.bpf.o`: (program, tracepoint).
const PROCESS_PROGRAMS: &[(&str, &str)] = &[("handle_exec", "sched_process_exec"), ("handle_exit", "sched_process_exit")];

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("podtraild must run as root to load eBPF programs (it needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN); running as uid {0}")]
    NotRoot(u32),
    #[error("kernel BTF not found at {BTF_PATH}: podtraild needs a kernel built with CONFIG_DEBUG_INFO_BTF=y ({0})")]
    NoBtf(String),
    #[error("loading eBPF object {object}: {source}")]
    Load { object: &'static str, source: aya::EbpfError },
    #[error("program {program} ({attach_point}) failed to load or attach: {reason}")]
    Program { program: &'static str, attach_point: &'static str, reason: String },
    #[error("map {map} missing or of the wrong type in {object}: {reason}")]
    Map { object: &'static str, map: &'static str, reason: String },
}

pub struct Probes {
    // Keeps programs attached for as long as Probes lives.
    _ebpf: Ebpf,
    ring: RingBuf<MapData>,
    drops: PerCpuArray<MapData, u64>,
    /// Programs that failed to load or attach (only with `allow_partial`).
    pub missing: Vec<String>,
}

impl Probes {
    /// Load and attach everything. With `allow_partial`, a program that fails is
    /// reported in `missing` instead of failing the whole load.
    pub fn load(allow_partial: bool) -> Result<Self, ProbeError> {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if uid != 0 {
            return Err(ProbeError::NotRoot(uid));
        }
        let btf = Btf::from_sys_fs().map_err(|e| ProbeError::NoBtf(e.to_string()))?;
        raise_memlock();
        let object = "process.bpf.o";
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(podtrail_ebpf::process_object())
            .map_err(|source| ProbeError::Load { object, source })?;
        let mut missing = Vec::new();
        for &(program, tp) in PROCESS_PROGRAMS {
            let r: Result<(), String> = (|| {
                let p: &mut BtfTracePoint = ebpf
                    .program_mut(program)
                    .ok_or_else(|| "not in the object".to_string())?
                    .try_into()
                    .map_err(|e: ProgramError| e.to_string())?;
                p.load(tp, &btf).map_err(|e| program_error_reason(&e))?;
                p.attach().map_err(|e| program_error_reason(&e))?;
                Ok(())
            })();
            match r {
                Ok(()) => tracing::info!(program.name = program, attach_point = tp, "attached"),
                Err(reason) if allow_partial => {
                    tracing::warn!(program.name = program, attach_point = tp, %reason, "not attached (--allow-partial): its events will not be recorded");
                    missing.push(format!("{program} ({tp}): {reason}"));
                }
                Err(reason) => return Err(ProbeError::Program { program, attach_point: tp, reason }),
            }
        }
        let map_err = |map: &'static str, reason: String| ProbeError::Map { object, map, reason };
        let ring = RingBuf::try_from(ebpf.take_map("events").ok_or_else(|| map_err("events", "absent".into()))?)
            .map_err(|e| map_err("events", e.to_string()))?;
        let drops = PerCpuArray::try_from(ebpf.take_map("drops").ok_or_else(|| map_err("drops", "absent".into()))?)
            .map_err(|e| map_err("drops", e.to_string()))?;
        Ok(Probes { _ebpf: ebpf, ring, drops, missing })
    }

    /// Wait up to `timeout_ms` for records, then move every available one into `out`.
    pub fn poll(&mut self, timeout_ms: i32, out: &mut Vec<Vec<u8>>) -> usize {
        let mut pfd = libc::pollfd { fd: self.ring.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        let before = out.len();
        while let Some(item) = self.ring.next() {
            out.push(item.to_vec());
        }
        out.len() - before
    }

    /// Records the kernel could not reserve, per CPU, since load.
    pub fn drops_per_cpu(&self) -> Vec<u64> {
        match self.drops.get(&0, 0) {
            Ok(v) => v.iter().copied().collect(),
            Err(e) => {
                tracing::warn!("reading the drop counters: {e}");
                Vec::new()
            }
        }
    }
}

/// The kernel's reason, with the tail of the verifier log when there is one.
fn program_error_reason(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
            format!("{io_error}; verifier log (last lines): {}", tail.join(" | "))
        }
        other => other.to_string(),
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
fn raise_memlock() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: a valid rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK (fine on kernels >= 5.11)");
    }
}
