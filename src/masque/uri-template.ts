/**
 * URI Templates (RFC 6570, levels 1–3, string values) for MASQUE: the client
 * expands `https://{gateway}/.well-known/masque/ip/{target}/{ipproto}/`, the
 * gateway matches an incoming `:path` back to variable values.
 */

/** Default CONNECT-IP template (RFC 9484 §3 well-known form). */
export const CONNECT_IP_DEFAULT_TEMPLATE = 'https://{gateway}/.well-known/masque/ip/{target}/{ipproto}/';
/** Default CONNECT-UDP template (RFC 9298 §2, §8: well-known URI). */
export const CONNECT_UDP_DEFAULT_TEMPLATE = 'https://{gateway}/.well-known/masque/udp/{target_host}/{target_port}/';

type Part = { lit: string } | { op: string; vars: string[] };

interface OpSpec {
  first: string;
  sep: string;
  named: boolean;
  ifEmpty: string;
  allowReserved: boolean;
}

// RFC 6570 Appendix A table.
const OPS: Record<string, OpSpec> = {
  '': { first: '', sep: ',', named: false, ifEmpty: '', allowReserved: false },
  '+': { first: '', sep: ',', named: false, ifEmpty: '', allowReserved: true },
  '#': { first: '#', sep: ',', named: false, ifEmpty: '', allowReserved: true },
  '.': { first: '.', sep: '.', named: false, ifEmpty: '', allowReserved: false },
  '/': { first: '/', sep: '/', named: false, ifEmpty: '', allowReserved: false },
  ';': { first: ';', sep: ';', named: true, ifEmpty: '', allowReserved: false },
  '?': { first: '?', sep: '&', named: true, ifEmpty: '=', allowReserved: false },
  '&': { first: '&', sep: '&', named: true, ifEmpty: '=', allowReserved: false },
};

/** Parses a template into literal and expression parts; throws `masque: …` on a malformed template (configuration error). */
function parseTemplate(t: string): Part[] {
  const parts: Part[] = [];
  let i = 0;
  while (i < t.length) {
    const open = t.indexOf('{', i);
    if (open < 0) {
      parts.push({ lit: t.slice(i) });
      break;
    }
    if (open > i) parts.push({ lit: t.slice(i, open) });
    const close = t.indexOf('}', open);
    if (close < 0) throw new Error(`masque: URI template ${JSON.stringify(t)}: unclosed '{'`);
    let body = t.slice(open + 1, close);
    let op = '';
    if (body.length > 0 && '+#./;?&'.includes(body[0]!)) {
      op = body[0]!;
      body = body.slice(1);
    }
    const vars = body.split(',');
    for (const v of vars) {
      if (!/^[A-Za-z0-9_]+$/.test(v)) throw new Error(`masque: URI template ${JSON.stringify(t)}: bad variable ${JSON.stringify(v)} (modifiers unsupported)`);
    }
    parts.push({ op, vars });
    i = close + 1;
  }
  return parts;
}

