import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { H3Connection, type ConnectRequest, type H3ConnectionOptions } from './connection.js';
import { h3Request, type H3ClientResult } from './testing/h3-request.js';
import { healthzHandler } from '../telemetry/healthz.js';
import { H3Error } from './errors.js';
import { FrameType, encodeFrame, greaseValue } from './frame.js';
import { encodeFieldSection, type FieldList } from './qpack.js';
import { encodeSettings } from './settings.js';
import { encodeCapsule } from './capsule.js';
import { H3_DATAGRAM_HEADROOM, type TunnelStream, type TunnelStreamHandler } from './tunnel-stream.js';
import { memoryTransportPair, pump, type MemoryQuicTransport } from './testing/memory-transport.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const cat = (...parts: Uint8Array[]) => Uint8Array.from(Buffer.concat(parts));
const text = (b: Uint8Array) => Buffer.from(b).toString();

/** Records everything a tunnel handler sees (copies, since views die after the call). */
class Recorder implements TunnelStreamHandler {
  capsules: Array<[number, string]> = [];
  datagrams: string[] = [];
  closed: number[] = [];
  onCapsule(type: number, value: Uint8Array): void {
    this.capsules.push([type, Buffer.from(value).toString('hex')]);
  }
  onDatagram(buf: Uint8Array, offset: number, length: number): void {
    this.datagrams.push(Buffer.from(buf.subarray(offset, offset + length)).toString('hex'));
  }
  onClose(error: number): void {
    this.closed.push(error);
  }
}

class ClientRecorder extends Recorder {
  status = 0;
  headers: FieldList = [];
  tunnel: TunnelStream | null = null;
  responses = 0;
  onResponse(status: number, headers: FieldList, tunnel: TunnelStream | null): void {
    this.status = status;
    this.headers = headers;
    this.tunnel = tunnel;
    this.responses++;
  }
}

interface ServerSide {
  t: MemoryQuicTransport;
  h: H3Connection;
  requests: ConnectRequest[];
  tunnels: Array<{ tunnel: TunnelStream; rec: Recorder }>;
}

function server(t: MemoryQuicTransport, opts: H3ConnectionOptions = {}, autoAccept = true): ServerSide {
  const side: ServerSide = { t, h: undefined as unknown as H3Connection, requests: [], tunnels: [] };
  side.h = new H3Connection(t, {
    onConnect: (req) => {
      side.requests.push(req);
      if (!autoAccept) return;
      if (req.header('authorization') !== 'Bearer good') {
        req.reject(403, [['proxy-status', 'mtun; error=connection_refused']]);
        return;
      }
      const rec = new Recorder();
      const tunnel = req.accept(rec, [['x-mtun', '1']]);
      if (tunnel) side.tunnels.push({ tunnel, rec });
    },
    ...opts,
  });
  return side;
}

function setup(opts: { server?: H3ConnectionOptions; client?: H3ConnectionOptions; autoAccept?: boolean; dgramMaxBytes?: number | null } = {}) {
  const [ct, st] = memoryTransportPair({ dgramMaxBytes: opts.dgramMaxBytes });
  const srv = server(st, opts.server, opts.autoAccept ?? true);
  const goaways: number[] = [];
  const cli = new H3Connection(ct, { onGoaway: (id) => goaways.push(id), ...opts.client });
  cli.start();
  srv.h.start();
  const run = () => pump({ t: ct, h: cli }, { t: st, h: srv.h });
  run();
  return { ct, st, cli, srv, run, goaways };
}

function openTunnel(env: ReturnType<typeof setup>, auth = 'Bearer good') {
  const rec = new ClientRecorder();
  const id = env.cli.connect(
    { protocol: 'connect-ip', authority: 'gw.example:443', path: '/.well-known/masque/ip/*/*/', headers: [['authorization', auth]] },
    rec,
  );
  env.run();
  return { id, rec };
}

/** Payload buffer with headroom, as MASQUE builds it: context ID 0 then the packet. */
function dgramPayload(body: string): { buf: Uint8Array; off: number; len: number } {
  const b = Buffer.from(body);
  const buf = new Uint8Array(H3_DATAGRAM_HEADROOM + 1 + b.length);
  buf[H3_DATAGRAM_HEADROOM] = 0; // context ID 0 (RFC 9484 §6)
  buf.set(b, H3_DATAGRAM_HEADROOM + 1);
  return { buf, off: H3_DATAGRAM_HEADROOM, len: 1 + b.length };
}

/** A raw client: control stream with our SETTINGS, then whatever the test writes. */
function rawClient(opts: { server?: H3ConnectionOptions; settings?: Array<[number, number]> } = {}) {
  const [ct, st] = memoryTransportPair();
  const srv = server(st, opts.server);
  srv.h.start();
  const settings = opts.settings ?? [
    [0x08, 1],
    [0x33, 1],
  ];
  ct.streamSend(2, cat(hex('00'), encodeFrame(FrameType.SETTINGS, encodeSettings(settings))), false);
  const run = () => {
    srv.h.handleReadable();
    srv.h.handleDatagrams();
    srv.h.handleWritable();
  };
  run();
  return { ct, st, srv, run };
}

const headers = (fields: FieldList) => encodeFrame(FrameType.HEADERS, encodeFieldSection(fields));
const connectFields = (auth = 'Bearer good'): FieldList => [
  [':method', 'CONNECT'],
  [':protocol', 'connect-ip'],
  [':scheme', 'https'],
  [':authority', 'gw.example:443'],
  [':path', '/masque/ip'],
  ['capsule-protocol', '?1'],
  ['authorization', auth],
];
const closeCode = (t: MemoryQuicTransport) => t.closeInfo?.errorCode;

