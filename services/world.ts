/**
 * A private world: the product's own services, as real processes started
 * through the composition root, on the shared local servers but with their
 * own topics, dead-letter topic, Redis key prefix, consumer groups and JWT
 * secret — so any number of tests and benchmark runs can share one Kafka and
 * one Redis without seeing each other. The one helper tests (e2e) and
 * benchmarks both build on.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { createSigner } from 'fast-jwt';
import { loadConfig, type Config } from '../core/config.ts';
import { openRedis, redisOptions } from '../core/redis.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { subjectFor } from '../schemas/registry.ts';
import { logClient } from '../topics/client.ts';
import { applyTopics, declaredTopics } from '../topics/topics.ts';
import type { ServiceName } from './root.ts';
import { ServiceProcess, type SpawnOptions } from './spawn.ts';

export type Role = 'viewer' | 'moderator' | 'broadcaster' | 'admin';

export interface TokenOptions {
  /** Lifetime (default 3600 s; negative: already expired). */
  ttlSec?: number;
  /** Rooms a moderator or broadcaster token grants its role in (required for those roles). */
  rooms?: string[];
}

export interface WorldGateway {
  url: string;
  proc: ServiceProcess;
}

export interface World {
  id: string;
  env: Record<string, string>;
  cfg: Config;
  /** The processors (and moderation when enabled), one process; absent with `processor: false`. */
  processor: ServiceProcess | undefined;
  gateways: WorldGateway[];
  /** The first gateway's URL ('' without gateways). */
  url: string;
  /** Pids of the world's server processes (processors + gateways), for CPU and memory. */
  pids(): number[];
  /** A token signed with the world's secret; moderator and broadcaster are granted in `rooms`. */
  token(user: string, role?: Role, opts?: TokenOptions): string;
  startGateway(extraEnv?: Record<string, string>, opts?: Pick<SpawnOptions, 'nofile' | 'nofileSoft' | 'echo'>): Promise<WorldGateway>;
  /** Stops the processes; with `cleanup`, also deletes the world's topics and Redis keys. */
  stop(): Promise<void>;
}

export interface WorldOptions {
  /** Run the processors (default true). */
  processor?: boolean;
  /** Gateways to start (default 1). */
  gateways?: number;
  partitions?: number;
  env?: Record<string, string>;
  /** Every child is killed after this long (benchmarks bound their children). */
  maxMs?: number;
  /** Echo children's output with a prefix per child. */
  echo?: boolean;
  /** Delete the topics and keys on stop (benchmarks; tests keep them for a post-mortem). */
  cleanup?: boolean;
  /** Prefix of the world's id. */
  prefix?: string;
  /** Node options of every service process (e.g. `--cpu-prof`, for the benchmarks). */
  nodeArgs?: string[];
}

export function worldId(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** A world's environment; the names every world has are always set. */
export type WorldEnv = Record<string, string> & Record<'TOPIC_ROOM_EVENTS' | 'TOPIC_DEAD_LETTER' | 'REDIS_KEY_PREFIX' | 'PIPELINES_GROUP_PREFIX' | 'JWT_SECRET', string>;

/** The environment of a private world: its names, and quiet logs. */
export function worldEnv(id: string, partitions = 3, extra: Record<string, string> = {}): WorldEnv {
  return {
    TOPIC_ROOM_EVENTS: id,
    TOPIC_DEAD_LETTER: `${id}.dlq`,
    // Created by `npm run routing -- set` only when a test or run changes the routing rules.
    TOPIC_ROUTING_AUDIT: `${id}.routing`,
    TOPIC_PARTITIONS: String(partitions),
    REDIS_KEY_PREFIX: `${id}:`,
    PIPELINES_GROUP_PREFIX: `${id}.`,
    PIPELINES_METRICS_PORT: '0',
    MODERATION_METRICS_PORT: '0',
    ARCHIVER_METRICS_PORT: '0',
    LOG_LEVEL: 'warn',
    JWT_SECRET: `secret-${id}-${randomBytes(8).toString('hex')}`,
    ...extra,
  };
}

/** Creates the world's topics and registers the schema under its subject (before any process starts, so all agree on the id). */
export async function prepareLog(env: Record<string, string>): Promise<Config> {
  const cfg = loadConfig({ ...process.env, ...env });
  const client = logClient(cfg, 'world');
  const admin = client.admin();
  await admin.connect();
  try {
    await applyTopics(admin, declaredTopics(cfg, { roomEvents: env.TOPIC_ROOM_EVENTS!, deadLetter: env.TOPIC_DEAD_LETTER! }));
  } finally {
    await admin.disconnect();
    await client.close();
  }
  await new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(env.TOPIC_ROOM_EVENTS!) }).init();
  return cfg;
}

