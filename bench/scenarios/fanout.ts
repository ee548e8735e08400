/**
 * fanout: one room, V WebSocket viewers, R comments/s for T seconds, against
 * ours (gateway + processors), Socket.IO 4 + Redis adapter, and Centrifugo v6,
 * one after the other in the same run with the same load.
 *
 * Per system: deliveries/s, end-to-end latency (writer's send time → each
 * viewer's receive time), server CPU seconds per million deliveries (utime +
 * stime of the server processes from /proc, before/after the write phase),
 * server memory per connection (RSS delta of the connection-holding process
 * after the viewers connected, / V). The shared Kafka/Redis/registry CPU is
 * reported beside it, since ours needs Kafka and both ours and Socket.IO use
 * Redis.
 */
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../core/config.ts';
import { KINDS, type Kind } from '../load/kinds.ts';
import { CENTRIFUGO_VERSION, ensureCentrifugo, startCentrifugo } from '../peers/centrifugo.ts';
import { bars, lines, svg } from '../lib/chart.ts';
import { withDescendants } from '../lib/cpu.ts';
import { BENCH_WORLD, infraPids, requireInfra } from '../lib/infra.ts';
import { textTable } from '../lib/report.ts';
import { cpuSeconds, freePort, resultOf, rssBytes, sleep, startTs, sumCpu, type Child } from '../lib/proc.ts';
import { Hist, mergeSeries, round, type HistJson, type LatencySummary, type SeriesJson } from '../lib/stats.ts';
import { worldId, startWorld } from '../../services/world.ts';

export interface FanoutOptions {
  viewers: number;
  rate: number;
  seconds: number;
  systems: Kind[];
  /** May build missing peers (Centrifugo); false in --ci. */
  build: boolean;
  viewerProcs?: number;
  /** GATEWAY_WORKERS of ours (default: one per core, as Centrifugo uses every core). */
  gatewayWorkers?: number;
  /** Rooms the viewers are spread over (evenly) and the comments written to (default 1). */
  rooms?: number;
  /** With several rooms: the rate of the k-th room is ∝ 1/k^zipf (0: equal rates). */
  zipf?: number;
  log(m: string): void;
}

interface ViewersResult {
  connected: number;
  failed: number;
  deliveries: number;
  duplicates: number;
  untagged: number;
  unexpectedCloses: number;
  closeReasons: Record<string, number>;
  perViewerMin: number;
  perViewerMax: number;
  latency: HistJson;
  connect: HistJson;
  series: SeriesJson;
}

interface WriterResult {
  source: string;
  sent: number;
  ok: number;
  errors: number;
  skipped: number;
  errorSamples: Record<string, number>;
  achievedRate: number;
  sendSeconds: number;
  http: HistJson;
  cpuSec: number;
  t0: number;
}

export interface SystemResult {
  system: Kind;
  label: string;
  available: boolean;
  error?: string;
  viewers?: { requested: number; connected: number; failed: number; connectP50Ms: number; connectP99Ms: number };
  writes?: { sent: number; accepted: number; errors: number; achievedRate: number; httpLatency: LatencySummary; errorSamples: Record<string, number> };
  deliveries?: number;
  expected?: number;
  deliveredPct?: number;
  duplicates?: number;
  unexpectedCloses?: number;
  deliveriesPerSec?: number;
  latency?: LatencySummary;
  /** serverSec: the system's own processes; infraSec: the shared servers over the same window (other users of them count too); loadgenSec: the viewer processes (and the writer's whole life). */
  cpu?: { serverSec: number; infraSec: Record<string, number>; loadgenSec: number; perMillionDeliveries: number; perMillionInclInfra: number };
  memory?: { rssBeforeMiB: number; rssAfterMiB: number; perConnectionKiB: number };
  series?: { second: number; deliveries: number; p50: number; p99: number }[];
  textSource?: string;
}

export interface FanoutResult {
  params: { viewers: number; rate: number; seconds: number };
  systems: SystemResult[];
  ratios: Record<string, { deliveriesPerSec: number; p50: number; p99: number; cpuPerMillion: number; memoryPerConnection: number }>;
}

export const LABELS: Record<Kind, string> = { ours: 'ours (gateway + processors)', socketio: 'Socket.IO 4 + redis-adapter', centrifugo: `Centrifugo ${CENTRIFUGO_VERSION}` };

interface Server {
  url: string;
  /** Every server process of the system (CPU). */
  pids: number[];
  /** The processes that hold the WebSockets (memory per connection: their RSS summed). */
  connPids: number[];
  apiKey?: string;
  jwtSecret?: string;
  room: string;
  stop(): Promise<void>;
}

