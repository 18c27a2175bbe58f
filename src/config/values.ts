/**
 * Zod schemas for the scalar value kinds used in mtun configuration (ports,
 * prefixes, host:port, durations, file paths), each with an error message
 * that says what was expected and what was found.
 */
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { parseIp, parsePrefixOrReason, type IpPrefix } from '../packet/ip-address.js';

/** Describes a YAML value for an error message: strings quoted, lists and mappings by kind. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return typeof v;
}

/** An inclusive port range; a single port has `from === to`. */
export interface PortRange {
  readonly from: number;
  readonly to: number;
}

/** A parsed `host:port` value; `host` is an IP address or DNS name, IPv6 without brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const PORT_MSG = 'expected a port number 1-65535';

function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** A single port number 1–65535. */
export const portNumber = z.unknown().transform((v, ctx): number => {
  if (!isPort(v)) {
    ctx.addIssue({ code: 'custom', message: `${PORT_MSG}, got ${describeValue(v)}` });
    return z.NEVER;
  }
  return v;
});

/** A port number or a range written `"low-high"`. */
export const portSpec = z.unknown().transform((v, ctx): PortRange => {
  if (isPort(v)) return { from: v, to: v };
  if (typeof v === 'string') {
    const m = /^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$/.exec(v);
    if (m) {
      const from = Number(m[1]);
      const to = Number(m[2]);
      if (isPort(from) && isPort(to) && from <= to) return { from, to };
    }
  }
  ctx.addIssue({ code: 'custom', message: `${PORT_MSG} or a range "low-high", got ${describeValue(v)}` });
  return z.NEVER;
});

/** An IP prefix (`10.0.0.0/8`, `fd00::/64`; a bare address is a host prefix), optionally of one family. */
export function ipPrefix(family?: 4 | 6) {
  return z.unknown().transform((v, ctx): IpPrefix => {
    if (typeof v !== 'string') {
      ctx.addIssue({ code: 'custom', message: `expected an IP${family ? `v${family}` : ''} prefix like ${family === 6 ? 'fd00::/64' : '10.0.0.0/8'}, got ${describeValue(v)}` });
      return z.NEVER;
    }
    const p = parsePrefixOrReason(v.trim());
    if (typeof p === 'string') {
      ctx.addIssue({ code: 'custom', message: p });
      return z.NEVER;
    }
    if (family !== undefined && p.version !== family) {
      ctx.addIssue({ code: 'custom', message: `expected an IPv${family} prefix, got ${describeValue(v)}` });
      return z.NEVER;
    }
    return p;
  });
}

/** An IPv4 or IPv6 address (text kept as written, trimmed). */
export const ipAddress = z.unknown().transform((v, ctx): string => {
  if (typeof v === 'string' && isIpText(v.trim())) return v.trim();
  ctx.addIssue({ code: 'custom', message: `expected an IP address, got ${describeValue(v)}` });
  return z.NEVER;
});

/**
 * An IPv4 or IPv6 address as text; an IPv6 address may carry a zone
 * (`fe80::1%eth0`), which a host or listen address needs on a link-local net.
 */
function isIpText(s: string): boolean {
  const zone = s.indexOf('%');
  if (zone < 0) return parseIp(s) !== null;
  return /^[0-9A-Za-z.:-]+$/.test(s.slice(zone + 1)) && parseIp(s.slice(0, zone))?.version === 6;
}

const DNS_NAME = /^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/** An IP address or DNS host name. */
export const hostName = z.unknown().transform((v, ctx): string => {
  if (typeof v === 'string' && (isIpText(v) || DNS_NAME.test(v))) return v;
  ctx.addIssue({ code: 'custom', message: `expected an IP address or DNS name, got ${describeValue(v)}` });
  return z.NEVER;
});

