/**
 * ingest: sustained writes through the HTTP write API into Kafka and on into
 * the projections. The rate steps up (doubling) until p99 write → projection
 * exceeds 1 s, or errors appear, or the rate cannot be held; the highest rate
 * held is the result. Beside it, the same ladder with raw kafkajs
 * produce + consume on the same broker (bench/load/kafka-raw.ts) as the
 * ceiling, and our ratio to it.
 *
 * write → projection: from the writer sending the POST to the feed
 * projection's notification for that comment (SSUBSCRIBE on the rooms'
 * notification channels), i.e. the comment is in Redis and announced.
 */
import { loadConfig } from '../../core/config.ts';
import { bars, lines, svg } from '../lib/chart.ts';
import { BENCH_WORLD, requireInfra } from '../lib/infra.ts';
import { resultOf, sleep, startTs, sumCpu } from '../lib/proc.ts';
import { textTable } from '../lib/report.ts';
import { Hist, round, type HistJson, type LatencySummary } from '../lib/stats.ts';
import { worldId, startWorld } from '../../services/world.ts';

export interface IngestOptions {
  rates: number[];
  /** The raw ceiling keeps doubling past the ladder's top up to this (it starts at the highest rate ours held). */
  rawMaxRate: number;
  hold: number;
  rooms: number;
  p99LimitMs: number;
  raw: boolean;
  log(m: string): void;
}

export interface IngestStep {
  rate: number;
  sent: number;
  accepted: number;
  errors: number;
  skipped: number;
  achievedRate: number;
  observed: number;
  missing: number;
  writeToProjection: LatencySummary;
  httpLatency: LatencySummary;
  serverCpuSec: number;
  cpuMsPerWrite: number;
  errorSamples: Record<string, number>;
  held: boolean;
  why?: string;
}

export interface RawStep {
  rate: number;
  sent: number;
  acked: number;
  errors: number;
  skipped: number;
  consumed: number;
  achievedRate: number;
  latency: LatencySummary;
  produceAck: LatencySummary;
  held: boolean;
}

export interface IngestResult {
  params: { rates: number[]; rawMaxRate: number; holdSec: number; rooms: number; p99LimitMs: number };
  ours: { highestHeld: number; steps: IngestStep[]; textSource?: string };
  raw?: { highestHeld: number; steps: RawStep[]; error?: string };
  ratio?: number;
}

interface WriterResult {
  source: string;
  sent: number;
  ok: number;
  errors: number;
  skipped: number;
  achievedRate: number;
  observed: number;
  missing: number;
  projection: HistJson;
  http: HistJson;
  errorSamples: Record<string, number>;
  seqEnd: number;
}

export function ladder(start: number, max: number): number[] {
  const out: number[] = [];
  for (let r = start; r <= max; r *= 2) out.push(r);
  return out;
}

export async function runIngest(o: IngestOptions): Promise<IngestResult> {
  const cfg0 = loadConfig();
  await requireInfra(cfg0, ['kafka', 'redis', 'registry']);
  const maxMs = (o.rates.length * (o.hold + 40) + 300) * 1000;
  o.log(`ingest: starting a private world (processors + gateway)`);
  const world = await startWorld({ ...BENCH_WORLD, env: { ...BENCH_WORLD.env }, processor: true, partitions: 6, maxMs });
  const rooms = Array.from({ length: o.rooms }, (_, i) => `ingest-${i}`).join(',');
  const steps: IngestStep[] = [];
  let highest = 0;
  let textSource: string | undefined;
  try {
    const common = ['--kind', 'ours', '--url', world.gateways[0]!.url, '--rooms', rooms, '--users', '200', '--observe-redis', world.cfg.redis.url, '--observe-prefix', world.env.REDIS_KEY_PREFIX!];
    const env = { JWT_SECRET: world.env.JWT_SECRET! };
    o.log('ingest: warm-up');
    const warm = startTs('writer', 'bench/load/writer.ts', [...common, '--rate', '20', '--seconds', '2', '--seq-start', '100000000'], { env, maxMs: 120_000 });
    await resultOf<WriterResult>(warm, 120_000);
    let seq = 0;
    for (const rate of o.rates) {
      await sleep(1000);
      o.log(`ingest: ${rate} writes/s for ${o.hold} s`);
      const cpu0 = sumCpu(world.pids());
      const w = startTs('writer', 'bench/load/writer.ts', [...common, '--rate', String(rate), '--seconds', String(o.hold), '--seq-start', String(seq), '--drain-sec', '10'], { env, maxMs: (o.hold + 90) * 1000, echo: '  [ingest writer] ' });
      const r = await resultOf<WriterResult>(w, (o.hold + 90) * 1000);
      const cpu = sumCpu(world.pids()) - cpu0;
      seq = r.seqEnd;
      textSource = r.source;
      const proj = Hist.from(r.projection).summary();
      const why = r.errors > 0 ? `${r.errors} write errors` : r.skipped > 0 ? `${r.skipped} writes not sent (in-flight cap)` : r.missing > 0 ? `${r.missing} accepted writes not in the projection within 10 s` : proj.p99 > o.p99LimitMs ? `p99 ${proj.p99} ms > ${o.p99LimitMs} ms` : r.achievedRate < 0.95 * rate ? `the writer reached only ${Math.round(r.achievedRate)}/s` : undefined;
      const step: IngestStep = {
        rate,
        sent: r.sent,
        accepted: r.ok,
        errors: r.errors,
        skipped: r.skipped,
        achievedRate: round(r.achievedRate, 0),
        observed: r.observed,
        missing: r.missing,
        writeToProjection: proj,
        httpLatency: Hist.from(r.http).summary(),
        serverCpuSec: round(cpu),
        cpuMsPerWrite: round((cpu * 1000) / Math.max(1, r.ok), 3),
        errorSamples: r.errorSamples,
        held: why === undefined,
        ...(why ? { why } : {}),
      };
      steps.push(step);
      o.log(`ingest: ${rate}/s → p99 ${proj.p99} ms, ${r.errors} errors${why ? ` — not held: ${why}` : ' — held'}`);
      if (why) break;
      highest = rate;
    }
  } finally {
    await world.stop();
  }

  let raw: IngestResult['raw'];
  if (o.raw) {
    o.log('ingest: raw kafkajs produce + consume ceiling (same ladder)');
    const topic = worldId('bench-raw');
    // The ratio needs the raw ceiling, not its easy steps: start where ours stopped and keep doubling.
    const rawRates = ladder(Math.max(highest, o.rates[0]!), Math.max(o.rawMaxRate, o.rates[o.rates.length - 1]!));
    o.log(`ingest: raw rates ${rawRates.join(', ')}`);
    const c = startTs(
      'kafka-raw',
      'bench/load/kafka-raw.ts',
      ['--brokers', cfg0.kafka.brokers, '--topic', topic, '--partitions', '6', '--rates', rawRates.join(','), '--hold', String(o.hold), '--rooms', String(o.rooms), '--compression', cfg0.producer.compression, '--p99-limit-ms', String(o.p99LimitMs)],
      { maxMs: (rawRates.length * (o.hold + 30) + 120) * 1000, echo: '  [kafka-raw] ' },
    );
    try {
      const r = await resultOf<{ highest: number; steps: RawStep[] }>(c, (rawRates.length * (o.hold + 30) + 120) * 1000);
      raw = { highestHeld: r.highest, steps: r.steps };
      for (const s of r.steps) o.log(`ingest raw: ${s.rate}/s → p99 ${s.latency.p99} ms${s.held ? ' — held' : ' — not held'}`);
    } catch (err) {
      raw = { highestHeld: 0, steps: [], error: (err as Error).message.split('\n')[0] };
    } finally {
      await c.stop();
    }
  }
  return {
    params: { rates: o.rates, rawMaxRate: o.rawMaxRate, holdSec: o.hold, rooms: o.rooms, p99LimitMs: o.p99LimitMs },
    ours: { highestHeld: highest, steps, textSource },
    raw,
    ratio: raw && raw.highestHeld > 0 ? round(highest / raw.highestHeld, 3) : undefined,
  };
}

