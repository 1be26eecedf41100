//! What the `file` table watches, and how its records read.
//!
//! file.bpf.o decides in the kernel which file operations become rows (see its
//! header); podtraild writes what it watches into the object's maps at load:
//! path prefixes under which any change is recorded (`write_watch`), prefixes
//! of credential files whose read-only opens are recorded (`read_watch`), and
//! file names recorded wherever they are (`name_watch`). Each list is the
//! defaults below plus what `--watch`, `--watch-read` and `--watch-name` add.
//! Records carry the index of what they matched; [`Watches::reason`] names it.

use std::sync::OnceLock;

use podtrail_ebpf::{
    FILE_BASENAME_MAX, FILE_CREATED, FILE_MATCH_MAX, FILE_WHY_DEVICE, FILE_WHY_EXEC_BIT, FILE_WHY_EXECUTED, FILE_WHY_HIDDEN, FILE_WHY_NAME, FILE_WHY_READ, FILE_WHY_SECURITY_XATTR, FILE_WHY_SETID,
    FILE_WHY_WATCHED,
};

/// Prefixes under which every change is recorded: configuration and
/// persistence (`/etc/`: cron.d, ld.so.preload, passwd, sudoers, systemd
/// units, profile.d), root's home, cron spools, systemd unit directories,
/// logs (tampering), the directories of system binaries (a replaced binary),
/// kernel modules and boot files, and the pod's service-account credentials.
pub const DEFAULT_WRITE_PREFIXES: &[&str] = &[
    "/etc/",
    "/root/",
    "/var/spool/cron/",
    "/var/log/",
    "/lib/systemd/system/",
    "/usr/lib/systemd/system/",
    "/bin/",
    "/sbin/",
    "/usr/bin/",
    "/usr/sbin/",
    "/usr/local/bin/",
    "/usr/local/sbin/",
    "/lib/modules/",
    "/boot/",
    "/var/run/secrets/kubernetes.io/",
    "/run/secrets/kubernetes.io/",
];

/// Credential files whose read-only opens are recorded. Only opens that name
/// the file by an absolute path are matched: the entry program judges a
/// read-only open before building any path, so `cd /etc; cat shadow` is missed.
/// Two forms stand for many directories: `~/x` is `x` under any home directory
/// (`/root/x`, `/home/<user>/x`), and `/proc/*/x` is `x` of any process but
/// the reader itself (its environment, its memory).
pub const DEFAULT_READ_PREFIXES: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/ssh/ssh_host_",
    "~/.ssh/",
    "/proc/*/environ",
    "/proc/*/mem",
    "/var/run/secrets/kubernetes.io/serviceaccount/token",
    "/run/secrets/kubernetes.io/serviceaccount/token",
];

/// File names whose changes are recorded wherever they are (any home
/// directory): shell start-up files, shell and tool histories, SSH keys and
/// authorized keys, stored credentials.
pub const DEFAULT_NAMES: &[&str] = &[
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".profile",
    ".zshrc",
    ".zprofile",
    ".zshenv",
    ".zlogin",
    ".bash_history",
    ".zsh_history",
    ".ash_history",
    ".sh_history",
    ".python_history",
    ".mysql_history",
    ".psql_history",
    ".viminfo",
    ".lesshst",
    "authorized_keys",
    "authorized_keys2",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    ".netrc",
    ".git-credentials",
    ".pgpass",
];

/// At most this many entries per list (the size of each kernel map).
pub const MAX_WATCHES: usize = 256;

/// The three lists, as written into the kernel maps (index = position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watches {
    pub write: Vec<String>,
    pub read: Vec<String>,
    pub names: Vec<String>,
}

