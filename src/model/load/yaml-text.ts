/**
 * Multi-document YAML text → plain objects with positions. This is the only place that parses
 * YAML; it is defensive because its input is whatever an operator points `ambit analyze` at.
 *
 * Invariants:
 * - Never throws on bad input: every problem becomes a Diagnostic with file, line and column.
 * - Limits (documented defaults in `YamlLimits`) bound the work per file: flow nesting is checked
 *   before the parser runs (deep `[[[[` would exhaust the parser's stack), block nesting on the
 *   parsed tree before conversion, and alias expansion by `maxAliasCount` during conversion.
 * - A document with any YAML error is skipped as a whole (its objects are not half-read).
 * - Text is parsed one chunk at a time, a chunk running from one document-start line (`---` at
 *   the start of a line) to the next, so a re-read file can reuse the chunks whose text did not
 *   change (load-paths.ts, DocumentCache). The result equals parsing the whole text at once: a
 *   text with directives (`%YAML`, `%TAG`, which reach across documents) is parsed whole, and
 *   when any chunk has a YAML error the whole text is parsed again as one, so error reports are
 *   exactly those of a whole-text parse. (A chunk boundary can only fall inside a construct that
 *   is itself an error, since a `---` line ends any scalar or collection.)
 * - Positions cost no memory while nobody asks: an Origin keeps its chunk's text (shared with
 *   the file's string) and the document's index, not the parsed tree; `locate()` re-parses the
 *   chunk on demand, with the last few parses cached (cross-reference diagnostics ask for several
 *   fields of the same document in a row).
 */
import { LineCounter, parseAllDocuments, isMap, isSeq, isPair, isScalar, isNode, type Document, type Node, type ParsedNode } from 'yaml';
import type { Diagnostic, FieldPath, SourcePosition } from '../diagnostics.js';
import { formatPath } from '../diagnostics.js';
import type { Origin } from '../resource.js';

export interface YamlLimits {
  /** Deepest nesting of mappings and sequences accepted (default 64; Kubernetes objects rarely exceed 20). */
  maxDepth?: number;
  /** Most alias expansions per document (default 100; guards against "billion laughs"). */
  maxAliasCount?: number;
}

export const DEFAULT_MAX_DEPTH = 64;
export const DEFAULT_MAX_ALIAS_COUNT = 100;

/** One top-level document that is a mapping, converted to plain JS. */
export interface YamlObject {
  readonly value: Record<string, unknown>;
  readonly origin: Origin;
}

export interface YamlTextResult {
  objects: YamlObject[];
  diagnostics: Diagnostic[];
}

/** A piece of a file's text that is parsed on its own: whole documents, from a `---` line to the next. */
export interface YamlChunk {
  readonly text: string;
  /** Lines of the file before the chunk (0 for the first chunk or a whole text). */
  readonly lineOffset: number;
}

const PARSE_OPTIONS = { uniqueKeys: true, prettyErrors: true, strict: true } as const;

interface ParsedChunk {
  readonly docs: Document.Parsed<ParsedNode>[];
  readonly lines: LineCounter;
}

function parseChunkText(text: string): ParsedChunk {
  const lines = new LineCounter();
  let docs = parseAllDocuments(text, { ...PARSE_OPTIONS, lineCounter: lines }) as Document.Parsed<ParsedNode>[];
  if (!Array.isArray(docs)) docs = [docs];
  return { docs, lines };
}

/**
 * The last few chunks parsed (for `locate()`): a small most-recently-used list, so positions
 * of several fields of one document cost one parse, and nothing large stays alive.
 */
const RECENT_PARSES = 8;
const recent = new Map<YamlChunk, ParsedChunk>();

function parsedChunk(chunk: YamlChunk): ParsedChunk {
  let p = recent.get(chunk);
  if (p !== undefined) {
    recent.delete(chunk);
  } else {
    p = parseChunkText(chunk.text);
  }
  recent.set(chunk, p);
  if (recent.size > RECENT_PARSES) recent.delete(recent.keys().next().value as YamlChunk);
  return p;
}

/** Positions of fields inside one document; the parsed tree is rebuilt on demand. */
class DocumentOrigin implements Origin {
  constructor(
    readonly file: string,
    private readonly chunk: YamlChunk,
    private readonly doc: number,
    private readonly basePath: FieldPath,
    readonly line: number,
    readonly column: number,
  ) {}

  locate(path: FieldPath, atKey = false): SourcePosition | undefined {
    const parsed = parsedChunk(this.chunk);
    const root = parsed.docs[this.doc]?.contents;
    if (root === undefined || root === null) return undefined;
    const at = new Positions(this.file, parsed.lines, this.chunk.lineOffset);
    const full = this.basePath.length === 0 ? path : [...this.basePath, ...path];
    let node: unknown = root;
    let best: SourcePosition | undefined = at.of(node);
    for (let i = 0; i < full.length; i++) {
      const seg = full[i];
      const last = i === full.length - 1;
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
        if (pair === undefined) return best;
        if (last && atKey) return at.of(pair.key) ?? best;
        node = pair.value;
        best = at.of(node) ?? at.of(pair.key) ?? best;
        if (node === null || node === undefined) return best;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg];
        if (item === undefined) return best;
        node = isPair(item) ? item.value : item;
        best = at.of(node) ?? best;
      } else {
        return best;
      }
    }
    return best;
  }
}

