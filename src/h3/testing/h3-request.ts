/**
 * Plain HTTP/3 client requests (e.g. GET /healthz) for tests: the daemons
 * never send one, so this lives beside the test doubles. The response body
 * is collected up to a bound.
 */

import type { H3Connection } from '../connection.js';
import type { ClientRequestHandler } from '../api.js';
import { H3Error } from '../errors.js';
import type { FieldList } from '../qpack.js';
import { Role } from '../request-stream.js';

/** A response to a plain client request, or the H3 error code that ended it. */
export type H3ClientResult =
  | { readonly ok: true; readonly status: number; readonly headers: FieldList; readonly body: Uint8Array }
  | { readonly ok: false; readonly error: number };

/** What to send. */
export interface H3PlainRequest {
  readonly method: string;
  readonly authority: string;
  readonly path: string;
  /** Default "https". */
  readonly scheme?: string;
  readonly headers?: FieldList;
  readonly body?: Uint8Array;
}

/** Largest response body collected by default; larger ones end the stream with H3_EXCESSIVE_LOAD. */
const DEFAULT_MAX_BODY = 64 * 1024;

/**
 * Client: send a plain request on `h3` and collect the response. `done` is
 * called exactly once (maybe from a microtask when no stream could be
 * opened). The body handed to `done` is a fresh copy owned by the caller.
 * Returns the stream ID, or -1.
 */
export function h3Request(h3: H3Connection, req: H3PlainRequest, done: (r: H3ClientResult) => void, maxBodyBytes = DEFAULT_MAX_BODY): number {
  if (h3.isServer) throw new Error('h3: h3Request() is for clients');
  const fields: FieldList = [
    [':method', req.method],
    [':scheme', req.scheme ?? 'https'],
    [':authority', req.authority],
    [':path', req.path],
    ...(req.headers ?? []),
  ];
  let status = 0;
  let headers: FieldList = [];
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  let finished = false;
  const finish = (r: H3ClientResult) => {
    if (finished) return;
    finished = true;
    done(r);
  };
  const handler: ClientRequestHandler = {
    onResponse(s, h) {
      status = s;
      headers = h;
    },
    onData(buf, off, end) {
      if (bytes + (end - off) > maxBodyBytes) {
        finish({ ok: false, error: H3Error.H3_EXCESSIVE_LOAD });
        return;
      }
      chunks.push(buf.slice(off, end));
      bytes += end - off;
    },
    onEnd() {
      const body = new Uint8Array(bytes);
      let p = 0;
      for (const c of chunks) {
        body.set(c, p);
        p += c.length;
      }
      finish({ ok: true, status, headers, body });
    },
    onClose(error) {
      finish({ ok: false, error });
    },
  };
  return h3.openRequest(Role.ClientPlain, fields, req.body ?? null, handler);
}
