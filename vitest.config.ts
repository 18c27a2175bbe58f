import { defineConfig } from 'vitest/config';

// Unit tests sit next to the code (src/**/*.test.ts); test/sim holds the
// in-process end-to-end tier, test/netns the real-kernel tier (root only;
// those tests skip loudly otherwise). fuzz/ holds a smoke run of every fuzz
// target; the full campaign is `npm run fuzz`, outside `npm test`.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts', 'fuzz/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores: namespace tests start real daemons and programs; running
    // too many files at once only measures contention.
    maxWorkers: 2,
  },
});
