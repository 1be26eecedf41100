//! `file` rows: one watched file operation with its result.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Int64Builder, StringBuilder, UInt32Builder, UInt64Builder};
use podtrail_ebpf::{FILE_ARG_NONE, FILE_PATH2_TRUNCATED, FILE_PATH_TRUNCATED};
use podtrail_schema::tables::{FILE, TableDef};

use super::{EventRow, Record};
use crate::decode::FileRaw;
use crate::files::{active, created, open_flags_text, user_dev};

pub type FileRow = EventRow<FileRaw>;

/// What a file record's arguments mean, by its syscall's argument positions.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FileDetail {
    pub new_path: Option<String>,
    pub target: Option<String>,
    pub xattr: Option<String>,
    pub open_flags: Option<String>,
    pub mode: Option<u32>,
    pub owner_uid: Option<u32>,
    pub owner_gid: Option<u32>,
    pub length: Option<i64>,
}

/// The argument after the path, or after the descriptor when the file is
/// one: where every traced syscall puts its mode, owner, length or flags.
fn after_file(f: &FileRaw) -> usize {
    let s = f.syscall;
    let at = if s.path != FILE_ARG_NONE { s.path } else { s.base };
    at as usize + 1
}

pub fn detail(f: &FileRaw) -> FileDetail {
    let mut d = FileDetail::default();
    let arg = |i: usize| f.args.get(i).copied().unwrap_or(0);
    let a = after_file(f);
    let id = |v: u64| (v as u32 != u32::MAX).then_some(v as u32);
    match f.op {
        "open" | "read" => {
            d.open_flags = Some(open_flags_text(f.open_flags));
            // creat(path, mode) has no flags argument; openat2's mode is in
            // its struct, not read.
            let mode = match f.syscall.name {
                "creat" => Some(arg(a)),
                "openat2" => None,
                _ => Some(arg(a + 1)),
            };
            if f.open_flags & 0o100 != 0 {
                d.mode = mode.map(|m| m as u32 & 0o7777);
            }
        }
        "chmod" => d.mode = Some(arg(a) as u32 & 0o7777),
        "mkdir" => d.mode = Some(arg(a) as u32 & 0o7777),
        "mknod" => d.mode = Some(arg(a) as u32),
        "chown" => {
            d.owner_uid = id(arg(a));
            d.owner_gid = id(arg(a + 1));
        }
        "truncate" => d.length = Some(arg(a) as i64),
        "rename" | "link" => d.new_path = f.path2.clone(),
        "symlink" => d.target = f.path2.clone(),
        "setxattr" => d.xattr = f.path2.clone(),
        _ => {}
    }
    d
}