export function ingestTable(r: IngestResult): string {
  const rows = [['system', 'rate/s', 'achieved', 'accepted', 'errors', 'p50 ms', 'p95 ms', 'p99 ms', 'CPU ms/write', 'held']];
  for (const s of r.ours.steps) rows.push(['ours', String(s.rate), String(s.achievedRate), String(s.accepted), String(s.errors + s.skipped + s.missing), String(s.writeToProjection.p50), String(s.writeToProjection.p95), String(s.writeToProjection.p99), String(s.cpuMsPerWrite), s.held ? 'yes' : `no: ${s.why}`]);
  for (const s of r.raw?.steps ?? []) rows.push(['raw kafkajs', String(s.rate), String(s.achievedRate), String(s.acked), String(s.errors + s.skipped), String(s.latency.p50), String(s.latency.p95), String(s.latency.p99), '', s.held ? 'yes' : 'no']);
  const out = [textTable(rows), `highest rate held (p99 write→projection ≤ ${r.params.p99LimitMs} ms, no errors, ${r.params.holdSec} s each): ours ${r.ours.highestHeld}/s`];
  if (r.raw) out.push(`raw kafkajs produce→consume: ${r.raw.highestHeld}/s${r.raw.error ? ` (${r.raw.error})` : ''}${r.ratio !== undefined ? `; ours / raw = ${r.ratio}` : ''}`);
  const top = r.params.rates[r.params.rates.length - 1]!;
  if (r.ours.highestHeld === top) out.push(`(${top}/s is the top of our ladder: our figure is a lower bound)`);
  const rawTop = r.raw?.steps[r.raw.steps.length - 1];
  if (rawTop?.held) out.push(`(raw held its last step, ${rawTop.rate}/s: the ceiling is at least that, so the ratio is an upper bound)`);
  return out.join('\n');
}

export function ingestChart(r: IngestResult, machine: string): string {
  const series = [
    { name: 'ours p50', points: r.ours.steps.map((s) => [s.rate, s.writeToProjection.p50] as [number, number]) },
    { name: 'ours p99', points: r.ours.steps.map((s) => [s.rate, s.writeToProjection.p99] as [number, number]) },
    ...(r.raw
      ? [
          { name: 'raw kafkajs p50', points: r.raw.steps.map((s) => [s.rate, s.latency.p50] as [number, number]) },
          { name: 'raw kafkajs p99', points: r.raw.steps.map((s) => [s.rate, s.latency.p99] as [number, number]) },
        ]
      : []),
  ];
  const a = lines({ x: 80, y: 80, w: 520, h: 320, title: 'Latency by offered rate (write → projection; raw: produce → consume)', yLabel: 'ms', log: true, xLabel: 'offered writes/s', series });
  const b = bars({ x: 700, y: 80, w: 300, h: 320, title: 'Highest rate held', yLabel: 'writes/s', groups: ['highest held'], series: [{ name: 'ours', values: [r.ours.highestHeld] }, ...(r.raw ? [{ name: 'raw kafkajs', values: [r.raw.highestHeld] }] : [])] });
  return svg(1080, 470, `ingest: HTTP write API → Kafka → projections, ${r.params.rooms} rooms, ${r.params.holdSec} s per step`, machine, [a, b]);
}
