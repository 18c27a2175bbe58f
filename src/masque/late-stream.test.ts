import { describe, expect, it } from 'vitest';
import { LateTunnelStream } from './late-stream.js';
import { TunnelStreamPair } from './testing/tunnel-stream-pair.js';
import { resolveConnectIpTarget } from './connect-ip/resolve-target.js';

describe('LateTunnelStream', () => {
  it('queues capsules before bind and replays them in order; refuses datagrams; applies an early abort', () => {
    const pair = new TunnelStreamPair();
    const late = new LateTunnelStream();
    expect(late.sendCapsule(1, Uint8Array.of(1))).toBe(true);
    expect(late.sendCapsule(2, Uint8Array.of(2))).toBe(true);
    expect(late.sendDatagram(new Uint8Array(20), 10, 5)).toBe(false);
    expect(late.maxDatagramPayload()).toBe(0);
    late.bind(pair.gateway);
    expect(pair.gateway.sentCapsules.map((c) => c.type)).toEqual([1, 2]);
    expect(late.maxDatagramPayload()).toBe(1400);
    expect(() => late.bind(pair.gateway)).toThrow(/masque/);
    const l2 = new LateTunnelStream();
    l2.abort(0x10c);
    expect(l2.sendCapsule(1, Uint8Array.of(1))).toBe(false);
    l2.bind(pair.client);
    expect(pair.client.abortedWith).toBe(0x10c);
  });
});

describe('RFC 9484 §4.6 host-name targets', () => {
  it('resolves to full-length routes; lookup failure → 502 dns_error', async () => {
    const scope = { target: { kind: 'hostname' as const, name: 'db.example' }, ipProtocol: null };
    const ok = await resolveConnectIpTarget(scope, async () => [{ address: '192.0.2.5', family: 4 }, { address: '2001:db8::5', family: 6 }]);
    expect(Array.isArray(ok) && ok.map((p) => p.prefixLength)).toEqual([32, 128]);
    const bad = await resolveConnectIpTarget(scope, async () => {
      throw Object.assign(new Error('x'), { code: 'ENOTFOUND' });
    });
    expect(bad).toMatchObject({ ok: false, status: 502, proxyStatus: 'mtun; error=dns_error; rcode="NXDOMAIN"; details="resolving db.example failed: ENOTFOUND"' });
    expect(await resolveConnectIpTarget({ target: { kind: 'any' }, ipProtocol: null })).toBeNull();
  });
});
