// SPDX-License-Identifier: GPL-2.0
/* Process lifecycle: fork, exec and exit, from BTF-enabled tracepoints (tp_btf).
 * No kprobes, fentry or LSM: those do not load on every kernel podtrail runs on.
 * Every record that cannot be reserved in the ring buffer bumps a per-CPU drop
 * counter that userspace turns into `loss` rows: nothing is lost silently. */
/* The ring buffer's size (common.h wakes the reader at an eighth of it). */
#define PT_RING_BYTES (4 << 20)

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "events.h"
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    /* ~8k typical exec records (each counts twice in RSS: the data pages are
     * mapped twice); the reader is woken every PT_WAKEUP_BYTES (512 KiB). */
    __uint(max_entries, PT_RING_BYTES);
} events SEC(".maps");

/* Anchors the record types in the object's BTF (locals alone are not emitted):
 * userspace checks its mirrors against them. */
const struct pt_exec_event *unused_exec_event __attribute__((unused));
const struct pt_exit_event *unused_exit_event __attribute__((unused));
const struct pt_fork_event *unused_fork_event __attribute__((unused));

/* Scratch space: an exec record is too large for the BPF stack. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct pt_exec_event);
} exec_scratch SEC(".maps");

/* Fill e->cwd with the components of p's working directory, leaf first, walking
 * up to p's root and across mounts (struct mount: the mount's parent and where
 * it is mounted). Bounded: PT_CWD_DEPTH steps, components starting in the first
 * half of cwd[]. The offset lives in e->cwd_len (map memory, unknown to the
 * verifier) rather than a register: the two kinds of step then leave the same
 * verifier state, which keeps the walk verifiable (a register offset made it
 * explode past a million instructions). Returns PT_EXEC_CWD_TRUNCATED when the
 * walk stopped short of the root. */
static __always_inline __u32 read_cwd(struct pt_exec_event *e, struct task_struct *p)
{
    struct fs_struct *fs = BPF_CORE_READ(p, fs);
    struct dentry *dentry = BPF_CORE_READ(fs, pwd.dentry);
    struct vfsmount *vfsmnt = BPF_CORE_READ(fs, pwd.mnt);
    struct dentry *root = BPF_CORE_READ(fs, root.dentry);
    struct vfsmount *root_mnt = BPF_CORE_READ(fs, root.mnt);
    e->cwd_len = 0;
    e->reserved = 0;
    for (int i = 0; i < PT_CWD_DEPTH; i++) {
        if (dentry == root && vfsmnt == root_mnt)
            return 0;
        struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
        if (dentry == BPF_CORE_READ(vfsmnt, mnt_root) || dentry == parent) {
            struct mount *mnt = (struct mount *)((void *)vfsmnt - bpf_core_field_offset(struct mount, mnt));
            struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
            if (up == mnt)
                return 0; /* the root of the mount namespace */
            dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
            vfsmnt = (struct vfsmount *)((void *)up + bpf_core_field_offset(struct mount, mnt));
            continue;
        }
        __u32 off = e->cwd_len;
        if (off >= PT_CWD_MAX / 2)
            break;
        const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
        long n = bpf_probe_read_kernel_str(&e->cwd[off & (PT_CWD_MAX / 2 - 1)], PT_CWD_MAX / 2, name);
        if (n <= 0)
            break;
        e->cwd_len = off + n;
        dentry = parent;
    }
    return PT_EXEC_CWD_TRUNCATED;
}

/* Keep in e->env the dynamic loader's variables of the new image's
 * environment (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT): how a library is
 * injected into a program without changing its file. At most PT_ENV_SCAN
 * strings are examined; returns PT_EXEC_ENV_TRUNCATED when some were not, or
 * a variable did not fit. Other variables are read (to find where the next
 * starts) into the argv part of data[], which argv overwrites afterwards: their
 * values are never sent. The offset lives in e->env_len (see read_cwd). */
