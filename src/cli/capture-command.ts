/**
 * `mtun capture`: streams the packets crossing a running daemon's tunnel as
 * pcapng (from its admin `/capture` endpoint) to a file or stdout, passing
 * whole blocks only, and reports per-interface packets and the daemon's
 * drop count when the capture ends.
 */
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { Command, InvalidArgumentError, Option } from 'commander';
import { parsePrefixOrReason } from '../packet/ip-address.js';
import { adminGet, adminOption, adminUrl } from './admin-client.js';

/** pcapng block types the summary reads (pcapng §4.2, §4.3, §4.6). */
const BT_IDB = 1;
const BT_ISB = 5;
const BT_EPB = 6;
const ISB_IFDROP = 5;
const IF_NAME = 2;

/** What a capture stream contained, read block by block. */
export class CaptureSummary {
  readonly interfaces: string[] = [];
  readonly packets: number[] = [];
  /** isb_ifdrop per interface, once the daemon's statistics arrived. */
  readonly dropped: (number | null)[] = [];
  private pending: Buffer = Buffer.alloc(0);

  /** Feeds stream bytes; returns the complete blocks among them (to write out), keeping a partial one. */
  push(chunk: Buffer): Buffer {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let p = 0;
    const b = this.pending;
    while (b.length - p >= 12) {
      const len = b.readUInt32LE(p + 4);
      if (len < 12 || len % 4 !== 0) throw new Error(`capture: the daemon sent a bad pcapng block (length ${len})`);
      if (b.length - p < len) break;
      this.block(b.readUInt32LE(p), b.subarray(p, p + len));
      p += len;
    }
    const whole = b.subarray(0, p);
    this.pending = b.subarray(p);
    return whole;
  }

  /** Bytes of an incomplete block left at the end. */
  get partialBytes(): number {
    return this.pending.length;
  }

  private block(type: number, b: Buffer): void {
    if (type === BT_IDB) {
      this.interfaces.push(option(b, 16, IF_NAME)?.toString('utf8') ?? `if${this.interfaces.length}`);
      this.packets.push(0);
      this.dropped.push(null);
    } else if (type === BT_EPB) {
      const i = b.readUInt32LE(8);
      if (i < this.packets.length) this.packets[i]! += 1;
    } else if (type === BT_ISB) {
      const i = b.readUInt32LE(8);
      const d = option(b, 20, ISB_IFDROP);
      if (i < this.dropped.length && d !== null && d.length === 8) this.dropped[i] = Number(d.readBigUInt64LE(0));
    }
  }

  /** One line: packets per interface and the daemon's drops. */
  text(): string {
    const total = this.packets.reduce((a, b) => a + b, 0);
    const per = this.interfaces.map((n, i) => `${n} ${this.packets[i]}`).join(', ');
    const known = this.dropped.every((d) => d !== null) && this.dropped.length > 0;
    const drops = known ? `${this.dropped.reduce((a, b) => a! + b!, 0)} dropped by the daemon (reader too slow)` : 'daemon drop count not received (stopped early)';
    return `${total} packets${per ? ` (${per})` : ''}; ${drops}`;
  }
}

/** Value of the first option `code` in the options starting at b[start] (before the trailing length), or null. */
function option(b: Buffer, start: number, code: number): Buffer | null {
  let p = start;
  const end = b.length - 4;
  while (p + 4 <= end) {
    const c = b.readUInt16LE(p);
    const l = b.readUInt16LE(p + 2);
    if (c === 0 || p + 4 + l > end) return null;
    if (c === code) return b.subarray(p + 4, p + 4 + l);
    p += 4 + ((l + 3) & ~3);
  }
  return null;
}

function intArg(min: number, max: number): (v: string) => string {
  return (v) => {
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new InvalidArgumentError(`expected an integer ${min}-${max}.`);
    return v;
  };
}

function prefixArg(v: string): string {
  const r = v.includes('/') ? parsePrefixOrReason(v) : parsePrefixOrReason(`${v}/${v.includes(':') ? 128 : 32}`);
  if (typeof r === 'string') throw new InvalidArgumentError(`${r}.`);
  return v;
}

interface CaptureOptions {
  admin: string;
  write?: string;
  prefix?: string;
  port?: string;
  proto?: string;
  snaplen?: string;
  count?: string;
  bytes?: string;
  seconds?: string;
}

