/**
 * Loading `gateway.yaml` / `agent.yaml`: read, parse YAML, validate with the
 * schemas, and turn every problem into a ConfigError with file:line:col.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { z } from 'zod';
import { ConfigError, formatKeyPath, type ConfigIssue } from './config-error.js';
import { agentSchema, gatewaySchema, type AgentConfig, type GatewayConfig } from './schema.js';
import { describeValue } from './values.js';
import { parseYamlSource, type YamlSource } from './yaml-source.js';

/** Largest config file read, in bytes; anything bigger is surely a mistake. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/**
 * Reads and validates a gateway config file. Relative paths inside it are
 * resolved against the file's directory.
 * @throws ConfigError for any unreadable, unparsable or invalid file (and nothing else).
 */
export function loadGatewayConfig(path: string): GatewayConfig {
  return parseGatewayConfig(readConfigText(path), path, dirname(resolve(path)));
}

/**
 * Reads and validates an agent config file. Relative paths inside it are
 * resolved against the file's directory.
 * @throws ConfigError for any unreadable, unparsable or invalid file (and nothing else).
 */
export function loadAgentConfig(path: string): AgentConfig {
  return parseAgentConfig(readConfigText(path), path, dirname(resolve(path)));
}

/**
 * Validates gateway config text. `file` is used only in messages; relative
 * paths resolve against `baseDir` (default: the current directory).
 * @throws ConfigError
 */
export function parseGatewayConfig(text: string, file: string, baseDir = process.cwd()): GatewayConfig {
  return validate(gatewaySchema(baseDir), text, file);
}

/** Validates agent config text; see {@link parseGatewayConfig}. @throws ConfigError */
export function parseAgentConfig(text: string, file: string, baseDir = process.cwd()): AgentConfig {
  return validate(agentSchema(baseDir), text, file);
}

function readConfigText(path: string): string {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (err as Error).message;
    throw new ConfigError([{ file: path, line: 1, col: 1, keyPath: '', message: `cannot read config: ${why}` }]);
  }
  if (buf.length > MAX_CONFIG_BYTES) {
    throw new ConfigError([{ file: path, line: 1, col: 1, keyPath: '', message: `config file is ${buf.length} bytes; expected at most ${MAX_CONFIG_BYTES}` }]);
  }
  return buf.toString('utf8');
}

function validate<S extends z.ZodType>(schema: S, text: string, file: string): z.output<S> {
  const src = parseYamlSource(text, file);
  const data = src.data === null || src.data === undefined ? {} : src.data;
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError([{ file, ...src.locate([]), keyPath: '', message: `expected a mapping of settings at the top level, got ${describeValue(data)}` }]);
  }
  let result: z.ZodSafeParseResult<z.output<S>>;
  try {
    result = schema.safeParse(data, { reportInput: true });
  } catch (err) {
    throw new ConfigError([{ file, line: 1, col: 1, keyPath: '', message: `invalid config: ${(err as Error).message}` }]);
  }
  if (result.success) return result.data;
  throw new ConfigError(result.error.issues.flatMap((iss) => toIssues(iss, src, schema)));
}

const KIND: Record<string, string> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
};

function toIssues(iss: z.core.$ZodIssue, src: YamlSource, schema: unknown): ConfigIssue[] {
  const path = iss.path as PropertyKey[];
  const at = (p: PropertyKey[], keyOf?: string): ConfigIssue => ({ file: src.file, ...src.locate(p, keyOf), keyPath: formatKeyPath(keyOf === undefined ? p : [...p, keyOf]), message: '' });
  const input = (iss as { input?: unknown }).input;
  switch (iss.code) {
    case 'unrecognized_keys':
      return iss.keys.map((k) => ({ ...at(path, k), message: 'unknown key' + suggest(k, allowedKeysAt(schema, path)) }));
    case 'invalid_type':
      if (input === undefined) return [{ ...at(path), message: `missing required key (expected ${KIND[iss.expected] ?? iss.expected})` }];
      return [{ ...at(path), message: `expected ${KIND[iss.expected] ?? iss.expected}, got ${describeValue(input)}` }];
    case 'invalid_value':
      return [{ ...at(path), message: `expected one of ${iss.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describeValue(input)}` }];
    case 'too_small':
      if (iss.origin === 'array') return [{ ...at(path), message: iss.message.startsWith('expected') ? iss.message : `expected at least ${String(iss.minimum)} entries` }];
      return [{ ...at(path), message: `expected a value ≥ ${String(iss.minimum)}, got ${describeValue(input)}` }];
    case 'too_big':
      return [{ ...at(path), message: `expected a value ≤ ${String(iss.maximum)}, got ${describeValue(input)}` }];
    case 'invalid_union':
      return [{ ...at(path), message: `expected ${iss.message}, got ${describeValue(input)}` }];
    case 'custom': {
      // A workload-map key (or other key-valued entry) is reported at the key itself.
      if ((iss.params as { atKey?: boolean } | undefined)?.atKey && path.length > 0) {
        const parent = path.slice(0, -1);
        return [{ ...at(parent, String(path[path.length - 1])), message: iss.message }];
      }
      const missing = /^(expected .*), got nothing$/.exec(iss.message);
      if (missing) return [{ ...at(path), message: `missing required key (${missing[1]})` }];
      return [{ ...at(path), message: iss.message }];
    }
    default:
      return [{ ...at(path), message: iss.message }];
  }
}

interface SchemaDef {
  type: string;
  shape?: Record<string, unknown>;
  element?: unknown;
  innerType?: unknown;
  in?: unknown;
  out?: unknown;
  valueType?: unknown;
}

function defOf(schema: unknown): SchemaDef | undefined {
  return (schema as { _zod?: { def?: SchemaDef } } | undefined)?._zod?.def;
}

/** The keys a strict object schema allows at `path` (walking wrappers, lists and records). */
function allowedKeysAt(schema: unknown, path: readonly PropertyKey[]): string[] {
  let cur: unknown = schema;
  let i = 0;
  for (let guard = 0; guard < 256; guard++) {
    const def = defOf(cur);
    if (def === undefined) return [];
    switch (def.type) {
      case 'default': case 'prefault': case 'optional': case 'nullable': case 'readonly': case 'catch':
        cur = def.innerType;
        continue;
      case 'pipe':
        cur = defOf(def.in)?.type === 'unknown' ? def.out : def.in;
        continue;
      case 'object':
        if (i === path.length) return Object.keys(def.shape ?? {});
        cur = def.shape?.[String(path[i++])];
        continue;
      case 'array':
        if (i === path.length) return [];
        i++;
        cur = def.element;
        continue;
      case 'record':
        if (i === path.length) return [];
        i++;
        cur = def.valueType;
        continue;
      default:
        return [];
    }
  }
  return [];
}

/** " (did you mean "x"?)" for a near miss, else the list of allowed keys. */
function suggest(key: string, allowed: string[]): string {
  if (allowed.length === 0) return '';
  let best = '';
  let bestD = Infinity;
  for (const a of allowed) {
    const d = editDistance(key.toLowerCase(), a.toLowerCase());
    if (d < bestD) { bestD = d; best = a; }
  }
  if (bestD <= Math.max(1, Math.floor(best.length / 3))) return `; did you mean "${best}"?`;
  return `; expected one of: ${allowed.join(', ')}`;
}

function editDistance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Infinity;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
