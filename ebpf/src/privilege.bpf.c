// SPDX-License-Identifier: GPL-2.0
/* Privilege and capability events.
 *
 * - Each traced syscall has an entry and an exit program, in two forms the
 *   loader chooses between: fentry/fexit on the syscall's entry wrappers (no
 *   cost to any other syscall; used when the kernel lets all of them attach),
 *   or per-syscall tracepoints (syscalls/sys_enter_X + sys_exit_X, never
 *   raw_syscalls: no program runs for an untraced syscall, but the kernel
 *   sends every syscall of every task through its tracing entry path while any
 *   syscall tracepoint is enabled, a per-task work flag set for all tasks:
 *   getpid() costs 8-33 ns more, BENCHMARKS.md). The entry stores the caller's
 *   credentials and arguments per thread; the exit sends one record with the
 *   result, so refused attempts are recorded too.
 * - tp_btf/cap_capable (kernels that have it): every capability check is counted
 *   in the cap_usage map per (cgroup, capability); refused checks are also sent
 *   as records, at most CAP_ROWS_PER_SEC per key and second (the rest counted).
 *   The kernel's own CAP_SYS_ADMIN probe on every memory accounting
 *   (security_vm_enough_memory_mm, a "noaudit" check that no program asked for)
 *   is skipped, by the call site userspace writes into `noaudit_sites`.
 * Records the ring buffer or a map cannot take are counted in `drops`. */
/* The ring buffer's size (common.h wakes the reader at an eighth of it). */
#define PT_RING_BYTES (2 << 20)

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "events.h"
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

#define CAP_SYS_ADMIN 21
#define CAP_ROWS_PER_SEC 8
#define NSEC_PER_SEC 1000000000ULL
/* bpf(2) commands worth recording: loading and attaching programs. */
#define BPF_CMD_PROG_LOAD 5
#define BPF_CMD_PROG_ATTACH 8
#define BPF_CMD_RAW_TRACEPOINT_OPEN 17
#define BPF_CMD_LINK_CREATE 28
/* socket(2): the sockets that read or craft raw traffic. */
#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define SOCK_RAW 3
#define SOCK_PACKET 10
#define SOCK_TYPE_MASK 0xf

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    /* ~12k records without strings: privilege events are rare, refused
     * capability checks are rate-limited (the net and process rings are 8 MiB). */
    __uint(max_entries, PT_RING_BYTES);
} events SEC(".maps");

const struct pt_priv_event *unused_priv_event __attribute__((unused));
const struct pt_cap_event *unused_cap_event __attribute__((unused));
const struct pt_cap_key *unused_cap_key __attribute__((unused));
const struct pt_cap_val *unused_cap_val __attribute__((unused));

/* [lo, hi) address ranges of kernel functions whose CAP_SYS_ADMIN checks are
 * probes, not uses (set by userspace from /proc/kallsyms; 0 = none). */
const volatile __u64 noaudit_sites[4] = {};

/* A syscall between its entry and exit, per thread. */
struct pending {
    __u32 op;
    __u32 uid;
    __u32 euid;
    __u32 gid;
    __u32 egid;
    __u32 pad;
    __u64 time_ns;
    __u64 cgroup_id;
    __u64 cap_effective;
    __u64 args[6];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64); /* pid_tgid */
    __type(value, struct pending);
} pending SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct pt_priv_event);
} priv_scratch SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, struct pt_cap_key);
    __type(value, struct pt_cap_val);
} cap_usage SEC(".maps");

/* A traced syscall's entry: the caller's credentials before the call and its
 * arguments, kept per thread until the exit. */
