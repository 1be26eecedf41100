// SPDX-License-Identifier: GPL-2.0
/* TCP connections: who connected where, as the pod saw it.
 *
 * - cgroup/connect4|6 on the cgroup v2 root: the destination the process asked
 *   for (a Service ClusterIP, before any DNAT) and the process itself, keyed by
 *   socket cookie. Always allows the connect.
 * - tp_btf/net_dev_start_xmit: for DNATed conntrack entries, the original tuple
 *   -> the reply source (the backend really reached).
 * - tp_btf/inet_sock_set_state: connect / accept / fail / close, with the socket's
 *   own cgroup and netns (these transitions often run in softirq, where `current`
 *   is an unrelated task), bytes and duration at close.
 * - tp_btf/tcp_destroy_sock: the close of a socket whose TCP_CLOSE the kernel
 *   did not run sock_state for (see sock_destroy).
 * - Listeners: inet_sock_set_state's LISTEN transitions (listen(2), in the
 *   caller's context) send net_listen records and remember the listener's
 *   process by (netns, port), which an accepted connection's rows then carry;
 *   cgroup/post_bind4|6 sends a record for each bound UDP socket and
 *   cgroup/sock_release one when such a socket goes away.
 * - UDP and ICMP flows: cgroup_skb/egress and cgroup_skb/ingress count each
 *   UDP, ICMP and ICMPv6 packet of a socket in `flows`, by (socket, peer):
 *   packets and bytes each way, first and last packet; podtraild reads the
 *   counters about every 10 s and writes what changed as net_flow rows.
 *   cgroup/sock_create remembers which process created each UDP or ICMP
 *   socket (`flow_socks`), cgroup/sock_release forgets it.
 * - DNS: the same cgroup_skb programs send each UDP or TCP packet
 *   a socket sends to port 53 or receives from port 53, its first
 *   PT_DNS_CAPTURE payload bytes included (podtraild parses and pairs them);
 *   cgroup/sendmsg4|6 and connect4|6 remember which process aimed a UDP
 *   socket at port 53, and where, by socket cookie (`dns_socks`). The
 *   egress program also sends each TCP segment that starts a TLS ClientHello
 *   (the server name of the connection, read by podtraild).
 * No kprobes, fentry or LSM. Every record the ring buffer cannot take, and every
 * row sent without part of its state, is counted (common.h). */
/* The ring buffer's size (common.h wakes the reader at an eighth of it). */
#define PT_RING_BYTES (8 << 20)

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "events.h"
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_FIN_WAIT2 5
#define TCP_TIME_WAIT 6
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LAST_ACK 9
#define TCP_LISTEN 10
#define TCP_CLOSING 11
#define IPPROTO_UDP 17
#define IPPROTO_ICMP 1
#define IPPROTO_ICMPV6 58
#define IPS_DST_NAT (1 << 5)

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, PT_RING_BYTES);
} events SEC(".maps");

/* What connect() asked for, and who asked: by socket cookie, until the
 * connection fails or closes. LRU: a connect() that never reaches SYN_SENT
 * (no route) leaves its entry behind; an evicted entry costs only the owner of
 * a row (counted as PT_DROP_CONN_NO_OWNER), never the row. */
struct connect_info {
    __u8 daddr[16];
    __u16 dport;
    __u16 pad;
    __u32 pid;
    char comm[PT_COMM_LEN];
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, struct connect_info);
} connects SEC(".maps");

/* Each established socket, by socket address: when, the counters then (so the
 * handshake's SYN is not counted as payload), its local port (released before
 * CLOSE), and whether a FIN went each way (a FIN takes one sequence number, which
 * the kernel's byte counters include).
 *
 * A plain hash, not LRU: an LRU map evicts entries before it is full (its free
 * nodes sit on per-CPU lists), and an evicted entry was a close nobody saw.
 * Every established socket passes TCP_CLOSE, where its entry is deleted, so the
 * map holds the sockets established now: 65536 concurrent connections (both
 * ends of a local one count), about 5.5 MiB of kernel memory, preallocated
 * (tracing programs cannot allocate on 5.10). When it is full the connection
 * is still recorded; its close row lacks bytes and duration, counted as
 * PT_DROP_CONN_STATE_FULL. */
struct conn_state {
    __u64 since;
    __u64 acked0;
    __u64 received0;
    __u16 sport;
    __u8 fin_in;
    __u8 fin_out_acked;
    __u8 accepted; /* established by accept: the listener's process owns it */
    __u8 pad[3];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, struct conn_state);
} established SEC(".maps");

/* DNAT seen by conntrack (TCP, and UDP to port 53): original (saddr, daddr,
 * sport, dport) -> reply source. Addresses as in pt_conn_event: IPv4 in the first 4 bytes, the rest 0. */
struct nat_key {
    __u8 saddr[16];
    __u8 daddr[16];
    __u16 sport;
    __u16 dport;
};
struct nat_val {
    __u8 addr[16];
    __u16 port;
    __u16 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct nat_key);
    __type(value, struct nat_val);
} nat SEC(".maps");

/* The process that put each listening TCP socket in LISTEN, by (netns, port):
 * what an accepted connection's rows carry as their process (the kernel
 * establishes them in softirq, where `current` is unrelated). Deleted when that
 * listener closes; with SO_REUSEPORT the newest listener of a port wins. Full
 * (16384 listeners): counted as PT_DROP_LISTEN_MAP_FULL, its connections have
 * no process. podtraild seeds it at start with the listeners already open
 * (sk 0: their close does not delete them; the next listen() on that port
 * replaces them). */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, struct pt_listener_key);
    __type(value, struct pt_listener_owner);
} listeners SEC(".maps");

/* Bound UDP sockets by cookie, until released: only those send an unbind
 * record. Full: counted as PT_DROP_LISTEN_MAP_FULL (the unbind row is missing). */
struct bound_udp {
    __u8 addr[16];
    __u16 port;
    __u16 family;
    __u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct bound_udp);
} udp_bound SEC(".maps");

