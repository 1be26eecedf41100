//! The catalog's record types (`pods`, `containers`, `ip_owners`, `loss`): what
//! the recorder writes and readers read, with their mapping from catalog rows.
//!
//! Invariant: the fields are the documented columns of [`crate::tables`] of the
//! same table, in the same order; [`PodRecord::COLUMNS`] and its kin list them
//! for SQL, and `from_row` reads a row selected with them.

use rusqlite::Row;

/// A pod's validity interval (`pods`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    pub pod_uid: String,
    /// Null when only the kernel's cgroup path is known (source `observed`).
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub node: String,
    pub labels: Option<String>,
    pub owner: Option<String>,
    pub qos_class: Option<String>,
    pub valid_from: i64,
    pub valid_to: Option<i64>,
    pub source: String,
}

/// A container's validity interval (`containers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    pub container_id: String,
    pub pod_uid: Option<String>,
    pub container_name: Option<String>,
    pub image: Option<String>,
    pub runtime: Option<String>,
    pub cgroup_id: Option<u64>,
    pub valid_from: i64,
    pub valid_to: Option<i64>,
    pub source: String,
}

/// An address owned by a pod for an interval (`ip_owners`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpOwnerRecord {
    pub ip: String,
    pub pod_uid: String,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub node: String,
    pub valid_from: i64,
    pub valid_to: Option<i64>,
    pub source: String,
}

/// Counted loss (`podtrail_loss`; SQLite table `loss`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LossRecord {
    pub time_from: i64,
    pub time_to: i64,
    pub source: String,
    pub table_name: Option<String>,
    pub cpu: Option<u32>,
    /// None: the count cannot be known (never a guess).
    pub count: Option<u64>,
    pub detail: Option<String>,
    /// The pod whose rows were lost, when known.
    pub pod_uid: Option<String>,
}


impl PodRecord {
    pub const COLUMNS: &'static str = "pod_uid, pod_namespace, pod_name, node, labels, owner, qos_class, valid_from, valid_to, source";
    pub fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(PodRecord {
            pod_uid: r.get(0)?,
            pod_namespace: r.get(1)?,
            pod_name: r.get(2)?,
            node: r.get(3)?,
            labels: r.get(4)?,
            owner: r.get(5)?,
            qos_class: r.get(6)?,
            valid_from: r.get(7)?,
            valid_to: r.get(8)?,
            source: r.get(9)?,
        })
    }
}

impl ContainerRecord {
    pub const COLUMNS: &'static str = "container_id, pod_uid, container_name, image, runtime, cgroup_id, valid_from, valid_to, source";
    pub fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(ContainerRecord {
            container_id: r.get(0)?,
            pod_uid: r.get(1)?,
            container_name: r.get(2)?,
            image: r.get(3)?,
            runtime: r.get(4)?,
            cgroup_id: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
            valid_from: r.get(6)?,
            valid_to: r.get(7)?,
            source: r.get(8)?,
        })
    }
}

impl IpOwnerRecord {
    pub const COLUMNS: &'static str = "ip, pod_uid, pod_namespace, pod_name, node, valid_from, valid_to, source";
    pub fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(IpOwnerRecord {
            ip: r.get(0)?,
            pod_uid: r.get(1)?,
            pod_namespace: r.get(2)?,
            pod_name: r.get(3)?,
            node: r.get(4)?,
            valid_from: r.get(5)?,
            valid_to: r.get(6)?,
            source: r.get(7)?,
        })
    }
}

impl LossRecord {
    pub const COLUMNS: &'static str = "time_from, time_to, source, table_name, cpu, count, detail, pod_uid";
    pub fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(LossRecord {
            time_from: r.get(0)?,
            time_to: r.get(1)?,
            source: r.get(2)?,
            table_name: r.get(3)?,
            cpu: r.get(4)?,
            count: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
            detail: r.get(6)?,
            pod_uid: r.get(7)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{CONTAINERS, IP_OWNERS, LOSS, PODS, TableDef};

    #[test]
    fn each_record_lists_its_tables_documented_columns_in_order() {
        let names = |t: &TableDef| t.columns().map(|c| c.name).collect::<Vec<_>>().join(", ");
        assert_eq!(PodRecord::COLUMNS, names(&PODS));
        assert_eq!(ContainerRecord::COLUMNS, names(&CONTAINERS));
        assert_eq!(IpOwnerRecord::COLUMNS, names(&IP_OWNERS));
        assert_eq!(LossRecord::COLUMNS, names(&LOSS));
    }
}
