/**
 * The one error type configuration loading throws: every problem found in a
 * file, each with its file, line, column, key path and what was expected.
 */

/** One problem in a configuration file. Lines and columns are 1-based. */
export interface ConfigIssue {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  /** Key path like `policy[0].allow[1].ports[2]`; empty for the whole document. */
  readonly keyPath: string;
  /** What was expected and what was found, e.g. `expected a port number 1-65535, got "http"`. */
  readonly message: string;
}

/**
 * Thrown by the config loaders for any unreadable, unparsable or invalid
 * file. `issues` holds every problem found (sorted by position);
 * `toString()` prints one `file:line:col: path: message` line per issue.
 */
export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[];

  constructor(issues: ConfigIssue[]) {
    const sorted = [...issues].sort((a, b) => a.line - b.line || a.col - b.col);
    super(sorted.map(formatIssue).join('\n'));
    this.name = 'ConfigError';
    this.issues = sorted;
  }

  override toString(): string {
    return this.message;
  }
}

/** Formats one issue as `file:line:col: path: message` (the path is omitted when empty). */
export function formatIssue(i: ConfigIssue): string {
  return `${i.file}:${i.line}:${i.col}: ${i.keyPath === '' ? '' : `${i.keyPath}: `}${i.message}`;
}

/** Renders a key path as `a.b[0]["10.0.0.0/8"]`. */
export function formatKeyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (typeof p === 'string' && /^[A-Za-z_][A-Za-z0-9_-]*$/.test(p)) out += out === '' ? p : `.${p}`;
    else out += `[${JSON.stringify(String(p))}]`;
  }
  return out;
}