impl Watches {
    /// The defaults plus the given additions, checked: a prefix must be
    /// absolute and at most [`FILE_MATCH_MAX`] bytes (the kernel matches that
    /// many), a name must have no slash and fit [`FILE_BASENAME_MAX`] with its
    /// NUL. Duplicates are kept once. The error names the value and the rule.
    pub fn new(write: &[String], read: &[String], names: &[String]) -> Result<Self, String> {
        fn merge(defaults: &[&str], added: &[String], flag: &str, check: impl Fn(&str) -> Result<(), String>) -> Result<Vec<String>, String> {
            let mut out: Vec<String> = defaults.iter().map(|s| s.to_string()).collect();
            for a in added {
                check(a).map_err(|why| format!("{flag} {a:?}: {why}"))?;
                if !out.contains(a) {
                    out.push(a.clone());
                }
            }
            if out.len() > MAX_WATCHES {
                return Err(format!("{flag}: {} entries with the defaults; at most {MAX_WATCHES}", out.len()));
            }
            Ok(out)
        }
        let prefix = |p: &str| {
            if !p.starts_with('/') {
                Err("not an absolute path".to_string())
            } else if p.len() > FILE_MATCH_MAX {
                Err(format!("longer than {FILE_MATCH_MAX} bytes (the kernel matches that many)"))
            } else {
                Ok(())
            }
        };
        let name = |n: &str| {
            if n.is_empty() || n.contains('/') || n.contains('\0') {
                Err("not a file name (no slash)".to_string())
            } else if n.len() >= FILE_BASENAME_MAX {
                Err(format!("longer than {} bytes", FILE_BASENAME_MAX - 1))
            } else {
                Ok(())
            }
        };
        Ok(Watches {
            write: merge(DEFAULT_WRITE_PREFIXES, write, "--watch", prefix)?,
            read: merge(DEFAULT_READ_PREFIXES, read, "--watch-read", |p: &str| {
                // The kernel rewrites a home directory's path to `~/...` and
                // another process's /proc directory to `/proc/*/...`: only
                // those two forms, with a path after them.
                let wild = p.starts_with("/proc/*/") && p.len() > "/proc/*/".len();
                if p.contains('*') && !wild {
                    Err("`*` only as `/proc/*/<file>` (any process but the reader)".to_string())
                } else if let Some(rest) = p.strip_prefix('~') {
                    if !rest.starts_with('/') || rest.len() < 2 {
                        Err("`~` only as `~/<path>` (under any home directory)".to_string())
                    } else if p.len() > FILE_MATCH_MAX {
                        Err(format!("longer than {FILE_MATCH_MAX} bytes (the kernel matches that many)"))
                    } else {
                        Ok(())
                    }
                } else {
                    prefix(p)
                }
            })?,
            names: merge(DEFAULT_NAMES, names, "--watch-name", name)?,
        })
    }

    /// The `reason` column: what a record matched, comma-separated.
    pub fn reason(&self, why: u32, watch: u16, name_watch: u16) -> String {
        let at = |list: &[String], i: u16| list.get(usize::from(i)).cloned().unwrap_or_else(|| format!("#{i}"));
        let mut parts = Vec::new();
        if why & FILE_WHY_WATCHED != 0 {
            parts.push(format!("watch:{}", at(&self.write, watch)));
        }
        if why & FILE_WHY_READ != 0 {
            parts.push(format!("read:{}", at(&self.read, watch)));
        }
        if why & FILE_WHY_NAME != 0 {
            parts.push(format!("name:{}", at(&self.names, name_watch)));
        }
        for (bit, name) in [
            (FILE_WHY_HIDDEN, "hidden"),
            (FILE_WHY_EXEC_BIT, "exec_bit"),
            (FILE_WHY_SETID, "setid"),
            (FILE_WHY_SECURITY_XATTR, "security_xattr"),
            (FILE_WHY_DEVICE, "device_node"),
            (FILE_WHY_EXECUTED, "executed"),
        ] {
            if why & bit != 0 {
                parts.push(name.to_string());
            }
        }
        parts.join(",")
    }
}

impl Default for Watches {
    fn default() -> Self {
        Watches::new(&[], &[], &[]).expect("the defaults are valid")
    }
}

/// The lists of this run, set once when file.bpf.o is loaded; rows name what
/// they matched from it (the defaults when never set, as in unit tests).
pub static ACTIVE: OnceLock<Watches> = OnceLock::new();

/// The active lists.
pub fn active() -> &'static Watches {
    static DEFAULT: OnceLock<Watches> = OnceLock::new();
    ACTIVE.get().unwrap_or_else(|| DEFAULT.get_or_init(Watches::default))
}

