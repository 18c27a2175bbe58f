/**
 * The inbound decision (issue #12 item 8): may a packet from the gateway's
 * network enter the tunnel toward an agent? Return traffic of flows the
 * agent side opened passes (stateful, {@link ConnTrack}); anything else only
 * when the owning identity's inbound rules allow it. Everything refused is a
 * counted drop with a reason. Sans-IO; one parse per packet, shared with the
 * caller through {@link InboundFilter.info}.
 */
import { DropReason, PacketInfo, parseIpPacket } from '../../packet/ip-packet.js';
import { dropNames } from '../drop-names.js';
import { ConnTrack, type ConnTrackOptions, type FlowOwner } from './conn-track.js';
import { isIcmpError } from './quoted-packet.js';

/** Why a packet toward an agent was refused. Indexes {@link INBOUND_DROP_NAMES} (metric `reason` values). 0 = passed. */
export const InboundDrop = {
  NONE: 0,
  /** Not return traffic of a flow the agent side opened, and no inbound rule of the identity allows it. */
  INBOUND_UNSOLICITED: 1,
  /** An ICMP error that quotes no tracked flow of the session (and no rule allows it). */
  INBOUND_ICMP_UNTRACKED: 2,
  /** A non-first fragment: no ports to match a flow or rule on (fragments are not reassembled). */
  INBOUND_FRAGMENT: 3,
  /** The IP or transport header does not parse. */
  INBOUND_MALFORMED: 4,
} as const;

/** Snake-case names of {@link InboundDrop} codes. */
export const INBOUND_DROP_NAMES: readonly string[] = dropNames(InboundDrop);

/** What the filter asks of an identity's inbound rules (config/policy.ts IdentityPolicy satisfies it). Must not allocate. */
export interface InboundRules {
  allowsInbound(buf: Uint8Array, p: PacketInfo): boolean;
}

/**
 * The gateway's inbound filter: a connection tracker seeded by what agents
 * send, and the per-packet verdict on what the network sends to them.
 * Owners are compared with === (the gateway uses the peer identity).
 */
export class InboundFilter {
  readonly track: ConnTrack;
  /** The last judged packet, parsed (valid until the next {@link judge} while the buffer is unchanged). */
  readonly info = new PacketInfo();
  /** True when the last judged packet parsed completely (the flow tracker may take {@link info} as is). */
  parsed = false;

  constructor(opts: ConnTrackOptions) {
    this.track = new ConnTrack(opts);
  }

  /**
   * Verdict on the packet buf[off, off+len) from the network toward the
   * agent `owner` (the gateway passes the peer identity), whose rules are `rules`: 0 to pass, else an
   * {@link InboundDrop} code for the caller to count. Allocation-free; reads
   * `buf` only.
   */
  judge(buf: Uint8Array, off: number, len: number, owner: FlowOwner, rules: InboundRules, now: number): number {
    const p = this.info;
    const r = parseIpPacket(buf, off, len, p);
    this.parsed = r === DropReason.NONE;
    if (r === DropReason.FRAGMENT) return InboundDrop.INBOUND_FRAGMENT;
    // Protocols without ports (GRE, ESP…) are matched on addresses and protocol (the parser left ports 0).
    if (r !== DropReason.NONE && r !== DropReason.UNSUPPORTED_PROTO) return InboundDrop.INBOUND_MALFORMED;
    if (isIcmpError(p)) {
      if (this.track.matchIcmpError(buf, p, owner, now) || rules.allowsInbound(buf, p)) return 0;
      return InboundDrop.INBOUND_ICMP_UNTRACKED;
    }
    if (this.track.matchReturn(buf, p, owner, now)) return 0;
    if (!rules.allowsInbound(buf, p)) return InboundDrop.INBOUND_UNSOLICITED;
    // Admitted by a rule: track it, so the agent's answers pass the outbound policy.
    this.track.admit(buf, p, owner, now);
    return 0;
  }
}
