import { describe, expect, it } from 'vitest';
import { compilePolicy } from '../config/index.js';
import { parseGatewayConfig } from '../config/load.js';
import { admitConnect } from './admit-connect.js';
import { TokenTable } from './auth.js';
import { parsePrefix } from '../packet/ip-address.js';
import { ConnectIpGatewaySession } from '../masque/connect-ip/gateway-session.js';
import { ip, rig } from '../masque/testing/connect-ip-rig.js';
import { routeConflictVerdict, SessionRegistry, type GwConn, type GwSession } from './session-registry.js';

const cfg = parseGatewayConfig(`tls: {cert: a, key: b, ca: c}
pools: {ipv4: 10.200.0.0/24}
maxSessionsPerIdentity: 4
policy:
  - identity: site-a
    allow: [{prefixes: [10.20.0.0/24]}]
`, 'gw.yaml');
const policy = compilePolicy(cfg.policy);

describe('SessionRegistry: pending CONNECT-UDP opens count against the limits (#12 item 6)', () => {
  // On the old gateway a burst of CONNECT-UDP requests all passed the per-identity check:
  // only open sessions were counted, and none had finished opening yet.
  it('a burst of opens for one identity stops at maxSessionsPerIdentity', () => {
    const reg = new SessionRegistry();
    const admitted: Array<() => void> = [];
    let refused = 0;
    for (let i = 0; i < 50; i++) {
      const a = admitConnect({
        certIdentity: 'site-a', authorization: undefined, protocol: 'connect-udp', tokens: new TokenTable([]), policy,
        sessions: reg.count, sessionsOf: (id) => reg.countOf(id), maxSessions: 1000, maxSessionsPerIdentity: cfg.maxSessionsPerIdentity,
      });
      if (a.ok) admitted.push(reg.reserve(a.identity));
      else {
        expect(a.status).toBe(429);
        refused++;
      }
    }
    expect(admitted).toHaveLength(4);
    expect(refused).toBe(46);
    expect(reg.countOf('site-a')).toBe(4);
    // Releasing (open failed or finished) frees the slot exactly once.
    admitted[0]!();
    admitted[0]!();
    expect(reg.countOf('site-a')).toBe(3);
    expect(reg.count).toBe(3);
  });
});

describe('SessionRegistry: the open sessions, walked once a second (issue #17: 10,000 of them)', () => {
  const conn = () => ({ sessions: new Set<GwSession>() }) as unknown as GwConn;
  const session = (gc: GwConn, identity: string, kind: 'connect-ip' | 'connect-udp') =>
    ({ gc, identity, kind, ip: kind === 'connect-ip' ? {} : null, udp: kind === 'connect-udp' ? {} : null }) as unknown as GwSession;

  it('knows whether an identity still has a CONNECT-IP session without a search; every session once, in the order they opened', () => {
    const reg = new SessionRegistry();
    const g1 = conn();
    const g2 = conn();
    const a1 = session(g1, 'site-a', 'connect-ip');
    const b = session(g2, 'site-b', 'connect-ip');
    const a2 = session(g2, 'site-a', 'connect-ip');
    const u = session(g1, 'site-c', 'connect-udp');
    for (const x of [a1, b, a2, u]) reg.add(x);
    expect([...reg.sessions()]).toEqual([a1, b, a2, u]);
    expect(reg.hasIpSession('site-a')).toBe(true);
    expect(reg.hasIpSession('site-c')).toBe(false); // CONNECT-UDP only
    expect(reg.remove(a1)).toBe(true);
    expect(reg.hasIpSession('site-a')).toBe(true); // a2 is still open
    expect(reg.remove(a1)).toBe(false); // already gone: no count moves
    expect(reg.hasIpSession('site-a')).toBe(true);
    expect(reg.remove(a2)).toBe(true);
    expect(reg.hasIpSession('site-a')).toBe(false);
    expect([...reg.sessions()]).toEqual([b, u]);
    expect(reg.count).toBe(2);
    expect(reg.udpSessions).toBe(1);
    // Removed while walked: the walk goes on with the next one (the tick's review can close sessions).
    const seen: GwSession[] = [];
    for (const x of reg.sessions()) {
      seen.push(x);
      if (x === b) reg.remove(u);
    }
    expect(seen).toEqual([b]);
  });
});