/** Removes a world's topics and Redis keys (best effort). */
export async function cleanupLog(cfg: Config, env: Record<string, string>): Promise<void> {
  const client = logClient(cfg, 'world-cleanup');
  const admin = client.admin();
  try {
    await admin.connect();
    // With the log's later generations (a repartition's `<topic>.g<N>`), and the routing audit topic when one was made.
    const listed = await admin.listTopics();
    const generations = listed.filter((t) => t.startsWith(`${env.TOPIC_ROOM_EVENTS!}.g`) || t === env.TOPIC_ROUTING_AUDIT);
    await admin.deleteTopics([env.TOPIC_ROOM_EVENTS!, env.TOPIC_DEAD_LETTER!, ...generations]);
  } catch {
    // left for `npm run topics` housekeeping
  } finally {
    await admin.disconnect().catch(() => {});
    await client.close().catch(() => {});
  }
  const redis = openRedis({ ...redisOptions(cfg), name: 'world-cleanup' });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${env.REDIS_KEY_PREFIX}*`, 'COUNT', '1000');
      cursor = next;
      if (keys.length) await redis.unlink(...keys);
    } while (cursor !== '0');
  } catch {
    // best effort
  } finally {
    redis.disconnect();
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export async function startWorld(o: WorldOptions = {}): Promise<World> {
  const id = worldId(o.prefix ?? 'world');
  const env = worldEnv(id, o.partitions ?? 3, o.env);
  const cfg = await prepareLog(env);
  const echo = (n: string) => (o.echo ? `  [${n}] ` : undefined);
  const procs: ServiceProcess[] = [];
  let processor: ServiceProcess | undefined;
  if (o.processor !== false) {
    const names: ServiceName[] = loadConfig({ ...process.env, ...env }).moderation.enabled ? ['processors', 'moderation'] : ['processors'];
    processor = new ServiceProcess(names, { env, maxMs: o.maxMs, echo: echo('processors'), nodeArgs: o.nodeArgs });
    procs.push(processor);
    await processor.start();
  }
  const gateways: WorldGateway[] = [];
  const startGateway = async (extra: Record<string, string> = {}, so: Pick<SpawnOptions, 'nofile' | 'nofileSoft' | 'echo'> = {}) => {
    const port = await freePort();
    const proc = new ServiceProcess(['gateway'], {
      env: { ...env, GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: String(port), GATEWAY_ID: `gw-${port}`, ...extra },
      maxMs: o.maxMs,
      nodeArgs: o.nodeArgs,
      nofile: so.nofile,
      nofileSoft: so.nofileSoft,
      echo: so.echo ?? echo('gateway'),
    });
    procs.push(proc);
    await proc.start();
    const g = { url: `http://127.0.0.1:${port}`, proc };
    gateways.push(g);
    return g;
  };
  for (let i = 0; i < (o.gateways ?? 1); i++) await startGateway();
  const token = (user: string, role: Role = 'viewer', t: TokenOptions = {}) => {
    const sign = createSigner({ key: env.JWT_SECRET!, algorithm: 'HS256', expiresIn: (t.ttlSec ?? 3600) * 1000 });
    if (role === 'viewer') return sign({ sub: user });
    if (role === 'admin') return sign({ sub: user, role: 'admin' });
    if (!t.rooms?.length) throw new Error(`a ${role} token needs the rooms it is ${role} of`);
    return sign({ sub: user, rooms: Object.fromEntries(t.rooms.map((r) => [r, role])) });
  };
  return {
    id,
    env,
    cfg,
    processor,
    gateways,
    get url() {
      return gateways[0]?.url ?? '';
    },
    pids: () => [...(processor ? [processor.pid] : []), ...gateways.map((g) => g.proc.pid)],
    token,
    startGateway,
    async stop() {
      await Promise.all(procs.map((p) => p.stop()));
      if (o.cleanup) await cleanupLog(cfg, env);
    },
  };
}
