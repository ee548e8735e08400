/**
 * Every process that writes the event log (gateways, the moderation
 * processor) writes through a LogWriter: it produces to the *current
 * generation* of the log (topics/generations.ts) and holds a lease that says
 * which generation it may still be writing. This is what lets a repartition
 * seal the old generation at end offsets that cover every acknowledged
 * record:
 *
 * - The writer refreshes its lease every LEASE/3 with one script that records
 *   `<generation it may still write>:<lease end>` (Redis time) in the writers'
 *   hash and returns the generation record. So it learns of a switch within
 *   LEASE/3, without a subscription, and the refresh doubles as the heartbeat.
 * - A send picks the generation in memory (no round trip on the write path)
 *   and only while the lease is fresh: a writer that could not refresh for
 *   LEASE (Redis unreachable, a long pause) refuses to write (503, nothing
 *   written) rather than write a generation that may have been sealed.
 * - A switch has two steps, so that no write of a room can be ordered before
 *   one acknowledged earlier (by another gateway, say): first the record names
 *   the new generation while the old one is not sealed yet; a writer then
 *   writes neither (new sends wait, polling every 100 ms, at most twice the
 *   lease, else 503 with nothing written) and, once its sends to the old one
 *   are answered, reports the new generation. The repartition waits until
 *   every writer's lease reports it, or ended more than the longest a send can
 *   wait for its ack (MAX_ACK_DELAY_MS) ago, then seals the old generation at
 *   its end offsets; writers see the seal and write the new one. So every
 *   write acknowledged in the old generation happened before any write to the
 *   new one began, and positions follow acknowledgement order.
 *
 * The lease end is measured from before the refresh was sent, on the
 * writer's clock, and recorded after, on Redis's, so the writer stops
 * before Redis considers its lease over (clocks may differ; their rates are
 * assumed to agree).
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { RedisClient } from '../core/redis.ts';
import { UnavailableError } from '../core/errors.ts';
import { currentGeneration, generationsKey, initialGenerations, parseGenerations, positionOf, unsealed, writersKey, type Generation, type Generations } from './generations.ts';
import type { Ack, LogProducer } from './kafka.ts';

export interface WriterOptions {
  producer: LogProducer;
  redis: RedisClient;
  keyPrefix: string;
  /** The declared event log topic: generation 0. */
  baseTopic: string;
  /** Its declared partitions (shown for generation 0 until a repartition records them). */
  partitions: number;
  /** What the lease says this writer is (gateway id, service): made unique per process here. */
  name: string;
  leaseMs: number;
  log?: (m: string) => void;
}

/** A record for the event log: the topic is the writer's choice. */
export interface LogWrite {
  key: string;
  value: Buffer;
  headers?: Record<string, string>;
  /** The write landed after it was answered ERR_KAFKA_UNAVAILABLE (see OutRecord.onLateAck). */
  onLateAck?(ack: LogWriteAck): void;
}

/** An acknowledged write: Kafka's ack, plus the generation it went to and its position (what clients see). */
export interface LogWriteAck extends Ack {
  generation: number;
  position: number;
}

