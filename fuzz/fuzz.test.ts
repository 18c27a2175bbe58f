import { describe, expect, it } from 'vitest';
import { runCampaign } from './harness.js';
import { TARGETS, cleanup } from './registry.js';
import { InvariantError, type FuzzTarget } from './defs/common.js';

// Keeps the fuzz harness from rotting: every target runs a few thousand
// inputs inside `npm test`. The full campaign (1,000,000 per target) is
// `npm run fuzz`; see docs/RELIABILITY.md. The time budget here is loose
// (shared CI machines); the campaign applies the strict one.
// config-yaml: 600, not 300: with 300 a one-line change of the sample config left 0 of 149 mutated inputs accepted (luck of the draw).
const FEW: Record<string, number> = { 'config-yaml': 600, pcap: 1000, 'connect-ip-session': 2000 };

describe('fuzz targets (smoke)', () => {
  for (const t of TARGETS) {
    it(`${t.name}: no crash, no hang; seeds accepted; mutation reaches accepted inputs`, () => {
      const r = runCampaign(t, { iterations: FEW[t.name] ?? 3000, seed: 7, hangMs: 2000 });
      cleanup();
      expect(r.findings.map((f) => `${f.kind}: ${f.error}`)).toEqual([]);
      expect(r.crashes).toBe(0);
      expect(r.hangs).toBe(0);
      if (t.stateful) expect(r.byMode.seed.accepted).toBeGreaterThan(0);
      else expect(r.byMode.seed.accepted).toBe(r.byMode.seed.inputs);
      expect(r.byMode.mutated.accepted).toBeGreaterThan(0);
      expect(Object.keys(r.outcomes).length).toBeGreaterThan(1);
    });
  }
});

describe('fuzz harness', () => {
  const base = { maxLen: 8, covers: 'test', seeds: () => [Uint8Array.of(1, 2, 3)], typed: (e: unknown) => e instanceof SyntaxError };

  it('counts an untyped exception as a crash and keeps its input', () => {
    const t: FuzzTarget = { ...base, name: 'throws', run: (b) => { if (b[0] === 0xff) throw new TypeError('boom'); } };
    const r = runCampaign(t, { iterations: 5000, seed: 1 });
    expect(r.crashes).toBeGreaterThan(0);
    expect(r.findings[0]!.error).toMatch(/^TypeError: boom/);
    expect(r.findings[0]!.inputHex.startsWith('ff')).toBe(true);
  });

  it('counts a typed exception as an outcome, an InvariantError as a crash', () => {
    const typed: FuzzTarget = { ...base, name: 'typed', run: (b) => { if (b.length > 4) throw new SyntaxError('too long'); } };
    const r = runCampaign(typed, { iterations: 2000, seed: 1 });
    expect(r.crashes).toBe(0);
    expect(Object.keys(r.outcomes)).toContain('throw SyntaxError: too long');
    const inv: FuzzTarget = { ...base, name: 'inv', run: () => { throw new InvariantError('broken'); } };
    expect(runCampaign(inv, { iterations: 10, seed: 1 }).crashes).toBe(10);
  });

  it('reports an input that burns CPU past the budget as a hang', () => {
    const slow = Uint8Array.of(7, 7, 7, 7, 7, 7, 7);
    const spin: FuzzTarget = {
      ...base,
      name: 'spin',
      seeds: () => [slow],
      run: (b) => {
        if (b.length !== 7 || b.some((x) => x !== 7)) return;
        const until = process.cpuUsage().user + 30_000;
        while (process.cpuUsage().user < until) { /* burn 30 ms of CPU */ }
      },
    };
    const r = runCampaign(spin, { iterations: 5, seed: 3, hangMs: 20 });
    expect(r.hangs).toBeGreaterThanOrEqual(1); // a mutation may reproduce the seed
    expect(r.findings[0]).toMatchObject({ kind: 'hang', iteration: 0, mode: 'seed', inputHex: '07070707070707' });
  });
});
