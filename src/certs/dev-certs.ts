/**
 * `mtun certs`: a development PKI on disk — an ECDSA P-256 CA, a gateway
 * server certificate and agent client certificates with SPIFFE-style URI
 * SANs, written as PEM with private keys readable by the owner only.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDevCa, DevCaLoadError, isServerName, issueClientCert, issueServerCert, loadDevCa, type DevCa, type IssuedCert } from './pki.js';

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

/** Checks the options; returns a list of problems (empty when fine). */
export function checkDevCertsOptions(o: DevCertsOptions): string[] {
  const errs: string[] = [];
  const td = o.trustDomain ?? 'cluster.local';
  if (!TRUST_DOMAIN.test(td)) errs.push(`trust domain ${JSON.stringify(td)}: expected lower-case letters, digits, ".", "-", "_"`);
  const gw = o.gatewayName ?? 'gateway';
  if (!NAME.test(gw)) errs.push(`gateway name ${JSON.stringify(gw)}: expected 1-63 letters, digits, "-", "_", "."`);
  for (const s of o.gatewaySans ?? []) {
    if (!isServerName(s)) errs.push(`gateway SAN ${JSON.stringify(s)}: expected a DNS name or IP address`);
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

  let ca: DevCa;
  let reusedCa = false;
  if (!o.newCa && existsSync(caCertPath) && existsSync(caKeyPath)) {
    ca = await loadCa(caCertPath, caKeyPath);
    reusedCa = true;
  } else {
    ca = await createDevCa(`mtun development CA (${td})`, { validDays: days * 10, uris: [`spiffe://${td}`] });
    write(caKeyPath, ca.keyPem, true);
    write(caCertPath, ca.certPem, false);
    files.push({ path: caKeyPath, kind: 'ca', secret: true }, { path: caCertPath, kind: 'ca', secret: false });
  }

  const gw = await issueServerCert(ca, [gwName, 'localhost', '127.0.0.1', '::1', ...(o.gatewaySans ?? [])], {
    commonName: gwName, uris: [`spiffe://${td}/gateway/${gwName}`], validDays: days,
  });
  files.push(...writePair(o.outDir, 'gateway', 'gateway', gw));

  for (const a of agents) {
    const cert = await issueClientCert(ca, `spiffe://${td}/agent/${a}`, { commonName: a, validDays: days });
    files.push(...writePair(o.outDir, `agent-${a}`, 'agent', cert));
  }
  return { reusedCa, files };
}

function writePair(dir: string, base: string, kind: 'gateway' | 'agent', c: IssuedCert): WrittenFile[] {
  const certPath = join(dir, `${base}.pem`);
  const keyPath = join(dir, `${base}-key.pem`);
  write(keyPath, c.keyPem, true);
  write(certPath, c.certPem, false);
  return [{ path: keyPath, kind, secret: true }, { path: certPath, kind, secret: false, sans: c.sans }];
}

async function loadCa(certPath: string, keyPath: string): Promise<DevCa> {
  const fail = (reason: string): Error => new Error(`certs: cannot reuse the CA in ${certPath} / ${keyPath} (${reason}); pass --new-ca to replace it`);
  let certPem: string;
  let keyPem: string;
  try {
    certPem = readFileSync(certPath, 'utf8');
    keyPem = readFileSync(keyPath, 'utf8');
  } catch (err) {
    throw fail((err as Error).message);
  }
  let ca: DevCa;
  try {
    ca = await loadDevCa(certPem, keyPem);
  } catch (err) {
    throw fail(err instanceof DevCaLoadError ? err.reason : (err as Error).message);
  }
  if (ca.cert.notAfter.getTime() <= Date.now()) throw fail('the CA certificate has expired');
  return ca;
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
