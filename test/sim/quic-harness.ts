/**
 * Shared set-up for the QUIC sim tests: a dev PKI, server/client endpoints on
 * loopback `node:dgram` sockets, raw stream echo, and cleanup.
 */
import { openDgramUdpSocket } from '../../src/net/dgram-udp.js';
import type { UdpBatchSocket } from '../../src/net/udp.js';
import { QuicEndpoint, type QuicEndpointOptions, type QuicServerOptions, type QuicClientOptions } from '../../src/quic/endpoint.js';
import type { QuicConnection } from '../../src/quic/connection.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDevCa, issueClientCert, issueServerCert, type DevCa, type PemPair } from '../../src/certs/pki.js';
import type { MemoryNet, MemoryUdp } from './quic-memory-udp.js';

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

/**
 * Writes the test PKI as the daemons' config files name them: ca.pem,
 * other-ca.pem, gw.pem / gw-key.pem (server), agent.pem / agent-key.pem (client).
 */
export async function writePkiFiles(dir: string): Promise<Pki> {
  const p = await getPki();
  const files: Array<[string, string]> = [
    ['ca.pem', p.ca.certPem], ['other-ca.pem', p.otherCa.certPem],
    ['gw.pem', p.server.certPem], ['gw-key.pem', p.server.keyPem],
    ['agent.pem', p.client.certPem], ['agent-key.pem', p.client.keyPem],
  ];
  for (const [name, text] of files) writeFileSync(join(dir, name), text);
  return p;
}

/** Everything a test opened, closed by {@link Harness.cleanup}. */
/**
 * True when a native UDP socket opens on 127.0.0.1 (the addon is built);
 * otherwise warns that `what` is skipped and returns false.
 */
export async function nativeUdpAvailable(what: string): Promise<boolean> {
  try {
    const { openNativeUdp } = await import('../../src/net/native-udp.js');
    openNativeUdp({ host: '127.0.0.1' }).close();
    return true;
  } catch (e) {
    console.warn(`${what}: SKIPPED — native UDP addon unavailable (${(e as Error).message}); run npm ci / node-gyp rebuild`);
    return false;
  }
}

export class Harness {
  readonly endpoints: QuicEndpoint[] = [];
  readonly sockets: UdpBatchSocket[] = [];

  /** `native` uses the C addon's batched socket (GSO/GRO); `dgram` uses node:dgram. */
  constructor(readonly kind: 'dgram' | 'native' = 'dgram') {}

  private async socket(): Promise<UdpBatchSocket> {
    if (this.kind === 'dgram') return openDgramUdpSocket();
    const { openNativeUdp } = await import('../../src/net/native-udp.js');
    return openNativeUdp({ host: '127.0.0.1', gro: true });
  }
  /** Server-side connections announced by onConnection. */
  readonly accepted: QuicConnection[] = [];

  async server(
    server: Partial<QuicServerOptions> = {},
    extra: Partial<QuicEndpointOptions> = {},
  ): Promise<{ ep: QuicEndpoint; port: number }> {
    const p = await getPki();
    const socket = await this.socket();
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
    const socket = await this.socket();
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

/**
 * An echo server and a client endpoint on two sockets of `net` (GSO as
 * asked), the server with `server` options over the test PKI; `close()`
 * closes all four.
 */
export async function memoryEndpointPair(
  net: MemoryNet,
  opts: {
    gso?: boolean;
    /** The server's socket coalesces what it receives (UDP GRO). */
    serverGro?: boolean;
    server?: Partial<QuicServerOptions>;
    /** Endpoint options of each side beyond the socket and TLS. */
    client?: Pick<QuicEndpointOptions, 'dgramQueueDelay'>;
    serverEndpoint?: Pick<QuicEndpointOptions, 'dgramQueueDelay' | 'maxDataBytes' | 'dgramQueueLen'>;
  } = {},
): Promise<{ server: QuicEndpoint; client: QuicEndpoint; ss: MemoryUdp; cs: MemoryUdp; port: number; close: () => void }> {
  const p = await getPki();
  const ss = net.open({ gso: opts.gso ?? false, gro: opts.serverGro ?? false });
  const cs = net.open({ gso: opts.gso ?? false });
  const server = new QuicEndpoint({
    socket: ss,
    keylogPath: null,
    server: { certPem: p.server.certPem, keyPem: p.server.keyPem, onConnection: (c) => echo(c), ...opts.server },
    ...opts.serverEndpoint,
  });
  const client = new QuicEndpoint({ socket: cs, keylogPath: null, client: { caPem: p.ca.certPem }, ...opts.client });
  const close = (): void => {
    server.close();
    client.close();
    ss.close();
    cs.close();
  };
  return { server, client, ss, cs, port: ss.port, close };
}

/** Pending writes per stream, retried on every event while flow control blocks them. */
class Writer {
  private readonly pending = new Map<number, { data: Uint8Array; fin: boolean }[]>();
  constructor(private readonly c: QuicConnection) {}

  write(sid: number, data: Uint8Array, fin: boolean): void {
    const q = this.pending.get(sid) ?? [];
    q.push({ data, fin });
    this.pending.set(sid, q);
    this.pump();
  }

  pump(): void {
    for (const [sid, q] of this.pending) {
      while (q.length > 0) {
        const head = q[0];
        const n = this.c.streamSend(sid, head.data, head.fin);
        if (n === head.data.length) {
          q.shift();
          continue;
        }
        head.data = head.data.subarray(n);
        break;
      }
      if (q.length === 0) this.pending.delete(sid);
    }
    this.c.watchWritable = this.pending.size > 0;
    this.c.flush();
  }
}

/** Reads every DATAGRAM `c` receives from now on (its onEvent is replaced) and counts them: read the count with the returned function. */
export function countDatagrams(c: QuicConnection): () => number {
  let n = 0;
  const b = new Uint8Array(2000);
  c.onEvent = (conn, ev) => {
    if (ev !== 'readable') return;
    while (conn.dgramRecv(b) !== null) n++;
  };
  return () => n;
}

/** Server behaviour for tests: echo stream bytes (with FIN) and datagrams back. */
export function echo(c: QuicConnection): void {
  const buf = new Uint8Array(65_536);
  const w = new Writer(c);
  c.onEvent = (conn, ev) => {
    if (ev === 'writable') w.pump();
    if (ev !== 'readable') return;
    for (const s of conn.readableStreams()) {
      let r: [number, boolean] | null;
      while ((r = conn.streamRecv(s, buf)) !== null) {
        if (r[0] > 0 || r[1]) w.write(s, buf.slice(0, r[0]), r[1]);
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
    if (c.isClosed) {
      reject(new Error(`already closed: ${JSON.stringify(c.closeInfo)}`));
      return;
    }
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65_536);
    const prev = c.onEvent;
    const w = new Writer(c);
    c.onEvent = (conn, ev) => {
      prev?.(conn, ev);
      if (ev === 'closed') reject(new Error(`closed: ${JSON.stringify(conn.closeInfo)}`));
      if (ev === 'writable') w.pump();
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
    w.write(sid, data, true);
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
