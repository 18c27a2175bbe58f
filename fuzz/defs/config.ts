/**
 * Config YAML target: gateway and agent files through YAML parsing and
 * schema validation. The only typed error is ConfigError.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseGatewayConfig, parseAgentConfig, ConfigError } from '../targets.js';
import { enc, norm, tokens, utf8, type FuzzTarget } from './common.js';

/**
 * Sample configs shipped in config/ (run from the repository root, as npm
 * and vitest do), comment lines dropped: they only cost parse time.
 */
function sample(name: string): Uint8Array {
  const text = readFileSync(resolve(process.cwd(), 'config', name), 'utf8');
  return enc(text.split('\n').filter((l) => !/^\s*#/.test(l)).map((l) => l.replace(/\s+#.*$/, '')).join('\n'));
}

export const configYaml: FuzzTarget = {
  name: 'config-yaml',
  covers: 'config/load parseGatewayConfig or parseAgentConfig (one per input) (config/yaml-source YAML 1.2 parse, aliases, duplicate keys; zod schemas and value parsers); input as UTF-8',
  maxLen: 4096,
  // YAML + schema validation of a few KiB takes 5–20 ms here; once per start or SIGHUP, never per packet.
  hangMs: 500,
  seeds: () => [sample('gateway.yaml'), sample('agent.yaml')],
  dict: tokens([': ', '- ', '\n  ', '\n', '&a ', '*a', '<<: *a', '!!binary ', '!!str ', '{', '}', '[', ']', '"', "'", '#', '0x1f', '1e999', '~', 'null', '::/0', '0.0.0.0/0', '65536', '-1', '"8000-8100"', 'true', 'false', '? ', '|', '>-', '%YAML 1.2\n---\n', '\t', '\u0000']),
  typed: (e) => e instanceof ConfigError,
  run(b, ctx) {
    const text = utf8(b);
    // One schema per input halves the cost: the agent's when the text has its top-level `gateway:` key.
    const [what, parse] = /^gateway:/m.test(text) ? (['agent', parseAgentConfig] as const) : (['gateway', parseGatewayConfig] as const);
    {
      try {
        parse(text, 'fuzz.yaml', '/nonexistent/fuzz');
        ctx.note(`ok:${what}`);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        ctx.note(`${what}: ConfigError: ${norm(e.issues[0]?.message ?? '').slice(0, 40)}`);
      }
    }
  },
};
