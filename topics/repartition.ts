/**
 * `npm run topics -- repartition --partitions N`: grows the event log to N
 * partitions as a new generation (topics/generations.ts), under live writes,
 * keeping each room's order and every acknowledged event.
 *
 *   1. Create the topic of generation g + 1 (`<name>.g<g+1>`, N partitions,
 *      the declared settings) and register the schema under its subject.
 *   2. Switch: record generation g + 1 as the current one (compare and set,
 *      so two operators cannot both switch). Writers learn it with their
 *      next lease refresh and write g + 1 only from then on.
 *   3. Wait until no writer can still add to g: every writer's lease reports
 *      g + 1 (its sends to g are answered), or ended more than
 *      MAX_ACK_DELAY_MS ago (a writer that is gone). See topics/writer.ts.
 *   4. Seal g at its end offsets, read now: every acknowledged record of g is
 *      below them. Bump every room's epoch (one INCR of the switch counter),
 *      so clients take a fresh snapshot instead of resuming across the switch.
 *   5. Wait (unless told not to) until every consumer group reading g with
 *      members (processors, moderation, the archiver) has read g to its ends:
 *      readers apply g up to its ends before anything of g + 1 (the
 *      processors hold g + 1 back until then: pipelines/service.ts).
 *
 * Re-running it after an interruption resumes: a generation that is not
 * sealed yet is sealed (steps 3–5) before anything else. Pure decisions
 * (planGeneration, sealGeneration, leaseVerdict) are separate from the I/O.
 */
import type { Config } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import { openRedis, redisOptions, type RedisClient } from '../core/redis.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { subjectFor } from '../schemas/registry.ts';
import { logClient } from './client.ts';
import {
  currentGeneration,
  epochSwitchesKey,
  generationsKey,
  generationTopic,
  initialGenerations,
  MAX_GENERATION,
  parseGenerations,
  unsealed,
  writeGenerations,
  writersKey,
  type Generation,
  type Generations,
} from './generations.ts';
import { MAX_ACK_DELAY_MS, type LogAdmin } from './kafka.ts';
import { declaredTopics, topicNames } from './topics.ts';

/** The next generation of `gens` with `partitions` partitions (pure); refuses what would not grow the log. */
export function planGeneration(gens: Generations, base: string, partitions: number, nowMs: number): Generation {
  const cur = currentGeneration(gens);
  if (unsealed(gens)) throw new AppError('ERR_REPARTITION', `generation ${unsealed(gens)!.generation} is not sealed yet: run the repartition again to finish it first`);
  if (!Number.isInteger(partitions) || partitions <= cur.partitions) {
    throw new AppError('ERR_REPARTITION', `--partitions must be more than the current generation's ${cur.partitions} (got ${partitions}): a repartition only grows the log`);
  }
  if (cur.generation + 1 > MAX_GENERATION) throw new AppError('ERR_REPARTITION', `no generation after ${cur.generation}`);
  return { generation: cur.generation + 1, topic: generationTopic(base, cur.generation + 1), partitions, createdAtMs: nowMs };
}

/** `gens` with generation `generation` sealed at `ends` (pure). */
export function sealGeneration(gens: Generations, generation: number, ends: Map<number, string>, nowMs: number): Generations {
  return {
    list: gens.list.map((g) => (g.generation === generation ? { ...g, ends: Object.fromEntries([...ends].map(([p, o]) => [String(p), o])), sealedAtMs: nowMs } : g)),
  };
}

/**
 * What a writer's lease (`<generation>:<lease end ms>`, topics/writer.ts)
 * says about a switch to `needed` at Redis time `nowMs` (pure): it writes
 * `needed` only (`ok`), it may still write an older generation (`wait`), or it
 * is gone and anything it sent is answered by now (`gone`).
 */
