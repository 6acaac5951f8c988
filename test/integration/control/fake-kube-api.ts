/**
 * An HTTP server that speaks the Kubernetes API's list/watch protocol for the kinds the control
 * plane uses, since no real API server can run on these machines. Kept faithful to
 * kube-apiserver where the control plane depends on it:
 * - one cluster-wide, monotonically increasing resourceVersion (etcd revision), as a string;
 * - lists: `{kind: <Kind>List, metadata: {resourceVersion, continue?}, items}` with items that
 *   carry no kind/apiVersion; `limit`/`continue` pagination served from the list's snapshot;
 * - watches (`?watch=true&resourceVersion=RV`): newline-delimited JSON events ADDED, MODIFIED,
 *   DELETED after RV in order, then live; `allowWatchBookmarks=true` adds periodic BOOKMARK
 *   events carrying only `metadata.resourceVersion`; `timeoutSeconds` ends the stream; RV ""
 *   or "0" starts with a synthetic ADDED per existing object;
 * - an RV older than the compaction point answers 200 with an ERROR event holding a Status with
 *   code 410 / reason Expired (as the watch cache does), then closes;
 * - Status objects for errors (401 without the bearer token, 404 for kinds not installed);
 * - TokenReview (POST /apis/authentication.k8s.io/v1/tokenreviews) from a table of tokens;
 * - HTTPS with a serving certificate (SANs 127.0.0.1 and localhost) from a CA minted per process,
 *   `Content-Type: application/json` on every answer, watches as chunked streams; a client
 *   (@kubernetes/client-node) reaches it through `writeKubeconfig()`, with the CA and a token.
 * Test controls: put/remove objects, compact history, cut every open watch (optionally with a
 * 410 ERROR first), fail the next N requests with a status.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import forge from 'node-forge';
import { forgeSigningKey, generateRsaKeyPair } from '../../../src/identity/keys.js';

export interface FakeKind { group: string; version: string; kind: string; plural: string }

type Obj = Record<string, unknown> & { metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; [k: string]: unknown } };
interface Event { rev: number; type: 'ADDED' | 'MODIFIED' | 'DELETED'; plural: string; object: Obj }

export interface FakeKubeOptions {
  /** Bearer token every request must carry (default: none required). */
  token?: string;
  /** Interval between BOOKMARK events on watches that allow them, ms (default 200). */
  bookmarkIntervalMs?: number;
  /** Plurals answered with 404 (CRDs not installed). */
  notInstalled?: string[];
  /** TokenReview answers by token. */
  tokenReviews?: Record<string, { username: string; extra?: Record<string, string[]> }>;
}

export class FakeKubeApi {
  private server: Server | undefined;
  private rev = 100;
  private compactedRev = 0;
  private readonly objects = new Map<string, Map<string, Obj>>();
  private readonly history: Event[] = [];
  private readonly watchers = new Set<{ plural: string; res: ServerResponse; send: (e: unknown) => void; close: () => void }>();
  private readonly kinds = new Map<string, FakeKind>();
  private failures: { n: number; status: number } = { n: 0, status: 500 };
  private readonly snapshots = new Map<string, Obj[]>();
  /** Requests seen, by "<verb> <plural>" (verb: list | watch | tokenreview). */
  readonly requests = new Map<string, number>();

  constructor(kinds: readonly FakeKind[], private readonly opts: FakeKubeOptions = {}) {
    for (const k of kinds) { this.kinds.set(k.plural, k); this.objects.set(k.plural, new Map()); }
  }

  get resourceVersion(): string { return String(this.rev); }
  count(what: string): number { return this.requests.get(what) ?? 0; }

  /** The CA that signed the serving certificate (PEM), after start(). */
  caPem = '';
  /** https://127.0.0.1:PORT, after start(). */
  url = '';