/** Read what the server sent on a stream of a raw client (test helper). */
function readAll(t: MemoryQuicTransport, id: number): { bytes: Uint8Array; fin: boolean; reset: number | null } {
  const buf = new Uint8Array(65536);
  const parts: Uint8Array[] = [];
  let fin = false;
  let reset: number | null = null;
  for (;;) {
    let r: [number, boolean] | null;
    try {
      r = t.streamRecv(id, buf);
    } catch (e) {
      reset = (e as { errorCode: number }).errorCode;
      break;
    }
    if (r === null) break;
    parts.push(buf.slice(0, r[0]));
    if (r[1]) {
      fin = true;
      break;
    }
  }
  return { bytes: cat(...parts), fin, reset };
}

describe('H3Connection: SETTINGS (RFC 9114 §7.2.4, RFC 9220 §3, RFC 9297 §2.1.1)', () => {
  it('both sides send ENABLE_CONNECT_PROTOCOL=1, H3_DATAGRAM=1, QPACK capacity 0 and a grease setting', () => {
    const env = setup();
    for (const h of [env.cli, env.srv.h]) {
      expect(h.peerSettingsReceived).toBe(true);
      expect(h.peerSettings.enableConnectProtocol).toBe(true);
      expect(h.peerSettings.h3Datagram).toBe(true);
      expect(h.peerSettings.qpackMaxTableCapacity).toBe(0);
      expect(h.peerSettings.qpackBlockedStreams).toBe(0);
      expect(h.peerSettings.unknownCount).toBe(1); // the grease setting, ignored
      expect(h.counters.unknownFramesIgnored).toBe(1); // the grease frame after SETTINGS
      expect(h.datagramsEnabled).toBe(true);
    }
  });
});

describe('H3Connection: Extended CONNECT with capsules and datagrams (RFC 9220, RFC 9297)', () => {
  it('client ↔ server: request fields, 200 + capsule-protocol, capsules and datagrams both ways', () => {
    const env = setup();
    const { id, rec } = openTunnel(env);
    expect(id).toBe(0);
    const req = env.srv.requests[0]!;
    expect([req.protocol, req.scheme, req.authority, req.path]).toEqual(['connect-ip', 'https', 'gw.example:443', '/.well-known/masque/ip/*/*/']);
    expect(req.capsuleProtocol).toBe(true);
    expect(req.header('authorization')).toBe('Bearer good');
    expect(rec.status).toBe(200);
    expect(rec.headers).toContainEqual(['capsule-protocol', '?1']);
    expect(rec.headers).toContainEqual(['x-mtun', '1']);
    expect(rec.headers.some(([n]) => n === 'content-length')).toBe(false); // RFC 9297 §3.2
    const ct = rec.tunnel!;
    const { tunnel: st, rec: srec } = env.srv.tunnels[0]!;
    expect(ct.streamId).toBe(0);
    expect(st.streamId).toBe(0);

    // Capsules both ways, including an unknown type (passed up for the session to skip, §3.2).
    expect(ct.sendCapsule(0x01, hex('0102'))).toBe(true);
    expect(ct.sendCapsule(0x2a2a, hex(''))).toBe(true);
    expect(st.sendCapsule(0x03, hex('ff'.repeat(300)))).toBe(true);
    env.run();
    expect(srec.capsules).toEqual([
      [0x01, '0102'],
      [0x2a2a, ''],
    ]);
    expect(rec.capsules).toEqual([[0x03, 'ff'.repeat(300)]]);

    // HTTP Datagrams both ways; the quarter stream ID is written into the headroom.
    const p = dgramPayload('hello');
    expect(ct.sendDatagram(p.buf, p.off, p.len)).toBe(true);
    expect(p.buf[p.off - 1]).toBe(0); // QSID 0 written in place just before the payload
    const q = dgramPayload('world');
    expect(st.sendDatagram(q.buf, q.off, q.len)).toBe(true);
    env.run();
    expect(srec.datagrams).toEqual(['00' + Buffer.from('hello').toString('hex')]);
    expect(rec.datagrams).toEqual(['00' + Buffer.from('world').toString('hex')]);
    expect(ct.maxDatagramPayload()).toBe(1200 - 1);

    // A DATAGRAM capsule (type 0x00, §3.5) reaches onDatagram.
    expect(ct.sendCapsule(0x00, hex('00abcd'))).toBe(true);
    env.run();
    expect(srec.datagrams[1]).toBe('00abcd');
    expect(env.srv.h.counters.datagramCapsulesReceived).toBe(1);

    // Clean close: client FIN → server onClose(0) and FIN back → client onClose(0).
    ct.close();
    env.run();
    expect(srec.closed).toEqual([0]);
    expect(rec.closed).toEqual([0]);
    expect(ct.sendCapsule(1, hex('00'))).toBe(false);
    expect(env.cli.counters.capsulesDroppedClosed).toBe(1);
  });

  it('a second tunnel gets QSID 1 (stream 4) and datagrams are demultiplexed by stream', () => {
    const env = setup();
    const a = openTunnel(env);
    const b = openTunnel(env);
    expect(b.id).toBe(4);
    const p = dgramPayload('b');
    b.rec.tunnel!.sendDatagram(p.buf, p.off, p.len);
    env.run();
    expect(env.srv.tunnels[1]!.rec.datagrams).toEqual(['0062']);
    expect(env.srv.tunnels[0]!.rec.datagrams).toEqual([]);
    expect(a.rec.status).toBe(200);
  });

  it('reject: 403 with Proxy-Status reaches the client, no tunnel', () => {
    const env = setup();
    const { rec } = openTunnel(env, 'Bearer bad');
    expect(rec.status).toBe(403);
    expect(rec.tunnel).toBeNull();
    expect(rec.headers).toContainEqual(['proxy-status', 'mtun; error=connection_refused']);
    expect(env.srv.h.counters.connectRejected).toBe(1);
    // The connection still serves a good request.
    const ok = openTunnel(env);
    expect(ok.rec.status).toBe(200);
  });

  it('async accept: data and datagrams wait (datagrams dropped, counted) until the decision', () => {
    const env = setup({ autoAccept: false });
    const rec = new ClientRecorder();
    env.cli.connect({ protocol: 'connect-udp', authority: 'gw:443', path: '/udp/h/53/' }, rec);
    env.run();
    expect(env.srv.requests).toHaveLength(1);
    expect(rec.responses).toBe(0);
    const srec = new Recorder();
    const tunnel = env.srv.requests[0]!.accept(srec);
    expect(tunnel).not.toBeNull();
    env.run();
    expect(rec.status).toBe(200);
    expect(env.srv.requests[0]!.settled).toBe(true);
    expect(env.srv.requests[0]!.accept(srec)).toBeNull(); // only once
  });

  it('accept refuses 204/205/206 and Content-Length (RFC 9297 §3.2)', () => {
    const env = setup({ autoAccept: false });
    env.cli.connect({ protocol: 'connect-ip', authority: 'gw:443', path: '/ip' }, new ClientRecorder());
    env.run();
    const req = env.srv.requests[0]!;
    expect(() => req.accept(new Recorder(), [], 204)).toThrow(/h3: /);
  });

  it('datagrams are sent only after both sides sent H3_DATAGRAM=1 (RFC 9297 §2.1.1)', () => {
    const env = setup({ server: { enableDatagrams: false } });
    expect(env.cli.datagramsEnabled).toBe(false);
    const { rec } = openTunnel(env);
    const p = dgramPayload('x');
    expect(rec.tunnel!.sendDatagram(p.buf, p.off, p.len)).toBe(false);
    expect(rec.tunnel!.maxDatagramPayload()).toBe(0);
    expect(env.cli.counters.datagramsDroppedNotAllowed).toBe(1);
  });
});