/* The process that aimed a UDP socket at port 53 (connect() or sendmsg() with
 * an address) and the address it gave, by socket cookie: what the socket's DNS
 * packets carry (cgroup_skb runs where `current` may be unrelated, and sees
 * only the packet's addresses). LRU: cookies are never reused, and an evicted
 * entry costs a row its process and asked address, never the row. */
struct dns_owner {
    __u8 addr[16];
    __u16 port;
    __u16 pad;
    __u32 pid;
    char comm[PT_COMM_LEN];
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct dns_owner);
} dns_socks SEC(".maps");

/* UDP and ICMP flows by (socket, peer): their counters (pt_flow_val). A plain
 * hash allocated as flows come (no 8 MiB preallocated): an LRU map would evict
 * counts nobody read. podtraild deletes a flow once its counts are in rows and
 * its socket is released (or it was idle for 10 minutes). Full: each packet
 * of a flow it cannot take is counted as PT_DROP_FLOW_MAP_FULL. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct pt_flow_key);
    __type(value, struct pt_flow_val);
} flows SEC(".maps");

/* Who created each UDP or ICMP socket (cgroup/sock_create runs in the
 * creator's context; cgroup_skb does not), by cookie, until its release. A
 * plain hash: every socket is released. Full: PT_DROP_FLOW_SOCK_FULL. ICMP
 * packets count only on sockets found here: the kernel's own ICMP (echo
 * replies, errors) goes out on per-namespace sockets no process created. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u64);
    __type(value, struct pt_flow_owner);
} flow_socks SEC(".maps");

const struct pt_conn_event *unused_conn_event __attribute__((unused));
const struct pt_flow_key *unused_flow_key __attribute__((unused));
const struct pt_flow_val *unused_flow_val __attribute__((unused));
const struct pt_flow_owner *unused_flow_owner __attribute__((unused));
const struct pt_dns_event *unused_dns_event __attribute__((unused));
const struct pt_tls_event *unused_tls_event __attribute__((unused));
const struct pt_listener_key *unused_listener_key __attribute__((unused));
const struct pt_listener_owner *unused_listener_owner __attribute__((unused));
const struct pt_listen_event *unused_listen_event __attribute__((unused));

static __always_inline void remember_connect(__u64 cookie, const void *addr, __u32 len, __u16 port_be)
{
    struct connect_info ci = {};
    __builtin_memcpy(ci.daddr, addr, len);
    ci.dport = bpf_ntohs(port_be);
    ci.pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&ci.comm, sizeof(ci.comm));
    bpf_map_update_elem(&connects, &cookie, &ci, BPF_ANY);
}

/* A UDP socket aimed at port 53 by connect() or sendmsg(): remember who and
 * where (dns_socks). user_port is network order. */
static __always_inline void remember_dns(__u64 cookie, const void *addr, __u32 len, __u16 port_be)
{
    struct dns_owner o = {};
    __builtin_memcpy(o.addr, addr, len);
    o.port = bpf_ntohs(port_be);
    o.pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&o.comm, sizeof(o.comm));
    bpf_map_update_elem(&dns_socks, &cookie, &o, BPF_ANY);
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
    __u32 ip = ctx->user_ip4;
    if (ctx->protocol == IPPROTO_TCP)
        remember_connect(bpf_get_socket_cookie(ctx), &ip, 4, (__u16)ctx->user_port);
    else if (ctx->protocol == IPPROTO_UDP && (__u16)ctx->user_port == bpf_htons(53))
        remember_dns(bpf_get_socket_cookie(ctx), &ip, 4, (__u16)ctx->user_port);
    return 1;
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
    __u32 ip6[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
    if (ctx->protocol == IPPROTO_TCP)
        remember_connect(bpf_get_socket_cookie(ctx), ip6, 16, (__u16)ctx->user_port);
    else if (ctx->protocol == IPPROTO_UDP && (__u16)ctx->user_port == bpf_htons(53))
        remember_dns(bpf_get_socket_cookie(ctx), ip6, 16, (__u16)ctx->user_port);
    return 1;
}

