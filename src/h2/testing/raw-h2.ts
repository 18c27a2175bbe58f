/**
 * A minimal raw HTTP/2 client for tests: sends the preface, SETTINGS and a
 * HEADERS frame with literal (non-indexed, non-Huffman) HPACK fields, so a
 * test can send requests node's own client refuses to build (a CONNECT with
 * :path but no :protocol…), and reads back frame headers (type, flags,
 * stream, RST_STREAM / GOAWAY codes). No HPACK decoding.
 */
import { connect, type TLSSocket } from 'node:tls';

/** One received frame (RFC 9113 §4.1). */
export interface RawFrame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

/** Frame types used here (RFC 9113 §6). */
export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

function hpackInt(value: number, prefixBits: number, first: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) | 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

/** HPACK literal header field without indexing, new name (RFC 7541 §6.2.2), no Huffman. */
export function hpackLiteral(fields: readonly (readonly [string, string])[]): Buffer {
  const parts: number[] = [];
  for (const [n, v] of fields) {
    parts.push(0x00, ...hpackInt(n.length, 7, 0), ...Buffer.from(n, 'latin1'), ...hpackInt(v.length, 7, 0), ...Buffer.from(v, 'latin1'));
  }
  return Buffer.from(parts);
}

/** One frame's bytes. */
export function frame(type: number, flags: number, streamId: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** A TLS connection speaking raw HTTP/2 frames. */
export class RawH2 {
  readonly frames: RawFrame[] = [];
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(private readonly sock: TLSSocket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 9) {
        const len = this.buf.readUIntBE(0, 3);
        if (this.buf.length < 9 + len) break;
        const f = { type: this.buf[3]!, flags: this.buf[4]!, streamId: this.buf.readUInt32BE(5) & 0x7fffffff, payload: this.buf.subarray(9, 9 + len) };
        this.buf = this.buf.subarray(9 + len);
        this.frames.push(f);
        // ACK the server's SETTINGS (RFC 9113 §6.5.3).
        if (f.type === FRAME.SETTINGS && (f.flags & 1) === 0) sock.write(frame(FRAME.SETTINGS, 1, 0));
      }
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => undefined);
  }

  /** Connects with ALPN h2 and sends the preface and an empty SETTINGS. */
  static open(opts: { host: string; port: number; ca: string; cert?: string; key?: string; servername: string }): Promise<RawH2> {
    return new Promise((resolve, reject) => {
      const sock = connect({ host: opts.host, port: opts.port, ca: opts.ca, cert: opts.cert, key: opts.key, servername: opts.servername, ALPNProtocols: ['h2'] }, () => {
        const r = new RawH2(sock);
        sock.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]));
        resolve(r);
      });
      sock.once('error', reject);
    });
  }

  /** Sends HEADERS (END_HEADERS, and END_STREAM when `endStream`) on `streamId`. */
  headers(streamId: number, fields: readonly (readonly [string, string])[], endStream = false): void {
    this.sock.write(frame(FRAME.HEADERS, 0x4 | (endStream ? 0x1 : 0), streamId, hpackLiteral(fields)));
  }

  /** Sends raw bytes. */
  write(b: Uint8Array): void {
    this.sock.write(b);
  }

  /** Waits until a frame matching `pred` arrived (or the connection closed, or `ms` passed); returns it or null. */
  async waitFor(pred: (f: RawFrame) => boolean, ms = 3_000): Promise<RawFrame | null> {
    const end = Date.now() + ms;
    for (;;) {
      const f = this.frames.find(pred);
      if (f !== undefined) return f;
      if (this.closed || Date.now() > end) return null;
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, end - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  close(): void {
    this.sock.destroy();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
