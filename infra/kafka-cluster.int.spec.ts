/**
 * A replicated log: `KAFKA_BROKERS=3` makes `infra up` start a three-node
 * KRaft cluster from the same jars (own ports and data folders); the declared
 * topics get three replicas and min.insync.replicas=2, so with acks=all a
 * write is acknowledged only once two replicas hold it. Killing one broker
 * (kill -9) loses nothing acknowledged and writes go on; killing a second
 * stops acknowledgements (not enough replicas) instead of accepting writes
 * that one disk holds.
 *
 * Runs on its own ports and data folder, beside the suite's single broker.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../core/config.ts';
import { randomName, waitFor } from '../test/helpers.ts';
import { logClient } from '../topics/client.ts';
import type { LogClient } from '../topics/kafka.ts';
import { applyTopics, declaredTopics } from '../topics/topics.ts';
import { isAlive, readPid } from './proc.ts';
import { allServices } from './services.ts';
import { down, status, up } from './stack.ts';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kafka-cluster-'));
// Below Linux's ephemeral range (32768-60999): a port there can be taken by any client socket of
// the suite running beside, and a node that cannot bind exits while starting (seen once in CI).
const base = 20000 + Math.floor(Math.random() * 1200) * 10;
const cfg: Config = loadConfig({
  ...process.env,
  DANMAKU_DATA_DIR: dataDir,
  KAFKA_BROKERS: '3',
  KAFKA_PORT: String(base),
  KAFKA_CONTROLLER_PORT: String(base + 1),
  KAFKA_HEAP: '256m',
  KAFKA_CLIENT_ID: randomName('cluster-test'),
});
const log = (m: string) => console.log(`[kafka-cluster] ${m}`);
let client: LogClient;

beforeAll(async () => {
  await up(cfg, log, ['kafka']);
  client = logClient(cfg, 'cluster-test');
}, 300_000);
afterAll(async () => {
  await client?.close();
  await down(cfg, log, ['kafka']).catch(() => undefined);
  fs.rmSync(dataDir, { recursive: true, force: true });
}, 120_000);

const node = (i: number) => allServices(cfg).find((s) => s.name === `kafka-${i}`)!;
async function kill9(i: number): Promise<void> {
  const rec = readPid(node(i).pidFile);
  if (!rec) throw new Error(`kafka-${i} has no pid file`);
  process.kill(rec.pid, 'SIGKILL');
  await waitFor(() => !isAlive(rec) || undefined, { what: `kafka-${i} to die` });
}

describe('a three-broker KRaft cluster', () => {
  it('starts three nodes from the same jars, each with its own ports and data folder', async () => {
    expect(cfg.kafka.brokers.split(',')).toHaveLength(3);
    const rows = await status(cfg);
    for (const i of [1, 2, 3]) expect(rows.find((r) => r.name === `kafka-${i}`)).toMatchObject({ owner: 'ours', health: 'ok', port: base + 2 * (i - 1) });
    expect(rows.find((r) => r.name === 'kafka')?.health).toBe('ok');
    for (const i of [1, 2, 3]) expect(fs.existsSync(path.join(dataDir, 'kafka-cluster', `node-${i}`, 'log', 'meta.properties'))).toBe(true);
  });

  it('declares topics with three replicas and min.insync.replicas=2; losing one broker loses no acknowledged write', async () => {
    expect([cfg.topics.replicationFactor, cfg.topics.minInsyncReplicas]).toEqual([3, 2]);
    const topic = randomName('replicated');
    const admin = client.admin();
    await admin.connect();
    try {
      await applyTopics(admin, declaredTopics(cfg, { roomEvents: topic, deadLetter: `${topic}.dlq` }));
      // Metadata reaches every broker shortly after creation.
      const state = await waitFor(async () => (await admin.describeTopics([topic]))[0], { what: 'the topic metadata', timeoutMs: 30_000 });
      expect(state.configs['min.insync.replicas']).toBe('2');
      expect(state.replicationFactor).toBe(3);
    } finally {
      await admin.disconnect();
    }

    const producer = client.producer({ lingerMs: 2, sendTimeoutMs: 30_000 });
    await producer.connect();
    const acked: string[] = [];
    let n = 0;
    const send = async (count: number) => {
      await Promise.all(
        Array.from({ length: count }, async () => {
          const v = `m${n++}`;
          await producer.send({ topic, key: `room-${n % 7}`, value: Buffer.from(v) });
          acked.push(v);
        }),
      );
    };
    // Each step says when it ends: a hang (the 300 s bound was once hit in a full run) names its step.
    const t0 = Date.now();
    const step = (m: string) => log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${m}`);
    /** One step, bounded: a step that hangs fails the test with its name, not the test's timeout. */
    const within = async <T>(ms: number, what: string, p: Promise<T>): Promise<T> => {
      let t: NodeJS.Timeout | undefined;
      const bound = new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: not done within ${ms / 1000} s`)), ms)));
      try {
        return await Promise.race([p, bound]);
      } finally {
        clearTimeout(t);
      }
    };
    await within(60_000, '300 writes on three brokers', send(300));
    step('300 acknowledged on three brokers');
    await kill9(2); // one broker of three, with replicas of every partition
    step('kafka-2 killed');
    await within(60_000, '300 writes on two brokers', send(300)); // acks=all still reachable with two in sync
    step('300 more acknowledged on two brokers');
    expect(acked).toHaveLength(600);

    // Every acknowledged record is in the log (read back from the two brokers left).
    const partitions = (await client.partitionCount(topic)) as number;
    const seen = new Set<string>();
    // The partitions at once: one after another, six reads under a loaded machine came near the test's bound.
    const read = async (p: number) => {
      const high = Number((await client.watermarks(topic, p)).high);
      if (high === 0) return;
      for (const r of await client.readRange(topic, p, 0, high - 1, { timeoutMs: 60_000 })) seen.add(r.value!.toString());
    };
    await within(90_000, 'reading the partitions back', Promise.all(Array.from({ length: partitions }, (_, p) => read(p))));
    expect(acked.filter((v) => !seen.has(v))).toEqual([]);
    step(`read back ${partitions} partitions`);

    // Two brokers gone: nothing can be acknowledged with min.insync.replicas=2.
    await kill9(3);
    step('kafka-3 killed');
    const lonely = client.producer({ lingerMs: 0, sendTimeoutMs: 8_000 });
    await lonely.connect().catch(() => undefined);
    await expect(within(60_000, 'the refused write', lonely.send({ topic, key: 'room-x', value: Buffer.from('unsafe') }))).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_KAFKA_/) });
    step('a write with one broker left was refused');
    await within(30_000, 'disconnecting the producers', Promise.all([lonely.disconnect().catch(() => undefined), producer.disconnect().catch(() => undefined)]));
    step('producers disconnected');

    // Back up: the dead nodes rejoin from their data folders.
    await within(120_000, 'starting the dead nodes again', up(cfg, log, ['kafka']));
    step('three brokers up again');
    expect((await status(cfg)).find((r) => r.name === 'kafka')?.health).toBe('ok');
  }, 300_000);
});
