/**
 * Two engine connections joined in memory, for tests of the engine itself
 * (no endpoint, no sockets): packets go from one side's `send` to the other
 * side's `recv` until neither has any left. The server connection is
 * accepted from the client's first packet, as an endpoint would.
 */
import { randomBytes } from 'node:crypto';
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