describe('H3Connection: stream ordering and re-entrancy', () => {
  it('HEADERS followed by > 16 KiB of capsules in one burst, accepted synchronously, arrive complete and in order', () => {
    const raw = rawClient();
    const caps: Uint8Array[] = [];
    for (let i = 0; i < 200; i++) caps.push(encodeCapsuleBytes(0x05, new Uint8Array(200).fill(i)));
    raw.ct.streamSend(0, cat(headers(connectFields()), encodeFrame(FrameType.DATA, cat(...caps))), false);
    raw.run();
    const got = raw.srv.tunnels[0]!.rec.capsules;
    expect(got).toHaveLength(200);
    expect(got.every(([t, v], i) => t === 5 && v === Buffer.alloc(200, i).toString('hex'))).toBe(true);
  });

  it('async accept keeps capsules that arrived with the request and delivers them first, in order', () => {
    const [ct, st] = memoryTransportPair();
    const srv = server(st, {}, false);
    srv.h.start();
    ct.streamSend(2, cat(hex('00'), encodeFrame(FrameType.SETTINGS, encodeSettings([[0x33, 1]]))), false);
    ct.streamSend(0, cat(headers(connectFields()), encodeFrame(FrameType.DATA, encodeCapsuleBytes(1, hex('01')))), false);
    srv.h.handleReadable();
    ct.streamSend(0, encodeFrame(FrameType.DATA, encodeCapsuleBytes(1, hex('02'))), false);
    srv.h.handleReadable(); // paused: left in QUIC
    const rec = new Recorder();
    expect(srv.requests[0]!.accept(rec)).not.toBeNull();
    expect(rec.capsules).toEqual([
      [1, '01'],
      [1, '02'],
    ]);
  });

  it('accept() for one stream from inside another stream\'s capsule callback keeps both streams intact', () => {
    const [ct, st] = memoryTransportPair();
    const pending: ConnectRequest[] = [];
    const recs: Recorder[] = [];
    let h3!: H3Connection;
    h3 = new H3Connection(st, {
      onConnect: (req) => {
        if (req.streamId === 0) {
          const r = new (class extends Recorder {
            override onCapsule(type: number, value: Uint8Array) {
              super.onCapsule(type, value);
              const p = pending.shift();
              if (p) {
                const r2 = new Recorder();
                recs.push(r2);
                p.accept(r2);
              }
            }
          })();
          recs.unshift(r);
          req.accept(r);
        } else pending.push(req);
      },
    });
    h3.start();
    ct.streamSend(2, cat(hex('00'), encodeFrame(FrameType.SETTINGS, encodeSettings([[0x33, 1]]))), false);
    ct.streamSend(4, cat(headers(connectFields()), encodeFrame(FrameType.DATA, encodeCapsuleBytes(2, hex('b1')))), false);
    h3.handleReadable();
    ct.streamSend(0, cat(headers(connectFields()), encodeFrame(FrameType.DATA, cat(encodeCapsuleBytes(1, hex('a1')), encodeCapsuleBytes(1, hex('a2'))))), false);
    h3.handleReadable();
    expect(recs[0]!.capsules).toEqual([
      [1, 'a1'],
      [1, 'a2'],
    ]);
    expect(recs[1]!.capsules).toEqual([[2, 'b1']]);
  });

  it('QUIC may deliver request streams out of order: stream 8 then 0 and 4 are all served', () => {
    const raw = rawClient();
    raw.ct.streamSend(8, headers(connectFields()), false);
    raw.run();
    raw.ct.streamSend(0, headers(connectFields()), false);
    raw.ct.streamSend(4, headers(connectFields()), false);
    raw.run();
    expect(raw.srv.tunnels.map((t) => t.tunnel.streamId).sort()).toEqual([0, 4, 8]);
    // a datagram for stream 12 (not yet opened) is unknown, not closed
    raw.st.injectDatagram(hex('03 00'));
    raw.run();
    expect(raw.srv.h.counters.datagramsDroppedUnknownStream).toBe(1);
  });
});

