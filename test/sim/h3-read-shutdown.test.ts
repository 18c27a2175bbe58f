/**
 * The HTTP/3 test double must behave like the QUIC engine after a read-side
 * shutdown (STOP_SENDING, RFC 9000 §3.5): bytes still buffered or arriving
 * later are discarded, and neither the FIN nor a RESET_STREAM is reported
 * for reading. Each scenario runs against the in-memory transport and
 * against the real engine over loopback, with the same assertions.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Harness, sleep, waitFor } from './quic-harness.js';
import { memoryTransportPair } from '../../src/h3/testing/memory-transport.js';
import type { QuicConnection } from '../../src/quic/connection.js';
import { QuicStreamError, type QuicTransport } from '../../src/quic/transport.js';

const STOP_CODE = 0x10c; // H3_REQUEST_CANCELLED
const RESET_CODE = 0x10b; // H3_REQUEST_REJECTED

/** A connected client/server pair and a way to let packets cross. */
interface Pair {
  readonly client: QuicTransport;
  readonly server: QuicTransport;
  /** Let everything in flight arrive (no-op in memory). */
  settle(): Promise<void>;
}

const enc = (s: string) => new TextEncoder().encode(s);
const hasReadable = (t: QuicTransport, id: number) => Array.from(t.readableStreams()).includes(id);

/** What the server sees of stream `id` for reading: readable?, then one streamRecv outcome. */
function readSide(t: QuicTransport, id: number): { readable: boolean; recv: string } {
  const readable = hasReadable(t, id);
  let recv: string;
  try {
    const r = t.streamRecv(id, new Uint8Array(64));
    recv = r === null ? 'null' : `${r[0]} bytes fin=${r[1]}`;
  } catch (e) {
    recv = e instanceof QuicStreamError ? `reset ${e.errorCode}` : `error ${(e as Error).message}`;
  }
  return { readable, recv };
}

/** Client sends `abc` then `def`+FIN; the server reads 3 bytes and shuts its read side. */
async function dataAndFinAfterShutdown(p: Pair, id: number) {
  p.client.streamSend(id, enc('abc'), false);
  p.client.streamSend(id, enc('def'), true);
  await p.settle();
  expect(hasReadable(p.server, id)).toBe(true);
  const r = p.server.streamRecv(id, new Uint8Array(3));
  expect(r).toEqual([3, false]);
  p.server.streamShutdown(id, 'read', STOP_CODE);
  await p.settle();
  return readSide(p.server, id);
}

/** Client sends `abc`; the server reads it and shuts its read side; the client then resets. */
async function resetAfterShutdown(p: Pair, id: number) {
  p.client.streamSend(id, enc('abc'), false);
  await p.settle();
  expect(p.server.streamRecv(id, new Uint8Array(64))).toEqual([3, false]);
  p.server.streamShutdown(id, 'read', STOP_CODE);
  await p.settle();
  // The client learns of STOP_SENDING on its next write (RFC 9000 §3.5).
  let stopped = -1;
  try {
    p.client.streamSend(id, enc('more'), false);
  } catch (e) {
    if (e instanceof QuicStreamError) stopped = e.errorCode;
  }
  p.client.streamShutdown(id, 'write', RESET_CODE);
  await p.settle();
  return { stopped, ...readSide(p.server, id) };
}

const h = new Harness();
afterAll(() => h.cleanup());

async function enginePair(): Promise<Pair> {
  let server: QuicConnection | null = null;
  const { port } = await h.server({ onConnection: (c) => void (server = c) });
  const ep = await h.client();
  const client = ep.connect('127.0.0.1', port, 'localhost');
  await client.whenEstablished();
  await waitFor(() => server !== null, 3000, 'server connection');
  const s = server as unknown as QuicConnection;
  return {
    client,
    server: s,
    async settle() {
      client.flush();
      s.flush();
      await sleep(60);
      client.flush();
      s.flush();
      await sleep(60);
    },
  };
}

function memoryPair(): Pair {
  const [client, server] = memoryTransportPair();
  return { client, server, settle: async () => {} };
}

const expected = {
  afterFin: { readable: false, recv: 'null' },
  afterReset: { stopped: STOP_CODE, readable: false, recv: 'null' },
};

describe('read-side shutdown: the memory double matches the QUIC engine', () => {
  it('memory: data and FIN after shutdown(read) are neither readable nor reported', async () => {
    expect(await dataAndFinAfterShutdown(memoryPair(), 0)).toEqual(expected.afterFin);
  });

  it('memory: a RESET_STREAM after shutdown(read) is not reported', async () => {
    expect(await resetAfterShutdown(memoryPair(), 0)).toEqual(expected.afterReset);
  });

  it('the engine over loopback: the same two scenarios give the same answers', async () => {
    const p = await enginePair();
    expect(await dataAndFinAfterShutdown(p, 0)).toEqual(expected.afterFin);
    expect(await resetAfterShutdown(p, 4)).toEqual(expected.afterReset);
  });
});
