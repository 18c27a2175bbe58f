/**
 * Issue #12 item 13: what an unauthenticated peer can make the server hold.
 * HEADERS payloads are collected as bytes arrive (not at their declared
 * length) and plain request bodies are dropped as they arrive (counted).
 */
import { describe, expect, it } from 'vitest';
import type { H3ConnectionOptions, H3Request } from './connection.js';
import { encodeFrame, encodeFrameHeader, frameHeaderLength, FrameType } from './frame.js';
import { encodeFieldSection, type FieldList } from './qpack.js';
import { healthzHandler } from '../telemetry/healthz.js';
import type { MemoryQuicTransport } from './testing/memory-transport.js';
import { rawClient, readAll } from './testing/connection-fixtures.js';

const MiB = 1 << 20;

/** A server H3Connection fed by hand through the client end of a memory transport. */
function serverWithRawPeer(opts: H3ConnectionOptions) {
  const raw = rawClient({ server: opts });
  return { ct: raw.ct, st: raw.st, srv: raw.srv.h, step: raw.run };
}

function headersFrameHeader(length: number): Uint8Array {
  const out = new Uint8Array(frameHeaderLength(FrameType.HEADERS, length));
  encodeFrameHeader(FrameType.HEADERS, length, out, 0);
  return out;
}

const responseText = (t: MemoryQuicTransport, id: number) => Buffer.from(readAll(t, id).bytes).toString('latin1');

const getHealthz: FieldList = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':authority', 'gw'],
  [':path', '/healthz'],
];

describe('H3Connection: what a peer can make the server hold (issue #12 item 13)', () => {
  it('a HEADERS frame declaring 1 MiB of which 10 bytes arrived holds at most 256 bytes, not 1 MiB', () => {
    const { ct, srv, step } = serverWithRawPeer({ maxFieldSectionSize: 2 * MiB });
    ct.streamSend(0, Uint8Array.from([...headersFrameHeader(MiB), ...new Uint8Array(10)]), false);
    step();
    expect(srv.closed).toBe(false);
    expect(srv.bufferedBytes()).toBeGreaterThanOrEqual(10);
    expect(srv.bufferedBytes()).toBeLessThanOrEqual(256);
    // 100 such streams cost 100 × 256 bytes, not 100 MiB.
    for (let id = 4; id < 400; id += 4) ct.streamSend(id, Uint8Array.from([...headersFrameHeader(MiB), 1, 2, 3]), false);
    step();
    expect(srv.bufferedBytes()).toBeLessThanOrEqual(100 * 256);
  });

  it('a large field section arriving in small pieces grows its buffer as it comes and decodes intact', () => {
    const seen: H3Request[] = [];
    const { ct, st, srv, step } = serverWithRawPeer({ maxFieldSectionSize: 64 * 1024, onRequest: (r) => (seen.push(r), { status: 204 }) });
    const value = 'v'.repeat(20000);
    const frame = encodeFrame(FrameType.HEADERS, encodeFieldSection([...getHealthz, ['x-big', value]]));
    const held: number[] = [];
    for (let p = 0; p < frame.length; p += 700) {
      ct.streamSend(0, frame.subarray(p, Math.min(frame.length, p + 700)), false);
      step();
      held.push(srv.bufferedBytes());
    }
    // Never more than twice what had arrived (doubling growth), never the declared length up front.
    held.slice(0, -1).forEach((b, i) => expect(b).toBeLessThanOrEqual(Math.max(256, 2 * 700 * (i + 1))));
    ct.streamSend(0, new Uint8Array(0), true);
    step();
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers).toContainEqual(['x-big', value]);
    expect(responseText(ct, 0).length).toBeGreaterThan(0);
    expect(st.closeInfo).toBeNull();
  });

  it('a body sent with GET /healthz is dropped as it arrives (counted), never buffered; the request is still answered', () => {
    const { ct, srv, step } = serverWithRawPeer({ onRequest: healthzHandler });
    const body = new Uint8Array(30000).fill(0x61);
    ct.streamSend(0, Uint8Array.from([...encodeFrame(FrameType.HEADERS, encodeFieldSection(getHealthz)), ...encodeFrame(FrameType.DATA, body)]), false);
    step();
    expect(srv.bufferedBytes()).toBe(0);
    expect(srv.counters.requestBodyBytesDropped).toBe(30000);
    // Far past the old 64 KiB body bound: still dropped and counted, no 413.
    for (let i = 0; i < 10; i++) ct.streamSend(0, encodeFrame(FrameType.DATA, body), false);
    step();
    expect(srv.bufferedBytes()).toBe(0);
    expect(srv.counters.requestBodyBytesDropped).toBe(11 * 30000);
    ct.streamSend(0, new Uint8Array(0), true);
    step();
    const res = responseText(ct, 0);
    expect(res).toContain('ok\n');
    expect(srv.counters.requestsReceived).toBe(1);
  });
});
