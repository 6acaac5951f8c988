/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Layout of the DNS capture maps (bpf/dns.bpf.c); src/ebpf/dns-capture.ts encodes and decodes
 * them. Same conventions as capture.h: explicit zeroed padding; the IPv4 address in network byte
 * order, ports in host byte order.
 */
#ifndef AMBIT_DNS_H
#define AMBIT_DNS_H

/* Value of ambit_dns_pods, keyed by the pod's netns cookie (__u64). */
struct ambit_dns_pod {
	__u16 port;		/* the pod's DNS listeners on 127.0.0.1 (UDP and TCP), 15053 */
	__u16 capture_port;	/* the pod's TCP capture listener (capture.h ambit_pod.outbound_port), 15001 */
	__u32 flags;		/* AMBIT_DNS_F_* */
};

/* The pod has a TCP DNS listener (ambit_dns_listen_tcp): capture DNS over TCP too. */
#define AMBIT_DNS_F_TCP 0x1

/* An original resolver: value of ambit_dns_orig (socket cookie) and ambit_dns_upstream (netns cookie). */
struct ambit_dns_dst {
	__u32 addr;		/* IPv4, network byte order */
	__u16 port;		/* 53 */
	__u16 proxy_port;	/* the listener the query was rewritten to */
};

enum ambit_dns_counter {
	AMBIT_DNS_CNT_CAPTURED = 0,	 /* queries rewritten to the pod's DNS listener */
	AMBIT_DNS_CNT_RESTORED = 1,	 /* replies (or getpeername) shown from the original resolver */
	AMBIT_DNS_CNT_NO_LISTENER = 2,	 /* enrolled pod without a live DNS listener: left to its resolver */
	AMBIT_DNS_CNT_RECORD_FAILED = 3, /* a map update failed: left to its resolver */
	AMBIT_DNS_CNT_CAPTURED_TCP = 4,	 /* TCP connects to port 53 rewritten to the pod's DNS listener */
	AMBIT_DNS_CNT_MAX = 8,
};

#endif
