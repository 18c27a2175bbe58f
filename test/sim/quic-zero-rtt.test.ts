/**
 * 0-RTT is refused (rfc-checklist, QUIC row "do not accept CONNECT in early
 * data"; RFC 9001 §9.2 calls disabling 0-RTT the most effective defence
 * against replay; RFC 8470 §5.2 would otherwise demand 425 Too Early).
 *
 * The peer is a raw quiche client, not our endpoint: it enables early data,
 * resumes a session ticket our server issued, and writes a request on stream 0
 * as early as it can. Our server's tickets must not offer early data
 * (max_early_data_size 0, so the client stays out of 0-RTT), and the server
 * must see the request only once the handshake is complete. Checked to fail
 * when the server config calls enableEarlyData().
 */
import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { quiche, type QuicheConfig, type QuicheConnection, type QuicheHostPort } from '../../src/quic/quiche.js';
import { getPki, Harness, waitFor } from './quic-harness.js';
import { randomBytes } from 'node:crypto';

const h = new Harness();
afterEach(() => h.cleanup());

/** A bare quiche client on its own UDP socket, driven by hand. */
class RawClient {
  readonly conn: QuicheConnection;
  private readonly out = new Uint8Array(1500);
  private timer: NodeJS.Timeout | null = null;
  private readonly local: QuicheHostPort;

  constructor(
    private readonly sock: Socket,
    private readonly remote: QuicheHostPort,
    caPem: string,
    session: Uint8Array | null,
  ) {
    const cfg = quiche.Config.withBoringSslCtx(true, false, new TextEncoder().encode(caPem), null, null, null);
    cfg.setApplicationProtos(['h3']);
    cfg.setMaxIdleTimeout(5_000);
    cfg.setInitialMaxData(1 << 20);
    cfg.setInitialMaxStreamDataBidiLocal(1 << 16);
    cfg.setInitialMaxStreamDataBidiRemote(1 << 16);
    cfg.setInitialMaxStreamsBidi(10);
    cfg.setInitialMaxStreamsUni(10);
    cfg.enableDgram(true, 64, 64);
    (cfg as QuicheConfig & { enableEarlyData(): void }).enableEarlyData();
    const a = sock.address();
    this.local = { host: a.address, port: a.port };
    this.conn = quiche.Connection.connect('localhost', randomBytes(16), this.local, remote, cfg);
    if (session !== null) this.conn.setSession(session);
    sock.on('message', (msg, rinfo) => {
      try {
        this.conn.recv(msg, { from: { host: rinfo.address, port: rinfo.port }, to: this.local });
      } catch {
        /* quiche "Done" and undecryptable packets: nothing to do */
      }
      this.flush();
    });
  }

  flush(): void {
    for (;;) {
      let r: ReturnType<QuicheConnection['send']>;
      try {
        r = this.conn.send(this.out);
      } catch {
        break;
      }
      if (r === null) break;
      this.sock.send(this.out.slice(0, r[0]), this.remote.port, this.remote.host);
    }
    if (this.timer) clearTimeout(this.timer);
    const t = this.conn.timeout();
    if (t !== null) {
      this.timer = setTimeout(() => {
        this.conn.onTimeout();
        this.flush();
      }, Math.max(1, Math.min(t, 1_000)));
    }
  }

  readStream(sid: number): Uint8Array {
    const buf = new Uint8Array(4096);
    const parts: Uint8Array[] = [];
    for (;;) {
      let r: [number, boolean] | null;
      try {
        r = this.conn.streamRecv(sid, buf);
      } catch {
        break;
      }
      if (r === null) break;
      parts.push(buf.slice(0, r[0]));
      if (r[1]) break;
    }
    return Buffer.concat(parts);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

async function udp(): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return s;
}

describe('0-RTT (RFC 9001 §9.2; rfc-checklist: no CONNECT in early data)', () => {
  it('a resumed client that writes a request in early data is served only after the handshake completes', async () => {
    const p = await getPki();
    const seen: { establishedWhenReadable: boolean[] } = { establishedWhenReadable: [] };
    const { port } = await h.server({
      onConnection: (c) => {
        h.accepted.push(c);
        const buf = new Uint8Array(4096);
        c.onEvent = (conn, ev) => {
          if (ev !== 'readable') return;
          for (const sid of conn.readableStreams()) {
            seen.establishedWhenReadable.push(conn.isEstablished);
            let r: [number, boolean] | null;
            while ((r = conn.streamRecv(sid, buf)) !== null) {
              conn.streamSend(sid, buf.slice(0, r[0]), r[1]);
              if (r[1]) break;
            }
          }
          conn.flush();
        };
      },
    });
    const remote = { host: '127.0.0.1', port };
    const sockets: Socket[] = [];
    const clients: RawClient[] = [];
    try {
      // First connection: full handshake, collect the session ticket.
      const s1 = await udp();
      sockets.push(s1);
      const c1 = new RawClient(s1, remote, p.ca.certPem, null);
      clients.push(c1);
      c1.flush();
      await waitFor(() => c1.conn.isEstablished() && c1.conn.session() !== null, 5_000, 'first handshake and ticket');
      const ticket = c1.conn.session()!;
      c1.conn.close(true, 0, new Uint8Array(0));
      c1.flush();

      // Second connection: resume and write the request in early data.
      const s2 = await udp();
      sockets.push(s2);
      const c2 = new RawClient(s2, remote, p.ca.certPem, ticket);
      clients.push(c2);
      c2.flush(); // Initial: ClientHello with the ticket
      // The ticket offers no early data, so the client cannot enter 0-RTT.
      expect((c2.conn as QuicheConnection & { isInEarlyData(): boolean }).isInEarlyData()).toBe(false);
      const req = new TextEncoder().encode('CONNECT in early data');
      let sent = 0;
      await waitFor(() => {
        try {
          sent = c2.conn.streamSend(0, req, true) ?? 0;
        } catch {
          sent = 0; // not yet writable: before the handshake quiche refuses stream data without 0-RTT
        }
        c2.flush();
        return sent === req.length;
      }, 5_000, 'request written');

      let echoed = new Uint8Array(0);
      await waitFor(() => {
        if (c2.conn.isEstablished()) {
          const got = c2.readStream(0);
          if (got.length > 0) echoed = Buffer.concat([echoed, got]);
        }
        return echoed.length === req.length;
      }, 5_000, 'echo after the handshake');
      expect(Buffer.from(echoed).toString()).toBe('CONNECT in early data');
      expect(c2.conn.isResumed()).toBe(true);
      // The server saw the stream only once established: early data was not accepted.
      expect(seen.establishedWhenReadable.length).toBeGreaterThan(0);
      expect(seen.establishedWhenReadable.every((e) => e)).toBe(true);
    } finally {
      for (const c of clients) c.stop();
      for (const s of sockets) s.close();
    }
  });
});