static __always_inline __u32 read_loader_env(struct pt_exec_event *e, struct task_struct *p)
{
    unsigned long pos = BPF_CORE_READ(p, mm, env_start);
    unsigned long end = BPF_CORE_READ(p, mm, env_end);
    char *skip = e->data + PT_FILENAME_MAX;
    e->env_len = 0;
    for (int i = 0; i < PT_ENV_SCAN; i++) {
        if (pos >= end)
            return 0;
        /* "LD_" then PRELOAD=, LIBRARY_PATH= or AUDIT=: the first 7 bytes decide. */
        char head[8] = {};
        bpf_probe_read_user(head, sizeof(head), (const void *)pos);
        int wanted = head[0] == 'L' && head[1] == 'D' && head[2] == '_' &&
                     ((head[3] == 'P' && head[4] == 'R' && head[5] == 'E' && head[6] == 'L') ||
                      (head[3] == 'L' && head[4] == 'I' && head[5] == 'B' && head[6] == 'R') ||
                      (head[3] == 'A' && head[4] == 'U' && head[5] == 'D' && head[6] == 'I'));
        long n;
        if (wanted) {
            __u32 off = e->env_len;
            if (off >= PT_ENV_MAX / 2)
                return PT_EXEC_ENV_TRUNCATED;
            n = bpf_probe_read_user_str(&e->env[off & (PT_ENV_MAX / 2 - 1)], PT_ENV_MAX / 2, (const void *)pos);
            if (n <= 0 || n == PT_ENV_MAX / 2)
                return PT_EXEC_ENV_TRUNCATED; /* unreadable, or maybe cut */
            e->env_len = off + n;
        } else {
            n = bpf_probe_read_user_str(skip, PT_ARGS_MAX, (const void *)pos);
            if (n <= 0 || n == PT_ARGS_MAX)
                return PT_EXEC_ENV_TRUNCATED; /* unreadable, or longer than we can step over */
        }
        pos += n;
    }
    return pos < end ? PT_EXEC_ENV_TRUNCATED : 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
    __u32 zero = 0;
    struct pt_exec_event *e = bpf_map_lookup_elem(&exec_scratch, &zero);
    if (!e)
        return 0;
    e->kind = PT_KIND_EXEC;
    e->pid = BPF_CORE_READ(p, tgid);
    e->tid = BPF_CORE_READ(p, pid);
    e->ppid = BPF_CORE_READ(p, real_parent, tgid);
    e->uid = BPF_CORE_READ(p, cred, uid.val);
    e->gid = BPF_CORE_READ(p, cred, gid.val);
    e->netns = BPF_CORE_READ(p, nsproxy, net_ns, ns.inum);
    e->time_ns = bpf_ktime_get_boot_ns();
    e->cgroup_id = bpf_get_current_cgroup_id();
    e->cap_effective = 0;
    bpf_core_read(&e->cap_effective, sizeof(e->cap_effective), &p->cred->cap_effective);
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
#ifdef PODTRAIL_BREAK_CORE
    /* tests/vmtest.sh --break-core only: an unguarded read of a field renamed in
     * Linux 5.14 (`state` before), to show how the matrix reports a kernel
     * whose BTF lacks a field. Never in a built object. */
    volatile unsigned int broken = BPF_CORE_READ(p, __state);
    (void)broken;
#endif

    const char *filename = BPF_CORE_READ(bprm, filename);
    long n = bpf_probe_read_kernel_str(e->data, PT_FILENAME_MAX, filename);
    __u32 fn_len = n > 0 ? (__u32)n : 0;
    fn_len &= (PT_FILENAME_MAX - 1) | PT_FILENAME_MAX; /* bounded for the verifier */
    if (fn_len > PT_FILENAME_MAX)
        fn_len = PT_FILENAME_MAX;
    e->filename_len = fn_len;

    /* A file with no link left: a memfd (or a file deleted before its exec).
     * Its own name (`memfd:<name>`) says more than the /dev/fd path given. */
    __u32 flags = read_cwd(e, p);
    flags |= read_loader_env(e, p);
    struct file *file = BPF_CORE_READ(bprm, file);
    e->dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
    e->ino = BPF_CORE_READ(file, f_inode, i_ino);
    if (BPF_CORE_READ(file, f_inode, __i_nlink) == 0) {
        flags |= PT_EXEC_FILELESS;
        const unsigned char *own = BPF_CORE_READ(file, f_path.dentry, d_name.name);
        n = bpf_probe_read_kernel_str(e->data, PT_FILENAME_MAX, own);
        fn_len = n > 0 ? (__u32)n : 0;
        fn_len &= (PT_FILENAME_MAX - 1) | PT_FILENAME_MAX;
        if (fn_len > PT_FILENAME_MAX)
            fn_len = PT_FILENAME_MAX;
        e->filename_len = fn_len;
    }

    unsigned long arg_start = BPF_CORE_READ(p, mm, arg_start);
    unsigned long arg_end = BPF_CORE_READ(p, mm, arg_end);
    __u64 args_len = arg_end > arg_start ? arg_end - arg_start : 0;
    if (args_len > PT_ARGS_MAX)
        flags |= PT_EXEC_ARGS_TRUNCATED;
    e->flags = flags;
    if (args_len > PT_ARGS_MAX)
        args_len = PT_ARGS_MAX;
    if (args_len > 0 && bpf_probe_read_user(e->data + fn_len, args_len, (const void *)arg_start) != 0)
        args_len = 0;
    e->args_len = args_len;

    __u64 size = __builtin_offsetof(struct pt_exec_event, data) + fn_len + args_len;
    if (size > sizeof(*e))
        size = sizeof(*e);
    if (bpf_ringbuf_output(&events, e, size, pt_submit_flags(&events)) != 0)
        count_drop(PT_DROP_EXEC_RING, e->cgroup_id);
    return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_exit, struct task_struct *p)
{
    __u32 pid = BPF_CORE_READ(p, tgid);
    __u32 tid = BPF_CORE_READ(p, pid);
    if (pid != tid)
        return 0; /* a thread, not the process */
    struct pt_exit_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count_drop(PT_DROP_EXIT_RING, bpf_get_current_cgroup_id());
        return 0;
    }
    e->kind = PT_KIND_EXIT;
    e->pid = pid;
    e->tid = tid;
    e->exit_code = BPF_CORE_READ(p, exit_code);
    e->time_ns = bpf_ktime_get_boot_ns();
    e->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    bpf_ringbuf_submit(e, pt_submit_flags(&events));
    return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
    __u32 child_pid = BPF_CORE_READ(child, tgid);
    if (child_pid != (__u32)BPF_CORE_READ(child, pid))
        return 0; /* a new thread, not a new process */
    struct pt_fork_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count_drop(PT_DROP_FORK_RING, bpf_get_current_cgroup_id());
        return 0;
    }
    e->kind = PT_KIND_FORK;
    e->parent_pid = BPF_CORE_READ(parent, tgid);
    e->child_pid = child_pid;
    e->reserved = 0;
    e->time_ns = bpf_ktime_get_boot_ns();
    bpf_ringbuf_submit(e, pt_submit_flags(&events));
    return 0;
}
