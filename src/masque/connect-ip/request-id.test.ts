// Request IDs beyond 2^53 − 1 (found by the fuzz campaign, fuzz/: masque-capsules).
// A double cannot hold them: 2^62 − 1 read as a number rounds to 2^62, which
// no varint can carry, so echoing it in ADDRESS_ASSIGN threw RangeError out of
// the gateway session's onCapsule. The parser now refuses such IDs as malformed.
import { describe, expect, it } from 'vitest';
import { parseAddressAssign } from './address-assign.js';
import { parseAddressRequest } from './address-request.js';
import { CAPSULE_ADDRESS_REQUEST } from './capsule-types.js';
import { H3Error } from '../../h3/errors.js';
import { ConnectIpGatewaySession } from './gateway-session.js';
import { AddressPool } from '../address-pool.js';
import { TunnelStreamPair } from '../testing/tunnel-stream-pair.js';

// Request ID 0xff… (8-byte varint, 2^62 − 1) | IP Version 4 | 0.0.0.0 | prefix length 32
const HUGE_ID_ANY_V4 = Uint8Array.from(Buffer.from('ffffffffffffffff' + '04' + '00000000' + '20', 'hex'));
// Request ID 2^53 (8-byte varint c0 20 00 00 00 00 00 00) — the first value a double cannot tell from 2^53 + 1.
const ID_2_53 = Uint8Array.from(Buffer.from('c020000000000000' + '04' + '00000000' + '20', 'hex'));
// Request ID 2^53 − 1 (c0 1f ff ff ff ff ff ff): still exact, still accepted.
const ID_MAX_SAFE = Uint8Array.from(Buffer.from('c01fffffffffffff' + '04' + '00000000' + '20', 'hex'));

describe('CONNECT-IP Request ID range', () => {
  it('ADDRESS_REQUEST / ADDRESS_ASSIGN with a Request ID above 2^53 − 1 are malformed, with a masque: reason', () => {
    for (const v of [HUGE_ID_ANY_V4, ID_2_53]) {
      const r = parseAddressRequest(v, 0, v.length);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatch(/^masque: ADDRESS_REQUEST: Request ID .* above 2\^53/);
      expect(parseAddressAssign(v, 0, v.length).ok).toBe(false);
    }
    const ok = parseAddressRequest(ID_MAX_SAFE, 0, ID_MAX_SAFE.length);
    expect(ok.ok && ok.value.addresses[0]!.requestId).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('the gateway session aborts the stream instead of throwing RangeError from onCapsule', () => {
    const pair = new TunnelStreamPair();
    const gw = new ConnectIpGatewaySession(pair.gateway, {
      scope: { target: { kind: 'any' }, ipProtocol: null },
      pools: { v4: new AddressPool({ prefix: '10.89.0.0/24', reserved: ['10.89.0.1'], minPrefixLength: 24 }) },
      onPacket: () => undefined,
    });
    pair.gateway.attach(gw);
    gw.start();
    expect(() => gw.onCapsule(CAPSULE_ADDRESS_REQUEST, HUGE_ID_ANY_V4)).not.toThrow();
    expect(pair.gateway.abortedWith).toBe(H3Error.H3_GENERAL_PROTOCOL_ERROR);
  });
});
