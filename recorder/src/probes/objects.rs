//! What podtraild loads: each object with its programs and where they attach,
//! attaching one (with the kernel's reason when it cannot), and the fentry mode
//! of the privilege syscalls. The privilege programs are named from the one
//! list of those syscalls (`PRIV_SYSCALLS`, generated from
//! `ebpf/include/events.h`, which privilege.bpf.c builds them from too).

use std::path::Path;
use std::sync::LazyLock;

use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, FEntry, FExit, ProgramError, TracePoint};
use aya::{Btf, Ebpf};
use podtrail_ebpf::{FILE_SYSCALLS, IA32, IA32_COMPAT, IA32_ID16, PRIV_SYSCALLS};

/// How a program attaches.
#[derive(Clone, Copy)]
pub(super) enum Attach {
    /// `tp_btf/<tracepoint>`
    BtfTracepoint(&'static str),
    /// cgroup/connect4|6 on the cgroup v2 root
    CgroupRoot(&'static str),
    /// cgroup/post_bind4|6, cgroup/sock_create, cgroup/sock_release (a socket program) on the cgroup v2 root
    CgroupSock(&'static str),
    /// cgroup_skb/egress|ingress on the cgroup v2 root (true: egress)
    CgroupSkb(bool),
    /// `tracepoint/<category>/<name>` (perf event; needs tracefs)
    Tracepoint(&'static str, &'static str),
    /// `fentry/<kernel function>` / `fexit/<kernel function>`
    FEntry(&'static str),
    FExit(&'static str),
    /// A tracepoint program attached nowhere: put at index 0 of this
    /// program-array map, for other programs to tail-call.
    TailCallTarget(&'static str),
}

impl Attach {
    /// The attach point as messages name it.
    pub(super) fn point(self, cgroup_root: &Path) -> String {
        match self {
            Attach::BtfTracepoint(tp) => format!("tp_btf/{tp}"),
            Attach::CgroupRoot(hook) | Attach::CgroupSock(hook) => format!("cgroup/{hook} on {}", cgroup_root.display()),
            Attach::CgroupSkb(egress) => format!("cgroup_skb/{} on {}", if egress { "egress" } else { "ingress" }, cgroup_root.display()),
            Attach::Tracepoint(cat, name) => format!("tracepoint/{cat}/{name}"),
            Attach::FEntry(f) => format!("fentry/{f}"),
            Attach::FExit(f) => format!("fexit/{f}"),
            Attach::TailCallTarget(map) => format!("tail call target (map {map}[0])"),
        }
    }
}

/// Whether a program the kernel cannot attach stops the recorder.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// Fails the load (unless `--allow-partial`).
    Required,
    /// A kernel feature not every supported kernel has: recorded as
    /// unavailable, with the reason, and everything else is recorded.
    Optional,
}

pub(super) struct ObjectSpec {
    pub name: &'static str,
    pub bytes: fn() -> &'static [u8],
    /// Its programs: name, attach point, whether the recorder needs it.
    pub programs: Vec<(&'static str, Attach, Need)>,
}

/// A name built once at startup, kept for the process's life (the attach
/// points and program names of the privilege syscalls).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The object of the `file` table (not loaded with `--no-file-events`).
pub const FILE_OBJECT: &str = "file.bpf.o";
/// The object of the privilege syscalls (and capability checks).
pub const PRIVILEGE_OBJECT: &str = "privilege.bpf.o";

/// The objects podtraild loads, in order, with their programs.
pub(super) fn objects() -> &'static [ObjectSpec] {
    static OBJECTS: LazyLock<Vec<ObjectSpec>> = LazyLock::new(|| {
        // One tracepoint pair per privilege syscall; `bpf` comes last in the
        // list: podtraild's own loads and attaches before it are not recorded.
        let mut privilege = vec![(CAP_CHECK_PROGRAM, Attach::BtfTracepoint("cap_capable"), Need::Optional)];
        for s in PRIV_SYSCALLS {
            privilege.push((leak(format!("enter_{}", s.name)), Attach::Tracepoint("syscalls", leak(format!("sys_enter_{}", s.name))), Need::Optional));
            privilege.push((leak(format!("exit_{}", s.name)), Attach::Tracepoint("syscalls", leak(format!("sys_exit_{}", s.name))), Need::Optional));
        }
        // The exit every file syscall's exit hands over to (first: in place
        // before any syscall program attaches), the exec that sends the
        // executed files' writes, then one tracepoint pair per file syscall.
        let mut file = vec![
            ("file_exit", Attach::TailCallTarget("file_exit_prog"), Need::Optional),
            ("file_exec", Attach::BtfTracepoint("sched_process_exec"), Need::Optional),
        ];
        for s in FILE_SYSCALLS {
            file.push((leak(format!("file_enter_{}", s.name)), Attach::Tracepoint("syscalls", leak(format!("sys_enter_{}", s.name))), Need::Optional));
            file.push((leak(format!("file_exit_{}", s.name)), Attach::Tracepoint("syscalls", leak(format!("sys_exit_{}", s.name))), Need::Optional));
        }
        vec![
            ObjectSpec {
                name: "process.bpf.o",
                bytes: podtrail_ebpf::process_object,
                programs: vec![
                    ("handle_exec", Attach::BtfTracepoint("sched_process_exec"), Need::Required),
                    ("handle_exit", Attach::BtfTracepoint("sched_process_exit"), Need::Required),
                    ("handle_fork", Attach::BtfTracepoint("sched_process_fork"), Need::Required),
                ],
            },
            ObjectSpec {
                name: "net.bpf.o",
                bytes: podtrail_ebpf::net_object,
                programs: vec![
                    ("connect4", Attach::CgroupRoot("connect4"), Need::Required),
                    ("connect6", Attach::CgroupRoot("connect6"), Need::Required),
                    ("nat_xmit", Attach::BtfTracepoint("net_dev_start_xmit"), Need::Required),
                    ("sock_state", Attach::BtfTracepoint("inet_sock_set_state"), Need::Required),
                    ("sock_destroy", Attach::BtfTracepoint("tcp_destroy_sock"), Need::Optional),
                    ("post_bind4", Attach::CgroupSock("post_bind4"), Need::Optional),
                    ("post_bind6", Attach::CgroupSock("post_bind6"), Need::Optional),
                    ("flow_sock", Attach::CgroupSock("sock_create"), Need::Optional),
                    ("sock_release", Attach::CgroupSock("sock_release"), Need::Optional),
                    ("sendmsg4", Attach::CgroupRoot("sendmsg4"), Need::Optional),
                    ("sendmsg6", Attach::CgroupRoot("sendmsg6"), Need::Optional),
                    ("skb_egress", Attach::CgroupSkb(true), Need::Optional),
                    ("skb_ingress", Attach::CgroupSkb(false), Need::Optional),
                ],
            },
            // Before privilege.bpf.o, whose `bpf` program would record this
            // object's loads and attaches.
            ObjectSpec { name: FILE_OBJECT, bytes: podtrail_ebpf::file_object, programs: file },
            ObjectSpec { name: PRIVILEGE_OBJECT, bytes: podtrail_ebpf::privilege_object, programs: privilege },
        ]
    });
    &OBJECTS
}

/// How the privilege syscalls are traced: `fentry` on their x86-64 and 32-bit
/// wrappers when every one of [`fentry_programs`] attaches (no cost to other
/// syscalls), else the syscall tracepoints (every syscall of every task takes
/// the kernel's tracing entry path while one is enabled), or `off`
/// (`--no-syscall-tracepoints`). Recorded in the catalog `meta` under this key.
pub const META_PRIVILEGE_SYSCALLS: &str = "privilege_syscalls";

/// privilege.bpf.o's fentry/fexit pairs with the syscall each traces: the
/// x86-64 wrapper of each traced syscall, then its 32-bit entries (skipped
/// together on a kernel without 32-bit emulation, i.e. without `__ia32_sys_setuid`).
pub(super) fn fentry_programs() -> &'static [(&'static str, Attach, &'static str)] {
    static PROGRAMS: LazyLock<Vec<(&'static str, Attach, &'static str)>> = LazyLock::new(|| {
        let mut v = Vec::new();
        let mut pair = |prog: String, function: String, syscall: &'static str| {
            let function = leak(function);
            v.push((leak(format!("fentry{prog}")), Attach::FEntry(function), syscall));
            v.push((leak(format!("fexit{prog}")), Attach::FExit(function), syscall));
        };
        for s in PRIV_SYSCALLS {
            pair(format!("_{}", s.name), format!("__x64_sys_{}", s.name), s.name);
        }
        for s in PRIV_SYSCALLS {
            let n = s.name;
            match s.ia32 {
                IA32_COMPAT => pair(format!("32_{n}"), format!("__ia32_compat_sys_{n}"), n),
                IA32_ID16 => {
                    pair(format!("32_{n}"), format!("__ia32_sys_{n}"), n);
                    pair(format!("32_{n}16"), format!("__ia32_sys_{n}16"), n);
                }
                IA32 => pair(format!("32_{n}"), format!("__ia32_sys_{n}"), n),
                other => unreachable!("PT_PRIV_SYSCALLS: 32-bit kind {other} of {n} is not a PT_IA32* kind"),
            }
        }
        v
    });
    &PROGRAMS
}

/// Attach every fentry/fexit pair of privilege.bpf.o, or none: on the first
/// failure the ones attached are detached again and the reason returned.
/// `kallsyms`: the kernel's symbols. A syscall the kernel does not have at all
/// (no `__x64_sys_<name>`, e.g. module loading without module support) is
/// skipped and listed in `absent`; its 32-bit entries are required whenever the
/// kernel has 32-bit emulation (`__ia32_sys_setuid`), else a 32-bit caller
/// would go unseen.
pub(super) fn attach_fentry_mode(ebpf: &mut Ebpf, btf: &Btf, kallsyms: &std::collections::HashSet<&str>, absent: &mut Vec<String>) -> Result<usize, String> {
    let ia32 = kallsyms.contains("__ia32_sys_setuid");
    let mut attached: Vec<&'static str> = Vec::new();
    let mut skipped = Vec::new();
    // `bpf` last: podtraild's own attaches before it are not recorded.
    let all = fentry_programs();
    let ordered = all.iter().filter(|p| p.2 != "bpf").chain(all.iter().filter(|p| p.2 == "bpf"));
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


/// The table a program's rows go to (none: fork records, not rows): how runs
/// the kernel skipped are put on a table. Every program of [`objects`] and
/// [`fentry_programs`] has one (a test checks).
pub fn table_of_program(program: &str) -> Option<Option<&'static str>> {
    use podtrail_schema::tables::{CAP_USAGE, DNS, FILE, NET_CONN, NET_FLOW, NET_LISTEN, PRIVILEGE, PROCESS_EXEC, PROCESS_EXIT};
    match program {
        "handle_exec" => Some(Some(PROCESS_EXEC.name)),
        "handle_exit" => Some(Some(PROCESS_EXIT.name)),
        "handle_fork" => Some(None),
        // sock_state also sends net_listen rows; its skipped runs are put on
        // net_conn, whose rows it sends by far the most of.
        "connect4" | "connect6" | "nat_xmit" | "sock_state" | "sock_destroy" => Some(Some(NET_CONN.name)),
        "post_bind4" | "post_bind6" | "sock_release" => Some(Some(NET_LISTEN.name)),
        "sendmsg4" | "sendmsg6" => Some(Some(DNS.name)),
        // The packet programs also send dns rows and TLS server names; the
        // flows are what every UDP/ICMP packet of theirs counts in.
        "flow_sock" | "skb_egress" | "skb_ingress" => Some(Some(NET_FLOW.name)),
        CAP_CHECK_PROGRAM => Some(Some(CAP_USAGE.name)),
        p if p.starts_with("file_") => Some(Some(FILE.name)),
        p if ["enter_", "exit_", "fentry_", "fexit_", "fentry32_", "fexit32_"].iter().any(|x| p.starts_with(x)) => Some(Some(PRIVILEGE.name)),
        _ => None,
    }
}

pub(super) fn attach_one(ebpf: &mut Ebpf, program: &'static str, attach: Attach, btf: &Btf, cgroup_root: &Path) -> Result<(), String> {
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
        Attach::TailCallTarget(map) => {
            let p: &mut TracePoint = prog.try_into().map_err(|e: ProgramError| e.to_string())?;
            p.load().map_err(|e| program_error_reason(&e))?;
            let fd = p.fd().map_err(|e| e.to_string())?.try_clone().map_err(|e| e.to_string())?;
            let mut array = aya::maps::ProgramArray::try_from(ebpf.map_mut(map).ok_or_else(|| format!("no map {map} in the object"))?).map_err(|e| e.to_string())?;
            array.set(0, &fd, 0).map_err(|e| format!("putting it in {map}: {e}"))?;
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
        // On kernels >= 5.7 a cgroup attach is a bpf_link, which never excludes
        // other programs on the same hook (other tools, other podtraild
        // instances); the link API takes no multi-attach flag.
        Attach::CgroupRoot(_) => {
            let p: &mut CgroupSockAddr = prog.try_into().map_err(|e: ProgramError| e.to_string())?;
            p.load().map_err(|e| program_error_reason(&e))?;
            let dir = std::fs::File::open(cgroup_root).map_err(|e| format!("opening {}: {e}", cgroup_root.display()))?;
            p.attach(dir, CgroupAttachMode::Single).map_err(|e| program_error_reason(&e))?;
        }
        Attach::CgroupSock(_) => {
            let p: &mut CgroupSock = prog.try_into().map_err(|e: ProgramError| e.to_string())?;
            p.load().map_err(|e| program_error_reason(&e))?;
            let dir = std::fs::File::open(cgroup_root).map_err(|e| format!("opening {}: {e}", cgroup_root.display()))?;
            p.attach(dir, CgroupAttachMode::Single).map_err(|e| program_error_reason(&e))?;
        }
        Attach::CgroupSkb(egress) => {
            let p: &mut CgroupSkb = prog.try_into().map_err(|e: ProgramError| e.to_string())?;
            p.load().map_err(|e| program_error_reason(&e))?;
            let dir = std::fs::File::open(cgroup_root).map_err(|e| format!("opening {}: {e}", cgroup_root.display()))?;
            let direction = if egress { CgroupSkbAttachType::Egress } else { CgroupSkbAttachType::Ingress };
            p.attach(dir, direction, CgroupAttachMode::Single).map_err(|e| program_error_reason(&e))?;
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


#[cfg(test)]
mod tests {
    use super::*;

    /// Program names in an object file: its ELF symbol table's global
    /// functions outside `.text` (where global subprograms such as file.bpf.o's
    /// `build_path` live; programs have their own sections).
    pub(crate) fn elf_function_names(bytes: &[u8]) -> Vec<String> {
        // Enough ELF for a relocatable BPF object: find .symtab and .strtab.
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) as usize;
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap()) as usize;
        let (shoff, shentsize, shnum, shstrndx) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
        let sec = |i: usize| shoff + i * shentsize;
        let cstr_at = |o: usize| {
            let end = bytes[o..].iter().position(|&b| b == 0).unwrap();
            String::from_utf8_lossy(&bytes[o..o + end]).into_owned()
        };
        let section_name = |i: usize| cstr_at(u64_at(sec(shstrndx) + 0x18) + u32_at(sec(i)));
        let symtab = (0..shnum).find(|&i| u32_at(sec(i) + 4) == 2).expect("a symbol table");
        let strtab = u32_at(sec(symtab) + 0x28);
        let (sym_off, sym_size, str_off) = (u64_at(sec(symtab) + 0x18), u64_at(sec(symtab) + 0x20), u64_at(sec(strtab) + 0x18));
        (0..sym_size / 24)
            .map(|k| sym_off + k * 24)
            .filter(|&s| bytes[s + 4] & 0xf == 2 && bytes[s + 4] >> 4 == 1) // STT_FUNC, STB_GLOBAL
            .filter(|&s| section_name(u16_at(s + 6)) != ".text")
            .map(|s| cstr_at(str_off + u32_at(s)))
            .collect()
    }

    #[test]
    fn every_program_podtraild_attaches_is_in_its_object_and_every_program_of_an_object_is_attached() {
        for o in objects() {
            let mut in_object = elf_function_names((o.bytes)());
            in_object.sort();
            let mut named: Vec<String> = o.programs.iter().map(|p| p.0.to_string()).collect();
            if o.name == PRIVILEGE_OBJECT {
                named.extend(fentry_programs().iter().map(|p| p.0.to_string()));
            }
            named.sort();
            assert_eq!(named, in_object, "{}: the programs podtraild names and the ones the object has", o.name);
        }
    }

    #[test]
    fn every_privilege_syscall_has_its_tracepoint_and_fentry_pairs() {
        let privilege = objects().iter().find(|o| o.name == "privilege.bpf.o").unwrap();
        for s in PRIV_SYSCALLS {
            assert!(privilege.programs.iter().any(|p| p.0 == format!("enter_{}", s.name)), "enter_{}", s.name);
            let of = |prefix: &str| fentry_programs().iter().filter(|(p, _, sys)| p.starts_with(prefix) && *sys == s.name).count();
            assert_eq!((of("fentry_"), of("fexit_")), (1, 1), "x86-64 pair of {}", s.name);
            assert!(of("fentry32_") >= 1 && of("fentry32_") == of("fexit32_"), "32-bit pairs of {}", s.name);
        }
        assert_eq!(PRIV_SYSCALLS.last().map(|s| s.name), Some("bpf"), "bpf last: podtraild's own loads before it are not recorded");
    }

    #[test]
    fn every_program_puts_its_skipped_runs_on_a_table() {
        for o in objects() {
            for (p, _, _) in &o.programs {
                assert!(table_of_program(p).is_some(), "{} of {}: no table", p, o.name);
            }
        }
        for (p, _, _) in fentry_programs() {
            assert!(table_of_program(p).is_some(), "{p}: no table");
        }
        assert_eq!(table_of_program("handle_fork"), Some(None), "fork records are not rows");
        assert_eq!(table_of_program("not_a_program"), None);
    }
}
