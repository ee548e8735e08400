/**
 * npm run routing -- show
 * npm run routing -- set [--ws-percent 10] [--allow-users a,b] [--deny-versions 1.2.0,1.3.*] [--gateways http://g1:8080,http://g2:8080]
 *                        [--poll-interval-ms 2000|default] [--seed s] [--reason "why"] [--actor name]
 * npm run routing -- history [-n 20]
 * npm run routing -- sync
 *
 * The operator's side of the routing service (gateway/routing.ts). `set`
 * changes what it is given and keeps the rest; a list option replaces the
 * list, or edits it when every entry starts with + or - (`--allow-users
 * +carol,-bob`); an empty value (`--deny-versions ''`) empties it. Each change
 * is first appended to the audit topic (TOPIC_ROUTING_AUDIT) as a
 * RoutingRulesChanged event (acks=all), then written to Redis with that
 * event's offset as its version: gateways take it within ROUTING_REFRESH_MS.
 * `history` prints the last changes from the audit log; `sync` writes the last
 * audited rules back into Redis (after Redis lost its data, or a `set` that
 * died between the two writes).
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { COMPATIBILITY, SchemaType } from '@kafkajs/confluent-schema-registry';
import fs from 'node:fs';
import path from 'node:path';
import { v7 as uuidv7 } from 'uuid';
import { loadConfig, REPO_ROOT, type Config } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import { openRedis, redisOptions } from '../core/redis.ts';
import { createRegistry } from '../schemas/codec.ts';
import { setCompatibility, subjectFor } from '../schemas/registry.ts';
import { logClient } from '../topics/client.ts';
import { applyTopics, routingAuditTopic } from '../topics/topics.ts';
import { loadRules, storeRules, validateRules, type RoutingLists, type RoutingRules, type StoredRules } from './routing.ts';

const USAGE = `usage: npm run routing -- <show|set|history|sync> [options]
  set options: --ws-percent <0..100> --allow-users --allow-devices --allow-versions --deny-users --deny-devices --deny-versions <a,b | +a,-b | ''>
               --gateways <url,url | ''> --poll-interval-ms <ms|default> --seed <s> --reason <text> --actor <name>
  history: [-n <count>]`;

export const AUDIT_SCHEMA_FILE = path.join(REPO_ROOT, 'schemas', 'routing-rules-changed.avsc');

/** One RoutingRulesChanged event, as the audit topic holds it. */
export interface RoutingRulesChanged {
  eventId: string;
  occurredAt: number;
  actor: string;
  reason: string;
  previousVersion: number;
  previous: string | null;
  rules: string;
}

/** A list option applied to a list: replaced, or edited entry by entry with +x / -x. */
export function editList(current: string[], arg: string): string[] {
  const parts = arg
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  if (parts.length > 0 && parts.every((p) => p.startsWith('+') || p.startsWith('-'))) {
    const out = new Set(current);
    for (const p of parts) {
      if (p.startsWith('+')) out.add(p.slice(1));
      else out.delete(p.slice(1));
    }
    return [...out];
  }
  return parts;
}

const LIST_OPTIONS = ['allow-users', 'allow-devices', 'allow-versions', 'deny-users', 'deny-devices', 'deny-versions'] as const;

/** The rules after a `set`'s options (pure; validated). */
export function patchRules(current: RoutingRules, v: Record<string, string | undefined>): RoutingRules {
  const next: RoutingRules = JSON.parse(JSON.stringify(current)) as RoutingRules;
  if (v['ws-percent'] !== undefined) {
    const n = Number(v['ws-percent']);
    if (v['ws-percent'].trim() === '' || !Number.isFinite(n)) throw new AppError('ERR_USAGE', `--ws-percent must be a number in 0..100, got "${v['ws-percent']}"`);
    next.wsPercent = n;
  }
  for (const o of LIST_OPTIONS) {
    const arg = v[o];
    if (arg === undefined) continue;
    const [side, field] = o.split('-') as ['allow' | 'deny', keyof RoutingLists];
    next[side][field] = editList(next[side][field], arg);
  }
  if (v.gateways !== undefined) next.gateways = editList(next.gateways, v.gateways);
  if (v['poll-interval-ms'] !== undefined) {
    const p = v['poll-interval-ms'];
    next.pollIntervalMs = p === 'default' || p === '' ? null : Number(p);
    if (next.pollIntervalMs !== null && !/^\d+$/.test(p)) throw new AppError('ERR_USAGE', `--poll-interval-ms must be a whole number of ms or "default", got "${p}"`);
  }
  if (v.seed !== undefined) next.seed = v.seed;
  return validateRules(next);
}

async function auditCodec(cfg: Config, topic: string) {
  const registry = createRegistry(cfg.registry.url);
  const subject = subjectFor(topic);
  const schema = fs.readFileSync(AUDIT_SCHEMA_FILE, 'utf8');
  // As the room log's subject: every later version of the audit schema must read every earlier record.
  await setCompatibility(cfg.registry.url, subject);
  const { id } = await registry.register({ type: SchemaType.AVRO, schema }, { subject, compatibility: COMPATIBILITY.BACKWARD_TRANSITIVE });
  return {
    encode: (e: RoutingRulesChanged) => registry.encode(id, e),
    decode: async (b: Buffer) => (await registry.decode(b)) as RoutingRulesChanged,
  };
}

/**
 * Audits and applies a change: the event first (acks=all), then Redis with
 * its offset as the version. Returns what Redis now holds.
 */
