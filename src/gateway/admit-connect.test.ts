import { describe, expect, it } from 'vitest';
import { compilePolicy } from '../config/index.js';
import { parseGatewayConfig } from '../config/load.js';
import { admitConnect, type AdmitInput } from './admit-connect.js';
import { bearerToken, TokenTable } from './auth.js';

const cfg = parseGatewayConfig(`tls: {cert: a, key: b, ca: c}
pools: {ipv4: 10.200.0.0/24}
policy:
  - identity: site-a
    allow: [{prefixes: [10.20.0.0/24]}]
`, 'gw.yaml');
const policy = compilePolicy(cfg.policy);
const tokens = new TokenTable([
  { token: 'a-token-that-is-long-enough-0001', identity: 'site-a' },
  { token: 'b-token-that-is-long-enough-0002', identity: 'site-b' },
]);

function input(over: Partial<AdmitInput> = {}): AdmitInput {
  return {
    certIdentity: null,
    authorization: 'Bearer a-token-that-is-long-enough-0001',
    protocol: 'connect-ip',
    tokens,
    policy,
    sessions: 0,
    sessionsOf: () => 0,
    maxSessions: 10,
    maxSessionsPerIdentity: 2,
    ...over,
  };
}

describe('admitConnect', () => {
  it('admits a known token with its identity and policy', () => {
    const r = admitConnect(input());
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.identity).toBe('site-a');
      expect(r.token).toBe('a-token-that-is-long-enough-0001');
      expect(r.policy.pattern).toBe('site-a');
    }
  });

  it('prefers the certificate identity and ignores any token', () => {
    const r = admitConnect(input({ certIdentity: 'site-a', authorization: 'Bearer nonsense' }));
    expect(r.ok && r.identity === 'site-a' && r.token === null).toBe(true);
  });

  it('401 with WWW-Authenticate for no or an unknown token', () => {
    for (const authorization of [undefined, 'Bearer wrong-token-wrong-token-wrong-token', 'Basic abc']) {
      const r = admitConnect(input({ authorization }));
      expect(r.ok).toBe(false);
      if (!r.ok) {
        expect(r.status).toBe(401);
        expect(r.headers).toContainEqual(['www-authenticate', 'Bearer']);
        expect(r.identity).toBeNull();
      }
    }
  });

  it('503 at the gateway-wide limit, 429 at the per-identity limit (pending opens included by the caller)', () => {
    const full = admitConnect(input({ sessions: 10 }));
    expect(!full.ok && full.status).toBe(503);
    const mine = admitConnect(input({ sessionsOf: (id) => (id === 'site-a' ? 2 : 0) }));
    expect(!mine.ok && mine.status).toBe(429);
    expect(!mine.ok && mine.reason).toMatch(/per identity/);
    expect(!mine.ok && mine.rule).toBe('per-identity session limit');
  });

  it('403 default deny for an authenticated identity without policy', () => {
    const r = admitConnect(input({ authorization: 'Bearer b-token-that-is-long-enough-0002' }));
    expect(!r.ok && r.status).toBe(403);
    expect(!r.ok && r.identity).toBe('site-b');
  });

  it('501 for an unknown :protocol', () => {
    const r = admitConnect(input({ protocol: 'websocket' }));
    expect(!r.ok && r.status).toBe(501);
  });
});

describe('TokenTable and bearerToken', () => {
  it('maps exact tokens only (prefixes, suffixes and case do not match)', () => {
    expect(tokens.identityOf('a-token-that-is-long-enough-0001')).toBe('site-a');
    expect(tokens.identityOf('a-token-that-is-long-enough-000')).toBeNull();
    expect(tokens.identityOf('a-token-that-is-long-enough-00011')).toBeNull();
    expect(tokens.identityOf('A-TOKEN-THAT-IS-LONG-ENOUGH-0001')).toBeNull();
    expect(tokens.identityOf('')).toBeNull();
  });

  it('finds any of thousands of tokens (one per agent), the first identity for a token listed twice', () => {
    const tok = (k: number) => `per-agent-token-${String(k).padStart(20, '0')}`;
    const many = new TokenTable([
      ...Array.from({ length: 5000 }, (_, k) => ({ token: tok(k), identity: `agent-${k}` })),
      { token: tok(17), identity: 'second-listing' },
    ]);
    expect(many.size).toBe(5001);
    expect(many.identityOf(tok(0))).toBe('agent-0');
    expect(many.identityOf(tok(4999))).toBe('agent-4999');
    expect(many.identityOf(tok(17))).toBe('agent-17');
    expect(many.identityOf(tok(5000))).toBeNull();
  });

  it('parses the Authorization header', () => {
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(bearerToken('bearer  abc ')).toBe('abc');
    expect(bearerToken('Bearer a b')).toBeNull();
    expect(bearerToken(undefined)).toBeNull();
  });
});
