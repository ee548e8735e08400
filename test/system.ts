/**
 * The running system for e2e tests: a private world (topics, key prefix,
 * consumer groups), the processors and one or more gateways as real
 * processes, driven only through the public API.
 */
import { createSigner } from 'fast-jwt';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { subjectFor } from '../schemas/registry.ts';
import { logClient } from '../topics/client.ts';
import { applyTopics, declaredTopics } from '../topics/topics.ts';
import { randomName, testConfig } from './helpers.ts';
import { startScript, type Proc } from './processes.ts';

export interface System {
  env: Record<string, string>;
  gateways: { url: string; proc: Proc }[];
  processor: Proc;
  url: string;
  token(user: string, role?: 'viewer' | 'moderator' | 'broadcaster' | 'admin', ttlSec?: number): string;
  startGateway(extraEnv?: Record<string, string>): Promise<{ url: string; proc: Proc }>;
  stop(): Promise<void>;
}

const freePort = () => 20000 + Math.floor(Math.random() * 25000);

export async function startSystem(opts: { gateways?: number; env?: Record<string, string>; processor?: boolean } = {}): Promise<System> {
  const id = randomName('sys');
  const env: Record<string, string> = {
    TOPIC_ROOM_EVENTS: id,
    TOPIC_DEAD_LETTER: `${id}.dlq`,
    REDIS_KEY_PREFIX: `${id}:`,
    PIPELINES_GROUP_PREFIX: `${id}.`,
    PIPELINES_METRICS_PORT: '0',
    TOPIC_PARTITIONS: '3',
    LOG_LEVEL: 'warn',
    JWT_SECRET: `secret-${id}`,
    ...opts.env,
  };
  const cfg = testConfig(env);
  const client = logClient(cfg, 'system-test');
  const admin = client.admin();
  await admin.connect();
  await applyTopics(admin, declaredTopics(cfg, { roomEvents: env.TOPIC_ROOM_EVENTS!, deadLetter: env.TOPIC_DEAD_LETTER! }));
  await admin.disconnect();
  await client.close();
  // Registered before the processes start, so they all agree on the id.
  await new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(env.TOPIC_ROOM_EVENTS!) }).init();

  const processor = opts.processor === false ? undefined : startScript('pipelines/cli.ts', ['run'], env);
  if (processor) await processor.waitForLine(/ready/);
  const gateways: { url: string; proc: Proc }[] = [];
  const startGateway = async (extra: Record<string, string> = {}) => {
    const port = freePort();
    const proc = startScript('gateway/main.ts', [], { ...env, GATEWAY_PORT: String(port), GATEWAY_ID: `gw-${port}`, ...extra });
    await proc.waitForLine(/listening on/);
    const g = { url: `http://127.0.0.1:${port}`, proc };
    gateways.push(g);
    return g;
  };
  for (let i = 0; i < (opts.gateways ?? 1); i++) await startGateway();
  const sign = (ttlSec: number) => createSigner({ key: env.JWT_SECRET!, algorithm: 'HS256', expiresIn: ttlSec * 1000 });
  return {
    env,
    gateways,
    processor: processor!,
    url: gateways[0]?.url ?? '',
    token: (user, role = 'viewer', ttlSec = 3600) => sign(ttlSec)({ sub: user, role }),
    startGateway,
    async stop() {
      await Promise.all(gateways.map((g) => g.proc.stop()));
      await processor?.stop();
    },
  };
}
