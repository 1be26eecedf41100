//! `probes` stage: load the kernel programs (aya), attach them, drain the ring
//! buffers, read what they lost.
//!
//! In: the embedded objects of podtrail-ebpf. Out: raw records (bytes, through
//! [`RingReader`]), the kernel's capability counters, and what the programs
//! lost (per reason and cgroup, and the runs the kernel skipped). All aya calls
//! live in this module and its files, so an aya upgrade touches only them:
//! `objects` (what is loaded and how it attaches; fentry mode), `ring` (the
//! ring buffers), `drops` (loss counters), `kernel` (mounts and symbols).
//! Programs use tracepoints, `tp_btf` and cgroup hooks everywhere; fentry/fexit
//! only for the privilege syscalls, where the kernel allows it.

mod drops;
mod kernel;
pub mod listeners;
mod objects;
mod ring;

use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::{Btf, Ebpf, EbpfLoader, Pod};
use podtrail_ebpf::{CapKey, CapVal, FlowKey, FlowOwner, FlowVal};

pub use drops::{DROP_REASONS, DropCounts, DropReason, SkippedRuns};
pub use kernel::{cgroup2_mount, ensure_kernel_filesystems};
pub use objects::{CAP_CHECK_PROGRAM, FILE_OBJECT, META_PRIVILEGE_SYSCALLS, PRIVILEGE_OBJECT, table_of_program};
pub use ring::{RingGauge, RingReader};

use drops::DropKeyPod;
use kernel::{NOAUDIT_SITES, kallsyms_ranges};
use objects::{Attach, Need, attach_fentry_mode, attach_one, objects};
use ring::{Ring, RingPositions};

