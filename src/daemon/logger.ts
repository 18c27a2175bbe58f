/**
 * The daemons' operational log (pino, JSON lines on stderr). Flow records go
 * to the separate flow log (src/telemetry/flow-log.ts), stdout by default.
 */
import { pino, type Logger } from 'pino';

/** A pino logger writing to stderr at `level` ('silent' disables it). */
export function daemonLogger(name: 'agent' | 'gateway', level: string): Logger {
  return pino({ name: `mtun-${name}`, level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: false }));
}
