/**
 * `mtun inspect <capture>`: runs the passive flow tracker over a pcap/pcapng
 * file and prints one record per flow (table, or JSON lines with --json).
 */
import { Command, Option } from 'commander';
import { CaptureFormatError, CaptureReader, IpSpan, locateIp } from '../pcap/capture-reader.js';
import { DROP_REASON_COUNT, DROP_REASON_NAMES } from '../packet/ip-packet.js';
import { Direction, FlowTracker } from '../inspect/flow-tracker.js';
import { flowRecordJson, type FlowMeta, type FlowRecord } from '../inspect/flow-record.js';

/** Result of {@link inspectCapture}. */
export interface CaptureInspection {
  /** Records in order of each flow's first packet. */
  flows: { record: FlowRecord; meta: FlowMeta }[];
  frames: number;
  /** Non-zero drop/anomaly counters by reason label (link-layer and tracker). */
  drops: Record<string, number>;
  /** The file ended in the middle of a record. */
  truncated: boolean;
}

/** Options for {@link inspectCapture}. */
export interface InspectOptions {
  maxFlows?: number;
  /** Idle timeout override for established TCP flows, ms. */
  establishedTimeoutMs?: number;
}

/**
 * Reads a whole capture through a fresh {@link FlowTracker} (timeouts driven
 * by capture time; flows still open at the end report "open"). Throws
 * CaptureFormatError for a non-capture or corrupt file, fs errors as they are.
 */
export function inspectCapture(path: string, opts: InspectOptions = {}): CaptureInspection {
  const flows: { record: FlowRecord; meta: FlowMeta }[] = [];
  const tracker = new FlowTracker({
    sink: (record, meta) => flows.push({ record, meta }),
    maxFlows: opts.maxFlows,
    timeouts: opts.establishedTimeoutMs !== undefined ? { establishedMs: opts.establishedTimeoutMs } : undefined,
  });
  const linkDrops = new Float64Array(DROP_REASON_COUNT);
  const reader = CaptureReader.open(path);
  const span = new IpSpan();
  let nextTimeout = Infinity;
  try {
    while (reader.next()) {
      const r = locateIp(reader.linkType, reader.buf, reader.off, reader.len, span);
      if (r !== 0) {
        linkDrops[r]! += 1;
        continue;
      }
      const now = reader.tsMs;
      if (now >= nextTimeout) tracker.onTimeout(now);
      // A capture is one observation point: every packet is "out" for the counters.
      tracker.observe(reader.buf, span.off, span.len, Direction.OUT, now);
      nextTimeout = tracker.nextTimeoutMs();
    }
  } finally {
    reader.close();
  }
  tracker.flush('open');
  flows.sort((a, b) => a.meta.ordinal - b.meta.ordinal);
  const drops: Record<string, number> = {};
  for (let i = 1; i < DROP_REASON_COUNT; i++) {
    const n = tracker.drops[i]! + linkDrops[i]!;
    if (n > 0) drops[DROP_REASON_NAMES[i]!] = n;
  }
  return { flows, frames: reader.frames, drops, truncated: reader.truncated };
}

/** Renders the human-readable table. */
export function renderFlowTable(flows: { record: FlowRecord }[]): string {
  const rows = flows.map(({ record: r }) => [
    r.proto,
    `${fmtAddr(r.src)}:${r.srcPort}`,
    `${fmtAddr(r.dst)}:${r.dstPort}`,
    r.closeReason + (r.midstream ? '*' : ''),
    String(r.bytesSent),
    String(r.bytesReceived),
    `${r.packetsSent}/${r.packetsReceived}`,
    String(r.retransmits),
    r.handshakeRttMs === null ? '-' : r.handshakeRttMs.toFixed(3),
    r.sni ?? (r.httpRequests > 0 ? `http×${r.httpRequests}` : '-'),
    r.alpn ?? '-',
  ]);
  const head = ['PROTO', 'SRC', 'DST', 'CLOSE', 'BYTES→', 'BYTES←', 'PKTS→/←', 'RETX', 'RTT ms', 'SNI/HTTP', 'ALPN'];
  const all = [head, ...rows];
  const w = head.map((_, c) => Math.max(...all.map((row) => row[c]!.length)));
  const lines = all.map((row) => row.map((cell, c) => (c >= 4 && c <= 8 ? cell.padStart(w[c]!) : cell.padEnd(w[c]!))).join('  ').trimEnd());
  return `${lines.join('\n')}\n${flows.length} flow(s); * = picked up mid-stream\n`;
}

function fmtAddr(a: string): string {
  return a.includes(':') ? `[${a}]` : a;
}

function positiveInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

/** Builds the `inspect` subcommand. Exit codes: 0 ok, 2 bad arguments or not a capture file. */
export function inspectCommand(): Command {
  return new Command('inspect')
    .description('passive TCP/UDP/ICMP flow records from a pcap or pcapng capture (Ethernet, raw IP, Linux SLL/SLL2, BSD loopback)')
    .argument('<capture>', 'pcap or pcapng file')
    .option('--json', 'one JSON object per flow per line, in order of first packet', false)
    .addOption(new Option('--max-flows <n>', 'most flows tracked at once').default('262144'))
    .addOption(new Option('--established-timeout-ms <ms>', 'idle timeout of established TCP flows (default conntrack 432000 s)'))
    .addHelpText('after', `
Examples:
  tcpdump -i eth0 -w cap.pcap ...; mtun inspect cap.pcap
  mtun inspect --json cap.pcapng | jq 'select(.proto=="tcp") | .bytesReceived'`)
    .exitOverride()
    .showHelpAfterError()
    .action(function (this: Command, path: string, opts: { json: boolean; maxFlows: string; establishedTimeoutMs?: string }) {
      let res: CaptureInspection;
      try {
        const maxFlows = positiveInt('--max-flows', opts.maxFlows);
        const establishedTimeoutMs = opts.establishedTimeoutMs === undefined ? undefined : positiveInt('--established-timeout-ms', opts.establishedTimeoutMs);
        res = inspectCapture(path, { maxFlows, establishedTimeoutMs });
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        const msg = e instanceof CaptureFormatError ? err.message
          : err.code === 'ENOENT' ? `${path}: no such file`
          : err.code === 'EISDIR' ? `${path}: is a directory, not a capture file`
          : err.code === 'EACCES' ? `${path}: permission denied`
          : err.message;
        process.stderr.write(`mtun inspect: ${msg}\n`);
        process.exitCode = 2;
        return;
      }
      if (opts.json) {
        let out = '';
        for (const f of res.flows) out += `${flowRecordJson(f.record)}\n`;
        process.stdout.write(out);
      } else {
        process.stdout.write(renderFlowTable(res.flows));
      }
      const drops = Object.entries(res.drops).map(([k, v]) => `${k}=${v}`).join(' ');
      if (drops !== '' || res.truncated) {
        process.stderr.write(`mtun inspect: ${res.frames} frames${res.truncated ? ', file ends mid-record' : ''}${drops ? `; not tracked / anomalies: ${drops}` : ''}\n`);
      }
    });
}
