//! The TCP sockets already listening when the recorder starts, found in
//! /proc, with the process holding each: seeded into net.bpf.o's `listeners`
//! map so that connections they accept carry a process (the kernel side only
//! learns a listener's process at its listen(), which these predate).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use podtrail_ebpf::COMM_LEN;

/// A socket listening now: its namespace, port, and the process holding it
/// (the lowest pid with it open: a server's parent before the workers it
/// forked, like the listen() caller the kernel side records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    pub netns: u32,
    pub port: u16,
    pub pid: u32,
    pub comm: [u8; COMM_LEN],
}

/// (local port, socket inode) of a line of /proc/net/tcp or tcp6 in state
/// LISTEN (`0A`); None for the header and other states.
pub fn parse_listen_line(line: &str) -> Option<(u16, u64)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 || f[3] != "0A" {
        return None;
    }
    let port = u16::from_str_radix(f[1].rsplit(':').next()?, 16).ok()?;
    let inode = f[9].parse().ok()?;
    Some((port, inode))
}

/// The inode in a `net:[4026531840]` or `socket:[1234]` link.
fn bracketed(link: &Path, kind: &str) -> Option<u64> {
    link.to_str()?.strip_prefix(kind)?.strip_prefix(":[")?.strip_suffix(']')?.parse().ok()
}

/// Every TCP socket listening now, in every network namespace a process is
/// in, under the /proc at `proc`. Processes that exit during the walk are
/// skipped.
pub fn listening_now(proc: &Path) -> Vec<Listening> {
    let mut owner: HashMap<u64, u32> = HashMap::new();
    let mut pid_in_netns: BTreeMap<u32, u32> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(proc) else { return Vec::new() };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let base = entry.path();
        let Some(netns) = std::fs::read_link(base.join("ns/net")).ok().and_then(|l| bracketed(&l, "net")) else { continue };
        pid_in_netns.entry(netns as u32).or_insert(pid);
        let Ok(fds) = std::fs::read_dir(base.join("fd")) else { continue };
        for fd in fds.flatten() {
            if let Some(inode) = std::fs::read_link(fd.path()).ok().and_then(|l| bracketed(&l, "socket")) {
                owner.entry(inode).and_modify(|p| *p = (*p).min(pid)).or_insert(pid);
            }
        }
    }
    let mut out = Vec::new();
    for (netns, pid) in pid_in_netns {
        for file in ["tcp", "tcp6"] {
            let Ok(text) = std::fs::read_to_string(proc.join(pid.to_string()).join("net").join(file)) else { continue };
            for (port, inode) in text.lines().filter_map(parse_listen_line) {
                let Some(&holder) = owner.get(&inode) else { continue };
                let mut comm = [0u8; COMM_LEN];
                if let Ok(name) = std::fs::read(proc.join(holder.to_string()).join("comm")) {
                    let name = name.strip_suffix(b"\n").unwrap_or(&name);
                    let n = name.len().min(COMM_LEN - 1);
                    comm[..n].copy_from_slice(&name[..n]);
                }
                out.push(Listening { netns, port, pid: holder, comm });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_lines_give_port_and_inode_and_other_states_nothing() {
        let v4 = "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1684 1 00000000c8056998 100 0 0 10 0";
        assert_eq!(parse_listen_line(v4), Some((2024, 1684)));
        let v6 = "   1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 99887 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_listen_line(v6), Some((8080, 99887)));
        let established = "   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(parse_listen_line(established), None);
        assert_eq!(parse_listen_line("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"), None);
    }

    #[test]
    fn a_listener_of_this_process_is_found_with_its_pid_and_namespace() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let found = listening_now(Path::new("/proc"));
        let me = found.iter().find(|x| x.port == port).unwrap_or_else(|| panic!("port {port} not in {found:?}"));
        assert_eq!(me.pid, std::process::id());
        let netns = bracketed(&std::fs::read_link("/proc/self/ns/net").unwrap(), "net").unwrap();
        assert_eq!(u64::from(me.netns), netns);
    }
}
