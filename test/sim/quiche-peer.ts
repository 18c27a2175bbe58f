/**
 * A QUIC client on Cloudflare quiche (the `@matrixai/quic-linux-x64` napi
 * binding, a devDependency), driven by hand over its own `node:dgram`
 * socket: an independent QUIC and TLS stack (BoringSSL) to test our engine
 * against, and one that offers 0-RTT when a ticket allows it; also quiche's
 * stateless packet writers, the byte reference for src/quic/long-header.ts.
 * Test-only: nothing in src/ loads quiche outside tests.
 */
import { createSocket, type Socket } from 'node:dgram';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';

interface HostPort {
  host: string;
  port: number;
}

/** The quiche `Config` calls used here. */
interface QuicheConfig {
  setApplicationProtos(protos: string[]): void;
  setMaxIdleTimeout(ms: number): void;
  setInitialMaxData(v: number): void;
  setInitialMaxStreamDataBidiLocal(v: number): void;
  setInitialMaxStreamDataBidiRemote(v: number): void;
  setInitialMaxStreamsBidi(v: number): void;
  setInitialMaxStreamsUni(v: number): void;
  enableDgram(enabled: boolean, recvQueueLen: number, sendQueueLen: number): void;
  enableEarlyData(): void;
}

/** The quiche `Connection` calls used here. */
export interface QuicheConnection {
  setSession(session: Uint8Array): void;
  recv(data: Uint8Array, info: { from: HostPort; to: HostPort }): number;
  send(out: Uint8Array): [number, unknown] | null;
  streamRecv(streamId: number, out: Uint8Array): [number, boolean] | null;
  streamSend(streamId: number, data: Uint8Array, fin: boolean): number | null;
  dgramSend(data: Uint8Array): void | null;
  dgramRecv(out: Uint8Array): number | null;
  timeout(): number | null;
  onTimeout(): void;
  close(app: boolean, err: number, reason: Uint8Array): void | null;
  applicationProto(): Uint8Array;
  session(): Uint8Array | null;
  isEstablished(): boolean;
  isResumed(): boolean;
  isInEarlyData(): boolean;
  isClosed(): boolean;
}

/** A long header as quiche parses it (`Header.fromSlice`). */
export interface QuicheHeader {
  ty: number;
  version: number;
  dcid: Uint8Array;
  scid: Uint8Array;
  token?: Uint8Array;
}

interface QuicheBinding {
  negotiateVersion(scid: Uint8Array, dcid: Uint8Array, out: Uint8Array): number;
  retry(scid: Uint8Array, dcid: Uint8Array, newScid: Uint8Array, token: Uint8Array, version: number, out: Uint8Array): number;
  Header: { fromSlice(data: Uint8Array, dcidLen: number): QuicheHeader };
  Config: {
    withBoringSslCtx(verifyPeer: boolean, verifyAllowFail: boolean, ca: Uint8Array | null, key: Uint8Array[] | null, cert: Uint8Array[] | null, sigalgs: string | null): QuicheConfig;
  };
  Connection: { connect(serverName: string | null, scid: Uint8Array, local: HostPort, remote: HostPort, config: QuicheConfig): QuicheConnection };
}

const quiche = createRequire(import.meta.url)('@matrixai/quic-linux-x64/node.napi.node') as QuicheBinding;
const utf8 = new TextEncoder();

/**
 * quiche's stateless packet calls (long-header parse, Retry, Version
 * Negotiation): the reference our TypeScript writers (src/quic/long-header.ts)
 * are compared with byte for byte.
 */
export const quicheStateless: Pick<QuicheBinding, 'negotiateVersion' | 'retry' | 'Header'> = quiche;

/** What the peer presents and offers. */
export interface QuichePeerOptions {
  /** CA (PEM) that must have issued the server certificate. */
  caPem: string;
  /** Client certificate and key (PEM) for mTLS. */
  certPem?: string;
  keyPem?: string;
  /** Offer early data (0-RTT) when resuming with a ticket that allows it. */
  earlyData?: boolean;
  /** A session ticket from an earlier connection, to resume. */
  session?: Uint8Array | null;
}