/** `host:port`, `[ipv6]:port`, or `:port` (all addresses, written as `::`). */
export const hostPort = z.unknown().transform((v, ctx): HostPort => {
  const bad = (): never => {
    ctx.addIssue({ code: 'custom', message: `expected "host:port" (IPv6 as "[addr]:port"), got ${describeValue(v)}` });
    return z.NEVER;
  };
  if (typeof v !== 'string') return bad();
  let host: string;
  let portText: string;
  const s = v.trim();
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0 || s[end + 1] !== ':') return bad();
    host = s.slice(1, end);
    portText = s.slice(end + 2);
    if (!isIpText(host) || !host.includes(':')) return bad();
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0 || s.indexOf(':') !== colon) return bad();
    host = s.slice(0, colon) || '::';
    portText = s.slice(colon + 1);
    if (host !== '::' && !isIpText(host) && !DNS_NAME.test(host)) return bad();
  }
  if (!/^\d{1,5}$/.test(portText) || !isPort(Number(portText))) {
    ctx.addIssue({ code: 'custom', message: `${PORT_MSG} after ":", got ${describeValue(v)}` });
    return z.NEVER;
  }
  return { host, port: Number(portText) };
});

/** An integer in [min, max]; `what` names it in the message (e.g. "a duration in milliseconds"). */
export function intIn(min: number, max: number, what = 'an integer') {
  return z.unknown().transform((v, ctx): number => {
    if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max) return v;
    ctx.addIssue({ code: 'custom', message: `expected ${what} ${min}-${max}, got ${describeValue(v)}` });
    return z.NEVER;
  });
}

/** A number in [min, max] (fractions allowed). */
export function numberIn(min: number, max: number, what = 'a number') {
  return z.unknown().transform((v, ctx): number => {
    if (typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max) return v;
    ctx.addIssue({ code: 'custom', message: `expected ${what} between ${min} and ${max}, got ${describeValue(v)}` });
    return z.NEVER;
  });
}

/** A non-empty string. */
export function nonEmptyString(what = 'a non-empty string') {
  return z.unknown().transform((v, ctx): string => {
    if (typeof v === 'string' && v.trim() !== '') return v;
    ctx.addIssue({ code: 'custom', message: `expected ${what}, got ${describeValue(v)}` });
    return z.NEVER;
  });
}

/** A file path, resolved against `baseDir` (the config file's directory) when relative. */
export function filePath(baseDir: string) {
  return z.unknown().transform((v, ctx): string => {
    if (typeof v === 'string' && v.trim() !== '' && !v.includes('\0')) return isAbsolute(v) ? v : resolve(baseDir, v);
    ctx.addIssue({ code: 'custom', message: `expected a file path, got ${describeValue(v)}` });
    return z.NEVER;
  });
}

/** A log destination: `-` for stdout, else a file path resolved like {@link filePath}. */
export function logPath(baseDir: string) {
  return z.unknown().transform((v, ctx): string => {
    if (v === '-') return v;
    if (typeof v === 'string' && v.trim() !== '' && !v.includes('\0')) return isAbsolute(v) ? v : resolve(baseDir, v);
    ctx.addIssue({ code: 'custom', message: `expected "-" (stdout) or a file path, got ${describeValue(v)}` });
    return z.NEVER;
  });
}

/** A Linux interface name: 1–15 characters of letters, digits, `_`, `.`, `-` (IFNAMSIZ is 16 with the NUL). */
export const interfaceName = z.unknown().transform((v, ctx): string => {
  if (typeof v === 'string' && /^[A-Za-z0-9_.-]{1,15}$/.test(v) && v !== '.' && v !== '..') return v;
  ctx.addIssue({ code: 'custom', message: `expected an interface name of 1-15 letters, digits, "_", "." or "-", got ${describeValue(v)}` });
  return z.NEVER;
});

/** A non-empty list of `item`s. */
export function nonEmptyList<T extends z.ZodType>(item: T, what: string) {
  return z.array(item).min(1, { error: `expected at least one ${what}` });
}
