//! `probes` stage: load the kernel programs (aya), attach them, drain the ring buffer.
//!
//! In: the embedded objects of podtrail-ebpf. Out: raw records (bytes) and the
//! kernel's per-CPU drop counters. All aya calls live here, so an aya upgrade
//! touches one file. Only tracepoints / `tp_btf` are used (no kprobes, fentry or LSM).

use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSockAddr, FEntry, FExit, ProgramError, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader, Pod};
use podtrail_ebpf::{CapKey, CapVal, DropKey};

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// How a program attaches.
#[derive(Clone, Copy)]
enum Attach {
    /// `tp_btf/<tracepoint>`
    BtfTracepoint(&'static str),
    /// cgroup/connect4|6 on the cgroup v2 root
    CgroupRoot(&'static str),
    /// `tracepoint/<category>/<name>` (perf event; needs tracefs)
    Tracepoint(&'static str, &'static str),
    /// `fentry/<kernel function>` / `fexit/<kernel function>`
    FEntry(&'static str),
    FExit(&'static str),
}

impl Attach {
    /// The attach point as messages name it.
    fn point(self, cgroup_root: &Path) -> String {
        match self {
            Attach::BtfTracepoint(tp) => format!("tp_btf/{tp}"),
            Attach::CgroupRoot(hook) => format!("cgroup/{hook} on {}", cgroup_root.display()),
            Attach::Tracepoint(cat, name) => format!("tracepoint/{cat}/{name}"),
            Attach::FEntry(f) => format!("fentry/{f}"),
            Attach::FExit(f) => format!("fexit/{f}"),
        }
    }
}

/// Whether a program the kernel cannot attach stops the recorder.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Fails the load (unless `--allow-partial`).
    Required,
    /// A kernel feature not every supported kernel has: recorded as
    /// unavailable, with the reason, and everything else is recorded.
    Optional,
}

struct ObjectSpec {
    name: &'static str,
    bytes: fn() -> &'static [u8],
    programs: &'static [(&'static str, Attach, Need)],
}

/// What a count of one `drops` reason (`DROP_*` in ebpf/include/events.h) means,
/// for `loss` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropReason {
    /// The `DROP_*` number this entry describes (its index in [`DROP_REASONS`]).
    pub reason: usize,
    /// `loss.source`
    pub source: &'static str,
    /// `loss.table_name`: the table whose rows were lost or stored incomplete
    /// (none for fork records, which are not rows).
    pub table: Option<&'static str>,
    /// `loss.detail`
    pub detail: &'static str,
}

/// Every drop reason of the kernel programs, indexed by its `DROP_*` number.
pub const DROP_REASONS: [DropReason; podtrail_ebpf::DROP_REASONS] = {
    use podtrail_ebpf as e;
    use podtrail_schema::tables::{CAP_USAGE, NET_CONN, PRIVILEGE, PROCESS_EXEC, PROCESS_EXIT};
    const fn r(reason: usize, source: &'static str, table: Option<&'static str>, detail: &'static str) -> DropReason {
        DropReason { reason, source, table, detail }
    }
    [
        r(e::DROP_EXEC_RING as usize, "kernel_ringbuf", Some(PROCESS_EXEC.name), "ring buffer of process.bpf.o full"),
        r(e::DROP_EXIT_RING as usize, "kernel_ringbuf", Some(PROCESS_EXIT.name), "ring buffer of process.bpf.o full"),
        r(e::DROP_FORK_RING as usize, "kernel_ringbuf", None, "fork records lost (ring buffer of process.bpf.o full): not rows, but a forked child that never execs then has no exec_id"),
        r(e::DROP_CONN_RING as usize, "kernel_ringbuf", Some(NET_CONN.name), "ring buffer of net.bpf.o full"),
        r(e::DROP_CONN_STATE_FULL as usize, "incomplete", Some(NET_CONN.name), "connections tracked without state (the `established` map of net.bpf.o was full): their close rows have no bytes_sent, bytes_received or duration_ns"),
        r(e::DROP_CONN_NO_OWNER as usize, "incomplete", Some(NET_CONN.name), "connect/fail rows without their process (pid, comm, exec_id, orig_dst_ip, orig_dst_port): the socket's connect() record (the `connects` map of net.bpf.o) was evicted or predates the recorder"),
        r(e::DROP_PRIV_RING as usize, "kernel_ringbuf", Some(PRIVILEGE.name), "ring buffer of privilege.bpf.o full"),
        r(e::DROP_PRIV_PENDING_FULL as usize, "kernel_map", Some(PRIVILEGE.name), "the per-thread `pending` map of privilege.bpf.o was full: these syscalls have no row"),
        r(e::DROP_CAP_RING as usize, "kernel_ringbuf", Some(PRIVILEGE.name), "refused capability checks without their row (ring buffer of privilege.bpf.o full); counted in cap_usage.denied_unrecorded too"),
        r(e::DROP_CAP_MAP_FULL as usize, "kernel_map", Some(CAP_USAGE.name), "capability checks not counted: the `cap_usage` map of privilege.bpf.o was full"),
    ]
};

