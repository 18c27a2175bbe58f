/**
 * The plain-request handler the gateway serves over HTTP/3: `GET /healthz`
 * (or HEAD) → 200 "ok\n", other paths 404, other methods 405. Load balancers
 * and stock HTTP/3 clients probe it; HTTP/3 itself answers 404 without it.
 */

import type { H3RequestHandler } from '../h3/connection.js';

/** Answers /healthz; see the module header. Pure; returns fresh response objects. */
export const healthzHandler: H3RequestHandler = (req) => {
  if (req.path === '/healthz' || req.path?.startsWith('/healthz?')) {
    if (req.method === 'GET' || req.method === 'HEAD') {
      return { status: 200, headers: [['content-type', 'text/plain']], body: req.method === 'GET' ? 'ok\n' : undefined };
    }
    return { status: 405, headers: [['allow', 'GET, HEAD']] };
  }
  return { status: 404, headers: [['content-type', 'text/plain']], body: 'not found\n' };
};
