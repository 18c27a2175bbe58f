/** Test helpers for config errors: the smallest valid gateway file, and the ConfigError text a bad one gives. */
import { ConfigError, parseGatewayConfig } from '../index.js';

/** Smallest valid gateway file; tests append to it. */
export const GW_BASE = 'tls:\n  cert: gw.pem\n  key: gw-key.pem\n  ca: ca.pem\npools:\n  ipv4: 10.200.0.0/24\n';

/** The ConfigError text `text` (as `gw.yaml` in /etc/mtun) fails with; throws when it parses or fails otherwise. */
export function gwError(text: string): string {
  try {
    parseGatewayConfig(text, 'gw.yaml', '/etc/mtun');
  } catch (err) {
    if (!(err instanceof ConfigError)) throw new Error(`expected a ConfigError, got ${String(err)}`);
    return String(err);
  }
  throw new Error('expected a ConfigError');
}