/* sendmsg()/sendto() with an address on a UDP socket: only port 53 is kept. */
SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
    if ((__u16)ctx->user_port == bpf_htons(53)) {
        __u32 ip = ctx->user_ip4;
        remember_dns(bpf_get_socket_cookie(ctx), &ip, 4, (__u16)ctx->user_port);
    }
    return 1;
}

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx)
{
    if ((__u16)ctx->user_port == bpf_htons(53)) {
        __u32 ip6[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
        remember_dns(bpf_get_socket_cookie(ctx), ip6, 16, (__u16)ctx->user_port);
    }
    return 1;
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(nat_xmit, struct sk_buff *skb, struct net_device *dev)
{
    /* Every packet sent on any device passes here: the skb is read directly
     * (a tp_btf argument; no helper call), the conntrack entry with one. */
    unsigned long nfct = skb->_nfct;
    struct nf_conn *ct = (struct nf_conn *)(nfct & ~7UL);
    if (!ct)
        return 0;
    unsigned long status = BPF_CORE_READ(ct, status);
    if (!(status & IPS_DST_NAT))
        return 0;
    __u16 l3 = BPF_CORE_READ(ct, tuplehash[0].tuple.src.l3num);
    __u8 proto = BPF_CORE_READ(ct, tuplehash[0].tuple.dst.protonum);
    if ((l3 != AF_INET && l3 != AF_INET6) || (proto != IPPROTO_TCP && proto != IPPROTO_UDP))
        return 0;
    /* TCP connections, UDP flows and DNS answers read it (the port sits at
     * the same place for both). */
    struct nat_key k = {
        .sport = bpf_ntohs(BPF_CORE_READ(ct, tuplehash[0].tuple.src.u.tcp.port)),
        .dport = bpf_ntohs(BPF_CORE_READ(ct, tuplehash[0].tuple.dst.u.tcp.port)),
    };
    struct nat_val v = {
        .port = bpf_ntohs(BPF_CORE_READ(ct, tuplehash[1].tuple.src.u.tcp.port)),
    };
    if (l3 == AF_INET) {
        BPF_CORE_READ_INTO((__u32 *)k.saddr, ct, tuplehash[0].tuple.src.u3.ip);
        BPF_CORE_READ_INTO((__u32 *)k.daddr, ct, tuplehash[0].tuple.dst.u3.ip);
        BPF_CORE_READ_INTO((__u32 *)v.addr, ct, tuplehash[1].tuple.src.u3.ip);
    } else {
        BPF_CORE_READ_INTO(&k.saddr, ct, tuplehash[0].tuple.src.u3.all);
        BPF_CORE_READ_INTO(&k.daddr, ct, tuplehash[0].tuple.dst.u3.all);
        BPF_CORE_READ_INTO(&v.addr, ct, tuplehash[1].tuple.src.u3.all);
    }
    /* Every packet of a DNATed connection passes: a lookup (no lock) finds
     * the entry already there for all but the first. */
    if (!bpf_map_lookup_elem(&nat, &k))
        bpf_map_update_elem(&nat, &k, &v, BPF_NOEXIST);
    return 0;
}

/* struct sock_cgroup_data before Linux 5.15: one u64 holding the cgroup pointer,
 * or net_prio/net_cls data when one of its two low bits is set. */
struct sock_cgroup_data___old {
    __u64 val;
};

/* The cgroup v2 id of the socket's owner (set when the socket was created), or 0
 * when the kernel keeps none for it. */
static __always_inline __u64 sock_cgroup_id(struct sock *sk)
{
    if (bpf_core_field_exists(sk->sk_cgrp_data.cgroup))
        return BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
    struct sock_cgroup_data___old *old = (void *)__builtin_preserve_access_index(&sk->sk_cgrp_data);
    __u64 v = BPF_CORE_READ(old, val);
    if (!v || (v & 3))
        return 0;
    return BPF_CORE_READ((struct cgroup *)v, kn, id);
}

/* Start tracking an established socket: when, its counters now (so the
 * handshake is not counted as payload), its local port. */
static __always_inline void track(struct sock *sk, __u64 key, __u64 now, __u16 sport, __u64 cgroup_id, __u32 event)
{
    struct tcp_sock *tp = (struct tcp_sock *)sk;
    struct conn_state ns = {
        .since = now,
        .acked0 = BPF_CORE_READ(tp, bytes_acked),
        .received0 = BPF_CORE_READ(tp, bytes_received),
        .sport = sport,
        .accepted = event == PT_CONN_ACCEPT,
    };
    if (bpf_map_update_elem(&established, &key, &ns, BPF_ANY) != 0)
        count_drop(PT_DROP_CONN_STATE_FULL, cgroup_id);
}

/* Send one connection record of `sk` (its state `st` when the `established`
 * map holds it) and update the maps for it. */
static __always_inline int emit(struct sock *sk, __u32 event, struct conn_state *st, int oldstate, __u64 now)
{
    __u64 key = (__u64)sk;
    struct tcp_sock *tp = (struct tcp_sock *)sk;
    __u64 cgroup_id = sock_cgroup_id(sk);
    struct pt_conn_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count_drop(PT_DROP_CONN_RING, cgroup_id);
        /* The maps follow the socket whether or not its record fit: a close
         * must not be sent a second time at destroy, and a connection whose
         * connect record was lost still closes with its bytes. */
        __u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
        if (event == PT_CONN_CONNECT || event == PT_CONN_ACCEPT) {
            track(sk, key, now, BPF_CORE_READ(sk, __sk_common.skc_num), cgroup_id, event);
        } else {
            bpf_map_delete_elem(&established, &key);
            if (cookie)
                bpf_map_delete_elem(&connects, &cookie);
        }
        return 0;
    }
    __builtin_memset(e, 0, sizeof(*e));
    e->kind = PT_KIND_CONN;
    e->event = event;
    e->time_ns = now;
    e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
    e->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
    e->cgroup_id = cgroup_id;
    /* Map keys live on the stack: before Linux 5.11 map helpers refuse
     * ring-buffer memory as a key. */
    __u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
    e->cookie = cookie;
    /* The local port: kept in the state (the kernel releases it before
     * CLOSE, zeroing skc_num); without state, inet_sport, which release
     * leaves alone. */
    __u16 sport = BPF_CORE_READ(sk, __sk_common.skc_num);
    if (!sport)
        sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
    e->sport = st ? st->sport : sport;
    e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
    if (e->family == AF_INET) {
        __u32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
        __u32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
        __builtin_memcpy(e->saddr, &s, 4);
        __builtin_memcpy(e->daddr, &d, 4);
    } else {
        BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
        BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
    }
    if (e->cookie) {
        struct connect_info *ci = bpf_map_lookup_elem(&connects, &cookie);
        if (ci) {
            e->flags |= PT_CONN_HAS_OWNER | PT_CONN_HAS_ORIG;
            e->pid = ci->pid;
            __builtin_memcpy(e->comm, ci->comm, sizeof(e->comm));
            __builtin_memcpy(e->orig_daddr, ci->daddr, sizeof(e->orig_daddr));
            e->orig_dport = ci->dport;
        }
    }
    /* The accepting side: the process of the socket that listened on this
     * port in this namespace (at the accept, and still at the close). */
    if (event == PT_CONN_ACCEPT || (event == PT_CONN_CLOSE && st && st->accepted))
        e->flags |= PT_CONN_ACCEPTED;
    if ((e->flags & PT_CONN_ACCEPTED) && !(e->flags & PT_CONN_HAS_OWNER)) {
        struct pt_listener_key lk = { .netns = e->netns, .port = e->sport };
        struct pt_listener_owner *lo = bpf_map_lookup_elem(&listeners, &lk);
        if (lo) {
            e->flags |= PT_CONN_HAS_OWNER | PT_CONN_OWNER_LISTENER;
            e->pid = lo->pid;
            __builtin_memcpy(e->comm, lo->comm, sizeof(e->comm));
        }
    }
    /* The connecting side always went through cgroup/connect4|6 (attached at
     * the root): a connect or fail row without its process is incomplete. */
    if ((event == PT_CONN_CONNECT || event == PT_CONN_FAIL) && !(e->flags & PT_CONN_HAS_OWNER))
        count_drop(PT_DROP_CONN_NO_OWNER, cgroup_id);
    if (event == PT_CONN_CONNECT || event == PT_CONN_CLOSE) {
        struct nat_key k = {};
        __builtin_memcpy(k.saddr, e->saddr, 16);
        __builtin_memcpy(k.daddr, e->daddr, 16);
        k.sport = e->sport;
        k.dport = e->dport;
        struct nat_val *v = bpf_map_lookup_elem(&nat, &k);
        if (v) {
            e->flags |= PT_CONN_HAS_NAT;
            __builtin_memcpy(e->nat_daddr, v->addr, 16);
            e->nat_dport = v->port;
        }
    }
    switch (event) {
    case PT_CONN_CONNECT:
    case PT_CONN_ACCEPT:
        track(sk, key, now, e->sport, cgroup_id, event);
        break;
    case PT_CONN_FAIL:
        e->error = BPF_CORE_READ(sk, sk_err);
        if (e->cookie)
            bpf_map_delete_elem(&connects, &cookie);
        break;
    case PT_CONN_CLOSE: {
        if (e->cookie)
            bpf_map_delete_elem(&connects, &cookie);
        if (!st)
            break;
        /* LAST_ACK -> CLOSE: our FIN was acked unless the close was a reset. */
        __u8 fin_out_acked = st->fin_out_acked;
        if (oldstate == TCP_LAST_ACK && BPF_CORE_READ(tp, snd_una) == BPF_CORE_READ(tp, write_seq))
            fin_out_acked = 1;
        /* FIN_WAIT2 -> CLOSE is the peer's FIN arriving (the socket hands over to
         * its time-wait twin); a FIN_WAIT2 timeout takes the same path, rarely. */
        __u8 fin_in = st->fin_in || oldstate == TCP_FIN_WAIT2;
        __u64 acked = BPF_CORE_READ(tp, bytes_acked) - st->acked0;
        __u64 received = BPF_CORE_READ(tp, bytes_received) - st->received0;
        e->flags |= PT_CONN_HAS_BYTES;
        e->bytes_sent = acked >= fin_out_acked ? acked - fin_out_acked : 0;
        e->bytes_received = received >= fin_in ? received - fin_in : 0;
        e->duration_ns = now - st->since;
        bpf_map_delete_elem(&established, &key);
        break;
    }
    }
    bpf_ringbuf_submit(e, pt_submit_flags(&events));
    return 0;
}

/* Fill the common part of a net_listen record. */
static __always_inline void listen_common(struct pt_listen_event *e, __u32 event, __u64 cgroup_id)
{
    __builtin_memset(e, 0, sizeof(*e));
    e->kind = PT_KIND_LISTEN;
    e->event = event;
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->time_ns = bpf_ktime_get_boot_ns();
    e->cgroup_id = cgroup_id;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
}

/* A TCP socket entering LISTEN (listen(2): `current` is the caller) or leaving
 * it (its close). Remembers or forgets the listener's process, then sends the
 * record. */
static __always_inline int listen_state(struct sock *sk, int start)
{
    __u64 cgroup_id = sock_cgroup_id(sk);
    /* The local port: released before CLOSE (skc_num is then 0), inet_sport
     * stays. */
    __u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);
    if (!port)
        port = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
    struct pt_listener_key lk = { .netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum), .port = port };
    if (start) {
        struct pt_listener_owner o = { .sk = (__u64)sk, .pid = bpf_get_current_pid_tgid() >> 32 };
        bpf_get_current_comm(&o.comm, sizeof(o.comm));
        if (bpf_map_update_elem(&listeners, &lk, &o, BPF_ANY) != 0)
            count_drop(PT_DROP_LISTEN_MAP_FULL, cgroup_id);
    } else {
        struct pt_listener_owner *o = bpf_map_lookup_elem(&listeners, &lk);
        if (o && o->sk == (__u64)sk)
            bpf_map_delete_elem(&listeners, &lk);
    }
    struct pt_listen_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count_drop(PT_DROP_LISTEN_RING, cgroup_id);
        return 0;
    }
    listen_common(e, start ? PT_LISTEN_LISTEN : PT_LISTEN_UNLISTEN, cgroup_id);
    e->protocol = IPPROTO_TCP;
    e->port = port;
    e->netns = lk.netns;
    e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
    e->cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
    if (e->family == AF_INET) {
        __u32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
        __builtin_memcpy(e->addr, &a, 4);
    } else {
        BPF_CORE_READ_INTO(&e->addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
    }
    bpf_ringbuf_submit(e, pt_submit_flags(&events));
    return 0;
}

