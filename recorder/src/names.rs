//! The kernel's numbers as names: capabilities, errno values, namespace flags,
//! ptrace requests, bpf commands and program types. A leaf: no stage, no I/O;
//! every stage that shows a kernel number to people takes its name from here.

/// Capability names, by number (linux/capability.h).
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

pub fn cap_name(cap: u32) -> String {
    CAPS.get(cap as usize).map(|s| (*s).to_string()).unwrap_or_else(|| format!("CAP_{cap}"))
}

/// errno names a privilege call or a connection can fail with.
pub fn errno_name(e: u32) -> String {
    let name = match e {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        8 => "ENOEXEC",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        19 => "ENODEV",
        20 => "ENOTDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        28 => "ENOSPC",
        30 => "EROFS",
        36 => "ENAMETOOLONG",
        38 => "ENOSYS",
        95 => "EOPNOTSUPP",
        101 => "ENETUNREACH",
        104 => "ECONNRESET",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        113 => "EHOSTUNREACH",
        n => return format!("errno {n}"),
    };
    name.to_string()
}

/// CLONE_NEW* bits as namespace names; `any` for setns with type 0.
pub fn namespaces(flags: u64, setns: bool) -> Option<String> {
    const NS: &[(u64, &str)] = &[
        (0x0002_0000, "mnt"),
        (0x0200_0000, "cgroup"),
        (0x0400_0000, "uts"),
        (0x0800_0000, "ipc"),
        (0x1000_0000, "user"),
        (0x2000_0000, "pid"),
        (0x4000_0000, "net"),
        (0x0000_0080, "time"),
    ];
    if setns && flags == 0 {
        return Some("any".into());
    }
    let names: Vec<&str> = NS.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, n)| *n).collect();
    (!names.is_empty()).then(|| names.join(","))
}

pub fn ptrace_request(r: u64) -> String {
    let name = match r {
        0 => "PTRACE_TRACEME",
        1 => "PTRACE_PEEKTEXT",
        2 => "PTRACE_PEEKDATA",
        3 => "PTRACE_PEEKUSER",
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSER",
        7 => "PTRACE_CONT",
        8 => "PTRACE_KILL",
        9 => "PTRACE_SINGLESTEP",
        12 => "PTRACE_GETREGS",
        13 => "PTRACE_SETREGS",
        16 => "PTRACE_ATTACH",
        17 => "PTRACE_DETACH",
        24 => "PTRACE_SYSCALL",
        0x4200 => "PTRACE_SETOPTIONS",
        0x4201 => "PTRACE_GETEVENTMSG",
        0x4202 => "PTRACE_GETSIGINFO",
        0x4203 => "PTRACE_SETSIGINFO",
        0x4204 => "PTRACE_GETREGSET",
        0x4205 => "PTRACE_SETREGSET",
        0x4206 => "PTRACE_SEIZE",
        0x4207 => "PTRACE_INTERRUPT",
        0x4208 => "PTRACE_LISTEN",
        n => return format!("ptrace request {n}"),
    };
    name.to_string()
}

pub fn bpf_command(c: u64) -> String {
    match c {
        5 => "BPF_PROG_LOAD".into(),
        8 => "BPF_PROG_ATTACH".into(),
        17 => "BPF_RAW_TRACEPOINT_OPEN".into(),
        28 => "BPF_LINK_CREATE".into(),
        n => format!("bpf command {n}"),
    }
}

const PROG_TYPES: &[&str] = &[
    "unspec",
    "socket_filter",
    "kprobe",
    "sched_cls",
    "sched_act",
    "tracepoint",
    "xdp",
    "perf_event",
    "cgroup_skb",
    "cgroup_sock",
    "lwt_in",
    "lwt_out",
    "lwt_xmit",
    "sock_ops",
    "sk_skb",
    "cgroup_device",
    "sk_msg",
    "raw_tracepoint",
    "cgroup_sock_addr",
    "lwt_seg6local",
    "lirc_mode2",
    "sk_reuseport",
    "flow_dissector",
    "cgroup_sysctl",
    "raw_tracepoint_writable",
    "cgroup_sockopt",
    "tracing",
    "struct_ops",
    "ext",
    "lsm",
    "sk_lookup",
    "syscall",
    "netfilter",
];

/// A BPF program type number as `bpftool` names it.
pub fn prog_type_name(t: u64) -> String {
    PROG_TYPES.get(t as usize).map(|s| (*s).to_string()).unwrap_or_else(|| format!("type {t}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_numbers_are_shown_as_numbers() {
        assert_eq!(cap_name(99), "CAP_99");
        assert_eq!(cap_name(21), "CAP_SYS_ADMIN");
        assert_eq!(errno_name(4095), "errno 4095");
        assert_eq!(prog_type_name(2), "kprobe");
        assert_eq!(prog_type_name(999), "type 999");
    }
}
