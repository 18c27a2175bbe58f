/**
 * The gateway's HTTP/2 listener (issue #15) against node's real http2 and a
 * raw frame writer, without root: a real Gateway (memory TUN and UDP, real
 * TCP + TLS 1.3 on 127.0.0.1) serves CONNECT-IP and CONNECT-UDP over HTTP/2
 * Extended CONNECT (RFC 8441) with DATAGRAM capsules (RFC 9297 §3.5), and
 * malformed input gets the errors the RFCs name.
 *
 *   H2Client / node http2 / RawH2 ──TCP+TLS (h2)──▶ Gateway ─▶ MemoryTun (test reads)
 *                                                     └─▶ UDP echo on 127.0.0.1 (CONNECT-UDP)
 */
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as h2connect, constants as h2c } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { promises as dnsPromises } from 'node:dns';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseGatewayConfig } from '../../src/config/index.js';
import { MemoryKernel } from '../../src/daemon/memory-kernel.js';
import { systemClock } from '../../src/daemon/ports.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { H2Client } from '../../src/h2/h2-client.js';
import { H2TunnelCounters } from '../../src/h2/h2-tunnel.js';
import { H2_DATAGRAM_PAYLOAD_BYTES } from '../../src/daemon/tunnel-constants.js';
import { FRAME, frame, RawH2 } from '../../src/h2/testing/raw-h2.js';
import { connectIp, connectUdp, MasqueRequestError } from '../../src/masque/h3-glue.js';
import { craftUdp } from '../../src/packet/craft.js';
import { MemoryTun } from '../../src/tun/memory-tun.js';
import { getPki, type Pki } from './quic-harness.js';
import { MemoryNet } from './quic-memory-udp.js';
import { QuicEndpoint } from '../../src/quic/endpoint.js';
import { attachH3 } from '../../src/h3/quic-binding.js';
import { freePort, metric, until } from './sim-helpers.js';

const AGENT_ID = 'spiffe://mesh.test/ns/default/sa/agent';
const logLines: Array<Record<string, unknown>> = [];
const log = pino({ level: 'info' }, { write: (l: string) => void logLines.push(JSON.parse(l) as Record<string, unknown>) });

