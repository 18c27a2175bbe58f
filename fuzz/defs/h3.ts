/**
 * HTTP/3-layer targets: QUIC varints, frame sequences, SETTINGS, QPACK field
 * sections with message validation, capsule streams (one-shot parse against
 * the incremental reassembler) and HTTP Datagram prefixes.
 */
import {
  parseVarint, parseVarintBig, varintLengthAt, encodeVarint, VARINT_NEED_MORE,
  parseFrameHeader, encodeFrame, FrameType, isGrease, isReservedH2FrameType, type FrameHeader,
  parseSettings, encodeSettings, SettingId, decodeFieldSection, encodeFieldSection, huffmanDecode,
  validateRequest, validateResponse, validateTrailers, isCapsuleProtocol,
  parseCapsule, encodeCapsule, capsuleHeaderLength, newCapsuleInfo, CapsuleReassembler, parseQuarterStreamId, h3ErrorName,
  parseAddressAssign, encodeAddressAssign, addressAssignLength, parseAddressRequest, encodeAddressRequest, addressRequestLength,
  parseRouteAdvertisement, encodeRouteAdvertisement, routeAdvertisementLength,
  CAPSULE_ADDRESS_ASSIGN, CAPSULE_ADDRESS_REQUEST, CAPSULE_ROUTE_ADVERTISEMENT, contextPayloadOffset, craftUdp,
} from '../targets.js';
import { InvariantError, concat, enc, ip, never, norm, withEncoder, type FuzzTarget } from './common.js';

// ---- QUIC varints ----

const varintOut = new Uint8Array(8);

export const varint: FuzzTarget = {
  name: 'varint',
  covers: 'quic/varint parseVarint, parseVarintBig, varintLengthAt, encodeVarint (parse at every offset; exact against the bigint parse; re-encode round trip)',
  maxLen: 64,
  seeds: () => [[0x25], [0x7b, 0xbd], [0x9d, 0x7f, 0x3e, 0x7d], [0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c], [0x40, 0x25], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]].map((a) => Uint8Array.from(a)),
  typed: never,
  run(b, ctx) {
    let ok = 0;
    for (let off = 0; off < b.length; off++) {
      const v = parseVarint(b, off, b.length);
      const big = parseVarintBig(b, off, b.length);
      if (v === VARINT_NEED_MORE) {
        if (big !== null) throw new InvariantError(`parseVarint needs more at ${off} but parseVarintBig read ${big}`);
        continue;
      }
      if (big === null || Number(big) !== v) throw new InvariantError(`parseVarint ${v} != parseVarintBig ${big} at ${off}`);
      ok++;
      if (v <= Number.MAX_SAFE_INTEGER) {
        const n = encodeVarint(v, varintOut, 0);
        if (n > varintLengthAt(b, off) || parseVarint(varintOut, 0, n) !== v) throw new InvariantError(`round trip of ${v} failed`);
      }
    }
    ctx.note(ok > 0 ? 'ok' : 'need_more');
  },
};

// ---- HTTP/3 frames, SETTINGS, QPACK ----

const fh: FrameHeader = { type: 0, length: 0, headerLength: 0 };

const CONNECT_IP_FIELDS: [string, string][] = [
  [':method', 'CONNECT'], [':protocol', 'connect-ip'], [':scheme', 'https'], [':authority', 'gw.example:443'],
  [':path', '/.well-known/masque/ip/*/*/'], ['capsule-protocol', '?1'], ['authorization', 'Bearer abcdefghijklmnop'],
];
const RESPONSE_FIELDS: [string, string][] = [[':status', '200'], ['capsule-protocol', '?1'], ['proxy-status', 'mtun; error=destination_ip_prohibited']];
const CONNECT_UDP_FIELDS: [string, string][] = [
  [':method', 'CONNECT'], [':protocol', 'connect-udp'], [':scheme', 'https'], [':authority', 'gw:443'],
  [':path', '/.well-known/masque/udp/192.0.2.7/53/'], ['capsule-protocol', '?1'], ['user-agent', 'mtun/0.1 Ω'],
];

function settingsSeeds(): Uint8Array[] {
  return [
    encodeSettings([[SettingId.QPACK_MAX_TABLE_CAPACITY, 0], [SettingId.ENABLE_CONNECT_PROTOCOL, 1], [SettingId.H3_DATAGRAM, 1], [SettingId.MAX_FIELD_SECTION_SIZE, 16384], [0x21, 7]]),
    encodeSettings([[SettingId.QPACK_BLOCKED_STREAMS, 0], [0x1f * 3 + 0x21, 2 ** 40]]),
    encodeSettings([]),
  ];
}

