/**
 * The subset of CEL (Common Expression Language) that Istio users write in Telemetry resources:
 * access-log filters (`filter.expression`) and metric tag values (`tagOverrides.*.value`),
 * compiled once into a closure over a fixed attribute set, so a proxy evaluates a filter per
 * request without parsing anything.
 *
 * Supported: int, string ('…' or "…") and bool literals, lists of literals; the attributes in
 * ATTRIBUTES; `request.headers['name']` (lower-cased, absent → error, as in Envoy); `== != < <=
 * > >=` on equal types; `&& || !` and parentheses; `x in [a, b]` and `'name' in
 * request.headers`; the string methods `startsWith`, `endsWith`, `contains` and `matches`
 * (JavaScript regex syntax, which agrees with RE2 on what Istio users write). Anything else
 * (other functions, macros, ternaries, arithmetic, floats, unknown attributes, mixed types) is a
 * compile error (ExpressionError) naming the construct, never a filter that is silently true.
 *
 * Invariants, as CEL defines them:
 * - An attribute the request does not have (HTTP attributes of a TCP connection, a missing
 *   header) makes its comparison an error, not false: `&&` and `||` absorb an error when the
 *   other side decides (`false && err` is false, `true || err` is true), otherwise the error
 *   reaches the top. A filter whose result is an error does not log (Envoy's behaviour); a tag
 *   value that is an error is `unknown`.
 * - `compileExpression` throws only ExpressionError; evaluation never throws.
 */
import { AmbitError } from '../../util/errors.js';

export type ValueType = 'int' | 'string' | 'bool';

export interface AttributeInfo {
  readonly type: ValueType | 'map';
  /** Only HTTP requests (the waypoint) have it; on a TCP connection (the agent) it is absent. */
  readonly http: boolean;
  readonly doc: string;
}

/** The attributes an expression may read (Envoy's attribute names). */
export const ATTRIBUTES = {
  'response.code': { type: 'int', http: true, doc: 'HTTP status code' },
  'request.method': { type: 'string', http: true, doc: 'HTTP method' },
  'request.path': { type: 'string', http: true, doc: 'path with query string' },
  'request.url_path': { type: 'string', http: true, doc: 'path without query string' },
  'request.host': { type: 'string', http: true, doc: 'the :authority (Host)' },
  'request.protocol': { type: 'string', http: true, doc: 'HTTP/1.1 or HTTP/2' },
  'request.useragent': { type: 'string', http: true, doc: 'User-Agent header' },
  'request.id': { type: 'string', http: true, doc: 'x-request-id' },
  'request.headers': { type: 'map', http: true, doc: "request headers, by lower-case name: request.headers['x-user']" },
  'connection.mtls': { type: 'bool', http: false, doc: 'the peer came over mutual TLS (HBONE)' },
  'connection.uri_san_peer_certificate': { type: 'string', http: false, doc: "the peer's SPIFFE ID (absent without mTLS)" },
  'source.address': { type: 'string', http: false, doc: 'client IP' },
  'source.port': { type: 'int', http: false, doc: 'client port' },
  'destination.address': { type: 'string', http: false, doc: 'destination IP (service VIP or pod)' },
  'destination.port': { type: 'int', http: false, doc: 'destination port' },
} as const satisfies Record<string, AttributeInfo>;

export type AttributeName = keyof typeof ATTRIBUTES;
export type Value = string | number | boolean;

/** What a proxy gives an expression to read; undefined means the attribute is absent. */
export interface Attributes {
  get(name: Exclude<AttributeName, 'request.headers'>): Value | undefined;
  /** A request header by lower-case name (joined with `,` when repeated). */
  header(name: string): string | undefined;
}

/** An expression outside the supported subset; the message names the construct. */
export class ExpressionError extends AmbitError {
  constructor(message: string) {
    super('AMBIT_ERR_TELEMETRY_EXPRESSION', message);
    this.name = 'ExpressionError';
  }
}

/** Evaluation error (CEL `no_such_attribute` and friends). */
const ERR: unique symbol = Symbol('cel-error');
type Result = Value | typeof ERR;

export interface CompiledExpression {
  readonly source: string;
  readonly type: ValueType;
  /** Attributes it reads that only HTTP requests have (an agent-side filter on them never holds). */
  readonly httpAttributes: readonly string[];
  /** The value, or undefined when the evaluation is an error (an absent attribute). */
  evaluate(a: Attributes): Value | undefined;
}

interface Node {
  readonly type: ValueType | 'map' | 'list';
  readonly elem?: ValueType;
  readonly eval: (a: Attributes) => Result | readonly Value[];
  readonly literal?: boolean;
}

