import { describe, expect, it } from 'vitest';
import { buildConnectIpRequest, checkConnectIpRequest, type ExtendedConnectRequest } from './request.js';
import { parsePrefix } from '../../packet/ip-address.js';

const req = (path: string, over: Partial<ExtendedConnectRequest> = {}): ExtendedConnectRequest => ({
  method: 'CONNECT',
  protocol: 'connect-ip',
  scheme: 'https',
  authority: 'gw.example',
  path,
  capsuleProtocol: true,
  ...over,
});
const P = '/.well-known/masque/ip';

describe('RFC 9484 §4.6 request scope validation (400 malformed / 403 disallowed, RFC 9209 Proxy-Status)', () => {
  it('accepts the wildcard request of §4.4 Figure 4, and %2A', () => {
    const r = checkConnectIpRequest(req(`${P}/*/*/`));
    expect(r).toEqual({ ok: true, scope: { target: { kind: 'any' }, ipProtocol: null } });
    expect(checkConnectIpRequest(req(`${P}/%2A/%2A/`)).ok).toBe(true);
  });
  it('accepts IPv4 and IPv6 prefixes, addresses and host names', () => {
    const v6 = checkConnectIpRequest(req(`${P}/2001%3Adb8%3A%3A%2F32/17/`));
    expect(v6.ok && v6.scope.target.kind === 'prefix' && v6.scope.target.prefix.prefixLength).toBe(32);
    expect(v6.ok && v6.scope.ipProtocol).toBe(17);
    const v4 = checkConnectIpRequest(req(`${P}/192.0.2.42/6/`));
    expect(v4.ok && v4.scope.target.kind === 'prefix' && v4.scope.target.prefix.prefixLength).toBe(32);
    const host = checkConnectIpRequest(req(`${P}/db.cluster-b.internal/*/`));
    expect(host.ok && host.scope.target).toEqual({ kind: 'hostname', name: 'db.cluster-b.internal' });
  });
  const malformed: [string, string, RegExp][] = [
    ['ipproto 256', `${P}/*/256/`, /ipproto 256 exceeds 255/],
    ['ipproto 4 digits', `${P}/*/0017/`, /ipproto/],
    ['ipproto not a number', `${P}/*/tcp/`, /ipproto/],
    ['IPv6 zone ID (%25 escape)', `${P}/fe80%3A%3A1%25eth0/*/`, /zone/],
    ['IPv4 prefix length 33', `${P}/10.0.0.0%2F33/*/`, /exceeds 32/],
    ['IPv6 prefix length 129', `${P}/2001%3Adb8%3A%3A%2F129/*/`, /exceeds 128/],
    ['IPv4 prefix with 3-digit length', `${P}/10.0.0.0%2F008/*/`, /malformed/],
    ['host bits set', `${P}/10.0.0.1%2F8/*/`, /bits set/],
    ['bad IPv4 literal', `${P}/10.0.0.256/*/`, /not a valid/],
    ['bad escape', `${P}/%G1/*/`, /template/],
  ];
  for (const [name, path, why] of malformed) {
    it(`malformed → 400 with Proxy-Status http_request_error: ${name}`, () => {
      const r = checkConnectIpRequest(req(path));
      expect(r.ok).toBe(false);
      if (r.ok) return;
      if (name === 'bad escape') {
        expect(r.status).toBe(404);
        return;
      }
      expect(r.status).toBe(400);
      expect(r.proxyStatus).toMatch(/^mtun; error=http_request_error; details="/);
      expect(r.reason).toMatch(why);
    });
  }
  it('§4.4 pseudo-headers: wrong method / protocol / missing :path → 400', () => {
    expect(checkConnectIpRequest(req(`${P}/*/*/`, { method: 'GET' }))).toMatchObject({ ok: false, status: 400 });
    expect(checkConnectIpRequest(req(`${P}/*/*/`, { protocol: 'connect-udp' }))).toMatchObject({ ok: false, status: 400 });
    expect(checkConnectIpRequest(req('', { path: '' }))).toMatchObject({ ok: false, status: 400 });
    expect(checkConnectIpRequest(req(`${P}/*/*/`, { capsuleProtocol: false }))).toMatchObject({ ok: false, status: 400 });
    expect(checkConnectIpRequest(req('/elsewhere'))).toMatchObject({ ok: false, status: 404 });
  });
  it('disallowed scope → 403 destination_ip_prohibited; §4.8 extension-header ipproto → 403', () => {
    const only = parsePrefix('10.0.0.0/8')!;
    const allowScope = (s: { target: { kind: string; prefix?: typeof only } }) =>
      s.target.kind === 'prefix' && s.target.prefix!.version === 4 && s.target.prefix!.prefixLength >= 8 && s.target.prefix!.address[0] === 10;
    const r = checkConnectIpRequest(req(`${P}/192.0.2.0%2F24/*/`), { allowScope });
    expect(r).toMatchObject({ ok: false, status: 403 });
    expect(!r.ok && r.proxyStatus).toBe('mtun; error=destination_ip_prohibited; details="scope not allowed for this client"');
    expect(checkConnectIpRequest(req(`${P}/10.1.0.0%2F16/*/`), { allowScope }).ok).toBe(true);
    expect(checkConnectIpRequest(req(`${P}/*/44/`))).toMatchObject({ ok: false, status: 403 });
    expect(checkConnectIpRequest(req(`${P}/*/44/`), { rejectExtensionHeaderProtocols: false }).ok).toBe(true);
  });
  it('client builder round-trips through the gateway check', () => {
    const scope = { target: { kind: 'prefix' as const, prefix: parsePrefix('2001:db8:42::/48')! }, ipProtocol: 6 };
    const built = buildConnectIpRequest('gw.example:8443', scope);
    expect(built.authority).toBe('gw.example:8443');
    expect(built.path).toBe('/.well-known/masque/ip/2001%3Adb8%3A42%3A%3A%2F48/6/');
    const back = checkConnectIpRequest(built);
    expect(back.ok && back.scope).toEqual(scope);
    expect(buildConnectIpRequest('gw').path).toBe('/.well-known/masque/ip/*/*/');
  });
});