describe('H3Connection: plain requests', () => {
  it('GET /healthz → 200 "ok", other paths 404 (src/telemetry/healthz.ts)', () => {
    const env = setup({ server: { onRequest: healthzHandler } });
    const results: H3ClientResult[] = [];
    h3Request(env.cli, { method: 'GET', authority: 'gw:443', path: '/healthz' }, (r) => results.push(r));
    h3Request(env.cli, { method: 'GET', authority: 'gw:443', path: '/nope' }, (r) => results.push(r));
    env.run();
    expect(results).toHaveLength(2);
    const [a, b] = results as Array<Extract<H3ClientResult, { ok: true }>>;
    expect(a!.ok && a!.status).toBe(200);
    expect(text(a!.body)).toBe('ok\n');
    expect(a!.headers).toContainEqual(['content-length', '3']);
    expect(b!.status).toBe(404);
  });

  it('without an onRequest handler every plain request is answered 404', () => {
    const env = setup();
    const results: H3ClientResult[] = [];
    h3Request(env.cli, { method: 'GET', authority: 'gw:443', path: '/healthz' }, (r) => results.push(r));
    env.run();
    expect(results.map((r) => r.ok && r.status)).toEqual([404]);
  });

  it('a throwing application handler is answered 500 and counted; the connection keeps serving', () => {
    const env = setup({ server: { onRequest: () => { throw new Error('boom'); }, onConnect: () => { throw new Error('boom'); } } });
    const results: H3ClientResult[] = [];
    h3Request(env.cli, { method: 'GET', authority: 'gw', path: '/x' }, (r) => results.push(r));
    const { rec } = openTunnel(env);
    env.run();
    expect(results[0]!.ok && results[0]!.status).toBe(500);
    expect(rec.status).toBe(500);
    expect(env.srv.h.counters.handlerErrors).toBe(2);
    expect(env.st.closeInfo).toBeNull();
  });

  it('responses larger than the flow-control window are flushed as credit returns', () => {
    const [ct, st] = memoryTransportPair({ streamWindowBytes: 1000 });
    const big = 'y'.repeat(20000);
    const srv = new H3Connection(st, { onRequest: () => ({ status: 200, body: big }) });
    const cli = new H3Connection(ct, {});
    srv.start();
    cli.start();
    let got: H3ClientResult | undefined;
    h3Request(cli, { method: 'GET', authority: 'gw', path: '/big' }, (r) => (got = r));
    pump({ t: ct, h: cli }, { t: st, h: srv }, 200);
    expect(got!.ok && text(got!.body)).toBe(big);
  });
});

describe('H3Connection: GOAWAY (RFC 9114 §5.2)', () => {
  it('server shutdown: client learns the ID, new requests refused, open tunnel keeps working, then H3_NO_ERROR close', () => {
    const env = setup();
    const { rec } = openTunnel(env);
    env.srv.h.shutdown();
    env.run();
    expect(env.goaways).toEqual([4]);
    expect(env.cli.goawayReceived).toBe(4);
    const late = new ClientRecorder();
    expect(env.cli.connect({ protocol: 'connect-ip', authority: 'gw', path: '/ip' }, late)).toBe(-1);
    // The existing tunnel still carries datagrams.
    const p = dgramPayload('still');
    expect(rec.tunnel!.sendDatagram(p.buf, p.off, p.len)).toBe(true);
    env.run();
    expect(env.srv.tunnels[0]!.rec.datagrams).toHaveLength(1);
    // Ending the last request lets the server close cleanly.
    rec.tunnel!.close();
    env.run();
    expect(closeCode(env.st)).toBe(H3Error.H3_NO_ERROR);
    expect(env.cli.closed).toBe(true);
  });

  it('server shutdown with no requests sends GOAWAY(0) and closes with H3_NO_ERROR', () => {
    const env = setup();
    env.srv.h.shutdown();
    env.run();
    expect(env.goaways).toEqual([0]);
    expect(closeCode(env.st)).toBe(H3Error.H3_NO_ERROR);
    expect(env.cli.closed).toBe(true);
  });

  it('GOAWAY IDs must not increase and must name a client bidirectional stream (H3_ID_ERROR)', () => {
    const env = setup();
    env.st.streamSend(3, encodeFrame(FrameType.GOAWAY, hex('01')), false); // not a multiple of 4
    env.run();
    expect(closeCode(env.ct)).toBe(H3Error.H3_ID_ERROR);
  });

  it('requests at or above the GOAWAY ID are rejected with H3_REQUEST_REJECTED', () => {
    const raw = rawClient();
    raw.ct.streamSend(0, headers(connectFields()), false);
    raw.run();
    raw.srv.h.shutdown();
    raw.ct.streamSend(4, headers(connectFields()), false);
    raw.run();
    expect(readAll(raw.ct, 4).reset).toBe(H3Error.H3_REQUEST_REJECTED);
    expect(raw.srv.h.counters.requestsRejectedGoaway).toBe(1);
    expect(raw.srv.tunnels).toHaveLength(1);
  });
});