/* A state a connection leaves for TCP_CLOSE once it was established (not a
 * handshake that failed, not a listener). */
static __always_inline int was_connected(int oldstate)
{
    switch (oldstate) {
    case TCP_ESTABLISHED:
    case TCP_FIN_WAIT1:
    case TCP_FIN_WAIT2:
    case TCP_CLOSE_WAIT:
    case TCP_LAST_ACK:
    case TCP_CLOSING:
        return 1;
    }
    return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(sock_state, struct sock *sk, int oldstate, int newstate)
{
    if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
        return 0;
    /* A listener opening or closing. (An accepted socket is cloned from its
     * listener, state included: its first transition, LISTEN -> SYN_RECV, is
     * the connection's, not the listener's.) */
    if (newstate == TCP_LISTEN || (oldstate == TCP_LISTEN && newstate == TCP_CLOSE))
        return listen_state(sk, newstate == TCP_LISTEN);
    __u32 event;
    __u64 key = (__u64)sk;
    __u64 now = bpf_ktime_get_boot_ns();
    struct conn_state *st = bpf_map_lookup_elem(&established, &key);
    if (st && (newstate == TCP_SYN_SENT || newstate == TCP_SYN_RECV)) {
        /* A new socket at a freed socket's address whose close we missed. */
        bpf_map_delete_elem(&established, &key);
        st = 0;
    }
    if (st && newstate != TCP_CLOSE && newstate != TCP_ESTABLISHED) {
        /* Closing handshake: note which FINs were exchanged. */
        if (newstate == TCP_CLOSE_WAIT || newstate == TCP_CLOSING || newstate == TCP_TIME_WAIT)
            st->fin_in = 1;
        if (newstate == TCP_FIN_WAIT2 || (oldstate == TCP_CLOSING && newstate == TCP_TIME_WAIT))
            st->fin_out_acked = 1;
        return 0;
    }
    if (newstate == TCP_ESTABLISHED && oldstate == TCP_SYN_SENT)
        event = PT_CONN_CONNECT;
    else if (newstate == TCP_ESTABLISHED && oldstate == TCP_SYN_RECV)
        event = PT_CONN_ACCEPT;
    else if (newstate == TCP_CLOSE && oldstate == TCP_SYN_SENT)
        event = PT_CONN_FAIL;
    else if (newstate == TCP_CLOSE && (st || was_connected(oldstate)))
        /* Without its state (a full map, or a connection older than the
         * recorder) the close is recorded all the same, without bytes. */
        event = PT_CONN_CLOSE;
    else
        return 0;

    return emit(sk, event, st, oldstate, now);
}

/* A second chance for a close the kernel skipped: a tracing program is not run
 * again on a CPU where it is already running (a softirq changing another
 * socket's state while sock_state runs), so a socket's TCP_CLOSE can go unseen
 * (the kernel counts it in the program's recursion_misses, which userspace
 * records as loss). Its state is then still in `established` when the socket
 * is destroyed: the close is sent from here, with its bytes. Optional: the
 * misses are counted all the same where this tracepoint is absent. */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(sock_destroy, struct sock *sk)
{
    __u64 key = (__u64)sk;
    struct conn_state *st = bpf_map_lookup_elem(&established, &key);
    if (!st)
        return 0;
    return emit(sk, PT_CONN_CLOSE, st, TCP_CLOSE, bpf_ktime_get_boot_ns());
}

/* A UDP socket bound by bind(2) (after the kernel accepted the address; an
 * automatic bind at the first send does not pass here). Always allows it. */
static __always_inline int udp_bound_now(struct bpf_sock *ctx, const __u8 *addr, __u32 len)
{
    if (ctx->protocol != IPPROTO_UDP)
        return 1;
    __u64 cgroup_id = bpf_get_current_cgroup_id();
    __u64 cookie = bpf_get_socket_cookie(ctx);
    struct bound_udp b = { .port = (__u16)ctx->src_port, .family = (__u16)ctx->family };
    __builtin_memcpy(b.addr, addr, len);
    if (bpf_map_update_elem(&udp_bound, &cookie, &b, BPF_ANY) != 0)
        count_drop(PT_DROP_LISTEN_MAP_FULL, cgroup_id);
    struct pt_listen_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count_drop(PT_DROP_LISTEN_RING, cgroup_id);
        return 1;
    }
    listen_common(e, PT_LISTEN_BIND, cgroup_id);
    e->protocol = IPPROTO_UDP;
    e->family = ctx->family;
    e->port = (__u16)ctx->src_port; /* host order in struct bpf_sock */
    e->cookie = cookie;
    __builtin_memcpy(e->addr, b.addr, 16);
    bpf_ringbuf_submit(e, pt_submit_flags(&events));
    return 1;
}

