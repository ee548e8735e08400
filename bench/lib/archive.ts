/**
 * Shared by the archive and replay scenarios: fill a private log with Avro
 * CommentPosted events (as rebuild.ts does), and run the real archiver
 * (`npm run archiver -- run [--gateway]`) as a child process on a private embedded
 * ClickHouse directory until its committed offsets reach the end of the log.
 */
import type { Config } from '../../core/config.ts';
import { measureLag } from '../../topics/lag.ts';
import { createRegistry, EventCodec } from '../../schemas/codec.ts';
import { comment, makeEvent, type RoomEvent } from '../../schemas/events.ts';
import { subjectFor } from '../../schemas/registry.ts';
import { logClient } from '../../topics/client.ts';
import { topicNames } from '../../topics/topics.ts';
import { archiverGroup } from '../../pipelines/naming.ts';
import { rowOf, type EventRow } from '../../archive/rows.ts';
import { ServiceProcess } from '../../services/spawn.ts';
import { cpuSeconds, sleep } from './proc.ts';
import { loadTexts } from './texts.ts';

export interface FillOptions {
  events: number;
  /** Room of the i-th event. */
  roomOf(i: number): string;
  /** Video time between two consecutive events of the log, ms. */
  videoStepMs: number;
  /** Keep the rows (as the archiver would build them) for a raw insert. */
  keepRows: boolean;
  log(m: string): void;
}

export interface Filled {
  textSource: string;
  produceSeconds: number;
  rows: EventRow[];
  bytes: number;
}

export async function fillLog(cfg: Config, env: Record<string, string>, o: FillOptions): Promise<Filled> {
  const { texts, source } = await loadTexts(20_000);
  const topic = env.TOPIC_ROOM_EVENTS!;
  const codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(topic) });
  await codec.init();
  const client = logClient(cfg, 'bench-archive');
  const producer = client.producer({ maxBatch: 5000 });
  await producer.connect();
  const rows: EventRow[] = [];
  let bytes = 0;
  const t0 = Date.now();
  const base = Date.now() - o.events * o.videoStepMs;
  try {
    for (let done = 0; done < o.events; ) {
      const n = Math.min(5000, o.events - done);
      const events: RoomEvent[] = Array.from({ length: n }, (_, k) => {
        const i = done + k;
        return makeEvent({ roomId: o.roomOf(i), actor: { userId: `u${i % 997}`, role: 'viewer' }, occurredAt: base + i * o.videoStepMs, videoOffsetMs: i * o.videoStepMs, payload: comment(texts[i % texts.length]!) });
      });
      const values = events.map((e) => codec.encode(e));
      for (const v of values) bytes += v.length;
      const acks = await producer.sendMany(events.map((e, k) => ({ topic, key: e.roomId, value: values[k]! })));
      if (o.keepRows) {
        const now = Date.now();
        acks.forEach((a, k) => rows.push(rowOf(events[k]!, { topic: a.topic, partition: a.partition, offset: a.offset, timestamp: now })));
      }
      done += n;
      if (done % 100_000 < n) o.log(`  ${done}/${o.events} events written`);
    }
  } finally {
    await producer.disconnect();
    await client.close();
  }
  return { textSource: source, produceSeconds: (Date.now() - t0) / 1000, rows, bytes };
}

export interface ArchiverRun {
  child: ServiceProcess;
  /** Spawn → the consumer's first partition assignment (engine load, migrations, group join). */
  startSeconds: number;
  /** First assignment → committed offsets at the end of the log. */
  catchUpSeconds: number;
  eventsPerSec: number;
  cpuSeconds: number;
  batchRows: number;
}

/**
 * Starts the archiver service process (with the gateway: `npm run archiver -- run --gateway`) with `env` and times it until the
 * archiver group's lag is 0 on every partition. The child is left running.
 */
export async function archiveLog(cfg: Config, env: Record<string, string>, o: { events: number; gateway: boolean; maxMs: number; log(m: string): void }): Promise<ArchiverRun> {
  const topic = topicNames(cfg).roomEvents;
  const group = archiverGroup(cfg.pipelines.groupPrefix);
  const client = logClient(cfg, 'bench-archive-lag');
  const admin = client.admin();
  await admin.connect();
  const t0 = performance.now();
  const child = new ServiceProcess(o.gateway ? ['archiver', 'gateway'] : ['archiver'], { env, maxMs: o.maxMs, readyTimeoutMs: 180_000 });
  const ready = child.start();
  let cpu = 0;
  const sampler = setInterval(() => {
    const c = cpuSeconds(child.pid);
    if (c > 0) cpu = c;
  }, 200);
  try {
    await ready;
    // Ready means consuming; the first assignment is the moment it starts reading (an event, printed).
    await child.waitForLine(/assigned partitions \[\d/, 180_000);
    const t1 = performance.now();
    o.log(`  archiver assigned after ${((t1 - t0) / 1000).toFixed(1)} s; waiting for its offsets to reach the end of the log`);
    let lastLog = t1;
    for (;;) {
      const lag = await measureLag(admin, group, topic);
      const behind = [...lag.values()].reduce((a, b) => a + b, 0);
      if (behind === 0) break;
      if (child.exitCode !== undefined) throw new Error(`archiver exited (${child.exitCode}): ${child.output.slice(-10).join(' | ')}`);
      if (performance.now() - t1 > o.maxMs) throw new Error(`archiver still ${behind} events behind after ${o.maxMs} ms`);
      if (performance.now() - lastLog > 10_000) {
        o.log(`  archiver: ${behind} events to go`);
        lastLog = performance.now();
      }
      await sleep(100);
    }
    const t2 = performance.now();
    const catchUp = (t2 - t1) / 1000;
    return { child, startSeconds: (t1 - t0) / 1000, catchUpSeconds: catchUp, eventsPerSec: o.events / catchUp, cpuSeconds: cpuSeconds(child.pid) || cpu, batchRows: cfg.archive.batchRows };
  } catch (err) {
    await child.stop();
    throw err;
  } finally {
    clearInterval(sampler);
    await admin.disconnect().catch(() => {});
    await client.close().catch(() => {});
  }
}
