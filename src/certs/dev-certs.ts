/**
 * `mtun certs`: a development PKI on disk — an ECDSA P-256 CA, a gateway
 * server certificate and agent client certificates with SPIFFE-style URI
 * SANs, written as PEM with private keys readable by the owner only.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const KEY_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIG_ALG = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** Clock skew tolerated by backdating notBefore. */
const BACKDATE_MS = 5 * 60_000;

/** Options for {@link generateDevCerts}. */
export interface DevCertsOptions {
  /** Directory to write into (created if missing). */
  readonly outDir: string;
  /** SPIFFE trust domain (default `cluster.local`). */
  readonly trustDomain?: string;
  /** Gateway name: its CN, first DNS SAN and `spiffe://<td>/gateway/<name>` (default `gateway`). */
  readonly gatewayName?: string;
  /** Extra gateway SANs: DNS names or IP literals. `localhost`, `127.0.0.1` and `::1` are always included. */
  readonly gatewaySans?: readonly string[];
  /** Agent names; each gets `agent-<name>.pem` with URI SAN `spiffe://<td>/agent/<name>` (default `["cluster-a"]`). */
  readonly agents?: readonly string[];
  /** Leaf validity in days (default 90); the CA gets 10× this. */
  readonly validDays?: number;
  /** Replace an existing CA in `outDir` instead of reusing it (reusing keeps earlier certificates valid). */
  readonly newCa?: boolean;
}

/** One file written by {@link generateDevCerts}. */
export interface WrittenFile {
  readonly path: string;
  readonly kind: 'ca' | 'gateway' | 'agent';
  readonly secret: boolean;
  /** For certificates: the subject alternative names, as `DNS:x`, `IP:x`, `URI:x`. */
  readonly sans?: readonly string[];
}

/** What {@link generateDevCerts} did. */
export interface DevCertsResult {
  /** True when an existing CA in outDir was reused. */
  readonly reusedCa: boolean;
  readonly files: readonly WrittenFile[];
}