/// The table a program's rows go to (none: fork records, not rows): how runs
/// the kernel skipped are put on a table. Every program of [`OBJECTS`] and
/// [`FENTRY_PROGRAMS`] has one (a test checks).
pub fn table_of_program(program: &str) -> Option<Option<&'static str>> {
    use podtrail_schema::tables::{CAP_USAGE, NET_CONN, PRIVILEGE, PROCESS_EXEC, PROCESS_EXIT};
    match program {
        "handle_exec" => Some(Some(PROCESS_EXEC.name)),
        "handle_exit" => Some(Some(PROCESS_EXIT.name)),
        "handle_fork" => Some(None),
        "connect4" | "connect6" | "nat_xmit" | "sock_state" | "sock_destroy" => Some(Some(NET_CONN.name)),
        CAP_CHECK_PROGRAM => Some(Some(CAP_USAGE.name)),
        p if ["enter_", "exit_", "fentry_", "fexit_", "fentry32_", "fexit32_"].iter().any(|x| p.starts_with(x)) => Some(Some(PRIVILEGE.name)),
        _ => None,
    }
}

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
    /// before `total`, so they never add up to more than it.
    pub by_cgroup: Vec<(DropKey, u64)>,
}

/// enter_/exit_ program pairs of privilege.bpf.o, one per traced syscall
/// (the list matches `podtrail_ebpf::PRIV_SYSCALLS`; a test checks it).
macro_rules! syscall_programs {
    ([$($first:tt)*] $($name:literal),*) => {
        &[$($first)* $(
            (concat!("enter_", $name), Attach::Tracepoint("syscalls", concat!("sys_enter_", $name)), Need::Optional),
            (concat!("exit_", $name), Attach::Tracepoint("syscalls", concat!("sys_exit_", $name)), Need::Optional),
        )*]
    };
}

const OBJECTS: &[ObjectSpec] = &[
    ObjectSpec {
        name: "process.bpf.o",
        bytes: podtrail_ebpf::process_object,
        programs: &[
            ("handle_exec", Attach::BtfTracepoint("sched_process_exec"), Need::Required),
            ("handle_exit", Attach::BtfTracepoint("sched_process_exit"), Need::Required),
            ("handle_fork", Attach::BtfTracepoint("sched_process_fork"), Need::Required),
        ],
    },
    ObjectSpec {
        name: "net.bpf.o",
        bytes: podtrail_ebpf::net_object,
        programs: &[
            ("connect4", Attach::CgroupRoot("connect4"), Need::Required),
            ("connect6", Attach::CgroupRoot("connect6"), Need::Required),
            ("nat_xmit", Attach::BtfTracepoint("net_dev_start_xmit"), Need::Required),
            ("sock_state", Attach::BtfTracepoint("inet_sock_set_state"), Need::Required),
            ("sock_destroy", Attach::BtfTracepoint("tcp_destroy_sock"), Need::Optional),
        ],
    },
    ObjectSpec {
        name: "privilege.bpf.o",
        bytes: podtrail_ebpf::privilege_object,
        // `bpf` last: podtraild's own loads and attaches before it are not recorded.
        programs: syscall_programs!(
            [(CAP_CHECK_PROGRAM, Attach::BtfTracepoint("cap_capable"), Need::Optional),]
            "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "capset", "setns", "unshare", "mount", "umount", "ptrace",
            "init_module", "finit_module", "memfd_create", "bpf"
        ),
    },
];

/// How the privilege syscalls are traced: `fentry` on their x86-64 and 32-bit
/// wrappers when every one of [`FENTRY_PROGRAMS`] attaches (no cost to other
/// syscalls), else the syscall tracepoints (every syscall of every task takes
/// the kernel's tracing entry path while one is enabled), or `off`
/// (`--no-syscall-tracepoints`). Recorded in the catalog `meta` under this key.
pub const META_PRIVILEGE_SYSCALLS: &str = "privilege_syscalls";

macro_rules! fentry_programs {
    ([$($x64:literal),*] [$(($fn32:literal, $p32:literal, $sys32:literal)),*]) => {
        &[
            $(
                (concat!("fentry_", $x64), Attach::FEntry(concat!("__x64_sys_", $x64)), $x64),
                (concat!("fexit_", $x64), Attach::FExit(concat!("__x64_sys_", $x64)), $x64),
            )*
            $(
                (concat!("fentry32_", $p32), Attach::FEntry($fn32), $sys32),
                (concat!("fexit32_", $p32), Attach::FExit($fn32), $sys32),
            )*
        ]
    };
}