static __always_inline int enter_common(__u32 op, const __u64 *args)
{
    if (op == PT_PRIV_BPF) {
        long cmd = args[0];
        if (cmd != BPF_CMD_PROG_LOAD && cmd != BPF_CMD_PROG_ATTACH && cmd != BPF_CMD_RAW_TRACEPOINT_OPEN && cmd != BPF_CMD_LINK_CREATE)
            return 0; /* map operations and queries: not a privilege event */
    }
    if (op == PT_PRIV_SOCKET) {
        /* Raw IP, packet and SOCK_PACKET sockets only: not TCP, UDP, local
         * sockets, nor netlink's SOCK_RAW (how `ip` and every resolver talk to
         * the kernel). */
        __u64 family = args[0], type = args[1] & SOCK_TYPE_MASK;
        int raw_ip = (family == AF_INET || family == AF_INET6) && type == SOCK_RAW;
        if (!raw_ip && family != AF_PACKET && type != SOCK_PACKET)
            return 0;
    }
    struct pending p = {};
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    p.op = op;
    p.uid = BPF_CORE_READ(task, cred, uid.val);
    p.euid = BPF_CORE_READ(task, cred, euid.val);
    p.gid = BPF_CORE_READ(task, cred, gid.val);
    p.egid = BPF_CORE_READ(task, cred, egid.val);
    const struct cred *cred = BPF_CORE_READ(task, cred);
    bpf_core_read(&p.cap_effective, sizeof(p.cap_effective), &cred->cap_effective);
    p.time_ns = bpf_ktime_get_boot_ns();
    p.cgroup_id = bpf_get_current_cgroup_id();
    for (int i = 0; i < 6; i++)
        p.args[i] = args[i];
    __u64 id = bpf_get_current_pid_tgid();
    if (bpf_map_update_elem(&pending, &id, &p, BPF_ANY) != 0)
        count_drop(PT_DROP_PRIV_PENDING_FULL, p.cgroup_id);
    return 0;
}

static __always_inline int on_enter(struct trace_event_raw_sys_enter *ctx, __u32 op, int nargs)
{
    __u64 a[6] = {};
    /* Constant offsets only: the verifier refuses a computed ctx pointer, and a
     * syscall's tracepoint context holds only its own arguments. */
    if (nargs > 0) a[0] = ctx->args[0];
    if (nargs > 1) a[1] = ctx->args[1];
    if (nargs > 2) a[2] = ctx->args[2];
    if (nargs > 3) a[3] = ctx->args[3];
    if (nargs > 4) a[4] = ctx->args[4];
    if (nargs > 5) a[5] = ctx->args[5];
    return enter_common(op, a);
}

static __always_inline void user_str(struct pt_priv_event *e, int i, __u64 uptr)
{
    if (!uptr)
        return;
    long n = bpf_probe_read_user_str(e->str[i], PT_PRIV_STR_MAX, (const void *)uptr);
    e->str_len[i] = n > 0 ? (__u16)n : 0;
}

/* Name of the file behind descriptor `fd` of the current task. */
static __always_inline void fd_name(struct pt_priv_event *e, int i, __u64 fd)
{
    struct file *f = pt_fd_file(fd);
    if (!f)
        return;
    const unsigned char *name = BPF_CORE_READ(f, f_path.dentry, d_name.name);
    long n = bpf_probe_read_kernel_str(e->str[i], PT_PRIV_STR_MAX, name);
    e->str_len[i] = n > 0 ? (__u16)n : 0;
}

static __always_inline int exit_common(long ret, __u32 op)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct pending *p = bpf_map_lookup_elem(&pending, &id);
    if (!p)
        return 0;
    if (p->op != op) {
        /* An entry whose exit never came (e.g. a thread that exec'd). */
        bpf_map_delete_elem(&pending, &id);
        return 0;
    }
    __u32 zero = 0;
    struct pt_priv_event *e = bpf_map_lookup_elem(&priv_scratch, &zero);
    if (!e) {
        bpf_map_delete_elem(&pending, &id);
        return 0;
    }
    e->kind = PT_KIND_PRIV;
    e->op = op;
    e->pid = id >> 32;
    e->tid = (__u32)id;
    e->uid = p->uid;
    e->euid = p->euid;
    e->gid = p->gid;
    e->egid = p->egid;
    e->ret = ret;
    e->time_ns = p->time_ns;
    e->cgroup_id = p->cgroup_id;
    e->cap_effective = p->cap_effective;
    for (int i = 0; i < 6; i++)
        e->args[i] = p->args[i];
    e->extra[0] = e->extra[1] = e->extra[2] = 0;
    e->str_len[0] = e->str_len[1] = e->str_len[2] = 0;
    e->reserved = 0;
    e->str[0][0] = e->str[1][0] = e->str[2][0] = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    switch (op) {
    case PT_PRIV_MOUNT:
        user_str(e, 0, p->args[0]);
        user_str(e, 1, p->args[1]);
        user_str(e, 2, p->args[2]);
        break;
    case PT_PRIV_UMOUNT:
        user_str(e, 1, p->args[0]);
        break;
    case PT_PRIV_MEMFD_CREATE:
        user_str(e, 0, p->args[0]);
        break;
    case PT_PRIV_INIT_MODULE:
        user_str(e, 0, p->args[2]);
        break;
    case PT_PRIV_FINIT_MODULE:
        fd_name(e, 0, p->args[0]);
        break;
    case PT_PRIV_CAPSET: {
        /* struct __user_cap_data_struct[2]: low and high 32 bits of each set */
        __u32 d[6] = {};
        if (p->args[1] && bpf_probe_read_user(d, sizeof(d), (const void *)p->args[1]) == 0) {
            e->extra[0] = (__u64)d[0] | ((__u64)d[3] << 32);
            e->extra[1] = (__u64)d[1] | ((__u64)d[4] << 32);
            e->extra[2] = (__u64)d[2] | ((__u64)d[5] << 32);
        }
        break;
    }
    case PT_PRIV_BPF: {
        /* PROG_LOAD: union bpf_attr starts with prog_type; LINK_CREATE and
         * PROG_ATTACH: attach_type at byte 8. */
        __u32 v = 0;
        __u64 off = p->args[0] == BPF_CMD_PROG_LOAD ? 0 : 8;
        if (p->args[0] != BPF_CMD_RAW_TRACEPOINT_OPEN && p->args[1])
            bpf_probe_read_user(&v, sizeof(v), (const void *)(p->args[1] + off));
        e->extra[0] = v;
        break;
    }
    }
    bpf_map_delete_elem(&pending, &id);
    /* Most calls carry no string: send the record without the string slots. */
    __u64 size = (e->str_len[0] | e->str_len[1] | e->str_len[2]) ? sizeof(*e) : __builtin_offsetof(struct pt_priv_event, str);
    if (bpf_ringbuf_output(&events, e, size, pt_submit_flags(&events)) != 0)
        count_drop(PT_DROP_PRIV_RING, e->cgroup_id);
    return 0;
}