const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
const NAME = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;
const DNS_NAME = /^(?=.{1,253}$)([A-Za-z0-9*]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Checks the options; returns a list of problems (empty when fine). */
export function checkDevCertsOptions(o: DevCertsOptions): string[] {
  const errs: string[] = [];
  const td = o.trustDomain ?? 'cluster.local';
  if (!TRUST_DOMAIN.test(td)) errs.push(`trust domain ${JSON.stringify(td)}: expected lower-case letters, digits, ".", "-", "_"`);
  const gw = o.gatewayName ?? 'gateway';
  if (!NAME.test(gw)) errs.push(`gateway name ${JSON.stringify(gw)}: expected 1-63 letters, digits, "-", "_", "."`);
  for (const s of o.gatewaySans ?? []) {
    if (isIP(s) === 0 && !DNS_NAME.test(s)) errs.push(`gateway SAN ${JSON.stringify(s)}: expected a DNS name or IP address`);
  }
  const agents = o.agents ?? ['cluster-a'];
  if (agents.length === 0) errs.push('agents: expected at least one agent name');
  const seen = new Set<string>();
  for (const a of agents) {
    if (!NAME.test(a)) errs.push(`agent name ${JSON.stringify(a)}: expected 1-63 letters, digits, "-", "_", "."`);
    if (seen.has(a)) errs.push(`agent name ${JSON.stringify(a)}: given twice`);
    seen.add(a);
  }
  const days = o.validDays ?? 90;
  if (!Number.isInteger(days) || days < 1 || days > 3650) errs.push(`validity ${String(days)}: expected whole days 1-3650`);
  return errs;
}

/**
 * Generates (or extends) a development PKI in `outDir`:
 * `ca.pem`/`ca-key.pem`, `gateway.pem`/`gateway-key.pem`, and
 * `agent-<name>.pem`/`agent-<name>-key.pem` per agent. Keys are PKCS#8 PEM,
 * mode 0600; certificates 0644. An existing CA is reused unless `newCa`.
 * @throws Error prefixed `certs:` for bad options or unwritable files.
 */
export async function generateDevCerts(o: DevCertsOptions): Promise<DevCertsResult> {
  const errs = checkDevCertsOptions(o);
  if (errs.length > 0) throw new Error(`certs: ${errs.join('; ')}`);
  const td = o.trustDomain ?? 'cluster.local';
  const gwName = o.gatewayName ?? 'gateway';
  const agents = o.agents ?? ['cluster-a'];
  const days = o.validDays ?? 90;
  try {
    mkdirSync(o.outDir, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw new Error(`certs: cannot create ${o.outDir}: ${(err as Error).message}`);
  }
  const files: WrittenFile[] = [];
  const caCertPath = join(o.outDir, 'ca.pem');
  const caKeyPath = join(o.outDir, 'ca-key.pem');

  let ca: { cert: x509.X509Certificate; key: CryptoKey };
  let reusedCa = false;
  if (!o.newCa && existsSync(caCertPath) && existsSync(caKeyPath)) {
    ca = await loadCa(caCertPath, caKeyPath);
    reusedCa = true;
  } else {
    ca = await createCa(td, days * 10);
    write(caKeyPath, await keyPem(ca.key), true);
    write(caCertPath, ca.cert.toString('pem'), false);
    files.push({ path: caKeyPath, kind: 'ca', secret: true }, { path: caCertPath, kind: 'ca', secret: false });
  }

  const gwNames = uniq([gwName, 'localhost', '127.0.0.1', '::1', ...(o.gatewaySans ?? [])]);
  const gwSans: x509.JsonGeneralName[] = [
    ...gwNames.map((n): x509.JsonGeneralName => (isIP(n) ? { type: 'ip', value: n } : { type: 'dns', value: n })),
    { type: 'url', value: `spiffe://${td}/gateway/${gwName}` },
  ];
  files.push(...await issueTo(o.outDir, 'gateway', 'gateway', ca, gwName, gwSans, [x509.ExtendedKeyUsage.serverAuth], days));

  for (const a of agents) {
    const sans: x509.JsonGeneralName[] = [{ type: 'url', value: `spiffe://${td}/agent/${a}` }];
    files.push(...await issueTo(o.outDir, `agent-${a}`, 'agent', ca, a, sans, [x509.ExtendedKeyUsage.clientAuth], days));
  }
  return { reusedCa, files };
}

async function issueTo(
  dir: string, base: string, kind: 'gateway' | 'agent',
  ca: { cert: x509.X509Certificate; key: CryptoKey },
  cn: string, sans: x509.JsonGeneralName[], usages: string[], days: number,
): Promise<WrittenFile[]> {
  const keys = (await webcrypto.subtle.generateKey(KEY_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const notAfter = Math.min(now + days * DAY_MS, ca.cert.notAfter.getTime());
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialHex(),
    subject: `CN=${cn}, O=mtun development`,
    issuer: ca.cert.subject,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(notAfter),
    signingAlgorithm: SIG_ALG,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(usages, false),
      // RFC 5280 §4.2.1.6: SAN need not be critical when the subject is non-empty.
      new x509.SubjectAlternativeNameExtension(sans, false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
  const certPath = join(dir, `${base}.pem`);
  const keyPath = join(dir, `${base}-key.pem`);
  write(keyPath, await keyPem(keys.privateKey), true);
  write(certPath, cert.toString('pem'), false);
  const sanText = sans.map((s) => `${s.type === 'dns' ? 'DNS' : s.type === 'ip' ? 'IP' : 'URI'}:${s.value}`);
  return [{ path: keyPath, kind, secret: true }, { path: certPath, kind, secret: false, sans: sanText }];
}

async function createCa(td: string, days: number): Promise<{ cert: x509.X509Certificate; key: CryptoKey }> {
  const keys = (await webcrypto.subtle.generateKey(KEY_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialHex(),
    name: `CN=mtun development CA (${td}), O=mtun development`,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + days * DAY_MS),
    signingAlgorithm: SIG_ALG,
    keys,
    extensions: [
      // pathLen 0: this CA signs leaves only.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${td}` }], false),
    ],
  });
  return { cert, key: keys.privateKey };
}

async function loadCa(certPath: string, keyPath: string): Promise<{ cert: x509.X509Certificate; key: CryptoKey }> {
  try {
    const cert = new x509.X509Certificate(readFileSync(certPath, 'utf8'));
    const der = x509.PemConverter.decodeFirst(readFileSync(keyPath, 'utf8'));
    const key = await webcrypto.subtle.importKey('pkcs8', der, KEY_ALG, true, ['sign']);
    if (cert.notAfter.getTime() <= Date.now()) throw new Error('the CA certificate has expired');
    return { cert, key };
  } catch (err) {
    throw new Error(`certs: cannot reuse the CA in ${certPath} / ${keyPath} (${(err as Error).message}); pass --new-ca to replace it`);
  }
}

async function keyPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

function write(path: string, text: string, secret: boolean): void {
  const mode = secret ? 0o600 : 0o644;
  try {
    writeFileSync(path, text.endsWith('\n') ? text : `${text}\n`, { mode });
    chmodSync(path, mode); // writeFileSync's mode applies only when it creates the file
  } catch (err) {
    throw new Error(`certs: cannot write ${path}: ${(err as Error).message}`);
  }
}

/** A positive 128-bit serial number (RFC 5280 §4.1.2.2: positive, at most 20 octets). */
function serialHex(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = (b[0]! & 0x7f) | 0x10;
  return Buffer.from(b).toString('hex');
}

function uniq(xs: string[]): string[] {
  return [...new Set(xs)];
}
