/* The one definition of every event the kernel programs send to podtraild.
 * Rust mirrors these in ebpf/src/lib.rs (#[repr(C)]); a test checks each
 * mirror's size and field offsets against the BTF of the compiled object.
 * Kind numbers are never reused (retired ones stay listed as reserved). */
#ifndef PODTRAIL_EVENTS_H
#define PODTRAIL_EVENTS_H

#define PT_KIND_EXEC 1
#define PT_KIND_EXIT 2

#define PT_COMM_LEN 16
#define PT_FILENAME_MAX 512   /* bytes of the exec'd path kept, with its NUL */
#define PT_ARGS_MAX 3584      /* bytes of argv kept (NUL-separated) */

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
    __u32 args_truncated; /* argv was longer than PT_ARGS_MAX */
    __u64 time_ns;        /* CLOCK_BOOTTIME */
    __u64 cgroup_id;
    __u64 cap_effective;
    char comm[PT_COMM_LEN];
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

#endif
