import { describe, expect, it } from 'vitest';
import { H3Connection, type ConnectRequest } from './connection.js';
import { h3Request, type H3ClientResult } from './testing/h3-request.js';
import { healthzHandler } from '../telemetry/healthz.js';
import { H3Error } from './errors.js';
import { FrameType, encodeFrame } from './frame.js';
import { encodeSettings } from './settings.js';
import { memoryTransportPair, pump } from './testing/memory-transport.js';
import { ClientRecorder, Recorder, cat, closeCode, connectFields, encodeCapsuleBytes, dgramPayload, headers, hex, openTunnel, rawClient, server, readAll, setup, text } from './testing/connection-fixtures.js';

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
