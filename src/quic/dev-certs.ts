/**
 * Development PKI: an ECDSA P-256 CA, a server certificate and client
 * certificates with SPIFFE-style URI SANs, as PEM, for tests and `mtun certs`.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const EC_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN_ALG = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

/** A certificate and its private key, both PEM text. */
export interface PemPair {
  /** The certificate (one PEM block). */
  certPem: string;
  /** The PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`). */
  keyPem: string;
}

/** A CA able to issue further certificates with {@link issueServerCert} / {@link issueClientCert}. */
export interface DevCa extends PemPair {
  /** Internal: the parsed CA certificate and signing key. */
  readonly cert: x509.X509Certificate;
  readonly key: CryptoKey;
}

/** Options common to issued certificates. */
export interface IssueOptions {
  /** Validity in days from now (default 30). Negative makes an already-expired certificate. */
  validDays?: number;
}

async function keyToPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  if (days < 0) return { notBefore: new Date(now + (days - 1) * DAY_MS), notAfter: new Date(now + days * DAY_MS) };
  return { notBefore: new Date(now - 60_000), notAfter: new Date(now + days * DAY_MS) };
}

function serial(): string {
  // Positive 16-byte serial (RFC 5280 §4.1.2.2).
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] &= 0x7f;
  b[0] |= 0x01;
  return Buffer.from(b).toString('hex');
}

/** Creates a self-signed CA (`CN=<name>`), valid `validDays` (default 365). */
export async function createDevCa(name = 'mtun dev CA', opts: IssueOptions = {}): Promise<DevCa> {
  const keys = (await webcrypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${name}`,
    ...validity(opts.validDays ?? 365),
    signingAlgorithm: SIGN_ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, key: keys.privateKey, certPem: cert.toString('pem'), keyPem: await keyToPem(keys.privateKey) };
}

async function issue(
  ca: DevCa,
  cn: string,
  sans: x509.JsonGeneralName[],
  usage: string,
  opts: IssueOptions,
): Promise<PemPair> {
  const keys = (await webcrypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${cn}`,
    issuer: ca.cert.subject,
    ...validity(opts.validDays ?? 30),
    signingAlgorithm: SIGN_ALG,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([usage]),
      new x509.SubjectAlternativeNameExtension(sans),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyToPem(keys.privateKey) };
}

/**
 * Loads an existing CA (certificate PEM and PKCS#8 ECDSA P-256 key PEM, as
 * written by {@link createDevCa}) so it can issue more certificates.
 * Throws `quic: …` when the PEM is not a P-256 CA pair.
 */
export async function loadDevCa(certPem: string, keyPem: string): Promise<DevCa> {
  let cert: x509.X509Certificate;
  let key: CryptoKey;
  try {
    cert = new x509.X509Certificate(certPem);
    const der = x509.PemConverter.decode(keyPem)[0];
    key = await webcrypto.subtle.importKey('pkcs8', der, EC_ALG, true, ['sign']);
  } catch (e) {
    throw new Error(`quic: cannot load CA: ${(e as Error).message}`);
  }
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (bc === null || !bc.ca) throw new Error('quic: cannot load CA: certificate is not a CA (basicConstraints cA=false)');
  return { cert, key, certPem, keyPem };
}

/**
 * Issues a TLS server certificate for `names` (DNS names and/or IP
 * literals; default `localhost`, `127.0.0.1`, `::1`).
 */
export function issueServerCert(
  ca: DevCa,
  names: string[] = ['localhost', '127.0.0.1', '::1'],
  opts: IssueOptions = {},
): Promise<PemPair> {
  const sans: x509.JsonGeneralName[] = names.map((n) =>
    /^[0-9.]+$/.test(n) || n.includes(':') ? { type: 'ip', value: n } : { type: 'dns', value: n },
  );
  return issue(ca, names[0] ?? 'server', sans, x509.ExtendedKeyUsage.serverAuth, opts);
}

/**
 * Issues a TLS client certificate whose identity is the URI SAN `uri`
 * (e.g. `spiffe://mesh.local/ns/default/sa/agent`).
 */
export async function issueClientCert(ca: DevCa, uri: string, opts: IssueOptions = {}): Promise<PemPair> {
  if (!/^[a-z][a-z0-9+.-]*:\/\/./i.test(uri)) throw new Error(`quic: client identity ${JSON.stringify(uri)} is not a URI`);
  return issue(ca, uri.slice(uri.lastIndexOf('/') + 1) || 'client', [{ type: 'url', value: uri }], x509.ExtendedKeyUsage.clientAuth, opts);
}
