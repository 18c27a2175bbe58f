/**
 * Wires an {@link H3Connection} to a QUIC connection's events (readable,
 * writable, established, closed) — the glue agent and gateway both need.
 */

import type { QuicConnection } from '../quic/connection.js';
import { H3Connection, type H3ConnectionOptions } from './connection.js';
import { H3Error } from './errors.js';

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
export function attachH3(
  conn: QuicConnection,
  options: H3ConnectionOptions = {},
  onEvent?: (ev: 'established' | 'readable' | 'writable' | 'closed') => void,
): H3Connection {
  const h3 = new H3Connection(conn, options);
  conn.userData = h3;
  conn.onEvent = (c, ev) => {
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
        const info = c.closeInfo;
        h3.handleTransportClosed(info?.app ? info.errorCode : H3Error.H3_REQUEST_CANCELLED, info?.reason ?? '');
        break;
      }
    }
    onEvent?.(ev);
    if (!c.isClosed) {
      c.watchWritable = h3.wantsWritable();
      c.flush();
    }
  };
  if (conn.isEstablished) {
    h3.start();
    conn.flush();
  }
  return h3;
}
