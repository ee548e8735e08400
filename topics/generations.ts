/**
 * Generations of the event log. Kafka can add partitions to a topic, but a
 * room's partition is murmur2(room) mod the count, so adding them in place
 * moves rooms to another partition in the middle of their history: their
 * order (and every fence, a bare offset of the old partition) would be lost.
 * So the log grows by *generations* instead: generation 0 is the declared
 * topic (`TOPIC_ROOM_EVENTS`), generation g ≥ 1 is the topic `<name>.g<g>`
 * with more partitions, and a repartition (`npm run topics -- repartition`,
 * topics/repartition.ts) switches every writer to a new generation, seals the
 * old one at its end offsets once no writer can add to it, and readers apply
 * the old generation up to those ends before anything of the new one.
 *
 * Positions. Within a generation, a room's events are ordered by their offset
 * in its partition. Across generations, every event of generation g comes
 * before every event of g + 1. So the *position* of an event is
 * `g · 2^40 + offset`: one number that orders a room's whole history, used as
 * the fence, the feed's scores and the position clients see (positions stay
 * below 2^53, exact in a double and in JSON). Generation 0's positions are its
 * plain offsets, so a deployment that never repartitions reads as before.
 * 2^40 records per partition and generations 0..8191 are the limits.
 *
 * This file is the pure part (naming, positions, the record's shape) and its
 * one Redis record; the writers' side is topics/writer.ts.
 */
import type { RedisClient } from '../core/redis.ts';
import { AppError } from '../core/errors.ts';

/** Offsets a generation may use before its positions would reach the next one's. */
export const GENERATION_SPAN = 2 ** 40;
/** The last generation whose positions stay below 2^53. */
export const MAX_GENERATION = Math.floor(Number.MAX_SAFE_INTEGER / GENERATION_SPAN);

/** The position of the record at `offset` of generation `generation` (see above). */
export function positionOf(generation: number, offset: number | string): number {
  const o = Number(offset);
  if (!Number.isSafeInteger(o) || o < 0 || o >= GENERATION_SPAN) throw new AppError('ERR_LOG_POSITION', `offset ${offset} is outside a generation's span (0..2^40 - 1)`);
  if (!Number.isInteger(generation) || generation < 0 || generation > MAX_GENERATION) throw new AppError('ERR_LOG_POSITION', `generation ${generation} is outside 0..${MAX_GENERATION}`);
  return generation * GENERATION_SPAN + o;
}

/** The generation and offset a position names (a negative position, "before anything", is generation 0). */
export function splitPosition(position: number): { generation: number; offset: number } {
  if (position < 0) return { generation: 0, offset: position };
  const generation = Math.floor(position / GENERATION_SPAN);
  return { generation, offset: position - generation * GENERATION_SPAN };
}

/** The topic of a generation: the declared name for 0, `<name>.g<g>` after. */
export function generationTopic(base: string, generation: number): string {
  return generation === 0 ? base : `${base}.g${generation}`;
}

/** The generation a topic holds, when it is one of `base`'s (undefined for any other topic, the dead-letter one included). */
export function generationOfTopic(base: string, topic: string): number | undefined {
  if (topic === base) return 0;
  if (!topic.startsWith(`${base}.g`)) return undefined;
  const rest = topic.slice(base.length + 2);
  return /^[1-9]\d*$/.test(rest) ? Number(rest) : undefined;
}

/** A consumer group's name for a generation: its own name for 0 (what it always was), `<group>.g<g>` after. */
export function generationGroup(group: string, generation: number): string {
  return generation === 0 ? group : `${group}.g${generation}`;
}

export interface Generation {
  generation: number;
  topic: string;
  partitions: number;
  /**
   * Set when the generation is sealed: per partition, the offset after its
   * last record any writer was acknowledged for. Readers apply records below
   * these and nothing after (a record past them was never acknowledged).
   */
  ends?: Record<string, string>;
  createdAtMs: number;
  sealedAtMs?: number;
}

/** The log's generations, oldest first; the last one is where writers write. */
export interface Generations {
  list: Generation[];
}

/** A deployment that never repartitioned: generation 0 alone, the declared topic. */
export function initialGenerations(base: string, partitions: number): Generations {
  return { list: [{ generation: 0, topic: base, partitions, createdAtMs: 0 }] };
}

export const currentGeneration = (g: Generations): Generation => g.list[g.list.length - 1]!;

/** The generation before the current one while it is not sealed yet (a switch in progress). */
export function unsealed(g: Generations): Generation | undefined {
  return g.list.find((x, i) => i < g.list.length - 1 && x.ends === undefined);
}

export function generationOf(g: Generations, generation: number): Generation | undefined {
  return g.list.find((x) => x.generation === generation);
}

/** Parses the stored record, refusing anything that is not one (a bug or a hand edit: nobody should guess a topic). */
export function parseGenerations(raw: string): Generations {
  const fail = (why: string) => new AppError('ERR_LOG_GENERATIONS', `the log's generation record is invalid (${why}): ${raw.slice(0, 200)}`);
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw fail('not JSON');
  }
  const list = (v as Generations | null)?.list;
  if (!Array.isArray(list) || list.length === 0) throw fail('no generations');
  list.forEach((x: Generation, i) => {
    if (typeof x !== 'object' || x === null || typeof x.topic !== 'string' || !Number.isInteger(x.generation) || !Number.isInteger(x.partitions)) throw fail(`entry ${i}`);
    if (i > 0 && x.generation <= list[i - 1]!.generation) throw fail('generations out of order');
  });
  return { list };
}

/**
 * Redis keys of the log's generations, per deployment (key prefix) and log
 * (its declared topic: deployments sharing a prefix but not a log never see
 * each other's record). One hash tag, so the record and the writers' leases
 * are on one slot of a Redis Cluster and one script reads both.
 */
export const generationsKey = (keyPrefix: string, base: string) => `${keyPrefix}{log:${base}}:generations`;
/** Writer id → `<generation it may still write>:<lease end, Redis ms>` (topics/writer.ts). */
export const writersKey = (keyPrefix: string, base: string) => `${keyPrefix}{log:${base}}:writers`;
/**
 * How many times every room's epoch moved at once (a rebuild's switch of a
 * projection version, a repartition's switch of generation). Every room's
 * epoch includes it, so one INCR moves the epoch of every room: no loop over
 * rooms. Declared here, the lowest layer that bumps it; pipelines/naming.ts
 * names it for its readers.
 */
export const epochSwitchesKey = (keyPrefix: string) => `${keyPrefix}proj:switches`;

/** The generations as Redis holds them (generation 0 of `base` when none were ever recorded). */
export async function readGenerations(redis: RedisClient, keyPrefix: string, base: string, partitions: number): Promise<Generations> {
  const raw = await redis.get(generationsKey(keyPrefix, base));
  return raw === null ? initialGenerations(base, partitions) : parseGenerations(raw);
}

/**
 * Writes the record only if it is still `expected` (compare and set), so two
 * operators running a repartition at once cannot both switch.
 */
const CAS_LUA = `
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1`;

export async function writeGenerations(redis: RedisClient, keyPrefix: string, expected: string | null, next: Generations): Promise<boolean> {
  const r = await redis.eval(CAS_LUA, 1, generationsKey(keyPrefix, next.list[0]!.topic), expected ?? '', JSON.stringify(next));
  return Number(r) === 1;
}
