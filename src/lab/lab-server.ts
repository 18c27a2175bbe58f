/**
 * The lab's server workload (runs in the server namespace): an HTTP/1.1
 * server that serves files from a directory and hashes uploads, and a UDP
 * echo server. Dual-stack. Used by the end-to-end tests and the demo.
 *
 *   node dist/lab/lab-server.js --http 80 --udp-echo 7 --dir DIR
 */
import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { createSocket } from 'node:dgram';
import { basename, join } from 'node:path';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : dflt;
}

const httpPort = Number(arg('--http', '80'));
const udpPort = Number(arg('--udp-echo', '7'));
const dir = arg('--dir', process.cwd());

const http = createServer((req, res) => {
  const url = req.url ?? '/';
  if ((req.method === 'POST' || req.method === 'PUT') && url.startsWith('/upload')) {
    const h = createHash('sha256');
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      h.update(c);
    });
    req.on('end', () => {
      const body = JSON.stringify({ bytes: n, sha256: h.digest('hex') }) + '\n';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    return;
  }
  if (req.method === 'GET' && url.startsWith('/files/')) {
    const f = join(dir, basename(decodeURIComponent(url.slice(7))));
    let size: number;
    try {
      size = statSync(f).size;
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain', 'content-length': 10 });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
    createReadStream(f).pipe(res);
    return;
  }
  const body = `hello from the server at ${req.socket.localAddress}; you are ${req.socket.remoteAddress}\n`;
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
http.listen(httpPort, '::');

const udp = createSocket({ type: 'udp6', ipv6Only: false });
udp.on('message', (msg, rinfo) => udp.send(msg, rinfo.port, rinfo.address));
udp.bind(udpPort, '::');

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    http.close();
    udp.close();
    process.exit(0);
  });
}