impl Record for FileRaw {
    const TABLE: &'static TableDef = &FILE;
    fn time_boot_ns(&self) -> u64 {
        self.time_boot_ns
    }
    fn cgroup_id(&self) -> u64 {
        self.cgroup_id
    }
    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }
    fn columns(rows: &[&FileRow]) -> Vec<(&'static str, ArrayRef)> {
        let s = StringBuilder::new;
        let (mut op, mut comm, mut path, mut new_path, mut target, mut xattr, mut flags, mut error, mut reason) = (s(), s(), s(), s(), s(), s(), s(), s(), s());
        let u32b = UInt32Builder::new;
        let (mut pid, mut tid, mut uid, mut euid, mut mode, mut owner_uid, mut owner_gid, mut mnt_ns) = (u32b(), u32b(), u32b(), u32b(), u32b(), u32b(), u32b(), u32b());
        let (mut exec_id, mut device, mut inode) = (UInt64Builder::new(), UInt64Builder::new(), UInt64Builder::new());
        let (mut length, mut result) = (Int64Builder::new(), Int64Builder::new());
        let (mut was_created, mut truncated) = (BooleanBuilder::new(), BooleanBuilder::new());
        let watches = active();
        for r in rows {
            let f = &r.raw;
            let d = detail(f);
            op.append_value(f.op);
            exec_id.append_option(r.exec_id);
            pid.append_value(f.pid);
            tid.append_value(f.tid);
            comm.append_value(&f.comm);
            uid.append_value(f.uid);
            euid.append_value(f.euid);
            path.append_value(&f.path);
            new_path.append_option(d.new_path);
            target.append_option(d.target);
            xattr.append_option(d.xattr);
            flags.append_option(d.open_flags);
            was_created.append_value(created(f.flags));
            mode.append_option(d.mode);
            owner_uid.append_option(d.owner_uid);
            owner_gid.append_option(d.owner_gid);
            length.append_option(d.length);
            device.append_option(f.inode.map(|(dev, _)| user_dev(dev)));
            inode.append_option(f.inode.map(|(_, ino)| ino));
            mnt_ns.append_value(f.mnt_ns);
            result.append_value(f.result);
            error.append_option((f.result < 0).then(|| crate::names::errno_name(f.result.unsigned_abs() as u32)));
            reason.append_value(watches.reason(f.why, f.watch, f.name_watch));
            truncated.append_value(f.flags & (FILE_PATH_TRUNCATED | FILE_PATH2_TRUNCATED) != 0);
        }
        vec![
            ("op", Arc::new(op.finish()) as ArrayRef),
            ("exec_id", Arc::new(exec_id.finish())),
            ("pid", Arc::new(pid.finish())),
            ("tid", Arc::new(tid.finish())),
            ("comm", Arc::new(comm.finish())),
            ("uid", Arc::new(uid.finish())),
            ("euid", Arc::new(euid.finish())),
            ("path", Arc::new(path.finish())),
            ("new_path", Arc::new(new_path.finish())),
            ("target", Arc::new(target.finish())),
            ("xattr", Arc::new(xattr.finish())),
            ("open_flags", Arc::new(flags.finish())),
            ("created", Arc::new(was_created.finish())),
            ("mode", Arc::new(mode.finish())),
            ("owner_uid", Arc::new(owner_uid.finish())),
            ("owner_gid", Arc::new(owner_gid.finish())),
            ("length", Arc::new(length.finish())),
            ("device", Arc::new(device.finish())),
            ("inode", Arc::new(inode.finish())),
            ("mnt_ns", Arc::new(mnt_ns.finish())),
            ("result", Arc::new(result.finish())),
            ("error", Arc::new(error.finish())),
            ("reason", Arc::new(reason.finish())),
            ("path_truncated", Arc::new(truncated.finish())),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrail_ebpf::FILE_SYSCALLS;

    fn raw(syscall: &str, op: &'static str, args: [u64; 6], open_flags: u64, path2: Option<&str>) -> FileRaw {
        FileRaw {
            op,
            syscall: FILE_SYSCALLS.iter().find(|s| s.name == syscall).unwrap(),
            pid: 1,
            tid: 1,
            uid: 0,
            euid: 0,
            result: 0,
            time_boot_ns: 1,
            cgroup_id: 1,
            comm: "sh".into(),
            path: "/etc/x".into(),
            path2: path2.map(str::to_string),
            args,
            open_flags,
            inode: None,
            mnt_ns: 1,
            why: 1,
            watch: 0,
            name_watch: 0,
            flags: 0,
        }
    }

    #[test]
    fn arguments_read_by_each_syscalls_positions() {
        // chmod(path, mode), fchmodat(dfd, path, mode), fchmod(fd, mode)
        assert_eq!(detail(&raw("chmod", "chmod", [0, 0o4755, 0, 0, 0, 0], 0, None)).mode, Some(0o4755));
        assert_eq!(detail(&raw("fchmodat", "chmod", [u64::MAX - 99, 0, 0o755, 0, 0, 0], 0, None)).mode, Some(0o755));
        assert_eq!(detail(&raw("fchmod", "chmod", [3, 0o700, 0, 0, 0, 0], 0, None)).mode, Some(0o700));
        // fchownat(dfd, path, uid, gid, flags) with gid -1: unchanged
        let c = detail(&raw("fchownat", "chown", [0, 0, 1000, u32::MAX as u64, 0, 0], 0, None));
        assert_eq!((c.owner_uid, c.owner_gid), (Some(1000), None));
        // openat(dfd, path, flags, mode) creating; creat(path, mode)
        let o = detail(&raw("openat", "open", [0, 0, 0o101, 0o644, 0, 0], 0o101, None));
        assert_eq!((o.open_flags.as_deref(), o.mode), (Some("O_WRONLY|O_CREAT"), Some(0o644)));
        assert_eq!(detail(&raw("creat", "open", [0, 0o600, 0, 0, 0, 0], 0o1101, None)).mode, Some(0o600));
        assert_eq!(detail(&raw("openat", "open", [0, 0, 0o1001, 0o644, 0, 0], 0o1001, None)).mode, None, "no mode without O_CREAT");
        assert_eq!(detail(&raw("ftruncate", "truncate", [3, 0, 0, 0, 0, 0], 0, None)).length, Some(0));
        assert_eq!(detail(&raw("renameat2", "rename", [0; 6], 0, Some("/etc/y"))).new_path.as_deref(), Some("/etc/y"));
        assert_eq!(detail(&raw("fsetxattr", "setxattr", [0; 6], 0, Some("security.capability"))).xattr.as_deref(), Some("security.capability"));
    }
}
