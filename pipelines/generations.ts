/**
 * A reader of the log across its generations (topics/generations.ts): one
 * worker at a time, on the oldest generation this group has not read to its
 * ends. A room's events of generation g all come before its events of g + 1,
 * so the next generation's worker starts only once the group committed every
 * partition of g up to g's ends (which exist once g is sealed: no writer can
 * add to it any more). The group of generation g is `<group>.g<g>` (its own
 * name for generation 0), since partition numbers mean other rooms there.
 *
 * The hold-back is per group, not per room: simple, and short, since the old
 * generation stops growing at the switch and its readers are usually at its
 * head by then.
 */
import type { RedisClient } from '../core/redis.ts';
import { currentGeneration, generationGroup, readGenerations, type Generation, type Generations } from '../topics/generations.ts';
import type { LogAdmin } from '../topics/kafka.ts';

export interface ChainWorker {
  stop(): Promise<void>;
}

export interface ChainOptions<W extends ChainWorker> {
  redis: RedisClient;
  admin: LogAdmin;
  keyPrefix: string;
  /** The declared topic (generation 0) and its partitions. */
  baseTopic: string;
  partitions: number;
  /** The group's name in generation 0. */
  group: string;
  /** Starts the worker of `g` in `groupId`; `until(p)` is where `g` ends in partition p once sealed (undefined before). */
  open(g: Generation, groupId: string, until: (partition: number) => number | undefined): Promise<W>;
  log?(m: string): void;
}

/** Pure: whether committed offsets reach a sealed generation's ends in every partition (a partition it never wrote counts as read). */
export function readToEnds(ends: Record<string, string>, committed: Map<number, string>): boolean {
  return Object.entries(ends).every(([p, end]) => Number(end) === 0 || Number(committed.get(Number(p)) ?? '-1') >= Number(end));
}

export class GenerationChain<W extends ChainWorker> {
  private gens: Generations | undefined;
  private worker: W | undefined;
  private on: Generation | undefined;
  private moving: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: ChainOptions<W>) {}

  /** The worker running now (undefined before start and while moving on). */
  get current(): W | undefined {
    return this.worker;
  }

  /** The generation it reads and its group. */
  get reading(): { generation: Generation; groupId: string } | undefined {
    return this.on ? { generation: this.on, groupId: generationGroup(this.o.group, this.on.generation) } : undefined;
  }

  private until(generation: number): (partition: number) => number | undefined {
    return (partition) => {
      const ends = this.gens?.list.find((g) => g.generation === generation)?.ends;
      return ends ? Number(ends[String(partition)] ?? 0) : undefined;
    };
  }

  private async read(): Promise<Generations> {
    this.gens = await readGenerations(this.o.redis, this.o.keyPrefix, this.o.baseTopic, this.o.partitions);
    return this.gens;
  }

  /** Whether this group read `g` to its ends (false while `g` is not sealed or is the current one). */
  private async done(g: Generation, gens: Generations): Promise<boolean> {
    if (!g.ends || g === currentGeneration(gens)) return false;
    return readToEnds(g.ends, await this.o.admin.committedOffsets(generationGroup(this.o.group, g.generation), g.topic));
  }

  async start(): Promise<void> {
    const gens = await this.read();
    let g = gens.list[0]!;
    for (const x of gens.list) {
      g = x;
      if (!(await this.done(x, gens))) break;
    }
    await this.open(g);
  }

  private async open(g: Generation): Promise<void> {
    const groupId = generationGroup(this.o.group, g.generation);
    this.on = g;
    this.worker = await this.o.open(g, groupId, this.until(g.generation));
  }

  /** Re-reads the generations; moves on when the one read now is read to its ends. Called periodically. */
  follow(): Promise<void> {
    return (this.moving ??= this.move().finally(() => (this.moving = undefined)));
  }

  private async move(): Promise<void> {
    if (this.stopped || !this.on) return;
    const gens = await this.read();
    for (;;) {
      const g = gens.list.find((x) => x.generation === this.on!.generation);
      if (!g || this.stopped || !(await this.done(g, gens))) return;
      const next = gens.list[gens.list.indexOf(g) + 1]!;
      this.o.log?.(`generation ${g.generation} (${g.topic}) read to its ends in group ${generationGroup(this.o.group, g.generation)}: reading generation ${next.generation} (${next.topic})`);
      const old = this.worker;
      this.worker = undefined;
      await old?.stop();
      if (this.stopped) return;
      await this.open(next);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.moving?.catch(() => undefined);
    await this.worker?.stop();
  }
}