// KEYS[1] generation record, KEYS[2] writers' leases; ARGV[1] writer id,
// ARGV[2] the oldest generation it may still write, ARGV[3] lease ms.
// TIME is Redis's clock: every lease end is on one clock, the one the
// repartition compares them with.
const LEASE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. string.format('%d', now + tonumber(ARGV[3])))
return redis.call('GET', KEYS[1])`;

export class LogWriter {
  readonly id: string;
  private generations: Generations | undefined;
  private current: Generation | undefined;
  /** Local time the last successful refresh was sent: the lease holds until this + leaseMs. */
  private leaseFrom = -Infinity;
  /** Generation → sends not answered yet. */
  private readonly inflight = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  /** Sends not answered yet, so stop() gives the lease up only after them. */
  private readonly pending = new Set<Promise<unknown>>();
  /** Sends waiting for a switch to be sealed, and the fast refresh that looks for the seal meanwhile. */
  private waiters: (() => void)[] = [];
  private fast: NodeJS.Timeout | undefined;

  constructor(private readonly o: WriterOptions) {
    this.id = `${o.name}@${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  }

  /** Reads the generation and takes the lease; rejects when Redis cannot be reached (writes are refused until a refresh succeeds). */
  async start(): Promise<void> {
    if (!this.timer) {
      this.timer = setInterval(() => void this.refresh().catch(() => undefined), Math.max(50, Math.floor(this.o.leaseMs / 3)));
      this.timer.unref();
    }
    await this.refresh();
  }

  /** The generation new writes go to (undefined before the first refresh). */
  get generation(): Generation | undefined {
    return this.current;
  }

  /** The generation record as last read. */
  get record(): Generations | undefined {
    return this.generations;
  }

  /** Whether the current generation may be written: the one before it is sealed (no switch half done). */
  private writable(): boolean {
    return this.generations !== undefined && unsealed(this.generations) === undefined;
  }

  /** Waits for the seal of a switch (checked every 100 ms), at most twice the lease. */
  private untilWritable(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== done);
        reject(new UnavailableError('ERR_KAFKA_UNAVAILABLE', 'the log is switching to a new generation (a repartition) that was not sealed in time; nothing was written, retry'));
      }, 2 * this.o.leaseMs);
      this.waiters.push(done);
      if (!this.fast) {
        this.fast = setInterval(() => void this.refresh().catch(() => undefined), 100);
        this.fast.unref();
      }
    });
  }

  private wake(): void {
    if (this.fast) clearInterval(this.fast);
    this.fast = undefined;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Produces `w` to the current generation; resolves once Kafka acknowledged it (acks=all). */
  async send(w: LogWrite): Promise<LogWriteAck> {
    // Between a switch and its seal nothing is written: the new generation must not start before the old one ends.
    while (this.current && !this.stopped && !this.writable()) await this.untilWritable();
    const g = this.current;
    if (!g || this.stopped || Date.now() - this.leaseFrom >= this.o.leaseMs) {
      throw new UnavailableError('ERR_KAFKA_UNAVAILABLE', 'the log generation to write could not be confirmed lately (Redis unreachable?); nothing was written, retry');
    }
    this.inflight.set(g.generation, (this.inflight.get(g.generation) ?? 0) + 1);
    const onLateAck = w.onLateAck;
    const sent = this.o.producer.send({
      topic: g.topic,
      key: w.key,
      value: w.value,
      headers: w.headers,
      ...(onLateAck ? { onLateAck: (ack: Ack) => onLateAck({ ...ack, generation: g.generation, position: positionOf(g.generation, ack.offset) }) } : {}),
    });
    this.pending.add(sent);
    try {
      const ack = await sent;
      return { ...ack, generation: g.generation, position: positionOf(g.generation, ack.offset) };
    } finally {
      this.pending.delete(sent);
      const left = (this.inflight.get(g.generation) ?? 1) - 1;
      if (left > 0) this.inflight.set(g.generation, left);
      else {
        this.inflight.delete(g.generation);
        // The last send to a generation that is no longer current: report the switch now, not at the next tick.
        if (this.current && g.generation < this.current.generation) void this.refresh().catch(() => undefined);
      }
    }
  }

  /** The oldest generation this writer may still be writing: its current one, or an older one with sends unanswered. */
  private reported(): number {
    let g = this.current?.generation ?? -1;
    for (const [gen, n] of this.inflight) if (n > 0 && gen < g) g = gen;
    return g;
  }

  /** One lease refresh at a time; a refresh asked for meanwhile runs right after it (it may report a drained generation). */
  refresh(): Promise<void> {
    if (this.refreshing) {
      this.again = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      try {
        do {
          this.again = false;
          await this.refreshOnce();
        } while (this.again && !this.stopped);
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  private async refreshOnce(): Promise<void> {
    if (this.stopped) return;
    const sentAt = Date.now();
    const raw = (await this.o.redis.eval(LEASE_LUA, 2, generationsKey(this.o.keyPrefix, this.o.baseTopic), writersKey(this.o.keyPrefix, this.o.baseTopic), this.id, String(this.reported()), String(this.o.leaseMs))) as string | null;
    const gens = raw === null ? initialGenerations(this.o.baseTopic, this.o.partitions) : parseGenerations(raw);
    const latest = currentGeneration(gens);
    this.generations = gens;
    const before = this.current;
    if (!before || latest.generation > before.generation) {
      this.current = latest;
      if (before) this.o.log?.(`log: writing generation ${latest.generation} (${latest.topic}, ${latest.partitions} partitions) from now on`);
      // Report the switch at once when nothing of the old generation is in flight.
      if (before && this.reported() >= latest.generation) this.again = true;
    }
    this.leaseFrom = sentAt;
    if (this.writable() && this.waiters.length + (this.fast ? 1 : 0) > 0) this.wake();
  }

  /** Stops refreshing and gives the lease up (after the sends in flight are answered). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.wake(); // waiting sends go on to be refused: the writer is stopping
    await this.refreshing?.catch(() => undefined);
    // A lease given up with a send unanswered would let a repartition seal the generation under it.
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    await this.o.redis.hdel(writersKey(this.o.keyPrefix, this.o.baseTopic), this.id).catch(() => undefined);
  }
}