async function startServer(kind: Kind, cfg: Config, o: FanoutOptions, maxMs: number): Promise<Server | { unavailable: string }> {
  const base = `fanout-${Date.now().toString(36)}`;
  // Several rooms travel as one comma-separated list (viewers.ts and writer.ts split it).
  const room = (o.rooms ?? 1) > 1 ? Array.from({ length: o.rooms! }, (_, k) => `${base}-${k}`).join(',') : base;
  switch (kind) {
    case 'ours': {
      const workers = o.gatewayWorkers ?? os.cpus().length;
      const w = await startWorld({ ...BENCH_WORLD, env: { ...BENCH_WORLD.env, GATEWAY_WORKERS: String(workers) }, processor: true, maxMs });
      const gw = w.gateways[0]!;
      // With workers, the sockets live in the workers (children of the gateway's process).
      const gateway = withDescendants(gw.proc.pid);
      return { url: gw.url, pids: [...w.pids().filter((p) => p !== gw.proc.pid), ...gateway], connPids: gateway, jwtSecret: w.env.JWT_SECRET, room, stop: () => w.stop() };
    }
    case 'socketio': {
      const port = await freePort();
      const proc = startTs('socketio', 'bench/peers/socketio-server.ts', ['--port', String(port), '--redis', cfg.redis.url, '--prefix', worldId('bench-sio')], { maxMs, nofile: 65536 });
      await proc.waitForLine(/listening on/, 60_000);
      return { url: `http://127.0.0.1:${port}`, pids: [proc.pid], connPids: [proc.pid], room, stop: () => proc.stop() };
    }
    case 'centrifugo': {
      const a = await ensureCentrifugo(cfg, { build: o.build, log: o.log });
      if ('unavailable' in a) return a;
      const c = await startCentrifugo(a.bin, { workDir: path.join(cfg.dataDir, 'bench'), maxMs });
      return { url: c.url, pids: [c.proc.pid], connPids: [c.proc.pid], apiKey: c.apiKey, room, stop: () => c.stop() };
    }
  }
}

function writerArgs(kind: Kind, s: Server, rate: number, seconds: number, seqStart: number, zipf = 0): string[] {
  const rooms = s.room.split(',');
  const weights = rooms.length > 1 && zipf > 0 ? ['--weights', rooms.map((_, k) => (1 / (k + 1) ** zipf).toFixed(6)).join(',')] : [];
  return ['--kind', kind, '--url', s.url, '--rooms', s.room, '--rate', String(rate), '--seconds', String(seconds), '--users', '100', '--seq-start', String(seqStart), ...weights, ...(s.apiKey ? ['--api-key', s.apiKey] : [])];
}

