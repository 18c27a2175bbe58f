/**
 * A misbehaving MASQUE client for the flood part of the campaign, built from
 * the project's own client code (src/quic, src/h3, src/masque) and
 * authenticated with a development certificate. Runs inside a namespace
 * that reaches the gateway; every mode is bounded by `--seconds`.
 *
 *   node --import bench/reliability/register.mjs bench/reliability/misbehaving-client.ts MODE \
 *     --gateway 192.0.2.2:4433 --certs DIR --identity cluster-c --seconds 10 [--conns 1000] [--rate 100]
 *
 * Modes:
 *   slowloris  `--conns` QUIC connections, each opens one request stream and
 *              sends a HEADERS frame header declaring 16,000 bytes plus 4 of
 *              them, then stalls (RFC 9114 §7.2.2) until the end
 *   routes-big one CONNECT-IP session sends ROUTE_ADVERTISEMENTs of ~1,900
 *              unaligned IPv6 ranges (one ~64 KiB capsule, RFC 9484 §4.7.3)
 *              `--rate` times a second
 *   routes-churn one session alternates advertising its allowed site prefix
 *              and nothing, `--rate` times a second
 *   addresses  one session sends ADDRESS_REQUESTs of 64 IPv4 /32 wishes
 *              (RFC 9484 §4.7.1) `--rate` times a second
 * Prints progress lines and one final JSON line with its counts.
 */
import { readFileSync } from 'node:fs';
import { attachH3 } from '../../src/h3/quic-binding.js';
import { connectIp } from '../../src/masque/h3-glue.js';
import type { ConnectIpClientSession } from '../../src/masque/connect-ip/client-session.js';
import type { IpAddressRange } from '../../src/masque/connect-ip/route-advertisement.js';
import { openNativeUdp } from '../../src/net/native-udp.js';
import { QuicEndpoint } from '../../src/quic/endpoint.js';
import type { QuicConnection } from '../../src/quic/connection.js';

const argv = process.argv.slice(2);
const mode = argv[0] ?? '';
const arg = (n: string, d: string) => { const i = argv.indexOf(`--${n}`); return i > 0 ? argv[i + 1]! : d; };
const [host, port] = arg('gateway', '192.0.2.2:4433').split(':') as [string, string];
const certs = arg('certs', '');
const identity = arg('identity', 'cluster-c');
const seconds = Math.min(600, Number(arg('seconds', '10')));
const conns = Math.min(5000, Number(arg('conns', '1000')));
const rate = Math.min(10_000, Number(arg('rate', '100')));
const site = arg('site', '10.30.0.0/24');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const endpoint = new QuicEndpoint({
  socket: openNativeUdp({ host: '0.0.0.0' }),
  client: { caPem: readFileSync(`${certs}/ca.pem`, 'utf8'), certPem: readFileSync(`${certs}/agent-${identity}.pem`, 'utf8'), keyPem: readFileSync(`${certs}/agent-${identity}-key.pem`, 'utf8') },
  idleTimeoutMs: 60_000,
  keepAliveMs: 5_000,
});
const counts: Record<string, number> = { opened: 0, failed: 0, sent: 0, errors: 0 };
const deadline = Date.now() + seconds * 1000;

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => { t = setTimeout(() => rej(new Error(`${what}: timeout`)), ms); })]);
  } finally {
    clearTimeout(t);
  }
}

