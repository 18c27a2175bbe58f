/**
 * Wires an {@link H3Connection} to a QUIC connection's events (readable,
 * writable, established, closed) — the glue agent and gateway both need.
 * It sees QUIC only through {@link QuicEventedTransport}: the
 * {@link QuicTransport} interface plus the event hook and flush control
 * (src/quic's QuicConnection satisfies it structurally).
 */

import type { QuicTransport } from '../quic/transport.js';
import { H3Connection, type H3ConnectionOptions } from './connection.js';
import { H3Error } from './errors.js';

/** Events a QUIC connection reports to its application. */
export type QuicEvent = 'established' | 'readable' | 'writable' | 'closed';

/** Why the QUIC connection ended, as far as HTTP/3 cares. */
export interface QuicEndInfo {
  /** The code is an application (HTTP/3) code rather than a transport one. */
  readonly app: boolean;
  readonly errorCode: number;
  readonly reason: string;
}

/** The event hook, compared bivariantly so a connection whose hook names its own class still fits. */
type QuicEventHook = { hook(c: QuicEventedTransport, ev: QuicEvent): void }['hook'];

/** What {@link attachH3} needs of a QUIC connection: the transport, its event hook and flush control. */
export interface QuicEventedTransport extends QuicTransport {
  readonly isEstablished: boolean;
  readonly isClosed: boolean;
  /** Set once closed. */
  readonly closeInfo: QuicEndInfo | null;
  /** Called for each event; attachH3 installs it. */
  onEvent: QuicEventHook | null;
  /** Ask for `writable` events while true. */
  watchWritable: boolean;
  /** Send what was queued now. */
  flush(): void;
}

/**
 * Create an HTTP/3 connection on `conn` and install `conn.onEvent` (it
 * replaces any handler; chain your own through `onEvent`). SETTINGS go out
 * at once if the connection is established (server `onConnection`), else on
 * its `established` event. On `closed` the H3 layer is told once (tunnels
 * get onClose with the peer's H3 code, or H3_REQUEST_CANCELLED when QUIC
 * itself ended: idle timeout, transport or TLS error). Calls made outside
 * these events (a tunnel send from a TUN read) need `conn.flush()` after
 * the batch. `watchWritable` follows {@link H3Connection.wantsWritable}.
 */
export function attachH3(conn: QuicEventedTransport, options: H3ConnectionOptions = {}, onEvent?: (ev: QuicEvent) => void): H3Connection {
  const h3 = new H3Connection(conn, options);
  conn.onEvent = (_c, ev) => {
    switch (ev) {
      case 'established':
        h3.start();
        break;
      case 'readable':
        h3.handleReadable();
        h3.handleDatagrams();
        h3.handleWritable();
        break;
      case 'writable':
        h3.handleWritable();
        break;
      case 'closed': {
        // Tunnels see the peer's H3 code; a transport-level end (idle timeout,
        // QUIC or TLS error) cut their streams short: H3_REQUEST_CANCELLED.
        const info = conn.closeInfo;
        h3.handleTransportClosed(info?.app ? info.errorCode : H3Error.H3_REQUEST_CANCELLED, info?.reason ?? '');
        break;
      }
    }
    onEvent?.(ev);
    if (!conn.isClosed) {
      conn.watchWritable = h3.wantsWritable();
      conn.flush();
    }
  };
  if (conn.isEstablished) {
    h3.start();
    conn.flush();
  }
  return h3;
}
