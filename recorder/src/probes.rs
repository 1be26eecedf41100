//! `probes` stage: load the kernel programs (aya), attach them, drain the ring buffer.
//!
//! In: the embedded objects of podtrail-ebpf. Out: raw records (bytes) and the
//! kernel's per-CPU drop counters. All aya calls live here, so an aya upgrade
//! touches one file. Only tracepoints / `tp_btf` are used (no kprobes, fentry or LSM).

use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSockAddr, ProgramError};
use aya::{Btf, Ebpf, EbpfLoader};

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// How a program attaches.
#[derive(Clone, Copy)]
enum Attach {
    /// `tp_btf/<tracepoint>`
    BtfTracepoint(&'static str),
    /// cgroup/connect4|6 on the cgroup v2 root
    CgroupRoot(&'static str),
}

struct ObjectSpec {
    name: &'static str,
    bytes: fn() -> &'static [u8],
    programs: &'static [(&'static str, Attach)],
}

const OBJECTS: &[ObjectSpec] = &[
    ObjectSpec {
        name: "process.bpf.o",
        bytes: podtrail_ebpf::process_object,
        programs: &[
            ("handle_exec", Attach::BtfTracepoint("sched_process_exec")),
            ("handle_exit", Attach::BtfTracepoint("sched_process_exit")),
            ("handle_fork", Attach::BtfTracepoint("sched_process_fork")),
        ],
    },
    ObjectSpec {
        name: "net.bpf.o",
        bytes: podtrail_ebpf::net_object,
        programs: &[
            ("connect4", Attach::CgroupRoot("connect4")),
            ("connect6", Attach::CgroupRoot("connect6")),
            ("nat_xmit", Attach::BtfTracepoint("net_dev_start_xmit")),
            ("sock_state", Attach::BtfTracepoint("inet_sock_set_state")),
        ],
    },
];

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("podtraild must run as root to load eBPF programs (it needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN); running as uid {0}")]
    NotRoot(u32),
    #[error("kernel BTF not found at {BTF_PATH}: podtraild needs a kernel built with CONFIG_DEBUG_INFO_BTF=y ({0})")]
    NoBtf(String),
    #[error("no cgroup v2 mount in /proc/self/mountinfo: podtraild needs cgroup v2 (unified or hybrid layout)")]
    NoCgroup2,
    #[error("loading eBPF object {object}: {source}")]
    Load { object: &'static str, source: aya::EbpfError },
    #[error("program {program} ({attach_point}) failed to load or attach: {reason}")]
    Program { program: &'static str, attach_point: String, reason: String },
    #[error("map {map} missing or of the wrong type in {object}: {reason}")]
    Map { object: &'static str, map: &'static str, reason: String },
}

/// One loaded object: its ring buffer and drop counters.
struct Source {
    object: &'static str,
    ring: RingBuf<MapData>,
    drops: PerCpuArray<MapData, u64>,
    // Keeps the object's programs attached for as long as the source lives.
    _ebpf: Ebpf,
}

pub struct Probes {
    sources: Vec<Source>,
    /// Programs that failed to load or attach (only with `allow_partial`).
    pub missing: Vec<String>,
}

/// The cgroup v2 mount point, read from mountinfo (the layout may be unified,
/// hybrid (`/sys/fs/cgroup/unified`) or anything else: never assume a path).
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        Some(PathBuf::from(unescape_mount(pre.split_whitespace().nth(4)?)))
    })
}

/// Mount points of `fstype` in mountinfo.
fn mounts_of(mountinfo: &str, fstype: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            if post.split_whitespace().next()? != fstype {
                return None;
            }
            Some(PathBuf::from(unescape_mount(pre.split_whitespace().nth(4)?)))
        })
        .collect()
}

/// Mount tracefs at /sys/kernel/tracing and bpffs at /sys/fs/bpf when no mount of
/// them exists (a fresh node or a minimal container). The programs loaded today
/// (tp_btf, cgroup hooks) need neither, so a failure is a warning, not an error;
/// tracepoint-based programs and pinned maps do need them. Returns what was mounted.
pub fn ensure_kernel_filesystems() -> Vec<&'static str> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounted = Vec::new();
    for (fstype, target) in [("tracefs", "/sys/kernel/tracing"), ("bpf", "/sys/fs/bpf")] {
        if !mounts_of(&info, fstype).is_empty() {
            continue;
        }
        let (src, tgt) = (std::ffi::CString::new(fstype).expect("no NUL"), std::ffi::CString::new(target).expect("no NUL"));
        // SAFETY: valid NUL-terminated strings; no data argument.
        let rc = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
        if rc == 0 {
            tracing::info!(fs.type = fstype, fs.target = target, "mounted (it was missing)");
            mounted.push(fstype);
        } else {
            tracing::warn!(fs.type = fstype, fs.target = target, "not mounted and mounting failed ({}); the programs loaded today do not need it", std::io::Error::last_os_error());
        }
    }
    mounted
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// What loading needs, checked before anything else is touched: root and BTF.
pub fn check_privileges() -> Result<(), ProbeError> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        return Err(ProbeError::NotRoot(uid));
    }
    if !Path::new(BTF_PATH).exists() {
        return Err(ProbeError::NoBtf("no such file".into()));
    }
    Ok(())
}