async function runSystem(kind: Kind, cfg: Config, o: FanoutOptions): Promise<SystemResult> {
  const label = LABELS[kind];
  const maxMs = (o.seconds + 300) * 1000;
  o.log(`fanout ${kind}: starting server`);
  let server: Server | { unavailable: string };
  try {
    server = await startServer(kind, cfg, o, maxMs);
  } catch (err) {
    return { system: kind, label, available: false, error: (err as Error).message.split('\n')[0] };
  }
  if ('unavailable' in server) return { system: kind, label, available: false, error: server.unavailable };
  const s = server;
  const children: Child[] = [];
  try {
    const writerEnv: Record<string, string> = s.jwtSecret ? { JWT_SECRET: s.jwtSecret } : {};
    // Warm-up before the viewers connect (first produce, metadata, JIT): not measured.
    o.log(`fanout ${kind}: warm-up`);
    const warm = startTs('writer', 'bench/load/writer.ts', writerArgs(kind, s, Math.min(o.rate, 20), 2, 10_000_000), { env: writerEnv, maxMs: 120_000, echo: `  [${kind} warm-up] ` });
    children.push(warm);
    const warmRes = await resultOf<WriterResult>(warm, 120_000);
    if (warmRes.ok === 0) throw new Error(`warm-up writes all failed: ${JSON.stringify(warmRes.errorSamples)}`);
    await sleep(1000);

    const rss0 = s.connPids.reduce((a, p) => a + rssBytes(p), 0);
    const procs = o.viewerProcs ?? Math.max(1, Math.ceil(o.viewers / 1000));
    o.log(`fanout ${kind}: connecting ${o.viewers} viewers (${procs} process${procs > 1 ? 'es' : ''})`);
    const viewerProcs: Child[] = [];
    for (let p = 0; p < procs; p++) {
      const n = Math.floor(o.viewers / procs) + (p < o.viewers % procs ? 1 : 0);
      const v = startTs('viewers', 'bench/load/viewers.ts', ['--kind', kind, '--url', s.url, '--room', s.room, '--n', String(n), '--max-sec', String(o.seconds + 240)], { maxMs, nofile: n + 1024, echo: `  [${kind} viewers] ` });
      viewerProcs.push(v);
      children.push(v);
    }
    const ready = await Promise.all(viewerProcs.map((v) => v.waitForLine(/^READY /, 120_000)));
    const connected = ready.reduce((a, l) => a + Number(l.split(' ')[1]), 0);
    if (connected === 0) throw new Error(`no viewer could connect; viewer output: ${viewerProcs[0]!.output.slice(-5).join(' | ')}`);
    await sleep(1500);
    const rss1 = s.connPids.reduce((a, p) => a + rssBytes(p), 0);

    const infra = await infraPids(cfg);
    const infraList = Object.entries(infra).filter((e): e is [string, number] => e[1] !== undefined);
    const cpu0 = sumCpu(s.pids);
    const loadPids = viewerProcs.map((v) => v.pid);
    const load0 = sumCpu(loadPids);
    const infra0 = infraList.map(([, pid]) => cpuSeconds(pid));
    o.log(`fanout ${kind}: ${connected} viewers connected; writing ${o.rate}/s for ${o.seconds} s`);
    const writer = startTs('writer', 'bench/load/writer.ts', writerArgs(kind, s, o.rate, o.seconds, 0, o.zipf ?? 0), { env: writerEnv, maxMs, echo: `  [${kind} writer] ` });
    children.push(writer);
    const w = await resultOf<WriterResult>(writer, maxMs);

    // Drain: until every accepted comment reached every viewer, or 10 s without progress.
    // Each comment reaches its own room's viewers: an even share of them with several rooms.
    const expected = Math.round((w.ok * connected) / (o.rooms ?? 1));
    let last = -1;
    let lastChange = Date.now();
    for (;;) {
      const lines = await Promise.all(viewerProcs.map((v) => v.ask('status', /^STATUS /, 10_000).then((l) => Number(l.split(' ')[1]))));
      const got = lines.reduce((a, b) => a + b, 0);
      if (got >= expected) break;
      if (got !== last) {
        last = got;
        lastChange = Date.now();
      } else if (Date.now() - lastChange > 10_000) break;
      await sleep(200);
    }
    const cpu1 = sumCpu(s.pids);
    const load1 = sumCpu(loadPids) + w.cpuSec;
    const infra1 = infraList.map(([, pid]) => cpuSeconds(pid));

    for (const v of viewerProcs) v.send('stop');
    const vr = await Promise.all(viewerProcs.map((v) => resultOf<ViewersResult>(v, 30_000)));
    const lat = new Hist();
    const conn = new Hist();
    for (const r of vr) {
      lat.merge(r.latency);
      conn.merge(r.connect);
    }
    const deliveries = vr.reduce((a, r) => a + r.deliveries, 0);
    const series = mergeSeries(vr.map((r) => r.series));
    const serverSec = cpu1 - cpu0;
    const infraSec = Object.fromEntries(infraList.map(([n], i) => [n, round(infra1[i]! - infra0[i]!)]));
    const infraTotal = Object.values(infraSec).reduce((a, b) => a + b, 0);
    // Ours needs Kafka (and the registry only at start); Redis is used by ours and Socket.IO; Centrifugo runs its in-memory engine.
    const infraUsed = kind === 'ours' ? infraTotal : kind === 'socketio' ? (infraSec.redis ?? 0) : 0;
    const failed = ready.reduce((a, l) => a + Number(l.split(' ')[2]), 0);
    return {
      system: kind,
      label,
      available: true,
      textSource: w.source,
      viewers: { requested: o.viewers, connected, failed, connectP50Ms: round(conn.quantile(0.5)), connectP99Ms: round(conn.quantile(0.99)) },
      writes: { sent: w.sent, accepted: w.ok, errors: w.errors, achievedRate: round(w.achievedRate), httpLatency: Hist.from(w.http).summary(), errorSamples: w.errorSamples },
      deliveries,
      expected,
      deliveredPct: round((100 * deliveries) / Math.max(1, expected)),
      duplicates: vr.reduce((a, r) => a + r.duplicates, 0),
      unexpectedCloses: vr.reduce((a, r) => a + r.unexpectedCloses, 0),
      deliveriesPerSec: round(deliveries / w.sendSeconds, 0),
      latency: lat.summary(),
      cpu: { serverSec: round(serverSec), infraSec, loadgenSec: round(load1 - load0), perMillionDeliveries: round((serverSec * 1e6) / Math.max(1, deliveries)), perMillionInclInfra: round(((serverSec + infraUsed) * 1e6) / Math.max(1, deliveries)) },
      memory: { rssBeforeMiB: round(rss0 / 2 ** 20, 1), rssAfterMiB: round(rss1 / 2 ** 20, 1), perConnectionKiB: round((rss1 - rss0) / 1024 / connected, 1) },
      // Seconds since the writer started.
      series: series.seconds.map((b, i) => ({ second: i + Math.round((series.t0 - w.t0) / 1000), deliveries: b.n, p50: round(b.hist.quantile(0.5)), p99: round(b.hist.quantile(0.99)) })).filter((b) => b.second >= 0),
    };
  } catch (err) {
    return { system: kind, label, available: false, error: `run failed: ${(err as Error).message.split('\n').slice(0, 3).join(' | ')}` };
  } finally {
    for (const c of children) await c.stop('SIGTERM', 3000);
    await s.stop().catch(() => {});
  }
}