  async start(): Promise<string> {
    const tls = await mintServingCertificate();
    this.caPem = tls.caPem;
    this.server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.url = `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  /** Writes a kubeconfig for this server (its CA, bearer `token`) into `dir`; returns its path. */
  writeKubeconfig(dir: string, token: string, server = this.url): string {
    const f = join(dir, 'kubeconfig');
    writeFileSync(f, JSON.stringify({
      apiVersion: 'v1', kind: 'Config', 'current-context': 'fake',
      clusters: [{ name: 'fake', cluster: { server, 'certificate-authority-data': Buffer.from(this.caPem).toString('base64') } }],
      users: [{ name: 'cp', user: { token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'cp' } }],
    }), { mode: 0o600 });
    return f;
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.close();
    await new Promise<void>((r) => { this.server?.close(() => r()); this.server?.closeAllConnections(); });
  }

  /** Create or replace an object (kind from `plural`); returns its new resourceVersion. */
  put(plural: string, obj: { metadata: { name: string; namespace?: string; [k: string]: unknown }; [k: string]: unknown }): string {
    const store = this.objects.get(plural);
    if (store === undefined) throw new Error(`fake API: unknown plural ${plural}`);
    const key = `${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
    const exists = store.has(key);
    this.rev++;
    const o = structuredClone(obj) as Obj;
    o.metadata.resourceVersion = String(this.rev);
    o.metadata.uid ??= `uid-${plural}-${key}`;
    const k = this.kinds.get(plural)!;
    o['apiVersion'] = k.group === '' ? k.version : `${k.group}/${k.version}`;
    o['kind'] = k.kind;
    store.set(key, o);
    this.emit({ rev: this.rev, type: exists ? 'MODIFIED' : 'ADDED', plural, object: o });
    return o.metadata.resourceVersion;
  }

  remove(plural: string, namespace: string, name: string): void {
    const store = this.objects.get(plural);
    const key = `${namespace}/${name}`;
    const o = store?.get(key);
    if (store === undefined || o === undefined) throw new Error(`fake API: no ${plural} ${key}`);
    store.delete(key);
    this.rev++;
    const gone = structuredClone(o);
    gone.metadata.resourceVersion = String(this.rev);
    this.emit({ rev: this.rev, type: 'DELETED', plural, object: gone });
  }

  /** Forget history up to now: watches from an older resourceVersion get 410. */
  compact(): void {
    this.compactedRev = this.rev;
    this.history.length = 0;
  }

  /** Close every open watch (API server restart / watch timeout); with `gone`, send a 410 ERROR first. */
  cutWatches(gone = false): void {
    for (const w of [...this.watchers]) {
      if (gone) w.send({ type: 'ERROR', object: status(410, 'Expired', 'too old resource version') });
      w.close();
    }
  }

  /** The next `n` requests (list, watch or review) fail with `status`. */
  failNext(n: number, statusCode = 500): void { this.failures = { n, status: statusCode }; }

  private emit(e: Event): void {
    this.history.push(e);
    for (const w of this.watchers) if (w.plural === e.plural) w.send({ type: e.type, object: e.object });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const json = (code: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (this.opts.token !== undefined && req.headers.authorization !== `Bearer ${this.opts.token}`) {
      json(401, status(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    if (this.failures.n > 0) {
      this.failures.n--;
      json(this.failures.status, status(this.failures.status, 'InternalError', 'injected failure'));
      return;
    }
    if (req.method === 'POST' && url.pathname === '/apis/authentication.k8s.io/v1/tokenreviews') {
      this.requests.set('tokenreview', this.count('tokenreview') + 1);
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { spec?: { token?: string } };
        const who = this.opts.tokenReviews?.[body.spec?.token ?? ''];
        json(201, {
          apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', metadata: { creationTimestamp: null }, spec: {},
          status: who ? { authenticated: true, user: { username: who.username, uid: 'u', groups: ['system:serviceaccounts'], extra: who.extra ?? {} }, audiences: ['https://kubernetes.default.svc'] } : { user: {}, error: '[invalid bearer token, token lookup failed]' },
        });
      });
      return;
    }
    const st = /^\/apis\/[^/]+\/[^/]+\/namespaces\/([^/]+)\/([a-z]+)\/([^/]+)\/status$/.exec(url.pathname);
    if (req.method === 'PUT' && st !== null) { this.putStatus(st[2] as string, st[1] as string, st[3] as string, req, json); return; }
    const m = /^\/(?:api\/v1|apis\/[^/]+\/[^/]+)\/([a-z]+)$/.exec(url.pathname);
    const plural = m?.[1];
    const kind = plural !== undefined ? this.kinds.get(plural) : undefined;
    if (req.method === 'GET' && plural !== undefined && this.opts.notInstalled?.includes(plural)) this.requests.set(`list ${plural}`, this.count(`list ${plural}`) + 1);
    if (req.method !== 'GET' || kind === undefined || plural === undefined || this.opts.notInstalled?.includes(plural)) {
      json(404, status(404, 'NotFound', 'the server could not find the requested resource'));
      return;
    }
    if (url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1') { this.watch(plural, kind, url, res); return; }
    this.list(plural, kind, url, json);
  }

  /**
   * PUT of the status subresource, as kube-apiserver does it: the body's metadata.resourceVersion
   * must be the object's (else 409 Conflict), only `status` is taken, the resourceVersion moves on
   * and watchers see MODIFIED.
   */
  private putStatus(plural: string, namespace: string, name: string, req: IncomingMessage, json: (c: number, b: unknown) => void): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      this.requests.set(`status ${plural}`, this.count(`status ${plural}`) + 1);
      const o = this.objects.get(plural)?.get(`${namespace}/${name}`);
      if (o === undefined) { json(404, status(404, 'NotFound', `${plural} ${namespace}/${name} not found`)); return; }
      const body = JSON.parse(Buffer.concat(chunks).toString()) as Obj;
      if (body.metadata?.resourceVersion !== o.metadata.resourceVersion) {
        json(409, status(409, 'Conflict', 'the object has been modified; please apply your changes to the latest version and try again'));
        return;
      }
      this.rev++;
      const next = structuredClone(o);
      next['status'] = body['status'];
      next.metadata.resourceVersion = String(this.rev);
      this.objects.get(plural)?.set(`${namespace}/${name}`, next);
      this.emit({ rev: this.rev, type: 'MODIFIED', plural, object: next });
      json(200, next);
    });
  }

  /** An object as stored (for assertions). */
  get(plural: string, namespace: string, name: string): Record<string, unknown> | undefined {
    return this.objects.get(plural)?.get(`${namespace}/${name}`);
  }

  private list(plural: string, kind: FakeKind, url: URL, json: (c: number, b: unknown) => void): void {
    this.requests.set(`list ${plural}`, this.count(`list ${plural}`) + 1);
    const limit = Number(url.searchParams.get('limit') ?? '0');
    const cont = url.searchParams.get('continue');
    let rv: string;
    let offset = 0;
    let items: Obj[];
    if (cont) {
      const [crv, coff] = Buffer.from(cont, 'base64').toString('utf8').split(':');
      const snap = this.snapshots.get(`${plural}@${crv}`);
      if (snap === undefined || crv === undefined) { json(410, status(410, 'Expired', 'continue token expired')); return; }
      rv = crv; offset = Number(coff); items = snap;
    } else {
      rv = String(this.rev);
      items = [...this.objects.get(plural)!.values()].sort((a, b) => key(a).localeCompare(key(b)));
      if (limit > 0 && items.length > limit) this.snapshots.set(`${plural}@${rv}`, items);
    }
    const page = limit > 0 ? items.slice(offset, offset + limit) : items.slice(offset);
    const next = limit > 0 && offset + limit < items.length ? Buffer.from(`${rv}:${offset + limit}`).toString('base64') : undefined;
    json(200, {
      kind: `${kind.kind}List`, apiVersion: kind.group === '' ? kind.version : `${kind.group}/${kind.version}`,
      metadata: { resourceVersion: rv, ...(next ? { continue: next } : {}) },
      items: page.map(({ kind: _k, apiVersion: _a, ...rest }) => rest),
    });
  }

  private watch(plural: string, kind: FakeKind, url: URL, res: ServerResponse): void {
    this.requests.set(`watch ${plural}`, this.count(`watch ${plural}`) + 1);
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    const send = (e: unknown) => { if (!res.writableEnded) res.write(JSON.stringify(e) + '\n'); };
    let bookmark: NodeJS.Timeout | undefined;
    let timeout: NodeJS.Timeout | undefined;
    const w = {
      plural, res, send,
      close: () => { clearInterval(bookmark); clearTimeout(timeout); this.watchers.delete(w); if (!res.writableEnded) res.end(); },
    };
    const rvParam = url.searchParams.get('resourceVersion') ?? '';
    if (rvParam === '' || rvParam === '0') {
      for (const o of this.objects.get(plural)!.values()) send({ type: 'ADDED', object: o });
    } else {
      const from = Number(rvParam);
      if (!Number.isFinite(from) || from < this.compactedRev) {
        send({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${rvParam} (${this.compactedRev})`) });
        res.end();
        return;
      }
      for (const e of this.history) if (e.plural === plural && e.rev > from) send({ type: e.type, object: e.object });
    }
    this.watchers.add(w);
    res.on('close', () => w.close());
    if (url.searchParams.get('allowWatchBookmarks') === 'true') {
      bookmark = setInterval(() => send({
        type: 'BOOKMARK',
        object: { kind: kind.kind, apiVersion: kind.group === '' ? kind.version : `${kind.group}/${kind.version}`, metadata: { resourceVersion: String(this.rev) } },
      }), this.opts.bookmarkIntervalMs ?? 200);
    }
    const t = Number(url.searchParams.get('timeoutSeconds') ?? '0');
    if (t > 0) timeout = setTimeout(() => w.close(), t * 1000);
  }
}

let minted: Promise<{ caPem: string; certPem: string; keyPem: string }> | undefined;
/** A throwaway CA and a serving certificate for 127.0.0.1 / localhost, one per test process. */
function mintServingCertificate(): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  minted ??= mint();
  return minted;
}

async function mint(): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const [caKeys, keys] = await Promise.all([generateRsaKeyPair(), generateRsaKeyPair()]);
  const make = (publicKeyPem: string, serial: string, cn: string) => {
    const c = forge.pki.createCertificate();
    c.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
    c.serialNumber = serial;
    c.validity.notBefore = new Date(Date.now() - 60_000);
    c.validity.notAfter = new Date(Date.now() + 24 * 3600_000);
    c.setSubject([{ name: 'commonName', value: cn }]);
    return c;
  };
  const ca = make(caKeys.publicKeyPem, '01', 'fake-kube-apiserver-ca');
  ca.setIssuer(ca.subject.attributes);
  ca.setExtensions([{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, critical: true }]);
  ca.sign(forgeSigningKey(caKeys.privateKeyPem), forge.md.sha256.create());
  const cert = make(keys.publicKeyPem, '02', 'kube-apiserver');
  cert.setIssuer(ca.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }, { type: 2, value: 'localhost' }] },
  ]);
  cert.sign(forgeSigningKey(caKeys.privateKeyPem), forge.md.sha256.create());
  return { caPem: forge.pki.certificateToPem(ca), certPem: forge.pki.certificateToPem(cert), keyPem: keys.privateKeyPem };
}

function key(o: Obj): string { return `${o.metadata.namespace ?? ''}/${o.metadata.name}`; }

function status(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}
