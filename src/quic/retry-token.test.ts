import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RetryTokens } from './retry-token.js';
import { allocUdpBatch, writeAddrSlot } from '../net/udp-batch.js';

function addr(host: string, port: number): Uint8Array {
  const b = allocUdpBatch(1, 1);
  writeAddrSlot(b.addrs, 0, host, port);
  return b.addrs;
}

describe('RetryTokens (RFC 9000 §8.1.2 address validation)', () => {
  const odcid = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const scid = new Uint8Array(20).fill(9);

  it('round-trips the original destination CID', () => {
    const t = new RetryTokens();
    const a = addr('127.0.0.1', 4433);
    const tok = t.mint(odcid, scid, a, 0);
    expect(Array.from(t.validate(tok, scid, a, 0)!)).toEqual(Array.from(odcid));
    expect(t.lastRejection).toBeNull();
  });

  it('is bound to the client address and port', () => {
    const t = new RetryTokens();
    const tok = t.mint(odcid, scid, addr('127.0.0.1', 4433), 0);
    expect(t.validate(tok, scid, addr('127.0.0.2', 4433), 0)).toBeNull();
    expect(t.lastRejection).toBe('bad-mac');
    expect(t.validate(tok, scid, addr('127.0.0.1', 4434), 0)).toBeNull();
  });

  it('is bound to the Retry source CID and the key', () => {
    const t = new RetryTokens();
    const a = addr('::1', 1);
    const tok = t.mint(odcid, scid, a, 0);
    expect(t.validate(tok, new Uint8Array(20), a, 0)).toBeNull();
    expect(new RetryTokens().validate(tok, scid, a, 0)).toBeNull();
  });

  it('expires after its lifetime', () => {
    let now = 1_000_000;
    const t = new RetryTokens({ lifetimeMs: 5000, now: () => now });
    const a = addr('127.0.0.1', 1);
    const tok = t.mint(odcid, scid, a, 0);
    now += 5000;
    expect(t.validate(tok, scid, a, 0)).not.toBeNull();
    now += 1;
    expect(t.validate(tok, scid, a, 0)).toBeNull();
    expect(t.lastRejection).toBe('expired');
  });

  it('rejects tampered tokens and never throws on random bytes', () => {
    const t = new RetryTokens();
    const a = addr('127.0.0.1', 1);
    const tok = t.mint(odcid, scid, a, 0);
    for (let i = 0; i < tok.length; i++) {
      const bad = Uint8Array.from(tok);
      bad[i] ^= 1;
      expect(t.validate(bad, scid, a, 0)).toBeNull();
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        expect(t.validate(b, scid, a, 0)).toBeNull();
      }),
    );
  });
});
