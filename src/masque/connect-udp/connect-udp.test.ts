import { H3Error } from '../../h3/errors.js';
import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseIp } from '../../packet/ip-address.js';
import { TunnelStreamPair } from '../testing/tunnel-stream-pair.js';
import { ConnectUdpClientSession } from './client-session.js';
import { ConnectUdpDrop, MAX_UDP_PAYLOAD } from './counters.js';
import { ConnectUdpGatewaySession, MIN_UDP_IDLE_TIMEOUT_MS, type ConnectUdpGatewayOptions } from './gateway-session.js';
import { buildConnectUdpRequest, checkConnectUdpRequest, parseUdpTarget, prohibitedUdpDestination, type UdpTarget } from './request.js';

const P = '/.well-known/masque/udp';
const req = (path: string) => ({ method: 'CONNECT', protocol: 'connect-udp', scheme: 'https', authority: 'gw', path, capsuleProtocol: true });

describe('RFC 9298 §2/§3 request validation', () => {
  it('accepts IPv4, percent-encoded IPv6 and host names; builder round-trips', () => {
    expect(checkConnectUdpRequest(req(`${P}/192.0.2.6/443/`))).toMatchObject({ ok: true, target: { host: '192.0.2.6', port: 443 } });
    expect(checkConnectUdpRequest(req(`${P}/2001%3Adb8%3A%3A42/53/`))).toMatchObject({ ok: true, target: { host: '2001:db8::42', port: 53 } });
    expect(checkConnectUdpRequest(req(`${P}/dns.example/53/`))).toMatchObject({ ok: true, target: { host: 'dns.example', port: 53 } });
    const b = buildConnectUdpRequest('gw.example:4433', '2001:db8::42', 8443);
    expect(b.path).toBe(`${P}/2001%3Adb8%3A%3A42/8443/`);
    expect(b.authority).toBe('gw.example:4433');
    expect(checkConnectUdpRequest(b)).toMatchObject({ ok: true, target: { port: 8443 } });
  });
  const bad: [string, string, RegExp][] = [
    ['port 0', `${P}/192.0.2.6/0/`, /out of range/],
    ['port 65536', `${P}/192.0.2.6/65536/`, /out of range/],
    ['port not decimal', `${P}/192.0.2.6/http/`, /not a decimal port/],
    ['IPv6 zone ID', `${P}/fe80%3A%3A1%25eth0/53/`, /zone identifier/],
    ['raw IPv6 without brackets that does not parse', `${P}/2001%3Adb8%3A%3Ag/53/`, /not a valid/],
    ['bad IPv4', `${P}/300.1.1.1/53/`, /not a valid/],
  ];
  for (const [name, path, why] of bad) {
    it(`malformed → 400 http_request_error: ${name}`, () => {
      const r = checkConnectUdpRequest(req(path));
      expect(r).toMatchObject({ ok: false, status: 400 });
      expect(!r.ok && r.reason).toMatch(why);
      expect(!r.ok && r.proxyStatus).toMatch(/^mtun; error=http_request_error/);
    });
  }
  it('wrong :protocol → 400; other paths → 404', () => {
    expect(checkConnectUdpRequest({ ...req(`${P}/h/1/`), protocol: 'connect-ip' })).toMatchObject({ status: 400 });
    expect(checkConnectUdpRequest(req('/x'))).toMatchObject({ status: 404 });
  });
  it('parseUdpTarget never throws on random input', () => {
    fc.assert(fc.property(fc.string(), fc.string(), (h, p) => {
      const r = parseUdpTarget(h, p);
      expect(typeof r === 'string' || (r.port >= 1 && r.port <= 65535)).toBe(true);
    }));
  });
});