describe('SessionRegistry.trimIdleConnections: the gateway frees idle connections\' DATAGRAM queues (it sends no keep-alives)', () => {
  it('trims a QUIC connection that received nothing since the last tick, once per idle stretch; never one that moved, never HTTP/2', () => {
    const reg = new SessionRegistry();
    const mk = () => {
      const c = { packetsReceived: 0, trims: 0, isClosed: false, handlerError: null, peerHost: 'x', trimIdle() { c.trims++; } };
      return c;
    };
    const busy = mk();
    const idle = mk();
    const h2 = { isClosed: false, handlerError: null, peerHost: 'y' };
    for (const conn of [busy, idle, h2]) reg.conns.add({ conn, sessions: new Set(), rxAtTick: -1, trimmedAtRx: -1 } as unknown as GwConn);
    expect(reg.trimIdleConnections()).toBe(0); // the first tick only notes where each one is
    busy.packetsReceived = 5;
    expect(reg.trimIdleConnections()).toBe(1); // idle did not move: trimmed
    expect([busy.trims, idle.trims]).toEqual([0, 1]);
    busy.packetsReceived = 9;
    expect(reg.trimIdleConnections()).toBe(0); // idle still idle: not trimmed again (one native call per stretch)
    expect(reg.trimIdleConnections()).toBe(1); // busy went quiet: trimmed once
    idle.packetsReceived = 1; // traffic again, then quiet: a new stretch
    reg.trimIdleConnections();
    reg.trimIdleConnections();
    expect([busy.trims, idle.trims]).toEqual([1, 2]);
  });
});

describe('routeConflictVerdict: a restarted agent reclaims its site, nobody else does (RELIABILITY: agent SIGKILL)', () => {
  it('supersedes owners only when all are of the claimant identity', () => {
    expect(routeConflictVerdict('site-a', ['site-a'])).toBe('supersede');
    expect(routeConflictVerdict('site-a', ['site-a', 'site-a'])).toBe('supersede');
    expect(routeConflictVerdict('site-a', ['site-b'])).toBe('refuse');
    expect(routeConflictVerdict('site-a', ['site-a', 'site-b'])).toBe('refuse');
    expect(routeConflictVerdict('site-a', [])).toBe('refuse');
  });

  // Sans-IO: two CONNECT-IP sessions on one route table, as after an agent restart
  // (the old session is still open until its idle timeout). Before the fix the new
  // session's advertisement was refused as route-conflict and never applied again.
  function restart(oldIdentity: string, newIdentity: string) {
    const site = parsePrefix('10.10.0.0/24')!;
    const identityOf = new Map<ConnectIpGatewaySession, string>();
    const old = rig();
    identityOf.set(old.gateway, oldIdentity);
    old.client.advertiseRoutes([site]);
    old.pair.flush();
    const resolveRouteConflict = (_p: unknown, owners: readonly ConnectIpGatewaySession[]): boolean => {
      if (routeConflictVerdict(newIdentity, owners.map((o) => identityOf.get(o)!)) !== 'supersede') return false;
      for (const o of owners) o.close();
      return true;
    };
    // A second stream pair (its rig's own session stays idle); the new session shares the old one's table: one gateway.
    const fresh = rig();
    const table = old.table;
    const g = new ConnectIpGatewaySession(fresh.pair.gateway, {
      scope: { target: { kind: 'any' }, ipProtocol: null },
      routeTable: table,
      onPacket: () => {},
      onEvent: (e) => fresh.gatewayEvents.push(e),
      resolveRouteConflict,
    });
    identityOf.set(g, newIdentity);
    fresh.pair.gateway.attach(g);
    g.start();
    fresh.pair.flush();
    fresh.client.advertiseRoutes([site]);
    fresh.pair.flush();
    return { old, g, table, fresh };
  }

  it('same identity: the new session owns the site at once and the old one is closed', () => {
    const { old, g, table } = restart('site-a', 'site-a');
    expect(table.lookup4(ip('10.10.0.7'), 0)).toBe(g);
    expect(old.gateway.isClosed).toBe(true);
    expect(g.routeConflicts).toBe(0);
    expect(table.size).toBe(1);
  });

  it('another identity: refused as route-conflict, the owner keeps its site', () => {
    const { old, g, table, fresh } = restart('site-a', 'site-b');
    expect(table.lookup4(ip('10.10.0.7'), 0)).toBe(old.gateway);
    expect(old.gateway.isClosed).toBe(false);
    expect(g.routeConflicts).toBe(1);
    expect(fresh.gatewayEvents.some((e) => e.type === 'route-conflict')).toBe(true);
  });
});
