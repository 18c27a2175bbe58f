/**
 * Bounded string → small-integer registries for label values (identities,
 * close reasons, drop reasons, ICMP types), so metric cardinality has a hard
 * ceiling and hot paths carry integers instead of strings.
 */

/** Label value used once a registry is full. */
export const OVERFLOW_LABEL = 'other';

/**
 * Assigns ids 0.. to distinct strings up to `capacity`; later strings all
 * map to the id of {@link OVERFLOW_LABEL}. `sanitize` (optional) normalises
 * a value before lookup (e.g. to snake_case).
 */
export class LabelRegistry {
  readonly values: string[] = [];
  private readonly ids = new Map<string, number>();
  private overflowId = -1;

  constructor(
    private readonly capacity: number,
    private readonly sanitize: (s: string) => string = (s) => s,
  ) {}

  /** Id for `value`, registering it if there is room. Call at setup or once per flow/session, not per packet. */
  id(value: string): number {
    const v = this.sanitize(value);
    const known = this.ids.get(v);
    if (known !== undefined) return known;
    if (this.values.length < this.capacity - 1 || v === OVERFLOW_LABEL) return this.add(v);
    if (this.overflowId < 0) this.overflowId = this.add(OVERFLOW_LABEL);
    return this.overflowId;
  }

  /** Number of ids handed out. */
  get size(): number {
    return this.values.length;
  }

  private add(v: string): number {
    const existing = this.ids.get(v);
    if (existing !== undefined) return existing;
    const id = this.values.length;
    this.values.push(v);
    this.ids.set(v, id);
    if (v === OVERFLOW_LABEL) this.overflowId = id;
    return id;
  }
}

/** Lower-case snake_case, at most 40 characters; empty becomes "unspecified". */
export function snakeLabel(s: string): string {
  const v = s.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '').slice(0, 40);
  return v === '' ? 'unspecified' : v;
}
