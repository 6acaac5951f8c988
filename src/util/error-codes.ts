/**
 * Every error code ambit throws or reports (`AMBIT_ERR_*`), with what it means for an operator.
 * The one registry: `AmbitError` accepts only a code listed here (a new code does not compile
 * until it is registered), test/unit/util/error-codes.test.ts fails when src/ uses a code that is
 * not listed or the list keeps one nothing uses, and docs/errors.md is generated from it.
 * Codes are stable: callers match on them, never on message text.
 */
export const ERROR_CODES = {
  // node agent
  AMBIT_ERR_AGENT_CONFIG: 'A node agent option or its environment is wrong (missing file, bad port or address); the agent does not start.',
  AMBIT_ERR_AGENT_VIEW: 'The configuration pushed to the agent holds a resource it cannot use; that resource is skipped and the rest applies.',
  AMBIT_ERR_AGENT_NO_ROUTE: 'A captured connection has no route: its original destination is unknown, or the service does not serve that port. The connection is refused.',
  AMBIT_ERR_POD_DISCOVERY: "The host's /proc cannot be read (not mounted into the agent, or missing privileges), so pods cannot be found on this node.",
  // authorization
  AMBIT_ERR_AUTHZ_POLICY_INVALID: 'An AuthorizationPolicy cannot be compiled (bad action, rule, CIDR, port or condition); the message names the field.',
  AMBIT_ERR_AUTHZ_CONTEXT: 'The authorization evaluator was called with a context it cannot use (a programming error, not bad YAML).',
  // operator commands
  AMBIT_ERR_CLI_UNREACHABLE: 'The command could not reach the agent, waypoint or control plane it talks to (check the address and that it runs).',
  AMBIT_ERR_CLI_BAD_RESPONSE: 'The admin endpoint answered something the command does not understand (another version, or not ambit).',
  AMBIT_ERR_CLI_USAGE: 'The command line is wrong (unknown flag, missing argument).',
  AMBIT_ERR_CLI_NOT_FOUND: 'The pod, service or node named on the command line does not exist in the configuration.',
  AMBIT_ERR_CLI_CONFIG: 'The command needs configuration it could not find or read (e.g. the demo state, a config file).',
  // control plane and its sources
  AMBIT_ERR_CONTROL_CONFIG: 'A control-plane option is missing or malformed; start-up fails with this message.',
  AMBIT_ERR_CONFIG_READ: 'A file of the configuration folder could not be read; the last good configuration stays in force.',
  AMBIT_ERR_UNAUTHENTICATED: 'A subscriber presented no token, or a token the control plane does not accept.',
  AMBIT_ERR_PERMISSION_DENIED: "An authenticated subscriber asked for something it is not entitled to (e.g. another node's identity).",
  AMBIT_ERR_SIGN_FAILED: 'The control plane could not sign a certificate for other reasons than authentication or permission.',
  AMBIT_ERR_DISCOVERY_PROTOCOL: 'A subscriber spoke the discovery protocol out of order (e.g. an ack before its hello); its stream is closed.',
  AMBIT_ERR_KUBE_API: 'The Kubernetes API server refused or failed a request; the source retries and keeps the last good snapshot.',
  AMBIT_ERR_KUBE_GONE: 'The Kubernetes API server no longer has the resourceVersion a watch resumed from (410 Gone); the source lists again.',
  AMBIT_ERR_WAYPOINT_DEPLOY: 'The control plane could not create or update the Deployment of a waypoint in Kubernetes.',
  // discovery client (agents and waypoints)
  AMBIT_ERR_DISCOVERY_CONFIG: 'A discovery client option is wrong (control-plane address, token file, CA).',
  AMBIT_ERR_DISCOVERY_APPLY: 'A configuration push could not be applied (bad JSON, delta on the wrong base version); it is nacked and the stream resumes.',
  AMBIT_ERR_VIEW_CACHE: 'The persisted configuration view on disk exists but cannot be used (corrupt, other format); it is ignored.',
  // demo
  AMBIT_ERR_DEMO_CLUSTER: 'The demo could not build or remove its network namespaces, cgroups or processes.',
  // eBPF capture
  AMBIT_ERR_EBPF_ADDON_UNAVAILABLE: 'The native addon is not built or cannot be loaded (run the build; it needs clang, libbpf-dev, bpftool, cmake).',
  AMBIT_ERR_EBPF_OBJECT_UNAVAILABLE: 'A BPF object file is missing (run the build).',
  AMBIT_ERR_EBPF_SYSCALL: "A bpf() or libbpf call failed; the error keeps the kernel's errno and libbpf's log.",
  AMBIT_ERR_EBPF_VERIFIER: "The kernel's verifier rejected a BPF program; the error keeps the verifier log.",
  AMBIT_ERR_EBPF_PERMISSION: 'Loading or attaching BPF needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN (run the agent privileged).',
  AMBIT_ERR_EBPF_MISSING_FEATURE: 'The kernel lacks a feature capture needs; the message names it and the first kernel version that has it.',
  AMBIT_ERR_EBPF_CONFIG: 'A capture option is wrong (cgroup path, pin directory, ports).',
  AMBIT_ERR_EBPF_BAD_POD: 'A pod handed to capture is malformed (bad port, address or netns path).',
  AMBIT_ERR_EBPF_CGROUP_MISSING: 'The cgroup to attach capture to does not exist.',
  AMBIT_ERR_EBPF_CGROUP_NOT_V2: 'The cgroup path is not on a cgroup v2 hierarchy (capture attaches to cgroup v2 only).',
  AMBIT_ERR_EBPF_NETNS_MISSING: "A pod's network namespace does not exist (the pod is gone).",
  AMBIT_ERR_EBPF_NETNS_IN_USE: "A pod's network namespace is already enrolled under another pod id.",
  AMBIT_ERR_EBPF_ALREADY_ENROLLED: 'The pod is already enrolled; release it first.',
  AMBIT_ERR_EBPF_LISTENER_IN_USE: "A capture port (15001/15006/15008) is already bound in the pod's netns (another agent holds it, or the app uses it).",
  AMBIT_ERR_EBPF_PIN_DIR: 'The BPF pin directory cannot be used (not on a bpffs mount, or not writable).',
  AMBIT_ERR_EBPF_PIN_INCOMPATIBLE: 'Maps pinned by a previous agent come from an incompatible build; remove the pins or close the old capture with cleanup.',
  AMBIT_ERR_EBPF_LAYOUT: "A BPF map does not match the layout the agent encodes (the BPF objects and the agent come from different builds).",
  AMBIT_ERR_EBPF_CLOSED: 'The capture was used after it was closed.',
  AMBIT_ERR_EBPF_NOT_A_SOCKET: 'An operation that needs a connected TCP socket with a file descriptor got something else (closed, TLS-wrapped, not listening).',
  AMBIT_ERR_SOURCE_CONNECT: "The agent could not connect to the destination from the client's own address (source address preservation).",
  AMBIT_ERR_SOURCE_SETUP: 'Source address preservation could not be set up in a pod netns (IP_TRANSPARENT, routing rule); needs CAP_NET_ADMIN.',
  // identity
  AMBIT_ERR_IDENTITY_INVALID: 'A string is not a SPIFFE ID of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.',
  AMBIT_ERR_IDENTITY_CERT_INVALID: 'A certificate is not a usable workload certificate (expired, wrong identity, no SPIFFE URI SAN, does not chain to the bundle).',
  AMBIT_ERR_IDENTITY_CSR_INVALID: 'A certificate signing request is malformed or asks for an identity it may not have.',
  AMBIT_ERR_IDENTITY_WEAK_KEY: 'A key is of a type or size ambit refuses (too weak).',
  AMBIT_ERR_IDENTITY_UNAVAILABLE: 'No usable certificate for an identity: the signer failed and nothing valid is cached. Connections needing it are refused.',
  AMBIT_ERR_IDENTITY_CA_STORAGE: 'The CA key or certificate cannot be read or written on the control plane.',
  AMBIT_ERR_IDENTITY_CA_REQUEST: 'A certificate request to the CA is refused (bad identity, bad validity).',
  // model
  AMBIT_ERR_MODEL_INPUT_UNREADABLE: 'A configuration path does not exist or cannot be read (permission, I/O error).',
  AMBIT_ERR_MODEL_INVALID_CHANGE: 'A change to the resource model cannot apply (a resource without kind or name, an unknown kind).',
  AMBIT_ERR_MODEL_INVALID_RESOURCE: 'A resource is invalid; its diagnostics name the file, line and field.',
  AMBIT_ERR_TELEMETRY_EXPRESSION: 'A Telemetry expression (access-log filter, metric tag value) is outside the CEL subset ambit evaluates; the message names the construct.',
  // TLS
  AMBIT_ERR_TLS_GROUPS: 'The --tls-groups list names a key-exchange group this OpenSSL does not offer, names one twice, uses OpenSSL list operators, or is empty.',
  // HBONE tunnel
  AMBIT_ERR_TUNNEL_CONNECT_TIMEOUT: 'The TCP connect or TLS handshake to a peer agent did not finish in time (a NetworkPolicy blocking HBONE port 15008?).',
  AMBIT_ERR_TUNNEL_CONNECT_REFUSED: 'Nothing listens on the peer\'s HBONE port (is the agent running on that node?).',
  AMBIT_ERR_TUNNEL_CONNECT_FAILED: 'Another socket-level failure reaching the peer (unreachable, reset during connect).',
  AMBIT_ERR_TUNNEL_PEER_UNTRUSTED: "The peer's certificate does not chain to the trust bundle, or is expired.",
  AMBIT_ERR_TUNNEL_PEER_IDENTITY: "The peer's certificate is trusted but certifies another identity than expected.",
  AMBIT_ERR_TUNNEL_HANDSHAKE: 'The peer closed the connection during or right after the handshake (it refused our certificate?).',
  AMBIT_ERR_TUNNEL_DENIED: "The peer answered 401: its authorization policy denies this connection.",
  AMBIT_ERR_TUNNEL_BAD_REQUEST: 'The peer answered 400 or 405: it found the CONNECT malformed.',
  AMBIT_ERR_TUNNEL_UPSTREAM_UNAVAILABLE: 'The peer answered 503: it could not reach the destination behind it.',
  AMBIT_ERR_TUNNEL_STATUS: 'The peer answered the CONNECT with another non-200 status.',
  AMBIT_ERR_TUNNEL_RESET: 'The stream or session was reset or closed before the CONNECT was answered.',
  AMBIT_ERR_TUNNEL_RESPONSE_TIMEOUT: 'The peer did not answer the CONNECT in time.',
  AMBIT_ERR_TUNNEL_INVALID_ARGUMENT: 'A tunnel call got a bad authority, address or option (a programming or configuration error).',
  AMBIT_ERR_TUNNEL_CLOSED: 'The tunnel pool or server was used after it was closed.',
  // waypoint
  AMBIT_ERR_WAYPOINT_CONFIG: 'A waypoint option or its configuration is wrong; the message names the field.',
  AMBIT_ERR_WAYPOINT_CLOSED: 'The waypoint was used after it was closed.',
  AMBIT_ERR_WAYPOINT_CONNECT: 'No endpoint of the destination could be connected (connect refused, HBONE refused, timeout).',
  AMBIT_ERR_WAYPOINT_TLS: 'TLS origination from a waypoint to an external endpoint failed (handshake refused, server certificate not trusted by the DestinationRule\'s CA or the system roots, or a name other than its sni/subjectAltNames); the request fails with 503 UF, never in plaintext.',
  AMBIT_ERR_WAYPOINT_JWKS: 'A JWKS could not be fetched or parsed; requests needing its keys are refused.',
  AMBIT_ERR_WAYPOINT_PER_TRY_TIMEOUT: 'An upstream attempt exceeded its per-try timeout (retried when the route allows).',
  AMBIT_ERR_WAYPOINT_UPSTREAM_RESET: 'The upstream closed or reset the connection before a complete response.',
} as const;

export type AmbitErrorCode = keyof typeof ERROR_CODES;