/** File positions of a chunk's offsets. */
class Positions {
  constructor(private readonly file: string, private readonly lines: LineCounter, private readonly lineOffset: number) {}

  /** 1-based line and column of an offset in the chunk. */
  linePos(offset: number): { line: number; col: number } {
    const p = this.lines.linePos(offset);
    return { line: p.line + this.lineOffset, col: p.col };
  }

  /** Where a node starts. */
  of(node: unknown): SourcePosition | undefined {
    if (!isNode(node) || node.range === undefined || node.range === null) return undefined;
    const { line, col } = this.linePos(node.range[0]);
    return { file: this.file, line, column: col };
  }
}

/** Greatest depth of `[`/`{` flow nesting, ignoring comments; cheap and conservative. */
export function maxFlowDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let lineStart = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a) {
      lineStart = true;
      continue;
    }
    if (c === 0x23 /* # */ && (lineStart || text.charCodeAt(i - 1) === 0x20 || text.charCodeAt(i - 1) === 0x09)) {
      const nl = text.indexOf('\n', i);
      if (nl < 0) break;
      i = nl - 1;
      continue;
    }
    if (c !== 0x20 && c !== 0x09) lineStart = false;
    if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth > max) max = depth;
    } else if ((c === 0x5d || c === 0x7d) && depth > 0) {
      depth--;
    }
  }
  return max;
}

