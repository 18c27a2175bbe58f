// QUIC Initial decryption against the RFC test vectors: RFC 9001 Appendix A
// (v1, §5.2 salt, §5.4 header protection, §5.3 AEAD) and RFC 9369 Appendix A (v2).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { clientInitialKeys, decryptInitial, LongHeader, PacketType, parseLongHeader, QUIC_V1, QUIC_V2, walkInitialFrames } from './quic-initial.js';
import { RFC9001_CLIENT_INITIAL, RFC9369_CLIENT_INITIAL, RFC_CLIENT_INITIAL_PAYLOAD_PREFIX } from './quic-vectors.js';
import { parseClientHelloMessage } from './tls-client-hello.js';

function decrypt(pkt: Buffer) {
  const h = new LongHeader();
  expect(parseLongHeader(pkt, 0, pkt.length, h)).toBe(true);
  const keys = clientInitialKeys(h.version, pkt, h.dcidOff, h.dcidLen);
  const out = new Uint8Array(2048);
  const n = decryptInitial(pkt, 0, h, keys, out);
  return { h, keys, n, out };
}

describe('QUIC Initial decryption', () => {
  // RFC 9001 Appendix A.1 (v1) and RFC 9369 Appendix A.1 (v2: its own salt and "quicv2" labels).
  for (const [name, pkt, version, key, iv, hp] of [
    ['RFC 9001 Appendix A.1: v1', RFC9001_CLIENT_INITIAL, QUIC_V1, '1f369613dd76d5467730efcbe3b1a22d', 'fa044b2f42a3fd3b46fb255c', '9f50449e04a0e810283a1e9933adedd2'],
    ['RFC 9369 Appendix A.1: v2', RFC9369_CLIENT_INITIAL, QUIC_V2, '8b1a0bc121284290a29e0971b5cd045d', '91f73e2351d8fa91660e909f', '45b95e15235d6f45a6b19cbcb0294ba9'],
  ] as const) {
    it(`${name} client keys from DCID 8394c8f03e515708`, () => {
      const d = decrypt(pkt);
      expect(d.h.version).toBe(version);
      expect(d.h.type).toBe(PacketType.INITIAL);
      expect([d.keys.key, d.keys.iv, d.keys.hp].map((b) => b.toString('hex'))).toEqual([key, iv, hp]);
    });
  }

  for (const [name, pkt] of [['RFC 9001 Appendix A.2 (v1)', RFC9001_CLIENT_INITIAL], ['RFC 9369 Appendix A.2 (v2)', RFC9369_CLIENT_INITIAL]] as const) {
    it(`${name}: decrypts exactly to the published payload, and the ClientHello parses`, () => {
      const { n, out } = decrypt(pkt);
      // 1200 bytes - 18 header - 4 packet number - 16 tag.
      expect(n).toBe(1162);
      const prefix = RFC_CLIENT_INITIAL_PAYLOAD_PREFIX;
      expect(Buffer.from(out.subarray(0, prefix.length)).equals(prefix)).toBe(true);
      expect(out.subarray(prefix.length, n).every((x) => x === 0)).toBe(true); // PADDING
      const frames: { off: number; len: number; data: Uint8Array }[] = [];
      expect(walkInitialFrames(out, n, { crypto: (off, d, dOff, len) => frames.push({ off, len, data: d.slice(dOff, dOff + len) }) })).toBe(true);
      expect(frames.map((f) => [f.off, f.len])).toEqual([[0, 241]]);
      const r = { sni: null as string | null, alpn: null as string | null };
      expect(parseClientHelloMessage(frames[0]!.data, 241, r)).toBe(1);
      expect(r).toEqual({ sni: 'example.com', alpn: 'alpn' });
    });
  }

  it('a flipped ciphertext or tag byte fails authentication (RFC 9001 §5.3), never throws', () => {
    for (const at of [100, 1199]) {
      const bad = Buffer.from(RFC9001_CLIENT_INITIAL);
      bad[at]! ^= 1;
      expect(decrypt(bad).n).toBe(-1);
    }
  });

  it('random bytes never throw in the header parser or frame walker', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), (b) => {
      const h = new LongHeader();
      parseLongHeader(b, 0, b.length, h);
      walkInitialFrames(b, b.length, { crypto: () => {} });
    }));
  });
});
