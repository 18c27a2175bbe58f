/**
 * Talking to a running daemon's admin endpoint from the CLI: the `--admin`
 * option, URL parsing, and a bounded JSON GET with errors a person can act
 * on. Shared by `mtun status`, `mtun top` and `mtun capture`.
 */
import { get as httpGet, type ClientRequest, type IncomingMessage } from 'node:http';
import { Option } from 'commander';

/** How long to wait for the admin endpoint to answer. */
export const FETCH_TIMEOUT_MS = 5_000;
/** Largest JSON document accepted. */
const MAX_JSON_BYTES = 8 * 1024 * 1024;

/** The `--admin <url>` option every admin-reading command takes. */
export function adminOption(): Option {
  return new Option('--admin <url>', 'admin endpoint of the daemon (gateway default 127.0.0.1:9090, agent 127.0.0.1:9091)').default('http://127.0.0.1:9090');
}

/** `path` on the admin endpoint `admin` (`host:port` or `http://host:port`); an error sentence when it is not a URL. */
export function adminUrl(admin: string, path: string): URL | string {
  try {
    return new URL(path, /^[a-z]+:\/\//i.test(admin) ? admin : `http://${admin}`);
  } catch {
    return `--admin ${JSON.stringify(admin)} is not a URL (expected e.g. http://127.0.0.1:9090)`;
  }
}

/** Why a request failed, as a sentence naming the endpoint. */
export function requestError(url: URL, err: NodeJS.ErrnoException): string {
  if (err.code === 'ECONNREFUSED') return `no daemon is answering at ${url.origin} (connection refused) — is mtun gateway/agent running, with admin.listen at this address?`;
  return `cannot reach ${url.origin}: ${err.code ?? err.message}`;
}

/**
 * GET `url` with node:http (fetch refuses some ports an operator may pick);
 * calls `onResponse` with the response, or resolves with an error sentence
 * (refused, timeout, not http). The timeout covers the wait for headers only.
 */
export function adminGet(url: URL, onResponse: (res: IncomingMessage, req: ClientRequest) => void): Promise<string | null> {
  return new Promise((resolve) => {
    if (url.protocol !== 'http:') {
      resolve(`${url.origin}: only http:// admin endpoints are supported`);
      return;
    }
    const req = httpGet(url, { timeout: FETCH_TIMEOUT_MS }, (res) => {
      req.setTimeout(0);
      onResponse(res, req);
      resolve(null);
    });
    req.on('timeout', () => {
      req.destroy();
      resolve(`${url.origin} did not answer within ${FETCH_TIMEOUT_MS / 1000} s`);
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve(requestError(url, err)));
  });
}

/**
 * Fetches a JSON document and shape-checks it with `check` (null = fine, or
 * what is wrong); returns the document or an error sentence.
 */
export async function fetchJson<T>(url: URL, check: (v: unknown) => string | null): Promise<{ raw: unknown; doc: T } | string> {
  let result: { raw: unknown; doc: T } | string = `${url.href}: no answer`;
  let finished: () => void = () => {};
  const done = new Promise<void>((r) => { finished = r; });
  const err = await adminGet(url, (res, req) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_JSON_BYTES) {
        result = `${url.href} sent more than ${MAX_JSON_BYTES} bytes`;
        req.destroy();
        finished();
        return;
      }
      chunks.push(c);
    });
    res.on('error', (e) => { result = `${url.href}: ${e.message}`; finished(); });
    res.on('end', () => {
      finished();
      if (res.statusCode !== 200) {
        const text = Buffer.concat(chunks).toString('utf8').trim();
        result = `${url.href} answered HTTP ${res.statusCode}${res.statusCode === 404 ? ' (is this an mtun admin endpoint?)' : text ? `: ${text}` : ''}`;
        return;
      }
      let raw: unknown;
      try {
        raw = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        result = `${url.href} did not return JSON`;
        return;
      }
      const problem = check(raw);
      result = problem !== null ? `${url.href} returned an unexpected document: ${problem}` : { raw, doc: raw as T };
    });
  });
  if (err !== null) return err;
  await done;
  return result;
}
