//! `privilege` rows (a traced syscall with its result, or a refused capability
//! check) and `cap_usage` rows (capability checks counted per cgroup).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampNanosecondBuilder, UInt8Builder, UInt32Builder, UInt64Builder};
use podtrail_schema::tables::{CAP_USAGE, PRIVILEGE, TableDef};

use super::{EventRow, PodIdentity, Record, Row};
use crate::decode::PrivRaw;
use crate::names::cap_name;
use crate::privilege::{CapDelta, detail};

pub type PrivRow = EventRow<PrivRaw>;

impl Record for PrivRaw {
    const TABLE: &'static TableDef = &PRIVILEGE;
    fn time_boot_ns(&self) -> u64 {
        self.time_boot_ns
    }
    fn cgroup_id(&self) -> u64 {
        self.cgroup_id
    }
    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }
    fn columns(rows: &[&PrivRow]) -> Vec<(&'static str, ArrayRef)> {
        let s = StringBuilder::new;
        let (mut kind, mut comm, mut error, mut nss, mut source, mut target, mut fstype, mut operation, mut bpf_type, mut file) = (s(), s(), s(), s(), s(), s(), s(), s(), s(), s());
        let u32b = UInt32Builder::new;
        let (mut pid, mut tid, mut uid, mut euid, mut gid, mut egid, mut target_pid) = (u32b(), u32b(), u32b(), u32b(), u32b(), u32b(), u32b());
        let (mut new_uid, mut new_euid, mut new_suid, mut new_gid, mut new_egid, mut new_sgid) = (u32b(), u32b(), u32b(), u32b(), u32b(), u32b());
        let u64b = UInt64Builder::new;
        let (mut id, mut caps, mut ncap_e, mut ncap_p, mut ncap_i, mut flags) = (u64b(), u64b(), u64b(), u64b(), u64b(), u64b());
        let mut result = Int64Builder::new();
        for r in rows {
            let p = &r.raw;
            let d = detail(p);
            kind.append_value(p.kind);
            id.append_option(r.exec_id);
            pid.append_value(p.pid);
            tid.append_value(p.tid);
            comm.append_value(&p.comm);
            uid.append_value(p.uid);
            euid.append_value(p.euid);
            gid.append_value(p.gid);
            egid.append_value(p.egid);
            caps.append_value(p.cap_effective);
            result.append_value(p.result);
            error.append_option(d.error);
            new_uid.append_option(d.new_uid);
            new_euid.append_option(d.new_euid);
            new_suid.append_option(d.new_suid);
            new_gid.append_option(d.new_gid);
            new_egid.append_option(d.new_egid);
            new_sgid.append_option(d.new_sgid);
            ncap_e.append_option(d.new_caps.map(|c| c.0));
            ncap_p.append_option(d.new_caps.map(|c| c.1));
            ncap_i.append_option(d.new_caps.map(|c| c.2));
            nss.append_option(d.namespaces);
            flags.append_option(d.flags);
            source.append_option(d.source);
            target.append_option(d.target);
            fstype.append_option(d.fstype);
            operation.append_option(d.operation);
            target_pid.append_option(d.target_pid);
            bpf_type.append_option(d.bpf_type);
            file.append_option(d.file);
        }
        vec![
            ("kind", Arc::new(kind.finish()) as ArrayRef),
            ("exec_id", Arc::new(id.finish())),
            ("pid", Arc::new(pid.finish())),
            ("tid", Arc::new(tid.finish())),
            ("comm", Arc::new(comm.finish())),
            ("uid", Arc::new(uid.finish())),
            ("euid", Arc::new(euid.finish())),
            ("gid", Arc::new(gid.finish())),
            ("egid", Arc::new(egid.finish())),
            ("cap_effective", Arc::new(caps.finish())),
            ("result", Arc::new(result.finish())),
            ("error", Arc::new(error.finish())),
            ("new_uid", Arc::new(new_uid.finish())),
            ("new_euid", Arc::new(new_euid.finish())),
            ("new_suid", Arc::new(new_suid.finish())),
            ("new_gid", Arc::new(new_gid.finish())),
            ("new_egid", Arc::new(new_egid.finish())),
            ("new_sgid", Arc::new(new_sgid.finish())),
            ("new_cap_effective", Arc::new(ncap_e.finish())),
            ("new_cap_permitted", Arc::new(ncap_p.finish())),
            ("new_cap_inheritable", Arc::new(ncap_i.finish())),
            ("namespaces", Arc::new(nss.finish())),
            ("flags", Arc::new(flags.finish())),
            ("source", Arc::new(source.finish())),
            ("target", Arc::new(target.finish())),
            ("fstype", Arc::new(fstype.finish())),
            ("operation", Arc::new(operation.finish())),
            ("target_pid", Arc::new(target_pid.finish())),
            ("bpf_type", Arc::new(bpf_type.finish())),
            ("file", Arc::new(file.finish())),
        ]
    }
}

pub struct CapRow {
    /// The latest check counted in this row (wall clock, ns).
    pub time: i64,
    pub first_seen: i64,
    pub delta: CapDelta,
    pub identity: Option<Arc<PodIdentity>>,
}

impl CapRow {
    /// A row of what changed, kernel times made wall times by `boot_to_wall`.
    pub fn new(delta: CapDelta, boot_to_wall: i64) -> Self {
        CapRow { time: delta.last_boot_ns as i64 + boot_to_wall, first_seen: delta.first_boot_ns as i64 + boot_to_wall, delta, identity: None }
    }
}

impl Row for CapRow {
    const TABLE: &'static TableDef = &CAP_USAGE;
    fn time(&self) -> i64 {
        self.time
    }
    fn cgroup_id(&self) -> u64 {
        self.delta.cgroup_id
    }
    fn identity(&self) -> Option<&Arc<PodIdentity>> {
        self.identity.as_ref()
    }
    fn identity_mut(&mut self) -> &mut Option<Arc<PodIdentity>> {
        &mut self.identity
    }
    fn columns(rows: &[&Self]) -> Vec<(&'static str, ArrayRef)> {
        let mut name = StringBuilder::new();
        let mut cap = UInt8Builder::new();
        let (mut granted, mut denied, mut unrec) = (UInt64Builder::new(), UInt64Builder::new(), UInt64Builder::new());
        let mut first = TimestampNanosecondBuilder::new().with_timezone("UTC");
        for r in rows {
            let d = &r.delta;
            name.append_value(cap_name(d.cap));
            cap.append_value(u8::try_from(d.cap).unwrap_or(u8::MAX));
            granted.append_value(d.granted);
            denied.append_value(d.denied);
            unrec.append_value(d.denied_unrecorded);
            first.append_value(r.first_seen);
        }
        vec![
            ("capability", Arc::new(name.finish()) as ArrayRef),
            ("cap", Arc::new(cap.finish())),
            ("granted", Arc::new(granted.finish())),
            ("denied", Arc::new(denied.finish())),
            ("denied_unrecorded", Arc::new(unrec.finish())),
            ("first_seen", Arc::new(first.finish())),
        ]
    }
}
