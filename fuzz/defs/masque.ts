/**
 * MASQUE request-side targets: URI templates (compile, match, expand),
 * CONNECT-IP / CONNECT-UDP request admission from decoded pseudo-headers,
 * and whole CONNECT-IP sessions (gateway and client end) fed a capsule
 * stream and datagrams through the in-memory stream pair.
 */
import {
  TemplateMatcher, expandTemplate, pctDecode, splitUrl, CONNECT_IP_DEFAULT_TEMPLATE, CONNECT_UDP_DEFAULT_TEMPLATE,
  checkConnectIpRequest, buildConnectIpRequest, parseConnectIpTarget, parseIpProto, type ExtendedConnectRequest,
  checkConnectUdpRequest, buildConnectUdpRequest, parseUdpTarget, parsePrefix,
  ConnectIpGatewaySession, ConnectIpClientSession, AddressPool, RouteTable, TunnelStreamPair, CapsuleReassembler, h3ErrorName,
} from '../targets.js';
import { capsuleStreamSeeds } from './h3.js';
import { enc, ip, latin1, norm, tokens, utf8, type FuzzTarget } from './common.js';

/** Typed error of the URI-template code: an Error whose message starts `masque: `. */
const masqueError = (e: unknown): boolean => e instanceof Error && e.constructor === Error && e.message.startsWith('masque: ');

const URI_DICT = tokens(['{', '}', '{+', '{/', '{?', '{&', '{;', '{.', '{#', ',', '*', '%', '%2F', '%3A', '%zz', '%C3%A9', '%FF', '/', '?', '&', '=', ':', '[', ']', '::1', 'ß', '\u{1F600}', '.well-known/masque/']);

export const uriTemplate: FuzzTarget = {
  name: 'uri-template',
  covers: 'masque/uri-template TemplateMatcher (compile + match), expandTemplate, pctDecode, splitUrl; input is "template\\npath" as UTF-8',
  maxLen: 512,
  seeds: () => [
    enc(`${CONNECT_IP_DEFAULT_TEMPLATE}\n/.well-known/masque/ip/10.0.0.0%2F8/6/`),
    enc(`${CONNECT_UDP_DEFAULT_TEMPLATE}\n/.well-known/masque/udp/2001%3Adb8%3A%3A1/443/`),
    enc('https://{gateway}/masque{?target_host,target_port}\n/masque?target_host=example.com&target_port=53'),
    enc('https://{gateway}/m/{+target}{/ipproto}{;a,b}{.c}{#d}{&e}\n/m/x/y/17;a=1;b=2.c#d&e=%C3%A9'),
  ],
  dict: URI_DICT,
  typed: masqueError,
  run(b, ctx) {
    const text = utf8(b);
    const nl = text.indexOf('\n');
    const template = nl < 0 ? text : text.slice(0, nl);
    const path = nl < 0 ? '/' : text.slice(nl + 1);
    pctDecode(path);
    try {
      splitUrl(template);
    } catch (e) {
      if (!masqueError(e)) throw e;
    }
    const m = new TemplateMatcher(template);
    const vars = m.match(path);
    expandTemplate(template, vars ?? { gateway: 'gw:443', target: '*', ipproto: '*' });
    ctx.note(vars ? 'ok:match' : 'ok:no_match');
  },
};

const ipMatcher = new TemplateMatcher(CONNECT_IP_DEFAULT_TEMPLATE);
const udpMatcher = new TemplateMatcher(CONNECT_UDP_DEFAULT_TEMPLATE);
const FIELDS = ['method', 'protocol', 'scheme', 'authority', 'path'] as const;

/** A request as lines: method, :protocol, :scheme, :authority, :path, capsule-protocol (1/0/absent). */
function requestText(r: ExtendedConnectRequest): Uint8Array {
  return enc([...FIELDS.map((f) => r[f] ?? ''), r.capsuleProtocol === undefined ? '' : r.capsuleProtocol ? '1' : '0'].join('\n'));
}