SEC("cgroup/post_bind4")
int post_bind4(struct bpf_sock *ctx)
{
    __u32 a = ctx->src_ip4;
    return udp_bound_now(ctx, (const __u8 *)&a, 4);
}

SEC("cgroup/post_bind6")
int post_bind6(struct bpf_sock *ctx)
{
    __u32 a[4] = {ctx->src_ip6[0], ctx->src_ip6[1], ctx->src_ip6[2], ctx->src_ip6[3]};
    return udp_bound_now(ctx, (const __u8 *)a, 16);
}

/* A UDP or ICMP socket created by a process (socket(2), in its context):
 * remember the process for the socket's flows. Always allows it. */
SEC("cgroup/sock_create")
int flow_sock(struct bpf_sock *ctx)
{
    if (ctx->protocol != IPPROTO_UDP && ctx->protocol != IPPROTO_ICMP && ctx->protocol != IPPROTO_ICMPV6)
        return 1;
    __u64 cookie = bpf_get_socket_cookie(ctx);
    struct pt_flow_owner o = { .pid = bpf_get_current_pid_tgid() >> 32 };
    bpf_get_current_comm(&o.comm, sizeof(o.comm));
    if (bpf_map_update_elem(&flow_socks, &cookie, &o, BPF_ANY) != 0)
        count_drop(PT_DROP_FLOW_SOCK_FULL, bpf_get_current_cgroup_id());
    return 1;
}

/* The release of a socket: a UDP or ICMP socket's process is forgotten (its
 * flows stay in `flows` until podtraild has read them: the missing owner
 * tells podtraild the socket is gone); a socket post_bind recorded as bound
 * sends its unbind record. */
SEC("cgroup/sock_release")
int sock_release(struct bpf_sock *ctx)
{
    if (ctx->protocol != IPPROTO_UDP && ctx->protocol != IPPROTO_ICMP && ctx->protocol != IPPROTO_ICMPV6)
        return 1;
    __u64 cookie = bpf_get_socket_cookie(ctx);
    bpf_map_delete_elem(&flow_socks, &cookie);
    if (ctx->protocol != IPPROTO_UDP)
        return 1;
    struct bound_udp *b = bpf_map_lookup_elem(&udp_bound, &cookie);
    if (!b)
        return 1;
    __u64 cgroup_id = bpf_get_current_cgroup_id();
    struct pt_listen_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count_drop(PT_DROP_LISTEN_RING, cgroup_id);
    } else {
        listen_common(e, PT_LISTEN_UNBIND, cgroup_id);
        e->protocol = IPPROTO_UDP;
        e->family = b->family;
        e->port = b->port;
        e->cookie = cookie;
        __builtin_memcpy(e->addr, b->addr, 16);
        bpf_ringbuf_submit(e, pt_submit_flags(&events));
    }
    bpf_map_delete_elem(&udp_bound, &cookie);
    return 1;
}


/* ---- DNS ---- */

