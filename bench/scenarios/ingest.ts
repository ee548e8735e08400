/**
 * ingest: the write path at the seeds' scale. Comments go into one room (by
 * default; --rooms spreads them) from many benchmark users, over HTTP and over
 * the room's WebSocket (--ws-share), at a rate that doubles each step up to
 * 12,800/s. Limits stay on — the private world raises the users' budgets, it
 * does not switch anything off: validation, JWT, idempotency, Avro with the
 * registry and acks=all all run.
 *
 * A step is held when p99 write → projection ≤ 1 s, every accepted comment
 * reached the projection, no error other than a limit's, and the writers kept
 * the rate. write → projection: from the writer's send to the feed
 * projection's notification for that comment (SSUBSCRIBE on the room's
 * notification channel), i.e. the comment is in Redis and announced. The
 * HTTP answer (202) and the WebSocket ack are timed too.
 *
 * In the same run, two ceilings on the same broker and topic settings (a
 * private topic of the bench world):
 * - raw kafkajs produce → consume (bench/load/kafka-raw.ts), its own ladder
 *   from the rate ours stopped at;
 * - Kafka's own ProducerPerformance / ConsumerPerformance (bench/lib/kafka-perf.ts).
 *
 * CPU seconds per process are recorded per step (bench/lib/cpu.ts); with
 * `cpuProfDir` the gateway and the processors run under `node --cpu-prof`
 * and the top frames of their profiles are part of the result.
 */
import { loadConfig, type Config } from '../../core/config.ts';
import { bars, lines, stackedBars, svg } from '../lib/chart.ts';
import { CPU_ORDER, CpuMeter, cpuLine, withDescendants, type CpuSplit } from '../lib/cpu.ts';
import { profileText, readProfiles, type NamedProfile } from '../lib/cpuprofile.ts';
import { BENCH_WORLD, infraPids, requireInfra } from '../lib/infra.ts';
import { runKafkaPerf, type KafkaPerfResult } from '../lib/kafka-perf.ts';
import { resultOf, sleep, startTs } from '../lib/proc.ts';
import { textTable } from '../lib/report.ts';
import { Hist, round, type HistJson, type LatencySummary } from '../lib/stats.ts';
import { probeWsWrites, type WsProbe } from '../lib/ws-probe.ts';
import { logClient } from '../../topics/client.ts';
import { applyTopics, declaredTopics } from '../../topics/topics.ts';
import { worldId, startWorld } from '../../services/world.ts';

export interface IngestOptions {
  rates: number[];
  /** The raw ceiling keeps doubling past the ladder's top up to this (it starts at the highest rate ours held). */
  rawMaxRate: number;
  hold: number;
  rooms: number;
  /** Share of the writes sent over WebSocket (0..1); the rest over HTTP. */
  wsShare: number;
  /** Benchmark users writing over HTTP (WebSocket writers are users of their own). */
  users: number;
  /** WebSockets writing (each one user's). */
  wsSockets: number;
  p99LimitMs: number;
  raw: boolean;
  /** Records for Kafka's perf tools (0: skip them). */
  perfRecords: number;
  /** GATEWAY_WORKERS of the gateway under test (1: one process). */
  gatewayWorkers?: number;
  /** Share of bad writes (broken JSON, oversize, unknown emoji, expired token) in a last step at the highest rate held (0: skip it). */
  invalidShare: number;
  /** Run the gateway and processors under `node --cpu-prof` with this directory. */
  cpuProfDir?: string;
  log(m: string): void;
}

