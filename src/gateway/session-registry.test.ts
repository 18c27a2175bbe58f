import { describe, expect, it } from 'vitest';
import { compilePolicy } from '../config/index.js';
import { parseGatewayConfig } from '../config/load.js';
import { admitConnect } from './admit-connect.js';
import { TokenTable } from './auth.js';
import { SessionRegistry } from './session-registry.js';

const cfg = parseGatewayConfig(`tls: {cert: a, key: b, ca: c}
pools: {ipv4: 10.200.0.0/24}
maxSessionsPerIdentity: 4
policy:
  - identity: site-a
    allow: [{prefixes: [10.20.0.0/24]}]
`, 'gw.yaml');
const policy = compilePolicy(cfg.policy);

describe('SessionRegistry: pending CONNECT-UDP opens count against the limits (#12 item 6)', () => {
  // On the old gateway a burst of CONNECT-UDP requests all passed the per-identity check:
  // only open sessions were counted, and none had finished opening yet.
  it('a burst of opens for one identity stops at maxSessionsPerIdentity', () => {
    const reg = new SessionRegistry();
    const admitted: Array<() => void> = [];
    let refused = 0;
    for (let i = 0; i < 50; i++) {
      const a = admitConnect({
        certIdentity: 'site-a', authorization: undefined, protocol: 'connect-udp', tokens: new TokenTable([]), policy,
        sessions: reg.count, sessionsOf: (id) => reg.countOf(id), maxSessions: 1000, maxSessionsPerIdentity: cfg.maxSessionsPerIdentity,
      });
      if (a.ok) admitted.push(reg.reserve(a.identity));
      else {
        expect(a.status).toBe(429);
        refused++;
      }
    }
    expect(admitted).toHaveLength(4);
    expect(refused).toBe(46);
    expect(reg.countOf('site-a')).toBe(4);
    // Releasing (open failed or finished) frees the slot exactly once.
    admitted[0]!();
    admitted[0]!();
    expect(reg.countOf('site-a')).toBe(3);
    expect(reg.count).toBe(3);
  });
});
