//! `procs` stage: the process table.
//!
//! In: decoded exec/exit events. Out: each event's `exec_id` and its parent's.
//! `exec_id` = schema `exec_id(boot id, pid, image start)`, where a process image
//! starts at its exec (so `sh` exec'ing `curl` in place yields two images) or, for
//! processes that predate the recorder, at the start time /proc reports. The table
//! is seeded from /proc at start so those processes still resolve as parents.

use std::collections::HashMap;

use podtrail_schema::tables::exec_id;

use crate::decode::{ExecRaw, ExitRaw};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    pub exec_id: u64,
    pub start_boot_ns: u64,
}

pub struct ProcTable {
    boot_id: u64,
    by_pid: HashMap<u32, Image>,
}

/// The 128-bit boot id folded to 64 bits.
pub fn boot_id() -> u64 {
    let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let hex: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let hi = u64::from_str_radix(hex.get(..16).unwrap_or("0"), 16).unwrap_or(0);
    let lo = u64::from_str_radix(hex.get(16..32).unwrap_or("0"), 16).unwrap_or(0);
    hi ^ lo
}

impl ProcTable {
    pub fn new(boot_id: u64) -> Self {
        ProcTable { boot_id, by_pid: HashMap::new() }
    }

    /// Add every live process from /proc (start time from /proc/PID/stat, in clock
    /// ticks since boot). Returns how many were added.
    pub fn seed_from_proc(&mut self) -> usize {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
        let mut n = 0;
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            if let Some(ticks) = stat_start_ticks(&stat) {
                self.insert_image(pid, ticks * (1_000_000_000 / hz));
                n += 1;
            }
        }
        n
    }

    fn insert_image(&mut self, pid: u32, start_boot_ns: u64) -> Image {
        let img = Image { exec_id: exec_id(self.boot_id, pid, start_boot_ns), start_boot_ns };
        self.by_pid.insert(pid, img);
        img
    }

    /// A new image for `e.pid`; its parent is the real parent's current image.
    pub fn on_exec(&mut self, e: &ExecRaw) -> (Image, Option<u64>) {
        let parent = self.by_pid.get(&e.ppid).map(|p| p.exec_id);
        (self.insert_image(e.pid, e.time_boot_ns), parent)
    }

    /// A forked child runs its parent's program until it execs: it gets the
    /// parent's image (same `exec_id`), so its connections name that program.
    pub fn on_fork(&mut self, f: &crate::decode::ForkRaw) {
        if let Some(parent) = self.by_pid.get(&f.parent_pid).copied() {
            self.by_pid.insert(f.child_pid, Image { exec_id: parent.exec_id, start_boot_ns: f.time_boot_ns });
        }
    }

    /// The image that exited, when known; the pid is forgotten.
    pub fn on_exit(&mut self, e: &ExitRaw) -> Option<Image> {
        self.by_pid.remove(&e.pid)
    }

    /// The current image of `pid`, if known.
    pub fn current(&self, pid: u32) -> Option<Image> {
        self.by_pid.get(&pid).copied()
    }
}

/// Field 22 (starttime) of /proc/PID/stat; the command (field 2) may hold spaces
/// and parentheses, so fields are counted after the last ')'.
fn stat_start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(pid: u32, ppid: u32, t: u64) -> ExecRaw {
        ExecRaw { pid, tid: pid, ppid, uid: 0, gid: 0, netns: 0, time_boot_ns: t, cgroup_id: 1, cap_effective: 0, comm: "x".into(), filename: "/x".into(), args: vec![], args_truncated: false, fileless: false, cwd: "/".into() }
    }

    #[test]
    fn parent_links_and_in_place_exec_gets_a_new_image() {
        let mut t = ProcTable::new(7);
        let (sh, _) = t.on_exec(&exec(10, 1, 100));
        let (child, parent) = t.on_exec(&exec(11, 10, 200));
        assert_eq!(parent, Some(sh.exec_id));
        let (again, parent2) = t.on_exec(&exec(11, 10, 300)); // exec in place
        assert_ne!(again.exec_id, child.exec_id);
        assert_eq!(parent2, Some(sh.exec_id));
        let exit = ExitRaw { pid: 11, time_boot_ns: 400, cgroup_id: 1, exit_code: 0, signal: 0, comm: "x".into() };
        assert_eq!(t.on_exit(&exit), Some(again));
        assert_eq!(t.on_exit(&exit), None);
    }

    #[test]
    fn a_forked_child_runs_its_parents_image_until_it_execs() {
        let mut t = ProcTable::new(7);
        let (parent, _) = t.on_exec(&exec(100, 1, 1_000));
        t.on_fork(&crate::decode::ForkRaw { parent_pid: 100, child_pid: 101, time_boot_ns: 2_000 });
        let child = t.current(101).expect("the child is known after the fork");
        assert_eq!((child.exec_id, child.start_boot_ns), (parent.exec_id, 2_000));
        let (own, parent_link) = t.on_exec(&exec(101, 100, 3_000));
        assert_ne!(own.exec_id, parent.exec_id, "its own exec is a new image");
        assert_eq!(parent_link, Some(parent.exec_id));
        // A fork from an unknown parent teaches nothing.
        t.on_fork(&crate::decode::ForkRaw { parent_pid: 555, child_pid: 556, time_boot_ns: 4_000 });
        assert!(t.current(556).is_none());
    }

    #[test]
    fn stat_start_time_survives_odd_command_names() {
        let stat = "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(stat_start_ticks(stat), Some(987654));
    }

    #[test]
    fn seeding_finds_this_process() {
        let mut t = ProcTable::new(1);
        assert!(t.seed_from_proc() > 0);
        assert!(t.by_pid.contains_key(&std::process::id()));
    }
}
