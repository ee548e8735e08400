/**
 * rebuild: events/s of `npm run pipelines -- rebuild feed` over a log of N
 * events. The log is a private topic filled directly with Avro CommentPosted
 * events (real chat texts when present) spread over R rooms; the rebuild runs
 * as the real command in a child process with that world's environment, and
 * its own `done: … events/s` line is the figure (wall time and CPU beside it).
 */
import { loadConfig } from '../../core/config.ts';
import { createRegistry, EventCodec } from '../../schemas/codec.ts';
import { comment, makeEvent } from '../../schemas/events.ts';
import { subjectFor } from '../../schemas/registry.ts';
import { logClient } from '../../topics/client.ts';
import { bars, svg } from '../lib/chart.ts';
import { requireInfra } from '../lib/infra.ts';
import { cpuSeconds, startTs } from '../lib/proc.ts';
import { textTable } from '../lib/report.ts';
import { round } from '../lib/stats.ts';
import { loadTexts } from '../lib/texts.ts';
import { worldId, cleanupLog, prepareLog, worldEnv } from '../../services/world.ts';

export interface RebuildOptions {
  events: number;
  rooms: number;
  log(m: string): void;
}

export interface RebuildResult {
  params: { events: number; rooms: number; partitions: number; projection: 'feed' };
  textSource: string;
  produceSeconds: number;
  reported: { events: number; seconds: number; eventsPerSec: number } | null;
  wallSeconds: number;
  cpuSeconds: number;
  exitCode: number | null;
  outputTail: string[];
}

export async function runRebuild(o: RebuildOptions): Promise<RebuildResult> {
  const partitions = 6;
  await requireInfra(loadConfig(), ['kafka', 'redis', 'registry']);
  const env = worldEnv(worldId('bench-rebuild'), partitions);
  const cfg = await prepareLog(env);
  try {
    const { texts, source } = await loadTexts(20_000);
    const codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(env.TOPIC_ROOM_EVENTS!) });
    await codec.init();
    const client = logClient(cfg, 'bench-rebuild');
    const producer = client.producer({ maxBatch: 5000 });
    await producer.connect();
    o.log(`rebuild: writing ${o.events} events over ${o.rooms} rooms into ${env.TOPIC_ROOM_EVENTS}`);
    const t0 = Date.now();
    const base = Date.now() - o.events * 10;
    for (let done = 0; done < o.events; ) {
      const n = Math.min(5000, o.events - done);
      await producer.sendMany(
        Array.from({ length: n }, (_, k) => {
          const i = done + k;
          const room = `rebuild-${i % o.rooms}`;
          const e = makeEvent({ roomId: room, actor: { userId: `u${i % 997}`, role: 'viewer' }, occurredAt: base + i * 10, payload: comment(texts[i % texts.length]!) });
          return { topic: env.TOPIC_ROOM_EVENTS!, key: room, value: codec.encode(e) };
        }),
      );
      done += n;
    }
    const produceSeconds = (Date.now() - t0) / 1000;
    await producer.disconnect();
    await client.close();
    o.log(`rebuild: log written in ${produceSeconds.toFixed(1)} s; running \`npm run pipelines -- rebuild feed\``);

    const w0 = Date.now();
    const child = startTs('rebuild', 'services/cli.ts', ['pipelines', 'rebuild', 'feed'], { env, maxMs: 30 * 60_000, echo: undefined });
    let cpu = 0;
    const sampler = setInterval(() => {
      const c = cpuSeconds(child.pid);
      if (c > 0) cpu = c;
    }, 100);
    const code = await child.exited;
    clearInterval(sampler);
    const wall = (Date.now() - w0) / 1000;
    const done = child.output.find((l) => /done: \d+ events in/.test(l));
    const m = done ? /done: (\d+) events in ([\d.]+) s \((\d+) events\/s\)/.exec(done) : null;
    return {
      params: { events: o.events, rooms: o.rooms, partitions, projection: 'feed' },
      textSource: source,
      produceSeconds: round(produceSeconds),
      reported: m ? { events: Number(m[1]), seconds: Number(m[2]), eventsPerSec: Number(m[3]) } : null,
      wallSeconds: round(wall),
      cpuSeconds: round(cpu),
      exitCode: code,
      outputTail: child.output.filter((l) => !/\[.*\]\s+\d+%/.test(l)).slice(-6),
    };
  } finally {
    await cleanupLog(cfg, env);
  }
}

export function rebuildTable(r: RebuildResult): string {
  const rows = [
    ['projection', 'events', 'rooms', 'events/s (its output)', 'rebuild s', 'wall s (incl. start)', 'CPU s'],
    ['feed', String(r.params.events), String(r.params.rooms), String(r.reported?.eventsPerSec ?? 'n/a'), String(r.reported?.seconds ?? 'n/a'), String(r.wallSeconds), String(r.cpuSeconds)],
  ];
  return [textTable(rows), ...(r.reported ? [] : [`rebuild did not report (exit ${r.exitCode}): ${r.outputTail.join(' | ')}`])].join('\n');
}

export function rebuildChart(r: RebuildResult, machine: string): string {
  const a = bars({ x: 90, y: 80, w: 380, h: 300, title: 'Rebuild throughput', yLabel: 'events/s', groups: ['feed'], series: [{ name: `${r.params.events} events, ${r.params.rooms} rooms`, values: [r.reported?.eventsPerSec ?? NaN] }] });
  const b = bars({ x: 580, y: 80, w: 380, h: 300, title: 'Time', yLabel: 'seconds', groups: ['rebuild (its own)', 'wall incl. start', 'CPU'], series: [{ name: 'seconds', values: [r.reported?.seconds ?? NaN, r.wallSeconds, r.cpuSeconds] }] });
  return svg(1040, 440, `rebuild: npm run pipelines -- rebuild feed over ${r.params.events} events`, machine, [a, b]);
}