// ------------------------------------------------------------------------------- lexer

type Tok =
  | { k: 'int'; v: number; at: number }
  | { k: 'str'; v: string; at: number }
  | { k: 'id'; v: string; at: number }
  | { k: 'op'; v: string; at: number }
  | { k: 'end'; at: number };

const OPS = ['==', '!=', '<=', '>=', '&&', '||', '<', '>', '!', '(', ')', '[', ']', '.', ',', '?', ':', '+', '-', '*', '/', '%', '{', '}'];

function lex(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i] as string;
    if (/\s/.test(c)) { i++; continue; }
    if (/[0-9]/.test(c)) {
      const m = /^(0x[0-9a-fA-F]+|[0-9]+)(\.[0-9]+|[eE][+-]?[0-9]+)?[uU]?/.exec(src.slice(i)) as RegExpExecArray;
      if (m[2] !== undefined) throw new ExpressionError(`floating-point number ${m[0]} at ${i + 1}: only integers are supported`);
      out.push({ k: 'int', v: Number(m[1]), at: i });
      i += m[0].length;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i)) as RegExpExecArray;
      out.push({ k: 'id', v: m[0], at: i });
      i += m[0].length;
      continue;
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      let s = '';
      for (; j < src.length && src[j] !== c; j++) {
        if (src[j] === '\\') {
          const e = src[++j];
          const map: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"' };
          if (e === undefined || map[e] === undefined) throw new ExpressionError(`unsupported escape \\${e ?? ''} in a string at ${j + 1}`);
          s += map[e];
        } else s += src[j];
      }
      if (j >= src.length) throw new ExpressionError(`unterminated string starting at ${i + 1}`);
      out.push({ k: 'str', v: s, at: i });
      i = j + 1;
      continue;
    }
    const op = OPS.find((o) => src.startsWith(o, i));
    if (op === undefined) throw new ExpressionError(`unexpected character ${JSON.stringify(c)} at ${i + 1}`);
    out.push({ k: 'op', v: op, at: i });
    i += op.length;
  }
  out.push({ k: 'end', at: src.length });
  return out;
}

// ------------------------------------------------------------------------------ parser

const METHODS = ['startsWith', 'endsWith', 'contains', 'matches'] as const;
const ATTR_NAMES = Object.keys(ATTRIBUTES) as AttributeName[];
const ROOTS = new Set(ATTR_NAMES.map((n) => n.split('.')[0] as string));

class Parser {
  private i = 0;
  readonly http = new Set<string>();
  constructor(private readonly toks: Tok[]) {}

  private peek(): Tok { return this.toks[this.i] as Tok; }
  private next(): Tok { return this.toks[this.i++] as Tok; }
  private isOp(v: string): boolean { const t = this.peek(); return t.k === 'op' && t.v === v; }
  private expect(v: string): void {
    const t = this.next();
    if (t.k !== 'op' || t.v !== v) throw new ExpressionError(`expected '${v}' at ${t.at + 1}`);
  }

  parse(): Node {
    const n = this.or();
    const t = this.peek();
    if (t.k !== 'end') {
      if (t.k === 'op' && t.v === '?') throw new ExpressionError('the conditional operator ?: is not supported');
      throw new ExpressionError(`unexpected ${describe(t)} at ${t.at + 1}`);
    }
    return n;
  }

  private or(): Node {
    let l = this.and();
    while (this.isOp('||')) { this.next(); const r = this.and(); l = logical('||', l, r); }
    return l;
  }

  private and(): Node {
    let l = this.rel();
    while (this.isOp('&&')) { this.next(); const r = this.rel(); l = logical('&&', l, r); }
    return l;
  }

  private rel(): Node {
    const l = this.unary();
    const t = this.peek();
    if (t.k === 'op' && ['==', '!=', '<', '<=', '>', '>='].includes(t.v)) { this.next(); return compare(t.v, l, this.unary()); }
    if (t.k === 'id' && t.v === 'in') { this.next(); return membership(l, this.unary()); }
    if (t.k === 'op' && ['+', '-', '*', '/', '%'].includes(t.v)) throw new ExpressionError(`arithmetic (${t.v}) is not supported`);
    return l;
  }

