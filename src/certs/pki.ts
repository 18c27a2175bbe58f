/**
 * In-memory development PKI: an ECDSA P-256 CA and the server and client leaf
 * certificates it issues, as PEM strings. `mtun certs` and the QUIC tests both use it.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const KEY_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIG_ALG = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** Clock skew tolerated by backdating notBefore of certificates that are valid now. */
const BACKDATE_MS = 5 * 60_000;
/** Organization in every subject this module writes. */
const ORG = 'mtun development';
/** RFC 5280 Appendix A.1: ub-common-name is 64 characters. */
const CN_MAX = 64;
const DEFAULT_CA_DAYS = 365;
const DEFAULT_LEAF_DAYS = 30;

const DNS_NAME = /^(?=.{1,253}$)([A-Za-z0-9*]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const URI = /^[a-z][a-z0-9+.-]*:\/\/\S+$/i;

/** A certificate and its private key, both PEM text owned by the caller. */
export interface PemPair {
  /** The certificate (one PEM block). */
  readonly certPem: string;
  /** The PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`). */
  readonly keyPem: string;
}

/** A leaf certificate from {@link issueServerCert} / {@link issueClientCert}. */
export interface IssuedCert extends PemPair {
  /** Its subject alternative names in extension order, as `DNS:x`, `IP:x`, `URI:x`. */
  readonly sans: readonly string[];
}

/**
 * A CA able to issue leaf certificates. Holds its signing key in memory;
 * nothing to close — drop the reference to forget the key.
 */
export interface DevCa extends PemPair {
  /** The parsed CA certificate. */
  readonly cert: x509.X509Certificate;
  /** The CA's private signing key (ECDSA P-256, extractable). */
  readonly key: CryptoKey;
}

/** Options for {@link createDevCa}. */
export interface CaOptions {
  /** Validity in whole days from now (default 365). Negative makes an already-expired CA. */
  readonly validDays?: number;
  /** URI SANs for the CA (e.g. the SPIFFE trust domain `spiffe://cluster.local`); none by default. */
  readonly uris?: readonly string[];
}

/** Options for {@link issueClientCert}. */
export interface IssueOptions {
  /**
   * Validity in whole days from now (default 30), capped at the CA's notAfter.
   * Negative makes an already-expired certificate (for tests).
   */
  readonly validDays?: number;
  /** Subject CN (default: the first name, or the URI's last path segment); cut to 64 characters. */
  readonly commonName?: string;
}

/** Options for {@link issueServerCert}. */
export interface ServerCertOptions extends IssueOptions {
  /** URI SANs added after the DNS/IP names (e.g. the gateway's SPIFFE ID). */
  readonly uris?: readonly string[];
}

/** Thrown by {@link loadDevCa}; `reason` is the message without the `certs: cannot load CA:` prefix. */
export class DevCaLoadError extends Error {
  /** Why the pair was refused, e.g. `certificate is not a CA (basicConstraints cA=false)`. */
  readonly reason: string;
  constructor(reason: string, options?: { cause?: unknown }) {
    super(`certs: cannot load CA: ${reason}`, options);
    this.name = 'DevCaLoadError';
    this.reason = reason;
  }
}

/** True when `name` can be a server SAN: an IP literal or a DNS name (a leading `*` label allowed). */
export function isServerName(name: string): boolean {
  return isIP(name) !== 0 || DNS_NAME.test(name);
}

/**
 * Creates a self-signed CA, subject `CN=<name>, O=mtun development`, with
 * BasicConstraints cA=TRUE pathLen=0 and KeyUsage keyCertSign|cRLSign (both critical).
 * @throws Error `certs: …` for a bad validity or URI.
 */
export async function createDevCa(name = 'mtun dev CA', opts: CaOptions = {}): Promise<DevCa> {
  const { notBefore, notAfter } = validity(opts.validDays ?? DEFAULT_CA_DAYS);
  const uris = checkUris(opts.uris ?? []);
  const keys = await newKeyPair();
  const extensions: x509.Extension[] = [
    // RFC 5280 §4.2.1.9: pathLen 0 — this CA signs leaves only.
    new x509.BasicConstraintsExtension(true, 0, true),
    // RFC 5280 §4.2.1.3
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    // RFC 5280 §4.2.1.2
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  if (uris.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(uris.map((u): x509.JsonGeneralName => ({ type: 'url', value: u })), false));
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialHex(),
    name: subject(name),
    notBefore,
    notAfter,
    signingAlgorithm: SIG_ALG,
    keys,
    extensions,
  });
  return { cert, key: keys.privateKey, certPem: cert.toString('pem'), keyPem: await keyToPem(keys.privateKey) };
}

/**
 * Loads a CA from its certificate PEM and PKCS#8 ECDSA P-256 key PEM (as
 * {@link createDevCa} or `mtun certs` write them) so it can issue more
 * certificates. Checks that the certificate is a CA allowed to sign
 * certificates and that the key belongs to it; does not check expiry.
 * @throws DevCaLoadError (`certs: cannot load CA: …`).
 */