function fieldSeeds(): Uint8Array[] {
  return [CONNECT_IP_FIELDS, RESPONSE_FIELDS, CONNECT_UDP_FIELDS, [[':status', '403'], ['x-long', 'a'.repeat(300)]] as [string, string][]].map((f) => encodeFieldSection(f));
}

export const h3Frame: FuzzTarget = {
  name: 'h3-frame',
  covers: 'h3/frame parseFrameHeader over a frame sequence, isGrease, isReservedH2FrameType; SETTINGS and HEADERS payloads through parseSettings / decodeFieldSection',
  maxLen: 1024,
  seeds: () => [
    concat([encodeFrame(FrameType.SETTINGS, settingsSeeds()[0]!), encodeFrame(FrameType.HEADERS, fieldSeeds()[0]!), encodeFrame(FrameType.DATA, enc('\x00\x02\x00'))]),
    concat([encodeFrame(FrameType.HEADERS, fieldSeeds()[1]!), encodeFrame(0x21, enc('grease')), encodeFrame(FrameType.GOAWAY, Uint8Array.of(4))]),
    encodeFrame(FrameType.MAX_PUSH_ID, Uint8Array.of(0x40, 0x10)),
  ],
  dict: [[0x04], [0x01], [0x00], [0x07], [0x0d], [0x02], [0x21], [0x40, 0x21]].map((a) => Uint8Array.from(a)),
  typed: never,
  run(b, ctx) {
    let p = 0;
    let frames = 0;
    while (p < b.length && parseFrameHeader(b, p, b.length, fh)) {
      if (fh.headerLength < 2) throw new InvariantError(`frame header of ${fh.headerLength} bytes`);
      const start = p + fh.headerLength;
      if (fh.length > b.length - start) break;
      if (isReservedH2FrameType(fh.type)) ctx.note('h2_frame_type');
      else if (isGrease(fh.type)) ctx.note('grease_frame');
      else if (fh.type === FrameType.SETTINGS) {
        const s = parseSettings(b, start, start + fh.length);
        ctx.note(s.ok ? 'ok:settings' : `settings:${h3ErrorName(s.code)}`);
      } else if (fh.type === FrameType.HEADERS) {
        const d = decodeFieldSection(b, start, start + fh.length, 16384);
        ctx.note(d.ok ? 'ok:headers' : `headers:${h3ErrorName(d.code)}`);
      }
      p = start + fh.length;
      frames++;
    }
    ctx.note(p === b.length ? (frames > 0 ? 'ok:complete' : 'empty') : 'truncated_frame');
  },
};

export const settings: FuzzTarget = {
  name: 'settings',
  covers: 'h3/settings parseSettings (RFC 9114 §7.2.4, RFC 9297 §2.1.1)',
  maxLen: 256,
  seeds: settingsSeeds,
  dict: [[0x01], [0x06], [0x07], [0x08], [0x33], [0x02], [0x21]].map((a) => Uint8Array.from(a)),
  typed: never,
  run(b, ctx) {
    const s = parseSettings(b, 0, b.length);
    ctx.note(s.ok ? 'ok' : `${h3ErrorName(s.code)}: ${s.reason}`);
  },
};

const huffOut = new Uint8Array(4096);

export const qpack: FuzzTarget = {
  name: 'qpack',
  covers: 'h3/qpack decodeFieldSection (prefix integers, static table, literals, Huffman), h3/huffman huffmanDecode, h3/message validateRequest/validateResponse/validateTrailers/isCapsuleProtocol',
  maxLen: 1024,
  seeds: fieldSeeds,
  dict: [[0x00, 0x00], [0xc0 | 15], [0xd1], [0x5f, 0x1d], [0x27], [0x2f], [0xff, 0xff, 0xff, 0xff, 0x0f], [0x3f]].map((a) => Uint8Array.from(a)),
  typed: never,
  run(b, ctx) {
    const d = decodeFieldSection(b, 0, b.length, 4096);
    if (!d.ok) {
      ctx.note(`${h3ErrorName(d.code)}: ${d.reason}`);
    } else {
      if (d.size > 4096) throw new InvariantError(`decoded size ${d.size} above the limit`);
      const rq = validateRequest(d.fields, true);
      const rs = validateResponse(d.fields);
      validateTrailers(d.fields);
      isCapsuleProtocol(d.fields);
      ctx.note(rq.ok ? 'ok:request' : rs.ok ? 'ok:response' : `ok:fields; invalid request: ${rq.reason}`);
    }
    const h = huffmanDecode(b, 0, Math.min(b.length, 800), huffOut, 0);
    if (h > huffOut.length) throw new InvariantError(`huffmanDecode wrote to ${h}`);
  },
};