/* A packet's addresses, ports and where its transport payload starts, from
 * the network header cgroup_skb programs see at offset 0. Returns 0 for a
 * packet that is not UDP, TCP, ICMP or ICMPv6 over IPv4/IPv6 (extension
 * headers and non-first fragments are skipped). */
struct pkt {
    __u8 saddr[16];
    __u8 daddr[16];
    __u16 sport;
    __u16 dport;
    __u32 payload_off; /* UDP, TCP: the data; ICMP: the ICMP header */
    __u16 family;
    __u8 protocol;
    __u8 icmp_type;
};

static __always_inline int parse_pkt(struct __sk_buff *skb, struct pkt *p)
{
    __u8 vhl;
    __u32 l4;
    if (bpf_skb_load_bytes(skb, 0, &vhl, 1))
        return 0;
    if ((vhl >> 4) == 4) {
        struct iphdr ip;
        if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
            return 0;
        /* A later fragment has no transport header. */
        if (ip.frag_off & bpf_htons(0x1fff))
            return 0;
        p->family = AF_INET;
        p->protocol = ip.protocol;
        __builtin_memcpy(p->saddr, &ip.saddr, 4);
        __builtin_memcpy(p->daddr, &ip.daddr, 4);
        l4 = (vhl & 0xf) * 4;
    } else if ((vhl >> 4) == 6) {
        struct ipv6hdr ip6;
        if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
            return 0;
        p->family = AF_INET6;
        p->protocol = ip6.nexthdr;
        __builtin_memcpy(p->saddr, &ip6.saddr, 16);
        __builtin_memcpy(p->daddr, &ip6.daddr, 16);
        l4 = sizeof(ip6);
    } else {
        return 0;
    }
    __u16 ports[2] = {};
    if (p->protocol == IPPROTO_ICMP || p->protocol == IPPROTO_ICMPV6) {
        if (bpf_skb_load_bytes(skb, l4, &p->icmp_type, 1))
            return 0;
        p->payload_off = l4;
    } else if (p->protocol == IPPROTO_UDP) {
        if (bpf_skb_load_bytes(skb, l4, ports, 4))
            return 0;
        p->payload_off = l4 + 8;
    } else if (p->protocol == IPPROTO_TCP) {
        __u8 doff;
        if (bpf_skb_load_bytes(skb, l4, ports, 4) || bpf_skb_load_bytes(skb, l4 + 12, &doff, 1))
            return 0;
        p->payload_off = l4 + (doff >> 4) * 4;
    } else {
        return 0;
    }
    p->sport = bpf_ntohs(ports[0]);
    p->dport = bpf_ntohs(ports[1]);
    return 1;
}

/* parse_pkt from the linear data, without a helper call (every UDP and ICMP
 * packet passes here): 1 parsed, 0 not a packet parse_pkt would take, -1 its
 * headers are not in the linear data (the caller then uses parse_pkt). */
static __always_inline int parse_pkt_direct(struct __sk_buff *skb, struct pkt *p)
{
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    __u8 *b = data;
    __u32 l4;
    if (b + 1 > (__u8 *)end)
        return -1;
    if ((b[0] >> 4) == 4) {
        struct iphdr *ip = data;
        if ((void *)(ip + 1) > end)
            return -1;
        if (ip->frag_off & bpf_htons(0x1fff))
            return 0;
        l4 = (b[0] & 0xf) * 4;
        if (l4 < sizeof(*ip) || l4 > 60)
            return 0;
        p->family = AF_INET;
        p->protocol = ip->protocol;
        __builtin_memcpy(p->saddr, &ip->saddr, 4);
        __builtin_memcpy(p->daddr, &ip->daddr, 4);
    } else if ((b[0] >> 4) == 6) {
        struct ipv6hdr *ip6 = data;
        if ((void *)(ip6 + 1) > end)
            return -1;
        p->family = AF_INET6;
        p->protocol = ip6->nexthdr;
        __builtin_memcpy(p->saddr, &ip6->saddr, 16);
        __builtin_memcpy(p->daddr, &ip6->daddr, 16);
        l4 = sizeof(*ip6);
    } else {
        return 0;
    }
    __u8 *t = (__u8 *)data + l4;
    if (p->protocol == IPPROTO_ICMP || p->protocol == IPPROTO_ICMPV6) {
        if (t + 1 > (__u8 *)end)
            return -1;
        p->icmp_type = t[0];
        p->payload_off = l4;
        return 1;
    }
    if (p->protocol != IPPROTO_UDP)
        return -1; /* TCP: parse_pkt (DNS and ClientHellos only come here) */
    if (t + 8 > (__u8 *)end)
        return -1;
    p->sport = (__u16)t[0] << 8 | t[1];
    p->dport = (__u16)t[2] << 8 | t[3];
    p->payload_off = l4 + 8;
    return 1;
}

/* Whether a packet is wanted: UDP or ICMP (a flow), DNS (to port 53 on
 * egress, from port 53 on ingress) or, on egress, a TCP segment starting a
 * TLS ClientHello: 1 yes, 0 no, -1 its headers are not in the linear data
 * (the caller then reads them with helpers). Direct packet reads, no helper
 * call: every packet of every socket passes here, and most are TCP segments
 * that are neither. */
