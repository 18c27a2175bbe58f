/**
 * Shared set-up for the QUIC sim tests: a dev PKI, server/client endpoints on
 * loopback `node:dgram` sockets, raw stream echo, and cleanup.
 */
import { openDgramUdpSocket, type DgramUdpSocket } from '../../src/net/dgram-udp.js';
import { QuicEndpoint, type QuicEndpointOptions, type QuicServerOptions, type QuicClientOptions } from '../../src/quic/endpoint.js';
import type { QuicConnection } from '../../src/quic/connection.js';
import { createDevCa, issueClientCert, issueServerCert, type DevCa, type PemPair } from '../../src/quic/dev-certs.js';

export interface Pki {
  ca: DevCa;
  server: PemPair;
  client: PemPair;
  otherCa: DevCa;
  otherClient: PemPair;
}

let pki: Promise<Pki> | null = null;
/** One PKI per test file (P-256 key generation is fast, but shared is simpler). */
export function getPki(): Promise<Pki> {
  pki ??= (async () => {
    const ca = await createDevCa('mtun test CA');
    const otherCa = await createDevCa('unrelated CA');
    return {
      ca,
      otherCa,
      server: await issueServerCert(ca),
      client: await issueClientCert(ca, 'spiffe://mesh.test/ns/default/sa/agent'),
      otherClient: await issueClientCert(otherCa, 'spiffe://evil.test/ns/x/sa/y'),
    };
  })();
  return pki;
}

/** Everything a test opened, closed by {@link Harness.cleanup}. */
export class Harness {
  readonly endpoints: QuicEndpoint[] = [];
  readonly sockets: DgramUdpSocket[] = [];
  /** Server-side connections announced by onConnection. */
  readonly accepted: QuicConnection[] = [];

  async server(
    server: Partial<QuicServerOptions> = {},
    extra: Partial<QuicEndpointOptions> = {},
  ): Promise<{ ep: QuicEndpoint; port: number }> {
    const p = await getPki();
    const socket = await openDgramUdpSocket();
    this.sockets.push(socket);
    const ep = new QuicEndpoint({
      socket,
      keylogPath: null,
      ...extra,
      server: {
        certPem: p.server.certPem,
        keyPem: p.server.keyPem,
        retry: 'off',
        onConnection: (c) => {
          this.accepted.push(c);
          echo(c);
        },
        ...server,
      },
    });
    this.endpoints.push(ep);
    return { ep, port: socket.localAddress().port };
  }

  async client(client: Partial<QuicClientOptions> = {}, extra: Partial<QuicEndpointOptions> = {}): Promise<QuicEndpoint> {
    const p = await getPki();
    const socket = await openDgramUdpSocket();
    this.sockets.push(socket);
    const ep = new QuicEndpoint({ socket, keylogPath: null, ...extra, client: { caPem: p.ca.certPem, ...client } });
    this.endpoints.push(ep);
    return ep;
  }

  cleanup(): void {
    for (const e of this.endpoints) e.close();
    for (const s of this.sockets) s.close();
    this.endpoints.length = 0;
    this.sockets.length = 0;
  }
}

/** Server behaviour for tests: echo stream bytes (with FIN) and datagrams back. */
export function echo(c: QuicConnection): void {
  const buf = new Uint8Array(65_536);
  c.onEvent = (conn, ev) => {
    if (ev !== 'readable') return;
    for (const s of conn.readableStreams()) {
      let r: [number, boolean] | null;
      while ((r = conn.streamRecv(s, buf)) !== null) {
        if (r[0] > 0 || r[1]) conn.streamSend(s, buf.subarray(0, r[0]), r[1]);
        if (r[1]) break;
      }
    }
    let n: number | null;
    while ((n = conn.dgramRecv(buf)) !== null) conn.dgramSend(buf, 0, n);
  };
}

/** Client side: sends `data` on bidi stream `sid` with FIN, resolves with what came back. */
export function streamRoundTrip(c: QuicConnection, sid: number, data: Uint8Array): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65_536);
    const prev = c.onEvent;
    c.onEvent = (conn, ev) => {
      prev?.(conn, ev);
      if (ev === 'closed') reject(new Error(`closed: ${JSON.stringify(conn.closeInfo)}`));
      if (ev !== 'readable') return;
      let r: [number, boolean] | null;
      while ((r = conn.streamRecv(sid, buf)) !== null) {
        chunks.push(buf.slice(0, r[0]));
        if (r[1]) {
          resolve(Buffer.concat(chunks));
          return;
        }
      }
    };
    const sent = c.streamSend(sid, data, true);
    if (sent !== data.length) reject(new Error(`short streamSend ${sent}`));
    c.flush();
  });
}

/** Resolves when `c` reports `closed`. */
export function whenClosed(c: QuicConnection): Promise<void> {
  if (c.isClosed) return Promise.resolve();
  return new Promise((resolve) => {
    const prev = c.onEvent;
    c.onEvent = (conn, ev) => {
      prev?.(conn, ev);
      if (ev === 'closed') resolve();
    };
  });
}

/** Polls `cond` every 10 ms until true or `ms` pass (then rejects with `what`). */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
