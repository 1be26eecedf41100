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

/* Bytes of records pooled in a ring buffer before the reader is woken: an
 * eighth of the buffer (PT_RING_BYTES, defined by each object before this file),
 * so seven eighths are still free when the reader is woken. Below it the reader
 * finds them at its poll timeout (recorder/src/run.rs READER_POLL_MS and
 * READER_POLL_BUSY_MS): a trickle of events costs no wakeup per record, and a
 * storm wakes the reader at most every PT_WAKEUP_BYTES. (At 256 KiB for every
 * buffer a 50,000 connections/s storm woke it 35 times a second, and each pass
 * woke the pipeline too.) */
#ifndef PT_RING_BYTES
#error "define PT_RING_BYTES (the ring buffer's size) before including common.h"
#endif
#define PT_WAKEUP_BYTES (PT_RING_BYTES / 8)
#define pt_submit_flags(rb) \
    (bpf_ringbuf_query((rb), BPF_RB_AVAIL_DATA) >= PT_WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP)

#endif
