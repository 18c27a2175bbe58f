/**
 * The addon never crashes the process on bad arguments: every export, called
 * with random junk (fds kept invalid so no real descriptor is touched), either
 * returns or throws an Error.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadNative, NATIVE_ABI, nativeAvailable, type NativeBinding } from './addon.js';

const available = nativeAvailable();
if (!available) console.warn('SKIP src/native/addon.test.ts: native addon not built (npm rebuild)');

// An fd number that is never open here (RLIMIT_NOFILE is far below it).
const BAD_FD = 1 << 29;

const junk = fc.oneof(
  fc.anything(),
  fc.constant(undefined),
  fc.integer({ min: -5, max: 70000 }),
  fc.double(),
  fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
  fc.array(fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)), { maxLength: 8 }),
  fc.array(fc.anything(), { maxLength: 4 }),
  fc.uint32Array({ maxLength: 8 }),
  fc.float64Array({ maxLength: 12 }),
  fc.constant(new Uint32Array(2)),
);

const fdFirst: Array<keyof NativeBinding> = [
  'tunRead', 'tunWrite', 'tunReadVnet', 'tunWriteVnet', 'udpLocal', 'udpRecv', 'udpSend', 'closeFd', 'pollStart',
];

describe.skipIf(!available)('native addon argument checking', () => {
  it('speaks the calling convention this code expects (a stale build is refused at load, not misread)', () => {
    expect(loadNative().abi).toBe(NATIVE_ABI);
  });

  it('mallocStats fills in-use, free and mmap bytes (glibc), and refuses a short array', () => {
    const out = new Float64Array(3);
    loadNative().mallocStats(out);
    expect(out[0]).toBeGreaterThan(0);
    expect(out[1]).toBeGreaterThanOrEqual(0);
    expect(() => loadNative().mallocStats(new Float64Array(2))).toThrow(TypeError);
    // A 4th slot: the QUIC engine's page pool (whole pages handed to ngtcp2; 0 before any connection).
    const four = new Float64Array(4).fill(-1);
    loadNative().mallocStats(four);
    expect(four[3]).toBeGreaterThanOrEqual(0);
    expect(four[3]! % 4096).toBe(0);
  });

  it('throws Errors (never crashes) for random arguments to every export', () => {
    const native = loadNative();
    for (const name of fdFirst) {
      fc.assert(
        fc.property(fc.array(junk, { maxLength: 10 }), fc.oneof(fc.constant(BAD_FD), fc.constant(-1), fc.anything()), (args, fd) => {
          // Only numbers that cannot be an open descriptor reach the fd slot.
          const safeFd = typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 && fd < BAD_FD ? BAD_FD : fd;
          // pollStart on a bad fd must fail; a function argument would otherwise be registered.
          const fn = native[name] as unknown as (...a: unknown[]) => unknown;
          try {
            fn(safeFd, ...args);
          } catch (e) {
            expect(e).toBeInstanceOf(Error);
          }
        }),
        { numRuns: 300 },
      );
    }
    for (const name of ['tunOpen', 'udpOpen', 'pollSet', 'pollClose'] as const) {
      fc.assert(
        fc.property(fc.array(junk, { maxLength: 8 }), (args) => {
          // Keep tunOpen/udpOpen from succeeding with real resources: force a bad first argument.
          const fn = native[name] as unknown as (...a: unknown[]) => unknown;
          try {
            fn(name === 'tunOpen' ? 12345 : name === 'udpOpen' ? 'x' : args[0], ...args.slice(1));
          } catch (e) {
            expect(e).toBeInstanceOf(Error);
          }
        }),
        { numRuns: 300 },
      );
    }
  });

  it('reports errno-carrying errors for a closed descriptor', () => {
    const native = loadNative();
    try {
      native.udpRecv(BAD_FD, [Buffer.alloc(10)], new Uint32Array(1), new Uint8Array(36), new Uint32Array(1), 1, new Float64Array(11));
      expect.unreachable();
    } catch (e) {
      expect((e as Error).message).toBe('udp: recvmmsg: Bad file descriptor');
      expect((e as { code?: string }).code).toBe('EBADF');
    }
    expect(() => native.pollStart(BAD_FD, 1, () => {})).toThrow(/mtun: uv_poll_init: Bad file descriptor/);
  });
});
