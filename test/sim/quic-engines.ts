/**
 * Loads src/quic with a chosen QUIC engine (MTUN_QUIC_ENGINE is read when
 * quiche.ts is first imported): a fresh module graph per engine, so tests
 * can run the ngtcp2 engine and the quiche binding side by side.
 */
import { expect, vi } from 'vitest';
import type { QuicEndpoint, QuicEndpointOptions } from '../../src/quic/endpoint.js';

export type Engine = 'quiche' | 'ngtcp2';
export type EndpointCtor = new (o: QuicEndpointOptions) => QuicEndpoint;

const ctors = new Map<Engine, EndpointCtor>();

/** The QuicEndpoint class of a module graph that uses `engine`. */
export async function endpointClass(engine: Engine): Promise<EndpointCtor> {
  const have = ctors.get(engine);
  if (have !== undefined) return have;
  vi.resetModules();
  const old = process.env['MTUN_QUIC_ENGINE'];
  process.env['MTUN_QUIC_ENGINE'] = engine;
  try {
    const q = await import('../../src/quic/quiche.js');
    expect(q.QUIC_ENGINE).toBe(engine);
    const m = await import('../../src/quic/endpoint.js');
    ctors.set(engine, m.QuicEndpoint);
    return m.QuicEndpoint;
  } finally {
    if (old === undefined) delete process.env['MTUN_QUIC_ENGINE'];
    else process.env['MTUN_QUIC_ENGINE'] = old;
  }
}