export const masqueRequest: FuzzTarget = {
  name: 'masque-request',
  covers: 'masque/connect-ip/request checkConnectIpRequest, parseConnectIpTarget, parseIpProto; masque/connect-udp/request checkConnectUdpRequest, parseUdpTarget (default templates); input is the pseudo-headers, one per line, as bytes (latin1)',
  maxLen: 512,
  seeds: () => [
    requestText(buildConnectIpRequest('gw.example:443')),
    requestText(buildConnectIpRequest('gw:443', { target: { kind: 'prefix', prefix: parsePrefix('10.20.0.0/24')! }, ipProtocol: 6 })),
    requestText(buildConnectIpRequest('[::1]:443', { target: { kind: 'prefix', prefix: parsePrefix('fd00:b::/64')! }, ipProtocol: 17 })),
    requestText(buildConnectIpRequest('gw:443', { target: { kind: 'hostname', name: 'db.internal' }, ipProtocol: null })),
    requestText(buildConnectUdpRequest('gw:443', '192.0.2.7', 53)),
    requestText(buildConnectUdpRequest('gw:443', '2001:db8::1', 443)),
    requestText(buildConnectUdpRequest('gw:443', 'resolver.example', 853)),
  ],
  dict: tokens(['CONNECT', 'connect-ip', 'connect-udp', '%2F', '%3A', '%25', '/*/', '/0/', '/255/', '/65535/', '/128', '/33', '::ffff:', '.well-known/masque/', '\n', '*']),
  typed: () => false,
  run(b, ctx) {
    const lines = latin1(b).split('\n');
    const cp = lines[5];
    const req: ExtendedConnectRequest = {
      method: lines[0] ?? '', protocol: lines[1], scheme: lines[2], authority: lines[3], path: lines[4],
      capsuleProtocol: cp === '1' ? true : cp === '0' ? false : undefined,
    };
    const a = checkConnectIpRequest(req, { matcher: ipMatcher });
    ctx.note(a.ok ? 'ok:connect-ip' : `ip ${a.status}: ${norm(a.reason)}`);
    const u = checkConnectUdpRequest(req, { matcher: udpMatcher });
    ctx.note(u.ok ? 'ok:connect-udp' : `udp ${u.status}: ${norm(u.reason)}`);
    for (const l of lines.slice(0, 4)) {
      parseConnectIpTarget(l);
      parseIpProto(l);
      parseUdpTarget(l, lines[4]);
    }
  },
};

// ---- whole CONNECT-IP sessions ----

const HEADROOM = 16;
const dgram = new Uint8Array(HEADROOM + 2048);

/** One fresh gateway+client pair per input (sessions end on the first malformed capsule). */
function sessionRig() {
  const pair = new TunnelStreamPair({ maxDatagramPayload: 1400 });
  const sink = () => undefined;
  const client = new ConnectIpClientSession(pair.client, { onPacket: sink, nowMs: () => 0 });
  const gateway = new ConnectIpGatewaySession(pair.gateway, {
    scope: { target: { kind: 'any' }, ipProtocol: null },
    pools: { v4: new AddressPool({ prefix: '10.89.0.0/24', reserved: ['10.89.0.1'], minPrefixLength: 24 }), v6: new AddressPool({ prefix: 'fd00:89::/48', reserved: ['fd00:89::1'] }) },
    routeTable: new RouteTable<ConnectIpGatewaySession>(),
    reporterV4: ip('10.89.0.1'),
    reporterV6: ip('fd00:89::1'),
    onPacket: sink,
    nowMs: () => 0,
  });
  pair.client.attach(client);
  pair.gateway.attach(gateway);
  gateway.start();
  pair.flush(10_000);
  return { pair, client, gateway };
}

export const connectIpSession: FuzzTarget = {
  name: 'connect-ip-session',
  covers: 'masque/connect-ip ConnectIpGatewaySession and ConnectIpClientSession: onCapsule for every capsule of the input (reassembled as HTTP/3 would), then onDatagram with the input as a datagram payload; replies flushed through TunnelStreamPair',
  maxLen: 1200,
  seeds: () => capsuleStreamSeeds(),
  dict: tokens([[0, 0x40, 0], [1], [2], [3], [4], [6], [0x45], [0x60], [0xfe, 0x80]]),
  typed: () => false,
  run(b, ctx) {
    const { pair, client, gateway } = sessionRig();
    for (const side of [gateway, client]) {
      const re = new CapsuleReassembler(65_535, (t, buf, off, len) => side.onCapsule(t, buf.subarray(off, off + len)));
      const err = re.push(b, 0, b.length) || re.finish();
      if (err) ctx.note(`reassembly: ${h3ErrorName(err)}`);
      dgram.set(b.subarray(0, Math.min(b.length, dgram.length - HEADROOM)), HEADROOM);
      side.onDatagram(dgram, HEADROOM, Math.min(b.length, dgram.length - HEADROOM));
    }
    pair.flush(10_000);
    const ga = pair.gateway.abortedWith;
    const ca = pair.client.abortedWith;
    ctx.note(ga === null ? 'ok:gateway' : `gateway aborted ${h3ErrorName(ga)}`);
    ctx.note(ca === null ? 'ok:client' : `client aborted ${h3ErrorName(ca)}`);
    gateway.close();
    client.close();
  },
};