async function slowloris(): Promise<void> {
  const open: QuicConnection[] = [];
  // HEADERS (type 0x01), length 16000 as a 2-byte varint (RFC 9000 §16), then 4 of the 16000 bytes.
  const partial = Uint8Array.from([0x01, 0x40 | (16000 >> 8), 16000 & 0xff, 0x00, 0x00, 0xd1, 0xd7]);
  const one = async () => {
    const conn = endpoint.connect(host, Number(port), 'gateway');
    attachH3(conn);
    await withTimeout(conn.whenEstablished(), 10_000, 'handshake');
    conn.streamSend(0, partial, false);
    conn.flush();
    open.push(conn);
    counts.opened++;
  };
  for (let i = 0; i < conns && Date.now() < deadline; i += 50) {
    const before = counts.opened;
    const batch = Array.from({ length: Math.min(50, conns - i) }, () => one().catch(() => { counts.failed++; }));
    await Promise.all(batch);
    if (i % 200 === 0) console.log(`slowloris: ${counts.opened} open, ${counts.failed} failed`);
    // A whole batch refused: the gateway's per-IP cap holds; more attempts only wait out handshake timeouts.
    if (counts.opened === before) {
      counts.notTried = conns - i - batch.length;
      break;
    }
  }
  console.log(`slowloris: ${counts.opened} open, ${counts.failed} failed; holding`);
  counts.stillOpenAtEnd = 0;
  while (Date.now() < deadline) await sleep(200);
  counts.stillOpenAtEnd = open.filter((c) => !c.isClosed).length;
}

async function session(): Promise<ConnectIpClientSession> {
  const conn = endpoint.connect(host, Number(port), 'gateway');
  const h3 = attachH3(conn);
  await withTimeout(conn.whenEstablished(), 10_000, 'handshake');
  const s = await withTimeout(connectIp(h3, `gateway:${port}`, { onPacket: () => undefined, onEvent: (e) => { if (e.type === 'addresses-assigned') counts.assigned = e.addresses.length; } }), 10_000, 'CONNECT-IP');
  (s as unknown as { conn: QuicConnection }).conn = conn;
  return s;
}

/** ~1,900 IPv6 ranges k:0::1 – k:ffff:…:fffe (k = 1..1900): ordered, disjoint, each ≈ 2×111 prefixes once expanded. */
function bigAdvertisement(): IpAddressRange[] {
  const out: IpAddressRange[] = [];
  for (let k = 1; k <= 1900; k++) {
    const start = new Uint8Array(16);
    const end = new Uint8Array(16).fill(0xff);
    start[0] = k >> 8; start[1] = k & 0xff; start[15] = 1;
    end[0] = k >> 8; end[1] = k & 0xff; end[15] = 0xfe;
    out.push({ version: 6, start, end, ipProtocol: 0 });
  }
  return out;
}

async function paced(action: (i: number) => void): Promise<void> {
  const t0 = Date.now();
  for (let i = 0; Date.now() < deadline; i++) {
    try { action(i); counts.sent++; } catch (e) { counts.errors++; if (counts.errors === 1) console.log(`error: ${(e as Error).message}`); }
    const next = t0 + ((i + 1) * 1000) / rate;
    const wait = next - Date.now();
    if (wait > 0) await sleep(wait);
    else if (i % 50 === 0) await sleep(0); // let the endpoint send
  }
}

async function main(): Promise<void> {
  if (mode === 'slowloris') {
    await slowloris();
  } else {
    const s = await session();
    counts.opened = 1;
    const conn = (s as unknown as { conn: QuicConnection }).conn;
    const [a, len] = site.split('/') as [string, string];
    const sitePrefix = { version: 4 as const, address: Uint8Array.from(a.split('.').map(Number)), prefixLength: Number(len) };
    const big = bigAdvertisement();
    const act: Record<string, (i: number) => void> = {
      'routes-big': () => s.advertiseRoutes(big),
      'routes-churn': (i) => s.advertiseRoutes(i % 2 === 0 ? [sitePrefix] : []),
      addresses: () => { s.requestAddresses(Array.from({ length: 64 }, () => ({ version: 4 as const }))); },
    };
    const f = act[mode];
    if (!f) throw new Error(`misbehaving-client: unknown mode ${mode}`);
    await paced((i) => { f(i); conn.flush(); });
    counts.sessionClosed = conn.isClosed ? 1 : 0;
  }
  console.log(JSON.stringify({ mode, ...counts }));
  endpoint.close();
  process.exit(0);
}

main().catch((e: unknown) => {
  console.log(JSON.stringify({ mode, fatal: (e as Error).message, ...counts }));
  process.exit(1);
});