static __always_inline int maybe_wanted(struct __sk_buff *skb, __u8 direction)
{
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    __u8 *b = data;
    __u32 l4;
    __u8 proto;
    if (b + 1 > (__u8 *)end)
        return -1;
    if ((b[0] >> 4) == 4) {
        struct iphdr *ip = data;
        if ((void *)(ip + 1) > end)
            return -1;
        if (ip->frag_off & bpf_htons(0x1fff))
            return 0;
        proto = ip->protocol;
        l4 = (b[0] & 0xf) * 4;
        if (l4 < sizeof(*ip))
            return 0;
    } else if ((b[0] >> 4) == 6) {
        struct ipv6hdr *ip6 = data;
        if ((void *)(ip6 + 1) > end)
            return -1;
        proto = ip6->nexthdr;
        l4 = sizeof(*ip6);
    } else {
        return 0;
    }
    if (proto == IPPROTO_UDP || proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
        return 1;
    if (proto != IPPROTO_TCP)
        return 0;
    __u8 *t = (__u8 *)data + l4;
    if (t + 4 > (__u8 *)end)
        return -1;
    __u16 port = direction == PT_DNS_QUERY ? (t[2] << 8 | t[3]) : (t[0] << 8 | t[1]);
    if (port == 53)
        return 1;
    if (direction != PT_DNS_QUERY)
        return 0;
    if (t + 13 > (__u8 *)end)
        return -1;
    /* TLS: a payload whose first bytes are a handshake record (0x16, 0x03)
     * holding a ClientHello (type 1). */
    __u32 off = l4 + (t[12] >> 4) * 4;
    if (off >= skb->len)
        return 0; /* no payload: SYN, ACK, FIN */
    __u8 *h = (__u8 *)data + (off & 0xff);
    if (h + 6 > (__u8 *)end)
        return -1;
    return h[0] == 0x16 && h[1] == 0x03 && h[5] == 0x01;
}

/* A TCP segment starting a TLS ClientHello, sent with its first
 * PT_TLS_CAPTURE payload bytes. */
static __always_inline void tls_hello(struct __sk_buff *skb, struct pkt *p)
{
    __u32 payload_len = skb->len - p->payload_off;
    __u8 head[6];
    if (bpf_skb_load_bytes(skb, p->payload_off, head, sizeof(head)) || head[0] != 0x16 || head[1] != 0x03 || head[5] != 0x01)
        return;
    __u64 cgroup_id = bpf_skb_cgroup_id(skb);
    struct pt_tls_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count_drop(PT_DROP_TLS_RING, cgroup_id);
        return;
    }
    /* 1..PT_TLS_CAPTURE bytes (payload_len >= 6 here): a mask, then + 1. */
    __u32 n = (payload_len < PT_TLS_CAPTURE ? payload_len : PT_TLS_CAPTURE) - 1;
    n &= PT_TLS_CAPTURE - 1;
    n += 1;
    if (bpf_skb_load_bytes(skb, p->payload_off, e->data, n)) {
        bpf_ringbuf_discard(e, 0);
        return;
    }
    e->kind = PT_KIND_TLS;
    e->captured = n;
    e->family = p->family;
    e->payload_len = payload_len;
    e->reserved = 0;
    e->time_ns = bpf_ktime_get_boot_ns();
    e->cgroup_id = cgroup_id;
    e->cookie = bpf_get_socket_cookie(skb);
    bpf_ringbuf_submit(e, pt_submit_flags(&events));
}

/* The ICMP type's bit in pt_flow_val's masks (events.h). */
static __always_inline __u32 icmp_bit(const struct pkt *p)
{
    __u8 t = p->icmp_type;
    if (p->protocol == IPPROTO_ICMP)
        return t < 32 ? 1u << t : 0;
    if (t >= 1 && t <= 4)
        return 1u << t;
    if (t >= 128 && t <= 154)
        return 1u << (t - 123);
    return 0;
}

/* Count a UDP or ICMP packet in its flow (socket, peer). A UDP flow is
 * counted on any socket; an ICMP one only on a socket a process created
 * (flow_socks): not the kernel's own replies and errors. */
static __always_inline void count_flow(struct __sk_buff *skb, const struct pkt *p, int egress)
{
    __u64 cookie = bpf_get_socket_cookie(skb);
    struct pt_flow_key k = { .cookie = cookie, .protocol = p->protocol, .family = (__u8)p->family };
    if (egress) {
        __builtin_memcpy(k.peer, p->daddr, 16);
        k.peer_port = p->dport;
    } else {
        __builtin_memcpy(k.peer, p->saddr, 16);
        k.peer_port = p->sport;
    }
    __u64 now = bpf_ktime_get_boot_ns();
    struct pt_flow_val *v = bpf_map_lookup_elem(&flows, &k);
    if (!v) {
        struct pt_flow_owner *o = bpf_map_lookup_elem(&flow_socks, &cookie);
        if (!o && p->protocol != IPPROTO_UDP)
            return;
        struct pt_flow_val init = { .first_ns = now, .last_ns = now, .cgroup_id = bpf_skb_cgroup_id(skb) };
        if (egress) {
            __builtin_memcpy(init.local, p->saddr, 16);
            init.local_port = p->sport;
        } else {
            __builtin_memcpy(init.local, p->daddr, 16);
            init.local_port = p->dport;
            init.flags |= PT_FLOW_FIRST_IN;
        }
        if (o) {
            init.flags |= PT_FLOW_HAS_OWNER;
            init.pid = o->pid;
            __builtin_memcpy(init.comm, o->comm, sizeof(init.comm));
        }
        /* NOEXIST: another CPU may have created it meanwhile (then use it). */
        if (bpf_map_update_elem(&flows, &k, &init, BPF_NOEXIST) != 0 && !bpf_map_lookup_elem(&flows, &k)) {
            count_drop(PT_DROP_FLOW_MAP_FULL, init.cgroup_id);
            return;
        }
        v = bpf_map_lookup_elem(&flows, &k);
        if (!v)
            return;
    }
    __u64 packets = skb->gso_segs > 1 ? skb->gso_segs : 1;
    __u64 bytes = skb->len > p->payload_off ? skb->len - p->payload_off : 0;
    __u32 bit = p->protocol == IPPROTO_UDP ? 0 : icmp_bit(p);
    if (egress) {
        __sync_fetch_and_add(&v->packets_out, packets);
        __sync_fetch_and_add(&v->bytes_out, bytes);
        /* Not atomic (5.10 has no atomic or): a type seen on two CPUs at
         * once may keep one bit of the two. */
        if (bit && !(v->icmp_out & bit))
            v->icmp_out |= bit;
    } else {
        __sync_fetch_and_add(&v->packets_in, packets);
        __sync_fetch_and_add(&v->bytes_in, bytes);
        if (bit && !(v->icmp_in & bit))
            v->icmp_in |= bit;
        if (!(v->flags & PT_FLOW_NAT_LOOKED) && p->protocol == IPPROTO_UDP) {
            /* The first answer: was what this socket sent DNATed (a
             * Service)? Keyed by the original tuple, this packet reversed. */
            struct nat_key nk = { .sport = v->local_port, .dport = k.peer_port };
            __builtin_memcpy(nk.saddr, v->local, 16);
            __builtin_memcpy(nk.daddr, k.peer, 16);
            struct nat_val *nv = bpf_map_lookup_elem(&nat, &nk);
            __u16 flags = v->flags | PT_FLOW_NAT_LOOKED;
            if (nv) {
                __builtin_memcpy(v->nat_addr, nv->addr, 16);
                v->nat_port = nv->port;
                flags |= PT_FLOW_HAS_NAT;
            }
            v->flags = flags;
        }
    }
    v->last_ns = now;
}