static __always_inline int on_exit(struct trace_event_raw_sys_exit *ctx, __u32 op)
{
    return exit_common(ctx->ret, op);
}

/* Tracepoint mode (every kernel): syscalls/sys_enter_X + sys_exit_X.
 *
 * fentry mode (kernels where fentry/fexit attach; not the 6.18 host of the
 * tests): the same entry/exit pair on the syscall's x86-64 wrapper
 * __x64_sys_X(regs), its 32-bit ones __ia32_sys_X (and the 16-bit-id variants,
 * and compat ptrace), with the arguments from the caller's registers. No
 * syscall tracepoint is enabled then, so untraced syscalls pay nothing; the
 * loader uses this mode only when every one of these attaches. */
#define PRIV_SYSCALL(name, op, nargs)                                           \
    SEC("tracepoint/syscalls/sys_enter_" #name)                                 \
    int enter_##name(struct trace_event_raw_sys_enter *ctx) { return on_enter(ctx, op, nargs); } \
    SEC("tracepoint/syscalls/sys_exit_" #name)                                  \
    int exit_##name(struct trace_event_raw_sys_exit *ctx) { return on_exit(ctx, op); } \
    SEC("fentry/__x64_sys_" #name)                                             \
    int BPF_PROG(fentry_##name, struct pt_regs *regs)                           \
    {                                                                           \
        __u64 a[6] = { BPF_CORE_READ(regs, di), BPF_CORE_READ(regs, si), BPF_CORE_READ(regs, dx), \
                       BPF_CORE_READ(regs, r10), BPF_CORE_READ(regs, r8), BPF_CORE_READ(regs, r9) }; \
        return enter_common(op, a);                                             \
    }                                                                           \
    SEC("fexit/__x64_sys_" #name)                                              \
    int BPF_PROG(fexit_##name, struct pt_regs *regs, long ret) { return exit_common(ret, op); }

/* The 32-bit entry (int 0x80, sysenter) of the same syscall: arguments in
 * ebx, ecx, edx, esi, edi, ebp (zero-extended). `id16`: the 16-bit-id variant,
 * whose -1 ("unchanged") is 0xffff. */
static __always_inline __u64 ia32_arg(__u64 v, int id16)
{
    v &= 0xffffffffULL;
    if (id16) {
        v &= 0xffff;
        if (v == 0xffff)
            v = 0xffffffffULL;
    }
    return v;
}

#define PRIV_SYSCALL32(fn, prog, op, id16)                                      \
    SEC("fentry/" fn)                                                           \
    int BPF_PROG(fentry32_##prog, struct pt_regs *regs)                         \
    {                                                                           \
        __u64 a[6] = { ia32_arg(BPF_CORE_READ(regs, bx), id16), ia32_arg(BPF_CORE_READ(regs, cx), id16), \
                       ia32_arg(BPF_CORE_READ(regs, dx), id16), ia32_arg(BPF_CORE_READ(regs, si), 0), \
                       ia32_arg(BPF_CORE_READ(regs, di), 0), ia32_arg(BPF_CORE_READ(regs, bp), 0) }; \
        return enter_common(op, a);                                             \
    }                                                                           \
    SEC("fexit/" fn)                                                            \
    int BPF_PROG(fexit32_##prog, struct pt_regs *regs, long ret) { return exit_common(ret, op); }

/* Every program of every syscall of PT_PRIV_SYSCALLS (events.h): the
 * tracepoint pair, the x86-64 fentry pair, and the fentry pairs of its 32-bit
 * entries as its PT_IA32_* kind says. */
#define PRIV_IA32_PT_IA32(name, op) PRIV_SYSCALL32("__ia32_sys_" #name, name, op, 0)
#define PRIV_IA32_PT_IA32_ID16(name, op) \
    PRIV_SYSCALL32("__ia32_sys_" #name, name, op, 0) PRIV_SYSCALL32("__ia32_sys_" #name "16", name##16, op, 1)
#define PRIV_IA32_PT_IA32_COMPAT(name, op) PRIV_SYSCALL32("__ia32_compat_sys_" #name, name, op, 0)
#define PRIV_PROGRAMS(name, op, nargs, ia32) PRIV_SYSCALL(name, op, nargs) PRIV_IA32_##ia32(name, op)

PT_PRIV_SYSCALLS(PRIV_PROGRAMS)

static __always_inline int noaudit_call_site(void *ctx)
{
    if (!noaudit_sites[0])
        return 0;
    __u64 ips[8] = {};
    long n = bpf_get_stack(ctx, ips, sizeof(ips), 0);
    if (n <= 0)
        return 0;
    for (int i = 0; i < 8; i++) {
        __u64 ip = ips[i];
        if ((ip >= noaudit_sites[0] && ip < noaudit_sites[1]) || (noaudit_sites[2] && ip >= noaudit_sites[2] && ip < noaudit_sites[3]))
            return 1;
    }
    return 0;
}

SEC("tp_btf/cap_capable")
int BPF_PROG(cap_check, const struct cred *cred, struct user_namespace *target_ns, const struct user_namespace *capable_ns, int cap, int ret)
{
    if (cap == CAP_SYS_ADMIN && noaudit_call_site(ctx))
        return 0;
    __u64 now = bpf_ktime_get_boot_ns();
    struct pt_cap_key key = { .cgroup_id = bpf_get_current_cgroup_id(), .cap = (__u32)cap, .pad = 0 };
    struct pt_cap_val *v = bpf_map_lookup_elem(&cap_usage, &key);
    if (!v) {
        struct pt_cap_val init = { .first_ns = now, .last_ns = now, .window_ns = now };
        if (bpf_map_update_elem(&cap_usage, &key, &init, BPF_NOEXIST) != 0 && bpf_map_lookup_elem(&cap_usage, &key) == NULL) {
            count_drop(PT_DROP_CAP_MAP_FULL, key.cgroup_id); /* this check is not counted */
            return 0;
        }
        v = bpf_map_lookup_elem(&cap_usage, &key);
        if (!v)
            return 0;
    }
    v->last_ns = now;
    if (ret == 0) {
        __sync_fetch_and_add(&v->granted, 1);
        return 0;
    }
    __sync_fetch_and_add(&v->denied, 1);
    if (now - v->window_ns >= NSEC_PER_SEC) {
        v->window_ns = now;
        v->window_rows = 0;
    }
    if (v->window_rows >= CAP_ROWS_PER_SEC) {
        __sync_fetch_and_add(&v->denied_unlogged, 1);
        return 0;
    }
    v->window_rows++;
    struct pt_cap_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count_drop(PT_DROP_CAP_RING, key.cgroup_id);
        __sync_fetch_and_add(&v->denied_unlogged, 1);
        return 0;
    }
    __u64 id = bpf_get_current_pid_tgid();
    e->kind = PT_KIND_CAP;
    e->cap = (__u32)cap;
    e->pid = id >> 32;
    e->tid = (__u32)id;
    e->ret = ret;
    e->uid = BPF_CORE_READ(cred, uid.val);
    e->euid = BPF_CORE_READ(cred, euid.val);
    e->gid = BPF_CORE_READ(cred, gid.val);
    e->egid = BPF_CORE_READ(cred, egid.val);
    e->reserved = 0;
    e->cap_effective = 0;
    bpf_core_read(&e->cap_effective, sizeof(e->cap_effective), &cred->cap_effective);
    e->time_ns = now;
    e->cgroup_id = key.cgroup_id;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    bpf_ringbuf_submit(e, pt_submit_flags(&events));
    return 0;
}