describe('H3Connection: malformed input catalogue', () => {
  it('RFC 9114 §9: unknown frame types (control and request streams) and unknown/grease stream types are ignored', () => {
    const raw = rawClient();
    // grease frame on control
    raw.ct.streamSend(2, encodeFrame(greaseValue(7), hex('0011')), false);
    // grease uni stream type → STOP_SENDING with H3_STREAM_CREATION_ERROR
    raw.ct.streamSend(6, cat(hex('4021'), hex('deadbeef')), false);
    // request with a grease frame before and after HEADERS
    raw.ct.streamSend(0, cat(encodeFrame(0x21, hex('aa')), headers(connectFields()), encodeFrame(0x40, hex('bb'))), false);
    raw.run();
    expect(raw.st.closeInfo).toBeNull();
    expect(raw.st.shutdowns).toContainEqual([6, 'read', H3Error.H3_STREAM_CREATION_ERROR]);
    expect(raw.srv.h.counters.unknownStreamsIgnored).toBe(1);
    expect(raw.srv.h.counters.unknownFramesIgnored).toBe(3);
    expect(raw.srv.tunnels).toHaveLength(1);
  });

  it('RFC 9297 §2.1: a quarter stream ID above 2^60−1 is a connection error H3_DATAGRAM_ERROR; other connections keep serving', () => {
    const env = setup();
    openTunnel(env);
    env.st.injectDatagram(hex('d000000000000000 00')); // QSID = 2^60
    env.run();
    expect(closeCode(env.st)).toBe(H3Error.H3_DATAGRAM_ERROR);
    expect(env.srv.tunnels[0]!.rec.closed).toEqual([H3Error.H3_DATAGRAM_ERROR]);
    // 2^60 − 1 itself is legal (unknown stream, dropped).
    const env2 = setup();
    env2.st.injectDatagram(hex('cfffffffffffffff 00'));
    env2.run();
    expect(env2.st.closeInfo).toBeNull();
    expect(env2.srv.h.counters.datagramsDroppedUnknownStream).toBe(1);
    expect(openTunnel(env2).rec.status).toBe(200);
  });

  it('RFC 9297 §2.1: a DATAGRAM too short for a quarter stream ID is H3_DATAGRAM_ERROR', () => {
    for (const d of ['', '40', 'c0000000']) {
      const env = setup();
      env.st.injectDatagram(hex(d));
      env.run();
      expect(closeCode(env.st)).toBe(H3Error.H3_DATAGRAM_ERROR);
    }
  });

  it('RFC 9297 §2: a datagram for a stream without datagram semantics aborts that stream with H3_DATAGRAM_ERROR; the tunnel keeps working', () => {
    const raw = rawClient();
    raw.ct.streamSend(0, headers(connectFields()), false); // tunnel on stream 0
    // a POST still sending its body on stream 4
    raw.ct.streamSend(4, headers([[':method', 'POST'], [':scheme', 'https'], [':authority', 'gw'], [':path', '/upload']]), false);
    raw.run();
    raw.st.injectDatagram(hex('01 00 aa')); // QSID 1 → stream 4
    raw.st.injectDatagram(hex('00 00 bb')); // QSID 0 → tunnel
    raw.run();
    expect(raw.st.closeInfo).toBeNull();
    expect(readAll(raw.ct, 4).reset).toBe(H3Error.H3_DATAGRAM_ERROR);
    expect(raw.srv.h.counters.datagramsNoSemantics).toBe(1);
    expect(raw.srv.tunnels[0]!.rec.datagrams).toEqual(['00bb']);
  });

  it('RFC 9297 §2.1: datagrams after their stream closed are dropped and counted, not an error', () => {
    const env = setup();
    const { rec } = openTunnel(env);
    rec.tunnel!.close();
    env.run();
    env.st.injectDatagram(hex('00 00 cc'));
    env.run();
    expect(env.st.closeInfo).toBeNull();
    expect(env.srv.h.counters.datagramsDroppedClosedStream).toBe(1);
  });

  it('RFC 9297 §2.1.1: SETTINGS_H3_DATAGRAM=2 is a connection error H3_SETTINGS_ERROR', () => {
    const raw = rawClient({ settings: [[0x33, 2]] });
    expect(closeCode(raw.st)).toBe(H3Error.H3_SETTINGS_ERROR);
  });

  it('RFC 9297 §2.1.1: H3_DATAGRAM=1 from a peer that did not negotiate QUIC DATAGRAM is H3_SETTINGS_ERROR', () => {
    const [ct, st] = memoryTransportPair({ dgramMaxBytes: null });
    const srv = new H3Connection(st, {});
    srv.start();
    ct.streamSend(2, cat(hex('00'), encodeFrame(FrameType.SETTINGS, encodeSettings([[0x33, 1]]))), false);
    srv.handleReadable();
    expect(closeCode(st)).toBe(H3Error.H3_SETTINGS_ERROR);
  });

  it('RFC 9114 §7.2.4.1: reserved HTTP/2 settings and repeated settings are H3_SETTINGS_ERROR', () => {
    expect(closeCode(rawClient({ settings: [[0x02, 0]] }).st)).toBe(H3Error.H3_SETTINGS_ERROR);
    expect(closeCode(rawClient({ settings: [[0x33, 1], [0x33, 1]] }).st)).toBe(H3Error.H3_SETTINGS_ERROR);
  });

  it('RFC 9000 §16: non-minimal varints in SETTINGS and frame headers are accepted', () => {
    const [ct, st] = memoryTransportPair();
    const srv = server(st);
    srv.h.start();
    // type 0x04 as 2 bytes, length as 4 bytes, id 0x33 as 8 bytes, value 1 as 2 bytes
    const payload = hex('c000000000000033 4001');
    ct.streamSend(2, cat(hex('00'), hex('4004'), hex('8000000a'), payload), false);
    srv.h.handleReadable();
    expect(st.closeInfo).toBeNull();
    expect(srv.h.peerSettings.h3Datagram).toBe(true);
  });

  it('RFC 9220 §3: :protocol from a peer that never saw ENABLE_CONNECT_PROTOCOL is malformed (H3_MESSAGE_ERROR); GET still works', () => {
    const raw = rawClient({ server: { enableConnectProtocol: false, onRequest: healthzHandler } });
    raw.ct.streamSend(0, headers(connectFields()), false);
    raw.ct.streamSend(4, headers([[':method', 'GET'], [':scheme', 'https'], [':authority', 'gw'], [':path', '/healthz']]), true);
    raw.run();
    expect(raw.st.closeInfo).toBeNull();
    expect(readAll(raw.ct, 0).reset).toBe(H3Error.H3_MESSAGE_ERROR);
    expect(raw.srv.requests).toHaveLength(0);
    const r = readAll(raw.ct, 4);
    expect(r.fin).toBe(true);
    expect(text(r.bytes)).toContain('ok\n');
  });

  it('RFC 9220 / RFC 9114 §4.4: Extended CONNECT without :path, and plain CONNECT with :path, are malformed', () => {
    const raw = rawClient();
    raw.ct.streamSend(0, headers(connectFields().filter(([n]) => n !== ':path')), false);
    raw.ct.streamSend(4, headers([[':method', 'CONNECT'], [':authority', 'x:1'], [':path', '/']]), false);
    raw.run();
    expect(readAll(raw.ct, 0).reset).toBe(H3Error.H3_MESSAGE_ERROR);
    expect(readAll(raw.ct, 4).reset).toBe(H3Error.H3_MESSAGE_ERROR);
    expect(raw.srv.h.counters.malformedMessages).toBe(2);
  });

  it('RFC 9297 §3.3: a capsule length past the data (stream ends) is malformed: H3_MESSAGE_ERROR; the other tunnel keeps working', () => {
    const raw = rawClient();
    raw.ct.streamSend(0, headers(connectFields()), false);
    raw.ct.streamSend(4, headers(connectFields()), false);
    raw.run();
    // capsule type 1, length 100, only 3 bytes of value, then FIN
    raw.ct.streamSend(4, encodeFrame(FrameType.DATA, hex('01 4064 010203')), true);
    raw.ct.streamSend(0, encodeFrame(FrameType.DATA, encodeCapsuleBytes(0x01, hex('beef'))), false);
    raw.run();
    expect(raw.st.closeInfo).toBeNull();
    expect(readAll(raw.ct, 4).reset).toBe(H3Error.H3_MESSAGE_ERROR);
    expect(raw.srv.tunnels[1]!.rec.closed).toEqual([H3Error.H3_MESSAGE_ERROR]);
    expect(raw.srv.tunnels[0]!.rec.capsules).toEqual([[0x01, 'beef']]);
  });

  it('RFC 9297 §3.3: a stream ending inside a capsule header is malformed: H3_MESSAGE_ERROR', () => {
    const raw = rawClient();
    raw.ct.streamSend(0, headers(connectFields()), false);
    raw.run();
    raw.ct.streamSend(0, encodeFrame(FrameType.DATA, hex('40')), true); // half a type varint
    raw.run();
    expect(readAll(raw.ct, 0).reset).toBe(H3Error.H3_MESSAGE_ERROR);
    expect(raw.srv.tunnels[0]!.rec.closed).toEqual([H3Error.H3_MESSAGE_ERROR]);
  });

  it('capsules split across DATA frames are reassembled (RFC 9297 §3.1)', () => {
    const raw = rawClient();
    raw.ct.streamSend(0, headers(connectFields()), false);
    raw.run();
    const c = cat(encodeCapsuleBytes(0x02, hex('11'.repeat(50))), encodeCapsuleBytes(0x00, hex('00aa')));
    for (let i = 0; i < c.length; i += 7) raw.ct.streamSend(0, encodeFrame(FrameType.DATA, c.subarray(i, i + 7)), false);
    raw.run();
    expect(raw.srv.tunnels[0]!.rec.capsules).toEqual([[0x02, '11'.repeat(50)]]);
    expect(raw.srv.tunnels[0]!.rec.datagrams).toEqual(['00aa']);
  });

  it('RFC 9204 §2.2 / Appendix B.2: a dynamic-table reference is QPACK_DECOMPRESSION_FAILED', () => {
    const raw = rawClient();
    // Required Insert Count 3 (encoded 0x03), Base 2, indexed dynamic entries (RFC 9204 Appendix B.2 request)
    raw.ct.streamSend(0, encodeFrame(FrameType.HEADERS, hex('0381 10 11')), false);
    raw.run();
    expect(closeCode(raw.st)).toBe(H3Error.QPACK_DECOMPRESSION_FAILED);
  });

  it('RFC 9114 §6.2.1: closing the control stream is H3_CLOSED_CRITICAL_STREAM', () => {
    const raw = rawClient();
    raw.ct.streamSend(2, new Uint8Array(0), true);
    raw.run();
    expect(closeCode(raw.st)).toBe(H3Error.H3_CLOSED_CRITICAL_STREAM);
  });

  it('RFC 9114 §6.2.1: a second control stream is H3_STREAM_CREATION_ERROR', () => {
    const raw = rawClient();
    raw.ct.streamSend(6, cat(hex('00'), encodeFrame(FrameType.SETTINGS, new Uint8Array(0))), false);
    raw.run();
    expect(closeCode(raw.st)).toBe(H3Error.H3_STREAM_CREATION_ERROR);
  });

  it('RFC 9114 §6.2.1: a first control frame other than SETTINGS is H3_MISSING_SETTINGS', () => {
    const [ct, st] = memoryTransportPair();
    const srv = new H3Connection(st, {});
    srv.start();
    ct.streamSend(2, cat(hex('00'), encodeFrame(FrameType.GOAWAY, hex('00'))), false);
    srv.handleReadable();
    expect(closeCode(st)).toBe(H3Error.H3_MISSING_SETTINGS);
  });

  it('RFC 9114 §7.2.4 / §7.2.8: second SETTINGS, DATA on control, HTTP/2 frame types are H3_FRAME_UNEXPECTED', () => {
    for (const bytes of [encodeFrame(FrameType.SETTINGS, new Uint8Array(0)), encodeFrame(FrameType.DATA, hex('00')), encodeFrame(0x06, hex('00'))]) {
      const raw = rawClient();
      raw.ct.streamSend(2, bytes, false);
      raw.run();
      expect(closeCode(raw.st)).toBe(H3Error.H3_FRAME_UNEXPECTED);
    }
  });

  it('RFC 9114 §4.1: DATA before HEADERS is H3_FRAME_UNEXPECTED; a truncated frame at FIN is H3_FRAME_ERROR', () => {
    const a = rawClient();
    a.ct.streamSend(0, encodeFrame(FrameType.DATA, hex('00')), false);
    a.run();
    expect(closeCode(a.st)).toBe(H3Error.H3_FRAME_UNEXPECTED);
    const b = rawClient();
    b.ct.streamSend(0, hex('01 10 0000'), true); // HEADERS of 16 bytes, 2 present
    b.run();
    expect(closeCode(b.st)).toBe(H3Error.H3_FRAME_ERROR);
  });

  it('RFC 9114 §6.2.2: a client-initiated push stream is H3_STREAM_CREATION_ERROR', () => {
    const raw = rawClient();
    raw.ct.streamSend(6, hex('01 00'), false);
    raw.run();
    expect(closeCode(raw.st)).toBe(H3Error.H3_STREAM_CREATION_ERROR);
  });

  it('RFC 9204 §4.2: QPACK encoder/decoder streams are accepted; an insert into our zero-capacity table is QPACK_ENCODER_STREAM_ERROR', () => {
    const raw = rawClient();
    raw.ct.streamSend(6, hex('02 20'), false); // encoder stream, Set Dynamic Table Capacity 0
    raw.ct.streamSend(10, hex('03 41'), false); // decoder stream, Stream Cancellation for stream 1
    raw.run();
    expect(raw.st.closeInfo).toBeNull();
    raw.ct.streamSend(6, hex('c1 03 616263'), false); // Insert With Name Reference
    raw.run();
    expect(closeCode(raw.st)).toBe(H3Error.QPACK_ENCODER_STREAM_ERROR);
  });

  it('RFC 9114 §4.1: a request stream ending before HEADERS is H3_REQUEST_INCOMPLETE; the connection continues', () => {
    const raw = rawClient();
    raw.ct.streamSend(0, encodeFrame(0x21, hex('')), true);
    raw.run();
    expect(raw.st.closeInfo).toBeNull();
    expect(readAll(raw.ct, 0).reset).toBe(H3Error.H3_REQUEST_INCOMPLETE);
  });

  it('peer reset of a tunnel stream reaches onClose with its code', () => {
    const env = setup();
    const { rec } = openTunnel(env);
    rec.tunnel!.abort(H3Error.H3_CONNECT_ERROR);
    env.run();
    expect(env.srv.tunnels[0]!.rec.closed).toEqual([H3Error.H3_CONNECT_ERROR]);
    expect(env.cli.closed).toBe(false);
  });
});

