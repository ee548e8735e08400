/**
 * poll: how many polls one gateway process serves — 5,000 pollers (closed
 * loops on keep-alive connections, gzip accepted) on one room that gets a
 * comment every 100 ms — beside the same gateway's `/healthz` on the same
 * connections, the framework's ceiling. Polls of a room with a socket on the
 * gateway are answered from the room's window in memory (a viewer socket is
 * connected first, as in a room with live viewers); the run also reports how
 * many polls read Redis.
 *
 * Ends with the plain line `polls: N/s (P pollers, gzip), /healthz ceiling M/s, ×R`.
 */
import WebSocket from 'ws';
import { loadConfig } from '../../core/config.ts';
import { startWorld } from '../../services/world.ts';
import { CpuMeter, cpuLine, type CpuSplit } from '../lib/cpu.ts';
import { bars, svg } from '../lib/chart.ts';
import { BENCH_WORLD, infraPids, requireInfra } from '../lib/infra.ts';
import { resultOf, sleep, startTs } from '../lib/proc.ts';
import { textTable } from '../lib/report.ts';
import { Hist, round, type HistJson, type LatencySummary } from '../lib/stats.ts';

export interface PollOptions {
  pollers: number;
  seconds: number;
  log(m: string): void;
}

interface PollersResult {
  path: string;
  pollers: number;
  seconds: number;
  answers: number;
  notModified: number;
  errors: number;
  errorsByCode: Record<string, number>;
  perSec: number;
  bytesPerAnswer: number;
  gzippedShare: number;
  latency: HistJson;
  cpuSec: number;
}

export interface PollPhase {
  path: 'feed' | 'healthz';
  perSec: number;
  answers: number;
  errors: number;
  errorsByCode: Record<string, number>;
  bytesPerAnswer: number;
  gzippedShare: number;
  latency: LatencySummary;
  cpu: CpuSplit;
}

export interface PollResult {
  params: { pollers: number; seconds: number };
  phases: PollPhase[];
  /** Poll reads of the feed by source during the feed phase (the gateway's metrics). */
  reads: { redis: number; memory: number };
  ratio: number;
}

async function pollReads(url: string): Promise<{ redis: number; memory: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const of = (source: string) => Number(new RegExp(`^danmaku_poll_reads_total\\{source="${source}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { redis: of('redis'), memory: of('memory') };
}

export async function runPoll(o: PollOptions): Promise<PollResult> {
  const cfg = loadConfig();
  await requireInfra(cfg, ['kafka', 'redis', 'registry']);
  const infra = await infraPids(cfg);
  const maxMs = (o.seconds * 2 + 300) * 1000;
  const world = await startWorld({ ...BENCH_WORLD, env: { ...BENCH_WORLD.env }, processor: true, maxMs });
  const gw = world.gateways[0]!;
  const room = `poll-${Date.now().toString(36)}`;
  const token = world.token('poll-writer');
  const post = (text: string) => fetch(`${gw.url}/v1/rooms/${room}/comments`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ text }) }).catch(() => undefined);
  const phases: PollPhase[] = [];
  let reads = { redis: 0, memory: 0 };
  const viewer = new WebSocket(`${gw.url.replace(/^http/, 'ws')}/v1/rooms/${room}/ws`);
  let n = 0;
  const writer = setInterval(() => void post(`poll bench comment ${n++}`), 100);
  try {
    await new Promise<void>((resolve, reject) => {
      viewer.once('message', () => resolve());
      viewer.once('error', reject);
    });
    for (let i = 0; i < 20; i++) await post(`seed ${i}`);
    const meter = new CpuMeter(() => ({ gateway: [gw.proc.pid], processors: [world.processor!.pid], redis: [infra.redis], kafka: [infra.kafka] }));
    for (const path of ['feed', 'healthz'] as const) {
      await sleep(1000);
      o.log(`poll: ${o.pollers} pollers on ${path === 'feed' ? `GET /v1/rooms/${room}/feed (gzip)` : 'GET /healthz'} for ${o.seconds} s`);
      const before = path === 'feed' ? await pollReads(gw.url) : undefined;
      const mark = meter.mark();
      const child = startTs('pollers', 'bench/load/pollers.ts', ['--url', gw.url, '--room', room, '--pollers', String(o.pollers), '--seconds', String(o.seconds), '--path', path], { maxMs, nofile: o.pollers + 1024, echo: '  [pollers] ' });
      const r = await resultOf<PollersResult>(child, maxMs);
      const cpu = meter.since(mark, { 'load generators': r.cpuSec });
      if (before) {
        const after = await pollReads(gw.url);
        reads = { redis: after.redis - before.redis, memory: after.memory - before.memory };
      }
      const phase: PollPhase = { path, perSec: round(r.perSec, 0), answers: r.answers, errors: r.errors, errorsByCode: r.errorsByCode, bytesPerAnswer: round(r.bytesPerAnswer, 0), gzippedShare: round(r.gzippedShare, 3), latency: new Hist().merge(r.latency).summary(), cpu };
      phases.push(phase);
      o.log(`poll: ${path} ${phase.perSec}/s, p50 ${phase.latency.p50} ms, p99 ${phase.latency.p99} ms, ${phase.errors} errors; CPU: ${cpuLine(cpu)}`);
    }
  } finally {
    clearInterval(writer);
    viewer.terminate();
    await world.stop();
  }
  const feed = phases.find((p) => p.path === 'feed');
  const health = phases.find((p) => p.path === 'healthz');
  return { params: { pollers: o.pollers, seconds: o.seconds }, phases, reads, ratio: feed && health && health.perSec > 0 ? round(feed.perSec / health.perSec, 3) : 0 };
}

export function pollFinalLines(r: PollResult): string[] {
  const feed = r.phases.find((p) => p.path === 'feed');
  const health = r.phases.find((p) => p.path === 'healthz');
  return [`polls: ${feed?.perSec ?? 0}/s (${r.params.pollers} pollers, gzip), /healthz ceiling ${health?.perSec ?? 0}/s, ×${r.ratio}`];
}

export function pollTable(r: PollResult): string {
  const rows = [['path', 'answers/s', 'answers', 'errors', 'bytes/answer', 'gzipped', 'p50 ms', 'p99 ms', 'CPU']];
  for (const p of r.phases) rows.push([p.path, String(p.perSec), String(p.answers), String(p.errors), String(p.bytesPerAnswer), `${Math.round(p.gzippedShare * 100)} %`, String(p.latency.p50), String(p.latency.p99), cpuLine(p.cpu)]);
  return [textTable(rows), `feed reads during the feed phase: ${r.reads.memory} from memory, ${r.reads.redis} from Redis`].join('\n');
}

export function pollChart(r: PollResult, machine: string): string {
  const a = bars({ x: 80, y: 80, w: 520, h: 320, title: 'Answers per second, one gateway process', yLabel: 'answers/s', groups: ['answers/s'], series: r.phases.map((p) => ({ name: p.path === 'feed' ? 'GET /feed (poll, gzip)' : 'GET /healthz (ceiling)', values: [p.perSec] })) });
  return svg(700, 460, `poll: ${r.params.pollers} pollers on one room, ${r.params.seconds} s per phase`, machine, [a]);
}
