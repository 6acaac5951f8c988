/**
 * The SNI peek against Node's TLS: real ClientHellos written by `tls.connect` for many server
 * names are parsed to the name the client sent, and to the name Node's own TLS server reads from
 * the same bytes (SNICallback); every truncation and every single-byte corruption of them gives
 * a result without throwing, and a truncation is never read as a different name.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { connect, createServer as createTlsServer } from 'node:tls';
import { Duplex } from 'node:stream';
import test from 'ava';
import { peekSni, sniHostMatches } from '../../../src/waypoint/sni.js';

/** The first TLS record a client sends to servername `name` (undefined: no SNI), over loopback. */
async function clientHello(name: string | undefined): Promise<Buffer> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const got = new Promise<Buffer>((resolve) => {
      server.once('connection', (s: Socket) => {
        let buf = Buffer.alloc(0);
        s.on('data', (c: Buffer) => {
          buf = Buffer.concat([buf, c]);
          if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
            resolve(buf.subarray(0, 5 + buf.readUInt16BE(3)));
            s.destroy();
          }
        });
        s.on('error', () => {});
      });
    });
    const c = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, rejectUnauthorized: false, ...(name !== undefined ? { servername: name } : {}) });
    c.on('error', () => {});
    const hello = await got;
    c.destroy();
    return hello;
  } finally {
    server.close();
  }
}

/** The server name Node's TLS server reads from `hello` (undefined: none). */
async function nodeReads(hello: Buffer): Promise<string | undefined> {
  return new Promise((resolve) => {
    let seen: string | undefined;
    const srv = createTlsServer({
      SNICallback: (n, cb) => {
        seen = n;
        cb(new Error('stop here'), undefined);
      },
    });
    const [near, far] = pair();
    srv.emit('connection', far);
    const done = () => resolve(seen);
    far.on('close', done);
    far.on('error', done);
    near.write(hello);
    setTimeout(() => {
      near.destroy();
      far.destroy();
      done();
    }, 200).unref();
  });
}

/** Two connected in-memory Duplexes. */
function pair(): [Duplex, Duplex] {
  let a: Duplex;
  let b: Duplex;
  const mk = (other: () => Duplex) => new Duplex({ read() {}, write(chunk, _e, cb) { other().push(chunk); cb(); }, final(cb) { other().push(null); cb(); } });
  a = mk(() => b);
  b = mk(() => a);
  return [a, b];
}

const NAMES = [
  'a.b', 'echo.demo.svc.cluster.local', 'API.Example.COM', 'x'.repeat(63) + '.example.com', 'with-dash.example', 'under_score.test', 'a1.b2.c3.d4.e5.f6',
  ...Array.from({ length: 40 }, (_, i) => `svc-${i}.ns-${i % 7}.${'l'.repeat(1 + ((i * 37) % 200))}.example`),
  ['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(61)].join('.'),
];

test('real ClientHellos from tls.connect: the peek reads the name the client sent and Node\'s TLS server reads', async (t) => {
  for (const name of NAMES) {
    const hello = await clientHello(name);
    const r = peekSni(hello);
    t.deepEqual(r, { kind: 'sni', serverName: name.toLowerCase() }, name);
    t.is((await nodeReads(hello))?.toLowerCase(), name.toLowerCase(), `Node reads ${name}`);
  }
  const none = await clientHello(undefined);
  t.deepEqual(peekSni(none), { kind: 'no-sni' }, 'tls.connect to an IP address sends no SNI');
  t.is(await nodeReads(none), undefined);
});

test('malformed input never throws: every truncation is need-more or malformed, every byte flip gives some result', async (t) => {
  const hello = await clientHello('flip.example.com');
  const wrong: string[] = [];
  for (let n = 0; n < hello.length; n++) {
    const r = peekSni(hello.subarray(0, n));
    if (r.kind !== 'need-more') wrong.push(`${n}: ${JSON.stringify(r)}`);
  }
  t.deepEqual(wrong, [], 'a prefix of a valid record is need-more');
  const kinds = new Set<string>();
  for (let i = 0; i < hello.length; i++) {
    for (const v of [0x00, 0xff, hello[i]! ^ 0x01]) {
      const b = Buffer.from(hello);
      b[i] = v;
      kinds.add(peekSni(b).kind); // must not throw
    }
  }
  t.true(kinds.has('malformed'));
  const lyingLength = Buffer.from(hello);
  lyingLength.writeUInt16BE(0xffff, hello.indexOf(Buffer.from('flip.example.com')) - 2);
  t.is(peekSni(lyingLength).kind, 'malformed');
  t.deepEqual(peekSni(Buffer.from('GET / HTTP/1.1\r\n')), { kind: 'malformed', reason: 'not a TLS handshake record' });
  t.is(peekSni(Buffer.from([0x16, 0x03, 0x01, 0x40, 0x01])).kind, 'malformed', 'record longer than TLS allows');
  const junkKinds = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const junk = Buffer.from(Array.from({ length: 5 + ((i * 7919) % 300) }, (_, j) => (i * 31 + j * 17) & 0xff));
    junk[0] = 0x16;
    junk[1] = 0x03;
    junkKinds.add(peekSni(junk).kind);
  }
  t.deepEqual([...junkKinds].filter((k) => k !== 'malformed' && k !== 'need-more'), [], '2000 junk records: refused or incomplete, never a name');
});

test('TLSRoute hostname matching: exact, or a wildcard over one or more labels, never the bare suffix', (t) => {
  t.true(sniHostMatches('api.example.com', 'api.example.com'));
  t.false(sniHostMatches('api.example.com', 'www.example.com'));
  t.true(sniHostMatches('*.example.com', 'a.example.com'));
  t.true(sniHostMatches('*.example.com', 'a.b.example.com'));
  t.false(sniHostMatches('*.example.com', 'example.com'));
  t.false(sniHostMatches('*.example.com', 'badexample.com'));
});