/** Deepest collection nesting below `root`, walked iteratively (no recursion on hostile input). */
function treeDepth(root: unknown, limit: number): { depth: number; at: Node | undefined } {
  const stack: [unknown, number][] = [[root, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [unknown, number];
    if (isMap(node) || isSeq(node)) {
      if (depth > limit) return { depth, at: node };
      for (const item of node.items as unknown[]) {
        if (isPair(item)) {
          stack.push([item.key, depth + 1], [item.value, depth + 1]);
        } else {
          stack.push([item, depth + 1]);
        }
      }
    }
  }
  return { depth: 0, at: undefined };
}

function firstLine(message: string): string {
  const line = message.split('\n')[0] ?? message;
  return line.replace(/ at line \d+, column \d+:?$/, '');
}

const DOCUMENT_START = /^---(?=[ \t\r\n]|$)/gm;
const DIRECTIVE = /^%/m;

/**
 * The chunks of a text: split before every document-start line. Undefined when the text has
 * directives (they apply across documents), which is then parsed whole.
 */
export function splitYamlDocuments(text: string): YamlChunk[] | undefined {
  if (DIRECTIVE.test(text)) return undefined;
  const starts: number[] = [0];
  for (const m of text.matchAll(DOCUMENT_START)) if (m.index > 0) starts.push(m.index);
  const chunks: YamlChunk[] = [];
  let line = 0;
  let from = 0;
  for (let i = 0; i < starts.length; i++) {
    const start = starts[i] as number;
    for (let j = text.indexOf('\n', from); j >= 0 && j < start; j = text.indexOf('\n', j + 1)) line++;
    from = start;
    chunks.push({ text: text.slice(start, starts[i + 1] ?? text.length), lineOffset: line });
  }
  return chunks;
}

/** Whether a parse result holds an error (the text is then parsed whole, see the module header). */
export function hasYamlError(r: YamlTextResult): boolean {
  return r.diagnostics.some((d) => d.severity === 'error');
}

/** Parses a file's text into its top-level mapping documents. */
export function parseYamlText(text: string, file: string, limits: YamlLimits = {}): YamlTextResult {
  const chunks = splitYamlDocuments(text);
  if (chunks !== undefined && chunks.length > 1) {
    const parts = chunks.map((c) => parseYamlChunk(c, file, limits));
    if (!parts.some(hasYamlError)) return { objects: parts.flatMap((p) => p.objects), diagnostics: parts.flatMap((p) => p.diagnostics) };
  }
  return parseYamlChunk({ text, lineOffset: 0 }, file, limits);
}

/** Parses one chunk (or a whole text, as the chunk at line offset 0). */
export function parseYamlChunk(chunk: YamlChunk, file: string, limits: YamlLimits = {}): YamlTextResult {
  const text = chunk.text;
  const maxDepth = limits.maxDepth ?? DEFAULT_MAX_DEPTH;
  const maxAliasCount = limits.maxAliasCount ?? DEFAULT_MAX_ALIAS_COUNT;
  const diagnostics: Diagnostic[] = [];
  const objects: YamlObject[] = [];

  const flow = maxFlowDepth(text);
  if (flow > maxDepth) {
    diagnostics.push({ severity: 'error', code: 'AMBIT_YAML_TOO_DEEP', message: `flow nesting ([ and {) is ${flow} levels deep, more than the limit of ${maxDepth}; the file was not parsed`, file, line: 1, column: 1 });
    return { objects, diagnostics };
  }

  let parsed: ParsedChunk;
  try {
    parsed = parseChunkText(text);
  } catch (err) {
    diagnostics.push({ severity: 'error', code: 'AMBIT_YAML_SYNTAX', message: `YAML could not be parsed: ${(err as Error).message}`, file, line: 1, column: 1 });
    return { objects, diagnostics };
  }
  const docs = parsed.docs;
  const at = new Positions(file, parsed.lines, chunk.lineOffset);
  const lines = { linePos: (offset: number) => at.linePos(offset) };

  for (let di = 0; di < docs.length; di++) {
    const doc = docs[di] as Document.Parsed<ParsedNode>;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const pos = e.linePos?.[0];
        const code = e.code === 'DUPLICATE_KEY' ? 'AMBIT_YAML_DUPLICATE_KEY' : e.code === 'RESOURCE_EXHAUSTION' ? 'AMBIT_YAML_TOO_DEEP' : 'AMBIT_YAML_SYNTAX';
        const d: Diagnostic = { severity: 'error', code, message: code === 'AMBIT_YAML_TOO_DEEP' ? `YAML nests too deeply to parse (${firstLine(e.message)})` : firstLine(e.message), file };
        if (pos !== undefined) {
          d.line = pos.line + chunk.lineOffset;
          d.column = pos.col;
        }
        diagnostics.push(d);
      }
      continue;
    }
    for (const w of doc.warnings) {
      const pos = w.linePos?.[0];
      diagnostics.push({ severity: 'warning', code: 'AMBIT_YAML_SYNTAX', message: firstLine(w.message), file, ...(pos ? { line: pos.line + chunk.lineOffset, column: pos.col } : {}) });
    }
    const root = doc.contents;
    // An empty document (`---` alone, only comments) has no contents or an empty scalar.
    if (root === null || root === undefined || (isScalar(root) && (root.value === null || root.value === ''))) continue;
    const startPos = root.range ? lines.linePos(root.range[0]) : { line: 1, col: 1 };
    if (!isMap(root)) {
      const what = isSeq(root) ? 'a list' : isScalar(root) ? 'a plain value' : 'not a mapping';
      diagnostics.push({ severity: 'error', code: 'AMBIT_INPUT_NOT_OBJECT', message: `document is ${what}, not a Kubernetes object (a mapping with apiVersion and kind); is this a YAML manifest?`, file, line: startPos.line, column: startPos.col });
      continue;
    }
    const deep = treeDepth(root, maxDepth);
    if (deep.at !== undefined) {
      const p = deep.at.range ? lines.linePos(deep.at.range[0]) : startPos;
      const col = 'col' in p ? p.col : 1;
      diagnostics.push({ severity: 'error', code: 'AMBIT_YAML_TOO_DEEP', message: `nesting deeper than the limit of ${maxDepth} levels; the document was skipped`, file, line: p.line, column: col });
      continue;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount });
    } catch (err) {
      const alias = err instanceof ReferenceError && /alias/i.test(err.message);
      diagnostics.push({
        severity: 'error',
        code: alias ? 'AMBIT_YAML_ALIAS_LIMIT' : 'AMBIT_YAML_SYNTAX',
        message: alias ? `too many alias expansions (limit ${maxAliasCount}); this looks like a YAML alias bomb, the document was skipped` : `document could not be converted: ${(err as Error).message}`,
        file,
        line: startPos.line,
        column: startPos.col,
      });
      continue;
    }
    const rootPos = at.of(root) ?? { line: 1, column: 1 };
    const origin = new DocumentOrigin(file, chunk, di, [], rootPos.line, rootPos.column);
    if (isListObject(value)) {
      const items = value['items'];
      if (Array.isArray(items)) {
        recent.set(chunk, parsed); // item origins locate themselves right away
        items.forEach((item, i) => {
          const itemOrigin = new DocumentOrigin(file, chunk, di, ['items', i], rootPos.line, rootPos.column);
          if (item !== null && typeof item === 'object' && !Array.isArray(item)) {
            objects.push({ value: item as Record<string, unknown>, origin: itemOrigin });
          } else {
            const pos = itemOrigin.locate([]);
            diagnostics.push({ severity: 'error', code: 'AMBIT_INPUT_NOT_OBJECT', message: 'List item is not a Kubernetes object', file, path: formatPath(['items', i]), ...(pos ? { line: pos.line, column: pos.column } : {}) });
          }
        });
        continue;
      }
    }
    objects.push({ value: value as Record<string, unknown>, origin });
  }
  // Objects are validated right after parsing, and their problems located: keep this parse at hand.
  if (objects.length > 0) {
    recent.delete(chunk);
    recent.set(chunk, parsed);
    if (recent.size > RECENT_PARSES) recent.delete(recent.keys().next().value as YamlChunk);
  }
  return { objects, diagnostics };
}

/** `kind: List` (or `FooList`) with `apiVersion: v1` wraps items, as `kubectl get -o yaml` writes. */
function isListObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  return typeof o['kind'] === 'string' && o['kind'].endsWith('List') && o['apiVersion'] === 'v1' && Array.isArray(o['items']);
}
