/**
 * Per-packet cost of the CONNECT-IP session code alone (a null TunnelStream
 * that accepts everything): `npm run build && node dist/masque/testing/session-bench.js`.
 * Reports ns/packet for each direction; nothing here runs in tests.
 */
import type { TunnelStream } from '../../h3/tunnel-stream.js';
import { craftUdp } from '../../packet/craft.js';
import { AddressPool } from '../address-pool.js';
import { ConnectIpClientSession } from '../connect-ip/client-session.js';
import { ConnectIpGatewaySession } from '../connect-ip/gateway-session.js';
import { RouteTable } from '../route-table.js';

class NullStream implements TunnelStream {
  readonly streamId = 0;
  readonly capsules: [number, Uint8Array][] = [];
  sendCapsule(type: number, value: Uint8Array): boolean {
    this.capsules.push([type, Uint8Array.from(value)]);
    return true;
  }
  sendDatagram(): boolean {
    return true;
  }
  maxDatagramPayload(): number {
    return 1400;
  }
  close(): void {}
  abort(): void {}
}

/** Runs each path `n` times after a warm-up; returns ns/packet by path. */
export function benchSessions(n = 2_000_000): Record<string, number> {
  const cs = new NullStream();
  const gs = new NullStream();
  let delivered = 0;
  const client = new ConnectIpClientSession(cs, { onPacket: () => delivered++ });
  const table = new RouteTable<ConnectIpGatewaySession>();
  const gw = new ConnectIpGatewaySession(gs, {
    scope: { target: { kind: 'any' }, ipProtocol: null },
    pools: { v4: new AddressPool({ prefix: '10.89.0.0/24' }) },
    routeTable: table,
    onPacket: () => delivered++,
  });
  gw.start();
  client.requestAddresses([{ version: 4 }]);
  const [t, v] = cs.capsules.at(-1)!;
  gw.onCapsule(t, v);
  const addr = gw.grantedAddresses()[0]!.address.join('.');
  const pkt = craftUdp({ src: addr, dst: '192.0.2.7', srcPort: 1, dstPort: 2, payload: new Uint8Array(1200) });
  const buf = new Uint8Array(16 + pkt.length);
  buf.set(pkt, 16);
  const dg = new Uint8Array(17 + pkt.length);
  dg.set(pkt, 17);
  const back = craftUdp({ src: '192.0.2.7', dst: addr, srcPort: 2, dstPort: 1, payload: new Uint8Array(1200) });
  const bb = new Uint8Array(16 + back.length);
  bb.set(back, 16);
  const run = (fn: () => void): number => {
    for (let i = 0; i < 100_000; i++) fn();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    return Number(process.hrtime.bigint() - t0) / n;
  };
  const out = {
    'agent sendPacket (TUN → datagram)': run(() => client.sendPacket(buf, 16, pkt.length)),
    'gateway onDatagram (parse, source/scope/link-local checks, TTL)': run(() => {
      dg[17 + 8] = 64; // keep the TTL from running out (checksum not re-verified by the session)
      gw.onDatagram(dg, 16, 1 + pkt.length);
    }),
    'gateway LPM lookup + sendToClient (return path)': run(() => table.lookupDestination(bb, 16, back.length)!.sendToClient(bb, 16, back.length)),
    'agent onDatagram (datagram → TUN)': run(() => client.onDatagram(dg, 16, 1 + pkt.length)),
  };
  if (gw.counters.dropsByName()['malformed_ip'] || delivered === 0) throw new Error('masque bench: packets were dropped');
  return out;
}

if (process.argv[1]?.endsWith('session-bench.js')) {
  for (const [k, ns] of Object.entries(benchSessions())) console.log(`${k}: ${ns.toFixed(0)} ns/packet`);
}
