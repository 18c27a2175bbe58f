/**
 * 0-RTT is refused (rfc-checklist, QUIC row "do not accept CONNECT in early
 * data"; RFC 9001 §9.2 calls disabling 0-RTT the most effective defence
 * against replay; RFC 8470 §5.2 would otherwise demand 425 Too Early).
 *
 * The peer is a quiche client (quiche-peer.ts), not our engine: it enables
 * early data, resumes a session ticket our server issued, and writes a
 * request on stream 0 as early as it can. Our server's tickets must not
 * offer early data (so the client stays out of 0-RTT), and the server must
 * see the request only once the handshake is complete. Checked to fail when
 * the server's GnuTLS session enables early data (GNUTLS_ENABLE_EARLY_DATA
 * and a max_early_data_size in quic-tls.c).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { getPki, Harness, waitFor } from './quic-harness.js';
import { QuichePeer } from './quiche-peer.js';

const h = new Harness();
afterEach(() => h.cleanup());

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
    const clients: QuichePeer[] = [];
    try {
      // First connection: full handshake, collect the session ticket.
      const c1 = await QuichePeer.connect(remote, { caPem: p.ca.certPem, earlyData: true });
      clients.push(c1);
      c1.flush();
      await waitFor(() => c1.conn.isEstablished() && c1.conn.session() !== null, 5_000, 'first handshake and ticket');
      const ticket = c1.conn.session()!;
      c1.conn.close(true, 0, new Uint8Array(0));
      c1.flush();

      // Second connection: resume and write the request in early data.
      const c2 = await QuichePeer.connect(remote, { caPem: p.ca.certPem, earlyData: true, session: ticket });
      clients.push(c2);
      c2.flush(); // Initial: ClientHello with the ticket
      // The ticket offers no early data, so the client cannot enter 0-RTT.
      expect(c2.conn.isInEarlyData()).toBe(false);
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
          const got = c2.read(0).data;
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
    }
  });
});
