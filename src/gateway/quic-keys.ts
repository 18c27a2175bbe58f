/**
 * The gateway's stateless reset key (RFC 9000 §10.3.2). Derived from a secret shared by every
 * replica (`quic.statelessResetKeyFile`) when one is configured, else from
 * the TLS private key, so it survives restarts of one gateway either way.
 * The TLS session-ticket key is deliberately not derived here: it is random
 * per process and rotated (#12 item 5), so tickets never outlive a restart.
 */
import { createHmac } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

/** Shortest shared secret accepted (256 bits), e.g. `head -c 32 /dev/urandom` or `openssl rand -hex 32`. */
export const MIN_SHARED_SECRET_BYTES = 32;
/** Longest shared secret read (a secret file is small; this bounds a mistaken path). */
const MAX_SHARED_SECRET_BYTES = 4096;

/** Keys for {@link QuicServerOptions}; fresh buffers owned by the caller. */
export interface QuicServerKeys {
  /** 64 bytes: HMAC key of each connection's stateless reset token. */
  readonly statelessResetKey: Buffer;
  /** Where they came from, for the start-up log (never the secret itself). */
  readonly source: string;
}

/**
 * Reads the shared secret file. Throws `gateway: …` when it cannot be read,
 * is readable or writable by others (mode & 0o006: any local user could then
 * reset every agent's connection), or holds fewer than
 * {@link MIN_SHARED_SECRET_BYTES} bytes. Group access is allowed: Kubernetes
 * mounts Secrets group-readable for the pod's fsGroup.
 */
export function readSharedSecret(path: string): Buffer {
  let mode: number;
  let size: number;
  try {
    const st = statSync(path);
    mode = st.mode;
    size = st.size;
  } catch (e) {
    throw new Error(`gateway: cannot read quic.statelessResetKeyFile ${path}: ${(e as Error).message}`);
  }
  if ((mode & 0o006) !== 0) {
    const m = (mode & 0o777).toString(8).padStart(4, '0');
    throw new Error(`gateway: quic.statelessResetKeyFile ${path} is accessible to every user (mode ${m}); whoever reads it can reset any agent's connection: chmod o-rwx ${path} (e.g. 0600, or 0640 for a group)`);
  }
  if (size > MAX_SHARED_SECRET_BYTES) throw new Error(`gateway: quic.statelessResetKeyFile ${path} is ${size} bytes; expected a secret of ${MIN_SHARED_SECRET_BYTES}-${MAX_SHARED_SECRET_BYTES} bytes`);
  const secret = readFileSync(path);
  if (secret.length < MIN_SHARED_SECRET_BYTES) {
    throw new Error(`gateway: quic.statelessResetKeyFile ${path} holds ${secret.length} bytes; expected at least ${MIN_SHARED_SECRET_BYTES} (e.g. openssl rand -hex 32 > ${path})`);
  }
  return secret;
}

/** 64 bytes derived from `secret` under `label` (HMAC-SHA256 twice): stable for the same secret. */
export function derivedKey(secret: string | Uint8Array, label: string): Buffer {
  const a = createHmac('sha256', secret).update(label).digest();
  const b = createHmac('sha256', secret).update(label + ' 2').digest();
  return Buffer.concat([a, b]);
}

/**
 * The keys for one gateway: from the shared secret file when set (every
 * replica with the same file issues the same reset token for a CID), else
 * from the TLS private key. Throws as {@link readSharedSecret} does.
 */
export function quicServerKeys(statelessResetKeyFile: string | undefined, tlsKeyPem: string): QuicServerKeys {
  const secret = statelessResetKeyFile !== undefined ? readSharedSecret(statelessResetKeyFile) : tlsKeyPem;
  return {
    statelessResetKey: derivedKey(secret, 'mtun stateless reset v1'),
    source: statelessResetKeyFile !== undefined ? `shared secret ${statelessResetKeyFile}` : 'tls.key',
  };
}
