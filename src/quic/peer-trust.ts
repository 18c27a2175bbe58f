/**
 * Re-checks an authenticated client's certificate chain after the handshake:
 * against a reloaded client CA (a CA rotation must revoke what the new CA does
 * not vouch for) and against the clock (a connection lives no longer than its
 * certificate). Pure decisions on DER/PEM input; control path only.
 */
import { X509Certificate } from 'node:crypto';

/** Chain length walked at most (leaf, intermediates) before giving up. */
const MAX_CHAIN_DEPTH = 8;

/** The certificates of a PEM bundle, in order; unparsable blocks are skipped. */
export function parsePemBundle(pem: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const m of pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)) {
    try {
      out.push(new X509Certificate(m[0]));
    } catch {
      // Not a certificate: it cannot be a trust anchor.
    }
  }
  return out;
}

function validAt(c: X509Certificate, nowMs: number): boolean {
  return Date.parse(c.validFrom) <= nowMs && nowMs < Date.parse(c.validTo);
}

function issuedBy(child: X509Certificate, parent: X509Certificate): boolean {
  return child.checkIssued(parent) && child.verify(parent.publicKey);
}

/**
 * Why `chain` (DER, leaf first, as the TLS stack returned it) is not trusted
 * by `anchors` at `nowMs`, or null when it is: every certificate up to an
 * anchor must be in its validity period and signed by the next (RFC 5280
 * §6.1, signatures, validity and issuer names; no policy or name constraints).
 * Intermediates must be CA certificates. Never throws.
 */
export function peerChainDistrust(chain: readonly Uint8Array[], anchors: readonly X509Certificate[], nowMs: number): string | null {
  let certs: X509Certificate[];
  try {
    certs = chain.slice(0, MAX_CHAIN_DEPTH).map((d) => new X509Certificate(d));
  } catch {
    return 'unparsable certificate in the chain';
  }
  if (certs.length === 0) return 'no certificate';
  let cur = certs[0]!;
  const used = new Set<number>([0]);
  for (let depth = 0; depth < MAX_CHAIN_DEPTH; depth++) {
    if (!validAt(cur, nowMs)) return `certificate ${cur.subject.replace(/\n/g, ', ')} is outside its validity period`;
    const anchor = anchors.find((a) => issuedBy(cur, a));
    if (anchor !== undefined) return validAt(anchor, nowMs) ? null : 'the issuing CA is outside its validity period';
    const next = certs.findIndex((c, i) => !used.has(i) && c.ca && issuedBy(cur, c));
    if (next < 0) return 'not issued by the configured client CA';
    used.add(next);
    cur = certs[next]!;
  }
  return 'chain too long';
}

/**
 * Whether a client authenticated as it was (`hasCert`: by the certificate
 * chain `chain`) is still admitted under the client CA `anchors` (parsed
 * bundle; null: mTLS off, connections authenticate by token). Null when
 * admitted, else the reason.
 */
export function peerRejection(hasCert: boolean, chain: readonly Uint8Array[] | null, anchors: readonly X509Certificate[] | null, nowMs: number): string | null {
  if (anchors === null) return hasCert ? 'client certificates are no longer accepted (mTLS turned off)' : null;
  if (!hasCert) return 'a client certificate is now required';
  return peerChainDistrust(chain ?? [], anchors, nowMs);
}