use crate::files::Watches;

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

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
struct ListenerKeyPod(podtrail_ebpf::ListenerKey);
// SAFETY: ListenerKey is #[repr(C)] plain data (integers, explicit padding field).
unsafe impl Pod for ListenerKeyPod {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct ListenerOwnerPod(podtrail_ebpf::ListenerOwner);
// SAFETY: ListenerOwner is #[repr(C)] plain data (integers, a byte array, explicit padding).
unsafe impl Pod for ListenerOwnerPod {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct FlowKeyPod(FlowKey);
// SAFETY: FlowKey is #[repr(C)] plain data (integers, a byte array, explicit padding).
unsafe impl Pod for FlowKeyPod {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct FlowValPod(FlowVal);
// SAFETY: FlowVal is #[repr(C)] plain data (integers, byte arrays, explicit padding).
unsafe impl Pod for FlowValPod {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct FlowOwnerPod(FlowOwner);
// SAFETY: FlowOwner is #[repr(C)] plain data (integers, a byte array, explicit padding).
unsafe impl Pod for FlowOwnerPod {}

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
    /// Its programs, as named in [`objects()`](objects::objects) and
    /// [`fentry_programs()`](objects::fentry_programs).
    programs: Vec<&'static str>,
    drops: PerCpuArray<MapData, u64>,
    drops_by_cgroup: BpfHashMap<MapData, DropKeyPod, u64>,
    /// privilege.bpf.o's capability counters.
    cap_usage: Option<BpfHashMap<MapData, CapKeyPod, CapValPod>>,
    /// net.bpf.o's listening sockets' processes.
    listeners: Option<BpfHashMap<MapData, ListenerKeyPod, ListenerOwnerPod>>,
    /// net.bpf.o's UDP and ICMP flow counters, and the processes of the sockets
    /// not released yet.
    flows: Option<BpfHashMap<MapData, FlowKeyPod, FlowValPod>>,
    flow_socks: Option<BpfHashMap<MapData, u64, FlowOwnerPod>>,
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
    /// How file operations are traced: `tracepoints`, `off` (`--no-file-events`,
    /// `--no-syscall-tracepoints`) or `unavailable` (the kernel refused the
    /// exit program): see [`META_FILE_EVENTS`].
    pub file_events: &'static str,
}

/// How the `file` table is recorded (`tracepoints` or `off`) and what it
/// watches: the catalog `meta` key.
pub const META_FILE_EVENTS: &str = "file_events";

/// Write the watched prefixes and names into file.bpf.o's maps (index = the
/// position in each list, as records carry it). Err: the map and the reason.
fn fill_file_watches(ebpf: &mut Ebpf, w: &Watches) -> Result<(), (&'static str, String)> {
    use aya::maps::lpm_trie::{Key, LpmTrie};
    use podtrail_ebpf::{FILE_BASENAME_MAX, FILE_MATCH_MAX};
    for (map, list) in [("write_watch", &w.write), ("read_watch", &w.read)] {
        let mut trie: LpmTrie<&mut MapData, [u8; FILE_MATCH_MAX], u32> =
            LpmTrie::try_from(ebpf.map_mut(map).ok_or((map, "absent".to_string()))?).map_err(|e| (map, e.to_string()))?;
        for (i, prefix) in list.iter().enumerate() {
            let mut data = [0u8; FILE_MATCH_MAX];
            data[..prefix.len()].copy_from_slice(prefix.as_bytes());
            trie.insert(&Key::new(8 * prefix.len() as u32, data), i as u32, 0).map_err(|e| (map, format!("inserting {prefix:?}: {e}")))?;
        }
    }
    let mut names: BpfHashMap<&mut MapData, [u8; FILE_BASENAME_MAX], u32> =
        BpfHashMap::try_from(ebpf.map_mut("name_watch").ok_or(("name_watch", "absent".to_string()))?).map_err(|e| ("name_watch", e.to_string()))?;
    for (i, name) in w.names.iter().enumerate() {
        let mut key = [0u8; FILE_BASENAME_MAX];
        key[..name.len()].copy_from_slice(name.as_bytes());
        names.insert(key, i as u32, 0).map_err(|e| ("name_watch", format!("inserting {name:?}: {e}")))?;
    }
    Ok(())
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
    /// `syscall_tracepoints`: attach the privilege and file syscall programs
    /// (off: they are listed as unavailable, "disabled"). `file_watches`: what
    /// file.bpf.o records (None: the object is not loaded, `--no-file-events`).
    pub fn load(allow_partial: bool, syscall_tracepoints: bool, file_watches: Option<&Watches>, cgroup_root: &Path) -> Result<Self, ProbeError> {
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
        let self_tgid = std::process::id();
        let mut file_events = "off";
        for spec in objects() {
            let object = spec.name;
            if object == FILE_OBJECT && file_watches.is_none() {
                unavailable.push(format!("{object}: disabled by --no-file-events (no `file` rows)"));
                continue;
            }
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
            loader.btf(Some(&btf)).override_global("noaudit_sites", &noaudit, false).override_global("self_tgid", &self_tgid, false);
            for (map, entries) in &map_entries {
                loader.map_max_entries(map, *entries);
            }
            let loaded = loader.load(replacement.as_deref().unwrap_or_else(|| (spec.bytes)()));
            let mut ebpf = match loaded {
                Ok(ebpf) => ebpf,
                // The file table is optional: a kernel that refuses its object
                // records everything else (unavailable, with the reason).
                Err(source) if object == FILE_OBJECT => {
                    tracing::warn!(object, error = %source, "unavailable on this kernel: no `file` rows; everything else is recorded");
                    unavailable.push(format!("{object}: {source}"));
                    file_events = "unavailable";
                    continue;
                }
                Err(source) => return Err(ProbeError::Load { object, source }),
            };
            if let (FILE_OBJECT, Some(w)) = (object, file_watches) {
                // Before any program attaches: no operation is judged by empty
                // lists. Lists that cannot be written leave the object out.
                if let Err((map, reason)) = fill_file_watches(&mut ebpf, w) {
                    tracing::warn!(object, map, %reason, "filling the watch lists failed: no `file` rows; everything else is recorded");
                    unavailable.push(format!("{object}: map {map}: {reason}"));
                    file_events = "unavailable";
                    continue;
                }
                file_events = if syscall_tracepoints { "tracepoints" } else { "off" };
            }
            let mut syscalls_by_fentry = false;
            let mut syscall_mode_decided = false;
            let mut tail_target_missing: Option<String> = None;
            for &(program, attach, need) in &spec.programs {
                // The privilege syscalls: fentry when the kernel allows it, so
                // that no syscall tracepoint puts every syscall on the tracing
                // path. Decided here, after the object's other programs loaded:
                // podtraild's own bpf() calls before are not recorded.
                if object == PRIVILEGE_OBJECT && matches!(attach, Attach::Tracepoint("syscalls", _)) && !syscall_mode_decided {
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
                if let (Some(reason), Attach::Tracepoint("syscalls", _)) = (&tail_target_missing, attach) {
                    // Without the exit they hand over to, their records would only be counted lost.
                    unavailable.push(format!("{program} ({point}): not attached: {reason}"));
                    continue;
                }
                match attach_one(&mut ebpf, program, attach, &btf, cgroup_root) {
                    Ok(()) => {
                        attached += 1;
                        tracing::debug!(program.name = program, attach_point = %point, "attached");
                    }
                    Err(reason) if matches!(attach, Attach::TailCallTarget(_)) => {
                        tracing::warn!(program.name = program, attach_point = %point, %reason, "unavailable on this kernel: the syscall programs that hand over to it are not attached");
                        unavailable.push(format!("{program} ({point}): {reason}"));
                        tail_target_missing = Some(format!("{program}, the exit it hands over to, did not load"));
                        if object == FILE_OBJECT {
                            file_events = "unavailable";
                        }
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
            let listeners = match ebpf.take_map("listeners") {
                Some(m) => Some(BpfHashMap::try_from(m).map_err(|e| map_err("listeners", e.to_string()))?),
                None => None,
            };
            let flows = match ebpf.take_map("flows") {
                Some(m) => Some(BpfHashMap::try_from(m).map_err(|e| map_err("flows", e.to_string()))?),
                None => None,
            };
            let flow_socks = match ebpf.take_map("flow_socks") {
                Some(m) => Some(BpfHashMap::try_from(m).map_err(|e| map_err("flow_socks", e.to_string()))?),
                None => None,
            };
            let positions = RingPositions::map(ring.as_fd().as_raw_fd()).map_err(|e| map_err("events", format!("mapping its positions read-only: {e}")))?;
            let gauge = std::sync::Arc::new(RingGauge { object, size, pending: Default::default(), peak: Default::default() });
            rings.push(Ring { ring, positions, gauge });
            let programs = spec.programs.iter().map(|p| p.0).chain(if object == PRIVILEGE_OBJECT { objects::fentry_programs().iter().map(|p| p.0).collect() } else { Vec::new() }).collect();
            sources.push(Source { object, programs, drops, drops_by_cgroup, cap_usage, listeners, flows, flow_socks, _ebpf: ebpf });
        }
        if file_events == "tracepoints" {
            tracing::info!("file operations traced with syscall tracepoints (--no-file-events turns them off)");
        }
        if !syscall_tracepoints {
            tracing::info!("privilege syscalls not traced (--no-syscall-tracepoints): no privilege rows for them; capability counting stays on");
        }
        tracing::info!(programs.attached = attached, programs.unavailable = unavailable.len(), programs.missing = missing.len(), privilege_syscalls, "eBPF programs attached");
        Ok(Probes { sources, reader: Some(RingReader::new(rings)?), missing, unavailable, overridden, privilege_syscalls, fentry_refused, file_events })
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

    /// Tell the kernel side which process holds each TCP socket listening now
    /// (found in /proc; see [`listeners`]), so that the connections they
    /// accept carry a process although their listen() predates the recorder.
    /// A listener the kernel side already saw (a listen() since attach) is
    /// left as it is. Returns how many were seeded.
    pub fn seed_listeners(&mut self) -> usize {
        let found = listeners::listening_now(Path::new("/proc"));
        let mut seeded = 0;
        for s in &mut self.sources {
            let Some(map) = &mut s.listeners else { continue };
            for l in &found {
                let key = ListenerKeyPod(podtrail_ebpf::ListenerKey { netns: l.netns, port: l.port, pad: 0 });
                let owner = ListenerOwnerPod(podtrail_ebpf::ListenerOwner { sk: 0, pid: l.pid, pad: 0, comm: l.comm });
                // BPF_NOEXIST: never replace what the kernel side recorded.
                match map.insert(key, owner, 1) {
                    Ok(()) => seeded += 1,
                    Err(e) => tracing::debug!(port = l.port, netns = l.netns, "listener not seeded: {e}"),
                }
            }
        }
        seeded
    }

    /// Snapshot of the kernel's UDP and ICMP flow counters (cumulative since
    /// each flow's first packet).
    pub fn flows(&self) -> Vec<(FlowKey, FlowVal)> {
        let mut out = Vec::new();
        for s in &self.sources {
            let Some(map) = &s.flows else { continue };
            for item in map.iter() {
                match item {
                    Ok((k, v)) => out.push((k.0, v.0)),
                    // A flow deleted while iterating (by us, never the kernel).
                    Err(e) => tracing::debug!(object = s.object, "reading flows: {e}"),
                }
            }
        }
        out
    }

    /// Whether the socket of this cookie is still open as far as the kernel
    /// side knows: its creator is in `flow_socks` until its release.
    pub fn flow_socket_open(&self, cookie: u64) -> bool {
        self.sources.iter().filter_map(|s| s.flow_socks.as_ref()).any(|m| m.get(&cookie, 0).is_ok())
    }

    /// Delete a flow whose counts are all in rows, unless it counted more
    /// since `seen` (its value then): the check narrows the window in which a
    /// packet could be counted into an entry being deleted to the two map
    /// calls. Returns whether it was deleted.
    pub fn forget_flow(&mut self, key: &FlowKey, seen: &FlowVal) -> bool {
        for s in &mut self.sources {
            let Some(map) = &mut s.flows else { continue };
            match map.get(&FlowKeyPod(*key), 0) {
                Ok(now) if now.0 == *seen => return map.remove(&FlowKeyPod(*key)).is_ok(),
                _ => return false,
            }
        }
        false
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
    fn map_entries_override_parses_and_names_a_bad_entry() {
        assert_eq!(map_entries_override("established=1024, connects=64").unwrap(), vec![("established".into(), 1024), ("connects".into(), 64)]);
        assert!(map_entries_override("").unwrap().is_empty());
        assert!(map_entries_override("established").unwrap_err().contains("`established`"));
        assert!(map_entries_override("established=0").unwrap_err().contains("positive"));
    }
}
