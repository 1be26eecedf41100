/* The one definition of every event the kernel programs send to podtraild.
 * Rust mirrors these in ebpf/src/lib.rs (#[repr(C)]); a test checks each
 * mirror's size and field offsets against the BTF of the compiled object.
 * Kind numbers are never reused (retired ones stay listed as reserved). */
#ifndef PODTRAIL_EVENTS_H
#define PODTRAIL_EVENTS_H

#define PT_KIND_EXEC 1
#define PT_KIND_EXIT 2
#define PT_KIND_CONN 3
#define PT_KIND_FORK 4
#define PT_KIND_PRIV 5
#define PT_KIND_CAP 6
#define PT_KIND_LISTEN 7
#define PT_KIND_DNS 8
#define PT_KIND_TLS 9
#define PT_KIND_FILE 10

/* pt_exec_event.flags */
#define PT_EXEC_ARGS_TRUNCATED 1 /* argv was longer than PT_ARGS_MAX */
#define PT_EXEC_FILELESS 2       /* the executed file has no link (memfd, deleted) */
#define PT_EXEC_CWD_TRUNCATED 4  /* cwd[] misses the components nearest the root
                                    (deeper than PT_CWD_DEPTH or longer than kept) */
#define PT_EXEC_ENV_TRUNCATED 8  /* env[] could not hold every LD_* variable, or the
                                    environment had more than PT_ENV_SCAN strings */

/* pt_priv_event.op: one per traced syscall */
#define PT_PRIV_SETUID 1
#define PT_PRIV_SETGID 2
#define PT_PRIV_SETREUID 3
#define PT_PRIV_SETREGID 4
#define PT_PRIV_SETRESUID 5
#define PT_PRIV_SETRESGID 6
#define PT_PRIV_CAPSET 7
#define PT_PRIV_SETNS 8
#define PT_PRIV_UNSHARE 9
#define PT_PRIV_MOUNT 10
#define PT_PRIV_UMOUNT 11
#define PT_PRIV_PTRACE 12
#define PT_PRIV_BPF 13
#define PT_PRIV_INIT_MODULE 14
#define PT_PRIV_FINIT_MODULE 15
#define PT_PRIV_MEMFD_CREATE 16
#define PT_PRIV_SOCKET 17       /* only raw IP (SOCK_RAW), AF_PACKET and SOCK_PACKET sockets */

/* The privilege syscalls, each listed once: its name, PT_PRIV_* op, the
 * arguments kept, and which 32-bit entries also reach it (PT_IA32:
 * __ia32_sys_<name>; PT_IA32_ID16: that and the 16-bit-id
 * __ia32_sys_<name>16; PT_IA32_COMPAT: __ia32_compat_sys_<name>).
 * privilege.bpf.c makes every program from this list, ebpf/build.rs makes the
 * Rust table `PRIV_SYSCALLS` from it, and podtraild names and attaches the
 * programs from that table. */
#define PT_IA32 0
#define PT_IA32_ID16 1
#define PT_IA32_COMPAT 2
#define PT_PRIV_SYSCALLS(X) \
    X(setuid, PT_PRIV_SETUID, 1, PT_IA32_ID16) \
    X(setgid, PT_PRIV_SETGID, 1, PT_IA32_ID16) \
    X(setreuid, PT_PRIV_SETREUID, 2, PT_IA32_ID16) \
    X(setregid, PT_PRIV_SETREGID, 2, PT_IA32_ID16) \
    X(setresuid, PT_PRIV_SETRESUID, 3, PT_IA32_ID16) \
    X(setresgid, PT_PRIV_SETRESGID, 3, PT_IA32_ID16) \
    X(capset, PT_PRIV_CAPSET, 2, PT_IA32) \
    X(setns, PT_PRIV_SETNS, 2, PT_IA32) \
    X(unshare, PT_PRIV_UNSHARE, 1, PT_IA32) \
    X(mount, PT_PRIV_MOUNT, 5, PT_IA32) \
    X(umount, PT_PRIV_UMOUNT, 2, PT_IA32) \
    X(ptrace, PT_PRIV_PTRACE, 4, PT_IA32_COMPAT) \
    X(init_module, PT_PRIV_INIT_MODULE, 3, PT_IA32) \
    X(finit_module, PT_PRIV_FINIT_MODULE, 3, PT_IA32) \
    X(memfd_create, PT_PRIV_MEMFD_CREATE, 2, PT_IA32) \
    X(socket, PT_PRIV_SOCKET, 3, PT_IA32) \
    X(bpf, PT_PRIV_BPF, 3, PT_IA32)

