/** H3Connection against malformed and hostile input, both sides (RFC 9114 §7, §8; RFC 9204; RFC 9297). */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { H3Connection } from './connection.js';
import { healthzHandler } from '../telemetry/healthz.js';
import { H3Error } from './errors.js';
import { FrameType, encodeFrame, greaseValue } from './frame.js';
import { encodeSettings } from './settings.js';
import { memoryTransportPair } from './testing/memory-transport.js';
import type { FieldList } from './qpack.js';
import { ClientRecorder, cat, closeCode, connectFields, encodeCapsuleBytes, headers, hex, openTunnel, rawClient, server, readAll, setup, text } from './testing/connection-fixtures.js';

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
