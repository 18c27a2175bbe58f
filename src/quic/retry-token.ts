/**
 * Stateless Retry tokens (RFC 9000 §8.1.2): HMAC-SHA256 protected, time
 * limited, and bound to the client's address and the Retry's connection ID.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ADDR_SLOT_BYTES } from '../net/udp.js';

const FORMAT = 1;
const MAC_BYTES = 16;
/** RFC 9000 §17.2: connection IDs are at most 20 bytes. */
const MAX_CID_BYTES = 20;
/** Largest token this module produces. */
export const RETRY_TOKEN_MAX_BYTES = 1 + 6 + 1 + MAX_CID_BYTES + MAC_BYTES;
/** Tolerated clock difference for a token that seems issued in the future (ms). */
const FUTURE_SKEW_MS = 1000;

/** Why {@link RetryTokens.validate} rejected a token. */
export type RetryTokenRejection = 'malformed' | 'bad-mac' | 'expired';

/** Options for {@link RetryTokens}. */
export interface RetryTokenOptions {
  /** HMAC key (≥ 32 bytes). Default: 32 random bytes, so tokens die with the process. */
  key?: Uint8Array;
  /** How long a token is accepted after minting (ms). Default 10 s. */
  lifetimeMs?: number;
  /** Clock in ms (default Date.now); injectable for tests. */
  now?: () => number;
}

/**
 * Mints and checks Retry tokens. Layout: format (1) | issued ms (6) |
 * odcid length (1) | odcid | HMAC-SHA256 truncated to 16 bytes over all
 * of that plus the Retry source CID and the client address slot (IP + port),
 * so a token is useless from another address or for another connection.
 */
export class RetryTokens {
  /** Reason of the last rejection (for counting); null after a success. */
  lastRejection: RetryTokenRejection | null = null;
  private readonly key: Uint8Array;
  private readonly lifetimeMs: number;
  private readonly now: () => number;

  constructor(opts: RetryTokenOptions = {}) {
    this.key = opts.key ?? randomBytes(32);
    if (this.key.length < 32) throw new RangeError('quic: retry token key must be at least 32 bytes');
    this.lifetimeMs = opts.lifetimeMs ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  private mac(body: Uint8Array, retryScid: Uint8Array, addrs: Uint8Array, slot: number): Buffer {
    const o = slot * ADDR_SLOT_BYTES;
    return createHmac('sha256', this.key)
      .update(body)
      .update(retryScid)
      .update(addrs.subarray(o, o + 18))
      .digest()
      .subarray(0, MAC_BYTES);
  }

  /**
   * Returns a new token for a client whose original destination CID was
   * `odcid`, to be sent in a Retry whose source CID is `retryScid`, to the
   * address in slot `slot` of `addrs`. Throws on an odcid over 20 bytes.
   */
  mint(odcid: Uint8Array, retryScid: Uint8Array, addrs: Uint8Array, slot: number): Uint8Array {
    if (odcid.length > MAX_CID_BYTES) throw new RangeError('quic: odcid longer than 20 bytes');
    const out = Buffer.alloc(8 + odcid.length + MAC_BYTES);
    out[0] = FORMAT;
    out.writeUIntBE(this.now(), 1, 6);
    out[7] = odcid.length;
    out.set(odcid, 8);
    const body = out.subarray(0, 8 + odcid.length);
    out.set(this.mac(body, retryScid, addrs, slot), 8 + odcid.length);
    return out;
  }

  /**
   * Checks `token` from an Initial whose destination CID is `dcid` (our Retry
   * source CID) from the address in slot `slot`. Returns the original
   * destination CID (a view into `token`) or null, with the reason in
   * {@link lastRejection}.
   */
  validate(token: Uint8Array, dcid: Uint8Array, addrs: Uint8Array, slot: number): Uint8Array | null {
    this.lastRejection = 'malformed';
    if (token.length < 8 + MAC_BYTES || token.length > RETRY_TOKEN_MAX_BYTES || token[0] !== FORMAT) return null;
    const odcidLen = token[7];
    if (token.length !== 8 + odcidLen + MAC_BYTES) return null;
    const body = token.subarray(0, 8 + odcidLen);
    const want = this.mac(body, dcid, addrs, slot);
    if (!timingSafeEqual(want, token.subarray(8 + odcidLen))) {
      this.lastRejection = 'bad-mac';
      return null;
    }
    const issued = Buffer.from(token.buffer, token.byteOffset, token.length).readUIntBE(1, 6);
    const age = this.now() - issued;
    if (age > this.lifetimeMs || age < -FUTURE_SKEW_MS) {
      this.lastRejection = 'expired';
      return null;
    }
    this.lastRejection = null;
    return token.subarray(8, 8 + odcidLen);
  }
}
