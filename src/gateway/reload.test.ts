import { describe, expect, it } from 'vitest';
import { compilePolicy } from '../config/index.js';
import { parseGatewayConfig } from '../config/load.js';
import { TokenTable } from './auth.js';
import { reviewSession, udpTargetAllowed, type ReviewedSession } from './reload.js';

const TOKEN = 'x'.repeat(40);
function config(targets: string, udpPorts = '53') {
  return parseGatewayConfig(`tls: {cert: a, key: b, ca: c}
pools: {ipv4: 10.200.0.0/24}
connectUdp:
  enabled: true
  targets: ${targets}
policy:
  - identity: site-a
    allow: [{prefixes: [10.20.0.0/24], protocols: [udp], ports: [${udpPorts}]}]
`, 'gw.yaml');
}
const tokens = new TokenTable([{ token: TOKEN, identity: 'site-a' }]);
const udp: ReviewedSession = {
  identity: 'site-a', token: null, kind: 'connect-udp',
  udpTarget: { host: 'dns.internal', port: 53 }, udpAddress: Uint8Array.of(10, 20, 0, 53),
};

describe('reviewSession (#12 item 7: reload re-checks open CONNECT-UDP sessions)', () => {
  it('keeps a session whose target and address are still allowed', () => {
    const c = config('[{host: dns.internal, ports: [53]}]');
    const v = reviewSession(udp, compilePolicy(c.policy), tokens, c, []);
    expect(v.keep).toBe(true);
  });

  it('closes a CONNECT-UDP session whose target left connectUdp.targets', () => {
    const c = config('[{host: other.internal, ports: [53]}]');
    expect(reviewSession(udp, compilePolicy(c.policy), tokens, c, [])).toEqual({ keep: false, reason: 'target no longer in connectUdp.targets' });
  });

  it('closes a CONNECT-UDP session whose address the policy no longer allows', () => {
    const c = config('[{host: dns.internal, ports: [53]}]', '5353');
    expect(reviewSession(udp, compilePolicy(c.policy), tokens, c, [])).toEqual({ keep: false, reason: 'policy no longer allows UDP to the target' });
  });

  it("closes a CONNECT-UDP session whose address became one of the gateway's own", () => {
    const c = config('[{host: dns.internal, ports: [53]}]');
    expect(reviewSession(udp, compilePolicy(c.policy), tokens, c, [Uint8Array.of(10, 20, 0, 53)])).toEqual({ keep: false, reason: "target now prohibited: the gateway's own address" });
    expect(reviewSession(udp, compilePolicy(c.policy), tokens, c, [Uint8Array.of(10, 20, 0, 54)]).keep).toBe(true);
  });

  it('closes sessions of identities without policy, and of revoked tokens', () => {
    const c = config('[]');
    const ip: ReviewedSession = { identity: 'site-b', token: null, kind: 'connect-ip', udpTarget: null, udpAddress: null };
    expect(reviewSession(ip, compilePolicy(c.policy), tokens, c, [])).toEqual({ keep: false, reason: 'no policy' });
    const byToken: ReviewedSession = { ...ip, identity: 'site-a', token: TOKEN };
    expect(reviewSession(byToken, compilePolicy(c.policy), tokens, c, []).keep).toBe(true);
    expect(reviewSession(byToken, compilePolicy(c.policy), new TokenTable([]), c, [])).toEqual({ keep: false, reason: 'token revoked' });
  });

  it('udpTargetAllowed matches host as written and port ranges', () => {
    const c = config('[{host: dns.internal, ports: ["50-60"]}]');
    expect(udpTargetAllowed(c, 'dns.internal', 55)).toBe(true);
    expect(udpTargetAllowed(c, 'dns.internal', 61)).toBe(false);
    expect(udpTargetAllowed(c, 'DNS.internal', 55)).toBe(false);
  });
});
