/**
 * A QUIC server configured with a QUIC-LB server ID (draft-ietf-quic-load-
 * balancers, keyless) issues only connection IDs that carry it, with and
 * without Retry, and still demultiplexes many connections whose connection
 * IDs share their first octets (the demux key is the random last 4 octets).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { decodeQuicLbCid } from '../../src/quic/quic-lb.js';
import { Harness, streamRoundTrip } from './quic-harness.js';

const h = new Harness();
afterEach(() => h.cleanup());
const enc = new TextEncoder();
/** The server-side connection's own CID (what the client sends as DCID). */
const scidOf = (c: unknown): Uint8Array => (c as { scid: Uint8Array }).scid;

describe('QUIC endpoint with a QUIC-LB server ID', () => {
  for (const retry of ['off', 'on'] as const) {
    it(`every server connection ID carries the server ID (retry ${retry}); 40 connections sharing their first 4 octets all work`, async () => {
      // 11 octets: the longest server ID, leaving the minimum 4-octet nonce; the first 12 octets are the same in every CID.
      const serverId = Uint8Array.from([0xab, 0xcd, 0xef, 1, 2, 3, 4, 5, 6, 7, 8]);
      const { port } = await h.server({ retry, quicLb: { configRotation: 3, serverId } });
      const client = await h.client();
      const before = h.accepted.length; // the harness keeps every test's connections
      for (let i = 0; i < 40; i++) {
        const c = client.connect('127.0.0.1', port, 'localhost');
        await c.whenEstablished();
        await streamRoundTrip(c, 0, enc.encode(`conn ${i}`));
      }
      const accepted = h.accepted.slice(before);
      expect(accepted).toHaveLength(40);
      for (const s of accepted) {
        const d = decodeQuicLbCid(scidOf(s), serverId.length);
        expect(d?.configRotation).toBe(3);
        expect([...d!.serverId]).toEqual([...serverId]);
      }
      expect(new Set(accepted.map((s) => Buffer.from(scidOf(s)).toString('hex'))).size).toBe(40);
    });
  }
});
