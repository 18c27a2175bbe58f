/**
 * QUIC-LB connection IDs (draft-ietf-quic-load-balancers, keyless
 * configuration): a server writes its server ID into every connection ID
 * it issues, so a CID-aware load balancer can route a connection to its
 * server by connection ID alone, also after the client's address changes.
 * Pure: encodes into a caller-owned buffer, decodes without allocating.
 *
 *   QUIC-LB Connection ID {
 *     First Octet { Config Rotation (3), CID Len or Random Bits (5) },
 *     Server ID (8..),   // §5.3: at least 1 octet
 *     Nonce (32..),      // §5.3: at least 4 octets; with no key, random (§5.4)
 *   }
 */
import { randomFillSync } from 'node:crypto';

/** §3.2: config rotation codepoint of connection IDs that carry no routing information. */
export const QUIC_LB_UNROUTABLE_CONFIG = 0b111;
/** §5.3: shortest nonce. */
export const QUIC_LB_MIN_NONCE_BYTES = 4;
/** §5.3: server ID and nonce sum to at most 19 octets (QUIC v1's 20-byte CID limit less the first octet). */
export const QUIC_LB_MAX_BODY_BYTES = 19;

/** One keyless QUIC-LB configuration as the server applies it. */
export interface QuicLbConfig {
  /** Config rotation codepoint 0–6 (§3.1); 7 (0b111) means unroutable and is refused. */
  readonly configRotation: number;
  /** This server's ID, at least 1 octet. */
  readonly serverId: Uint8Array;
}

/**
 * Throws `quic: …` unless `cfg` fits connection IDs of `cidBytes` octets:
 * config rotation 0–6, a server ID of at least 1 octet, leaving a nonce of
 * at least {@link QUIC_LB_MIN_NONCE_BYTES}, and the whole at most 20 octets.
 */
export function checkQuicLbConfig(cfg: QuicLbConfig, cidBytes: number): void {
  if (!Number.isInteger(cfg.configRotation) || cfg.configRotation < 0 || cfg.configRotation >= QUIC_LB_UNROUTABLE_CONFIG) {
    throw new RangeError(`quic: QUIC-LB config rotation ${cfg.configRotation} must be 0-6 (7 marks unroutable connection IDs)`);
  }
  const nonce = cidBytes - 1 - cfg.serverId.length;
  if (cfg.serverId.length < 1 || nonce < QUIC_LB_MIN_NONCE_BYTES || cidBytes - 1 > QUIC_LB_MAX_BODY_BYTES) {
    throw new RangeError(`quic: a ${cfg.serverId.length}-octet QUIC-LB server ID does not fit ${cidBytes}-octet connection IDs (1-${cidBytes - 1 - QUIC_LB_MIN_NONCE_BYTES} octets leave a ${QUIC_LB_MIN_NONCE_BYTES}-octet nonce)`);
  }
}

/**
 * Fills `cid` (its whole length) with a connection ID routable to
 * `cfg.serverId`: the first octet's top 3 bits are the config rotation, its
 * low 5 bits random (§3.3: no length self-description); then the server ID;
 * then random nonce octets (§5.4: no observable relationship to earlier
 * ones). `cfg` must pass {@link checkQuicLbConfig} for `cid.length`.
 */
export function encodeQuicLbCid(cid: Uint8Array, cfg: QuicLbConfig): void {
  randomFillSync(cid);
  cid[0] = (cfg.configRotation << 5) | (cid[0]! & 0x1f);
  cid.set(cfg.serverId, 1);
}

/**
 * What a load balancer reads from a connection ID (§5, keyless): the config
 * rotation and the server ID of `serverIdBytes` octets, as a view into
 * `cid`. Null when the CID is unroutable: config rotation 0b111, or too
 * short for the server ID and a minimal nonce.
 */
export function decodeQuicLbCid(cid: Uint8Array, serverIdBytes: number): { configRotation: number; serverId: Uint8Array } | null {
  if (cid.length < 1 + serverIdBytes + QUIC_LB_MIN_NONCE_BYTES) return null;
  const configRotation = cid[0]! >> 5;
  if (configRotation === QUIC_LB_UNROUTABLE_CONFIG) return null;
  return { configRotation, serverId: cid.subarray(1, 1 + serverIdBytes) };
}
