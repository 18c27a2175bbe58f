/**
 * YAML text to plain data, keeping the parsed document so any key path can
 * be mapped back to a line and column for error messages.
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { ConfigError, type ConfigIssue } from './config-error.js';

/** Parsed YAML plus a locator from key paths to positions. */
export interface YamlSource {
  readonly file: string;
  /** The document as plain JS data (null for an empty file). */
  readonly data: unknown;
  /**
   * Position of the value at `path` (1-based), or of the nearest enclosing
   * node that exists. With `keyOf`, the position of that key inside the map
   * at `path` (used for unknown keys).
   */
  locate(path: readonly PropertyKey[], keyOf?: string): { line: number; col: number };
}

/** Most YAML syntax problems reported at once. */
const MAX_SYNTAX_ISSUES = 20;

/**
 * Parses `text` (from `file`, used only in messages) as a single YAML 1.2
 * document with the core schema. Syntax errors, duplicate keys and alias
 * bombs become a ConfigError; nothing else is thrown.
 */
export function parseYamlSource(text: string, file: string): YamlSource {
  const lc = new LineCounter();
  let doc: Document.Parsed;
  try {
    doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, schema: 'core', uniqueKeys: true, strict: true });
  } catch (err) {
    throw new ConfigError([{ file, line: 1, col: 1, keyPath: '', message: `cannot parse YAML: ${(err as Error).message}` }]);
  }
  const pos = (offset: number): { line: number; col: number } => {
    const p = lc.linePos(Math.max(0, Math.min(offset, text.length)));
    return { line: p.line, col: p.col };
  };
  if (doc.errors.length > 0) {
    const issues: ConfigIssue[] = doc.errors.slice(0, MAX_SYNTAX_ISSUES).map((e) => ({
      file,
      ...pos(e.pos[0]),
      keyPath: '',
      message: `invalid YAML: ${firstLine(e.message)}`,
    }));
    throw new ConfigError(issues);
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError([{ file, line: 1, col: 1, keyPath: '', message: `invalid YAML: ${firstLine((err as Error).message)}` }]);
  }
  const locate = (path: readonly PropertyKey[], keyOf?: string): { line: number; col: number } => {
    let node: unknown = doc.contents;
    let best: number = node && (node as Node).range ? (node as Node).range![0] : 0;
    for (const seg of path) {
      const next = child(node, seg);
      if (next === undefined) return pos(best);
      node = next.value;
      if (next.offset !== undefined) best = next.offset;
    }
    if (keyOf !== undefined && isMap(node)) {
      for (const item of node.items) {
        if (isPair(item) && isScalar(item.key) && String(item.key.value) === keyOf && item.key.range) return pos(item.key.range[0]);
      }
    }
    return pos(best);
  };
  return { file, data, locate };
}

/** Steps from a node to its child by key or index; offset is where that child's value (or key) starts. */
function child(node: unknown, seg: PropertyKey): { value: unknown; offset: number | undefined } | undefined {
  if (isMap(node)) {
    for (const item of node.items) {
      if (!isPair(item)) continue;
      const k = isScalar(item.key) ? item.key.value : item.key;
      if (String(k) !== String(seg)) continue;
      const v = item.value as Node | null;
      const offset = v && v.range ? v.range[0] : (item.key as Node | null)?.range?.[0];
      return { value: v, offset };
    }
    return undefined;
  }
  if (isSeq(node) && typeof seg === 'number') {
    const v = node.items[seg] as Node | undefined;
    if (v === undefined) return undefined;
    return { value: v, offset: v && v.range ? v.range[0] : undefined };
  }
  return undefined;
}

function firstLine(s: string): string {
  const i = s.indexOf('\n');
  return i < 0 ? s : s.slice(0, i);
}