describe('gateway over HTTP/2 (RFC 8441 Extended CONNECT, RFC 9297 §3.5 DATAGRAM capsules)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mtun-h2gw-'));
  const tuns: MemoryTun[] = [];
  let pki: Pki;
  let gw: Gateway;
  let port = 0;
  let echo: Socket;
  let echoPort = 0;
  let cfgText = '';
  /** The gateway's QUIC side (an HTTP/3 client joins it here). */
  const net = new MemoryNet();
  const base = () => ({ host: '127.0.0.1', port, serverName: 'localhost', caPem: pki.ca.certPem, keepAliveMs: 0, connectTimeoutMs: 5_000 });
  const tunnelOpts = { maxCapsuleBytes: 65_536, sendQueueBytes: 256 * 1024, maxDatagramPayloadBytes: H2_DATAGRAM_PAYLOAD_BYTES };
  const agentClient = () => H2Client.connect({ ...base(), certPem: pki.client.certPem, keyPem: pki.client.keyPem, tunnel: tunnelOpts, counters: new H2TunnelCounters() });
  const authority = () => `localhost:${port}`;
  /** node's http2 client with the agent's certificate; waits for the server's SETTINGS. */
  const nodeClient = async () => {
    const s = h2connect(`https://127.0.0.1:${port}`, { ca: pki.ca.certPem, cert: pki.client.certPem, key: pki.client.keyPem, servername: 'localhost' });
    await new Promise((r) => s.once('remoteSettings', r));
    return s;
  };

  /** The gateway's sessions' transports, in order. */
  const transports = () => gw.status().sessions.map((x) => x.transport);
  /** An mTLS HTTP/3 client of the gateway (its QUIC side on `net`). */
  const h3Client = () => new QuicEndpoint({ socket: net.open(), client: { caPem: pki.ca.certPem, certPem: pki.client.certPem, keyPem: pki.client.keyPem } });
  /** Connects `qc` and opens one CONNECT-IP session over HTTP/3; resolves with the HTTP/3 client once the gateway has it alone. */
  const h3Session = async (qc: QuicEndpoint) => {
    const conn = qc.connect('127.0.0.1', port, 'localhost');
    const h3 = attachH3(conn, {}, () => undefined);
    await conn.whenEstablished();
    await connectIp(h3, authority(), { onPacket: () => undefined });
    await until(() => transports().join() === 'h3', 5_000, 'the HTTP/3 session');
    return h3;
  };

  beforeAll(async () => {
    pki = await getPki();
    for (const [f, v] of [['ca.pem', pki.ca.certPem], ['other-ca.pem', pki.otherCa.certPem], ['gw.pem', pki.server.certPem], ['gw-key.pem', pki.server.keyPem]] as const) writeFileSync(join(dir, f), v);
    echo = createSocket('udp4');
    echo.on('message', (m, r) => echo.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
    await new Promise<void>((r) => echo.bind(0, '127.0.0.1', r));
    echoPort = echo.address().port;
    port = await freePort();
    cfgText = `
listen: 127.0.0.1:${port}
tls: {cert: gw.pem, key: gw-key.pem, ca: ca.pem}
pools: {ipv4: 10.201.0.0/24}
advertise: [10.21.0.0/24]
policy:
  - identity: ${AGENT_ID}
    allow:
      - prefixes: [10.21.0.0/24, 127.0.0.1/32]
        protocols: [tcp, udp]
connectUdp: {enabled: true, allowLocalTargets: true, targets: [{host: 127.0.0.1, ports: [${echoPort}]}]}
h2: {maxCapsuleBytes: 4096}
telemetry: {flowLog: {enabled: false}}
admin: {enabled: true, listen: 127.0.0.1:${await freePort()}}
`;
    const cfg = parseGatewayConfig(cfgText, join(dir, 'gateway.yaml'), dir);
    gw = await Gateway.start(cfg, {
      openTun: async (req) => {
        const t = new MemoryTun({ name: `gw${tuns.length}`, mtu: req.mtu });
        tuns.push(t);
        return t;
      },
      udp: net.open({ port }),
      kernel: new MemoryKernel(),
      clock: systemClock,
      log,
    });
  }, 30_000);

  afterAll(async () => {
    await gw?.stop();
    echo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('CONNECT-IP over HTTP/2: SPIFFE identity, packets both ways as DATAGRAM capsules, sessions labelled transport="h2"', async () => {
    const c = await agentClient();
    const got: Buffer[] = [];
    const s = await connectIp(c, authority(), { onPacket: (b, o, l) => void got.push(Buffer.from(b.subarray(o, o + l))) });
    s.requestAddresses([{ version: 4 }]);
    await until(() => s.assignedAddresses().length > 0, 5_000, 'an assigned address');
    const me = [...s.assignedAddresses()[0]!.address].join('.');
    const fromAgent: Buffer[] = [];
    tuns[0]!.onPacket((p) => fromAgent.push(p));
    const pkt = craftUdp({ src: me, dst: '10.21.0.9', srcPort: 5000, dstPort: 53, payload: Buffer.from('over h2') });
    const buf = Buffer.alloc(64 + pkt.length);
    pkt.copy(buf, 64);
    expect(s.sendPacket(buf, 64, pkt.length)).toBe(0);
    await until(() => fromAgent.length > 0, 5_000, 'the packet at the gateway TUN');
    expect(fromAgent[0]!.subarray(28).toString()).toBe('over h2');
    expect(tuns[0]!.inject(craftUdp({ src: '10.21.0.9', dst: me, srcPort: 53, dstPort: 5000, payload: Buffer.from('reply') }))).toBe(true);
    await until(() => got.length > 0, 5_000, 'the reply through the tunnel');
    expect(got[0]!.subarray(28).toString()).toBe('reply');
    expect(c.counters.datagramCapsulesReceived).toBeGreaterThanOrEqual(1);
    expect(gw.status().sessions.map((x) => [x.kind, x.peerIdentity])).toEqual([['connect-ip', AGENT_ID]]);
    expect(await metric(gw.adminUrl!, 'mtun_tunnel_sessions_by_transport', { transport: 'h2' })).toBe(1);
    expect(await metric(gw.adminUrl!, 'mtun_tunnel_sessions_by_transport', { transport: 'h3' })).toBe(0);
    expect(logLines.some((l) => l.msg === 'session opened' && l.transport === 'h2' && l.identity === AGENT_ID)).toBe(true);
    c.close();
    await until(() => gw.status().sessions.length === 0, 5_000, 'the session to close with its connection');
  });

  it('CONNECT-UDP over HTTP/2 reaches the target and back (RFC 9298)', async () => {
    const c = await agentClient();
    const got: string[] = [];
    const s = await connectUdp(c, authority(), '127.0.0.1', echoPort, { onPayload: (b, o, l) => void got.push(Buffer.from(b.subarray(o, o + l)).toString()) });
    const buf = Buffer.alloc(32);
    buf.write('ping', 16);
    expect(s.sendPayload(buf, 16, 4)).toBe(0);
    await until(() => got.length > 0, 5_000, 'the echo');
    expect(got[0]).toBe('echo:ping');
    c.close();
  });

  it('refuses what the HTTP/3 path refuses: a target outside the allow-list (403), a policy-less identity (403)', async () => {
    const c = await agentClient();
    await expect(connectUdp(c, authority(), '127.0.0.1', echoPort + 1, { onPayload: () => undefined })).rejects.toMatchObject({ status: 403 });
    c.close();
    const other = await H2Client.connect({ ...base(), caPem: `${pki.ca.certPem}`, certPem: pki.client.certPem, keyPem: pki.client.keyPem, tunnel: tunnelOpts });
    // Same identity, wrong protocol name: admission answers 501 as over HTTP/3.
    const e = await new Promise<MasqueRequestError | null>((resolve) => {
      other.connect({ protocol: 'connect-tcp', authority: authority(), path: '/' }, {
        onResponse: (status, h) => resolve(new MasqueRequestError(status, h.find(([n]) => n === 'proxy-status')?.[1])),
        onCapsule: () => undefined,
        onDatagram: () => undefined,
        onClose: () => resolve(null),
      });
    });
    expect(e?.status).toBe(501);
    other.close();
  });

  // Independent review, 7 December: the listener closed the HTTP/3 sessions on seeing the header, before the
  // request was admitted or checked, so a refused fallback request still cost the agent its sessions.
  it('mtun-supersedes: h3 closes the HTTP/3 sessions only when the HTTP/2 request is admitted and valid', async () => {
    const qc = h3Client();
    try {
      await h3Session(qc);
      const before = await metric(gw.adminUrl!, 'mtun_gateway_sessions_superseded_total');
      const c = await agentClient();
      const headers: [string, string][] = [['mtun-supersedes', 'h3']];
      // A host-name scope that does not resolve: admitted, then refused (502/504) before any session opens.
      const bad = connectIp(c, authority(), { onPacket: () => undefined, headers, scope: { target: { kind: 'hostname', name: 'nosuch.invalid' }, ipProtocol: null } });
      await expect(bad).rejects.toBeInstanceOf(MasqueRequestError);
      expect(transports()).toEqual(['h3']);
      expect(await metric(gw.adminUrl!, 'mtun_gateway_sessions_superseded_total')).toBe(before);
      await connectIp(c, authority(), { onPacket: () => undefined, headers });
      await until(() => transports().join() === 'h2', 5_000, 'the HTTP/2 session alone');
      expect(await metric(gw.adminUrl!, 'mtun_gateway_sessions_superseded_total')).toBe(before + 1);
      c.close();
      await until(() => gw.status().sessions.length === 0, 5_000, 'the session to close with its connection');
    } finally {
      qc.close();
    }
  });

  // Independent review, 7 December: a fallback request whose stream went away while its scope resolved still
  // superseded the HTTP/3 sessions; and each concurrent fallback request got the same limit discount.
  it('mtun-supersedes: a fallback request that goes away supersedes nothing; one at a time per identity gets the limit discount', async () => {
    const lookup = vi.spyOn(dnsPromises, 'lookup').mockImplementation((async (name: string) => {
      await new Promise((r) => setTimeout(r, 800));
      if (name === 'slow.test') return [{ address: '10.21.0.9', family: 4 }];
      throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    }) as unknown as typeof dnsPromises.lookup);
    const qc = h3Client();
    gw.reload(parseGatewayConfig(`${cfgText}maxSessionsPerIdentity: 1\n`, join(dir, 'gateway.yaml'), dir));
    try {
      const h3 = await h3Session(qc);
      const headers: [string, string][] = [['mtun-supersedes', 'h3']];
      const slow = { target: { kind: 'hostname' as const, name: 'slow.test' }, ipProtocol: null };
      // Gone while resolving: the HTTP/3 session stays.
      const gone = await agentClient();
      void connectIp(gone, authority(), { onPacket: () => undefined, headers, scope: slow }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 200));
      gone.close();
      await new Promise((r) => setTimeout(r, 900));
      expect(transports()).toEqual(['h3']);
      // At a limit of 1 the fallback is admitted: the session it supersedes does not count.
      const c1 = await agentClient();
      await connectIp(c1, authority(), { onPacket: () => undefined, headers, scope: slow });
      await until(() => transports().join() === 'h2', 5_000, 'the HTTP/2 session alone');
      c1.close();
      await until(() => gw.status().sessions.length === 0, 5_000, 'the session to close with its connection');
      // Two at once at a limit of 2, beside one HTTP/3 session: only the first is discounted; the second counts
      // the HTTP/3 session and the first's slot, and is refused.
      gw.reload(parseGatewayConfig(`${cfgText}maxSessionsPerIdentity: 2\n`, join(dir, 'gateway.yaml'), dir));
      await connectIp(h3, authority(), { onPacket: () => undefined });
      await until(() => transports().join() === 'h3', 5_000, 'a new HTTP/3 session');
      const c2 = await agentClient();
      const first = connectIp(c2, authority(), { onPacket: () => undefined, headers, scope: slow });
      const second = connectIp(c2, authority(), { onPacket: () => undefined, headers, scope: slow }).then(() => 0, (e: MasqueRequestError) => e.status);
      expect(await second).toBe(429);
      await first;
      await until(() => transports().join() === 'h2', 5_000, 'the HTTP/2 session alone');
      c2.close();
      await until(() => gw.status().sessions.length === 0, 5_000, 'the session to close with its connection');
    } finally {
      qc.close();
      lookup.mockRestore();
      gw.reload(parseGatewayConfig(cfgText, join(dir, 'gateway.yaml'), dir));
    }
  });

  it('mTLS: a client without a certificate, or with one from another CA, gets no HTTP/2 connection', async () => {
    // TLS 1.3: the server refuses the client's (empty) certificate after the client finished; the
    // gateway's SETTINGS never come, so the client gives up at its connect deadline.
    await expect(H2Client.connect({ ...base(), connectTimeoutMs: 1_000, tunnel: tunnelOpts })).rejects.toThrow(/h2:/);
    await expect(H2Client.connect({ ...base(), connectTimeoutMs: 1_000, certPem: pki.otherClient.certPem, keyPem: pki.otherClient.keyPem, tunnel: tunnelOpts })).rejects.toThrow(/h2:/);
    expect(logLines.filter((l) => l.msg === 'HTTP/2 TLS handshake failed').length).toBeGreaterThanOrEqual(2);
    expect(gw.status().sessions).toEqual([]);
  });

  it('RFC 9113 §8.5 / RFC 8441 §4: CONNECT with :scheme and :path but no :protocol is malformed: RST_STREAM PROTOCOL_ERROR', async () => {
    const r = await RawH2.open({ host: '127.0.0.1', port, ca: pki.ca.certPem, cert: pki.client.certPem, key: pki.client.keyPem, servername: 'localhost' });
    r.headers(1, [[':method', 'CONNECT'], [':scheme', 'https'], [':authority', authority()], [':path', '/.well-known/masque/ip/*/*/'], ['capsule-protocol', '?1']]);
    const f = await r.waitFor((x) => (x.type === FRAME.RST_STREAM && x.streamId === 1) || x.type === FRAME.GOAWAY);
    expect(f?.type).toBe(FRAME.RST_STREAM);
    expect(f!.payload.readUInt32BE(0)).toBe(h2c.NGHTTP2_PROTOCOL_ERROR);
    // Extended CONNECT without :path is malformed too (RFC 8441 §4).
    r.headers(3, [[':method', 'CONNECT'], [':protocol', 'connect-ip'], [':scheme', 'https'], [':authority', authority()]]);
    const g = await r.waitFor((x) => x.type === FRAME.RST_STREAM && x.streamId === 3);
    expect(g!.payload.readUInt32BE(0)).toBe(h2c.NGHTTP2_PROTOCOL_ERROR);
    r.close();
  });

  it('RFC 9484 §4.4 / RFC 9297 §3.4: wrong :scheme, or no capsule-protocol, is 400 with Proxy-Status; plain CONNECT is 501', async () => {
    const s = await nodeClient();
    const ask = (h: Record<string, string>) => new Promise<{ status: number; proxy: string | undefined }>((resolve) => {
      const st = s.request(h, { endStream: false });
      st.on('error', () => undefined);
      st.once('response', (rh) => {
        resolve({ status: Number(rh[':status']), proxy: rh['proxy-status'] as string | undefined });
        st.close();
      });
    });
    const ok = { ':method': 'CONNECT', ':protocol': 'connect-ip', ':scheme': 'https', ':authority': authority(), ':path': '/.well-known/masque/ip/*/*/', 'capsule-protocol': '?1' };
    const wrongScheme = await ask({ ...ok, ':scheme': 'http' });
    expect(wrongScheme.status).toBe(400);
    expect(wrongScheme.proxy).toMatch(/http_request_error/);
    const noCp = { ...ok } as Record<string, string>;
    delete noCp['capsule-protocol'];
    noCp['capsule-protocol'] = '?0';
    expect((await ask(noCp)).status).toBe(400);
    const plain = await ask({ ':method': 'CONNECT', ':authority': '10.21.0.9:80' });
    expect(plain.status).toBe(501);
    s.close();
  });

  it('RFC 9297 §3.3: a stream ending inside a capsule is malformed (RST_STREAM PROTOCOL_ERROR); an oversized capsule is ENHANCE_YOUR_CALM', async () => {
    const s = await nodeClient();
    const open = () => new Promise<import('node:http2').ClientHttp2Stream>((resolve) => {
      const st = s.request({ ':method': 'CONNECT', ':protocol': 'connect-ip', ':scheme': 'https', ':authority': authority(), ':path': '/.well-known/masque/ip/*/*/', 'capsule-protocol': '?1' }, { endStream: false });
      st.on('error', () => undefined);
      st.once('response', (h) => {
        expect(h[':status']).toBe(200);
        resolve(st);
      });
    });
    const closed = (st: import('node:http2').ClientHttp2Stream) => new Promise<number>((r) => (st.closed ? r(st.rstCode ?? -1) : st.once('close', () => r(st.rstCode ?? -1))));
    const before = logLines.length;
    // A DATAGRAM capsule declaring 100 bytes, 3 sent, then END_STREAM (raw frames: node's client
    // reports a reset that follows its own END_STREAM as NO_ERROR, so the frame itself is checked).
    const r = await RawH2.open({ host: '127.0.0.1', port, ca: pki.ca.certPem, cert: pki.client.certPem, key: pki.client.keyPem, servername: 'localhost' });
    r.headers(1, [[':method', 'CONNECT'], [':protocol', 'connect-ip'], [':scheme', 'https'], [':authority', authority()], [':path', '/.well-known/masque/ip/*/*/'], ['capsule-protocol', '?1']]);
    r.write(frame(FRAME.DATA, 0x1, 1, Buffer.from([0x00, 0x40, 100, 1, 2, 3])));
    const rst = await r.waitFor((x) => x.type === FRAME.RST_STREAM && x.streamId === 1);
    expect(rst?.payload.readUInt32BE(0)).toBe(h2c.NGHTTP2_PROTOCOL_ERROR);
    r.close();
    // A capsule declaring more than h2.maxCapsuleBytes (4096): refused before it is buffered.
    const b = await open();
    b.write(Buffer.from([0x00, 0x80, 0x01, 0x00, 0x00])); // length 65536
    expect(await closed(b)).toBe(h2c.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(await metric(gw.adminUrl!, 'mtun_h2_drops_total', { reason: 'capsule_error' })).toBe(2);
    // Both sessions closed; the gateway carries on (a good request still works).
    await until(() => gw.status().sessions.length === 0, 5_000, 'the broken sessions to close');
    expect(logLines.slice(before).filter((l) => l.msg === 'session closed').length).toBe(2);
    const c = await open();
    c.close(h2c.NGHTTP2_CANCEL);
    s.close();
  });

  // Independent review, 7 December: a reload that changed the client CA closed QUIC connections it no longer
  // admitted, but an HTTP/2 connection stayed up and could open new sessions under the old identity.
  it('a reload whose client CA no longer vouches for an open HTTP/2 connection closes it, as over HTTP/3', async () => {
    const c = await agentClient();
    await connectIp(c, authority(), { onPacket: () => undefined });
    expect(gw.status().sessions.filter((x) => x.transport === 'h2')).toHaveLength(1);
    try {
      gw.reload(parseGatewayConfig(cfgText.replace('ca: ca.pem', 'ca: other-ca.pem'), join(dir, 'gateway.yaml'), dir));
      await until(() => gw.status().sessions.length === 0, 5_000, 'the HTTP/2 connection and its session closed');
      expect(logLines.some((l) => l.msg === 'closing HTTP/2 agent connection on reload: client CA changed' && l.identity === AGENT_ID)).toBe(true);
      await expect(connectIp(c, authority(), { onPacket: () => undefined })).rejects.toThrow();
    } finally {
      c.close();
      gw.reload(parseGatewayConfig(cfgText, join(dir, 'gateway.yaml'), dir));
    }
  });
});
