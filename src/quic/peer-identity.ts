/**
 * Reads the peer identity (URI SANs such as `spiffe://trust-domain/ns/x/sa/y`)
 * from the DER leaf certificate of a TLS peer chain. Control path only.
 * Uses node:crypto's parser: loading an ASN.1 library here cost the daemons
 * about half a second of start-up (docs/RELIABILITY.md, gateway restart).
 */
import { X509Certificate } from 'node:crypto';

/** What we know about an authenticated peer. */
export interface PeerIdentity {
  /** URI SANs of the leaf certificate, in order (SPIFFE IDs appear here). */
  readonly uris: readonly string[];
  /** The first `spiffe://` URI SAN, or null. */
  readonly spiffeId: string | null;
  /** Subject distinguished name of the leaf, for logs: its attributes joined by ", " (`CN=agent, O=example`). */
  readonly subject: string;
  /** Earliest notAfter (ms since the epoch) of the certificates presented: the connection may live until then (#12 item 5). */
  readonly notAfterMs: number;
}

/**
 * The values of the `URI:` entries of node:crypto's `subjectAltName` text
 * (`TYPE:value, TYPE:value`; a value holding a separator or quote is written
 * as a JSON string, RFC 5280 §4.2.1.6 names as OpenSSL prints them).
 */
export function uriSans(text: string | undefined): string[] {
  const out: string[] = [];
  if (text === undefined) return out;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon);
    let j = colon + 1;
    let value: string;
    if (text[j] === '"') {
      let k = j + 1;
      while (k < text.length && text[k] !== '"') k += text[k] === '\\' ? 2 : 1;
      value = JSON.parse(text.slice(j, k + 1)) as string;
      j = k + 1;
    } else {
      const end = text.indexOf(', ', j);
      j = end < 0 ? text.length : end;
      value = text.slice(colon + 1, j);
    }
    if (type === 'URI') out.push(value);
    if (!text.startsWith(', ', j)) break;
    i = j + 2;
  }
  return out;
}

/**
 * Parses the leaf (first) certificate of `chain` (DER, as the engine returns
 * from `peerCertChain()`). Returns null for an empty chain; throws
 * `quic: …` when the leaf cannot be parsed.
 */
export function peerIdentityFromChain(chain: readonly Uint8Array[] | null): PeerIdentity | null {
  if (chain === null || chain.length === 0) return null;
  let cert: X509Certificate;
  let uris: string[];
  try {
    cert = new X509Certificate(chain[0]!);
    uris = uriSans(cert.subjectAltName);
  } catch (e) {
    throw new Error(`quic: unparsable peer certificate: ${(e as Error).message}`);
  }
  const spiffeId = uris.find((u) => u.startsWith('spiffe://')) ?? null;
  let notAfterMs = Date.parse(cert.validTo);
  for (let i = 1; i < chain.length; i++) {
    try {
      notAfterMs = Math.min(notAfterMs, Date.parse(new X509Certificate(chain[i]!).validTo));
    } catch {
      // An unparsable intermediate cannot have verified; the leaf's expiry stands.
    }
  }
  return { uris, spiffeId, subject: cert.subject.split('\n').join(', '), notAfterMs };
}