/// privilege.bpf.o's fentry/fexit pairs with the syscall each traces: the
/// x86-64 wrapper of each traced syscall, then its 32-bit entries (skipped
/// together on a kernel without 32-bit emulation, i.e. without `__ia32_sys_setuid`).
const FENTRY_PROGRAMS: &[(&str, Attach, &str)] = fentry_programs!(
    ["setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "capset", "setns", "unshare", "mount", "umount", "ptrace",
     "init_module", "finit_module", "memfd_create", "bpf"]
    [("__ia32_sys_setuid", "setuid", "setuid"), ("__ia32_sys_setgid", "setgid", "setgid"), ("__ia32_sys_setreuid", "setreuid", "setreuid"),
     ("__ia32_sys_setregid", "setregid", "setregid"), ("__ia32_sys_setresuid", "setresuid", "setresuid"), ("__ia32_sys_setresgid", "setresgid", "setresgid"),
     ("__ia32_sys_setuid16", "setuid16", "setuid"), ("__ia32_sys_setgid16", "setgid16", "setgid"), ("__ia32_sys_setreuid16", "setreuid16", "setreuid"),
     ("__ia32_sys_setregid16", "setregid16", "setregid"), ("__ia32_sys_setresuid16", "setresuid16", "setresuid"),
     ("__ia32_sys_setresgid16", "setresgid16", "setresgid"), ("__ia32_sys_capset", "capset", "capset"), ("__ia32_sys_setns", "setns", "setns"),
     ("__ia32_sys_unshare", "unshare", "unshare"), ("__ia32_sys_mount", "mount", "mount"), ("__ia32_sys_umount", "umount", "umount"),
     ("__ia32_compat_sys_ptrace", "ptrace", "ptrace"), ("__ia32_sys_init_module", "init_module", "init_module"),
     ("__ia32_sys_finit_module", "finit_module", "finit_module"), ("__ia32_sys_memfd_create", "memfd_create", "memfd_create"),
     ("__ia32_sys_bpf", "bpf", "bpf")]
);

/// Attach every fentry/fexit pair of privilege.bpf.o, or none: on the first
/// failure the ones attached are detached again and the reason returned.
/// `kallsyms`: the kernel's symbols. A syscall the kernel does not have at all
/// (no `__x64_sys_<name>`, e.g. module loading without module support) is
/// skipped and listed in `absent`; its 32-bit entries are required whenever the
/// kernel has 32-bit emulation (`__ia32_sys_setuid`), else a 32-bit caller
/// would go unseen.
fn attach_fentry_mode(ebpf: &mut Ebpf, btf: &Btf, kallsyms: &std::collections::HashSet<&str>, absent: &mut Vec<String>) -> Result<usize, String> {
    let ia32 = kallsyms.contains("__ia32_sys_setuid");
    let mut attached: Vec<&'static str> = Vec::new();
    let mut skipped = Vec::new();
    // `bpf` last: podtraild's own attaches before it are not recorded.
    let ordered = FENTRY_PROGRAMS.iter().filter(|p| p.2 != "bpf").chain(FENTRY_PROGRAMS.iter().filter(|p| p.2 == "bpf"));
    for &(program, attach, syscall) in ordered {
        let point = attach.point(Path::new("/"));
        if !kallsyms.contains(format!("__x64_sys_{syscall}").as_str()) {
            skipped.push(format!("{program} ({point}): this kernel has no {syscall} syscall"));
            continue;
        }
        let is32 = program.starts_with("fentry32_") || program.starts_with("fexit32_");
        if is32 && !ia32 {
            continue;
        }
        if let Err(reason) = attach_one(ebpf, program, attach, btf, Path::new("/")) {
            for p in attached {
                let Some(prog) = ebpf.program_mut(p) else { continue };
                let undone = match prog {
                    aya::programs::Program::FEntry(f) => f.unload(),
                    aya::programs::Program::FExit(f) => f.unload(),
                    _ => Ok(()),
                };
                if let Err(e) = undone {
                    tracing::warn!(program.name = p, error = %e, "detaching an fentry program again");
                }
            }
            return Err(format!("{program} ({point}): {reason}"));
        }
        attached.push(program);
    }
    absent.extend(skipped);
    Ok(attached.len())
}

/// The program that counts capability checks: without it there is no
/// capability profile (`podtrail profile` says so).
pub const CAP_CHECK_PROGRAM: &str = "cap_check";


/// Kernel functions whose CAP_SYS_ADMIN checks are the kernel's own probes, not
/// a program's use of the capability (skipped by `cap_check`).
const NOAUDIT_SITES: &[&str] = &["security_vm_enough_memory_mm", "cap_vm_enough_memory"];

#[derive(Clone, Copy)]
#[repr(transparent)]
struct CapKeyPod(CapKey);
// SAFETY: CapKey is #[repr(C)] plain data (integers, explicit padding field).
unsafe impl Pod for CapKeyPod {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct CapValPod(CapVal);
// SAFETY: CapVal is #[repr(C)] plain data (u64s).
unsafe impl Pod for CapValPod {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct DropKeyPod(DropKey);
// SAFETY: DropKey is #[repr(C)] plain data (integers, explicit padding field).
unsafe impl Pod for DropKeyPod {}

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
    #[error("reading {path} (named by {BPF_OVERRIDE_ENV}): {reason}")]
    Override { path: String, reason: String },
    #[error("{0}")]
    MapEntries(String),
    #[error("setting up the wait on the ring buffers (epoll): {0}")]
    Epoll(std::io::Error),
}

/// A directory whose `<object>.bpf.o` files replace the built-in objects: how
/// tests/vmtest.sh --break-core loads a deliberately broken program. Logged, and
/// recorded in the catalog (`meta` key `bpf_objects_overridden`).
pub const BPF_OVERRIDE_ENV: &str = "PODTRAIL_BPF_OVERRIDE_DIR";

/// `map=entries,...`: load the named maps with that many entries instead of
/// their size in the object (tests only: how the fault tests fill the
/// `established` map with a few thousand connections). Logged when set.
pub const MAP_ENTRIES_ENV: &str = "PODTRAIL_TEST_MAP_ENTRIES";

/// [`MAP_ENTRIES_ENV`]'s value parsed; a malformed entry is an error naming it.
fn map_entries_override(value: &str) -> Result<Vec<(String, u32)>, String> {
    value
        .split(',')
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let (name, n) = e.split_once('=').ok_or_else(|| format!("{MAP_ENTRIES_ENV}: `{e}` is not map=entries"))?;
            let n: u32 = n.trim().parse().ok().filter(|&n| n > 0).ok_or_else(|| format!("{MAP_ENTRIES_ENV}: `{e}`: entries must be a positive number"))?;
            Ok((name.trim().to_owned(), n))
        })
        .collect()
}