export interface IngestStep {
  rate: number;
  writers: number;
  sent: number;
  sentHttp: number;
  sentWs: number;
  accepted: number;
  errors: number;
  limitErrors: number;
  errorsByCode: Record<string, number>;
  skipped: number;
  achievedRate: number;
  observed: number;
  missing: number;
  writeToProjection: LatencySummary;
  httpAck: LatencySummary;
  wsAck: LatencySummary;
  cpu: CpuSplit;
  /** Gateway + processors CPU per accepted write. */
  cpuMsPerWrite: number;
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
  params: { rates: number[]; rawMaxRate: number; holdSec: number; rooms: number; wsShare: number; users: number; wsSockets: number; p99LimitMs: number; perfRecords: number; gatewayWorkers?: number };
  /** Whether the gateway took WebSocket writes, and the share actually used. */
  ws: { probe?: WsProbe; shareUsed: number };
  ours: { highestHeld: number; steps: IngestStep[]; textSource?: string };
  raw?: { highestHeld: number; steps: RawStep[]; cpu?: CpuSplit; error?: string };
  kafkaPerf?: KafkaPerfResult;
  /** The highest rate held again with a share of bad writes; the clean step's p99s to compare. */
  badInput?: { rate: number; share: number; step: IngestStep; invalid: InvalidSummary; cleanP99: number; cleanHttpP99: number };
  profiles?: NamedProfile[];
  ratio?: number;
}

export interface InvalidSummary {
  sent: number;
  /** Bad writes answered 2xx: a validation hole. */
  accepted: number;
  /** Bad writes answered 5xx or not at all. */
  serverErrors: number;
  byKind: Record<string, number>;
  byStatusAndCode: Record<string, number>;
}

interface WriterResult {
  invalid?: InvalidSummary;
  source: string;
  sent: number;
  sentHttp: number;
  sentWs: number;
  ok: number;
  errors: number;
  limitErrors: number;
  skipped: number;
  errorsByCode: Record<string, number>;
  achievedRate: number;
  observed: number;
  missing: number;
  projection: HistJson;
  http: HistJson;
  wsAck: HistJson;
  seqEnd: number;
  cpuSec: number;
}

export function ladder(start: number, max: number): number[] {
  const out: number[] = [];
  for (let r = start; r <= max; r *= 2) out.push(r);
  return out;
}

/** One writer process per 3,200 writes/s (at most 4): one Node process cannot post much more on these cores. */
export const writersFor = (rate: number) => Math.max(1, Math.min(4, Math.ceil(rate / 3200)));

/** Creates a topic with the settings of the world's event log (configs and partitions), for the ceilings. */
async function createLikeWorld(cfg: Config, name: string): Promise<void> {
  const client = logClient(cfg, 'bench-ceiling');
  const admin = client.admin();
  await admin.connect();
  try {
    await applyTopics(admin, [declaredTopics(cfg, { roomEvents: name, deadLetter: `${name}.dlq` })[0]!]);
  } finally {
    await admin.disconnect();
    await client.close();
  }
}

async function deleteTopic(cfg: Config, name: string): Promise<void> {
  const client = logClient(cfg, 'bench-ceiling');
  const admin = client.admin();
  try {
    await admin.connect();
    await admin.deleteTopics([name]);
  } catch {
    // left for `npm run topics` housekeeping
  } finally {
    await admin.disconnect().catch(() => {});
    await client.close().catch(() => {});
  }
}

