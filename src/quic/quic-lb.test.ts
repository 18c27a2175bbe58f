import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkQuicLbConfig, decodeQuicLbCid, encodeQuicLbCid, QUIC_LB_UNROUTABLE_CONFIG } from './quic-lb.js';
import { cidKey } from './connection.js';
import { CID_BYTES } from './endpoint.js';

const arbConfig = fc.record({
  configRotation: fc.integer({ min: 0, max: 6 }),
  serverId: fc.uint8Array({ minLength: 1, maxLength: CID_BYTES - 1 - 4 }),
});

describe('QUIC-LB connection IDs, keyless (draft-ietf-quic-load-balancers §3, §5)', () => {
  it('decode∘encode gives back the config rotation and server ID; the first octet is never 0b111 (§3.2)', () => {
    fc.assert(fc.property(arbConfig, (cfg) => {
      checkQuicLbConfig(cfg, CID_BYTES);
      const cid = new Uint8Array(CID_BYTES);
      encodeQuicLbCid(cid, cfg);
      expect(cid[0]! >> 5).not.toBe(QUIC_LB_UNROUTABLE_CONFIG);
      const d = decodeQuicLbCid(cid, cfg.serverId.length);
      expect(d).not.toBeNull();
      expect(d!.configRotation).toBe(cfg.configRotation);
      expect([...d!.serverId]).toEqual([...cfg.serverId]);
    }), { numRuns: 500 });
  });

  it('the nonce (and the demux key in the last 4 octets) is random: 2000 CIDs of one server never repeat a key', () => {
    const cfg = { configRotation: 2, serverId: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]) }; // the longest: 4-octet nonce
    const keys = new Set<number>();
    const lowBits = new Set<number>();
    const cid = new Uint8Array(CID_BYTES);
    for (let i = 0; i < 2000; i++) {
      encodeQuicLbCid(cid, cfg);
      keys.add(cidKey(cid, 0));
      lowBits.add(cid[0]! & 0x1f);
    }
    expect(keys.size).toBeGreaterThan(1995); // 2000 draws from 2^32: a repeat is a ~0.05 % event
    expect(lowBits.size).toBe(32); // §3.3: no length self-description, the five bits are random
  });

  it('a known vector: rotation 1, server ID 0xabcdef', () => {
    const cid = new Uint8Array(CID_BYTES);
    encodeQuicLbCid(cid, { configRotation: 1, serverId: Uint8Array.from([0xab, 0xcd, 0xef]) });
    expect(cid[0]! & 0xe0).toBe(0x20);
    expect([...cid.subarray(1, 4)]).toEqual([0xab, 0xcd, 0xef]);
  });

  it('unroutable: config rotation 0b111, or a CID too short for the server ID and a 4-octet nonce (§4, §5.3)', () => {
    const cid = new Uint8Array(CID_BYTES).fill(0xff);
    expect(decodeQuicLbCid(cid, 2)).toBeNull();
    cid[0] = 0x00;
    expect(decodeQuicLbCid(cid.subarray(0, 6), 2)).toBeNull();
    expect(decodeQuicLbCid(cid.subarray(0, 7), 2)).not.toBeNull();
  });

  it('refuses configurations that do not fit: rotation 7, empty server ID, nonce under 4 octets', () => {
    expect(() => checkQuicLbConfig({ configRotation: 7, serverId: Uint8Array.of(1) }, CID_BYTES)).toThrow(/rotation 7 must be 0-6/);
    expect(() => checkQuicLbConfig({ configRotation: 0, serverId: new Uint8Array(0) }, CID_BYTES)).toThrow(/does not fit/);
    expect(() => checkQuicLbConfig({ configRotation: 0, serverId: new Uint8Array(12) }, CID_BYTES)).toThrow(/1-11 octets/);
    expect(() => checkQuicLbConfig({ configRotation: 0, serverId: new Uint8Array(11) }, CID_BYTES)).not.toThrow();
  });
});