  private unary(): Node {
    if (this.isOp('!')) {
      this.next();
      const x = this.unary();
      if (x.type !== 'bool') throw new ExpressionError(`'!' needs a bool, got ${x.type}`);
      return { type: 'bool', eval: (a) => { const v = x.eval(a); return v === ERR ? ERR : !v; } };
    }
    if (this.isOp('-')) {
      this.next();
      const t = this.next();
      if (t.k !== 'int') throw new ExpressionError('unary minus is only supported before an integer literal');
      return lit(-t.v);
    }
    return this.member();
  }

  private member(): Node {
    const t = this.next();
    if (t.k === 'int') return lit(t.v);
    if (t.k === 'str') return this.methods(lit(t.v));
    if (t.k === 'op' && t.v === '(') { const n = this.or(); this.expect(')'); return this.methods(n); }
    if (t.k === 'op' && t.v === '[') return this.list();
    if (t.k === 'op' && t.v === '{') throw new ExpressionError('map literals are not supported');
    if (t.k !== 'id') throw new ExpressionError(`unexpected ${describe(t)} at ${t.at + 1}`);
    if (t.v === 'true' || t.v === 'false') return lit(t.v === 'true');
    if (t.v === 'null') throw new ExpressionError('null is not supported');
    if (this.isOp('(')) throw new ExpressionError(`function ${t.v}() is not supported (supported: the methods ${METHODS.join(', ')} on strings)`);
    if (!ROOTS.has(t.v)) throw new ExpressionError(`unknown attribute '${t.v}' (known: ${ATTR_NAMES.join(', ')})`);
    // Attribute path: a.b.c until it names an attribute.
    let path = t.v;
    while (!(path in ATTRIBUTES)) {
      if (!this.isOp('.')) throw new ExpressionError(`unknown attribute '${path}' (known: ${ATTR_NAMES.join(', ')})`);
      this.next();
      const id = this.next();
      if (id.k !== 'id') throw new ExpressionError(`expected a name after '${path}.' at ${id.at + 1}`);
      path = `${path}.${id.v}`;
      if (!ATTR_NAMES.some((n) => n === path || n.startsWith(`${path}.`))) throw new ExpressionError(`unknown attribute '${path}' (known: ${ATTR_NAMES.join(', ')})`);
    }
    const name = path as AttributeName;
    const info: AttributeInfo = ATTRIBUTES[name];
    if (info.http) this.http.add(name);
    if (name === 'request.headers') {
      if (this.isOp('.')) throw new ExpressionError("request.headers.NAME is not supported: write request.headers['name']");
      if (!this.isOp('[')) return { type: 'map', eval: () => ERR };
      this.next();
      const k = this.next();
      if (k.k !== 'str') throw new ExpressionError("request.headers needs a string literal index: request.headers['x-user']");
      this.expect(']');
      const header = k.v.toLowerCase();
      return this.methods({ type: 'string', eval: (a) => a.header(header) ?? ERR });
    }
    const attr = name as Exclude<AttributeName, 'request.headers'>;
    return this.methods({ type: info.type as ValueType, eval: (a) => a.get(attr) ?? ERR });
  }

  private list(): Node {
    const items: Value[] = [];
    let elem: ValueType | undefined;
    while (!this.isOp(']')) {
      const n = this.unary();
      if (n.literal !== true) throw new ExpressionError('list items must be literals');
      if (elem !== undefined && n.type !== elem) throw new ExpressionError(`a list mixes ${elem} and ${n.type}`);
      elem = n.type as ValueType;
      items.push(n.eval({} as Attributes) as Value);
      if (!this.isOp(']')) this.expect(',');
    }
    this.next();
    if (elem === undefined) throw new ExpressionError('empty lists are not supported');
    return { type: 'list', elem, eval: () => items };
  }

  private methods(target: Node): Node {
    let n = target;
    while (this.isOp('.')) {
      this.next();
      const id = this.next();
      if (id.k !== 'id') throw new ExpressionError(`expected a method name at ${id.at + 1}`);
      if (!this.isOp('(')) throw new ExpressionError(`field selection .${id.v} on a ${n.type} is not supported`);
      if (!(METHODS as readonly string[]).includes(id.v)) throw new ExpressionError(`method ${id.v}() is not supported (supported: ${METHODS.join(', ')})`);
      if (n.type !== 'string') throw new ExpressionError(`${id.v}() needs a string, got ${n.type}`);
      this.next();
      const argTok = this.next();
      if (argTok.k !== 'str') throw new ExpressionError(`${id.v}() takes one string literal`);
      this.expect(')');
      n = stringMethod(id.v as (typeof METHODS)[number], n, argTok.v);
    }
    if (this.isOp('[')) throw new ExpressionError(`indexing a ${n.type} is not supported`);
    return n;
  }
}