export async function runIngest(o: IngestOptions): Promise<IngestResult> {
  const cfg0 = loadConfig();
  await requireInfra(cfg0, ['kafka', 'redis', 'registry']);
  const infra = await infraPids(cfg0);
  const maxMs = (o.rates.length * (o.hold + 80) + 300) * 1000;
  o.log(`ingest: starting a private world (processors + gateway)${o.cpuProfDir ? `, under node --cpu-prof (${o.cpuProfDir})` : ''}`);
  const world = await startWorld({
    ...BENCH_WORLD,
    env: { ...BENCH_WORLD.env, ...(o.gatewayWorkers && o.gatewayWorkers > 1 ? { GATEWAY_WORKERS: String(o.gatewayWorkers) } : {}) },
    processor: true,
    partitions: 6,
    maxMs,
    ...(o.cpuProfDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`] } : {}),
  });
  const roomList = Array.from({ length: o.rooms }, (_, i) => `ingest-${i}`);
  const steps: IngestStep[] = [];
  let highest = 0;
  let badInput: IngestResult['badInput'];
  let textSource: string | undefined;
  let wsShare = o.wsShare;
  let probe: WsProbe | undefined;
  const gw = world.gateways[0]!;
  const names = new Map<number, string>([
    [world.processor!.pid, 'processors'],
    [gw.proc.pid, 'gateway'],
  ]);
  try {
    if (wsShare > 0) {
      probe = await probeWsWrites({ url: gw.url, room: roomList[0]!, token: world.token('bench-probe'), frame: { type: 'comment', text: 'bench probe' } });
      o.log(`ingest: WebSocket writes: ${probe.detail}`);
      if (!probe.supported) {
        o.log('ingest: the gateway does not support WebSocket writes — HTTP only');
        wsShare = 0;
      }
    }
    const env = { JWT_SECRET: world.env.JWT_SECRET! };
    const args = (k: number, writers: number, rate: number, seconds: number, seqStart: number) => [
      '--url', gw.url,
      '--rooms', roomList.join(','),
      '--rate', String(rate / writers),
      '--seconds', String(seconds),
      '--users', String(Math.ceil(o.users / writers)),
      '--user-prefix', `bench-w${k}-`,
      '--ws-share', String(wsShare),
      '--ws-sockets', String(Math.max(o.rooms, Math.ceil(o.wsSockets / writers))),
      '--observe-redis', world.cfg.redis.url,
      '--observe-prefix', world.env.REDIS_KEY_PREFIX!,
      '--seq-start', String(seqStart),
    ];
    o.log('ingest: warm-up');
    const warm = startTs('ingest-writer', 'bench/load/ingest-writer.ts', [...args(0, 1, 20, 2, 5_000_000_000), '--drain-sec', '5'], { env, maxMs: 180_000 });
    await resultOf<WriterResult>(warm, 180_000);
    const meter = new CpuMeter(() => ({ gateway: withDescendants(gw.proc.pid), processors: [world.processor!.pid], kafka: [infra.kafka], redis: [infra.redis], registry: [infra.registry] }));
    const runStep = async (rate: number, si: number, invalidShare: number): Promise<{ step: IngestStep; invalid: InvalidSummary }> => {
      await sleep(1000);
      const writers = writersFor(rate);
      o.log(`ingest: ${rate} writes/s for ${o.hold} s (${writers} writer process${writers > 1 ? 'es' : ''}, ${Math.round(wsShare * 100)} % over WebSocket${invalidShare > 0 ? `, ${Math.round(invalidShare * 100)} % invalid` : ''})`);
      const mark = meter.mark();
      const children = Array.from({ length: writers }, (_, k) =>
        startTs('ingest-writer', 'bench/load/ingest-writer.ts', [...args(k, writers, rate, o.hold, si * 100_000_000 + k * 10_000_000), '--invalid-share', String(invalidShare)], { env, maxMs: (o.hold + 150) * 1000, echo: `  [writer ${k}] ` }),
      );
      const rs = await Promise.all(children.map((c) => resultOf<WriterResult>(c, (o.hold + 150) * 1000)));
      const loadgen = rs.reduce((a, r) => a + r.cpuSec, 0);
      const cpu = meter.since(mark, { 'load generators': loadgen });
      textSource = rs[0]!.source;
      const sum = (f: (r: WriterResult) => number) => rs.reduce((a, r) => a + f(r), 0);
      const merge = (f: (r: WriterResult) => HistJson) => rs.reduce((h, r) => h.merge(f(r)), new Hist()).summary();
      const byCode: Record<string, number> = {};
      for (const r of rs) for (const [c, n] of Object.entries(r.errorsByCode)) byCode[c] = (byCode[c] ?? 0) + n;
      const r = { sent: sum((x) => x.sent), ok: sum((x) => x.ok), errors: sum((x) => x.errors), limitErrors: sum((x) => x.limitErrors), skipped: sum((x) => x.skipped), missing: sum((x) => x.missing ?? 0), observed: sum((x) => x.observed ?? 0), achieved: sum((x) => x.achievedRate) };
      const proj = merge((x) => x.projection);
      const other = r.errors - r.limitErrors;
      const why =
        other > 0 ? `${other} write errors (${Object.entries(byCode).map(([c, n]) => `${c} ×${n}`).join(', ')})`
        : r.skipped > 0 ? `${r.skipped} writes not sent (in-flight cap)`
        : r.missing > 0 ? `${r.missing} accepted writes not in the projection within 10 s`
        : proj.count === 0 ? 'nothing reached the projection'
        : proj.p99 > o.p99LimitMs ? `p99 ${proj.p99} ms > ${o.p99LimitMs} ms`
        : r.achieved < 0.95 * rate ? `the writers reached only ${Math.round(r.achieved)}/s`
        : undefined;
      const serverCpu = (cpu.sec.gateway ?? 0) + (cpu.sec.processors ?? 0);
      const step: IngestStep = {
        rate,
        writers,
        sent: r.sent,
        sentHttp: sum((x) => x.sentHttp),
        sentWs: sum((x) => x.sentWs),
        accepted: r.ok,
        errors: r.errors,
        limitErrors: r.limitErrors,
        errorsByCode: byCode,
        skipped: r.skipped,
        achievedRate: round(r.achieved, 0),
        observed: r.observed,
        missing: r.missing,
        writeToProjection: proj,
        httpAck: merge((x) => x.http),
        wsAck: merge((x) => x.wsAck),
        cpu,
        cpuMsPerWrite: round((serverCpu * 1000) / Math.max(1, r.ok), 3),
        held: why === undefined,
        ...(why ? { why } : {}),
      };
      const invalid: InvalidSummary = { sent: 0, accepted: 0, serverErrors: 0, byKind: {}, byStatusAndCode: {} };
      for (const w of rs) {
        if (!w.invalid) continue;
        invalid.sent += w.invalid.sent;
        invalid.accepted += w.invalid.accepted;
        invalid.serverErrors += w.invalid.serverErrors;
        for (const [k, n] of Object.entries(w.invalid.byKind)) invalid.byKind[k] = (invalid.byKind[k] ?? 0) + n;
        for (const [k, n] of Object.entries(w.invalid.byStatusAndCode)) invalid.byStatusAndCode[k] = (invalid.byStatusAndCode[k] ?? 0) + n;
      }
      return { step, invalid };
    };
    for (const [si, rate] of o.rates.entries()) {
      const { step } = await runStep(rate, si, 0);
      const why = step.why;
      steps.push(step);
      o.log(`ingest: ${rate}/s → p99 write→projection ${step.writeToProjection.p99} ms, HTTP p99 ${step.httpAck.p99} ms, WS ack p99 ${step.wsAck.p99} ms, ${step.errors} errors${why ? ` — not held: ${why}` : ' — held'}`);
      o.log(`ingest:   CPU ${step.cpu.wallSec} s wall: ${cpuLine(step.cpu)}`);
      if (why) break;
      highest = rate;
    }
    // Bad input under load: the highest rate held again, with a share of bad
    // writes mixed in; the valid writes' latencies are compared with the
    // clean step at the same rate.
    if (o.invalidShare > 0 && highest > 0) {
      const clean = steps.find((x) => x.rate === highest)!;
      const { step, invalid } = await runStep(highest, o.rates.length, o.invalidShare);
      badInput = { rate: highest, share: o.invalidShare, step, invalid, cleanP99: clean.writeToProjection.p99, cleanHttpP99: clean.httpAck.p99 };
      o.log(`ingest: bad input at ${highest}/s: valid p99 ${step.writeToProjection.p99} ms (clean ${clean.writeToProjection.p99} ms); invalid ${invalid.sent}: ${Object.entries(invalid.byStatusAndCode).map(([c, n]) => `${c} ×${n}`).join(', ')}`);
    }
  } finally {
    for (const p of withDescendants(gw.proc.pid).slice(1)) names.set(p, 'gateway worker');
    await world.stop();
  }
  const profiles = o.cpuProfDir ? readProfiles(o.cpuProfDir, names) : undefined;

  const kafkaPid = infra.kafka;
  let raw: IngestResult['raw'];
  if (o.raw) {
    o.log('ingest: raw kafkajs produce + consume ceiling (same broker, same topic settings)');
    const topic = worldId('bench-raw');
    await createLikeWorld(world.cfg, topic);
    // The ratio needs the raw ceiling, not its easy steps: start where ours stopped and keep doubling.
    const rawRates = ladder(Math.max(highest, o.rates[0]!), Math.max(o.rawMaxRate, o.rates[o.rates.length - 1]!));
    o.log(`ingest: raw rates ${rawRates.join(', ')}`);
    const meter = new CpuMeter(() => ({ kafka: [kafkaPid] }));
    const mark = meter.mark();
    const c = startTs(
      'kafka-raw',
      'bench/load/kafka-raw.ts',
      ['--brokers', cfg0.kafka.brokers, '--topic', topic, '--partitions', String(world.cfg.topics.partitions), '--rates', rawRates.join(','), '--hold', String(o.hold), '--rooms', String(o.rooms), '--compression', cfg0.producer.compression, '--p99-limit-ms', String(o.p99LimitMs)],
      { maxMs: (rawRates.length * (o.hold + 30) + 120) * 1000, echo: '  [kafka-raw] ' },
    );
    try {
      const r = await resultOf<{ highest: number; steps: RawStep[]; cpuSec: number }>(c, (rawRates.length * (o.hold + 30) + 120) * 1000);
      raw = { highestHeld: r.highest, steps: r.steps, cpu: meter.since(mark, { 'load generators': r.cpuSec }) };
      for (const s of r.steps) o.log(`ingest raw: ${s.rate}/s → p99 ${s.latency.p99} ms${s.held ? ' — held' : ' — not held'}`);
    } catch (err) {
      raw = { highestHeld: 0, steps: [], error: (err as Error).message.split('\n')[0] };
    } finally {
      await c.stop();
      await deleteTopic(cfg0, topic);
    }
  }

  let kafkaPerf: KafkaPerfResult | undefined;
  if (o.perfRecords > 0) {
    const topic = worldId('bench-perf');
    await createLikeWorld(world.cfg, topic);
    try {
      kafkaPerf = await runKafkaPerf({ cfg: cfg0, topic, records: o.perfRecords, recordSize: 200, compression: cfg0.producer.compression, lingerMs: cfg0.producer.lingerMs, kafkaPid, log: o.log });
      if (kafkaPerf.error) o.log(`ingest: kafka-perf: ${kafkaPerf.error}`);
      else o.log(`ingest: kafka-perf: producer ${Math.round(kafkaPerf.producer!.recordsPerSec)}/s (p99 ${kafkaPerf.producer!.p99Ms} ms), consumer ${kafkaPerf.consumer!.fetchMsgPerSec}/s`);
    } finally {
      await deleteTopic(cfg0, topic);
    }
  }

  return {
    params: { rates: o.rates, rawMaxRate: o.rawMaxRate, holdSec: o.hold, rooms: o.rooms, wsShare: o.wsShare, users: o.users, wsSockets: o.wsSockets, p99LimitMs: o.p99LimitMs, perfRecords: o.perfRecords, gatewayWorkers: o.gatewayWorkers ?? 1 },
    ws: { ...(probe ? { probe } : {}), shareUsed: wsShare },
    ours: { highestHeld: highest, steps, textSource },
    ...(badInput ? { badInput } : {}),
    raw,
    kafkaPerf,
    ...(profiles ? { profiles } : {}),
    ratio: raw && raw.highestHeld > 0 ? round(highest / raw.highestHeld, 3) : undefined,
  };
}

const secs = (ms: number) => `${+(ms / 1000).toFixed(3)} s`;

/** The two plain lines the run ends with (read by people and tools). */
export function ingestFinalLines(r: IngestResult): string[] {
  const where = r.params.rooms === 1 ? 'one room' : `${r.params.rooms} rooms`;
  const share = r.ws.shareUsed;
  const mix = share === 0 ? 'HTTP only' : share === 1 ? 'WebSocket only' : share === 0.5 ? '' : `${Math.round(share * 100)} % WebSocket`;
  return [
    `highest rate held (${[where, mix, (r.params.gatewayWorkers ?? 1) > 1 ? `${r.params.gatewayWorkers} gateway workers` : '', `p99 write→projection ≤ ${secs(r.params.p99LimitMs)}`].filter(Boolean).join(', ')}): ours ${r.ours.highestHeld}/s`,
    `ceilings: raw kafkajs ${r.raw?.highestHeld ?? 0}/s, kafka-perf ${r.kafkaPerf?.ceiling ?? 0}/s`,
    ...(r.badInput ? [badInputLine(r.badInput)] : []),
  ];
}

/** The bad-input step in one line: the codes the bad writes got, and what they cost the valid ones. */
export function badInputLine(b: NonNullable<IngestResult['badInput']>): string {
  const fourxx = Object.entries(b.invalid.byStatusAndCode).filter(([k]) => k.startsWith('4')).reduce((a, [, n]) => a + n, 0);
  const codes = Object.entries(b.invalid.byStatusAndCode).sort((x, y) => y[1] - x[1]).map(([k, n]) => `${k} ×${n}`).join(', ');
  return `bad input under load (${b.rate}/s, ${Math.round(b.share * 100)} % invalid): ${fourxx} of ${b.invalid.sent} answered 4xx, 5xx ${b.invalid.serverErrors}, accepted ${b.invalid.accepted}; valid p99 write→projection ${b.step.writeToProjection.p99} ms (clean ${b.cleanP99} ms), valid held: ${b.step.held ? 'yes' : `no (${b.step.why})`} [${codes}]`;
}

const ms = (v: number) => (Number.isFinite(v) ? String(v) : '–');

export function ingestTable(r: IngestResult): string {
  const rows = [['system', 'rate/s', 'achieved', 'HTTP/WS sent', 'accepted', 'errors', 'p50 ms', 'p99 ms', 'HTTP p99', 'WS ack p99', 'CPU ms/write', 'held']];
  for (const s of r.ours.steps)
    rows.push(['ours', String(s.rate), String(s.achievedRate), `${s.sentHttp}/${s.sentWs}`, String(s.accepted), String(s.errors + s.skipped + s.missing), ms(s.writeToProjection.p50), ms(s.writeToProjection.p99), ms(s.httpAck.p99), ms(s.wsAck.p99), String(s.cpuMsPerWrite), s.held ? 'yes' : `no: ${s.why}`]);
  if (r.badInput) {
    const s = r.badInput.step;
    rows.push([`ours + ${Math.round(r.badInput.share * 100)} % invalid`, String(s.rate), String(s.achievedRate), `${s.sentHttp}/${s.sentWs}`, String(s.accepted), String(s.errors + s.skipped + s.missing), ms(s.writeToProjection.p50), ms(s.writeToProjection.p99), ms(s.httpAck.p99), ms(s.wsAck.p99), String(s.cpuMsPerWrite), s.held ? 'yes' : `no: ${s.why}`]);
  }
  for (const s of r.raw?.steps ?? []) rows.push(['raw kafkajs', String(s.rate), String(s.achievedRate), '', String(s.acked), String(s.errors + s.skipped), String(s.latency.p50), String(s.latency.p99), '', '', '', s.held ? 'yes' : 'no']);
  const out = [textTable(rows)];
  const cpuRows = [['step', ...CPU_ORDER.filter((n) => r.ours.steps.some((s) => (s.cpu.sec[n] ?? 0) > 0)), 'total', 'wall s']];
  const names = cpuRows[0]!.slice(1, -2);
  for (const s of r.ours.steps) cpuRows.push([`ours ${s.rate}/s`, ...names.map((n) => String(s.cpu.sec[n] ?? 0)), String(s.cpu.totalSec), String(s.cpu.wallSec)]);
  out.push('', 'CPU seconds per process in each step:', textTable(cpuRows));
  if (r.raw?.cpu) out.push(`raw kafkajs ladder CPU: ${cpuLine(r.raw.cpu)}`);
  const kp = r.kafkaPerf;
  if (kp?.producer) {
    out.push(
      `kafka-perf (${kp.recordSize}-byte records, acks=all, idempotent, ${kp.producerProps['compression.type']}): producer ${Math.round(kp.producer.recordsPerSec)} records/s, p50 ${kp.producer.p50Ms} / p99 ${kp.producer.p99Ms} ms produce→ack (unthrottled, ${kp.producer.records} records); CPU: tool ${kp.producer.cpuSec.tool} s, kafka ${kp.producer.cpuSec.kafka} s`,
    );
    if (kp.consumer) out.push(`kafka-perf consumer: ${kp.consumer.fetchMsgPerSec} records/s while fetching (${kp.consumer.msgPerSec}/s with the group join); CPU: tool ${kp.consumer.cpuSec.tool} s, kafka ${kp.consumer.cpuSec.kafka} s`);
  }
  if (kp?.error) out.push(`kafka-perf: ${kp.error}`);
  if (r.raw?.error) out.push(`raw kafkajs: ${r.raw.error}`);
  if (r.ws.probe && !r.ws.probe.supported) out.push(`WebSocket writes: not supported by this gateway (${r.ws.probe.detail}); every write went over HTTP`);
  const errs = r.ours.steps.filter((s) => s.errors > 0).map((s) => `${s.rate}/s: ${Object.entries(s.errorsByCode).map(([c, n]) => `${c} ×${n}`).join(', ')}`);
  if (errs.length) out.push(`errors by code: ${errs.join('; ')}`);
  const top = r.params.rates[r.params.rates.length - 1]!;
  if (r.ours.highestHeld === top) out.push(`(${top}/s is the top of our ladder: our figure is a lower bound)`);
  const rawTop = r.raw?.steps[r.raw.steps.length - 1];
  if (rawTop?.held) out.push(`(raw held its last step, ${rawTop.rate}/s: that ceiling is at least that)`);
  if (r.ratio !== undefined) out.push(`ours / raw kafkajs = ${r.ratio}`);
  if (r.profiles?.length) out.push('', profileText(r.profiles));
  return out.join('\n');
}

export function ingestChart(r: IngestResult, machine: string): string {
  const pts = (f: (s: IngestStep) => number) => r.ours.steps.map((s) => [s.rate, f(s)] as [number, number]);
  const series = [
    { name: 'ours p50 write→projection', points: pts((s) => s.writeToProjection.p50) },
    { name: 'ours p99 write→projection', points: pts((s) => s.writeToProjection.p99) },
    { name: 'ours p99 HTTP 202', points: pts((s) => s.httpAck.p99) },
    ...(r.ws.shareUsed > 0 ? [{ name: 'ours p99 WebSocket ack', points: pts((s) => s.wsAck.p99) }] : []),
    ...(r.raw ? [{ name: 'raw kafkajs p99', points: r.raw.steps.map((s) => [s.rate, s.latency.p99] as [number, number]) }] : []),
  ];
  const a = lines({ x: 80, y: 80, w: 520, h: 320, title: 'Latency by offered rate', yLabel: 'ms', log: true, xLabel: 'offered writes/s', xLog: true, series });
  const held = [{ name: 'ours', values: [r.ours.highestHeld] }, ...(r.raw ? [{ name: 'raw kafkajs', values: [r.raw.highestHeld] }] : []), ...(r.kafkaPerf ? [{ name: 'kafka-perf', values: [r.kafkaPerf.ceiling] }] : [])];
  const b = bars({ x: 700, y: 80, w: 300, h: 320, title: 'Highest rate held / ceiling', yLabel: 'writes/s', log: true, groups: ['writes/s'], series: held });
  const present = CPU_ORDER.filter((n) => r.ours.steps.some((s) => (s.cpu.sec[n] ?? 0) > 0));
  const c = stackedBars({
    x: 80,
    y: 500,
    w: 920,
    h: 260,
    title: 'CPU per process in each step (cores: CPU seconds ÷ wall seconds)',
    yLabel: 'cores',
    groups: r.ours.steps.map((s) => `${s.rate}/s`),
    series: present.map((n) => ({ name: n, values: r.ours.steps.map((s) => round((s.cpu.sec[n] ?? 0) / Math.max(0.1, s.cpu.wallSec), 2)) })),
  });
  const where = r.params.rooms === 1 ? 'one room' : `${r.params.rooms} rooms`;
  return svg(1080, 820, `ingest: comments into ${where}, ${Math.round(r.ws.shareUsed * 100)} % over WebSocket, ${r.params.holdSec} s per step`, machine, [a, b, c]);
}