/* pt_file_event.op: one per kind of file operation */
#define PT_FILE_OPEN 1        /* opened for writing, creating or truncating */
#define PT_FILE_READ 2        /* opened read-only: a watched credential file */
#define PT_FILE_UNLINK 3
#define PT_FILE_RMDIR 4
#define PT_FILE_RENAME 5
#define PT_FILE_CHMOD 6
#define PT_FILE_CHOWN 7
#define PT_FILE_SETXATTR 8
#define PT_FILE_LINK 9
#define PT_FILE_SYMLINK 10
#define PT_FILE_TRUNCATE 11
#define PT_FILE_MKNOD 12
#define PT_FILE_MKDIR 13

/* How a file syscall names its file(s), in PT_FILE_SYSCALLS: an argument index
 * (0..5) of a directory descriptor (AT_FDCWD or a directory) or, with no path
 * argument, of the descriptor of the file itself; or one of these. */
#define PT_FILE_ARG_CWD 6     /* no descriptor argument: relative to the working directory */
#define PT_FILE_ARG_RAW 7     /* a string kept as given, not a path resolved (symlink
                                 target, extended attribute name) */
#define PT_FILE_ARG_NONE 8    /* no such argument */

/* The file syscalls, each listed once: name, PT_FILE_* op, arguments kept,
 * then where its first file is (descriptor/base kind, path argument) and its
 * second (rename/link: the new name; symlink: the target; setxattr: the
 * attribute's name). file.bpf.c makes the programs from this list, ebpf/build.rs
 * makes the Rust table `FILE_SYSCALLS`, and podtraild attaches from that table. */
