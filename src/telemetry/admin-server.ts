/**
 * The admin HTTP server (node:http, off the data path): /metrics,
 * /healthz, /readyz, /status, /flows (for `mtun top`) and /capture (pcapng,
 * for `mtun capture`, off unless configured). Callback failures become
 * 500s, never crashes.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { formatHostPort } from '../packet/ip-address.js';
import { serveCapture, type CaptureConfig, type CaptureSession } from './capture-endpoint.js';
import { liveFlowsDocument } from './live-flows.js';
import { parseFlowsQuery } from './flow-query.js';
import type { Telemetry } from './telemetry.js';

/** Readiness as reported by the daemon: ready, or not with a reason. */
export type Readiness = { readonly ready: true } | { readonly ready: false; readonly reason: string };

/** Options for {@link startAdminServer}. */
export interface AdminServerOptions {
  /** Address to bind (`127.0.0.1`, `::1`, `::`...). */
  readonly host: string;
  /** Port; 0 picks a free one (see AdminServer.port). */
  readonly port: number;
  /** Registry served on /metrics. */
  readonly registry: Registry;
  /** Called per /readyz request. Default: always ready. */
  readonly readiness?: () => Readiness;
  /** Called per /status request; its result is served as JSON. Default: 404. */
  readonly status?: () => unknown | Promise<unknown>;
  /** The daemon's telemetry: serves /flows and feeds /capture from its tap. Default: both 404. */
  readonly telemetry?: Telemetry;
  /** `admin.capture` from the config. Default: capture disabled. */
  readonly capture?: CaptureConfig;
}

const CAPTURE_OFF: CaptureConfig = { enabled: false, allowRemote: false, queueBytes: 0, queuePackets: 0 };

/** A running admin server. */
export interface AdminServer {
  readonly host: string;
  /** The bound port. */
  readonly port: number;
  /** Base URL, e.g. `http://127.0.0.1:9090`. */
  readonly url: string;
  /** Stops accepting, closes idle keep-alive connections; resolves when closed. Idempotent. */
  close(): Promise<void>;
}

/** Admin requests are small; bound how long one may take. */
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_CONNECTIONS = 64;

/**
 * Starts the admin server. Rejects with `telemetry: admin listen …` when the
 * address cannot be bound (e.g. EADDRINUSE).
 */
export function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const captures = new Set<CaptureSession>();
  const server: Server = createServer((req, res) => {
    handle(opts, req, res, captures).catch((err: unknown) => sendText(res, 500, `telemetry: ${(err as Error)?.message ?? String(err)}\n`));
  });
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.headersTimeout = REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = 5_000;
  server.maxConnections = MAX_CONNECTIONS;
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new Error(`telemetry: admin listen ${formatHostPort(opts.host, opts.port)}: ${err.code ?? err.message}`));
    };
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.off('error', onError);
      // Runtime socket errors on an admin server are not fatal to the daemon.
      server.on('error', () => {});
      const port = (server.address() as AddressInfo).port;
      let closing: Promise<void> | null = null;
      resolve({
        host: opts.host,
        port,
        url: `http://${formatHostPort(opts.host, port)}`,
        close: () => {
          closing ??= new Promise<void>((done) => {
            server.close(() => done());
            // A streaming capture would hold the server open: end it (its statistics are written).
            for (const c of [...captures]) c.finish();
            server.closeIdleConnections();
          });
          return closing;
        },
      });
    });
  });
}

async function handle(opts: AdminServerOptions, req: IncomingMessage, res: ServerResponse, captures: Set<CaptureSession>): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (path === '/capture' && req.method === 'GET' && opts.telemetry) {
    const t = opts.telemetry;
    const s = serveCapture(opts.capture ?? CAPTURE_OFF, t.capture, t.metrics.reporter, req, res, (code, msg) => sendText(res, code, `${msg}\n`), (done) => captures.delete(done));
    if (s !== null) captures.add(s);
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return sendText(res, 405, 'method not allowed\n');
  }
  switch (path) {
    case '/metrics': {
      const body = await opts.registry.metrics();
      res.setHeader('Content-Type', opts.registry.contentType);
      return send(res, 200, body);
    }
    case '/healthz':
      return sendText(res, 200, 'ok\n');
    case '/readyz': {
      const r = opts.readiness ? opts.readiness() : { ready: true as const };
      return r.ready ? sendText(res, 200, 'ready\n') : sendText(res, 503, `not ready: ${r.reason}\n`);
    }
    case '/status': {
      if (!opts.status) return sendText(res, 404, 'no status\n');
      const body = JSON.stringify(await opts.status(), null, 2) + '\n';
      res.setHeader('Content-Type', 'application/json');
      return send(res, 200, body);
    }
    case '/flows': {
      if (!opts.telemetry) return sendText(res, 404, 'no flows\n');
      const q = parseFlowsQuery(new URL(req.url ?? '/', 'http://admin').searchParams);
      if (typeof q === 'string') return sendText(res, 400, `flows: ${q}\n`);
      res.setHeader('Content-Type', 'application/json');
      return send(res, 200, JSON.stringify(liveFlowsDocument(opts.telemetry, Date.now(), q)) + '\n');
    }
    case '/':
      return sendText(res, 200, 'mtun admin: /metrics /healthz /readyz /status /flows /capture\n');
    default:
      return sendText(res, 404, 'not found\n');
  }
}

function sendText(res: ServerResponse, code: number, body: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  send(res, code, body);
}

function send(res: ServerResponse, code: number, body: string): void {
  res.statusCode = code;
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('Cache-Control', 'no-store');
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
