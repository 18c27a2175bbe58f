/**
 * The admin server's live endpoints over real HTTP on loopback: /flows (what
 * `mtun top` reads) from a real FlowTracker through Telemetry, and /capture
 * (pcapng, read back by CaptureReader) with its refusals.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startAdminServer, type AdminServer } from './admin-server.js';
import { isLoopbackAddress, parseCaptureQuery, type CaptureConfig } from './capture-endpoint.js';
import { TapInterface } from './capture-tap.js';
import { FlowRecordTelemetry } from './flow-record-adapter.js';
import type { LiveFlowsDocument } from './live-flows.js';
import { Telemetry } from './telemetry.js';
import type { FlowRecord } from '../inspect/flow-record.js';
import { Direction, FlowTracker } from '../inspect/flow-tracker.js';
import { craftTcp } from '../packet/craft.js';
import { TCP_FLAG } from '../packet/ip-packet.js';
import { CaptureReader } from '../pcap/capture-reader.js';
import { clientHello } from '../inspect/fixtures.js';

const servers: AdminServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const ON: CaptureConfig = { enabled: true, allowRemote: false, queueBytes: 1 << 20, queuePackets: 1024 };
const ID = 'spiffe://cluster.local/agent/cluster-a';

async function daemon(capture?: CaptureConfig) {
  const t = new Telemetry({ reporter: 'agent', workloads: [], flowLog: null, processMetrics: false });
  const adapter = new FlowRecordTelemetry(t, { directionOf: () => 'outbound' });
  const tracker = new FlowTracker({ sink: (r, m) => adapter.onRecord(r, m, ID) });
  const s = await startAdminServer({ host: '127.0.0.1', port: 0, registry: t.registry, telemetry: t, capture });
  servers.push(s);
  return { t, adapter, tracker, s };
}

describe('telemetry: admin /flows (mtun top)', () => {
  it('lists open flows with current rate, SNI and handshake RTT, closed ones with their reason, totals and drops', async () => {
    const { t, adapter, tracker, s } = await daemon();
    const c = { src: '10.1.0.5', dst: '10.2.0.10', srcPort: 40000, dstPort: 443 };
    const sv = { src: c.dst, dst: c.src, srcPort: 443, dstPort: 40000 };
    const A = TCP_FLAG.ACK;
    const t0 = Date.now() - 3000;
    const obs = (b: Buffer, dir: number, at: number) => tracker.observe(b, 0, b.length, dir, at);
    obs(craftTcp({ ...c, seq: 1000, flags: TCP_FLAG.SYN }), Direction.OUT, t0);
    obs(craftTcp({ ...sv, seq: 5000, ack: 1001, flags: TCP_FLAG.SYN | A }), Direction.IN, t0 + 4);
    obs(craftTcp({ ...c, seq: 1001, ack: 5001, flags: A }), Direction.OUT, t0 + 10);
    const hello = clientHello('api.example.com', ['h2']);
    obs(craftTcp({ ...c, seq: 1001, ack: 5001, flags: A, payload: hello }), Direction.OUT, t0 + 11);
    adapter.syncLive(tracker.liveFlows(), ID, t0 + 1000);
    obs(craftTcp({ ...sv, seq: 5001, ack: 1001 + hello.length, flags: A, payload: new Uint8Array(20_000 - 0).subarray(0, 1400) }), Direction.IN, t0 + 1500);
    adapter.syncLive(tracker.liveFlows(), ID, Date.now());
    // A second flow that closes with a reset.
    const d = { ...c, srcPort: 40001 };
    obs(craftTcp({ ...d, seq: 1, flags: TCP_FLAG.SYN }), Direction.OUT, t0);
    obs(craftTcp({ src: d.dst, dst: d.src, srcPort: 443, dstPort: 40001, seq: 0, ack: 2, flags: TCP_FLAG.RST | A }), Direction.IN, t0 + 1);
    t.metrics.drop(t.metrics.dropReasonId('policy_denied'), 7);

    const res = await fetch(`${s.url}/flows`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    const doc = (await res.json()) as LiveFlowsDocument;
    expect(doc.reporter).toBe('agent');
    const open = doc.flows.find((f) => f.srcPort === 40000)!;
    expect(open).toMatchObject({ state: 'open', protocol: 'tcp', src: '10.1.0.5:40000', dst: '10.2.0.10:443', peerIdentity: ID, sni: 'api.example.com', alpn: 'h2', closeReason: null, sentBytes: hello.length, receivedBytes: 1400 });
    expect(open.handshakeRttMs).toBe(10);
    // 1400 bytes came back since the older rate baseline (the flow's first packet, about 3 s before).
    expect(open.receivedBytesPerSec).toBeGreaterThan(1400 / 4);
    expect(open.receivedBytesPerSec).toBeLessThanOrEqual(1400 / 2.9);
    expect(open.key).toBe('tcp 10.1.0.5:40000>10.2.0.10:443');
    const closed = doc.flows.find((f) => f.srcPort === 40001)!;
    expect(closed).toMatchObject({ state: 'closed', closeReason: 'rst', sentBytesPerSec: 0, receivedBytesPerSec: 0 });
    expect(doc.totals.openFlows).toBe(1);
    expect([doc.matchedFlows, doc.totalFlows]).toEqual([2, 2]);
    expect(doc.drops).toEqual({ policy_denied: 7 });
    expect(doc.capture).toEqual({ active: false, queuedPackets: 0, droppedPackets: 0 });
  });

  it('filters, sorts and limits on the daemon (/flows?filter=&sort=&limit=); a bad query is a 400 naming the parameter', async () => {
    const { t, s } = await daemon();
    for (let i = 0; i < 5; i++) {
      const h = t.onFlowOpen({ protocol: 6, srcAddr: '10.1.0.5', srcPort: 40000 + i, dstAddr: '10.2.0.10', dstPort: i < 3 ? 443 : 80, peerIdentity: ID, direction: 'outbound', firstSeenMs: Date.now() - 10_000 + i });
      t.onFlowDelta(h, 0, 1000 * (i + 1), 0, 1, 0, Date.now());
    }
    const get = async (q: string) => (await (await fetch(`${s.url}/flows?${q}`)).json()) as LiveFlowsDocument;
    const d = await get('filter=:443&sort=bytes&limit=2');
    expect(d.flows.map((f) => f.srcPort)).toEqual([40002, 40001]);
    expect([d.matchedFlows, d.totalFlows]).toEqual([3, 5]);
    expect((await get('sort=age')).flows.map((f) => f.srcPort)).toEqual([40000, 40001, 40002, 40003, 40004]);
    const bad = await fetch(`${s.url}/flows?sort=size`);
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('flows: sort: expected one of rate, bytes, rtt, age');
  });

  it("carries the inspector's fields of a flow: RTT per direction, the one-end split, QUIC version and SNI", async () => {
    const { t, s } = await daemon();
    const h = t.onFlowOpen({ protocol: 6, srcAddr: '10.1.0.5', srcPort: 5000, dstAddr: '10.2.0.10', dstPort: 443, peerIdentity: ID, direction: 'outbound', firstSeenMs: Date.now() });
    const q = t.onFlowOpen({ protocol: 17, srcAddr: '10.1.0.5', srcPort: 5001, dstAddr: '10.2.0.10', dstPort: 443, peerIdentity: ID, direction: 'outbound', firstSeenMs: Date.now() });
    const none = { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 };
    const rec: FlowRecord = {
      proto: 'tcp', src: '10.1.0.5', srcPort: 5000, dst: '10.2.0.10', dstPort: 443, opened: true, midstream: false, closeReason: 'open',
      bytesSent: 0, bytesReceived: 0, packetsSent: 0, packetsReceived: 0, retransmits: 0, handshakeRttMs: 3, sni: 'web.example', alpn: 'h2',
      httpRequests: 0, firstSeen: '', lastSeen: '', flowId: 'ab', rttToClient: { minMs: 1, smoothedMs: 2, maxMs: 3, samples: 4 },
      rttToServer: { minMs: 4, smoothedMs: 5, maxMs: 6, samples: 4 }, quicVersion: null, quicHandshakeRttMs: null, httpStatus: none, httpFirstByteMs: null,
    };
    h.detail = rec;
    q.detail = { ...rec, proto: 'udp', srcPort: 5001, sni: 'quic.example', alpn: 'h3', rttToClient: null, rttToServer: null, quicVersion: 'v1', quicHandshakeRttMs: 7 };
    const doc = (await (await fetch(`${s.url}/flows?sort=age`)).json()) as LiveFlowsDocument;
    const byPort = (port: number) => doc.flows.find((f) => f.srcPort === port)!;
    expect(byPort(5000)).toMatchObject({ sni: 'web.example', alpn: 'h2', rttToClient: { smoothedMs: 2 }, rttToServer: { smoothedMs: 5 }, rttTunnel: null,
      rtt: { client: 2, tunnel: null, server: null }, httpStatus: null });
    expect(byPort(5001)).toMatchObject({ sni: 'quic.example', alpn: 'h3', quicVersion: 'v1', quicHandshakeRttMs: 7, rtt: null });
  });
});

describe('telemetry: admin /capture (mtun capture)', () => {
  it('streams pcapng with one interface per direction until the packet cap; CaptureReader reads it back', async () => {
    const { t, s } = await daemon(ON);
    const res = await fetch(`${s.url}/capture?packets=3&snaplen=60&port=80`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-pcapng');
    expect(t.capture.active).toBe(true);
    const body = res.arrayBuffer();
    const tap = t.capture;
    const p80 = craftTcp({ src: '10.1.0.5', dst: '10.2.0.10', srcPort: 40000, dstPort: 80, seq: 1, flags: TCP_FLAG.SYN });
    const p22 = craftTcp({ src: '10.1.0.5', dst: '10.2.0.10', srcPort: 40000, dstPort: 22, seq: 1, flags: TCP_FLAG.SYN });
    const big = craftTcp({ src: '10.2.0.10', dst: '10.1.0.5', srcPort: 80, dstPort: 40000, seq: 1, ack: 2, flags: TCP_FLAG.ACK, payload: new Uint8Array(500) });
    const now = Date.now();
    for (const [p, i] of [[p80, TapInterface.TUN_IN], [p22, TapInterface.TUN_IN], [big, TapInterface.TUN_OUT], [p80, TapInterface.TUN_IN], [p80, TapInterface.TUN_IN]] as const) if (tap.active) tap.offer(p, 0, p.length, i, now);
    const bytes = Buffer.from(await body);
    const f = join(mkdtempSync(join(tmpdir(), 'cap-')), 'c.pcapng');
    writeFileSync(f, bytes);
    const r = CaptureReader.open(f);
    const got: [number, number][] = [];
    while (r.next()) got.push([r.len, r.origLen]);
    expect(r.truncated).toBe(false);
    r.close();
    expect(got).toEqual([[40, 40], [60, 540], [40, 40]]);
    expect(bytes.includes(Buffer.from('agent:tun-in'))).toBe(true);
    expect(bytes.includes(Buffer.from('agent:tun-out'))).toBe(true);
    expect(tap.busy).toBe(false);
  });

  it('refuses when disabled (the default), for a bad filter, and a second capture at once', async () => {
    const off = await daemon();
    const r0 = await fetch(`${off.s.url}/capture`);
    expect(r0.status).toBe(403);
    expect(await r0.text()).toContain('admin.capture.enabled: true');
    const { t, s } = await daemon(ON);
    for (const [q, msg] of [['port=0', 'port: expected an integer 1-65535'], ['prefix=10.0.0.0/33', 'prefix length'], ['proto=sctp', 'proto: expected tcp, udp or icmp'], ['snap=5', 'unknown parameter "snap"']]) {
      const r = await fetch(`${s.url}/capture?${q}`);
      expect(r.status, q).toBe(400);
      expect(await r.text()).toContain(msg);
    }
    const ac = new AbortController();
    const first = await fetch(`${s.url}/capture`, { signal: ac.signal });
    expect(first.status).toBe(200);
    const second = await fetch(`${s.url}/capture`);
    expect(second.status).toBe(409);
    ac.abort();
    // The caller leaving ends the capture and frees the tap.
    const end = Date.now() + 3000;
    while (t.capture.busy && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(t.capture.busy).toBe(false);
  });

  it('closing the admin server ends a running capture with its statistics', async () => {
    const { t, s } = await daemon(ON);
    const res = await fetch(`${s.url}/capture`);
    const body = res.arrayBuffer();
    const p = craftTcp({ src: '10.1.0.5', dst: '10.2.0.10', srcPort: 1, dstPort: 2, seq: 1, flags: TCP_FLAG.SYN });
    t.capture.offer(p, 0, p.length, 0, Date.now());
    await s.close();
    servers.length = 0;
    const bytes = Buffer.from(await body);
    // 5 = Interface Statistics Block, one per interface, at the end.
    expect(bytes.readUInt32LE(bytes.length - bytes.readUInt32LE(bytes.length - 4))).toBe(5);
    expect(t.capture.busy).toBe(false);
  });

  it('loopback callers only by default; the query is checked before anything starts', () => {
    expect(['127.0.0.1', '127.9.9.9', '::1', '::ffff:127.0.0.1'].map(isLoopbackAddress)).toEqual([true, true, true, true]);
    expect(['10.0.0.1', '::ffff:10.0.0.1', 'fd00::1', undefined].map(isLoopbackAddress)).toEqual([false, false, false, false]);
    const q = parseCaptureQuery(new URLSearchParams('prefix=10.20.0.2&port=443&proto=tcp&packets=5&bytes=1000&seconds=3'));
    expect(q).toMatchObject({ filter: { port: 443, protocol: 'tcp', maxPackets: 5, maxBytes: 1000, prefix: { version: 4, prefixLength: 32 } }, seconds: 3 });
  });
});
