//! The SHA-256 of each executed file, for `process_exec.sha256`.
//!
//! The file is opened through /proc while something still holds it: the new
//! process's own `/proc/PID/exe`, else the path it exec'd seen from its root
//! (`/proc/PID/root/...`) or its parent's (a short-lived program in a pod is
//! gone, its shell is not). A file is hashed only when its device and inode are
//! the ones the kernel reported for the exec: never a look-alike. Hashes are
//! cached by (device, inode, change time, size): a busy node hashes each binary
//! once, and a binary replaced in place (new change time) is hashed again.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use sha2::{Digest, Sha256};

use crate::decode::ExecRaw;
use crate::files::user_dev;

/// Files larger than this are not hashed (null): the first exec of a file is
/// hashed on the pipeline's thread, and a larger read would hold it up too
/// long (the time a 128 MiB file takes is not measured yet: an open item of
/// issue 19).
pub const MAX_HASHED_BYTES: u64 = 128 << 20;

/// Cached hashes kept at most (the cache is emptied when full).
const CACHE_ENTRIES: usize = 8192;

#[derive(Default)]
pub struct ExeHasher {
    cache: HashMap<(u64, u64, i64, i64, u64), String>,
    /// Hashes computed (cache misses) and execs left without one.
    pub hashed: u64,
    pub unhashed: u64,
}

impl ExeHasher {
    /// The lowercase hex SHA-256 of the file `e` executed, or None when no
    /// path to it is left, it is not the same file, or it is too large.
    pub fn hash(&mut self, e: &ExecRaw) -> Option<String> {
        let (dev, ino) = (user_dev(e.file_id.0), e.file_id.1);
        let mut candidates = vec![format!("/proc/{}/exe", e.pid)];
        if e.filename.starts_with('/') {
            candidates.push(format!("/proc/{}/root{}", e.pid, e.filename));
            candidates.push(format!("/proc/{}/root{}", e.ppid, e.filename));
        }
        for path in candidates {
            let Ok(mut f) = std::fs::File::open(&path) else { continue };
            let Ok(m) = f.metadata() else { continue };
            if m.dev() != dev || m.ino() != ino {
                continue; // another file now has that name
            }
            if m.len() > MAX_HASHED_BYTES {
                self.unhashed += 1;
                return None;
            }
            let key = (dev, ino, m.ctime(), m.ctime_nsec(), m.len());
            if let Some(h) = self.cache.get(&key) {
                return Some(h.clone());
            }
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => hasher.update(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        self.unhashed += 1;
                        return None;
                    }
                }
            }
            let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
            if self.cache.len() >= CACHE_ENTRIES {
                self.cache.clear();
            }
            self.cache.insert(key, hex.clone());
            self.hashed += 1;
            return Some(hex);
        }
        self.unhashed += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_of(pid: u32, path: &str) -> ExecRaw {
        let m = std::fs::metadata(path).unwrap();
        // The kernel's dev_t from stat's st_dev (the inverse of user_dev for small numbers).
        let (major, minor) = (((m.dev() >> 8) & 0xfff) as u32, ((m.dev() & 0xff) | ((m.dev() >> 12) & !0xff)) as u32);
        ExecRaw {
            pid,
            tid: pid,
            ppid: 1,
            uid: 0,
            gid: 0,
            netns: 0,
            time_boot_ns: 0,
            cgroup_id: 0,
            cap_effective: 0,
            comm: "x".into(),
            filename: path.into(),
            args: vec![],
            args_truncated: false,
            fileless: false,
            cwd: "/".into(),
            file_id: (major << 20 | minor, m.ino()),
            loader_env: vec![],
            env_truncated: false,
        }
    }

    #[test]
    fn hashes_the_running_file_once_and_never_a_different_one() {
        let me = std::env::current_exe().unwrap();
        let me = me.to_str().unwrap();
        let mut h = ExeHasher::default();
        let e = exec_of(std::process::id(), me);
        let want: String = Sha256::digest(std::fs::read(me).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(h.hash(&e).as_deref(), Some(want.as_str()));
        assert_eq!(h.hash(&e).as_deref(), Some(want.as_str()));
        assert_eq!(h.hashed, 1, "the second exec of the same file is a cache hit");
        // The same pid and path, but the kernel saw another inode: no hash.
        let mut other = e.clone();
        other.file_id.1 += 1;
        assert_eq!(h.hash(&other), None);
        assert_eq!(h.unhashed, 1);
    }
}
