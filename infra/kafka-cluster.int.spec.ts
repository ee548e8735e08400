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
const base = 29000 + Math.floor(Math.random() * 800) * 10;
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
    await send(300);
    await kill9(2); // one broker of three, with replicas of every partition
    await send(300); // acks=all still reachable with two in sync
    expect(acked).toHaveLength(600);

    // Every acknowledged record is in the log (read back from the two brokers left).
    const partitions = (await client.partitionCount(topic)) as number;
    const seen = new Set<string>();
    for (let p = 0; p < partitions; p++) {
      const high = Number((await client.watermarks(topic, p)).high);
      if (high === 0) continue;
      for (const r of await client.readRange(topic, p, 0, high - 1, { timeoutMs: 60_000 })) seen.add(r.value!.toString());
    }
    expect(acked.filter((v) => !seen.has(v))).toEqual([]);

    // Two brokers gone: nothing can be acknowledged with min.insync.replicas=2.
    await kill9(3);
    const lonely = client.producer({ lingerMs: 0, sendTimeoutMs: 8_000 });
    await lonely.connect().catch(() => undefined);
    await expect(lonely.send({ topic, key: 'room-x', value: Buffer.from('unsafe') })).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_KAFKA_/) });
    await lonely.disconnect().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);

    // Back up: the dead nodes rejoin from their data folders.
    await up(cfg, log, ['kafka']);
    expect((await status(cfg)).find((r) => r.name === 'kafka')?.health).toBe('ok');
  }, 300_000);
});