#define PT_FILE_SYSCALLS(X) \
    X(openat, PT_FILE_OPEN, 4, 0, 1, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(open, PT_FILE_OPEN, 3, PT_FILE_ARG_CWD, 0, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(creat, PT_FILE_OPEN, 2, PT_FILE_ARG_CWD, 0, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(openat2, PT_FILE_OPEN, 4, 0, 1, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(unlinkat, PT_FILE_UNLINK, 3, 0, 1, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(unlink, PT_FILE_UNLINK, 1, PT_FILE_ARG_CWD, 0, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(rmdir, PT_FILE_RMDIR, 1, PT_FILE_ARG_CWD, 0, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(renameat2, PT_FILE_RENAME, 5, 0, 1, 2, 3) \
    X(renameat, PT_FILE_RENAME, 4, 0, 1, 2, 3) \
    X(rename, PT_FILE_RENAME, 2, PT_FILE_ARG_CWD, 0, PT_FILE_ARG_CWD, 1) \
    X(fchmodat, PT_FILE_CHMOD, 3, 0, 1, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(chmod, PT_FILE_CHMOD, 2, PT_FILE_ARG_CWD, 0, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(fchmod, PT_FILE_CHMOD, 2, 0, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(fchownat, PT_FILE_CHOWN, 5, 0, 1, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(chown, PT_FILE_CHOWN, 3, PT_FILE_ARG_CWD, 0, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(lchown, PT_FILE_CHOWN, 3, PT_FILE_ARG_CWD, 0, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(fchown, PT_FILE_CHOWN, 3, 0, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(setxattr, PT_FILE_SETXATTR, 5, PT_FILE_ARG_CWD, 0, PT_FILE_ARG_RAW, 1) \
    X(lsetxattr, PT_FILE_SETXATTR, 5, PT_FILE_ARG_CWD, 0, PT_FILE_ARG_RAW, 1) \
    X(fsetxattr, PT_FILE_SETXATTR, 5, 0, PT_FILE_ARG_NONE, PT_FILE_ARG_RAW, 1) \
    X(truncate, PT_FILE_TRUNCATE, 2, PT_FILE_ARG_CWD, 0, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(ftruncate, PT_FILE_TRUNCATE, 2, 0, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(linkat, PT_FILE_LINK, 5, 0, 1, 2, 3) \
    X(link, PT_FILE_LINK, 2, PT_FILE_ARG_CWD, 0, PT_FILE_ARG_CWD, 1) \
    X(symlinkat, PT_FILE_SYMLINK, 3, 1, 2, PT_FILE_ARG_RAW, 0) \
    X(symlink, PT_FILE_SYMLINK, 2, PT_FILE_ARG_CWD, 1, PT_FILE_ARG_RAW, 0) \
    X(mknodat, PT_FILE_MKNOD, 4, 0, 1, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(mknod, PT_FILE_MKNOD, 3, PT_FILE_ARG_CWD, 0, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(mkdirat, PT_FILE_MKDIR, 3, 0, 1, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE) \
    X(mkdir, PT_FILE_MKDIR, 2, PT_FILE_ARG_CWD, 0, PT_FILE_ARG_NONE, PT_FILE_ARG_NONE)

/* pt_file_event.why: why the operation was recorded (bits) */
#define PT_FILE_WHY_WATCHED 1     /* a path under a watched prefix (watch = its index) */
#define PT_FILE_WHY_NAME 2        /* a watched file name anywhere (shell rc, history,
                                     authorized_keys; name_watch = its index) */
#define PT_FILE_WHY_READ 4        /* a read-only open of a watched credential path */
#define PT_FILE_WHY_HIDDEN 8      /* created a hidden file or directory (leading dot) */
#define PT_FILE_WHY_EXEC_BIT 16   /* chmod giving an execute bit */
#define PT_FILE_WHY_SETID 32      /* chmod setting setuid or setgid */
#define PT_FILE_WHY_SECURITY_XATTR 64 /* setxattr of a `security.` attribute (file capabilities) */
#define PT_FILE_WHY_DEVICE 128    /* mknod of a character or block device */
#define PT_FILE_WHY_EXECUTED 256  /* a file this open created or truncated was later
                                     executed (sent at that exec, with the open's own
                                     time and process: the dropper pattern) */

/* pt_file_event.flags */
#define PT_FILE_CREATED 1         /* the open created the file (FMODE_CREATED) */
#define PT_FILE_HAS_INODE 2       /* dev/ino are the file's (descriptor operations, opens) */
#define PT_FILE_PATH_TRUNCATED 4  /* path misses components nearest the root (deeper than
                                     PT_FILE_DEPTH or longer than PT_FILE_DIR_MAX) */
#define PT_FILE_PATH2_TRUNCATED 8 /* the same for path2 */

/* Byte limits of a file record's paths: the base directory (working directory
 * or a directory descriptor's path) keeps PT_FILE_DIR_MAX bytes, the string the
 * process gave PT_FILE_NAME_MAX; path[] holds both with a slash between. Paths
 * are matched on their first PT_FILE_MATCH_MAX bytes. */
#define PT_FILE_DIR_MAX 256       /* a power of two (the program masks with it) */
#define PT_FILE_NAME_MAX 255
#define PT_FILE_PATH_MAX 512
#define PT_FILE_MATCH_MAX 128
#define PT_FILE_BASENAME_MAX 32   /* bytes of a watched file name, with its NUL */
#define PT_FILE_DEPTH 24          /* directory components walked up */

/* pt_conn_event.event */
#define PT_CONN_CONNECT 1
#define PT_CONN_ACCEPT 2
#define PT_CONN_CLOSE 3
#define PT_CONN_FAIL 4

/* pt_conn_event.flags */
#define PT_CONN_HAS_OWNER 1   /* pid/comm are the process that called connect() */
#define PT_CONN_HAS_ORIG 2    /* orig_daddr/orig_dport from cgroup/connect4|6 */
#define PT_CONN_HAS_NAT 4     /* nat_daddr/nat_dport from conntrack (DNAT) */
#define PT_CONN_HAS_BYTES 8   /* bytes_* and duration_ns valid (close); unset on
                                 the close of a socket the `established` map did
                                 not hold (full, or established before the
                                 recorder started): the row is sent all the same */
#define PT_CONN_OWNER_LISTENER 16 /* with HAS_OWNER on an accept row, or the close
                                 of an accepted connection: pid/comm are the
                                 process that put the listening socket in
                                 listen (the `listeners` map), not a connect() */
#define PT_CONN_ACCEPTED 32   /* this side accepted the connection (the peer began
                                 it): on accept rows and on the close of an
                                 accepted connection the `established` map held */

/* pt_listen_event.event */
#define PT_LISTEN_LISTEN 1    /* a TCP socket entered LISTEN (listen(2)) */
#define PT_LISTEN_UNLISTEN 2  /* a listening TCP socket closed */
#define PT_LISTEN_BIND 3      /* a UDP socket was bound (bind(2) succeeded) */
#define PT_LISTEN_UNBIND 4    /* a bound UDP socket was released */

/* pt_dns_event.direction */
#define PT_DNS_QUERY 1   /* sent by a socket to port 53 (cgroup_skb egress) */
#define PT_DNS_ANSWER 2  /* received by a socket from port 53 (cgroup_skb ingress) */

/* pt_dns_event.flags */
#define PT_DNS_HAS_OWNER 1  /* pid/comm: the process that connect()ed or sendmsg()ed
                               the socket to port 53 (the `dns_socks` or `connects` map) */
#define PT_DNS_HAS_ASKED 2  /* asked_addr/asked_port: the destination that process
                               gave (before any DNAT) */
#define PT_DNS_HAS_NAT 4    /* nat_addr/nat_port: the backend conntrack translated
                               the query to (answers only) */

/* Bytes of a DNS message kept per packet: the classic UDP limit. A longer
 * message is parsed as far as these bytes go (payload_len says how long it was). */
#define PT_DNS_CAPTURE 512 /* a power of two (the program masks with it) */

/* Index of the `drops` counters (common.h): what was lost, for which table,
 * and why. Userspace turns each into `podtrail_loss` rows as PT_DROP_MEANINGS
 * below says; a number is never reused for another meaning. */
#define PT_DROP_EXEC_RING 0        /* process_exec row: ring buffer full */
#define PT_DROP_EXIT_RING 1        /* process_exit row: ring buffer full */
#define PT_DROP_FORK_RING 2        /* fork record (no row: the process tree; a child
                                      that never execs then has no exec_id) */
#define PT_DROP_CONN_RING 3        /* net_conn row: ring buffer full */
#define PT_DROP_CONN_STATE_FULL 4  /* net_conn: the `established` map was full: the
                                      connection's close row has no bytes or duration */
#define PT_DROP_CONN_NO_OWNER 5    /* net_conn connect/fail row without its process
                                      (pid, comm, exec_id, orig_dst): no connect()
                                      record (evicted, or before the recorder started) */
#define PT_DROP_PRIV_RING 6        /* privilege row: ring buffer full */
#define PT_DROP_PRIV_PENDING_FULL 7 /* privilege row: the per-thread `pending` map was full */
#define PT_DROP_CAP_RING 8         /* privilege row of a refused capability check:
                                      ring buffer full (also in cap_usage.denied_unrecorded) */
#define PT_DROP_CAP_MAP_FULL 9     /* cap_usage: the `cap_usage` map was full: the check
                                      is not counted */
#define PT_DROP_LISTEN_RING 10     /* net_listen row: ring buffer full */
#define PT_DROP_LISTEN_MAP_FULL 11 /* net_listen: the `listeners` or `udp_bound` map was
                                      full: the listener's accepted connections have no
                                      process, or the UDP socket's unbind row is missing */
#define PT_DROP_DNS_RING 12        /* dns row: ring buffer full (a query or an answer) */
#define PT_DROP_TLS_RING 13        /* net_conn: a TLS ClientHello lost (ring buffer full):
                                      the connection's rows have no server_name */
#define PT_DROP_FLOW_MAP_FULL 14    /* net_flow: packets of flows the `flows` map could
                                       not take (full): counted, in no row */
#define PT_DROP_FLOW_SOCK_FULL 15   /* net_flow rows without their process: the
                                       `flow_socks` map was full at the socket's creation */
#define PT_DROP_FILE_RING 16         /* file row: ring buffer full */
#define PT_DROP_FILE_PENDING_FULL 17 /* file: the per-thread `file_pending` map was full */
#define PT_DROP_REASONS 18

/* What a count of each reason means to podtraild, one line per PT_DROP_*:
 * X(reason, podtrail_loss source, table whose rows were lost or stored
 * incomplete (none: no table), "detail"). ebpf/build.rs makes the Rust table
 * of loss meanings from it and fails the build when a reason has no line or
 * two. Not used by the kernel programs. */
#define PT_DROP_MEANINGS(X) \
    X(PT_DROP_EXEC_RING, kernel_ringbuf, process_exec, "ring buffer of process.bpf.o full") \
    X(PT_DROP_EXIT_RING, kernel_ringbuf, process_exit, "ring buffer of process.bpf.o full") \
    X(PT_DROP_FORK_RING, kernel_ringbuf, none, "fork records lost (ring buffer of process.bpf.o full): not rows, but a forked child that never execs then has no exec_id") \
    X(PT_DROP_CONN_RING, kernel_ringbuf, net_conn, "ring buffer of net.bpf.o full") \
    X(PT_DROP_CONN_STATE_FULL, incomplete, net_conn, "connections tracked without state (the `established` map of net.bpf.o was full): their close rows have no bytes_sent, bytes_received or duration_ns") \
    X(PT_DROP_CONN_NO_OWNER, incomplete, net_conn, "connect/fail rows without their process (pid, comm, exec_id, orig_dst_ip, orig_dst_port): the socket's connect() record (the `connects` map of net.bpf.o) was evicted or predates the recorder") \
    X(PT_DROP_PRIV_RING, kernel_ringbuf, privilege, "ring buffer of privilege.bpf.o full") \
    X(PT_DROP_PRIV_PENDING_FULL, kernel_map, privilege, "the per-thread `pending` map of privilege.bpf.o was full: these syscalls have no row") \
    X(PT_DROP_CAP_RING, kernel_ringbuf, privilege, "refused capability checks without their row (ring buffer of privilege.bpf.o full); counted in cap_usage.denied_unrecorded too") \
    X(PT_DROP_CAP_MAP_FULL, kernel_map, cap_usage, "capability checks not counted: the `cap_usage` map of privilege.bpf.o was full") \
    X(PT_DROP_LISTEN_RING, kernel_ringbuf, net_listen, "ring buffer of net.bpf.o full") \
    X(PT_DROP_LISTEN_MAP_FULL, kernel_map, net_listen, "sockets net.bpf.o could not remember (its `listeners` or `udp_bound` map was full): a TCP listener's accepted net_conn rows have no process, or a UDP socket's unbind row is missing") \
    X(PT_DROP_DNS_RING, kernel_ringbuf, dns, "DNS packets lost (ring buffer of net.bpf.o full): a lost query leaves its answer a row of status answer_only, a lost answer leaves its query unanswered") \
    X(PT_DROP_TLS_RING, incomplete, net_conn, "TLS ClientHellos lost (ring buffer of net.bpf.o full): those connections' rows have no server_name") \
    X(PT_DROP_FLOW_MAP_FULL, kernel_map, net_flow, "UDP/ICMP packets not counted in any flow (the `flows` map of net.bpf.o was full): the count is packets, not rows") \
    X(PT_DROP_FLOW_SOCK_FULL, incomplete, net_flow, "UDP/ICMP sockets whose creating process net.bpf.o could not remember (its `flow_socks` map was full): their net_flow rows have no pid, comm or exec_id") \
    X(PT_DROP_FILE_RING, kernel_ringbuf, file, "ring buffer of file.bpf.o full") \
    X(PT_DROP_FILE_PENDING_FULL, kernel_map, file, "file operations not examined (the per-thread `file_pending` map of file.bpf.o was full): the rows they would have given are lost")

#define PT_COMM_LEN 16
#define PT_FILENAME_MAX 512   /* bytes of the exec'd path kept, with its NUL */
#define PT_ARGS_MAX 3584      /* bytes of argv kept (NUL-separated) */
#define PT_PRIV_STR_MAX 256   /* bytes kept of each string argument, with its NUL */
#define PT_CWD_MAX 512        /* bytes of cwd[]; components start in its first half */
#define PT_CWD_DEPTH 32       /* path components walked up from the working directory */
#define PT_ENV_MAX 512        /* bytes of env[]: the loader variables kept */
#define PT_ENV_SCAN 128       /* environment strings examined at most */

/* Every record starts with its kind. */
struct pt_header {
    __u32 kind;
};

/* sched_process_exec. Variable size: only offsetof(data) + filename_len +
 * args_len bytes are sent. */
struct pt_exec_event {
    __u32 kind;
    __u32 pid;            /* tgid, host pid namespace */
    __u32 tid;
    __u32 ppid;           /* real parent's tgid */
    __u32 uid;
    __u32 gid;
    __u32 netns;          /* network namespace inode */
    __u32 filename_len;   /* bytes of data[] holding the path, with its NUL */
    __u32 args_len;       /* bytes of data[] after the path holding argv */
    __u32 flags;          /* PT_EXEC_*; when FILELESS, data[] holds the file's
                             own name (e.g. `memfd:x`), not the path given */
    __u64 time_ns;        /* CLOCK_BOOTTIME */
    __u64 cgroup_id;
    __u64 cap_effective;
    char comm[PT_COMM_LEN];
    __u32 cwd_len;        /* bytes of cwd[] used */
    __u32 dev;            /* the executed file's filesystem (kernel dev_t) */
    __u64 ino;            /* and inode */
    __u32 env_len;        /* bytes of env[] used */
    __u32 reserved;
    char cwd[PT_CWD_MAX]; /* the working directory's path components, leaf
                             first, each with its NUL, up to the process's root
                             (a container's own root inside it); empty: "/" */
    char env[PT_ENV_MAX]; /* the dynamic loader's variables of the new image's
                             environment (LD_PRELOAD=..., LD_LIBRARY_PATH=...,
                             LD_AUDIT=...), each with its NUL */
    char data[PT_FILENAME_MAX + PT_ARGS_MAX];
};

/* sched_process_exit of a thread-group leader. */
struct pt_exit_event {
    __u32 kind;
    __u32 pid;
    __u32 tid;
    __u32 exit_code;      /* raw task->exit_code: status << 8 | signal */
    __u64 time_ns;        /* CLOCK_BOOTTIME */
    __u64 cgroup_id;
    char comm[PT_COMM_LEN];
};

/* sched_process_fork of a new process (not a thread): the child runs its
 * parent's program until it execs. */
struct pt_fork_event {
    __u32 kind;
    __u32 parent_pid;     /* tgid */
    __u32 child_pid;      /* tgid (== pid: a new process) */
    __u32 reserved;
    __u64 time_ns;        /* CLOCK_BOOTTIME */
};

/* TCP lifecycle from inet_sock_set_state. Addresses are 16 bytes, network
 * order; IPv4 uses the first 4. Ports are host order. */
struct pt_conn_event {
    __u32 kind;
    __u32 event;
    __u32 pid;            /* owner tgid when PT_CONN_HAS_OWNER */
    __u32 family;         /* AF_INET (2) or AF_INET6 (10) */
    __u32 netns;          /* the socket's network namespace inode */
    __u32 flags;
    __u32 error;          /* sk_err on fail */
    __u16 sport;
    __u16 dport;
    __u16 orig_dport;
    __u16 nat_dport;
    __u64 time_ns;        /* CLOCK_BOOTTIME */
    __u64 cgroup_id;      /* the socket's cgroup, not current's (softirq) */
    __u64 cookie;
    __u64 bytes_sent;
    __u64 bytes_received;
    __u64 duration_ns;
    __u8 saddr[16];
    __u8 daddr[16];
    __u8 orig_daddr[16];
    __u8 nat_daddr[16];
    char comm[PT_COMM_LEN];
};

/* A socket that starts or stops accepting traffic: TCP listen/unlisten from
 * inet_sock_set_state (the socket's own namespace and cgroup), UDP bind from
 * cgroup/post_bind4|6 and its release from cgroup/sock_release (process
 * context; those hooks do not expose the namespace: netns is 0). The address
 * is 16 bytes, network order, IPv4 in the first 4; the port is host order. */
struct pt_listen_event {
    __u32 kind;
    __u32 event;          /* PT_LISTEN_* */
    __u32 pid;            /* tgid of the calling process */
    __u32 family;         /* AF_INET (2) or AF_INET6 (10) */
    __u32 netns;          /* the socket's network namespace inode; 0: unknown */
    __u16 port;
    __u8 protocol;        /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
    __u8 reserved;
    __u64 time_ns;        /* CLOCK_BOOTTIME */
    __u64 cgroup_id;
    __u64 cookie;         /* socket cookie; 0: the kernel had none */
    __u8 addr[16];
    char comm[PT_COMM_LEN];
};

/* One DNS message as a socket sent it to port 53 or received it from there
 * (cgroup_skb egress/ingress on the cgroup v2 root: the socket's own cgroup,
 * any network namespace). UDP: the datagram's payload; TCP: the segment's
 * payload, a 2-byte length first when it starts a message. Addresses are 16
 * bytes, network order, IPv4 in the first 4; ports host order. local/remote
 * are the packet's: a query's remote is where it left the socket for (after a
 * DNAT in the socket's own namespace), an answer's remote where it came from
 * (after conntrack undid any DNAT). */
struct pt_dns_event {
    __u32 kind;
    __u8 direction;       /* PT_DNS_QUERY or PT_DNS_ANSWER */
    __u8 protocol;        /* IPPROTO_UDP (17) or IPPROTO_TCP (6) */
    __u16 family;         /* AF_INET (2) or AF_INET6 (10) */
    __u32 pid;            /* with PT_DNS_HAS_OWNER */
    __u16 flags;          /* PT_DNS_HAS_* */
    __u16 captured;       /* bytes of data[] filled (at most PT_DNS_CAPTURE) */
    __u32 payload_len;    /* the packet's whole transport payload */
    __u16 local_port;
    __u16 remote_port;
    __u16 asked_port;
    __u16 nat_port;
    __u32 reserved;
    __u64 time_ns;        /* CLOCK_BOOTTIME */
    __u64 cgroup_id;      /* the socket's cgroup */
    __u64 cookie;         /* socket cookie: a query and its answer share it */
    __u8 local_addr[16];
    __u8 remote_addr[16];
    __u8 asked_addr[16];
    __u8 nat_addr[16];
    char comm[PT_COMM_LEN];
    __u8 data[PT_DNS_CAPTURE];
};

/* net.bpf.o's `listeners` map: the process that put each listening TCP
 * socket in LISTEN, by (network namespace inode, local port). podtraild also
 * fills it at start for the sockets listening then (sk 0: found in /proc). */
struct pt_listener_key {
    __u32 netns;
    __u16 port;
    __u16 pad;
};
struct pt_listener_owner {
    __u64 sk;             /* which socket: only its own close deletes the entry; 0: seeded */
    __u32 pid;
    __u32 pad;
    char comm[PT_COMM_LEN];
};

/* Bytes of a TLS ClientHello kept: enough for the server name extension
 * wherever a client puts it (browsers shuffle extensions; a post-quantum key
 * share alone is over 1100 bytes). A power of two (the program masks with it). */
#define PT_TLS_CAPTURE 2048

/* The first bytes of a TCP segment a socket sent that starts a TLS handshake
 * record holding a ClientHello (cgroup_skb egress): podtraild reads the server
 * name (SNI) from it for the connection's rows (joined by socket cookie). */
struct pt_tls_event {
    __u32 kind;
    __u16 captured;       /* bytes of data[] filled */
    __u16 family;         /* AF_INET (2) or AF_INET6 (10) */
    __u32 payload_len;    /* the segment's whole payload */
    __u32 reserved;
    __u64 time_ns;        /* CLOCK_BOOTTIME */
    __u64 cgroup_id;
    __u64 cookie;
    __u8 data[PT_TLS_CAPTURE];
};

/* One privilege-changing syscall, sent at its exit with its result. Credentials
 * are the caller's before the call. Two sizes: without `str` (offsetof(str)
 * bytes) when every str_len is 0, else the whole struct. */
struct pt_priv_event {
    __u32 kind;
    __u32 op;             /* PT_PRIV_* */
    __u32 pid;            /* tgid */
    __u32 tid;
    __u32 uid;            /* real uid before the call */
    __u32 euid;
    __u32 gid;
    __u32 egid;
    __s64 ret;            /* the syscall's return value (< 0: -errno) */
    __u64 time_ns;        /* CLOCK_BOOTTIME, at entry */
    __u64 cgroup_id;
    __u64 cap_effective;  /* before the call */
    __u64 args[6];        /* the syscall's arguments (unused ones are 0) */
    __u64 extra[3];       /* capset: new effective, permitted, inheritable;
                             bpf: program type (PROG_LOAD) or attach type */
    __u16 str_len[3];     /* bytes of str[i] holding a string, with its NUL; 0: none */
    __u16 reserved;
    char comm[PT_COMM_LEN];
    char str[3][PT_PRIV_STR_MAX]; /* mount: source, target, fstype; umount:
                             target; memfd_create: name; init_module: params;
                             finit_module: the file's name */
};

/* One file operation (file.bpf.o), sent at the syscall's exit with its result,
 * only when it matched what is watched (`why`). Paths are as the process saw
 * them: its working directory or directory descriptor joined to the string it
 * gave, up to its own root (a container's root inside it); `.` and `..` are
 * kept as given, symlinks are not followed. */
struct pt_file_event {
    __u32 kind;
    __u32 op;             /* PT_FILE_* */
    __u32 pid;            /* tgid */
    __u32 tid;
    __u32 uid;            /* real and effective uid of the caller */
    __u32 euid;
    __s64 ret;            /* the syscall's return value (< 0: -errno) */
    __u64 time_ns;        /* CLOCK_BOOTTIME, at entry */
    __u64 cgroup_id;
    __u64 args[6];        /* the syscall's arguments (unused ones are 0) */
    __u64 open_flags;     /* open: O_* flags (openat2: open_how.flags) */
    __u64 ino;            /* with PT_FILE_HAS_INODE */
    __u32 dev;            /* the kernel's dev_t of the file's filesystem (major << 20 | minor) */
    __u32 mnt_ns;         /* mount namespace inode of the caller */
    __u32 why;            /* PT_FILE_WHY_* */
    __u32 flags;          /* PT_FILE_CREATED, ... */
    __u16 watch;          /* index of the matched watched prefix (WHY_WATCHED or WHY_READ) */
    __u16 name_watch;     /* index of the matched file name (WHY_NAME) */
    __u16 path_len;       /* bytes of path[] with its NUL */
    __u16 path2_len;      /* bytes of path2[] with its NUL; 0: none */
    __u16 syscall;        /* which: its position in PT_FILE_SYSCALLS */
    __u16 reserved;
    char comm[PT_COMM_LEN];
    char path[PT_FILE_PATH_MAX];
    char path2[PT_FILE_PATH_MAX]; /* rename/link: the new name; symlink: the target
                             as given; setxattr: the attribute's name */
};

/* Key of file.bpf.o's longest-prefix-match tries of watched paths
 * (`write_watch`, `read_watch`; value: the prefix's index). */
struct pt_file_match_key {
    __u32 prefixlen;      /* bits: 8 * bytes of the prefix */
    __u8 data[PT_FILE_MATCH_MAX];
};

/* A capability check the kernel refused (capability/cap_capable), rate-limited
 * per cgroup and capability; every check is also counted in the cap_usage map. */
struct pt_cap_event {
    __u32 kind;
    __u32 cap;
    __u32 pid;
    __u32 tid;
    __s32 ret;
    __u32 uid;            /* the checked credentials */
    __u32 euid;
    __u32 gid;
    __u32 egid;
    __u32 reserved;
    __u64 time_ns;        /* CLOCK_BOOTTIME */
    __u64 cgroup_id;
    __u64 cap_effective;
    char comm[PT_COMM_LEN];
};

/* cap_usage map: cumulative counts per (cgroup, capability) since load. */
struct pt_cap_key {
    __u64 cgroup_id;
    __u32 cap;
    __u32 pad;
};

struct pt_cap_val {
    __u64 granted;
    __u64 denied;
    __u64 denied_unlogged; /* denied checks sent without a pt_cap_event */
    __u64 first_ns;        /* CLOCK_BOOTTIME of the first check */
    __u64 last_ns;         /* of the latest check */
    __u64 window_ns;       /* start of the current rate-limit second */
    __u64 window_rows;     /* pt_cap_events sent in that second */
};

/* A UDP or ICMP flow: one socket and one peer (key of net.bpf.o's `flows`
 * map, which podtraild reads about every 10 s). Addresses 16 bytes, network
 * order, IPv4 in the first 4; ports host order. */
struct pt_flow_key {
    __u64 cookie;         /* socket cookie */
    __u8 peer[16];        /* the other side as this socket's packets name it: what
                             it sent to (before any DNAT on the way), what it
                             received from */
    __u16 peer_port;      /* UDP; 0 for ICMP */
    __u8 protocol;        /* IPPROTO_UDP (17), IPPROTO_ICMP (1), IPPROTO_ICMPV6 (58) */
    __u8 family;          /* AF_INET (2) or AF_INET6 (10): of the packets */
    __u32 pad;
};

/* pt_flow_val.flags */
#define PT_FLOW_HAS_OWNER 1   /* pid/comm: the process that created the socket */
#define PT_FLOW_FIRST_IN 2    /* the flow's first packet was received, not sent */
#define PT_FLOW_NAT_LOOKED 4  /* the first received packet looked for a DNAT */
#define PT_FLOW_HAS_NAT 8     /* nat_addr/nat_port: the backend conntrack sent it to */

/* A flow's counters since its first packet (value of `flows`). Bytes: UDP
 * payload (datagram data), ICMP messages with their ICMP header. Packets: a
 * GSO/GRO packet counts its segments. The ICMP masks have a bit per type seen
 * (IPv4: bit = type, types 0..31; ICMPv6: errors 1..4 = bits 1..4, types
 * 128..154 = bits 5..31). */
struct pt_flow_val {
    __u64 first_ns;       /* CLOCK_BOOTTIME of the first packet */
    __u64 last_ns;        /* of the latest */
    __u64 packets_out;
    __u64 bytes_out;
    __u64 packets_in;
    __u64 bytes_in;
    __u64 cgroup_id;      /* the socket's cgroup */
    __u32 pid;            /* creator (tgid), with PT_FLOW_HAS_OWNER */
    __u16 local_port;
    __u16 flags;          /* PT_FLOW_* */
    __u32 icmp_out;       /* ICMP types sent (mask) */
    __u32 icmp_in;        /* ICMP types received (mask) */
    __u16 nat_port;
    __u16 pad[3];
    __u8 local[16];
    __u8 nat_addr[16];
    char comm[PT_COMM_LEN];
};

/* The process that created a UDP or ICMP socket (value of `flow_socks`, by
 * socket cookie, until the socket is released). */
struct pt_flow_owner {
    __u32 pid;
    __u32 pad;
    char comm[PT_COMM_LEN];
};

#endif