export async function loadDevCa(certPem: string, keyPem: string): Promise<DevCa> {
  let cert: x509.X509Certificate;
  let key: CryptoKey;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch (err) {
    throw new DevCaLoadError(`unparsable certificate (${(err as Error).message})`, { cause: err });
  }
  try {
    key = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(keyPem), KEY_ALG, true, ['sign']);
  } catch (err) {
    throw new DevCaLoadError(`private key is not a PKCS#8 ECDSA P-256 key (${(err as Error).message})`, { cause: err });
  }
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (bc === null || !bc.ca) throw new DevCaLoadError('certificate is not a CA (basicConstraints cA=false)');
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  // RFC 5280 §4.2.1.3: a CA that signs certificates needs keyCertSign.
  if (ku !== null && (ku.usages & x509.KeyUsageFlags.keyCertSign) === 0) throw new DevCaLoadError('certificate may not sign certificates (keyUsage lacks keyCertSign)');
  let pub: CryptoKey;
  try {
    pub = await cert.publicKey.export(KEY_ALG, ['verify']);
  } catch (err) {
    throw new DevCaLoadError(`certificate key is not ECDSA P-256 (${(err as Error).message})`, { cause: err });
  }
  const probe = webcrypto.getRandomValues(new Uint8Array(32));
  const sig = await webcrypto.subtle.sign(SIG_ALG, key, probe);
  if (!(await webcrypto.subtle.verify(SIG_ALG, pub, sig, probe))) throw new DevCaLoadError('private key does not match the certificate');
  return { cert, key, certPem, keyPem };
}

/**
 * Issues a TLS server certificate (EKU serverAuth) for `names`: DNS names
 * and/or IP literals (default `localhost`, `127.0.0.1`, `::1`; duplicates
 * dropped), then `opts.uris` as URI SANs. CN defaults to the first name.
 * @throws Error `certs: …` for an empty list, a bad name, URI or validity.
 */
export async function issueServerCert(
  ca: DevCa,
  names: readonly string[] = ['localhost', '127.0.0.1', '::1'],
  opts: ServerCertOptions = {},
): Promise<IssuedCert> {
  const uniq = [...new Set(names)];
  if (uniq.length === 0) throw new Error('certs: a server certificate needs at least one DNS name or IP address');
  for (const n of uniq) if (!isServerName(n)) throw new Error(`certs: server name ${JSON.stringify(n)} is neither a DNS name nor an IP address`);
  const sans: x509.JsonGeneralName[] = [
    ...uniq.map((n): x509.JsonGeneralName => (isIP(n) !== 0 ? { type: 'ip', value: n } : { type: 'dns', value: n })),
    ...checkUris(opts.uris ?? []).map((u): x509.JsonGeneralName => ({ type: 'url', value: u })),
  ];
  return issue(ca, opts.commonName ?? uniq[0]!, sans, x509.ExtendedKeyUsage.serverAuth, opts.validDays);
}

/**
 * Issues a TLS client certificate (EKU clientAuth) whose identity is the URI
 * SAN `uri` (e.g. `spiffe://mesh.local/ns/default/sa/agent`). CN defaults to
 * the URI's last path segment.
 * @throws Error `certs: …` when `uri` is not an absolute URI, or for a bad validity.
 */
export async function issueClientCert(ca: DevCa, uri: string, opts: IssueOptions = {}): Promise<IssuedCert> {
  const [u] = checkUris([uri]);
  return issue(ca, opts.commonName ?? (u!.slice(u!.lastIndexOf('/') + 1) || 'client'), [{ type: 'url', value: u! }], x509.ExtendedKeyUsage.clientAuth, opts.validDays);
}

async function issue(ca: DevCa, cn: string, sans: x509.JsonGeneralName[], usage: string, days = DEFAULT_LEAF_DAYS): Promise<IssuedCert> {
  const v = validity(days);
  const notAfter = new Date(Math.min(v.notAfter.getTime(), ca.cert.notAfter.getTime()));
  if (notAfter.getTime() <= v.notBefore.getTime()) throw new Error(`certs: the CA expired ${ca.cert.notAfter.toISOString()}, before the certificate's validity would begin`);
  const keys = await newKeyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialHex(),
    subject: subject(cn),
    issuer: ca.cert.subjectName,
    notBefore: v.notBefore,
    notAfter,
    signingAlgorithm: SIG_ALG,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      // RFC 5280 §4.2.1.12
      new x509.ExtendedKeyUsageExtension([usage], false),
      // RFC 5280 §4.2.1.6: SAN need not be critical when the subject is non-empty.
      new x509.SubjectAlternativeNameExtension(sans, false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      // RFC 5280 §4.2.1.1
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
  const sanText = sans.map((s) => `${s.type === 'dns' ? 'DNS' : s.type === 'ip' ? 'IP' : 'URI'}:${s.value}`);
  return { certPem: cert.toString('pem'), keyPem: await keyToPem(keys.privateKey), sans: sanText };
}

async function newKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function keyToPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

/** Structured, so CN text needs no RFC 4514 escaping. */
function subject(cn: string): x509.JsonName {
  return [{ CN: [cn.slice(0, CN_MAX)] }, { O: [ORG] }];
}

/** Valid now: backdated by {@link BACKDATE_MS}. Negative days: a one-day window that ended `-days` days ago. */
function validity(days: number): { notBefore: Date; notAfter: Date } {
  if (!Number.isInteger(days) || days === 0) throw new Error(`certs: validity ${String(days)}: expected a non-zero whole number of days`);
  const now = Date.now();
  if (days < 0) return { notBefore: new Date(now + (days - 1) * DAY_MS), notAfter: new Date(now + days * DAY_MS) };
  return { notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + days * DAY_MS) };
}

function checkUris(uris: readonly string[]): string[] {
  for (const u of uris) if (!URI.test(u)) throw new Error(`certs: ${JSON.stringify(u)} is not a URI (expected scheme://…)`);
  return [...uris];
}

/** A positive 128-bit serial (RFC 5280 §4.1.2.2: positive, at most 20 octets); first octet 0x10-0x7f, so DER keeps exactly 16 octets. */
function serialHex(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = (b[0]! & 0x7f) | 0x10;
  return Buffer.from(b).toString('hex');
}
