/**
 * Reads the peer identity (URI SANs such as `spiffe://trust-domain/ns/x/sa/y`)
 * from the DER leaf certificate of a TLS peer chain. Control path only.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/** What we know about an authenticated peer. */
export interface PeerIdentity {
  /** URI SANs of the leaf certificate, in order (SPIFFE IDs appear here). */
  readonly uris: readonly string[];
  /** The first `spiffe://` URI SAN, or null. */
  readonly spiffeId: string | null;
  /** Subject distinguished name of the leaf, for logs. */
  readonly subject: string;
  /** Earliest notAfter (ms since the epoch) of the certificates presented: the connection may live until then (#12 item 5). */
  readonly notAfterMs: number;
}

/**
 * Parses the leaf (first) certificate of `chain` (DER, as quiche returns
 * from `peerCertChain()`). Returns null for an empty chain; throws
 * `quic: …` when the leaf cannot be parsed.
 */
export function peerIdentityFromChain(chain: readonly Uint8Array[] | null): PeerIdentity | null {
  if (chain === null || chain.length === 0) return null;
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(chain[0]);
  } catch (e) {
    throw new Error(`quic: unparsable peer certificate: ${(e as Error).message}`);
  }
  const uris: string[] = [];
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  if (san !== null) {
    for (const n of san.names.items) if (n.type === 'url') uris.push(n.value);
  }
  const spiffeId = uris.find((u) => u.startsWith('spiffe://')) ?? null;
  let notAfterMs = cert.notAfter.getTime();
  for (let i = 1; i < chain.length; i++) {
    try {
      notAfterMs = Math.min(notAfterMs, new x509.X509Certificate(chain[i]).notAfter.getTime());
    } catch {
      // An unparsable intermediate cannot have verified; the leaf's expiry stands.
    }
  }
  return { uris, spiffeId, subject: cert.subject, notAfterMs };
}