/// One loaded object: its drop counters (its ring buffer is in [`RingReader`]).
struct Source {
    object: &'static str,
    /// Its programs, as named in [`OBJECTS`] and [`FENTRY_PROGRAMS`].
    programs: Vec<&'static str>,
    drops: PerCpuArray<MapData, u64>,
    drops_by_cgroup: BpfHashMap<MapData, DropKeyPod, u64>,
    /// privilege.bpf.o's capability counters.
    cap_usage: Option<BpfHashMap<MapData, CapKeyPod, CapValPod>>,
    // Keeps the object's programs attached for as long as the source lives.
    _ebpf: Ebpf,
}

pub struct Probes {
    sources: Vec<Source>,
    /// The ring buffers, until [`Probes::take_reader`] hands them to a thread.
    reader: Option<RingReader>,
    /// Programs that failed to load or attach (only with `allow_partial`).
    pub missing: Vec<String>,
    /// Optional programs this kernel cannot run: `program (attach point): reason`.
    pub unavailable: Vec<String>,
    /// Objects loaded from [`BPF_OVERRIDE_ENV`] instead of the built-in ones.
    pub overridden: Vec<String>,
    /// `fentry`, `tracepoints` or `off`: see [`META_PRIVILEGE_SYSCALLS`].
    pub privilege_syscalls: &'static str,
    /// Why fentry mode was not used (the first program that failed), if tried.
    pub fentry_refused: Option<String>,
}

