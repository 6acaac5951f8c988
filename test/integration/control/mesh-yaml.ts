/**
 * Small mesh YAML for the control-plane tests, in the shape `ambit analyze` accepts.
 */
export function namespaceYaml(name: string, ambient = true): string {
  return `apiVersion: v1
kind: Namespace
metadata:
  name: ${name}
  labels:
    ambit.dev/dataplane-mode: ${ambient ? 'ambient' : 'none'}
`;
}

export function nodeYaml(name: string, ip: string): string {
  return `apiVersion: v1
kind: Node
metadata:
  name: ${name}
status:
  addresses:
    - type: InternalIP
      address: ${ip}
`;
}

export function podYaml(o: { name: string; ns: string; node: string; ip: string; app: string; sa?: string; version?: string }): string {
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${o.name}
  namespace: ${o.ns}
  labels:
    app: ${o.app}
    version: ${o.version ?? 'v1'}
spec:
  nodeName: ${o.node}
  serviceAccountName: ${o.sa ?? o.app}
  containers:
    - name: main
      ports:
        - containerPort: 8080
          name: http
status:
  phase: Running
  podIP: ${o.ip}
`;
}

export function serviceYaml(o: { name: string; ns: string; vip: string; app: string }): string {
  return `apiVersion: v1
kind: Service
metadata:
  name: ${o.name}
  namespace: ${o.ns}
spec:
  clusterIP: ${o.vip}
  selector:
    app: ${o.app}
  ports:
    - name: http
      port: 80
      targetPort: 8080
`;
}

export function serviceAccountYaml(name: string, ns: string): string {
  return `apiVersion: v1
kind: ServiceAccount
metadata:
  name: ${name}
  namespace: ${ns}
`;
}

export function denyPolicyYaml(name: string, ns: string, app: string): string {
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ${name}
  namespace: ${ns}
spec:
  selector:
    matchLabels:
      app: ${app}
  action: DENY
  rules:
    - from:
        - source:
            namespaces: ["blocked"]
`;
}