/// `O_*` names of open flags, `|`-separated (access mode first).
pub fn open_flags_text(flags: u64) -> String {
    let mut parts = vec![match flags & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    }
    .to_string()];
    // Composite flags first: O_SYNC holds O_DSYNC's bit, O_TMPFILE O_DIRECTORY's.
    const NAMES: &[(u64, &str)] = &[
        (0o4010000, "O_SYNC"),
        (0o20200000, "O_TMPFILE"),
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o400, "O_NOCTTY"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o10000, "O_DSYNC"),
        (0o40000, "O_DIRECT"),
        (0o100000, "O_LARGEFILE"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o1000000, "O_NOATIME"),
        (0o2000000, "O_CLOEXEC"),
        (0o10000000, "O_PATH"),
    ];
    let mut rest = flags & !3;
    for &(bit, name) in NAMES {
        if rest & bit == bit {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#o}"));
    }
    parts.join("|")
}

/// The kernel's dev_t (major << 20 | minor) as `stat` gives `st_dev` (glibc's makedev).
pub fn user_dev(kdev: u32) -> u64 {
    let (major, minor) = (u64::from(kdev >> 20), u64::from(kdev & 0xfffff));
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
}

/// Whether a record says the open created its file.
pub fn created(flags: u32) -> bool {
    flags & FILE_CREATED != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additions_are_checked_and_named_in_the_error() {
        let w = Watches::new(&["/srv/app/".into(), "/etc/".into()], &[], &["notes.txt".into()]).unwrap();
        assert_eq!(w.write.iter().filter(|p| *p == "/etc/").count(), 1, "a default given again is kept once");
        assert!(w.write.contains(&"/srv/app/".to_string()) && w.names.contains(&"notes.txt".to_string()));
        let e = Watches::new(&["srv/".into()], &[], &[]).unwrap_err();
        assert!(e.contains("--watch \"srv/\"") && e.contains("absolute"), "{e}");
        let e = Watches::new(&[], &[], &["a/b".into()]).unwrap_err();
        assert!(e.contains("--watch-name \"a/b\""), "{e}");
        let long = format!("/{}", "x".repeat(FILE_MATCH_MAX));
        assert!(Watches::new(&[], &[long], &[]).unwrap_err().contains("--watch-read"));
    }

    #[test]
    fn read_forms_for_home_directories_and_other_processes_are_checked() {
        let w = Watches::new(&[], &["~/.aws/credentials".into(), "/proc/*/maps".into()], &[]).unwrap();
        assert!(w.read.contains(&"~/.aws/credentials".to_string()) && w.read.contains(&"/proc/*/maps".to_string()));
        for bad in ["~", "~user/.ssh/", "/home/*/.ssh/", "/proc/*/", "relative"] {
            let e = Watches::new(&[], &[bad.into()], &[]).unwrap_err();
            assert!(e.contains("--watch-read") && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn reasons_name_what_matched() {
        let w = Watches::default();
        assert_eq!(w.reason(FILE_WHY_WATCHED, 0, 0), "watch:/etc/");
        assert_eq!(w.reason(FILE_WHY_READ, 0, 0), "read:/etc/shadow");
        assert_eq!(w.reason(FILE_WHY_NAME | FILE_WHY_HIDDEN, 0, 0), "name:.bashrc,hidden");
        assert_eq!(w.reason(FILE_WHY_EXEC_BIT | FILE_WHY_SETID, 0, 0), "exec_bit,setid");
        assert_eq!(w.reason(FILE_WHY_WATCHED, 999, 0), "watch:#999", "an index past the list is shown, not hidden");
    }

    #[test]
    fn open_flags_read_as_their_names() {
        assert_eq!(open_flags_text(0o1101), "O_WRONLY|O_CREAT|O_TRUNC");
        assert_eq!(open_flags_text(0o2002101), "O_WRONLY|O_CREAT|O_APPEND|O_CLOEXEC");
        assert_eq!(open_flags_text(0), "O_RDONLY");
        assert_eq!(open_flags_text(0o4010001), "O_WRONLY|O_SYNC");
        assert_eq!(open_flags_text(0o20200002), "O_RDWR|O_TMPFILE");
    }

    #[test]
    fn device_numbers_read_as_stat_gives_them() {
        // 8:1 (sda1) and 0:45 (an overlay): stat's st_dev is major * 256 + minor for small numbers.
        assert_eq!(user_dev(8 << 20 | 1), 0x801);
        assert_eq!(user_dev(45), 45);
        assert_eq!(user_dev(259 << 20 | 300), (300 & 0xff) | (259 << 8) | ((300 & !0xff) << 12));
    }
}
