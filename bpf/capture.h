/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared layout of ambit's capture maps. This header is the single source of truth for the binary
 * layout that src/ebpf/layout.ts encodes and decodes from userspace; change both together (the
 * layout tests in test/integration/ebpf compare them against the loaded object's map sizes).
 *
 * Conventions kept by every structure here:
 *  - addresses are 16 bytes in network byte order; IPv4 is stored v4-mapped (::ffff:a.b.c.d) so
 *    one key layout serves both families;
 *  - ports are host byte order;
 *  - explicit padding fields, zeroed by every writer, so keys hash identically in BPF and in JS.
 */
#ifndef AMBIT_CAPTURE_H
#define AMBIT_CAPTURE_H

/* Pod configuration, value of ambit_pods keyed by the pod's netns cookie (__u64). */
struct ambit_pod {
	__u32 addr[4];		/* pod address (v4-mapped for IPv4) */
	__u16 outbound_port;	/* capture listener port on loopback, 15001 */
	__u16 flags;		/* AMBIT_POD_F_* */
	__u32 reserved;
};

/* The pod has an outbound listener on [::1] as well, so native IPv6 connects can be captured. */
#define AMBIT_POD_F_OUTBOUND6 0x1

/* An original destination: value of ambit_pending (keyed by socket cookie) and ambit_conns. */
struct ambit_dst {
	__u32 addr[4];
	__u16 port;
	__u16 family;		/* AF_INET or AF_INET6 as the application asked */
	__u32 reserved;
	__u64 netns;		/* netns cookie of the client socket */
};

/* A captured connection, as both ends see it inside the pod netns. */
struct ambit_conn_key {
	__u64 netns;
	__u32 client[4];
	__u32 server[4];	/* the capture listener address */
	__u16 client_port;
	__u16 server_port;
	__u32 reserved;
};

/* Per-pod excluded destination port. */
struct ambit_port_key {
	__u64 netns;
	__u16 port;
	__u16 reserved;
	__u32 reserved2;
};

/* Per-pod excluded destination CIDR (LPM trie: prefixlen counts netns bits + address bits). */
struct ambit_cidr_key {
	__u32 prefixlen;
	__u8 netns[8];
	__u8 addr[16];
};

/* Inbound listener of a pod address: key of the ambit_inbound SOCKHASH. */
struct ambit_inbound_key {
	__u32 addr[4];
	__u32 kind;		/* AMBIT_INBOUND_* */
};

/* Enrolled pod address: key of ambit_podaddrs (value: the pod's netns cookie, __u64). sk_lookup has
 * no netns cookie of its own, so this is how it knows the address belongs to an enrolled pod even
 * when no agent listener is left in ambit_inbound. */

/* Fail-closed refusal counter: key of ambit_failclosed (per-CPU __u64 value). */
struct ambit_fail_key {
	__u64 netns;		/* netns cookie of the pod */
	__u32 direction;	/* AMBIT_DIR_* */
	__u32 reserved;
};

#define AMBIT_DIR_INBOUND 0
#define AMBIT_DIR_OUTBOUND 1

/* A SYN sent by a socket of the node itself toward a pod: key of ambit_localsyn (LRU; value: the
 * bpf_ktime_get_ns() of the SYN, __u64). Written by the tc egress program on the device that leads
 * to the pod (origin NODE) or by the agent (origin AGENT, CLOCK_MONOTONIC), consumed by sk_lookup
 * in the pod netns. */
struct ambit_syn_key {
	__u32 src[4];
	__u32 dst[4];
	__u16 src_port;
	__u16 dst_port;
	__u32 origin;		/* AMBIT_SYN_* */
};

#define AMBIT_SYN_NODE 0	/* seen by the tc egress program: a socket of the node's netns */
#define AMBIT_SYN_AGENT 1	/* announced by the agent before its own connect to an app inside
				 * the pod netns (e.g. from the client's address, IP_TRANSPARENT) */

/* A local SYN older than this is not a bypass any more (the SYN crosses one veth in microseconds;
 * every retransmission is recorded again). */
#define AMBIT_LOCAL_SYN_TTL_NS (2ULL * 1000 * 1000 * 1000)

#define AMBIT_INBOUND_PLAIN 0
#define AMBIT_INBOUND_HBONE 1
#define AMBIT_HBONE_PORT 15008

/* Indexes of the per-CPU counters. */
enum ambit_counter {
	AMBIT_CNT_CAPTURED = 0,		/* outbound connects rewritten to the capture listener */
	AMBIT_CNT_EXCLUDED = 1,		/* enrolled connects left alone (loopback, excluded port or CIDR) */
	AMBIT_CNT_LINKED = 2,		/* captured connects whose 4-tuple was recorded on ESTABLISHED */
	AMBIT_CNT_ORIGDST_HIT = 3,	/* SO_ORIGINAL_DST answered by cgroup/getsockopt */
	AMBIT_CNT_ORIGDST_MISS = 4,	/* SO_ORIGINAL_DST asked for an unknown connection */
	AMBIT_CNT_INBOUND_STEERED = 5,	/* inbound SYNs steered to 15006/15008 by sk_lookup */
	AMBIT_CNT_INBOUND_BYPASS = 6,	/* inbound opened by the node itself (or loopback, the pod itself), not steered */
	AMBIT_CNT_INBOUND_MISS = 7,	/* bpf_sk_assign failed: the SYN was refused */
	AMBIT_CNT_RECORD_FAILED = 8,	/* a map update failed; the connect went through untouched */
	AMBIT_CNT_FAIL_CLOSED_IN = 9,	/* inbound to an enrolled pod with no agent listener: refused */
	AMBIT_CNT_FAIL_CLOSED_OUT = 10,	/* outbound connect of an enrolled pod with no capture listener: refused */
	AMBIT_CNT_LOCAL_SYN = 11,	/* SYNs of node-local sockets toward pods, recorded by tc egress */
	AMBIT_CNT_MAX = 16,
};

#endif