// ---- capsules and HTTP datagrams ----

/** A capsule stream of ADDRESS_ASSIGN, ADDRESS_REQUEST, ROUTE_ADVERTISEMENT, DATAGRAM and a grease capsule, from the encoders. */
export function capsuleStreamSeeds(): Uint8Array[] {
  const aa = { addresses: [{ requestId: 1, version: 4 as const, address: ip('10.89.0.2'), prefixLength: 32 }, { requestId: 0, version: 6 as const, address: ip('fd00:89::'), prefixLength: 64 }] };
  const ar = { addresses: [{ requestId: 1, version: 4 as const, address: new Uint8Array(4), prefixLength: 32 }, { requestId: 2, version: 6 as const, address: new Uint8Array(16), prefixLength: 128 }] };
  const ra = { ranges: [{ version: 4 as const, start: ip('10.1.0.0'), end: ip('10.1.255.255'), ipProtocol: 0 }, { version: 6 as const, start: ip('fd01::'), end: ip('fd01::ffff'), ipProtocol: 6 }] };
  const values: [number, Uint8Array][] = [
    [CAPSULE_ADDRESS_ASSIGN, withEncoder(addressAssignLength(aa), (o) => encodeAddressAssign(aa, o, 0))],
    [CAPSULE_ADDRESS_REQUEST, withEncoder(addressRequestLength(ar), (o) => encodeAddressRequest(ar, o, 0))],
    [CAPSULE_ROUTE_ADVERTISEMENT, withEncoder(routeAdvertisementLength(ra), (o) => encodeRouteAdvertisement(ra, o, 0))],
    [0, Uint8Array.from([0, ...craftUdp({ src: '10.89.0.2', dst: '10.1.2.3', srcPort: 9, dstPort: 9 })])],
    [0x1f * 5 + 0x21, enc('grease')],
  ];
  const caps = values.map(([t, v]) => withEncoder(capsuleHeaderLength(t, v.length) + v.length, (o) => encodeCapsule(t, v, o, 0)));
  return [concat(caps), concat([caps[1]!, caps[2]!]), caps[0]!, caps[3]!, concat([caps[2]!, caps[4]!])];
}

const cinfo = newCapsuleInfo();
const MAX_CAPSULE_VALUE = 512;

export const capsule: FuzzTarget = {
  name: 'capsule',
  covers: 'h3/capsule parseCapsule over a capsule stream, and CapsuleReassembler fed the same bytes in random DATA-frame splits (must deliver the same capsules)',
  maxLen: 2048,
  seeds: capsuleStreamSeeds,
  typed: never,
  run(b, ctx) {
    const whole: string[] = [];
    let p = 0;
    for (;;) {
      const n = parseCapsule(b, p, b.length - p, cinfo);
      if (n < 0) break;
      if (n < 2 || cinfo.valueOffset + cinfo.valueLength !== p + n) throw new InvariantError(`capsule of ${n} bytes is inconsistent`);
      whole.push(`${cinfo.type}:${cinfo.valueLength}`);
      p += n;
    }
    const got: string[] = [];
    let tooBig = false;
    const re = new CapsuleReassembler(MAX_CAPSULE_VALUE, (t, buf, off, len) => {
      if (off < 0 || off + len > buf.length) throw new InvariantError('capsule value outside its buffer');
      got.push(`${t}:${len}`);
    });
    let q = 0;
    let err = 0;
    while (q < b.length && !err) {
      const step = 1 + ctx.rng.below(Math.min(b.length - q, ctx.rng.oneIn(2) ? 4 : 600));
      err = re.push(b, q, q + step);
      q += step;
    }
    if (err) tooBig = true;
    const fin = err || re.finish();
    if (!tooBig) {
      if (got.join() !== whole.join()) throw new InvariantError(`reassembler delivered [${got}] but one-shot parse gave [${whole}]`);
      if ((fin === 0) !== (p === b.length)) throw new InvariantError(`finish()=${fin} but one-shot parse stopped at ${p}/${b.length}`);
    } else if (whole.slice(0, got.length).join() !== got.join()) {
      throw new InvariantError('reassembler delivered capsules the one-shot parse did not');
    }
    ctx.note(fin === 0 ? (whole.length ? 'ok' : 'empty') : h3ErrorName(fin));
  },
};

