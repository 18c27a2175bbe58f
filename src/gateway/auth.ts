/**
 * Bearer-token authentication of Extended CONNECT requests (token mode):
 * the configured tokens (looked up by digest) and the header parser.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { GatewayConfig } from '../config/index.js';
import { MIN_TOKEN_CHARS } from '../config/schema.js';

/**
 * The gateway's tokens, kept as their SHA-256 digests. A lookup hashes the
 * presented token and finds its digest in a map: one lookup per request
 * whatever the number of tokens (a deployment with one token per agent has
 * thousands; comparing with each cost ~0.2 ms per request at 2,500, issue
 * #17). The map compares digests, not tokens: how long a lookup takes can
 * only depend on the digest of what was presented, which tells nothing
 * about any configured token (preimage resistance), so response time does
 * not reveal how much of a token matched.
 */
export class TokenTable {
  /** Digest (base64 of the 32 bytes) → identity; the first entry wins for a token listed twice. */
  private readonly byDigest = new Map<string, string>();
  private readonly count: number;

  constructor(tokens: ReadonlyArray<{ token: string; identity: string }>) {
    for (const t of tokens) {
      const d = digest(t.token);
      if (!this.byDigest.has(d)) this.byDigest.set(d, t.identity);
    }
    this.count = tokens.length;
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

  /** The identity `token` maps to, or null. Time independent of how much of a configured token it matches. */
  identityOf(token: string): string | null {
    return this.byDigest.get(digest(token)) ?? null;
  }

  get size(): number {
    return this.count;
  }
}

function digest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64');
}

/** The token of an `Authorization: Bearer …` header, or null. */
export function bearerToken(authorization: string | undefined): string | null {
  if (authorization === undefined) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  return m ? m[1]! : null;
}
