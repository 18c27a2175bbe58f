/**
 * Bearer-token authentication of Extended CONNECT requests (token mode):
 * the configured tokens, compared in constant time, and the header parser.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { GatewayConfig } from '../config/index.js';
import { MIN_TOKEN_CHARS } from '../config/schema.js';

/** One configured token, kept as its SHA-256 digest. */
interface TokenEntry {
  readonly digest: Buffer;
  readonly identity: string;
}

/**
 * The gateway's tokens. Lookups hash the presented token and compare it with
 * every configured digest using `timingSafeEqual` (equal-length digests, no
 * early exit), so response time does not reveal how much of a token matched.
 */
export class TokenTable {
  private readonly entries: readonly TokenEntry[];

  constructor(tokens: ReadonlyArray<{ token: string; identity: string }>) {
    this.entries = tokens.map((t) => ({ digest: digest(t.token), identity: t.identity }));
  }

  /** Reads `auth.tokens` (inline or from files). Throws when a token file cannot be read. */
  static fromConfig(config: GatewayConfig): TokenTable {
    return new TokenTable(config.auth.tokens.map((t) => {
      const token = t.token ?? readFileSync(t.tokenFile!, 'utf8').trim();
      if (token.length < MIN_TOKEN_CHARS) {
        throw new Error(`gateway: token file ${t.tokenFile} (identity ${t.identity}) holds ${token.length} characters; at least ${MIN_TOKEN_CHARS} are required`);
      }
      return { token, identity: t.identity };
    }));
  }

  /** The identity `token` maps to, or null. Constant time in the token's content. */
  identityOf(token: string): string | null {
    const d = digest(token);
    let found: string | null = null;
    for (const e of this.entries) if (timingSafeEqual(d, e.digest) && found === null) found = e.identity;
    return found;
  }

  get size(): number {
    return this.entries.length;
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** The token of an `Authorization: Bearer …` header, or null. */
export function bearerToken(authorization: string | undefined): string | null {
  if (authorization === undefined) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  return m ? m[1]! : null;
}
