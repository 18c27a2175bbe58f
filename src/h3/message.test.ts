import { describe, expect, it } from 'vitest';
import { isCapsuleProtocol, validateRequest, validateResponse, validateTrailers } from './message.js';
import type { FieldLine } from './qpack.js';

const ext: FieldLine[] = [
  [':method', 'CONNECT'],
  [':protocol', 'connect-udp'],
  [':scheme', 'https'],
  [':authority', 'gw:443'],
  [':path', '/udp/1.2.3.4/53/'],
  ['capsule-protocol', '?1'],
];
const reason = (fields: FieldLine[], enabled = true) => {
  const r = validateRequest(fields, enabled);
  return r.ok ? 'ok' : r.reason;
};

describe('request validation (RFC 9114 §4.3.1, RFC 9220 §3)', () => {
  it('accepts Extended CONNECT, plain CONNECT and GET', () => {
    expect(reason(ext)).toBe('ok');
    expect(reason([[':method', 'CONNECT'], [':authority', 'h:1']])).toBe('ok');
    expect(reason([[':method', 'GET'], [':scheme', 'https'], [':authority', 'h'], [':path', '/healthz']])).toBe('ok');
    const r = validateRequest(ext, true);
    expect(r.ok && r.head.protocol).toBe('connect-udp');
    expect(r.ok && r.head.headers).toEqual([['capsule-protocol', '?1']]);
  });
  it(':protocol needs our ENABLE_CONNECT_PROTOCOL, CONNECT, and :scheme/:path/:authority', () => {
    expect(reason(ext, false)).toMatch(/ENABLE_CONNECT_PROTOCOL/);
    expect(reason(ext.map(([n, v]) => (n === ':method' ? [n, 'GET'] : [n, v])))).toMatch(/non-CONNECT/);
    expect(reason(ext.filter(([n]) => n !== ':scheme'))).toMatch(/needs/);
    expect(reason(ext.filter(([n]) => n !== ':path'))).toMatch(/needs/);
  });
  it('plain CONNECT carries no :scheme/:path (RFC 9114 §4.4)', () => {
    expect(reason([[':method', 'CONNECT'], [':authority', 'h:1'], [':path', '/']])).toMatch(/CONNECT with/);
    expect(reason([[':method', 'CONNECT']])).toMatch(/without :authority/);
  });
  it('§4.2/§4.3 malformed: uppercase names, pseudo after regular, duplicates, unknown pseudo, connection fields, TE, CR/LF', () => {
    const base: FieldLine[] = [[':method', 'GET'], [':scheme', 'https'], [':authority', 'h'], [':path', '/']];
    expect(reason([...base, ['X-Up', '1']])).toMatch(/uppercase/);
    expect(reason([['a', '1'], ...base])).toMatch(/after regular/);
    expect(reason([...base, [':path', '/x']])).toMatch(/after regular|duplicate/);
    expect(reason([[':method', 'GET'], [':method', 'GET']])).toMatch(/duplicate/);
    expect(reason([[':status', '200'], ...base])).toMatch(/not allowed/);
    expect(reason([...base, ['connection', 'close']])).toMatch(/connection-specific/);
    expect(reason([...base, ['te', 'gzip']])).toMatch(/TE/);
    expect(reason([...base, ['te', 'trailers']])).toBe('ok');
    expect(reason([...base, ['x', 'a\r\nb']])).toMatch(/CR/);
    expect(reason([...base, ['x', ' padded']])).toMatch(/whitespace/);
    expect(reason([[':method', 'GET'], [':scheme', 'https'], [':path', '/']])).toMatch(/authority/);
  });
});

describe('response validation (RFC 9114 §4.3.2)', () => {
  it('one three-digit :status; no request pseudo-headers; 101 refused', () => {
    expect(validateResponse([[':status', '200'], ['capsule-protocol', '?1']])).toMatchObject({ ok: true, head: { status: 200 } });
    expect(validateResponse([[':status', '2000']]).ok).toBe(false);
    expect(validateResponse([[':status', '200'], [':status', '200']]).ok).toBe(false);
    expect(validateResponse([[':path', '/']]).ok).toBe(false);
    expect(validateResponse([]).ok).toBe(false);
    expect(validateResponse([[':status', '101']]).ok).toBe(false);
  });
  it('trailers carry no pseudo-headers', () => {
    expect(validateTrailers([['x', '1']])).toBeNull();
    expect(validateTrailers([[':status', '200']])).toMatch(/pseudo/);
  });
  it('RFC 9297 §3.4: Capsule-Protocol is an sf-boolean', () => {
    expect(isCapsuleProtocol([['capsule-protocol', '?1']])).toBe(true);
    expect(isCapsuleProtocol([['capsule-protocol', '?1;a=b']])).toBe(true);
    expect(isCapsuleProtocol([['capsule-protocol', '?0']])).toBe(false);
    expect(isCapsuleProtocol([])).toBe(false);
  });
});