export async function changeRules(cfg: Config, change: { rules: RoutingRules; previous: StoredRules; actor: string; reason: string }): Promise<StoredRules> {
  const topic = cfg.topics.routingAudit;
  const client = logClient(cfg, 'routing-cli');
  const admin = client.admin();
  const producer = client.producer({ lingerMs: 0 });
  const redis = openRedis({ ...redisOptions(cfg), name: 'routing-cli' });
  try {
    await admin.connect();
    await applyTopics(admin, [routingAuditTopic(cfg, topic)]);
    const codec = await auditCodec(cfg, topic);
    const event: RoutingRulesChanged = {
      eventId: uuidv7(),
      occurredAt: Date.now(),
      actor: change.actor,
      reason: change.reason,
      previousVersion: change.previous.version,
      previous: change.previous.version < 0 ? null : JSON.stringify(change.previous.rules),
      rules: JSON.stringify(change.rules),
    };
    await producer.connect();
    const ack = await producer.send({ topic, key: 'rules', value: await codec.encode(event) });
    const stored: StoredRules = { version: Number(ack.offset), updatedAt: event.occurredAt, updatedBy: event.actor, reason: event.reason, rules: change.rules };
    await storeRules(redis, cfg.redis.keyPrefix, stored);
    return await loadRules(redis, cfg.redis.keyPrefix);
  } finally {
    await producer.disconnect().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
    await client.close().catch(() => undefined);
    redis.disconnect();
  }
}

/** The last `n` audited changes, oldest first, with their offsets (the versions they set). */
export async function auditHistory(cfg: Config, n: number): Promise<(RoutingRulesChanged & { version: number })[]> {
  const topic = cfg.topics.routingAudit;
  const client = logClient(cfg, 'routing-cli');
  const admin = client.admin();
  try {
    await admin.connect();
    if (!(await admin.listTopics()).includes(topic)) return [];
    const { low, high } = await client.watermarks(topic, 0);
    const from = BigInt(high) - BigInt(n) < BigInt(low) ? BigInt(low) : BigInt(high) - BigInt(n);
    if (BigInt(high) <= from) return [];
    const records = await client.readRange(topic, 0, from.toString(), (BigInt(high) - 1n).toString());
    const codec = await auditCodec(cfg, topic);
    const out: (RoutingRulesChanged & { version: number })[] = [];
    for (const r of records) if (r.value) out.push({ ...(await codec.decode(r.value)), version: Number(r.offset) });
    return out;
  } finally {
    await admin.disconnect().catch(() => undefined);
    await client.close().catch(() => undefined);
  }
}

function actorOf(given: string | undefined): string {
  if (given) return given;
  let user = 'unknown';
  try {
    user = os.userInfo().username;
  } catch {
    /* no passwd entry */
  }
  return `${user}@${os.hostname()}`;
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  const cfg = loadConfig();
  const { values } = parseArgs({
    args: rest,
    options: {
      'ws-percent': { type: 'string' },
      ...Object.fromEntries(LIST_OPTIONS.map((o) => [o, { type: 'string' as const }])),
      gateways: { type: 'string' },
      'poll-interval-ms': { type: 'string' },
      seed: { type: 'string' },
      reason: { type: 'string' },
      actor: { type: 'string' },
      n: { type: 'string', short: 'n' },
    },
  });
  const v = values as Record<string, string | undefined>;
  switch (command) {
    case 'show': {
      const redis = openRedis({ ...redisOptions(cfg), name: 'routing-cli' });
      try {
        console.log(JSON.stringify(await loadRules(redis, cfg.redis.keyPrefix), null, 2));
      } finally {
        redis.disconnect();
      }
      return;
    }
    case 'set': {
      const redis = openRedis({ ...redisOptions(cfg), name: 'routing-cli' });
      let previous: StoredRules;
      try {
        previous = await loadRules(redis, cfg.redis.keyPrefix);
      } finally {
        redis.disconnect();
      }
      const rules = patchRules(previous.rules, v);
      const now = await changeRules(cfg, { rules, previous, actor: actorOf(v.actor), reason: v.reason ?? '' });
      console.log(JSON.stringify(now, null, 2));
      return;
    }
    case 'history': {
      const n = Number(v.n ?? 20);
      if (!Number.isInteger(n) || n < 1) throw new AppError('ERR_USAGE', `-n must be a positive integer\n${USAGE}`);
      for (const e of await auditHistory(cfg, n)) console.log(JSON.stringify(e));
      return;
    }
    case 'sync': {
      const last = (await auditHistory(cfg, 1))[0];
      if (!last) {
        console.log('no routing change was ever audited: the defaults are in force');
        return;
      }
      const redis = openRedis({ ...redisOptions(cfg), name: 'routing-cli' });
      try {
        const wrote = await storeRules(redis, cfg.redis.keyPrefix, { version: last.version, updatedAt: last.occurredAt, updatedBy: last.actor, reason: last.reason, rules: validateRules(JSON.parse(last.rules)) });
        console.log(wrote ? `rules of version ${last.version} written back to Redis` : `Redis already holds version ${last.version} or newer`);
      } finally {
        redis.disconnect();
      }
      return;
    }
    default:
      throw new AppError('ERR_USAGE', USAGE);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  main().catch((err: unknown) => {
    console.error(err instanceof AppError ? `${err.code}: ${err.message}` : err);
    process.exit(err instanceof AppError && err.code === 'ERR_USAGE' ? 2 : 1);
  });
}