/// [lo, hi) address ranges of the kernel functions named in `names`, from
/// /proc/kallsyms text (a function ends where the next symbol starts).
fn kallsyms_ranges(kallsyms: &str, names: &[&str]) -> Vec<(u64, u64)> {
    let mut syms: Vec<(u64, &str)> = kallsyms
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let addr = u64::from_str_radix(it.next()?, 16).ok()?;
            let _kind = it.next()?;
            Some((addr, it.next()?))
        })
        .filter(|(a, _)| *a != 0)
        .collect();
    syms.sort_unstable_by_key(|s| s.0);
    let mut out = Vec::new();
    for (i, (addr, name)) in syms.iter().enumerate() {
        if names.contains(name)
            && let Some(next) = syms[i + 1..].iter().find(|s| s.0 > *addr)
        {
            out.push((*addr, next.0));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
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
    /// `syscall_tracepoints`: attach the privilege syscall programs (off: they
    /// are listed as unavailable, "disabled").
    pub fn load(allow_partial: bool, syscall_tracepoints: bool, cgroup_root: &Path) -> Result<Self, ProbeError> {
        check_privileges()?;
        let btf = Btf::from_sys_fs().map_err(|e| ProbeError::NoBtf(e.to_string()))?;
        ensure_kernel_filesystems();
        raise_memlock();
        let mut sources = Vec::new();
        let mut missing = Vec::new();
        let mut unavailable = Vec::new();
        let mut rings = Vec::new();
        // The kernel's own CAP_SYS_ADMIN probes, by address (root reads real
        // addresses from kallsyms). Without them every fork and mmap of every
        // process would count as a use of CAP_SYS_ADMIN.
        let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        let ranges = kallsyms_ranges(&kallsyms, NOAUDIT_SITES);
        // The syscall wrappers the kernel has, for the fentry mode of the privilege syscalls.
        let wrappers: std::collections::HashSet<&str> =
            kallsyms.lines().filter_map(|l| l.rsplit(' ').next()).filter(|n| n.starts_with("__x64_sys_") || n.starts_with("__ia32_")).collect();
        let mut noaudit = [0u64; 4];
        for (i, (lo, hi)) in ranges.iter().take(2).enumerate() {
            noaudit[2 * i] = *lo;
            noaudit[2 * i + 1] = *hi;
        }
        if ranges.is_empty() {
            tracing::warn!(functions = ?NOAUDIT_SITES, "none of these kernel functions is in /proc/kallsyms: the kernel's own CAP_SYS_ADMIN probes on memory accounting will be counted as uses of CAP_SYS_ADMIN");
        }
        let override_dir = std::env::var_os(BPF_OVERRIDE_ENV).filter(|d| !d.is_empty()).map(PathBuf::from);
        let map_entries = map_entries_override(&std::env::var(MAP_ENTRIES_ENV).unwrap_or_default()).map_err(ProbeError::MapEntries)?;
        if !map_entries.is_empty() {
            tracing::warn!(maps = ?map_entries, "map sizes overridden ({MAP_ENTRIES_ENV}; for tests only)");
        }
        let mut overridden = Vec::new();
        let mut attached = 0usize;
        let mut privilege_syscalls = "tracepoints";
        let mut fentry_refused = None;
        for spec in OBJECTS {
            let object = spec.name;
            let replacement = match override_dir.as_ref().map(|d| d.join(object)).filter(|p| p.exists()) {
                Some(path) => {
                    let bytes = std::fs::read(&path).map_err(|e| ProbeError::Override { path: path.display().to_string(), reason: e.to_string() })?;
                    tracing::warn!(object, path = %path.display(), "loading this file instead of the built-in object ({BPF_OVERRIDE_ENV}; for testing kernels only)");
                    overridden.push(format!("{object}: {}", path.display()));
                    Some(bytes)
                }
                None => None,
            };
            let mut loader = EbpfLoader::new();
            loader.btf(Some(&btf)).override_global("noaudit_sites", &noaudit, false);
            for (map, entries) in &map_entries {
                loader.map_max_entries(map, *entries);
            }
            let mut ebpf = loader.load(replacement.as_deref().unwrap_or_else(|| (spec.bytes)())).map_err(|source| ProbeError::Load { object, source })?;
            let mut syscalls_by_fentry = false;
            let mut syscall_mode_decided = false;
            for &(program, attach, need) in spec.programs {
                // The privilege syscalls: fentry when the kernel allows it, so
                // that no syscall tracepoint puts every syscall on the tracing
                // path. Decided here, after the object's other programs loaded:
                // podtraild's own bpf() calls before are not recorded.
                if matches!(attach, Attach::Tracepoint("syscalls", _)) && !syscall_mode_decided {
                    syscall_mode_decided = true;
                    if !syscall_tracepoints {
                        privilege_syscalls = "off";
                    } else if replacement.is_some() {
                        // A replaced object is tested as given, through its tracepoints.
                        privilege_syscalls = "tracepoints";
                    } else {
                        let mut absent = Vec::new();
                        match attach_fentry_mode(&mut ebpf, &btf, &wrappers, &mut absent) {
                            Ok(n) => {
                                for a in absent {
                                    tracing::warn!(reason = %a, "unavailable on this kernel: its events will not be recorded; everything else is");
                                    unavailable.push(a);
                                }
                                tracing::info!(programs = n, "privilege syscalls traced with fentry/fexit: no syscall tracepoint, other syscalls pay nothing");
                                attached += n;
                                syscalls_by_fentry = true;
                                privilege_syscalls = "fentry";
                            }
                            Err(reason) => {
                                fentry_refused = Some(reason.clone());
                                tracing::info!(%reason, "fentry unavailable on this kernel: privilege syscalls traced with syscall tracepoints (every syscall then takes the kernel's tracing entry path; --no-syscall-tracepoints turns them off)");
                                privilege_syscalls = "tracepoints";
                            }
                        }
                    }
                }
                let point = attach.point(cgroup_root);
                if syscalls_by_fentry && matches!(attach, Attach::Tracepoint("syscalls", _)) {
                    continue;
                }
                if !syscall_tracepoints && matches!(attach, Attach::Tracepoint("syscalls", _)) {
                    unavailable.push(format!("{program} ({point}): disabled by --no-syscall-tracepoints"));
                    continue;
                }
                match attach_one(&mut ebpf, program, attach, &btf, cgroup_root) {
                    Ok(()) => {
                        attached += 1;
                        tracing::debug!(program.name = program, attach_point = %point, "attached");
                    }
                    Err(reason) if need == Need::Optional => {
                        tracing::warn!(program.name = program, attach_point = %point, %reason, "unavailable on this kernel: its events will not be recorded; everything else is");
                        unavailable.push(format!("{program} ({point}): {reason}"));
                    }
                    Err(reason) if allow_partial => {
                        tracing::warn!(program.name = program, attach_point = %point, %reason, "not attached (--allow-partial): its events will not be recorded");
                        missing.push(format!("{program} ({point}): {reason}"));
                    }
                    Err(reason) => return Err(ProbeError::Program { program, attach_point: point, reason }),
                }
            }
            let map_err = |map: &'static str, reason: String| ProbeError::Map { object, map, reason };
            let events = ebpf.take_map("events").ok_or_else(|| map_err("events", "absent".into()))?;
            let size = match &events {
                aya::maps::Map::RingBuf(d) => d.info().map(|i| u64::from(i.max_entries())).map_err(|e| map_err("events", e.to_string()))?,
                _ => return Err(map_err("events", "not a ring buffer".into())),
            };
            let ring = RingBuf::try_from(events)
                .map_err(|e| map_err("events", e.to_string()))?;
            let drops = PerCpuArray::try_from(ebpf.take_map("drops").ok_or_else(|| map_err("drops", "absent".into()))?)
                .map_err(|e| map_err("drops", e.to_string()))?;
            let drops_by_cgroup = BpfHashMap::try_from(ebpf.take_map("drops_by_cgroup").ok_or_else(|| map_err("drops_by_cgroup", "absent".into()))?)
                .map_err(|e| map_err("drops_by_cgroup", e.to_string()))?;
            let cap_usage = match ebpf.take_map("cap_usage") {
                Some(m) => Some(BpfHashMap::try_from(m).map_err(|e| map_err("cap_usage", e.to_string()))?),
                None => None,
            };
            let positions = RingPositions::map(ring.as_fd().as_raw_fd()).map_err(|e| map_err("events", format!("mapping its positions read-only: {e}")))?;
            let gauge = std::sync::Arc::new(RingGauge { object, size, pending: Default::default(), peak: Default::default() });
            rings.push(Ring { ring, positions, gauge });
            let programs = spec.programs.iter().map(|p| p.0).chain(if object == "privilege.bpf.o" { FENTRY_PROGRAMS.iter().map(|p| p.0).collect() } else { Vec::new() }).collect();
            sources.push(Source { object, programs, drops, drops_by_cgroup, cap_usage, _ebpf: ebpf });
        }
        if !syscall_tracepoints {
            tracing::info!("privilege syscalls not traced (--no-syscall-tracepoints): no privilege rows for them; capability counting stays on");
        }
        tracing::info!(programs.attached = attached, programs.unavailable = unavailable.len(), programs.missing = missing.len(), privilege_syscalls, "eBPF programs attached");
        Ok(Probes { sources, reader: Some(RingReader::new(rings)?), missing, unavailable, overridden, privilege_syscalls, fentry_refused })
    }

    /// The ring buffers, to be drained on their own thread (once).
    pub fn take_reader(&mut self) -> Option<RingReader> {
        self.reader.take()
    }

    /// Snapshot of the kernel's capability counters (cumulative since load).
    pub fn cap_usage(&self) -> Vec<(CapKey, CapVal)> {
        let mut out = Vec::new();
        for s in &self.sources {
            let Some(map) = &s.cap_usage else { continue };
            for item in map.iter() {
                match item {
                    Ok((k, v)) => out.push((k.0, v.0)),
                    // A key deleted while iterating: the next snapshot sees the rest.
                    Err(e) => tracing::debug!(object = s.object, "reading cap_usage: {e}"),
                }
            }
        }
        out
    }

    /// Remove counters (after their last counts were read).
    pub fn forget_cap_usage(&mut self, keys: &[CapKey]) {
        for s in &mut self.sources {
            let Some(map) = &mut s.cap_usage else { continue };
            for k in keys {
                let _ = map.remove(&CapKeyPod(*k));
            }
        }
    }


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
    /// and per (cgroup, reason). The per-cgroup map is read first: the
    /// kernel bumps the per-reason counter first, so what is read per cgroup
    /// never exceeds the totals read after it. Only read when a total moved
    /// since `last`: nothing to attribute otherwise.
    pub fn drop_counts(&self, last: &DropCounts) -> DropCounts {
        let totals = |sources: &[Source]| {
            let mut total = [0u64; podtrail_ebpf::DROP_REASONS];
            for s in sources {
                for (reason, sum) in total.iter_mut().enumerate() {
                    match s.drops.get(&(reason as u32), 0) {
                        Ok(v) => *sum += v.iter().sum::<u64>(),
                        Err(e) => tracing::warn!(object = s.object, reason, "reading the drop counters: {e}"),
                    }
                }
            }
            total
        };
        let total = totals(&self.sources);
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
        DropCounts { total: totals(&self.sources), by_cgroup }
    }
}

/// The ring buffers of every object. Drained on a thread of its own, so the
/// kernel's buffers keep emptying while the pipeline builds and writes a flush.
pub struct RingReader {
    rings: Vec<Ring>,
    /// Edge-triggered on every ring: a wait ends at the kernel's wakeups only
    /// (PT_WAKEUP_BYTES pooled), not whenever a record is unread. poll(2) is
    /// level-triggered on a ring buffer: under a storm it returned at once
    /// after every drain, ~5,600 passes a second of a few records each.
    epoll: std::os::fd::OwnedFd,
}

struct Ring {
    ring: RingBuf<MapData>,
    positions: RingPositions,
    gauge: std::sync::Arc<RingGauge>,
}

/// How full one ring buffer was when the reader woke up to drain it: the bytes
/// the kernel had written that userspace had not consumed yet.
#[derive(Debug)]
pub struct RingGauge {
    pub object: &'static str,
    /// Data area size in bytes.
    pub size: u64,
    /// Pending bytes at the latest wakeup.
    pub pending: std::sync::atomic::AtomicU64,
    /// Highest pending bytes at any wakeup since the recorder started.
    pub peak: std::sync::atomic::AtomicU64,
}

impl RingGauge {
    /// `pending` as a fraction of the ring's size.
    pub fn fill(&self) -> f64 {
        self.ratio(self.pending.load(std::sync::atomic::Ordering::Relaxed))
    }
    /// `peak` as a fraction of the ring's size (1.0: records were being dropped).
    pub fn peak_fill(&self) -> f64 {
        self.ratio(self.peak.load(std::sync::atomic::Ordering::Relaxed))
    }
    fn ratio(&self, bytes: u64) -> f64 {
        if self.size == 0 { 0.0 } else { bytes as f64 / self.size as f64 }
    }
}

/// Read-only mappings of a BPF ring buffer's consumer and producer position
/// pages (the kernel allows mapping them without write access).
struct RingPositions {
    consumer: *mut libc::c_void,
    producer: *mut libc::c_void,
    page: usize,
}

// SAFETY: the mappings are owned by this value and only read with atomic loads.
unsafe impl Send for RingPositions {}

impl RingPositions {
    fn map(fd: std::os::fd::RawFd) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let map = |offset: usize| {
            // SAFETY: a new read-only shared mapping of the map fd; checked below.
            let p = unsafe { libc::mmap(std::ptr::null_mut(), page, libc::PROT_READ, libc::MAP_SHARED, fd, offset as libc::off_t) };
            if p == libc::MAP_FAILED { Err(std::io::Error::last_os_error()) } else { Ok(p) }
        };
        let consumer = map(0)?;
        let producer = match map(page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: unmapping the mapping made just above.
                unsafe { libc::munmap(consumer, page) };
                return Err(e);
            }
        };
        Ok(RingPositions { consumer, producer, page })
    }

    /// Bytes written by the kernel and not yet consumed.
    fn pending(&self) -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        // SAFETY: each mapping is a page whose first 8 bytes are the kernel's
        // 64-bit position, updated atomically; it lives as long as `self`.
        let (c, p) = unsafe { ((*(self.consumer as *const AtomicU64)).load(Ordering::Acquire), (*(self.producer as *const AtomicU64)).load(Ordering::Acquire)) };
        p.saturating_sub(c)
    }
}