function encodeCapsuleBytes(type: number, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + value.length);
  return out.slice(0, encodeCapsule(type, value, out, 0));
}

/** A client H3Connection facing a raw server transport the test drives byte by byte. */
function rawServer() {
  const [ct, st] = memoryTransportPair();
  const cli = new H3Connection(ct, {});
  cli.start();
  st.streamSend(3, cat(hex('00'), encodeFrame(FrameType.SETTINGS, encodeSettings([[0x08, 1], [0x33, 1]]))), false);
  const run = () => {
    cli.handleReadable();
    cli.handleDatagrams();
  };
  run();
  return { ct, st, cli, run };
}

describe('H3Connection (client side): malformed responses and server misbehaviour', () => {
  const open = (raw: ReturnType<typeof rawServer>) => {
    const rec = new ClientRecorder();
    const id = raw.cli.connect({ protocol: 'connect-ip', authority: 'gw', path: '/ip' }, rec);
    return { id, rec };
  };

  it('RFC 9297 §3.2: a 2xx capsule-protocol response with Content-Length, or a 204, is malformed (H3_MESSAGE_ERROR)', () => {
    for (const fields of [
      [[':status', '200'], ['capsule-protocol', '?1'], ['content-length', '0']],
      [[':status', '204'], ['capsule-protocol', '?1']],
    ] as FieldList[]) {
      const raw = rawServer();
      const { id, rec } = open(raw);
      raw.st.streamSend(id, headers(fields), false);
      raw.run();
      expect(rec.responses).toBe(0);
      expect(rec.closed).toEqual([H3Error.H3_MESSAGE_ERROR]);
      expect(readAll(raw.st, id).reset).toBe(H3Error.H3_MESSAGE_ERROR);
    }
  });

  it('RFC 9114 §4.1: interim 1xx responses are skipped; the final 200 opens the tunnel', () => {
    const raw = rawServer();
    const { id, rec } = open(raw);
    raw.st.streamSend(id, cat(headers([[':status', '103']]), headers([[':status', '200'], ['capsule-protocol', '?1']])), false);
    raw.run();
    expect(rec.status).toBe(200);
    expect(rec.tunnel).not.toBeNull();
  });

  it('the client sends no :protocol to a server that did not enable Extended CONNECT (RFC 9220 §3)', () => {
    const [ct, st] = memoryTransportPair();
    const cli = new H3Connection(ct, {});
    cli.start();
    st.streamSend(3, cat(hex('00'), encodeFrame(FrameType.SETTINGS, encodeSettings([[0x33, 1]]))), false);
    const rec = new ClientRecorder();
    const id = cli.connect({ protocol: 'connect-ip', authority: 'gw', path: '/ip' }, rec); // queued until SETTINGS
    cli.handleReadable();
    expect(rec.closed).toEqual([H3Error.H3_REQUEST_REJECTED]);
    expect(readAll(st, id).bytes.length).toBe(0);
  });

  it('RFC 9114 §4.2.2: a request above the server\'s SETTINGS_MAX_FIELD_SECTION_SIZE is not sent', () => {
    const env = setup({ server: { maxFieldSectionSize: 300 } });
    const rec = new ClientRecorder();
    env.cli.connect({ protocol: 'connect-ip', authority: 'gw', path: '/ip', headers: [['authorization', 'x'.repeat(400)]] }, rec);
    env.run();
    expect(rec.closed).toEqual([H3Error.H3_EXCESSIVE_LOAD]);
    expect(env.srv.requests).toHaveLength(0);
  });

  it('RFC 9114 §6.1, §4.6: server-initiated bidi stream → H3_STREAM_CREATION_ERROR; push stream or PUSH_PROMISE → H3_ID_ERROR', () => {
    const a = rawServer();
    a.st.streamSend(1, headers([[':status', '200']]), false);
    a.run();
    expect(closeCode(a.ct)).toBe(H3Error.H3_STREAM_CREATION_ERROR);
    const b = rawServer();
    b.st.streamSend(7, hex('01 00'), false);
    b.run();
    expect(closeCode(b.ct)).toBe(H3Error.H3_ID_ERROR);
    const c = rawServer();
    const { id } = open(c);
    c.st.streamSend(id, encodeFrame(FrameType.PUSH_PROMISE, hex('00 0000')), false);
    c.run();
    expect(closeCode(c.ct)).toBe(H3Error.H3_ID_ERROR);
  });

  it('RFC 9114 §7.2.7: MAX_PUSH_ID from a server is H3_FRAME_UNEXPECTED', () => {
    const raw = rawServer();
    raw.st.streamSend(3, encodeFrame(FrameType.MAX_PUSH_ID, hex('00')), false);
    raw.run();
    expect(closeCode(raw.ct)).toBe(H3Error.H3_FRAME_UNEXPECTED);
  });
});

