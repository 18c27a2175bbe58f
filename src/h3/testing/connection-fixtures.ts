/**
 * Shared fixtures for the H3Connection unit tests: recorders, a client and
 * server over the memory transport, raw peers the test drives byte by byte.
 */

import { H3Connection, type ConnectRequest, type H3ConnectionOptions } from '../connection.js';
import { FrameType, encodeFrame } from '../frame.js';
import { encodeFieldSection, type FieldList } from '../qpack.js';
import { encodeSettings } from '../settings.js';
import { encodeCapsule } from '../capsule.js';
import { H3_DATAGRAM_HEADROOM, type TunnelStream, type TunnelStreamHandler } from '../tunnel-stream.js';
import { memoryTransportPair, pump, type MemoryQuicTransport } from './memory-transport.js';

export const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
export const cat = (...parts: Uint8Array[]) => Uint8Array.from(Buffer.concat(parts));
export const text = (b: Uint8Array) => Buffer.from(b).toString();

/** Records everything a tunnel handler sees (copies, since views die after the call). */
export class Recorder implements TunnelStreamHandler {
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

export class ClientRecorder extends Recorder {
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

export interface ServerSide {
  t: MemoryQuicTransport;
  h: H3Connection;
  requests: ConnectRequest[];
  tunnels: Array<{ tunnel: TunnelStream; rec: Recorder }>;
}

export function server(t: MemoryQuicTransport, opts: H3ConnectionOptions = {}, autoAccept = true): ServerSide {
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

export function setup(opts: { server?: H3ConnectionOptions; client?: H3ConnectionOptions; autoAccept?: boolean; dgramMaxBytes?: number | null } = {}) {
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

export function openTunnel(env: ReturnType<typeof setup>, auth = 'Bearer good') {
  const rec = new ClientRecorder();
  const id = env.cli.connect(
    { protocol: 'connect-ip', authority: 'gw.example:443', path: '/.well-known/masque/ip/*/*/', headers: [['authorization', auth]] },
    rec,
  );
  env.run();
  return { id, rec };
}

/** Payload buffer with headroom, as MASQUE builds it: context ID 0 then the packet. */
export function dgramPayload(body: string): { buf: Uint8Array; off: number; len: number } {
  const b = Buffer.from(body);
  const buf = new Uint8Array(H3_DATAGRAM_HEADROOM + 1 + b.length);
  buf[H3_DATAGRAM_HEADROOM] = 0; // context ID 0 (RFC 9484 §6)
  buf.set(b, H3_DATAGRAM_HEADROOM + 1);
  return { buf, off: H3_DATAGRAM_HEADROOM, len: 1 + b.length };
}

/** A raw client: control stream with our SETTINGS, then whatever the test writes. */
export function rawClient(opts: { server?: H3ConnectionOptions; settings?: Array<[number, number]> } = {}) {
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

export const headers = (fields: FieldList) => encodeFrame(FrameType.HEADERS, encodeFieldSection(fields));
export const connectFields = (auth = 'Bearer good'): FieldList => [
  [':method', 'CONNECT'],
  [':protocol', 'connect-ip'],
  [':scheme', 'https'],
  [':authority', 'gw.example:443'],
  [':path', '/masque/ip'],
  ['capsule-protocol', '?1'],
  ['authorization', auth],
];
export const closeCode = (t: MemoryQuicTransport) => t.closeInfo?.errorCode;

/** Read what the server sent on a stream of a raw client (test helper). */
export function readAll(t: MemoryQuicTransport, id: number): { bytes: Uint8Array; fin: boolean; reset: number | null } {
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

/** One capsule as fresh bytes. */
export function encodeCapsuleBytes(type: number, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + value.length);
  return out.slice(0, encodeCapsule(type, value, out, 0));
}
