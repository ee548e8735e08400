/**
 * A private world for one bench run, after test/system.ts: its own topic,
 * dead-letter topic, Redis key prefix and consumer groups on the shared local
 * servers, the processors and gateways as real child processes, and a
 * cleanup that removes the topics and keys again.
 */
import { randomBytes } from 'node:crypto';
import { createSigner } from 'fast-jwt';
import { loadConfig, type Config } from '../../core/config.ts';
import { openRedis, redisOptions } from '../../core/redis.ts';
import { createRegistry, EventCodec } from '../../schemas/codec.ts';
import { subjectFor } from '../../schemas/registry.ts';
import { logClient } from '../../topics/client.ts';
import { applyTopics, declaredTopics } from '../../topics/topics.ts';
import { freePort, startTs, type Child } from './proc.ts';

export interface World {
  id: string;
  env: Record<string, string>;
  cfg: Config;
  processor?: Child;
  gateways: { url: string; proc: Child }[];
  /** Server processes of ours (processors + gateways), for CPU and memory. */
  pids(): number[];
  token(user: string, role?: string): string;
  startGateway(extra?: Record<string, string>, nofile?: number): Promise<{ url: string; proc: Child }>;
  stop(): Promise<void>;
}

export interface WorldOptions {
  processor?: boolean;
  gateways?: number;
  partitions?: number;
  env?: Record<string, string>;
  /** Longest a server child may live (it is killed after). */
  maxMs: number;
  echo?: boolean;
}

export function benchId(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** The environment of a private world (topics, prefix, groups, limits raised, moderation off). */
export function worldEnv(id: string, partitions = 3, extra: Record<string, string> = {}): Record<string, string> {
  return {
    TOPIC_ROOM_EVENTS: id,
    TOPIC_DEAD_LETTER: `${id}.dlq`,
    TOPIC_PARTITIONS: String(partitions),
    REDIS_KEY_PREFIX: `${id}:`,
    PIPELINES_GROUP_PREFIX: `${id}.`,
    PIPELINES_METRICS_PORT: '0',
    LOG_LEVEL: 'warn',
    JWT_SECRET: `secret-${id}`,
    LIMIT_COMMENTS: '100000',
    LIMIT_COMMENTS_WINDOW_SEC: '1',
    MODERATION_ENABLED: 'false',
    ...extra,
  };
}

/** Creates the private topics and registers the schema under the private subject. */
export async function prepareLog(env: Record<string, string>): Promise<Config> {
  const cfg = loadConfig({ ...process.env, ...env });
  const client = logClient(cfg, 'bench');
  const admin = client.admin();
  await admin.connect();
  await applyTopics(admin, declaredTopics(cfg, { roomEvents: env.TOPIC_ROOM_EVENTS!, deadLetter: env.TOPIC_DEAD_LETTER! }));
  await admin.disconnect();
  await client.close();
  await new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(env.TOPIC_ROOM_EVENTS!) }).init();
  return cfg;
}

/** Removes a private world's topics and Redis keys (best effort). */
export async function cleanupLog(cfg: Config, env: Record<string, string>): Promise<void> {
  const client = logClient(cfg, 'bench-cleanup');
  const admin = client.admin();
  try {
    await admin.connect();
    await admin.deleteTopics([env.TOPIC_ROOM_EVENTS!, env.TOPIC_DEAD_LETTER!]);
  } catch {
    // left for `npm run topics` housekeeping
  } finally {
    await admin.disconnect().catch(() => {});
    await client.close().catch(() => {});
  }
  const redis = openRedis({ ...redisOptions(cfg), name: 'bench-cleanup' });
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

export async function startWorld(o: WorldOptions): Promise<World> {
  const id = benchId('bench');
  const env = worldEnv(id, o.partitions ?? 3, o.env);
  const cfg = await prepareLog(env);
  const echo = (n: string) => (o.echo ? `  [${n}] ` : undefined);
  let processor: Child | undefined;
  if (o.processor !== false) {
    processor = startTs('processors', 'pipelines/cli.ts', ['run'], { env, maxMs: o.maxMs, echo: echo('processors') });
    await processor.waitForLine(/ready/, 90_000);
  }
  const gateways: { url: string; proc: Child }[] = [];
  const startGateway = async (extra: Record<string, string> = {}, nofile?: number) => {
    const port = await freePort();
    const proc = startTs('gateway', 'gateway/main.ts', [], { env: { ...env, GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: String(port), GATEWAY_ID: `bench-gw-${port}`, ...extra }, maxMs: o.maxMs, nofile, echo: echo('gateway') });
    await proc.waitForLine(/listening on/, 90_000);
    const g = { url: `http://127.0.0.1:${port}`, proc };
    gateways.push(g);
    return g;
  };
  for (let i = 0; i < (o.gateways ?? 1); i++) await startGateway();
  const sign = createSigner({ key: env.JWT_SECRET!, algorithm: 'HS256', expiresIn: 3600_000 });
  return {
    id,
    env,
    cfg,
    processor,
    gateways,
    pids: () => [...(processor ? [processor.pid] : []), ...gateways.map((g) => g.proc.pid)],
    token: (user, role = 'viewer') => sign({ sub: user, role }),
    startGateway,
    async stop() {
      await Promise.all(gateways.map((g) => g.proc.stop()));
      await processor?.stop();
      await cleanupLog(cfg, env);
    },
  };
}
