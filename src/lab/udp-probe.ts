/**
 * UDP echo client for the lab: sends `count` datagrams of `size` bytes
 * (each with a distinct pattern) to host:port, one at a time with a
 * per-datagram timeout, and prints JSON {sent, received, mismatched, lost}.
 *
 *   node dist/lab/udp-probe.js HOST PORT [count=100] [size=512]
 */
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';

const [host, portText, countText = '100', sizeText = '512'] = process.argv.slice(2);
if (!host || !portText) {
  process.stderr.write('usage: udp-probe HOST PORT [count] [size]\n');
  process.exit(2);
}
const port = Number(portText);
const count = Math.min(100_000, Number(countText));
const size = Math.min(65_000, Number(sizeText));
const sock = createSocket(isIPv6(host) ? 'udp6' : 'udp4');
let sent = 0;
let received = 0;
let mismatched = 0;
let lost = 0;

function payload(i: number): Buffer {
  const b = Buffer.alloc(size);
  for (let k = 0; k < size; k++) b[k] = (i * 31 + k) & 0xff;
  return b;
}

async function main(): Promise<void> {
  for (let i = 0; i < count; i++) {
    const want = payload(i);
    const got = await new Promise<Buffer | null>((res) => {
      const t = setTimeout(() => {
        sock.off('message', on);
        res(null);
      }, 1000);
      const on = (m: Buffer) => {
        clearTimeout(t);
        sock.off('message', on);
        res(m);
      };
      sock.on('message', on);
      sock.send(want, port, host);
      sent++;
    });
    if (got === null) lost++;
    else if (got.equals(want)) received++;
    else mismatched++;
  }
  process.stdout.write(JSON.stringify({ sent, received, mismatched, lost }) + '\n');
  sock.close();
}
void main();
