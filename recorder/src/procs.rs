//! `procs` stage: the process table.
//!
//! In: decoded exec/exit/fork events, and the rows decoded from every other
//! record. Out: `process_exec` and `process_exit` rows with each image's
//! `exec_id` and its parent's, and every other row given the `exec_id` of the
//! image its process ran at the row's time ([`ProcTable::apply`]).
//! `exec_id` = schema `exec_id(boot id, pid, image start)`, where a process image
//! starts at its exec (so `sh` exec'ing `curl` in place yields two images) or, for
//! processes that predate the recorder, at the start time /proc reports. The table
//! is seeded from /proc at start so those processes still resolve as parents.

use std::collections::HashMap;

use podtrail_schema::tables::exec_id;

use crate::decode::{ExecRaw, ExitRaw, RawEvent};
use crate::rows::{ExecRow, ExitRow, Row, RowSet, Table, VisitRows};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    pub exec_id: u64,
    pub start_boot_ns: u64,
}

pub struct ProcTable {
    boot_id: u64,
    by_pid: HashMap<u32, Image>,
    /// Images that exited in the last [`EXITED_KEPT_NS`], by pid, with their
    /// exit time; `exit_order` forgets them oldest first. What [`Self::image_at`]
    /// reads for rows made after their process ended (`net_flow`).
    exited: HashMap<u32, Vec<(Image, u64)>>,
    exit_order: std::collections::VecDeque<(u32, u64)>,
    /// The SHA-256 of each executed file (`process_exec.sha256`).
    pub hasher: crate::exehash::ExeHasher,
}