/** One quiche client connection on its own UDP socket; everything it receives is fed in and answered at once. */
export class QuichePeer {
  readonly conn: QuicheConnection;
  private readonly out = new Uint8Array(1500);
  private timer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly sock: Socket,
    private readonly remote: HostPort,
    o: QuichePeerOptions,
  ) {
    const cfg = quiche.Config.withBoringSslCtx(
      true,
      false,
      utf8.encode(o.caPem),
      o.keyPem !== undefined ? [utf8.encode(o.keyPem)] : null,
      o.certPem !== undefined ? [utf8.encode(o.certPem)] : null,
      null,
    );
    cfg.setApplicationProtos(['h3']);
    cfg.setMaxIdleTimeout(5_000);
    cfg.setInitialMaxData(4 << 20);
    cfg.setInitialMaxStreamDataBidiLocal(1 << 20);
    cfg.setInitialMaxStreamDataBidiRemote(1 << 20);
    cfg.setInitialMaxStreamsBidi(10);
    cfg.setInitialMaxStreamsUni(10);
    cfg.enableDgram(true, 64, 64);
    if (o.earlyData === true) cfg.enableEarlyData();
    const a = sock.address();
    const local = { host: a.address, port: a.port };
    this.conn = quiche.Connection.connect('localhost', randomBytes(16), local, remote, cfg);
    if (o.session != null) this.conn.setSession(o.session);
    sock.on('message', (msg, rinfo) => {
      try {
        this.conn.recv(msg, { from: { host: rinfo.address, port: rinfo.port }, to: local });
      } catch {
        /* quiche "Done" and undecryptable packets: nothing to do */
      }
      this.flush();
    });
  }

  /** Opens a socket on 127.0.0.1 and starts a connection to `remote` (send with {@link flush}). */
  static async connect(remote: HostPort, o: QuichePeerOptions): Promise<QuichePeer> {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    return new QuichePeer(s, remote, o);
  }

  /** Sends everything quiche has, and re-arms its timer. */
  flush(): void {
    for (;;) {
      let r: [number, unknown] | null;
      try {
        r = this.conn.send(this.out);
      } catch {
        break;
      }
      if (r === null) break;
      this.sock.send(this.out.slice(0, r[0]), this.remote.port, this.remote.host);
    }
    if (this.timer) clearTimeout(this.timer);
    const t = this.conn.timeout();
    this.timer =
      t === null
        ? null
        : setTimeout(() => {
            this.conn.onTimeout();
            this.flush();
          }, Math.max(1, Math.min(t, 1_000)));
  }

  /** Writes as much of `data` from `off` as flow control takes (FIN with the last byte); returns the new offset. */
  write(sid: number, data: Uint8Array, off: number): number {
    let n: number | null = 0;
    try {
      n = this.conn.streamSend(sid, data.subarray(off), true);
    } catch {
      n = 0; // not writable yet
    }
    this.flush();
    return off + (n ?? 0);
  }

  /** Reads what stream `sid` holds; `fin` is true once the peer's FIN was read. */
  read(sid: number): { data: Uint8Array; fin: boolean } {
    const buf = new Uint8Array(65_536);
    const parts: Uint8Array[] = [];
    let fin = false;
    for (;;) {
      let r: [number, boolean] | null;
      try {
        r = this.conn.streamRecv(sid, buf);
      } catch {
        break;
      }
      if (r === null) break;
      parts.push(buf.slice(0, r[0]));
      if (r[1]) {
        fin = true;
        break;
      }
    }
    this.flush(); // flow-control credit
    return { data: Buffer.concat(parts), fin };
  }

  /** Stops the timer and closes the socket. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.sock.close();
  }
}
