/**
 * A private archive world for int specs (the archive's own and the root's
 * HTTP ones): a world of services/world.ts (its own topics, key prefix and
 * consumer groups) plus its own ClickHouse database in one embedded data
 * directory per test file (one engine per process), events produced through
 * the real codec, and archivers run in process.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Archiver } from '../archive/archiver.ts';
import { migrate } from '../archive/migrate.ts';
import { openClickHouse, type ClickHouse } from '../core/clickhouse.ts';
import { loadConfig, type Config } from '../core/config.ts';
import { archiverGroup } from '../pipelines/naming.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import type { RoomEvent } from '../schemas/events.ts';
import { subjectFor } from '../schemas/registry.ts';
import { prepareLog, worldEnv, worldId, type WorldEnv } from '../services/world.ts';
import { logClient } from '../topics/client.ts';
import type { LogAdmin, LogClient } from '../topics/kafka.ts';
import { measureLag } from '../topics/lag.ts';

export interface ArchiveKit {
  base: Config;
  client: LogClient;
  admin: LogAdmin;
  dataDir: string;
  world(): Promise<World>;
  close(): Promise<void>;
}

export async function archiveKit(): Promise<ArchiveKit> {
  const base = loadConfig();
  const client = logClient(base, 'archive-test');
  const admin = client.admin();
  await admin.connect();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), `danmaku-archive-${randomBytes(4).toString('hex')}-`));
  const kit: ArchiveKit = {
    base,
    client,
    admin,
    dataDir,
    world: () => world(kit),
    async close() {
      await admin.disconnect();
      await client.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  return kit;
}

export interface World {
  id: string;
  /** The world's environment (services/world.ts worldEnv, with its ClickHouse database), for processes run against it. */
  env: WorldEnv;
  cfg: Config;
  ch: ClickHouse;
  codec: EventCodec;
  groupId: string;
  produce(events: RoomEvent[]): Promise<void>;
  produced: RoomEvent[];
  archiver(opts?: { ch?: ClickHouse; batchRows?: number }): Archiver & { logs: string[] };
  caughtUp(): Promise<boolean>;
  close(): Promise<void>;
}

export async function world({ admin, client, dataDir }: Pick<ArchiveKit, 'admin' | 'client' | 'dataDir'>): Promise<World> {
  const id = worldId('arch');
  const env = worldEnv(id, 3, { CLICKHOUSE_DATABASE: id.replace(/-/g, '_') });
  const cfg = await prepareLog(env);
  const codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(id) });
  await codec.init();
  const ch = await openClickHouse({ dataDir, database: cfg.clickhouse.database });
  await migrate(ch);
  const producer = client.producer();
  await producer.connect();
  const produced: RoomEvent[] = [];
  const groupId = archiverGroup(cfg.pipelines.groupPrefix);
  const running: Archiver[] = [];
  return {
    id,
    env,
    cfg,
    ch,
    codec,
    groupId,
    produced,
    async produce(events) {
      await Promise.all(events.map((e) => producer.send({ topic: id, key: e.roomId, value: codec.encode(e) })));
      produced.push(...events);
    },
    archiver(opts = {}) {
      const logs: string[] = [];
      const a = new Archiver({
        client,
        codec,
        ch: opts.ch ?? ch,
        topic: id,
        deadLetterTopic: `${id}.dlq`,
        groupId,
        batchRows: opts.batchRows ?? 500,
        batchMs: 20,
        maxBackoffMs: 300,
        log: (m) => logs.push(m),
      }) as Archiver & { logs: string[] };
      a.logs = logs;
      running.push(a);
      return a;
    },
    async caughtUp() {
      const lag = await measureLag(admin, groupId, id);
      return [...lag.values()].every((n) => n === 0);
    },
    async close() {
      for (const a of running) await a.stop();
      await producer.disconnect();
      await ch.close();
    },
  };
}

