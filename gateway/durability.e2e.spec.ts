/**
 * 202 means durable. A private Kafka broker (its own data folder and ports,
 * so the shared one is untouched) is killed while a gateway takes writes:
 * writes answer 503 with Retry-After and an error code while it is down,
 * and after it returns every write that was ever acknowledged is in the log.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../core/config.ts';
import { isAlive, readPid } from '../infra/proc.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { subjectFor } from '../schemas/registry.ts';
import { testConfig, waitFor } from '../test/helpers.ts';
import { startService } from '../test/processes.ts';
import type { ServiceProcess } from '../services/spawn.ts';
import { freePort, prepareLog, worldEnv, worldId } from '../services/world.ts';
import { logClient } from '../topics/client.ts';
import type { LogRecord } from '../topics/kafka.ts';
import { createSigner } from 'fast-jwt';

const exec = promisify(execFile);
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'private-kafka-'));
const kafkaPort = 30000 + Math.floor(Math.random() * 10000);
const infraEnv = { ...process.env, DANMAKU_DATA_DIR: dataDir, KAFKA_PORT: String(kafkaPort), KAFKA_CONTROLLER_PORT: String(kafkaPort + 1), KAFKA_HEAP: '256m' };
const infra = (...args: string[]) => exec(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'infra/cli.ts'), ...args], { env: infraEnv, cwd: REPO_ROOT });

describe('writes while Kafka is down', () => {
  const topic = worldId('durable');
  // The world's log lives on the private broker.
  const env = worldEnv(topic, 3, {
    KAFKA_BROKERS: `127.0.0.1:${kafkaPort}`,
    LIMIT_COMMENTS: '100000',
  });
  const cfg = testConfig(env);
  let gateway: ServiceProcess;
  let url = '';
  const token = createSigner({ key: env.JWT_SECRET, algorithm: 'HS256', expiresIn: 3_600_000 })({ sub: 'writer', role: 'viewer' });

  beforeAll(async () => {
    await infra('up', 'kafka');
    await prepareLog(env);
    // Chosen free once the private broker runs (a fixed port next to its own may be one of its ephemeral ones).
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    gateway = await startService(['gateway'], { ...env, GATEWAY_PORT: String(port) });
  });
  afterAll(async () => {
    await gateway?.stop();
    await infra('down', 'kafka').catch(() => undefined);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const post = async (text: string) => {
    const res = await fetch(`${url}/v1/rooms/durable-room/comments`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ text }) });
    return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as { eventId?: string; code?: string } };
  };

  it('answers 503 with Retry-After while Kafka is down and loses no acknowledged write', async () => {
    const acked: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await post(`before ${i}`);
      expect(r.status).toBe(202);
      acked.push(r.body.eventId!);
    }

    const rec = readPid(path.join(dataDir, 'run', 'kafka.pid'))!;
    process.kill(rec.pid, 'SIGKILL');
    await waitFor(() => !isAlive(rec), { what: 'Kafka to die' });

    let refused: Awaited<ReturnType<typeof post>> | undefined;
    let i = 0;
    await waitFor(async () => {
      const r = await post(`during ${i++}`);
      if (r.status === 202) acked.push(r.body.eventId!); // accepted before the client noticed: must still be durable
      if (r.status === 503) refused = r;
      return refused;
    }, { what: 'a 503', timeoutMs: 60_000, intervalMs: 10 });
    expect(refused!.body.code).toBe('ERR_KAFKA_UNAVAILABLE');
    expect(Number(refused!.retryAfter)).toBeGreaterThan(0);

    await infra('up', 'kafka');
    await waitFor(async () => {
      const r = await post(`after ${i++}`);
      if (r.status === 202) acked.push(r.body.eventId!);
      return r.status === 202 || undefined;
    }, { what: 'writes to succeed again', timeoutMs: 90_000, intervalMs: 200 });
    for (let k = 0; k < 10; k++) {
      const r = await post(`after more ${k}`);
      expect(r.status).toBe(202);
      acked.push(r.body.eventId!);
    }

    // Every acknowledged event is in the log.
    const client = logClient(cfg, 'durable-reader');
    const codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(topic) });
    await codec.init();
    const consumer = client.consumer(`${env.PIPELINES_GROUP_PREFIX}durable-check`);
    const seen = new Set<string>();
    await consumer.connect();
    await consumer.subscribe([topic], true);
    await consumer.run({
      eachBatch: async (records: LogRecord[], ctx) => {
        for (const r of records) seen.add((await codec.decode(r.value)).eventId);
        await ctx.commit((BigInt(records.at(-1)!.offset) + 1n).toString());
      },
    });
    await waitFor(() => acked.every((id) => seen.has(id)) || undefined, { what: `all ${acked.length} acknowledged events in the log (have ${seen.size})`, timeoutMs: 60_000 });
    await consumer.disconnect();
    await client.close();
  });
});
