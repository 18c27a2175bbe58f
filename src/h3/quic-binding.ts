/**
 * Wires an {@link H3Connection} to a QUIC connection's events (readable,
 * writable, established, closed) — the glue agent and gateway both need.
 */

import type { QuicConnection } from '../quic/connection.js';
import { H3Connection, type H3ConnectionOptions } from './connection.js';

/**
 * Create an HTTP/3 connection on `conn` and install `conn.onEvent` (it
 * replaces any handler; chain your own through `onEvent`). SETTINGS go out
 * at once if the connection is established (server `onConnection`), else on
 * its `established` event. On `closed` the H3 layer is told once (tunnels
 * get onClose). `watchWritable` follows {@link H3Connection.wantsWritable}.
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
        const info = c.closeInfo;
        h3.handleTransportClosed(info?.app ? info.errorCode : 0, info?.reason ?? '');
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