function describe(t: Tok): string {
  return t.k === 'end' ? 'end of expression' : t.k === 'op' ? `'${t.v}'` : t.k === 'str' ? `string ${JSON.stringify(t.v)}` : `'${String(t.v)}'`;
}

function lit(v: Value): Node {
  return { type: typeof v === 'number' ? 'int' : typeof v === 'string' ? 'string' : 'bool', eval: () => v, literal: true };
}

function scalar(n: Node, what: string): void {
  if (n.type === 'map' || n.type === 'list') throw new ExpressionError(`${what} cannot take a ${n.type}`);
}

function logical(op: '&&' | '||', l: Node, r: Node): Node {
  if (l.type !== 'bool' || r.type !== 'bool') throw new ExpressionError(`'${op}' needs bools, got ${l.type} and ${r.type}`);
  const decide = op === '&&' ? false : true;
  return {
    type: 'bool',
    eval: (a) => {
      const x = l.eval(a);
      if (x === decide) return decide;
      const y = r.eval(a);
      if (y === decide) return decide;
      return x === ERR || y === ERR ? ERR : !decide;
    },
  };
}

function compare(op: string, l: Node, r: Node): Node {
  scalar(l, `'${op}'`);
  scalar(r, `'${op}'`);
  if (l.type !== r.type) throw new ExpressionError(`'${op}' compares ${l.type} with ${r.type}: CEL has no implicit conversions`);
  if (l.type === 'bool' && op !== '==' && op !== '!=') throw new ExpressionError(`'${op}' does not order bools`);
  const f: (x: Value, y: Value) => boolean =
    op === '==' ? (x, y) => x === y : op === '!=' ? (x, y) => x !== y : op === '<' ? (x, y) => x < y : op === '<=' ? (x, y) => x <= y : op === '>' ? (x, y) => x > y : (x, y) => x >= y;
  return {
    type: 'bool',
    eval: (a) => {
      const x = l.eval(a) as Result;
      const y = r.eval(a) as Result;
      return x === ERR || y === ERR ? ERR : f(x, y);
    },
  };
}

function membership(l: Node, r: Node): Node {
  if (r.type === 'list') {
    if (l.type !== r.elem) throw new ExpressionError(`'in' looks for a ${l.type} in a list of ${r.elem ?? '?'}`);
    const items = new Set(r.eval({} as Attributes) as readonly Value[]);
    return { type: 'bool', eval: (a) => { const x = l.eval(a) as Result; return x === ERR ? ERR : items.has(x); } };
  }
  if (r.type === 'map') {
    if (l.literal !== true || l.type !== 'string') throw new ExpressionError("'in request.headers' needs a string literal: 'x-user' in request.headers");
    const h = (l.eval({} as Attributes) as string).toLowerCase();
    return { type: 'bool', eval: (a) => a.header(h) !== undefined };
  }
  throw new ExpressionError(`'in' needs a list literal or request.headers, got ${r.type}`);
}

function stringMethod(m: (typeof METHODS)[number], target: Node, arg: string): Node {
  let test: (s: string) => boolean;
  switch (m) {
    case 'startsWith': test = (s) => s.startsWith(arg); break;
    case 'endsWith': test = (s) => s.endsWith(arg); break;
    case 'contains': test = (s) => s.includes(arg); break;
    case 'matches': {
      let re: RegExp;
      try { re = new RegExp(arg); } catch (err) { throw new ExpressionError(`matches(): invalid regular expression ${JSON.stringify(arg)} (${(err as Error).message})`); }
      test = (s) => re.test(s);
      break;
    }
  }
  return { type: 'bool', eval: (a) => { const s = target.eval(a) as Result; return s === ERR ? ERR : test(s as string); } };
}

/** Compiles an expression; `want` is the type its result must have. Throws ExpressionError. */
export function compileExpression(source: string, want?: ValueType | 'scalar'): CompiledExpression {
  if (source.trim() === '') throw new ExpressionError('the expression is empty');
  const p = new Parser(lex(source));
  const n = p.parse();
  if (n.type === 'map' || n.type === 'list') throw new ExpressionError(`the expression is a ${n.type}, not a value`);
  if (want !== undefined && want !== 'scalar' && n.type !== want) throw new ExpressionError(`the expression is a ${n.type}; a ${want} is needed here`);
  const ev = n.eval as (a: Attributes) => Result;
  return {
    source,
    type: n.type,
    httpAttributes: [...p.http].sort(),
    evaluate: (a) => { const v = ev(a); return v === ERR ? undefined : v; },
  };
}