function pctEncode(s: string, allowReserved: boolean): string {
  const bytes = Buffer.from(s, 'utf8');
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    const ch = String.fromCharCode(c);
    if (/[A-Za-z0-9\-._~]/.test(ch) || (allowReserved && /[:/?#[\]@!$&'()*+,;=]/.test(ch))) out += ch;
    else out += '%' + c.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/**
 * Expands `template` with string variables (RFC 6570 §3.2). Undefined
 * variables are omitted as the RFC says. The value `*` is kept literal in
 * simple expansions (the RFC 9484 §4.4 example path is `/.well-known/masque/ip/*​/*​/`),
 * and `{gateway}` (host[:port]) keeps reserved characters such as `:`.
 * Throws `masque: …` on a malformed template.
 */
export function expandTemplate(template: string, vars: Readonly<Record<string, string | undefined>>): string {
  let out = '';
  for (const p of parseTemplate(template)) {
    if ('lit' in p) {
      out += p.lit;
      continue;
    }
    const spec = OPS[p.op]!;
    const items: string[] = [];
    for (const name of p.vars) {
      const v = vars[name];
      if (v === undefined) continue;
      // `{gateway}` is mtun's authority placeholder (host[:port]); it expands like `{+gateway}`.
      const enc = v === '*' && p.op === '' ? '*' : pctEncode(v, spec.allowReserved || name === 'gateway');
      if (spec.named) items.push(v === '' ? name + spec.ifEmpty : `${name}=${enc}`);
      else items.push(enc);
    }
    if (items.length > 0) out += spec.first + items.join(spec.sep);
  }
  return out;
}

/** Percent-decodes; null on a malformed escape or invalid UTF-8. */
export function pctDecode(s: string): string | null {
  if (!s.includes('%')) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 37 /* % */) {
      const h = s.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(h)) return null;
      bytes.push(parseInt(h, 16));
      i += 2;
    } else if (c < 0x80) {
      bytes.push(c);
    } else {
      for (const b of Buffer.from(s[i]!, 'utf8')) bytes.push(b);
    }
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
  } catch {
    return null;
  }
}

/** Splits an absolute `https://authority/path?query` URL into HTTP/3 pseudo-header values. Throws `masque: …` if not absolute. */
export function splitUrl(url: string): { scheme: string; authority: string; path: string } {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^#]*)/.exec(url);
  if (!m) throw new Error(`masque: ${JSON.stringify(url)} is not an absolute URL`);
  return { scheme: m[1]!.toLowerCase(), authority: m[2]!, path: m[3] === '' ? '/' : m[3]! };
}

/**
 * A compiled template for the reverse direction: matches a request `:path`
 * (with query) against the path part of the template and returns the
 * percent-decoded variable values. Build once at configuration time.
 */
export class TemplateMatcher {
  private readonly re: RegExp;
  private readonly groups: { vars: string[]; op: string }[] = [];

  /** Throws `masque: …` on a malformed template. Scheme and authority, if present, are ignored for matching. */
  constructor(readonly template: string) {
    let t = template;
    const abs = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*/.exec(t);
    if (abs) t = t.slice(abs[0].length);
    let src = '^';
    for (const p of parseTemplate(t)) {
      if ('lit' in p) {
        src += p.lit.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        continue;
      }
      this.groups.push({ vars: p.vars, op: p.op });
      switch (p.op) {
        case '':
        case '+':
          src += p.vars.length === 1 ? (p.op === '+' ? '(.*?)' : '([^/?#]*)') : '([^/?#]*)';
          break;
        case '/':
          src += '((?:/[^/?#]*)*)';
          break;
        case '?':
          src += '(?:\\?([^#]*))?';
          break;
        case '&':
          src += '(?:&([^#]*))?';
          break;
        default:
          src += `((?:\\${p.op}[^/?#]*)*)`;
      }
    }
    this.re = new RegExp(src + '$');
  }

  /** Returns decoded variables (absent ones omitted), or null when the path does not match or an escape is malformed. */
  match(path: string): Record<string, string> | null {
    const m = this.re.exec(path);
    if (!m) return null;
    const out: Record<string, string> = {};
    for (let g = 0; g < this.groups.length; g++) {
      const { vars, op } = this.groups[g]!;
      const raw = m[g + 1];
      if (raw === undefined || raw === '') continue;
      if (op === '?' || op === '&' || op === ';') {
        for (const kv of raw.split(op === ';' ? ';' : '&')) {
          const eq = kv.indexOf('=');
          const k = eq < 0 ? kv : kv.slice(0, eq);
          if (!vars.includes(k)) continue;
          const v = pctDecode(eq < 0 ? '' : kv.slice(eq + 1));
          if (v === null) return null;
          out[k] = v;
        }
        continue;
      }
      const sep = op === '' || op === '+' ? ',' : op;
      const body = op === '' || op === '+' ? raw : raw.slice(1);
      const vals = vars.length === 1 ? [body] : body.split(sep);
      for (let i = 0; i < vars.length && i < vals.length; i++) {
        const v = pctDecode(vals[i]!);
        if (v === null) return null;
        out[vars[i]!] = v;
      }
    }
    return out;
  }
}