export function leaseVerdict(lease: string, needed: number, nowMs: number, graceMs = MAX_ACK_DELAY_MS): 'ok' | 'wait' | 'gone' {
  const sep = lease.lastIndexOf(':');
  const gen = Number(lease.slice(0, sep));
  const until = Number(lease.slice(sep + 1));
  if (!Number.isFinite(gen) || !Number.isFinite(until)) return 'gone';
  if (until + graceMs < nowMs) return 'gone';
  return gen >= needed ? 'ok' : 'wait';
}

export interface RepartitionOptions {
  cfg: Config;
  partitions: number;
  log?: (m: string) => void;
  /** Wait until the consumer groups reading the old generation have read it to its ends (default true). */
  waitForReaders?: boolean;
  /** Gives up waiting (for writers, for readers) after this long (default TOPICS_REPARTITION_TIMEOUT_SEC). */
  timeoutMs?: number;
}

export interface RepartitionResult {
  from: Generation;
  to: Generation;
  /** Records of the old generation (the sum of its ends). */
  records: number;
  /** Writers that had to confirm the switch, and how long that took. */
  writers: number;
  writersMs: number;
  /** The switch counter after the epoch bump. */
  epochSwitch: number;
  /** Groups that read the old generation to its ends (empty when not waited for). */
  readers: string[];
  seconds: number;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

// The leases and the clock they were written with, read together on the node that holds them
// (in a Redis Cluster another node's clock may differ).
const LEASES_LUA = `
local t = redis.call('TIME')
return {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), redis.call('HGETALL', KEYS[1])}`;

async function readLeases(redis: RedisClient, keyPrefix: string, base: string): Promise<{ nowMs: number; leases: [string, string][] }> {
  const [now, flat] = (await redis.eval(LEASES_LUA, 1, writersKey(keyPrefix, base))) as [number, string[]];
  const leases: [string, string][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) leases.push([flat[i]!, flat[i + 1]!]);
  return { nowMs: Number(now), leases };
}

// Removes a lease only if it is still the one read (a writer may have refreshed it meanwhile).
const DROP_LEASE_LUA = `if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0`;

export async function repartition(o: RepartitionOptions): Promise<RepartitionResult> {
  const { cfg } = o;
  const log = o.log ?? (() => {});
  const t0 = Date.now();
  const timeoutMs = o.timeoutMs ?? cfg.topics.repartitionTimeoutSec * 1000;
  const prefix = cfg.redis.keyPrefix;
  const names = topicNames(cfg);
  const base = names.roomEvents;
  const redis = openRedis({ ...redisOptions(cfg), name: 'repartition' });
  const client = logClient(cfg, 'repartition');
  const admin = client.admin();
  try {
    await admin.connect();
    let raw = await redis.get(generationsKey(prefix, base));
    let gens = raw === null ? initialGenerations(base, (await admin.describeTopics([base]))[0]?.partitions ?? cfg.topics.partitions) : parseGenerations(raw);
    let old = unsealed(gens);
    let next: Generation;
    if (old) {
      next = gens.list[gens.list.indexOf(old) + 1]!;
      log(`generation ${old.generation} was switched from but not sealed (an interrupted repartition): finishing it`);
    } else {
      old = currentGeneration(gens);
      next = planGeneration(gens, base, o.partitions, Date.now());
      // 1. The new topic, as the declared one but for its name and partitions.
      const spec = declaredTopics(cfg, names).find((t) => t.name === base)!;
      if (!(await admin.listTopics()).includes(next.topic)) await admin.createTopics([{ ...spec, name: next.topic, partitions: next.partitions }]);
      // Readers decode by schema id; the subject is for clients that look schemas up by topic (TopicNameStrategy).
      await new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(next.topic) }).init();
      log(`created ${next.topic} (${next.partitions} partitions) for generation ${next.generation}`);
      // 2. The switch.
      const switched: Generations = { list: [...gens.list, next] };
      if (!(await writeGenerations(redis, prefix, raw, switched))) throw new AppError('ERR_REPARTITION', 'the generation record changed meanwhile (another repartition?): run it again');
      raw = JSON.stringify(switched);
      gens = switched;
      log(`switched writers to generation ${next.generation}`);
    }

