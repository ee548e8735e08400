/**
 * The active version of each projection and the rebuilds' switch counter, in
 * memory, so a write names the state projection's keys (`muted`, `settings`)
 * without reading `proj:<name>:active` first, and tells a room's epoch (its
 * own counter, which the comment gate reads on the room's slot, plus the
 * switch counter: pipelines/read.ts `roomEpoch`) without reading the global
 * counter. Both only change when a rebuild switches a version, and the
 * processors' notifications then carry the new version: the push hub passes
 * each notification's version here, so a gateway serving the room learns it
 * at once (and re-reads the switch counter then). Everything else learns it
 * from the periodic re-read (`REFRESH_MS`: one GET per projection and one for
 * the counter) — for up to that long after a switch a write may check the
 * previous version's keys and acknowledge with the previous epoch. Versions
 * and the counter never go back, so the larger value wins.
 */
import type { RedisClient } from '../core/redis.ts';
import { activeVersion, switchesKey, type ProjectionNaming } from '../pipelines/naming.ts';

const PROJECTIONS = ['feed', 'sampled', 'tallies', 'state', 'held', 'gifts'] as const;
export type ProjectionName = (typeof PROJECTIONS)[number];

/** How often the active versions are re-read for rooms no notification speaks for. */
export const REFRESH_MS = 1000;

export class ProjectionVersions {
  private readonly current = new Map<string, number>();
  private switches = 0;
  private timer: NodeJS.Timeout | undefined;
  private loaded: Promise<void> | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly naming: ProjectionNaming,
  ) {}

  /** Reads every version now, then every REFRESH_MS. Resolves after the first read (or its failure: then version 1 until it succeeds). */
  start(): Promise<void> {
    if (!this.timer) {
      this.timer = setInterval(() => void this.refresh().catch(() => undefined), REFRESH_MS);
      this.timer.unref();
    }
    return (this.loaded ??= this.refresh().catch(() => undefined));
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  async refresh(): Promise<void> {
    const [switches, ...vs] = await Promise.all([this.redis.get(switchesKey(this.naming)), ...PROJECTIONS.map((p) => activeVersion(this.redis, this.naming, p))]);
    this.switches = Math.max(this.switches, Number(switches ?? 0) || 0);
    PROJECTIONS.forEach((p, i) => this.set(p, vs[i]!));
  }

  /** A version seen in a notification: kept when it is newer, and then the switch counter is re-read at once. */
  observe(projection: string, version: number): void {
    if (this.set(projection, version) && this.loaded) void this.refresh().catch(() => undefined);
  }

  private set(projection: string, version: number): boolean {
    if (!Number.isInteger(version)) return false;
    const known = this.current.get(projection);
    if (known !== undefined && version <= known) return false;
    this.current.set(projection, version);
    return known !== undefined;
  }

  get(projection: ProjectionName): number {
    return this.current.get(projection) ?? 1;
  }

  /** The epoch clients see for a room whose own epoch counter is `own`. */
  epochOf(own: number): number {
    return own + this.switches;
  }
}