describe('RFC 9298 §7 destination policy', () => {
  const A = (s: string) => parseIp(s)!;
  const check = (s: string, own: string[] = []) => prohibitedUdpDestination(A(s).version, A(s).address, {}, own.map((o) => A(o).address));
  it('refuses loopback, link-local, multicast, broadcast, unspecified, own addresses (also IPv4-mapped)', () => {
    expect(check('127.0.0.1')).toMatch(/loopback/);
    expect(check('::1')).toMatch(/loopback/);
    expect(check('::ffff:127.0.0.1')).toMatch(/loopback/);
    expect(check('169.254.10.1')).toMatch(/link-local/);
    expect(check('fe80::1')).toMatch(/link-local/);
    expect(check('224.0.0.251')).toMatch(/multicast/);
    expect(check('ff02::fb')).toMatch(/multicast/);
    expect(check('255.255.255.255')).toMatch(/broadcast/);
    expect(check('0.0.0.0')).toMatch(/unspecified/);
    expect(check('192.0.2.10', ['192.0.2.10'])).toMatch(/own/);
    expect(check('192.0.2.11', ['192.0.2.10'])).toBeNull();
    expect(prohibitedUdpDestination(4, A('127.0.0.1').address, { loopback: true })).toBeNull();
  });
});

describe('CONNECT-UDP gateway ↔ client sessions against a real loopback UDP echo server', () => {
  let echo4: dgram.Socket;
  let echo6: dgram.Socket;
  let port4 = 0;
  let port6 = 0;
  beforeAll(async () => {
    const start = (type: 'udp4' | 'udp6', addr: string) =>
      new Promise<dgram.Socket>((res) => {
        const s = dgram.createSocket(type);
        s.on('message', (m, rinfo) => s.send(m, rinfo.port, rinfo.address));
        s.bind(0, addr, () => res(s));
      });
    echo4 = await start('udp4', '127.0.0.1');
    echo6 = await start('udp6', '::1');
    port4 = echo4.address().port;
    port6 = echo6.address().port;
  });
  afterAll(() => {
    echo4.close();
    echo6.close();
  });

  async function until(pair: TunnelStreamPair, cond: () => boolean, ms = 3000): Promise<void> {
    const end = Date.now() + ms;
    while (!cond()) {
      pair.flush();
      if (Date.now() > end) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 5));
    }
    pair.flush();
  }

  function setup(target: UdpTarget, over: Partial<ConnectUdpGatewayOptions> = {}) {
    const pair = new TunnelStreamPair({ maxDatagramPayload: 70_000 });
    const got: Uint8Array[] = [];
    const gw = new ConnectUdpGatewaySession(pair.gateway, { target, allow: { loopback: true }, sweeper: null, ...over });
    const client = new ConnectUdpClientSession(pair.client, { onPayload: (b, o, l) => got.push(b.slice(o, o + l)) });
    pair.gateway.attach(gw);
    pair.client.attach(client);
    return { pair, gw, client, got };
  }
  const send = (c: ConnectUdpClientSession, payload: Uint8Array) => {
    const b = new Uint8Array(16 + payload.length);
    b.set(payload, 16);
    return c.sendPayload(b, 16, payload.length);
  };

  for (const fam of [4, 6] as const) {
    it(`IPv${fam}: exact payloads echo back (0 bytes to 1,400 bytes), including ones sent before the request was accepted`, async () => {
      const host = fam === 4 ? '127.0.0.1' : '::1';
      const t = parseUdpTarget(host, String(fam === 4 ? port4 : port6)) as UdpTarget;
      const { pair, gw, client, got } = setup(t);
      // Sent before open(): buffered, bounded (RFC 9298 §5), forwarded after connect.
      expect(send(client, Uint8Array.of(0xaa))).toBe(0);
      pair.flush();
      const opened = await gw.open();
      expect(opened).toMatchObject({ ok: true, address: host, family: fam });
      const payloads = [new Uint8Array(0), ...Array.from({ length: 50 }, (_, i) => Uint8Array.from({ length: (i * 97) % 1401 }, (_, j) => (i + j) & 255))];
      for (const p of payloads) expect(send(client, p)).toBe(0);
      await until(pair, () => got.length >= payloads.length + 1);
      const sortKey = (x: Uint8Array) => Buffer.from(x).toString('hex');
      expect(got.map(sortKey).sort()).toEqual([Uint8Array.of(0xaa), ...payloads].map(sortKey).sort());
      expect(gw.counters.dropsByName()).toEqual({});
      gw.close();
      pair.flush();
      expect(client.isClosed).toBe(true);
    });
  }

  it('refused targets answer 403 destination_ip_prohibited with Proxy-Status; DNS failure 502 dns_error', async () => {
    const cases: [string, Partial<ConnectUdpGatewayOptions>][] = [
      ['127.0.0.1', { allow: {} }],
      ['169.254.1.1', {}],
      ['224.0.0.251', {}],
      ['255.255.255.255', {}],
      ['192.0.2.10', { ownAddresses: [parseIp('192.0.2.10')!.address] }],
    ];
    for (const [host, over] of cases) {
      const { gw } = setup(parseUdpTarget(host, '53') as UdpTarget, over);
      const r = await gw.open();
      expect(r).toMatchObject({ ok: false, status: 403 });
      expect(!r.ok && r.proxyStatus).toMatch(/^mtun; error=destination_ip_prohibited; details="/);
    }
    const viaDns = setup(parseUdpTarget('sneaky.example', '53') as UdpTarget, { allow: {}, resolve: async () => [{ address: '127.0.0.1', family: 4 }] });
    expect(await viaDns.gw.open()).toMatchObject({ ok: false, status: 403 });
    const nx = setup(parseUdpTarget('nx.example', '53') as UdpTarget, {
      resolve: async () => {
        throw Object.assign(new Error('nx'), { code: 'ENOTFOUND' });
      },
    });
    const r = await nx.gw.open();
    expect(r).toMatchObject({ ok: false, status: 502 });
    expect(!r.ok && r.proxyStatus).toBe('mtun; error=dns_error; rcode="NXDOMAIN"; details="resolving nx.example failed: ENOTFOUND"');
  });

  it('RFC 9298 §5: a 65,528-byte payload aborts the stream; 65,527 does not; unknown context IDs are dropped', async () => {
    const { pair, gw, client } = setup(parseUdpTarget('::1', String(port6)) as UdpTarget);
    expect((await gw.open()).ok).toBe(true);
    const ok = new Uint8Array(16 + 1 + MAX_UDP_PAYLOAD);
    pair.client.sendDatagram(ok, 16, 1 + MAX_UDP_PAYLOAD);
    const ctx = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3);
    pair.client.sendDatagram(ctx, 16, 4);
    pair.flush();
    expect(pair.gateway.abortedWith).toBeNull();
    expect(gw.counters.drops[ConnectUdpDrop.UNKNOWN_CONTEXT]).toBe(1);
    const big = new Uint8Array(16 + 1 + MAX_UDP_PAYLOAD + 1);
    pair.client.sendDatagram(big, 16, 2 + MAX_UDP_PAYLOAD);
    pair.flush();
    expect(pair.gateway.abortedWith).toBe(H3Error.H3_DATAGRAM_ERROR);
    expect(client.isClosed).toBe(true);
    // The client never sends one either.
    const c2 = setup(parseUdpTarget('::1', '9') as UdpTarget).client;
    expect(send(c2, new Uint8Array(MAX_UDP_PAYLOAD + 1))).toBe(ConnectUdpDrop.TOO_BIG);
  });

  it('pre-accept buffering is bounded and counted', async () => {
    const { pair, gw, client } = setup(parseUdpTarget('127.0.0.1', String(port4)) as UdpTarget, { maxPreAcceptDatagrams: 3 });
    for (let i = 0; i < 5; i++) send(client, Uint8Array.of(i));
    pair.flush();
    expect(gw.counters.drops[ConnectUdpDrop.PREACCEPT_FULL]).toBe(2);
    await gw.open();
    gw.close();
  });

  it('RFC 9298 §3.1: idle timeout is at least 2 minutes and resets on traffic', async () => {
    const { pair, gw, client, got } = setup(parseUdpTarget('127.0.0.1', String(port4)) as UdpTarget, { idleTimeoutMs: 1000 });
    expect(gw.idleTimeoutMs).toBe(MIN_UDP_IDLE_TIMEOUT_MS);
    await gw.open();
    expect(gw.checkIdle(0)).toBe(false);
    expect(gw.checkIdle(100_000)).toBe(false);
    send(client, Uint8Array.of(1));
    await until(pair, () => got.length === 1);
    expect(gw.checkIdle(200_000)).toBe(false); // traffic seen since the last check
    expect(gw.checkIdle(319_999)).toBe(false);
    expect(gw.checkIdle(320_000)).toBe(true);
    pair.flush();
    expect(client.isClosed).toBe(true);
  });
});