impl Probes {
    /// Load and attach everything. With `allow_partial`, a program that fails is
    /// reported in `missing` instead of failing the whole load.
    /// `cgroup_root`: the cgroup v2 mount the connect hooks attach to.
    pub fn load(allow_partial: bool, cgroup_root: &Path) -> Result<Self, ProbeError> {
        check_privileges()?;
        let btf = Btf::from_sys_fs().map_err(|e| ProbeError::NoBtf(e.to_string()))?;
        ensure_kernel_filesystems();
        raise_memlock();
        let mut sources = Vec::new();
        let mut missing = Vec::new();
        for spec in OBJECTS {
            let object = spec.name;
            let mut ebpf = EbpfLoader::new().btf(Some(&btf)).load((spec.bytes)()).map_err(|source| ProbeError::Load { object, source })?;
            for &(program, attach) in spec.programs {
                let point = match attach {
                    Attach::BtfTracepoint(tp) => format!("tp_btf/{tp}"),
                    Attach::CgroupRoot(hook) => format!("cgroup/{hook} on {}", cgroup_root.display()),
                };
                match attach_one(&mut ebpf, program, attach, &btf, cgroup_root) {
                    Ok(()) => tracing::info!(program.name = program, attach_point = %point, "attached"),
                    Err(reason) if allow_partial => {
                        tracing::warn!(program.name = program, attach_point = %point, %reason, "not attached (--allow-partial): its events will not be recorded");
                        missing.push(format!("{program} ({point}): {reason}"));
                    }
                    Err(reason) => return Err(ProbeError::Program { program, attach_point: point, reason }),
                }
            }
            let map_err = |map: &'static str, reason: String| ProbeError::Map { object, map, reason };
            let ring = RingBuf::try_from(ebpf.take_map("events").ok_or_else(|| map_err("events", "absent".into()))?)
                .map_err(|e| map_err("events", e.to_string()))?;
            let drops = PerCpuArray::try_from(ebpf.take_map("drops").ok_or_else(|| map_err("drops", "absent".into()))?)
                .map_err(|e| map_err("drops", e.to_string()))?;
            sources.push(Source { object, ring, drops, _ebpf: ebpf });
        }
        Ok(Probes { sources, missing })
    }

    /// Wait up to `timeout_ms` for records, then move every available one into `out`.
    pub fn poll(&mut self, timeout_ms: i32, out: &mut Vec<Vec<u8>>) -> usize {
        let mut fds: Vec<libc::pollfd> =
            self.sources.iter().map(|s| libc::pollfd { fd: s.ring.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        let before = out.len();
        // Connection events are drained before process events: an exec that
        // happened before a connect is then always in the same pass (or an
        // earlier one), and the caller orders each pass by kernel time, so the
        // connect finds the process image it ran in.
        for s in self.sources.iter_mut().rev() {
            while let Some(item) = s.ring.next() {
                out.push(item.to_vec());
            }
        }
        out.len() - before
    }

    /// Records the kernel could not reserve since load: (object, per-CPU counts).
    pub fn drops_per_cpu(&self) -> Vec<(&'static str, Vec<u64>)> {
        self.sources
            .iter()
            .map(|s| {
                let v = match s.drops.get(&0, 0) {
                    Ok(v) => v.iter().copied().collect(),
                    Err(e) => {
                        tracing::warn!(object = s.object, "reading the drop counters: {e}");
                        Vec::new()
                    }
                };
                (s.object, v)
            })
            .collect()
    }
}

fn attach_one(ebpf: &mut Ebpf, program: &'static str, attach: Attach, btf: &Btf, cgroup_root: &Path) -> Result<(), String> {
    let prog = ebpf.program_mut(program).ok_or_else(|| "not in the object".to_string())?;
    match attach {
        Attach::BtfTracepoint(tp) => {
            let p: &mut BtfTracePoint = prog.try_into().map_err(|e: ProgramError| e.to_string())?;
            p.load(tp, btf).map_err(|e| program_error_reason(&e))?;
            p.attach().map_err(|e| program_error_reason(&e))?;
        }
        Attach::CgroupRoot(_) => {
            let p: &mut CgroupSockAddr = prog.try_into().map_err(|e: ProgramError| e.to_string())?;
            p.load().map_err(|e| program_error_reason(&e))?;
            let dir = std::fs::File::open(cgroup_root).map_err(|e| format!("opening {}: {e}", cgroup_root.display()))?;
            // On kernels >= 5.7 this is a bpf_link, which never excludes other
            // programs on the same hook (other tools, other podtraild instances);
            // the link API takes no multi-attach flag.
            p.attach(dir, CgroupAttachMode::Single).map_err(|e| program_error_reason(&e))?;
        }
    }
    Ok(())
}

/// The kernel's reason, with the tail of the verifier log when there is one.
fn program_error_reason(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
            format!("{io_error}; verifier log (last lines): {}", tail.join(" | "))
        }
        other => {
            // Include the source chain: aya's Display alone omits the errno.
            let mut msg = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(e) = src {
                msg.push_str(": ");
                msg.push_str(&e.to_string());
                src = e.source();
            }
            msg
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_mount_from_hybrid_and_unified_mountinfo() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let unified = "25 20 0:23 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mount(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        let spaced = "25 20 0:23 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(spaced), Some(PathBuf::from("/mnt/my cg")));
        assert_eq!(cgroup2_mount("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"), None);
    }

    #[test]
    fn tracefs_and_bpffs_are_found_by_type_wherever_mounted() {
        let info = "40 22 0:12 / /sys/kernel/tracing rw - tracefs tracefs rw\n51 22 0:40 / /run/my\\040bpf rw - bpf bpf rw\n";
        assert_eq!(mounts_of(info, "tracefs"), vec![PathBuf::from("/sys/kernel/tracing")]);
        assert_eq!(mounts_of(info, "bpf"), vec![PathBuf::from("/run/my bpf")]);
        assert!(mounts_of("25 20 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "bpf").is_empty());
    }
}
