// Module hooks that let `node` run the reliability campaign's TypeScript
// straight from source (bench/reliability/*.ts, src/**/*.ts, test/impair/*.ts)
// by stripping types with oxc (rolldown's transformSync, already installed
// with vitest; `npm run typecheck` checks the types). TypeScript 7 has no JS
// API to transpile with. Loaded by register.mjs through `node --import`.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { transformSync } from 'rolldown/experimental';

/** `./x.js` written in TypeScript sources resolves to `./x.ts` when only that exists. */
export async function resolve(specifier, context, next) {
  if (specifier.endsWith('.js') && (specifier.startsWith('.') || specifier.startsWith('/')) && context.parentURL?.endsWith('.ts')) {
    const tsUrl = new URL(specifier.slice(0, -3) + '.ts', context.parentURL);
    if (!existsSync(fileURLToPath(new URL(specifier, context.parentURL))) && existsSync(fileURLToPath(tsUrl))) {
      return next(tsUrl.href, context);
    }
  }
  return next(specifier, context);
}

/** Strips types from `.ts` files (source maps inline, for stack traces). */
export async function load(url, context, next) {
  if (!url.endsWith('.ts')) return next(url, context);
  const file = fileURLToPath(url);
  const out = transformSync(file, readFileSync(file, 'utf8'), { sourcemap: true });
  if (out.errors.length > 0) throw new Error(`reliability: cannot transpile ${file}: ${out.errors.map((e) => e.message).join('; ')}`);
  const map = out.map ? `\n//# sourceMappingURL=data:application/json;base64,${Buffer.from(JSON.stringify(out.map)).toString('base64')}` : '';
  return { format: 'module', source: out.code + map, shortCircuit: true };
}