/// How long an exited image stays known to [`ProcTable::image_at`]: longer
/// than the flow read interval (10 s) with a margin for a slow read.
pub const EXITED_KEPT_NS: u64 = 60_000_000_000;

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
        ProcTable { boot_id, by_pid: HashMap::new(), exited: HashMap::new(), exit_order: Default::default(), hasher: Default::default() }
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

    /// The image that exited, when known; the pid is forgotten (its image is
    /// kept a minute for [`Self::image_at`]).
    pub fn on_exit(&mut self, e: &ExitRaw) -> Option<Image> {
        let img = self.by_pid.remove(&e.pid);
        if let Some(img) = img {
            self.exited.entry(e.pid).or_default().push((img, e.time_boot_ns));
            self.exit_order.push_back((e.pid, e.time_boot_ns));
        }
        while let Some(&(pid, at)) = self.exit_order.front() {
            if at.saturating_add(EXITED_KEPT_NS) >= e.time_boot_ns {
                break;
            }
            self.exit_order.pop_front();
            if let Some(v) = self.exited.get_mut(&pid) {
                v.retain(|(_, t)| *t != at);
                if v.is_empty() {
                    self.exited.remove(&pid);
                }
            }
        }
        img
    }

    /// The image `pid` ran at `boot_ns` (kernel time): its current one when
    /// that started by then, else one that exited after it (within the last
    /// minute). None when not known, or when the process has exec'd since.
    pub fn image_at(&self, pid: u32, boot_ns: u64) -> Option<Image> {
        if let Some(img) = self.by_pid.get(&pid).filter(|i| i.start_boot_ns <= boot_ns) {
            return Some(*img);
        }
        self.exited.get(&pid)?.iter().rev().find(|(img, exit)| img.start_boot_ns <= boot_ns && boot_ns <= *exit).map(|(img, _)| *img)
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

impl ProcTable {
    /// Apply decoded process events in kernel time order (the table follows
    /// exec, fork and exit; exec and exit rows go to `rows`), and give every
    /// row of `rows` that names its process the image that process ran at the
    /// row's time: each row gets it before any later process event applies. At
    /// the same nanosecond the row comes first. `boot_to_wall` turns kernel
    /// times (CLOCK_BOOTTIME) into rows' wall times. Rows are not stamped with
    /// identity here.
    pub fn apply(&mut self, mut events: Vec<RawEvent>, rows: &mut RowSet, boot_to_wall: i64) {
        let time_of = RawEvent::time_boot_ns;
        // Several ring buffers: restore kernel order (stable: ties keep the
        // order in which the buffers gave them). A pass of one buffer is
        // nearly always in order already: then this is one scan.
        if !events.is_sorted_by_key(time_of) {
            events.sort_by_key(time_of);
        }
        struct ByTime;
        impl VisitRows for ByTime {
            fn visit<R: Row>(&mut self, t: &mut Table<R>) {
                if !t.rows.is_sorted_by_key(Row::time) {
                    t.rows.sort_by_key(Row::time);
                }
            }
        }
        rows.visit(&mut ByTime);
        /// Rows before `until` (wall ns) get their process's current image;
        /// runs of one pid (a storm) look it up once. `next`: per table, the
        /// first row not given one yet.
        struct Own<'a> {
            procs: &'a ProcTable,
            boot_to_wall: i64,
            until: i64,
            next: &'a mut Vec<usize>,
            table: usize,
        }
        impl VisitRows for Own<'_> {
            fn visit<R: Row>(&mut self, t: &mut Table<R>) {
                if self.next.len() <= self.table {
                    self.next.push(0);
                }
                let next = &mut self.next[self.table];
                self.table += 1;
                let mut last: Option<(u32, Option<u64>)> = None;
                while let Some(r) = t.rows.get_mut(*next).filter(|r| r.time() < self.until) {
                    if let Some(pid) = r.pid() {
                        let id = match last {
                            Some((p, id)) if p == pid => id,
                            // A process gone by now (a row sent late: a file
                            // written, sent when executed): the image it ran then.
                            _ => self.procs.current(pid).or_else(|| self.procs.image_at(pid, r.time().saturating_sub(self.boot_to_wall).max(0) as u64)).map(|i| i.exec_id),
                        };
                        r.set_exec_id(id);
                        last = Some((pid, id));
                    }
                    *next += 1;
                }
            }
        }
        let mut next = Vec::new();
        for ev in events {
            let until = (time_of(&ev) as i64 + boot_to_wall).saturating_add(1);
            rows.visit(&mut Own { procs: self, boot_to_wall, until, next: &mut next, table: 0 });
            match ev {
                RawEvent::Exec(e) => {
                    let (img, parent) = self.on_exec(&e);
                    let time = e.time_boot_ns as i64 + boot_to_wall;
                    let sha256 = self.hasher.hash(&e);
                    rows.exec.push(ExecRow { time, exec_id: img.exec_id, parent_exec_id: parent, cwd: Some(e.cwd.clone()), sha256, identity: None, raw: e });
                }
                RawEvent::Exit(e) => {
                    let img = self.on_exit(&e);
                    let time = e.time_boot_ns as i64 + boot_to_wall;
                    let duration_ns = img.map(|i| e.time_boot_ns.saturating_sub(i.start_boot_ns));
                    rows.exit.push(ExitRow { time, exec_id: img.map(|i| i.exec_id), duration_ns, identity: None, raw: e });
                }
                RawEvent::Fork(f) => self.on_fork(&f),
                // Rows of their own tables: made where they are decoded, given
                // their image by the visit above (kept for completeness).
                other => {
                    rows.push_event(other, boot_to_wall);
                }
            }
        }
        rows.visit(&mut Own { procs: self, boot_to_wall, until: i64::MAX, next: &mut next, table: 0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::ForkRaw;

    fn exec(pid: u32, ppid: u32, t: u64) -> ExecRaw {
        ExecRaw { pid, tid: pid, ppid, uid: 0, gid: 0, netns: 0, time_boot_ns: t, cgroup_id: 1, cap_effective: 0, comm: "x".into(), filename: "/x".into(), args: vec![], args_truncated: false, fileless: false, cwd: "/".into(), file_id: (1, 1), loader_env: vec![], env_truncated: false }
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
    fn an_image_is_known_at_a_time_for_a_minute_after_its_exit() {
        let mut t = ProcTable::new(7);
        let (img, _) = t.on_exec(&exec(20, 1, 1_000));
        assert_eq!(t.image_at(20, 1_500), Some(img));
        assert_eq!(t.image_at(20, 500), None, "before the image started");
        let exit = |pid, at| ExitRaw { pid, time_boot_ns: at, cgroup_id: 1, exit_code: 0, signal: 0, comm: "x".into() };
        t.on_exit(&exit(20, 2_000));
        assert_eq!(t.image_at(20, 1_500), Some(img), "an exited image, at a time it ran");
        assert_eq!(t.image_at(20, 2_500), None, "after its exit");
        // A later exit more than a minute on forgets it.
        t.on_exec(&exec(21, 1, 3_000));
        t.on_exit(&exit(21, 2_000 + EXITED_KEPT_NS + 1));
        assert_eq!(t.image_at(20, 1_500), None);
        assert!(t.image_at(21, 3_000).is_some());
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

    fn exec_ev(pid: u32, t: u64) -> RawEvent {
        RawEvent::Exec(ExecRaw { pid, tid: pid, ppid: 1, uid: 0, gid: 0, netns: 0, time_boot_ns: t, cgroup_id: 1, cap_effective: 0, comm: "x".into(), filename: "/x".into(), args: vec![], args_truncated: false, fileless: false, cwd: "/".into(), file_id: (1, 1), loader_env: vec![], env_truncated: false })
    }

    fn conn(pid: Option<u32>, t: u64, boot_to_wall: i64) -> crate::rows::ConnRow {
        crate::rows::ConnRow::new(crate::decode::ConnRaw::localhost(t, 1, pid), boot_to_wall)
    }

    /// (kernel time, exec_id) of the set's connection rows, in their order.
    fn owners(s: &RowSet) -> Vec<(u64, Option<u64>)> {
        s.conn.rows.iter().map(|c| (c.raw.time_boot_ns, c.exec_id)).collect()
    }

    #[test]
    fn a_row_gets_the_image_its_process_ran_at_its_time() {
        let mut procs = ProcTable::new(7);
        // pid 10 execs at 100 and again at 300 (in place), exits at 500; pid 11
        // is forked from it at 200. Connections come in reader order, unsorted.
        let events = vec![
            exec_ev(10, 100),
            RawEvent::Fork(ForkRaw { parent_pid: 10, child_pid: 11, time_boot_ns: 200 }),
            exec_ev(10, 300),
            RawEvent::Exit(ExitRaw { pid: 10, time_boot_ns: 500, cgroup_id: 1, exit_code: 0, signal: 0, comm: "x".into() }),
        ];
        let mut rows = RowSet::default();
        for c in [50, 150, 250, 300, 301, 600].into_iter().map(|t| conn(Some(10), t, 1_000)).chain([conn(Some(11), 250, 1_000), conn(None, 260, 1_000)]).rev() {
            rows.conn.push(c);
        }
        procs.apply(events, &mut rows, 1_000);
        let first = rows.exec.rows[0].exec_id;
        let second = rows.exec.rows[1].exec_id;
        assert_ne!(first, second);
        assert_eq!(
            owners(&rows),
            vec![
                (50, None),           // before any exec this table saw
                (150, Some(first)),   // after the first exec
                (250, Some(first)),   // pid 11 (the forked child): runs its parent's image
                (250, Some(first)),   // pid 10
                (260, None),          // no owner: nothing looked up
                (300, Some(first)),   // an exec of the same nanosecond applies after it
                (301, Some(second)),
                (600, None),          // after the exit
            ]
        );
        assert!(rows.conn.rows.iter().all(|c| c.time == c.raw.time_boot_ns as i64 + 1_000));
        assert_eq!(rows.exit.rows[0].exec_id, Some(second), "the exit row carries the image that exited");
    }
}
