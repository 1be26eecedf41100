/* Shared by every podtrail BPF object: the per-CPU drop counter that userspace
 * turns into `loss` rows. Each object has its own instance (maps are per object). */
#ifndef PODTRAIL_COMMON_H
#define PODTRAIL_COMMON_H

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} drops SEC(".maps");

/* Count one record the ring buffer could not take. */
static __always_inline void count_drop(void)
{
    __u32 zero = 0;
    __u64 *n = bpf_map_lookup_elem(&drops, &zero);
    if (n)
        __sync_fetch_and_add(n, 1);
}

#endif