/* One packet of a socket: counted in its flow when UDP or ICMP; sent when it
 * is DNS (a query to port 53 on egress, an answer from port 53 on ingress),
 * with its first PT_DNS_CAPTURE payload bytes; on egress also when it starts
 * a TLS ClientHello (tls_hello). Always lets the packet through. */
static __always_inline int skb_packet(struct __sk_buff *skb, __u8 direction)
{
    if (maybe_wanted(skb, direction) == 0)
        return 1;
    struct pkt p = {};
    int parsed = parse_pkt_direct(skb, &p);
    if (parsed == 0)
        return 1;
    if (parsed < 0 && !parse_pkt(skb, &p))
        return 1;
    if (p.protocol != IPPROTO_TCP)
        count_flow(skb, &p, direction == PT_DNS_QUERY);
    if (p.protocol != IPPROTO_TCP && p.protocol != IPPROTO_UDP)
        return 1;
    __u16 port = direction == PT_DNS_QUERY ? p.dport : p.sport;
    if (p.payload_off >= skb->len)
        return 1; /* a TCP segment without payload (SYN, ACK, FIN) */
    if (port != 53) {
        if (direction == PT_DNS_QUERY && p.protocol == IPPROTO_TCP)
            tls_hello(skb, &p);
        return 1;
    }
    __u64 cgroup_id = bpf_skb_cgroup_id(skb);
    __u32 payload_len = skb->len - p.payload_off;
    struct pt_dns_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count_drop(PT_DROP_DNS_RING, cgroup_id);
        return 1;
    }
    /* 1..PT_DNS_CAPTURE bytes (payload_len >= 1 here), in a form every
     * verifier proves non-zero and in bounds: a mask, then + 1. */
    __u32 n = (payload_len < PT_DNS_CAPTURE ? payload_len : PT_DNS_CAPTURE) - 1;
    n &= PT_DNS_CAPTURE - 1;
    n += 1;
    if (bpf_skb_load_bytes(skb, p.payload_off, e->data, n)) {
        bpf_ringbuf_discard(e, 0);
        return 1;
    }
    e->kind = PT_KIND_DNS;
    e->direction = direction;
    e->protocol = p.protocol;
    e->family = p.family;
    e->pid = 0;
    e->flags = 0;
    e->captured = n;
    e->payload_len = payload_len;
    e->asked_port = 0;
    e->nat_port = 0;
    e->reserved = 0;
    e->time_ns = bpf_ktime_get_boot_ns();
    e->cgroup_id = cgroup_id;
    __u64 cookie = bpf_get_socket_cookie(skb);
    e->cookie = cookie;
    /* local = the socket's side of the packet. */
    if (direction == PT_DNS_QUERY) {
        __builtin_memcpy(e->local_addr, p.saddr, 16);
        __builtin_memcpy(e->remote_addr, p.daddr, 16);
        e->local_port = p.sport;
        e->remote_port = p.dport;
    } else {
        __builtin_memcpy(e->local_addr, p.daddr, 16);
        __builtin_memcpy(e->remote_addr, p.saddr, 16);
        e->local_port = p.dport;
        e->remote_port = p.sport;
    }
    __builtin_memset(e->asked_addr, 0, 16);
    __builtin_memset(e->nat_addr, 0, 16);
    __builtin_memset(e->comm, 0, sizeof(e->comm));
    struct dns_owner *o = p.protocol == IPPROTO_UDP ? bpf_map_lookup_elem(&dns_socks, &cookie) : 0;
    if (o) {
        e->flags |= PT_DNS_HAS_OWNER | PT_DNS_HAS_ASKED;
        e->pid = o->pid;
        __builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
        __builtin_memcpy(e->asked_addr, o->addr, 16);
        e->asked_port = o->port;
    } else if (p.protocol == IPPROTO_TCP) {
        struct connect_info *ci = bpf_map_lookup_elem(&connects, &cookie);
        if (ci) {
            e->flags |= PT_DNS_HAS_OWNER | PT_DNS_HAS_ASKED;
            e->pid = ci->pid;
            __builtin_memcpy(e->comm, ci->comm, sizeof(e->comm));
            __builtin_memcpy(e->asked_addr, ci->daddr, 16);
            e->asked_port = ci->dport;
        }
    }
    if (direction == PT_DNS_ANSWER) {
        /* The backend conntrack sent the query to, when it was DNATed:
         * keyed by the query's original tuple (this answer, reversed). */
        struct nat_key k = { .sport = e->local_port, .dport = e->remote_port };
        __builtin_memcpy(k.saddr, e->local_addr, 16);
        __builtin_memcpy(k.daddr, e->remote_addr, 16);
        struct nat_val *v = bpf_map_lookup_elem(&nat, &k);
        if (v) {
            e->flags |= PT_DNS_HAS_NAT;
            __builtin_memcpy(e->nat_addr, v->addr, 16);
            e->nat_port = v->port;
        }
    }
    bpf_ringbuf_submit(e, pt_submit_flags(&events));
    return 1;
}

SEC("cgroup_skb/egress")
int skb_egress(struct __sk_buff *skb)
{
    return skb_packet(skb, PT_DNS_QUERY);
}

SEC("cgroup_skb/ingress")
int skb_ingress(struct __sk_buff *skb)
{
    return skb_packet(skb, PT_DNS_ANSWER);
}
