#!/usr/bin/env node
// Thin launcher: the CLI is compiled TypeScript in dist/ (built by npm install).
import('../dist/cli/main.js').then((m) => m.main(process.argv)).catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    console.error('mtun: dist/ is missing; run `npm install` (or `npm run build`) first');
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});
