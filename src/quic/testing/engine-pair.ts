/**
 * Two engine connections joined in memory, for tests of the engine itself
 * (no endpoint, no sockets): packets go from one side's `send` to the other
 * side's `recv` until neither has any left. The server connection is
 * accepted from the client's first packet, as an endpoint would.
 */
import { randomBytes } from 'node:crypto';
import { createDevCa, issueServerCert } from '../../certs/pki.js';
import { engine, type EngineConfig, type EngineConnection, type EngineHostPort } from '../engine.js';

export const PAIR_CLIENT: EngineHostPort = { host: '192.0.2.1', port: 40000 };
export const PAIR_SERVER: EngineHostPort = { host: '192.0.2.2', port: 443 };

/**
 * One packet buffer for every pump: a fresh one per call would be garbage
 * that memory checks reading the native heap (ArrayBuffers live there) count.
 */
const pumpBuf = new Uint8Array(1500);

/**
 * Moves packets both ways until a round moves none (at most `rounds`);
 * accepts `server` with `serverConfig` from the client's first packet when it
 * is null. Returns the server connection (null if the client sent nothing).
 */
export function pumpEngines(
  client: EngineConnection,
  serverConfig: EngineConfig,
  server: EngineConnection | null,
  from: EngineHostPort = PAIR_CLIENT,
  to: EngineHostPort = PAIR_SERVER,
  rounds = 64,
): EngineConnection | null {
  const buf = pumpBuf;
  for (let round = 0; round < rounds; round++) {
    let moved = 0;
    for (let r = client.send(buf); r !== null; r = client.send(buf)) {
      moved++;
      server ??= engine.Connection.accept(randomBytes(16), null, to, from, serverConfig);
      server.recv(buf, { from, to }, 0, r[0]);
    }
    if (server !== null) {
      for (let r = server.send(buf); r !== null; r = server.send(buf)) {
        moved++;
        client.recv(buf, { from: to, to: from }, 0, r[0]);
      }
    }
    if (moved === 0) break;
  }
  return server;
}

/**
 * A client and a server engine connection over a dev CA, handshake done:
 * DATAGRAM queues of `queueLen`, h3 ALPN, 1 MiB connection window, 256 KiB
 * per stream, 10 bidi streams; `configure` adjusts either side's config
 * before it is used. `pump` moves packets both ways until none is left.
 */
export async function connectedEnginePair(
  queueLen: number,
  configure: (cfg: EngineConfig, server: boolean) => void = () => {},
): Promise<{ c: EngineConnection; s: EngineConnection; pump: () => void }> {
  const enc = (t: string): Uint8Array => new TextEncoder().encode(t);
  const ca = await createDevCa();
  const srv = await issueServerCert(ca);
  const cfg = (server: boolean): EngineConfig => {
    const k = server ? engine.Config.withTls(false, null, enc(srv.keyPem), enc(srv.certPem)) : engine.Config.withTls(true, enc(ca.certPem), null, null);
    k.setApplicationProtos(['h3']);
    k.enableDgram(true, queueLen, queueLen);
    k.setInitialMaxData(1 << 20);
    k.setInitialMaxStreamDataBidiLocal(1 << 18);
    k.setInitialMaxStreamDataBidiRemote(1 << 18);
    k.setInitialMaxStreamsBidi(10);
    configure(k, server);
    return k;
  };
  const scfg = cfg(true);
  const c = engine.Connection.connect('localhost', randomBytes(16), PAIR_CLIENT, PAIR_SERVER, cfg(false));
  let s: EngineConnection | null = null;
  const pump = (): void => {
    s = pumpEngines(c, scfg, s);
  };
  pump();
  if (!c.isEstablished() || s === null || !(s as EngineConnection).isEstablished()) throw new Error('engine pair: the handshake did not complete');
  return { c, s, pump };
}
