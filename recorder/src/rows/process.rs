//! `process_exec` and `process_exit` rows. The process table (`procs`) makes
//! them, as it follows exec, fork and exit: they carry their image's `exec_id`.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Int32Builder, ListBuilder, StringBuilder, UInt32Builder, UInt64Builder};
use podtrail_schema::tables::{PROCESS_EXEC, PROCESS_EXIT, TableDef};

use super::{PodIdentity, Row};
use crate::decode::{ExecRaw, ExitRaw};

pub struct ExecRow {
    pub time: i64,
    pub raw: ExecRaw,
    pub exec_id: u64,
    pub parent_exec_id: Option<u64>,
    pub cwd: Option<String>,
    /// Hex SHA-256 of the executed file, when it could be read ([`crate::exehash`]).
    pub sha256: Option<String>,
    pub identity: Option<Arc<PodIdentity>>,
}

impl Row for ExecRow {
    const TABLE: &'static TableDef = &PROCESS_EXEC;
    fn time(&self) -> i64 {
        self.time
    }
    fn cgroup_id(&self) -> u64 {
        self.raw.cgroup_id
    }
    fn identity(&self) -> Option<&Arc<PodIdentity>> {
        self.identity.as_ref()
    }
    fn identity_mut(&mut self) -> &mut Option<Arc<PodIdentity>> {
        &mut self.identity
    }
    fn columns(rows: &[&Self]) -> Vec<(&'static str, ArrayRef)> {
        let (mut id, mut parent, mut caps) = (UInt64Builder::new(), UInt64Builder::new(), UInt64Builder::new());
        let (mut pid, mut ppid, mut uid, mut gid, mut netns) = (UInt32Builder::new(), UInt32Builder::new(), UInt32Builder::new(), UInt32Builder::new(), UInt32Builder::new());
        let (mut comm, mut binary, mut cwd) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
        let mut args = ListBuilder::new(StringBuilder::new());
        let (mut trunc, mut fileless, mut env_trunc) = (BooleanBuilder::new(), BooleanBuilder::new(), BooleanBuilder::new());
        let (mut device, mut inode) = (UInt64Builder::new(), UInt64Builder::new());
        let mut loader_env = ListBuilder::new(StringBuilder::new());
        let mut sha256 = StringBuilder::new();
        for r in rows {
            let e = &r.raw;
            id.append_value(r.exec_id);
            parent.append_option(r.parent_exec_id);
            pid.append_value(e.pid);
            ppid.append_value(e.ppid);
            uid.append_value(e.uid);
            gid.append_value(e.gid);
            comm.append_value(&e.comm);
            binary.append_value(&e.filename);
            for a in &e.args {
                args.values().append_value(a);
            }
            args.append(true);
            trunc.append_value(e.args_truncated);
            cwd.append_option(r.cwd.as_deref());
            caps.append_value(e.cap_effective);
            netns.append_value(e.netns);
            fileless.append_value(e.fileless);
            device.append_value(crate::files::user_dev(e.file_id.0));
            inode.append_value(e.file_id.1);
            for v in &e.loader_env {
                loader_env.values().append_value(v);
            }
            loader_env.append(true);
            env_trunc.append_value(e.env_truncated);
            sha256.append_option(r.sha256.as_deref());
        }
        vec![
            ("exec_id", Arc::new(id.finish()) as ArrayRef),
            ("parent_exec_id", Arc::new(parent.finish())),
            ("pid", Arc::new(pid.finish())),
            ("ppid", Arc::new(ppid.finish())),
            ("uid", Arc::new(uid.finish())),
            ("gid", Arc::new(gid.finish())),
            ("comm", Arc::new(comm.finish())),
            ("binary", Arc::new(binary.finish())),
            ("args", Arc::new(args.finish())),
            ("args_truncated", Arc::new(trunc.finish())),
            ("cwd", Arc::new(cwd.finish())),
            ("cap_effective", Arc::new(caps.finish())),
            ("netns", Arc::new(netns.finish())),
            ("fileless", Arc::new(fileless.finish())),
            ("device", Arc::new(device.finish())),
            ("inode", Arc::new(inode.finish())),
            ("loader_env", Arc::new(loader_env.finish())),
            ("env_truncated", Arc::new(env_trunc.finish())),
            ("sha256", Arc::new(sha256.finish())),
        ]
    }
}

pub struct ExitRow {
    pub time: i64,
    pub raw: ExitRaw,
    pub exec_id: Option<u64>,
    pub duration_ns: Option<u64>,
    pub identity: Option<Arc<PodIdentity>>,
}

impl Row for ExitRow {
    const TABLE: &'static TableDef = &PROCESS_EXIT;
    fn time(&self) -> i64 {
        self.time
    }
    fn cgroup_id(&self) -> u64 {
        self.raw.cgroup_id
    }
    fn identity(&self) -> Option<&Arc<PodIdentity>> {
        self.identity.as_ref()
    }
    fn identity_mut(&mut self) -> &mut Option<Arc<PodIdentity>> {
        &mut self.identity
    }
    fn columns(rows: &[&Self]) -> Vec<(&'static str, ArrayRef)> {
        let (mut id, mut dur) = (UInt64Builder::new(), UInt64Builder::new());
        let mut pid = UInt32Builder::new();
        let (mut code, mut sig) = (Int32Builder::new(), Int32Builder::new());
        for r in rows {
            id.append_option(r.exec_id);
            pid.append_value(r.raw.pid);
            code.append_value(r.raw.exit_code);
            sig.append_value(r.raw.signal);
            dur.append_option(r.duration_ns);
        }
        vec![
            ("exec_id", Arc::new(id.finish()) as ArrayRef),
            ("pid", Arc::new(pid.finish())),
            ("exit_code", Arc::new(code.finish())),
            ("signal", Arc::new(sig.finish())),
            ("duration_ns", Arc::new(dur.finish())),
        ]
    }
}