impl Drop for RingPositions {
    fn drop(&mut self) {
        // SAFETY: unmapping the two pages mapped in `map`.
        unsafe {
            libc::munmap(self.consumer, self.page);
            libc::munmap(self.producer, self.page);
        }
    }
}

impl RingReader {
    fn new(rings: Vec<Ring>) -> Result<Self, ProbeError> {
        use std::os::fd::FromRawFd;
        // SAFETY: epoll_create1 has no memory preconditions; a valid fd is owned below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(ProbeError::Epoll(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
        let epoll = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        for (i, r) in rings.iter().enumerate() {
            let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: i as u64 };
            // SAFETY: both fds are open for the call; `ev` is a valid epoll_event.
            if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, r.ring.as_fd().as_raw_fd(), &mut ev) } < 0 {
                return Err(ProbeError::Epoll(std::io::Error::last_os_error()));
            }
        }
        Ok(RingReader { rings, epoll })
    }

    /// Fill gauges of every ring buffer, updated at each [`RingReader::poll`].
    pub fn gauges(&self) -> Vec<std::sync::Arc<RingGauge>> {
        self.rings.iter().map(|r| std::sync::Arc::clone(&r.gauge)).collect()
    }

    /// Wait up to `timeout_ms` for the kernel's wakeup, then hand every
    /// available record of every ring to `each` (borrowed from the ring buffer:
    /// no copy). Returns how many. Whatever woke it (or nothing), every ring is
    /// drained, so no record waits longer than one timeout.
    pub fn poll(&mut self, timeout_ms: i32, mut each: impl FnMut(&[u8])) -> usize {
        let mut ready = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: the epoll fd is open; `ready` is valid for `ready.len()` events.
        unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), ready.as_mut_ptr(), ready.len() as i32, timeout_ms) };
        let mut n = 0;
        // Privilege and connection events are drained before process events:
        // an exec that happened before a connect is then always in the same
        // pass (or an earlier one), and passes are ordered by kernel time, so
        // the connect finds the process image it ran in.
        for Ring { ring, positions, gauge } in self.rings.iter_mut().rev() {
            let pending = positions.pending();
            gauge.pending.store(pending, std::sync::atomic::Ordering::Relaxed);
            gauge.peak.fetch_max(pending, std::sync::atomic::Ordering::Relaxed);
            while let Some(item) = ring.next() {
                each(&item);
                n += 1;
            }
        }
        n
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
        Attach::Tracepoint(category, name) => {
            let p: &mut TracePoint = prog.try_into().map_err(|e: ProgramError| e.to_string())?;
            p.load().map_err(|e| program_error_reason(&e))?;
            p.attach(category, name).map_err(|e| program_error_reason(&e))?;
        }
        Attach::FEntry(function) => {
            let p: &mut FEntry = prog.try_into().map_err(|e: ProgramError| e.to_string())?;
            p.load(function, btf).map_err(|e| program_error_reason(&e))?;
            p.attach().map_err(|e| program_error_reason(&e))?;
        }
        Attach::FExit(function) => {
            let p: &mut FExit = prog.try_into().map_err(|e: ProgramError| e.to_string())?;
            p.load(function, btf).map_err(|e| program_error_reason(&e))?;
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
            let tail: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
            if tail.is_empty() {
                // Refused before the verifier ran (e.g. fentry not permitted).
                format!("{io_error}")
            } else {
                format!("{io_error}; verifier log (last lines): {}", tail.join(" | "))
            }
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
    fn every_drop_reason_is_described_at_its_own_number() {
        for (i, r) in DROP_REASONS.iter().enumerate() {
            assert_eq!(r.reason, i, "DROP_REASONS[{i}] describes reason {}", r.reason);
            assert!(OBJECTS.iter().any(|o| r.detail.contains(o.name)), "reason {i} does not name its object: {}", r.detail);
            assert!(["kernel_ringbuf", "kernel_map", "incomplete"].contains(&r.source), "reason {i}: source {}", r.source);
        }
    }

    #[test]
    fn every_program_puts_its_skipped_runs_on_a_table() {
        for o in OBJECTS {
            for (p, _, _) in o.programs {
                assert!(table_of_program(p).is_some(), "{} of {}: no table", p, o.name);
            }
        }
        for (p, _, _) in FENTRY_PROGRAMS {
            assert!(table_of_program(p).is_some(), "{p}: no table");
        }
        assert_eq!(table_of_program("handle_fork"), Some(None), "fork records are not rows");
        assert_eq!(table_of_program("not_a_program"), None);
    }

    #[test]
    fn map_entries_override_parses_and_names_a_bad_entry() {
        assert_eq!(map_entries_override("established=1024, connects=64").unwrap(), vec![("established".into(), 1024), ("connects".into(), 64)]);
        assert!(map_entries_override("").unwrap().is_empty());
        assert!(map_entries_override("established").unwrap_err().contains("`established`"));
        assert!(map_entries_override("established=0").unwrap_err().contains("positive"));
    }

    #[test]
    fn every_privilege_syscall_has_its_program_pair() {
        let spec = OBJECTS.iter().find(|o| o.name == "privilege.bpf.o").unwrap();
        let names: Vec<&str> = spec.programs.iter().map(|p| p.0).collect();
        for (sys, _) in podtrail_ebpf::PRIV_SYSCALLS {
            assert!(names.contains(&format!("enter_{sys}").as_str()) && names.contains(&format!("exit_{sys}").as_str()), "no program pair for {sys}");
        }
        assert_eq!(names.len(), 2 * podtrail_ebpf::PRIV_SYSCALLS.len() + 1);
    }

    #[test]
    fn every_privilege_syscall_has_fentry_pairs_for_its_64_and_32_bit_entries_in_the_object() {
        let obj = elf_function_names(podtrail_ebpf::privilege_object());
        for &(program, _, _) in FENTRY_PROGRAMS {
            assert!(obj.iter().any(|n| n == program), "{program} is not in privilege.bpf.o");
        }
        for (sys, _) in podtrail_ebpf::PRIV_SYSCALLS {
            let of = |prefix: &str| FENTRY_PROGRAMS.iter().filter(|(p, _, s)| p.starts_with(prefix) && s == sys).count();
            assert_eq!((of("fentry_"), of("fexit_")), (1, 1), "x86-64 pair of {sys}");
            assert!(of("fentry32_") >= 1 && of("fentry32_") == of("fexit32_"), "32-bit pairs of {sys}");
        }
    }

    /// Program names in an object file (its ELF symbol table, functions only).
    fn elf_function_names(bytes: &[u8]) -> Vec<String> {
        // Enough ELF for a relocatable BPF object: find .symtab and .strtab.
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) as usize;
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap()) as usize;
        let (shoff, shentsize, shnum) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
        let sec = |i: usize| shoff + i * shentsize;
        let symtab = (0..shnum).find(|&i| u32_at(sec(i) + 4) == 2).expect("a symbol table");
        let strtab = u32_at(sec(symtab) + 0x28);
        let (sym_off, sym_size, str_off) = (u64_at(sec(symtab) + 0x18), u64_at(sec(symtab) + 0x20), u64_at(sec(strtab) + 0x18));
        (0..sym_size / 24)
            .map(|k| sym_off + k * 24)
            .filter(|&s| bytes[s + 4] & 0xf == 2) // STT_FUNC
            .map(|s| {
                let name = str_off + u32_at(s);
                let end = bytes[name..].iter().position(|&b| b == 0).unwrap();
                String::from_utf8_lossy(&bytes[name..name + end]).into_owned()
            })
            .collect()
    }

    #[test]
    fn kallsyms_ranges_end_at_the_next_symbol() {
        let ks = "ffffffff81000000 T _stext\nffffffff81200010 T security_vm_enough_memory_mm\nffffffff81200010 t alias_same_addr\nffffffff812000a0 T next_fn\n0000000000000000 T hidden\n";
        assert_eq!(kallsyms_ranges(ks, NOAUDIT_SITES), vec![(0xffffffff81200010, 0xffffffff812000a0)]);
        assert!(kallsyms_ranges(ks, &["absent"]).is_empty());
    }

    #[test]
    fn tracefs_and_bpffs_are_found_by_type_wherever_mounted() {
        let info = "40 22 0:12 / /sys/kernel/tracing rw - tracefs tracefs rw\n51 22 0:40 / /run/my\\040bpf rw - bpf bpf rw\n";
        assert_eq!(mounts_of(info, "tracefs"), vec![PathBuf::from("/sys/kernel/tracing")]);
        assert_eq!(mounts_of(info, "bpf"), vec![PathBuf::from("/run/my bpf")]);
        assert!(mounts_of("25 20 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "bpf").is_empty());
    }
}
