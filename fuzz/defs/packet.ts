/**
 * Network-input targets: one IP packet (IPv4/IPv6, TCP/UDP/ICMP) through the
 * parser and the in-place rewriters, capture files through the pcap/pcapng
 * reader, and the flow tracker fed a packet stream (stateful).
 */
import { existsSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureSeeds } from '../capture-seeds.js';
import {
  parseIpPacket, PacketInfo, DROP_REASON_NAMES, formatAddress, ipv4HeaderChecksumOk, decrementTtl, clampTcpMss, buildIcmpError,
  CaptureReader, CaptureFormatError, IpSpan, locateIp, FlowTracker,
} from '../targets.js';
import { InvariantError, ip, never, packetSeeds, tokens, type FuzzTarget } from './common.js';

const PACKET_DICT = tokens([[0x45], [0x46], [0x4f], [0x60], [6], [17], [1], [58], [0], [43], [44], [51], [60], [135], [2, 4], [3, 3], [8, 10], [0x16, 0x03, 0x01]]);

const pinfo = new PacketInfo();
const icmpOut = new Uint8Array(1400);
const reporter = ip('192.0.0.8');
const reporter6 = ip('fe80::1');

export const ipPacket: FuzzTarget = {
  name: 'ip-packet',
  covers: 'packet/ip-packet parseIpPacket + TCP options, ipv4HeaderChecksumOk, formatAddress; packet/rewrite decrementTtl, clampTcpMss; packet/icmp-error buildIcmpError',
  maxLen: 1600,
  seeds: packetSeeds,
  dict: PACKET_DICT,
  typed: never,
  run(b, ctx) {
    const r = parseIpPacket(b, 0, b.length, pinfo);
    ctx.note(r === 0 ? `ok:v${pinfo.ipVersion}/p${pinfo.proto}` : DROP_REASON_NAMES[r]!);
    if (r === 0) {
      formatAddress(b, pinfo.srcOff, pinfo.ipVersion);
      formatAddress(b, pinfo.dstOff, pinfo.ipVersion);
      if (pinfo.ipVersion === 4) ipv4HeaderChecksumOk(b, 0);
      if (pinfo.l4Off + pinfo.l4Len > b.length || pinfo.payloadOff + pinfo.payloadLen > b.length && pinfo.proto !== 17) {
        throw new InvariantError(`parsed span past the buffer (l4 ${pinfo.l4Off}+${pinfo.l4Len}, payload ${pinfo.payloadOff}+${pinfo.payloadLen}, len ${b.length})`);
      }
      const proto = pinfo.proto;
      if (clampTcpMss(b, 0, b.length, 1280) > 0 && parseIpPacket(b, 0, b.length, pinfo) !== 0) throw new InvariantError('MSS clamp broke the packet');
      if (proto !== pinfo.proto) throw new InvariantError('MSS clamp changed the protocol');
    }
    const kind = ctx.rng.below(4);
    const n = buildIcmpError(kind, 1280, b, 0, b.length, b[0]! >> 4 === 6 ? reporter6 : reporter, 0, icmpOut, 0, icmpOut.length);
    if (n > icmpOut.length) throw new InvariantError(`ICMP error of ${n} bytes exceeds its buffer`);
    if (n > 0 && parseIpPacket(icmpOut, 0, n, pinfo) !== 0) throw new InvariantError('built ICMP error does not parse');
    decrementTtl(b, 0, b.length);
  },
};

// ---- pcap / pcapng ----

// /dev/shm when present: the reader takes a path, so every input is written to a file first.
const captureDir = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const capturePath = join(captureDir, `mtun-fuzz-${process.pid}-${Math.random().toString(36).slice(2)}.pcap`);
const span = new IpSpan();
const MAX_FRAMES = 10_000;

export const pcap: FuzzTarget = {
  name: 'pcap',
  covers: 'pcap/capture-reader CaptureReader (pcap µs/ns both orders, pcapng SHB/IDB/EPB/SPB/PB), locateIp (Ethernet+VLAN, SLL, SLL2, NULL/LOOP, raw), then parseIpPacket per frame',
  maxLen: 2048,
  // Each input is a file write, an open and the reader's 1 MiB window; collecting those windows costs
  // tens of ms of CPU time now and then, charged to whichever input triggers it.
  hangMs: 250,
  seeds: () => captureSeeds(packetSeeds()),
  dict: [[0x0a, 0x0d, 0x0d, 0x0a], [0x4d, 0x3c, 0x2b, 0x1a], [0xd4, 0xc3, 0xb2, 0xa1], [0x4d, 0x3c, 0xb2, 0xa1], [6, 0, 0, 0], [3, 0, 0, 0], [1, 0, 0, 0], [9, 0, 1, 0]].map((a) => Uint8Array.from(a)),
  typed: (e) => e instanceof CaptureFormatError && e.message.startsWith('pcap: '),
  run(b, ctx) {
    writeFileSync(capturePath, b);
    // The scratch file is overwritten by the next input and removed by cleanup().
    const r = CaptureReader.open(capturePath);
    try {
      let frames = 0;
      while (frames < MAX_FRAMES && r.next()) {
        frames++;
        if (r.off + r.len > r.buf.length) throw new InvariantError(`frame ${frames} runs past the window buffer`);
        const lr = locateIp(r.linkType, r.buf, r.off, r.len, span);
        if (lr === 0) parseIpPacket(r.buf, span.off, span.len, pinfo);
      }
      ctx.note(frames > 0 ? `ok:${r.format}${r.truncated ? ':truncated' : ''}` : `empty:${r.format}${r.truncated ? ':truncated' : ''}`);
    } finally {
      r.close();
    }
  },
};

/** Removes the scratch capture file the pcap target writes. */
export function cleanup(): void {
  try {
    unlinkSync(capturePath);
  } catch {
    // never written
  }
}


// ---- flow tracker (stateful: one tracker sees the whole campaign's packet stream) ----

const MAX_FLOWS = 512;
let tracker: FlowTracker | null = null;
let trackerNowMs = 0;
let trackerInputs = 0;
let recordsOut = 0;

export const flowTracker: FuzzTarget = {
  name: 'flow-tracker',
  covers: 'inspect/flow-tracker FlowTracker.observe (TCP state machine, holes, TLS/HTTP peek, UDP/ICMP pairing, eviction at maxFlows=512) and onTimeout, on one packet stream across all inputs',
  maxLen: 1600,
  seeds: packetSeeds,
  dict: PACKET_DICT,
  typed: never,
  stateful: true,
  run(b, ctx) {
    if (tracker === null) tracker = new FlowTracker({ maxFlows: MAX_FLOWS, sink: () => void recordsOut++ });
    trackerNowMs += ctx.rng.below(ctx.rng.oneIn(64) ? 200_000 : 50);
    const r = tracker.observe(b, 0, b.length, ctx.rng.below(2), trackerNowMs);
    ctx.note(r === 0 ? 'ok' : DROP_REASON_NAMES[r] ?? `code ${r}`);
    if (++trackerInputs % 1024 === 0) {
      if (tracker.nextTimeoutMs() <= trackerNowMs) tracker.onTimeout(trackerNowMs);
      const live = tracker.liveFlows().length;
      if (live > MAX_FLOWS) throw new InvariantError(`${live} live flows above maxFlows ${MAX_FLOWS}`);
    }
  },
};
