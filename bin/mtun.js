#!/usr/bin/env -S node --max-semi-space-size=2
// --max-semi-space-size=2: DAEMON_NODE_FLAGS in src/daemon/tunnel-constants.ts
// says why; who starts `node bin/mtun.js` passes it too (Dockerfile, lab,
// bench). `env -S` needs GNU coreutils >= 8.30 (Debian 10 and later).
// Thin launcher: the CLI is compiled TypeScript in dist/ (built by npm install).
import('../dist/cli/main.js').then((m) => m.main(process.argv)).catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    console.error('mtun: dist/ is missing; run `npm install` (or `npm run build`) first');
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});