    // 3. Until no writer can add to the old generation.
    const tw = Date.now();
    const deadline = Date.now() + timeoutMs;
    let writers = 0;
    for (;;) {
      const { nowMs: now, leases } = await readLeases(redis, prefix, base);
      const waiting: string[] = [];
      writers = 0;
      for (const [id, lease] of leases) {
        const v = leaseVerdict(lease, next.generation, now);
        if (v === 'gone') await redis.eval(DROP_LEASE_LUA, 1, writersKey(prefix, base), id, lease);
        else writers++;
        if (v === 'wait') waiting.push(id);
      }
      if (waiting.length === 0) break;
      if (Date.now() > deadline) {
        throw new AppError('ERR_REPARTITION', `writers still on generation ${old.generation} after ${timeoutMs} ms: ${waiting.slice(0, 5).join(', ')}; the switch stands, run the repartition again to seal it`);
      }
      await pause(100);
    }
    const writersMs = Date.now() - tw;
    log(`every writer (${writers}) writes generation ${next.generation} (${writersMs} ms)`);

    // 4. Seal at the end offsets (nothing acknowledged lies past them now) and move every room's epoch.
    const ends = await admin.endOffsets(old.topic);
    const sealed = sealGeneration(gens, old.generation, ends, Date.now());
    if (!(await writeGenerations(redis, prefix, raw, sealed))) throw new AppError('ERR_REPARTITION', 'the generation record changed meanwhile (another repartition?): run it again');
    const epochSwitch = await redis.incr(epochSwitchesKey(prefix));
    const records = [...ends.values()].reduce((a, b) => a + Number(b), 0);
    log(`sealed generation ${old.generation} at ${[...ends].sort((a, b) => a[0] - b[0]).map(([p, e]) => `${p}:${e}`).join(' ')} (${records} records); every room's epoch moved (switch ${epochSwitch})`);

    // 5. Until the readers of the old generation are through it.
    let readers: string[] = [];
    if (o.waitForReaders !== false) readers = await untilReadersDrained(admin, old.topic, ends, deadline, log);
    const result: RepartitionResult = { from: old, to: next, records, writers, writersMs, epochSwitch, readers, seconds: (Date.now() - t0) / 1000 };
    log(`done in ${result.seconds.toFixed(1)} s: the log is generation ${next.generation} (${next.topic}, ${next.partitions} partitions)`);
    return result;
  } finally {
    await admin.disconnect();
    await client.close();
    redis.disconnect();
  }
}

/**
 * Groups that committed offsets on `topic`: waited for until each committed
 * every partition's end. A group already there counts; one with no members
 * that is not there is idle (an old deployment, a finished test) and is not
 * waited for.
 */
async function untilReadersDrained(admin: LogAdmin, topic: string, ends: Map<number, string>, deadline: number, log: (m: string) => void): Promise<string[]> {
  const atEnds = (c: Map<number, string>) => [...ends].every(([p, end]) => Number(end) === 0 || Number(c.get(p) ?? '-1') >= Number(end));
  const readers: string[] = [];
  const left = new Set<string>();
  for (const g of await admin.listGroups()) {
    const c = await admin.committedOffsets(g, topic).catch(() => new Map<number, string>());
    if (![...c.values()].some((o) => Number(o) >= 0)) continue;
    if (atEnds(c)) readers.push(g);
    else if ((await admin.groupMembers(g).catch(() => 0)) > 0) {
      readers.push(g);
      left.add(g);
    } else log(`group ${g} has read ${topic} only in part and has no members: not waited for`);
  }
  while (left.size > 0) {
    for (const g of [...left]) {
      if (atEnds(await admin.committedOffsets(g, topic))) {
        left.delete(g);
        log(`group ${g} read ${topic} to its ends`);
      }
    }
    if (left.size === 0) break;
    if (Date.now() > deadline) {
      log(`still reading ${topic}: ${[...left].join(', ')} (they finish on their own; the repartition is done)`);
      break;
    }
    await pause(200);
  }
  return readers;
}
