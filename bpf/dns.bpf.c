// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ambit DNS capture: DNS queries of enrolled pods (UDP, and TCP when the pod has a TCP DNS
 * listener) go to the agent's DNS proxy (src/agent/dns-proxy.ts), which listens on
 * 127.0.0.1:<port> (15053) inside each pod netns.
 * Loaded as its own object beside capture.bpf.o (src/ebpf/dns-capture.ts), so DNS capture can be
 * switched off (`ambit agent --dns-capture=false`) without touching TCP capture.
 *
 *  cgroup/connect4      a UDP socket of an enrolled netns (ambit_dns_pods) connected to a
 *                       non-loopback address on port 53 (glibc, musl and c-ares connect their UDP
 *                       sockets) is connected to the pod's DNS listener instead;
 *  cgroup/sendmsg4      the same for an unconnected sendto()/sendmsg() to port 53;
 *  cgroup/recvmsg4      a datagram from the DNS listener, received by a socket whose query was
 *                       rewritten, shows the original resolver as its source, so the resolver
 *                       library accepts the reply;
 *  cgroup/getpeername4  getpeername() of such a connected socket answers the original resolver too.
 *  cgroup/connect4      (TCP) a TCP connect to port 53 goes to the pod's TCP DNS listener on the
 *                       same port. Capture's own connect4 (capture.bpf.c) may run before this one
 *                       (programs of a cgroup run in attach order) and have rewritten the connect
 *                       to the pod's 127.0.0.1:<capture port> already, parking the original
 *                       destination in ambit_pending (shared by pin name): then the parked
 *                       destination decides. Run after it instead, this program rewrites first
 *                       and capture leaves a loopback destination alone.
 *
 * The original resolver is kept twice: per socket cookie (ambit_dns_orig, LRU) for the reply's
 * source, and per netns cookie (ambit_dns_upstream, the resolver that pod addressed last) for the
 * proxy, which receives a query from 127.0.0.1:<client port> and cannot know the client's socket
 * cookie; at connect() time an unbound UDP socket has no port yet to key a record by.
 *
 * Invariants:
 *  - every program returns 1: DNS capture never refuses a send or a connect;
 *  - fail open: a query is only rewritten while the pod's DNS listener is alive (the socket in
 *    ambit_dns_listen, which the kernel removes when the agent's socket closes). With the agent
 *    gone, pods resolve through their own resolver directly, as without the mesh; a DNS name is
 *    not a security boundary, the connection capture behind it is;
 *  - a record that cannot be stored leaves the query untouched;
 *  - loopback resolvers (127/8: a node-local cache inside the pod) are never captured.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "capture.h"
#include "dns.h"

#ifndef SOCK_STREAM
#define SOCK_STREAM 1
#endif
#ifndef SOCK_DGRAM
#define SOCK_DGRAM 2
#endif
#ifndef AF_INET
#define AF_INET 2
#endif
#define DNS_PORT 53
#define LOOPBACK4 0x7f000001

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct ambit_dns_pod);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_dns_pods SEC(".maps");