export const httpDatagram: FuzzTarget = {
  name: 'http-datagram',
  covers: 'h3/datagram parseQuarterStreamId (RFC 9297 §2.1), masque/connect-ip/datagram contextPayloadOffset (RFC 9484 §6)',
  maxLen: 64,
  seeds: () => [Uint8Array.of(0x01, 0x00, 0x45), Uint8Array.of(0x40, 0x04, 0x40, 0x00, 0x60), Uint8Array.of(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00)],
  typed: never,
  run(b, ctx) {
    const q = parseQuarterStreamId(b, 0, b.length);
    if (q < 0) {
      ctx.note(q === -1 ? 'qsid_too_short' : 'qsid_too_large');
      return;
    }
    const off = varintLengthAt(b, 0);
    const c = contextPayloadOffset(b, off, b.length - off);
    if (c > b.length) throw new InvariantError(`context payload offset ${c} past ${b.length}`);
    ctx.note(c >= 0 ? 'ok' : c === -1 ? 'context_malformed' : 'context_unknown');
  },
};

// ---- MASQUE capsules ----

export const masqueCapsules: FuzzTarget = {
  name: 'masque-capsules',
  covers: 'masque/connect-ip parseAddressAssign, parseAddressRequest, parseRouteAdvertisement (RFC 9484 §4.7), each with parse∘encode∘parse identity',
  maxLen: 1024,
  seeds: () => capsuleStreamSeeds().map((s) => {
    parseCapsule(s, 0, s.length, cinfo);
    return s.slice(cinfo.valueOffset, cinfo.valueOffset + cinfo.valueLength);
  }).slice(0, 3),
  dict: [[4], [6], [0x00, 0x00, 0x00, 0x00], [0xff, 0xff, 0xff, 0xff], [32], [128], [0x40, 0x00]].map((a) => Uint8Array.from(a)),
  typed: never,
  run(b, ctx) {
    const aa = parseAddressAssign(b, 0, b.length);
    ctx.note(aa.ok ? 'ok:assign' : norm(aa.error));
    if (aa.ok) roundTrip('ADDRESS_ASSIGN', aa.value, addressAssignLength(aa.value), (o) => encodeAddressAssign(aa.value, o, 0), (x) => parseAddressAssign(x, 0, x.length));
    const ar = parseAddressRequest(b, 0, b.length);
    ctx.note(ar.ok ? 'ok:request' : norm(ar.error));
    if (ar.ok) roundTrip('ADDRESS_REQUEST', ar.value, addressRequestLength(ar.value), (o) => encodeAddressRequest(ar.value, o, 0), (x) => parseAddressRequest(x, 0, x.length));
    const ra = parseRouteAdvertisement(b, 0, b.length);
    ctx.note(ra.ok ? 'ok:routes' : norm(ra.error));
    if (ra.ok) roundTrip('ROUTE_ADVERTISEMENT', ra.value, routeAdvertisementLength(ra.value), (o) => encodeRouteAdvertisement(ra.value, o, 0), (x) => parseRouteAdvertisement(x, 0, x.length));
  },
};

function roundTrip<T>(what: string, v: T, len: number, encode: (out: Uint8Array) => number, parse: (b: Uint8Array) => { ok: true; value: T } | { ok: false; error: string }): void {
  const out = new Uint8Array(len);
  if (encode(out) !== len) throw new InvariantError(`${what}: encoder wrote other than its length`);
  const again = parse(out);
  if (!again.ok) throw new InvariantError(`${what}: re-encoding does not parse: ${again.error}`);
  if (JSON.stringify(again.value, bytesAsArray) !== JSON.stringify(v, bytesAsArray)) throw new InvariantError(`${what}: parse∘encode∘parse differs`);
}
const bytesAsArray = (_k: string, v: unknown) => (v instanceof Uint8Array ? Array.from(v) : v);