/** Builds the `capture` subcommand. Exit codes: 0 captured, 1 daemon unreachable or refused, 2 bad arguments. */
export function captureCommand(): Command {
  return new Command('capture')
    .description("stream packets crossing a running daemon's tunnel as pcapng (needs admin.capture.enabled: true in its config)")
    .addOption(adminOption())
    .option('-w, --write <file>', 'write to this file ("-" for stdout; default stdout when it is not a terminal)')
    .addOption(new Option('--prefix <prefix>', 'only packets from or to this address or prefix').argParser(prefixArg))
    .addOption(new Option('--port <port>', 'only TCP/UDP packets from or to this port').argParser(intArg(1, 65_535)))
    .addOption(new Option('--proto <proto>', 'only this transport').choices(['tcp', 'udp', 'icmp']))
    .addOption(new Option('--snaplen <bytes>', 'bytes kept of each packet').argParser(intArg(1, 65_535)))
    .addOption(new Option('-c, --count <packets>', 'stop after this many packets').argParser(intArg(1, 100_000_000)))
    .addOption(new Option('--bytes <bytes>', 'stop after this many captured bytes').argParser(intArg(1, 64 * 1024 ** 3)))
    .addOption(new Option('--seconds <s>', 'stop after this long').argParser(intArg(1, 86_400)))
    .addHelpText('after', `
Interfaces: <end>:tun-in (read from that end's TUN, into the tunnel) and
<end>:tun-out (out of the tunnel, written to its TUN), e.g. agent:tun-in.
Examples:
  mtun capture --admin 127.0.0.1:9091 -c 1000 -w agent.pcapng
  mtun capture --port 443 --proto tcp --snaplen 128 | tshark -r -
  mtun capture --seconds 30 -w cap.pcapng && mtun inspect cap.pcapng`)
    .exitOverride()
    .showHelpAfterError()
    .action(async function (this: Command, opts: CaptureOptions) {
      const url = adminUrl(opts.admin, '/capture');
      if (typeof url === 'string') this.error(`error: ${url}`, { exitCode: 2, code: 'mtun.badArgs' });
      const toStdout = opts.write === undefined || opts.write === '-';
      if (toStdout && process.stdout.isTTY) {
        this.error('error: pcapng is binary: give -w <file>, or pipe stdout into a program (tshark -r -, wireshark -k -i -)', { exitCode: 2, code: 'mtun.badArgs' });
      }
      const q = (url as URL).searchParams;
      const params: [string, string | undefined][] = [['prefix', opts.prefix], ['port', opts.port], ['proto', opts.proto], ['snaplen', opts.snaplen], ['packets', opts.count], ['bytes', opts.bytes], ['seconds', opts.seconds]];
      for (const [k, v] of params) if (v !== undefined) q.set(k, v);
      process.exitCode = await stream(url as URL, toStdout ? null : opts.write!);
    });
}

/** Streams the capture into `file` (or stdout); resolves with the exit code. */
async function stream(url: URL, file: string | null): Promise<number> {
  let code = 0;
  let finished: () => void = () => {};
  const done = new Promise<void>((r) => { finished = r; });
  const err = await adminGet(url, (res, req) => {
    if (res.statusCode !== 200) {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { if (text.length < 4096) text += c; });
      res.on('end', () => {
        process.stderr.write(`mtun capture: ${url.origin} refused (HTTP ${res.statusCode}): ${text.trim()}\n`);
        code = 1;
        finished();
      });
      return;
    }
    const out: Writable = file === null ? process.stdout : createWriteStream(file);
    const summary = new CaptureSummary();
    let stopped = false;
    const stop = (): void => {
      if (stopped) return;
      stopped = true;
      process.off('SIGINT', stop);
      req.destroy();
      end();
    };
    const end = (): void => {
      process.off('SIGINT', stop);
      const after = (): void => {
        process.stderr.write(`mtun capture: ${summary.text()}${file !== null ? `, written to ${file}` : ''}\n`);
        finished();
      };
      if (file === null) after();
      else out.end(after);
    };
    out.on('error', (e: NodeJS.ErrnoException) => {
      // A closed pipe (… | head) is the reader's way of saying "enough".
      if (e.code !== 'EPIPE') {
        process.stderr.write(`mtun capture: ${file ?? 'stdout'}: ${e.message}\n`);
        code = 1;
      }
      stop();
    });
    process.on('SIGINT', stop);
    res.on('data', (chunk: Buffer) => {
      let whole: Buffer;
      try {
        whole = summary.push(chunk);
      } catch (e) {
        process.stderr.write(`mtun capture: ${(e as Error).message}\n`);
        code = 1;
        stop();
        return;
      }
      // Backpressure reaches the daemon, whose bounded queue then drops and counts.
      if (whole.length > 0 && !out.write(whole)) {
        res.pause();
        out.once('drain', () => res.resume());
      }
    });
    res.on('end', () => {
      if (!stopped) {
        stopped = true;
        end();
      }
    });
    res.on('error', () => stop());
  });
  if (err !== null) {
    process.stderr.write(`mtun capture: ${err}\n`);
    return 1;
  }
  await done;
  return code;
}