/* netns cookie -> the pod's DNS listener socket, the liveness token. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_dns_listen SEC(".maps");

/* netns cookie -> the pod's TCP DNS listener (liveness token of DNS over TCP). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_dns_listen_tcp SEC(".maps");

/* capture.bpf.c's parked original destinations, by socket cookie (the same pinned map; userspace
 * sizes this definition like the pinned one before load). Read only. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct ambit_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_pending SEC(".maps");

/* socket cookie -> original resolver of that socket's rewritten query. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct ambit_dns_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_dns_orig SEC(".maps");

/* netns cookie -> the resolver the pod addressed last, read by the proxy to forward. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct ambit_dns_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_dns_upstream SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AMBIT_DNS_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_dns_counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&ambit_dns_counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline int listener_alive(void *map, __u64 netns)
{
	struct bpf_sock *sk = bpf_map_lookup_elem(map, &netns);

	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

static __always_inline int capture(struct bpf_sock_addr *ctx)
{
	struct ambit_dns_dst dst = {};
	struct ambit_dns_pod *pod;
	__u64 netns, cookie;
	__u32 ip;

	if (ctx->type != SOCK_DGRAM || ctx->user_port != bpf_htons(DNS_PORT))
		return 1;
	ip = ctx->user_ip4;
	if (ip == 0 || (bpf_ntohl(ip) >> 24) == 127)
		return 1;
	netns = bpf_get_netns_cookie(ctx);
	pod = bpf_map_lookup_elem(&ambit_dns_pods, &netns);
	if (!pod)
		return 1;
	if (!listener_alive(&ambit_dns_listen, netns)) {
		count(AMBIT_DNS_CNT_NO_LISTENER);
		return 1;
	}
	dst.addr = ip;
	dst.port = DNS_PORT;
	dst.proxy_port = pod->port;
	cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_update_elem(&ambit_dns_orig, &cookie, &dst, BPF_ANY) ||
	    bpf_map_update_elem(&ambit_dns_upstream, &netns, &dst, BPF_ANY)) {
		count(AMBIT_DNS_CNT_RECORD_FAILED);
		return 1;
	}
	ctx->user_ip4 = bpf_htonl(LOOPBACK4);
	ctx->user_port = bpf_htons(pod->port);
	count(AMBIT_DNS_CNT_CAPTURED);
	return 1;
}

/* DNS over TCP: the original resolver from the connect itself, or from capture's parked record. */
static __always_inline int capture_tcp(struct bpf_sock_addr *ctx)
{
	struct ambit_dns_dst dst = {};
	struct ambit_dns_pod *pod;
	struct ambit_dst *parked;
	__u64 netns, cookie;
	__u32 ip;

	netns = bpf_get_netns_cookie(ctx);
	pod = bpf_map_lookup_elem(&ambit_dns_pods, &netns);
	if (!pod || !(pod->flags & AMBIT_DNS_F_TCP))
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	ip = ctx->user_ip4;
	if (ctx->user_port == bpf_htons(DNS_PORT)) {
		if (ip == 0 || (bpf_ntohl(ip) >> 24) == 127)
			return 1;
	} else if (ip == bpf_htonl(LOOPBACK4) && ctx->user_port == bpf_htons(pod->capture_port)) {
		parked = bpf_map_lookup_elem(&ambit_pending, &cookie);
		if (!parked || parked->port != DNS_PORT || parked->family != AF_INET ||
		    parked->addr[0] != 0 || parked->addr[1] != 0 || parked->addr[2] != bpf_htonl(0xffff))
			return 1;
		ip = parked->addr[3];
	} else {
		return 1;
	}
	if (!listener_alive(&ambit_dns_listen_tcp, netns)) {
		count(AMBIT_DNS_CNT_NO_LISTENER);
		return 1;
	}
	dst.addr = ip;
	dst.port = DNS_PORT;
	dst.proxy_port = pod->port;
	if (bpf_map_update_elem(&ambit_dns_orig, &cookie, &dst, BPF_ANY) ||
	    bpf_map_update_elem(&ambit_dns_upstream, &netns, &dst, BPF_ANY)) {
		count(AMBIT_DNS_CNT_RECORD_FAILED);
		return 1;
	}
	ctx->user_ip4 = bpf_htonl(LOOPBACK4);
	ctx->user_port = bpf_htons(pod->port);
	count(AMBIT_DNS_CNT_CAPTURED_TCP);
	return 1;
}

SEC("cgroup/connect4")
int ambit_dns_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->type == SOCK_STREAM)
		return capture_tcp(ctx);
	return capture(ctx);
}

SEC("cgroup/sendmsg4")
int ambit_dns_sendmsg4(struct bpf_sock_addr *ctx)
{
	return capture(ctx);
}

/* The peer address in ctx is the DNS listener's (UDP or TCP): show the socket's original resolver instead. */
static __always_inline void restore(struct bpf_sock_addr *ctx)
{
	struct ambit_dns_dst *dst;
	__u64 cookie;

	if (ctx->user_ip4 != bpf_htonl(LOOPBACK4))
		return;
	cookie = bpf_get_socket_cookie(ctx);
	dst = bpf_map_lookup_elem(&ambit_dns_orig, &cookie);
	if (!dst || ctx->user_port != bpf_htons(dst->proxy_port))
		return;
	ctx->user_ip4 = dst->addr;
	ctx->user_port = bpf_htons(dst->port);
	count(AMBIT_DNS_CNT_RESTORED);
}

SEC("cgroup/recvmsg4")
int ambit_dns_recvmsg4(struct bpf_sock_addr *ctx)
{
	restore(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int ambit_dns_getpeername4(struct bpf_sock_addr *ctx)
{
	restore(ctx);
	return 1;
}
