//! What the kernel offers, found where it is: the cgroup v2 mount, tracefs and
//! bpffs (mounted when missing), and kernel function addresses (kallsyms).

use std::path::PathBuf;

/// Kernel functions whose CAP_SYS_ADMIN checks are the kernel's own probes, not
/// a program's use of the capability (skipped by `cap_check`).
pub(super) const NOAUDIT_SITES: &[&str] = &["security_vm_enough_memory_mm", "cap_vm_enough_memory"];

/// [lo, hi) address ranges of the kernel functions named in `names`, from
/// /proc/kallsyms text (a function ends where the next symbol starts).
pub(super) fn kallsyms_ranges(kallsyms: &str, names: &[&str]) -> Vec<(u64, u64)> {
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