export async function runFanout(o: FanoutOptions): Promise<FanoutResult> {
  const cfg = loadConfig();
  await requireInfra(cfg, ['kafka', 'redis', 'registry']);
  const systems: SystemResult[] = [];
  for (const kind of KINDS.filter((k) => o.systems.includes(k))) {
    const r = await runSystem(kind, cfg, o);
    if (!r.available) o.log(`fanout ${kind}: unavailable — ${r.error}`);
    systems.push(r);
  }
  const ours = systems.find((x) => x.system === 'ours' && x.available);
  const ratios: FanoutResult['ratios'] = {};
  if (ours)
    for (const p of systems.filter((x) => x.system !== 'ours' && x.available)) {
      ratios[p.system] = {
        deliveriesPerSec: round(ours.deliveriesPerSec! / p.deliveriesPerSec!),
        p50: round(ours.latency!.p50 / p.latency!.p50),
        p99: round(ours.latency!.p99 / p.latency!.p99),
        cpuPerMillion: round(ours.cpu!.perMillionDeliveries / p.cpu!.perMillionDeliveries),
        memoryPerConnection: round(ours.memory!.perConnectionKiB / p.memory!.perConnectionKiB),
      };
    }
  return { params: { viewers: o.viewers, rate: o.rate, seconds: o.seconds }, systems, ratios };
}

/** Plain-text table of a fanout result. */
export function fanoutTable(r: FanoutResult): string {
  const rows: string[][] = [['system', 'viewers', 'sent/acc', 'deliv/s', 'deliv%', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'CPU s/M', 'CPU s/M +infra', 'KiB/conn']];
  for (const s of r.systems) {
    if (!s.available) {
      rows.push([s.system, '–', '–', 'unavailable', '', '', '', '', '', '', '', '']);
      continue;
    }
    rows.push([
      s.system,
      `${s.viewers!.connected}/${s.viewers!.requested}`,
      `${s.writes!.sent}/${s.writes!.accepted}`,
      String(s.deliveriesPerSec),
      String(s.deliveredPct),
      String(s.latency!.p50),
      String(s.latency!.p95),
      String(s.latency!.p99),
      String(s.latency!.max),
      String(s.cpu!.perMillionDeliveries),
      String(s.cpu!.perMillionInclInfra),
      String(s.memory!.perConnectionKiB),
    ]);
  }
  const out = [textTable(rows)];
  for (const s of r.systems.filter((x) => !x.available)) out.push(`${s.system}: unavailable — ${s.error}`);
  for (const [peer, q] of Object.entries(r.ratios))
    out.push(`ours / ${peer}: deliveries/s ×${q.deliveriesPerSec}, p50 ×${q.p50}, p99 ×${q.p99}, CPU per delivery ×${q.cpuPerMillion}, memory per connection ×${q.memoryPerConnection}`);
  return out.join('\n');
}

