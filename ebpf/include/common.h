/* Shared by every podtrail BPF object: the drop counters that userspace turns
 * into `loss` rows. Each object has its own instance (maps are per object).
 *
 * Every path that loses an event, or stores a row without part of what it
 * should hold, calls count_drop() with its PT_DROP_* reason (events.h): the
 * per-CPU counter of that reason is the exact total; the per-cgroup counter
 * attributes it to the pod. The per-CPU counter is bumped first, so a reader
 * that reads the per-cgroup map before the per-CPU array never sees more
 * attributed than counted. */
#ifndef PODTRAIL_COMMON_H
#define PODTRAIL_COMMON_H

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, PT_DROP_REASONS);
    __type(key, __u32);
    __type(value, __u64);
} drops SEC(".maps");

struct pt_drop_key {
    __u64 cgroup_id;
    __u32 reason;
    __u32 pad;
};

/* Per (cgroup, reason): drops since load. LRU: a cgroup evicted here loses only
 * its attribution (its drops stay in `drops`, counted without a pod). */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, struct pt_drop_key);
    __type(value, __u64);
} drops_by_cgroup SEC(".maps");

const struct pt_drop_key *unused_drop_key __attribute__((unused));

/* Count one event lost (or stored incomplete) for `reason` in `cgroup_id`. */
static __always_inline void count_drop(__u32 reason, __u64 cgroup_id)
{
    __u32 r = reason;
    __u64 *n = bpf_map_lookup_elem(&drops, &r);
    if (n)
        __sync_fetch_and_add(n, 1);
    struct pt_drop_key k = { .cgroup_id = cgroup_id, .reason = reason, .pad = 0 };
    __u64 *c = bpf_map_lookup_elem(&drops_by_cgroup, &k);
    if (c) {
        __sync_fetch_and_add(c, 1);
    } else {
        __u64 one = 1;
        if (bpf_map_update_elem(&drops_by_cgroup, &k, &one, BPF_NOEXIST) != 0) {
            c = bpf_map_lookup_elem(&drops_by_cgroup, &k);
            if (c)
                __sync_fetch_and_add(c, 1);
        }
    }
}

/* The open file behind descriptor `fd` of the current task, or NULL (a
 * descriptor past the table, or above 0xffff: the mask keeps the verifier's
 * bound and never reads a wrong slot). */
static __always_inline struct file *pt_fd_file(__u64 fd)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
    unsigned int max = BPF_CORE_READ(task, files, fdt, max_fds);
    if (!fds || fd >= max || fd > 0xffff)
        return NULL;
    struct file *f = NULL;
    if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd & 0xffff]) != 0)
        return NULL;
    return f;
}

/* Bytes of records pooled in a ring buffer before the reader is woken: an
 * eighth of the buffer (PT_RING_BYTES, defined by each object before this file),
 * so seven eighths are still free when the reader is woken. Below it the reader
 * finds them at its poll timeout (recorder/src/run.rs READER_POLL_MS and
 * READER_POLL_BUSY_MS): a trickle of events costs no wakeup per record, and a
 * storm wakes the reader at most every PT_WAKEUP_BYTES (BENCHMARKS.md). */
#ifndef PT_RING_BYTES
#error "define PT_RING_BYTES (the ring buffer's size) before including common.h"
#endif
#define PT_WAKEUP_BYTES (PT_RING_BYTES / 8)
#define pt_submit_flags(rb) \
    (bpf_ringbuf_query((rb), BPF_RB_AVAIL_DATA) >= PT_WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP)

#endif