describe('H3Connection: random input never throws', () => {
  const known = new Set<number>(Object.values(H3Error));
  it('property: random bytes on control, request and unknown streams, and random datagrams', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(0, 4, 2, 6, -1), fc.uint8Array({ maxLength: 48 }), fc.boolean()), { maxLength: 12 }),
        (ops) => {
          const [ct, st] = memoryTransportPair();
          const srv = server(st);
          srv.h.start();
          const finished = new Set<number>();
          for (const [sid, bytes, fin] of ops) {
            if (sid === -1) st.injectDatagram(bytes);
            else if (!finished.has(sid)) {
              try {
                ct.streamSend(sid, bytes, fin);
              } catch {
                // stopped by the server: fine
              }
              if (fin) finished.add(sid);
            }
            srv.h.handleReadable();
            srv.h.handleDatagrams();
            srv.h.handleWritable();
          }
          if (st.closeInfo) expect(known.has(st.closeInfo.errorCode)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('property: random bytes after a valid CONNECT on the tunnel stream never throw', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), fc.boolean(), (chunks, fin) => {
        const raw = rawClient();
        raw.ct.streamSend(0, headers(connectFields()), false);
        raw.run();
        chunks.forEach((c, i) => {
          try {
            raw.ct.streamSend(0, encodeFrame(FrameType.DATA, c), fin && i === chunks.length - 1);
          } catch {
            // stopped
          }
          raw.run();
        });
        if (raw.st.closeInfo) expect(known.has(raw.st.closeInfo.errorCode)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe('H3Connection: less common paths', () => {
  it('§4.1: trailers on a tunnel stream are accepted; DATA after trailers is H3_FRAME_UNEXPECTED', () => {
    const raw = rawClient();
    raw.ct.streamSend(0, cat(headers(connectFields()), encodeFrame(FrameType.DATA, encodeCapsuleBytes(1, hex('aa'))), headers([['x-trailer', '1']])), false);
    raw.run();
    expect(raw.st.closeInfo).toBeNull();
    expect(raw.srv.tunnels[0]!.rec.capsules).toEqual([[1, 'aa']]);
    raw.ct.streamSend(0, encodeFrame(FrameType.DATA, hex('00')), false);
    raw.run();
    expect(closeCode(raw.st)).toBe(H3Error.H3_FRAME_UNEXPECTED);
  });

  it('§4.1.2: trailers with a pseudo-header are malformed (H3_MESSAGE_ERROR)', () => {
    const raw = rawClient();
    raw.ct.streamSend(0, cat(headers(connectFields()), headers([[':status', '200']])), false);
    raw.run();
    expect(readAll(raw.ct, 0).reset).toBe(H3Error.H3_MESSAGE_ERROR);
  });

  it('§7.2.6: a GOAWAY whose payload is not exactly one varint is H3_FRAME_ERROR', () => {
    const raw = rawClient();
    raw.ct.streamSend(2, encodeFrame(FrameType.GOAWAY, hex('00 00')), false);
    raw.run();
    expect(closeCode(raw.st)).toBe(H3Error.H3_FRAME_ERROR);
  });

  it('a SETTINGS frame above 4 KiB is H3_EXCESSIVE_LOAD', () => {
    const [ct, st] = memoryTransportPair();
    const srv = new H3Connection(st, {});
    srv.start();
    ct.streamSend(2, cat(hex('00'), hex('04 5001'), new Uint8Array(0x1001)), false);
    srv.handleReadable();
    expect(closeCode(st)).toBe(H3Error.H3_EXCESSIVE_LOAD);
  });

  it('STOP_SENDING from the client on a tunnel ends it with the client\'s code', () => {
    const env = setup();
    const { id } = openTunnel(env);
    env.ct.streamShutdown(id, 'read', H3Error.H3_REQUEST_CANCELLED);
    env.srv.tunnels[0]!.tunnel.sendCapsule(1, hex('00'));
    env.run();
    expect(env.srv.tunnels[0]!.rec.closed).toEqual([H3Error.H3_REQUEST_CANCELLED]);
    expect(env.srv.h.counters.streamErrorsReceived.H3_REQUEST_CANCELLED).toBe(1);
  });

  it('a connection error reaches every open tunnel and pending request', () => {
    const env = setup({ autoAccept: false });
    const a = openTunnel(env);
    expect(env.srv.requests).toHaveLength(1);
    env.cli.close(H3Error.H3_INTERNAL_ERROR, 'test');
    env.run();
    expect(a.rec.closed).toEqual([H3Error.H3_INTERNAL_ERROR]);
    expect(env.srv.requests[0]!.settled).toBe(true);
    expect(env.srv.requests[0]!.accept(new Recorder())).toBeNull();
    expect(env.srv.h.closed).toBe(true);
  });
});