export function fanoutChart(r: FanoutResult, machine: string): string {
  const ok = r.systems.filter((s) => s.available);
  const names = ok.map((s) => s.label);
  const a = bars({ x: 80, y: 80, w: 420, h: 300, title: 'End-to-end latency (writer send → viewer receive)', yLabel: 'ms', log: true, groups: ['p50', 'p95', 'p99', 'max'], series: ok.map((s) => ({ name: s.label, values: [s.latency!.p50, s.latency!.p95, s.latency!.p99, s.latency!.max] })) });
  const b = lines({ x: 600, y: 80, w: 420, h: 300, title: 'Deliveries per second', yLabel: 'deliveries/s', xLabel: 'seconds since the writer started', series: ok.map((s) => ({ name: s.label, points: s.series!.map((p) => [p.second, p.deliveries] as [number, number]) })) });
  const c = lines({ x: 80, y: 470, w: 420, h: 220, title: 'p99 latency per second', yLabel: 'ms', log: true, xLabel: 'seconds since the writer started', series: ok.map((s) => ({ name: s.label, points: s.series!.filter((p) => p.deliveries > 0).map((p) => [p.second, p.p99] as [number, number]) })) });
  const d = bars({ x: 600, y: 470, w: 420, h: 220, title: 'Server cost', yLabel: 'value', groups: ['CPU s / M deliveries', 'KiB / connection'], series: ok.map((s) => ({ name: s.label, values: [s.cpu!.perMillionDeliveries, s.memory!.perConnectionKiB] })) });
  const missing = r.systems.filter((s) => !s.available).map((s) => `${s.system}: unavailable`).join('; ');
  return svg(1080, 740, `fanout: 1 room, ${r.params.viewers} viewers, ${r.params.rate} comments/s for ${r.params.seconds} s`, `${machine}${missing ? ` — ${missing}` : ''}${names.length ? '' : ' — no system ran'}`, [a, b, c, d]);
}

// ---------------------------------------------------------------- rooms

export interface RoomsResult {
  params: { rooms: number; viewersPerRoom: number; rate: number; seconds: number; zipf: number };
  /** R rooms, viewers spread evenly, comment rates ∝ 1/k^zipf. */
  many: SystemResult;
  /** One room with as many viewers as each of those, at the same total rate: the same deliveries/s. */
  one: SystemResult;
  /** many ÷ one: CPU per delivery (1 = the rooms cost nothing per delivery). */
  cpuRatio: number;
}

/**
 * rooms: ours with R rooms × V viewers and a Zipf spread of comment rates (a
 * few hot rooms, a long quiet tail), beside one room with V viewers at the
 * same total rate — the same deliveries per second — so that a cost per room
 * per delivery (O(rooms) work) would show as a CPU ratio above 1.
 */
export async function runRooms(o: { rooms: number; viewersPerRoom: number; rate: number; seconds: number; zipf: number; gatewayWorkers?: number; log(m: string): void }): Promise<RoomsResult> {
  const cfg = loadConfig();
  await requireInfra(cfg, ['kafka', 'redis', 'registry']);
  const base = { rate: o.rate, seconds: o.seconds, systems: ['ours'] as Kind[], build: false, gatewayWorkers: o.gatewayWorkers, log: o.log };
  o.log(`rooms: ${o.rooms} rooms × ${o.viewersPerRoom} viewers, ${o.rate} comments/s in all (Zipf ${o.zipf})`);
  const many = await runSystem('ours', cfg, { ...base, viewers: o.rooms * o.viewersPerRoom, rooms: o.rooms, zipf: o.zipf });
  o.log(`rooms: one room × ${o.viewersPerRoom} viewers at ${o.rate} comments/s (the same deliveries/s)`);
  const one = await runSystem('ours', cfg, { ...base, viewers: o.viewersPerRoom });
  const cpuRatio = many.cpu && one.cpu && one.cpu.perMillionDeliveries > 0 ? round(many.cpu.perMillionDeliveries / one.cpu.perMillionDeliveries) : 0;
  return { params: { rooms: o.rooms, viewersPerRoom: o.viewersPerRoom, rate: o.rate, seconds: o.seconds, zipf: o.zipf }, many, one, cpuRatio };
}

export function roomsFinalLines(r: RoomsResult): string[] {
  const m = r.many;
  return [
    `rooms: ${r.params.rooms} rooms × ${r.params.viewersPerRoom} viewers, ${Math.round(m.deliveriesPerSec ?? 0)} deliveries/s, delivered ${m.deliveredPct ?? 0} %, p99 ${m.latency?.p99 ?? '–'} ms, CPU per delivery ×${r.cpuRatio} of one room's`,
  ];
}

export function roomsTable(r: RoomsResult): string {
  return fanoutTable({ params: { viewers: r.params.rooms * r.params.viewersPerRoom, rate: r.params.rate, seconds: r.params.seconds }, systems: [{ ...r.many, label: `ours, ${r.params.rooms} rooms` }, { ...r.one, label: 'ours, one room' }], ratios: {} });
}
