// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ambit traffic capture (docs/architecture.md#the-data-path).
 *
 *  cgroup/connect4, cgroup/connect6  outbound TCP connects from an enrolled netns (netns cookie in
 *                                    ambit_pods) to a non-loopback destination are rewritten to the
 *                                    pod's capture listener on loopback; the original destination is
 *                                    parked under the socket cookie. The pod's own address is
 *                                    local traffic and stays uncaptured.
 *  sockops                           on ACTIVE_ESTABLISHED the parked destination is re-keyed by
 *                                    (netns cookie, 4-tuple), the key the accepting side can compute.
 *  cgroup/getsockopt                 answers SO_ORIGINAL_DST (SOL_IP/SOL_IPV6, 80) for the accepted
 *                                    socket from that record, so any proxy can ask.
 *  sk_lookup                         one link per pod netns: inbound TCP to an enrolled pod address
 *                                    (ambit_podaddrs) goes to the agent's 15008 (HBONE) or 15006
 *                                    listener. When that listener is missing (agent down, restarting,
 *                                    crashed) the SYN is dropped by the lookup (SK_DROP), which the
 *                                    kernel answers with a RST: the client sees ECONNREFUSED at once.
 *  tc (tcx egress)                   on the node-side device that leads to enrolled pods: records
 *                                    SYNs sent by a socket of the node itself (skb->sk set) in
 *                                    ambit_localsyn, the only inbound bypass sk_lookup honours.
 *
 * Fail closed. An enrolled pod's traffic never goes around the agent:
 *  - inbound to an enrolled pod address with no agent listener of the needed kind is refused;
 *  - an outbound connect that would be captured while the pod's capture listener is missing from
 *    ambit_outbound is refused with ECONNREFUSED (bpf_set_retval) instead of leaving uncaptured.
 *    Both are counted in ambit_failclosed by (netns cookie, direction).
 *  The agent's listeners are the liveness token: the kernel removes a socket from a SOCKHASH when
 *  it is closed, so a killed agent leaves the maps without listeners within the exit itself.
 *
 * Narrow bypass. Inbound SYNs reach the app directly (not steered) only when they come over
 * loopback or from the pod itself (local traffic of the pod netns), or when the source is one of
 * the node's addresses (ambit_nodeaddrs) AND the tc program saw that very SYN (4-tuple, less than
 * AMBIT_LOCAL_SYN_TTL_NS ago) leave the node carrying a socket of the node's netns. That is a
 * process on the node (kubelet probes, the agent's own connections to local apps). The agent may
 * also announce one connect of its own inside the pod netns (origin AMBIT_SYN_AGENT, any source
 * address: the client's, for source-address preservation), since such a SYN crosses no device the
 * tc program watches and, going to the pod's own eth0 address, is not seen as loopback by
 * sk_lookup (ingress_ifindex is the device of the local address). A packet
 * forwarded by the node has no socket (ip_forward refuses skbs that carry one, and crossing into
 * the node's netns over a veth orphans the skb), so traffic masqueraded to the node's address is
 * steered like any other plaintext and STRICT refuses it.
 *
 * Invariants:
 *  - every cgroup program allows (returns 1) connects of netns that are not enrolled, and whatever
 *    it cannot decide: a failed record update leaves the connect alone. Only an enrolled pod whose
 *    capture listener is provably gone is refused; a connect hook that fails closed on anything
 *    broader breaks whole machines.
 *  - the tc program never drops or changes a packet (it returns TCX_NEXT).
 *  - records are keyed by netns cookie as well as by tuple, since every pod has its own 127.0.0.1.
 *  - connection records live in LRU maps and are not deleted on close: a proxy may ask after the
 *    client has gone. A reused tuple overwrites its stale record, and an uncaptured loopback
 *    connection of an enrolled netns deletes it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "capture.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#ifndef SOCK_STREAM
#define SOCK_STREAM 1
#endif
#ifndef IPPROTO_TCP
#define IPPROTO_TCP 6
#endif
#define SOL_IP_ 0
#define SOL_IPV6_ 41
#define SO_ORIGINAL_DST_ 80
#define LOOPBACK_IFINDEX 1
#define ECONNREFUSED_ 111
#define ETH_P_IP_ 0x0800
#define ETH_P_IPV6_ 0x86DD
#define TCP_FLAG_SYN_ 0x02
#define TCP_FLAG_ACK_ 0x10

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct ambit_pod);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct ambit_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ambit_conn_key);
	__type(value, struct ambit_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ambit_port_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_xports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct ambit_cidr_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_xcidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 8192);
	__type(key, struct ambit_inbound_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_inbound SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32[4]);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_nodeaddrs SEC(".maps");

/* Enrolled pod address -> netns cookie (written with ambit_pods, removed with it). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32[4]);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_podaddrs SEC(".maps");

/* netns cookie -> the pod's 127.0.0.1 capture listener, the outbound liveness token. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_outbound SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct ambit_fail_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_failclosed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ambit_syn_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_localsyn SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AMBIT_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&ambit_counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline void fail_closed(__u64 netns, __u32 direction)
{
	struct ambit_fail_key key = { .netns = netns, .direction = direction };
	__u64 one = 1, *v;

	count(direction == AMBIT_DIR_INBOUND ? AMBIT_CNT_FAIL_CLOSED_IN : AMBIT_CNT_FAIL_CLOSED_OUT);
	v = bpf_map_lookup_elem(&ambit_failclosed, &key);
	if (v)
		*v += 1;
	else
		bpf_map_update_elem(&ambit_failclosed, &key, &one, BPF_NOEXIST);
}

/* Is the pod's capture listener alive? The agent that owns it is, then. */
static __always_inline int outbound_alive(__u64 netns)
{
	struct bpf_sock *sk = bpf_map_lookup_elem(&ambit_outbound, &netns);

	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

static __always_inline void v4_mapped(__u32 out[4], __u32 ip4_be)
{
	out[0] = 0;
	out[1] = 0;
	out[2] = bpf_htonl(0xffff);
	out[3] = ip4_be;
}

static __always_inline int is_v4_mapped(const __u32 a[4])
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

/* For map values and the stack only. IPv6 addresses in a program's context (ctx->user_ip6,
 * local_ip6, sk->src_ip6, ...) are copied word by word at each site on purpose: routing them
 * through a helper or macro lets clang form a modified context pointer, which the verifier
 * rejects ("dereference of modified ctx ptr"). */
static __always_inline void copy6(__u32 out[4], const __u32 in[4])
{
	out[0] = in[0];
	out[1] = in[1];
	out[2] = in[2];
	out[3] = in[3];
}

/* 0.0.0.0, 127/8 (and their v4-mapped forms), ::, ::1: never captured. */
static __always_inline int is_local4(__u32 ip4_be)
{
	__u32 h = bpf_ntohl(ip4_be);

	return h == 0 || (h >> 24) == 127;
}

static __always_inline int is_local6(const __u32 a[4])
{
	if (a[0] != 0 || a[1] != 0)
		return 0;
	if (a[2] == bpf_htonl(0xffff))
		return is_local4(a[3]);
	return a[2] == 0 && (a[3] == 0 || a[3] == bpf_htonl(1));
}

static __always_inline int same6(const __u32 a[4], const __u32 b[4])
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

/* Excluded by the pod's port or CIDR lists? */
static __always_inline int excluded(__u64 netns, const __u32 addr[4], __u16 port)
{
	struct ambit_port_key pk = { .netns = netns, .port = port };
	struct ambit_cidr_key ck = {};

	if (bpf_map_lookup_elem(&ambit_xports, &pk))
		return 1;
	ck.prefixlen = 64 + 128;
	__builtin_memcpy(ck.netns, &netns, 8);
	__builtin_memcpy(ck.addr, addr, 16);
	if (bpf_map_lookup_elem(&ambit_xcidrs, &ck))
		return 1;
	return 0;
}

/* Park the original destination under the socket cookie; 0 on success. */
static __always_inline int park(void *ctx, __u64 netns, const __u32 addr[4], __u16 port, __u16 family)
{
	struct ambit_dst dst = {};
	__u64 cookie = bpf_get_socket_cookie(ctx);

	copy6(dst.addr, addr);
	dst.port = port;
	dst.family = family;
	dst.netns = netns;
	if (bpf_map_update_elem(&ambit_pending, &cookie, &dst, BPF_ANY)) {
		count(AMBIT_CNT_RECORD_FAILED);
		return -1;
	}
	return 0;
}

SEC("cgroup/connect4")
int ambit_connect4(struct bpf_sock_addr *ctx)
{
	__u64 netns;
	struct ambit_pod *pod;
	__u32 addr[4];
	__u16 port;

	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 1;
	netns = bpf_get_netns_cookie(ctx);
	pod = bpf_map_lookup_elem(&ambit_pods, &netns);
	if (!pod)
		return 1;
	port = bpf_ntohs((__u16)ctx->user_port);
	v4_mapped(addr, ctx->user_ip4);
	if (is_local4(ctx->user_ip4) || same6(addr, pod->addr) || excluded(netns, addr, port)) {
		count(AMBIT_CNT_EXCLUDED);
		return 1;
	}
	if (!outbound_alive(netns)) {
		fail_closed(netns, AMBIT_DIR_OUTBOUND);
		bpf_set_retval(-ECONNREFUSED_);
		return 0;
	}
	if (park(ctx, netns, addr, port, AF_INET))
		return 1;
	ctx->user_ip4 = bpf_htonl(0x7f000001);
	ctx->user_port = bpf_htons(pod->outbound_port);
	count(AMBIT_CNT_CAPTURED);
	return 1;
}

SEC("cgroup/connect6")
int ambit_connect6(struct bpf_sock_addr *ctx)
{
	__u64 netns;
	struct ambit_pod *pod;
	__u32 addr[4];
	__u16 port;
	int v4;

	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 1;
	netns = bpf_get_netns_cookie(ctx);
	pod = bpf_map_lookup_elem(&ambit_pods, &netns);
	if (!pod)
		return 1;
	addr[0] = ctx->user_ip6[0];
	addr[1] = ctx->user_ip6[1];
	addr[2] = ctx->user_ip6[2];
	addr[3] = ctx->user_ip6[3];
	port = bpf_ntohs((__u16)ctx->user_port);
	v4 = is_v4_mapped(addr);
	/* Native IPv6 needs the pod's [::1] listener; link-local fe80::/10 stays on the link. */
	if (is_local6(addr) || same6(addr, pod->addr) || excluded(netns, addr, port) ||
	    (!v4 && (!(pod->flags & AMBIT_POD_F_OUTBOUND6) ||
		     (bpf_ntohl(addr[0]) & 0xffc00000) == 0xfe800000))) {
		count(AMBIT_CNT_EXCLUDED);
		return 1;
	}
	if (!outbound_alive(netns)) {
		fail_closed(netns, AMBIT_DIR_OUTBOUND);
		bpf_set_retval(-ECONNREFUSED_);
		return 0;
	}
	if (park(ctx, netns, addr, port, AF_INET6))
		return 1;
	if (v4) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = bpf_htonl(0x7f000001);
	} else {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
	}
	ctx->user_port = bpf_htons(pod->outbound_port);
	count(AMBIT_CNT_CAPTURED);
	return 1;
}

SEC("sockops")
int ambit_sockops(struct bpf_sock_ops *ctx)
{
	struct ambit_conn_key key = {};
	struct ambit_dst *dst;
	__u64 cookie;

	if (ctx->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	dst = bpf_map_lookup_elem(&ambit_pending, &cookie);
	key.netns = dst ? dst->netns : bpf_get_netns_cookie(ctx);
	if (ctx->family == AF_INET) {
		v4_mapped(key.client, ctx->local_ip4);
		v4_mapped(key.server, ctx->remote_ip4);
	} else {
		key.client[0] = ctx->local_ip6[0];
		key.client[1] = ctx->local_ip6[1];
		key.client[2] = ctx->local_ip6[2];
		key.client[3] = ctx->local_ip6[3];
		key.server[0] = ctx->remote_ip6[0];
		key.server[1] = ctx->remote_ip6[1];
		key.server[2] = ctx->remote_ip6[2];
		key.server[3] = ctx->remote_ip6[3];
	}
	key.client_port = (__u16)ctx->local_port;
	key.server_port = (__u16)bpf_ntohl(ctx->remote_port);
	if (!dst) {
		/* An uncaptured loopback connection may reuse the tuple of an old captured one: drop the
		 * stale record so nobody reads a destination that this connection never had. */
		if (is_local6(key.server))
			bpf_map_delete_elem(&ambit_conns, &key);
		return 1;
	}
	if (bpf_map_update_elem(&ambit_conns, &key, dst, BPF_ANY) == 0)
		count(AMBIT_CNT_LINKED);
	else
		count(AMBIT_CNT_RECORD_FAILED);
	bpf_map_delete_elem(&ambit_pending, &cookie);
	return 1;
}

SEC("cgroup/getsockopt")
int ambit_getsockopt(struct bpf_sockopt *ctx)
{
	struct ambit_conn_key key = {};
	struct bpf_sock *sk = ctx->sk;
	struct ambit_dst *dst;

	if (ctx->optname != SO_ORIGINAL_DST_ || (ctx->level != SOL_IP_ && ctx->level != SOL_IPV6_))
		return 1;
	if (!sk)
		return 1;
	key.netns = bpf_get_netns_cookie(ctx);
	if (sk->family == AF_INET) {
		v4_mapped(key.client, sk->dst_ip4);
		v4_mapped(key.server, sk->src_ip4);
	} else {
		key.client[0] = sk->dst_ip6[0];
		key.client[1] = sk->dst_ip6[1];
		key.client[2] = sk->dst_ip6[2];
		key.client[3] = sk->dst_ip6[3];
		key.server[0] = sk->src_ip6[0];
		key.server[1] = sk->src_ip6[1];
		key.server[2] = sk->src_ip6[2];
		key.server[3] = sk->src_ip6[3];
	}
	key.client_port = bpf_ntohs(sk->dst_port);
	key.server_port = (__u16)sk->src_port;
	dst = bpf_map_lookup_elem(&ambit_conns, &key);
	if (!dst) {
		count(AMBIT_CNT_ORIGDST_MISS);
		return 1;
	}
	if (ctx->level == SOL_IP_) {
		struct sockaddr_in *sa = ctx->optval;

		if (!is_v4_mapped(dst->addr) || (void *)(sa + 1) > ctx->optval_end)
			return 1;
		sa->sin_family = AF_INET;
		sa->sin_port = bpf_htons(dst->port);
		sa->sin_addr.s_addr = dst->addr[3];
		__builtin_memset(sa->__pad, 0, sizeof(sa->__pad));
		ctx->optlen = sizeof(*sa);
	} else {
		struct sockaddr_in6 *sa6 = ctx->optval;

		if ((void *)(sa6 + 1) > ctx->optval_end)
			return 1;
		sa6->sin6_family = AF_INET6;
		sa6->sin6_port = bpf_htons(dst->port);
		sa6->sin6_flowinfo = 0;
		sa6->sin6_addr.in6_u.u6_addr32[0] = dst->addr[0];
		sa6->sin6_addr.in6_u.u6_addr32[1] = dst->addr[1];
		sa6->sin6_addr.in6_u.u6_addr32[2] = dst->addr[2];
		sa6->sin6_addr.in6_u.u6_addr32[3] = dst->addr[3];
		sa6->sin6_scope_id = 0;
		ctx->optlen = sizeof(*sa6);
	}
	ctx->retval = 0;
	count(AMBIT_CNT_ORIGDST_HIT);
	return 1;
}

/* Was this SYN sent by a socket of the node (seen by ambit_tc_egress a moment ago)? Consumed. */
static __always_inline int local_syn(struct ambit_syn_key *k)
{
	__u64 *at = bpf_map_lookup_elem(&ambit_localsyn, k);
	int fresh;

	if (!at)
		return 0;
	fresh = bpf_ktime_get_ns() - *at < AMBIT_LOCAL_SYN_TTL_NS;
	bpf_map_delete_elem(&ambit_localsyn, k);
	return fresh;
}

SEC("sk_lookup")
int ambit_sk_lookup(struct bpf_sk_lookup *ctx)
{
	struct ambit_inbound_key key = {};
	struct ambit_syn_key syn = {};
	struct bpf_sock *sk;
	__u64 *netns;
	int err;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	if (ctx->family == AF_INET) {
		v4_mapped(key.addr, ctx->local_ip4);
		v4_mapped(syn.src, ctx->remote_ip4);
	} else {
		key.addr[0] = ctx->local_ip6[0];
		key.addr[1] = ctx->local_ip6[1];
		key.addr[2] = ctx->local_ip6[2];
		key.addr[3] = ctx->local_ip6[3];
		syn.src[0] = ctx->remote_ip6[0];
		syn.src[1] = ctx->remote_ip6[1];
		syn.src[2] = ctx->remote_ip6[2];
		syn.src[3] = ctx->remote_ip6[3];
	}
	/* Only connections to an enrolled pod address are ours; the program runs on every lookup. */
	netns = bpf_map_lookup_elem(&ambit_podaddrs, key.addr);
	if (!netns)
		return SK_PASS;
	if (ctx->ingress_ifindex == LOOPBACK_IFINDEX || is_local6(syn.src) || same6(syn.src, key.addr)) {
		count(AMBIT_CNT_INBOUND_BYPASS);
		return SK_PASS;
	}
	copy6(syn.dst, key.addr);
	syn.src_port = bpf_ntohs(ctx->remote_port);
	syn.dst_port = (__u16)ctx->local_port;
	syn.origin = AMBIT_SYN_AGENT;
	if (local_syn(&syn)) {
		count(AMBIT_CNT_INBOUND_BYPASS);
		return SK_PASS;
	}
	syn.origin = AMBIT_SYN_NODE;
	if (bpf_map_lookup_elem(&ambit_nodeaddrs, syn.src) && local_syn(&syn)) {
		count(AMBIT_CNT_INBOUND_BYPASS);
		return SK_PASS;
	}
	key.kind = ctx->local_port == AMBIT_HBONE_PORT ? AMBIT_INBOUND_HBONE : AMBIT_INBOUND_PLAIN;
	sk = bpf_map_lookup_elem(&ambit_inbound, &key);
	if (!sk) {
		/* Enrolled, and the agent's listener is gone: refuse, never deliver around the agent. */
		fail_closed(*netns, AMBIT_DIR_INBOUND);
		return SK_DROP;
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(AMBIT_CNT_INBOUND_MISS);
		return SK_DROP;
	}
	count(AMBIT_CNT_INBOUND_STEERED);
	return SK_PASS;
}

/* Records SYNs that leave the node toward a pod carrying a socket of the node's netns. */
SEC("tc")
int ambit_tc_egress(struct __sk_buff *skb)
{
	struct ambit_syn_key syn = {};
	__u8 flags;
	__u32 l4;
	__u64 now;

	if (!skb->sk)
		return TCX_NEXT;
	if (skb->protocol == bpf_htons(ETH_P_IP_)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 14, &ip, sizeof(ip)) || ip.protocol != IPPROTO_TCP ||
		    (ip.frag_off & bpf_htons(0x1fff)))
			return TCX_NEXT;
		v4_mapped(syn.src, ip.saddr);
		v4_mapped(syn.dst, ip.daddr);
		l4 = 14 + ip.ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6_)) {
		struct ipv6hdr ip6;

		/* Extension headers are not followed: a SYN carrying them is simply not a bypass. */
		if (bpf_skb_load_bytes(skb, 14, &ip6, sizeof(ip6)) || ip6.nexthdr != IPPROTO_TCP)
			return TCX_NEXT;
		__builtin_memcpy(syn.src, &ip6.saddr, 16);
		__builtin_memcpy(syn.dst, &ip6.daddr, 16);
		l4 = 14 + sizeof(ip6);
	} else {
		return TCX_NEXT;
	}
	if (bpf_skb_load_bytes(skb, l4 + 13, &flags, 1) ||
	    (flags & (TCP_FLAG_SYN_ | TCP_FLAG_ACK_)) != TCP_FLAG_SYN_)
		return TCX_NEXT;
	if (bpf_skb_load_bytes(skb, l4, &syn.src_port, 2) || bpf_skb_load_bytes(skb, l4 + 2, &syn.dst_port, 2))
		return TCX_NEXT;
	syn.src_port = bpf_ntohs(syn.src_port);
	syn.dst_port = bpf_ntohs(syn.dst_port);
	now = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&ambit_localsyn, &syn, &now, BPF_ANY) == 0)
		count(AMBIT_CNT_LOCAL_SYN);
	return TCX_NEXT;
}
