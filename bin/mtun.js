#!/usr/bin/env -S node --max-semi-space-size=2
// --max-semi-space-size=2 (MB): V8's young generation may grow to 16 MB per
// semi-space by default under the data path's allocation rate; capped at 2 MB
// the daemons' peak RSS under TCP load fell 10-20 MB with the same throughput
// and CPU (npm run bench, issue #13; docs/deployment.md). 1 MB cost throughput.
// Who starts the daemons with `node bin/mtun.js` passes it too (Dockerfile, lab, bench).
// Thin launcher: the CLI is compiled TypeScript in dist/ (built by npm install).
import('../dist/cli/main.js').then((m) => m.main(process.argv)).catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    console.error('mtun: dist/ is missing; run `npm install` (or `npm run build`) first');
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});
