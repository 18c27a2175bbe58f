/**
 * The agent's watch over its transport (issue #15): while the tunnel rides
 * HTTP/3 it checks QUIC liveness four times a second and asks for the
 * fallback when {@link quicLooksDead} (and sends the PINGs of
 * {@link quicPingDue} on a tunnel that only receives); while it rides HTTP/2 it asks for an
 * HTTP/3 probe every `probeIntervalMs`. One timer at a time, on the daemon's clock.
 */
import type { Clock, ClockTimer } from '../daemon/ports.js';
import { newQuicLiveness, quicLooksDead, quicPingDue, type Carrier, type QuicLiveness } from './carrier.js';

/** How often QUIC liveness is read (control path: reads the connection's stats). */
export const LIVENESS_CHECK_MS = 250;

/** The `h2` config keys the watch uses. */
export interface TransportWatchConfig {
  readonly enabled: boolean;
  readonly quicDeadAfterMs: number;
  readonly probeIntervalMs: number;
}

/** What the watch asks of the agent. */
export interface TransportWatchHost {
  /** The open tunnel's carrier, or null. */
  current(): Carrier | null;
  /** QUIC looks dead: move to HTTP/2. */
  quicFailed(): Promise<void>;
  /** Over HTTP/2: try HTTP/3 and move back if it works. */
  probeH3(): Promise<void>;
}

/** See the module header. Does nothing when `h2.enabled` is false. */
export class TransportWatch {
  private timer: ClockTimer | null = null;
  private busy = false;
  private liveness: QuicLiveness = newQuicLiveness();

  constructor(
    private readonly config: TransportWatchConfig,
    private readonly clock: Clock,
    private readonly host: TransportWatchHost,
  ) {}

  /** A tunnel opened on `c`: start watching it. */
  opened(c: Carrier): void {
    this.closed();
    if (!this.config.enabled) return;
    if (c.transport === 'h3') {
      this.liveness = newQuicLiveness();
      this.timer = this.clock.every(LIVENESS_CHECK_MS, () => this.checkQuic(c));
    } else {
      this.timer = this.clock.every(this.config.probeIntervalMs, () => this.run(() => this.host.probeH3()));
    }
  }

  /** The tunnel went down or is switching: stop watching. */
  closed(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  private checkQuic(c: Carrier): void {
    if (this.host.current() !== c) return;
    const counts = c.packetCounts();
    if (counts === null) return;
    const now = this.clock.now();
    if (quicLooksDead(this.liveness, counts, now, this.config.quicDeadAfterMs)) {
      this.closed();
      this.run(() => this.host.quicFailed());
    } else if (quicPingDue(this.liveness, counts, now, this.config.quicDeadAfterMs)) {
      c.quic()?.ping();
    }
  }

  /** One switch or probe at a time. */
  private run(f: () => Promise<void>): void {
    if (this.busy) return;
    this.busy = true;
    f().finally(() => {
      this.busy = false;
    });
  }
}
