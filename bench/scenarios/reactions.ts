/**
 * reactions: one room watched by V viewers (5,000 by default), every viewer
 * a WebSocket of its own benchmark user, spread over a few load-generator
 * child processes (bench/load/reactors.ts, each on its own 127.0.0.x source
 * address and raised fd limit, as in `connections`). The viewers send
 * reactions at a total rate that steps up (5k, 10k, 25k, 50k, 100k, 200k/s);
 * the gateway acknowledges each one once its aggregated flush is durable.
 *
 * A step holds when the acks keep up — p99 ack latency ≤ 2 s, every reaction
 * answered, no nack other than a limit's, the rate kept — and the tallies are
 * exact: once the step is over, the room's tally (`GET /v1/rooms/:room/state`
 * → `tallies.totals`, read from the tallies projection in Redis) has grown by
 * exactly the number of acknowledged reactions, emoji by emoji.
 *
 * A gateway without WebSocket writes (no ack/nack to a probe frame) is
 * reported as such, and the viewers then send each reaction as
 * `POST /v1/rooms/:room/reactions` (one event per reaction, no aggregation);
 * the ladder then starts lower, at 1,000/s.
 */
import { loadConfig } from '../../core/config.ts';
import { bars, lines, stackedBars, svg } from '../lib/chart.ts';
import { CPU_ORDER, CpuMeter, cpuLine, withDescendants, type CpuSplit } from '../lib/cpu.ts';
import { profileText, readProfiles, type NamedProfile } from '../lib/cpuprofile.ts';
import { BENCH_WORLD, infraPids, requireInfra } from '../lib/infra.ts';
import { resultOf, sleep, startTs, type Child } from '../lib/proc.ts';
import { textTable } from '../lib/report.ts';
import { Hist, round, type HistJson, type LatencySummary } from '../lib/stats.ts';
import { probeWsWrites, type WsProbe } from '../lib/ws-probe.ts';
import { startWorld } from '../../services/world.ts';

export const REACTION_RATES = [5000, 10_000, 25_000, 50_000, 100_000, 200_000];
/** Without WebSocket writes every reaction is an HTTP request and an event: start where that can hold. */
export const HTTP_REACTION_RATES = [1000, 2500, 5000, 10_000, 25_000];

export interface ReactionsOptions {
  viewers: number;
  /** Load-generator processes the viewers are spread over. */
  children: number;
  /** Explicit rates (else REACTION_RATES, or HTTP_REACTION_RATES without WebSocket writes). */
  rates?: number[];
  hold: number;
  p99LimitMs: number;
  emojis: string[];
  cpuProfDir?: string;
  log(m: string): void;
}

export interface ReactionStep {
  rate: number;
  sent: number;
  acked: number;
  nacks: Record<string, number>;
  limitNacks: number;
  unanswered: number;
  socketsClosed: number;
  achievedRate: number;
  ack: LatencySummary;
  tallies: { before: Record<string, number>; after: Record<string, number>; expected: Record<string, number>; exact: boolean; settleMs: number };
  cpu: CpuSplit;
  held: boolean;
  why?: string;
}

export interface ReactionsResult {
  params: { viewers: number; children: number; rates: number[]; holdSec: number; p99LimitMs: number; emojis: string[] };
  transport: 'ws' | 'http';
  probe: WsProbe;
  connected: number;
  connectFailed: number;
  connectP99Ms: number;
  highestHeld: number;
  talliesExact: boolean;
  steps: ReactionStep[];
  profiles?: NamedProfile[];
}

interface ChildStep {
  sent: number;
  acked: number;
  ackedByEmoji: Record<string, number>;
  nacks: Record<string, number>;
  limitNacks: number;
  unanswered: number;
  closedInStep: number;
  achievedRate: number;
  ack: HistJson;
  cpuSec: number;
}

async function readTallies(url: string, room: string, token: string): Promise<Record<string, number>> {
  const r = await fetch(`${url}/v1/rooms/${encodeURIComponent(room)}/state`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
  if (!r.ok) throw new Error(`GET /state answered ${r.status}: ${(await r.text()).slice(0, 200)}`);
  return ((await r.json()) as { tallies: { totals: Record<string, number> } }).tallies.totals;
}

const sameCounts = (a: Record<string, number>, b: Record<string, number>) => {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) if ((a[k] ?? 0) !== (b[k] ?? 0)) return false;
  return true;
};

export async function runReactions(o: ReactionsOptions): Promise<ReactionsResult> {
  const cfg = loadConfig();
  await requireInfra(cfg, ['kafka', 'redis', 'registry']);
  const infra = await infraPids(cfg);
  const ladderLen = Math.max(o.rates?.length ?? 0, REACTION_RATES.length, HTTP_REACTION_RATES.length);
  const maxMs = (ladderLen * (o.hold + 90) + 600) * 1000;
  o.log(`reactions: starting a private world (processors + gateway)${o.cpuProfDir ? `, under node --cpu-prof (${o.cpuProfDir})` : ''}`);
  const world = await startWorld({
    ...BENCH_WORLD,
    // The viewers' reaction budget raised (a benchmark user set), not switched off.
    env: { ...BENCH_WORLD.env, LIMIT_REACTIONS: '100000', LIMIT_REACTIONS_WINDOW_SEC: '1' },
    processor: true,
    gateways: 0,
    partitions: 6,
    maxMs,
    ...(o.cpuProfDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`] } : {}),
  });
  const gw = await world.startGateway({}, { nofile: 1_048_576 });
  const names = new Map<number, string>([
    [world.processor!.pid, 'processors'],
    [gw.proc.pid, 'gateway'],
  ]);
  const room = 'reactions-0';
  const reader = world.token('bench-tally-reader');
  const children: Child[] = [];
  const steps: ReactionStep[] = [];
  let highest = 0;
  let connected = 0;
  let connectFailed = 0;
  let connectP99 = 0;
  let probe: WsProbe;
  let rates: number[];
  let transport: 'ws' | 'http';
  try {
    probe = await probeWsWrites({ url: gw.url, room, token: world.token('bench-probe'), frame: { type: 'reaction', emoji: o.emojis[0]! } });
    transport = probe.supported ? 'ws' : 'http';
    o.log(`reactions: WebSocket writes: ${probe.detail}`);
    if (!probe.supported) o.log('reactions: the gateway does not support WebSocket writes (nor so its reaction aggregation): each reaction goes as one HTTP POST');
    rates = o.rates ?? (transport === 'ws' ? REACTION_RATES : HTTP_REACTION_RATES);

    const per = Math.ceil(o.viewers / o.children);
    o.log(`reactions: opening ${o.viewers} viewers from ${o.children} processes`);
    for (let k = 0; k * per < o.viewers; k++) {
      const n = Math.min(per, o.viewers - k * per);
      const c = startTs(
        'reactors',
        'bench/load/reactors.ts',
        ['--url', gw.url, '--room', room, '--n', String(n), '--user-start', String(k * per), '--transport', transport, '--emojis', o.emojis.join(','), '--local-address', `127.0.0.${2 + k}`, '--max-sec', String(maxMs / 1000)],
        { env: { JWT_SECRET: world.env.JWT_SECRET! }, maxMs, nofile: n + 1024, echo: `  [reactors ${k}] ` },
      );
      await c.waitForLine(/^REACTORS-READY/, 60_000);
      children.push(c);
    }
    for (const l of await Promise.all(children.map((c) => c.ask('open', /^OPENED /, 600_000)))) {
      const [, open, failed, p99] = l.split(' ');
      connected += Number(open);
      connectFailed += Number(failed);
      connectP99 = Math.max(connectP99, Number(p99));
    }
    o.log(`reactions: ${connected} viewers connected, ${connectFailed} failed (p99 connect ${connectP99} ms)`);
    if (connected === 0) throw new Error('no viewer could connect');
    await sleep(2000);

    const meter = new CpuMeter(() => ({ gateway: withDescendants(gw.proc.pid), processors: [world.processor!.pid], kafka: [infra.kafka], redis: [infra.redis], registry: [infra.registry], 'load generators': children.map((c) => c.pid) }));
    for (const [si, rate] of rates.entries()) {
      const before = await readTallies(gw.url, room, reader);
      o.log(`reactions: ${rate}/s for ${o.hold} s over ${transport === 'ws' ? 'WebSocket' : 'HTTP'}`);
      const mark = meter.mark();
      const rs = (await Promise.all(children.map((c) => c.ask(`run ${rate / children.length} ${o.hold} ${si}`, /^STEP /, (o.hold + 120) * 1000)))).map((l) => JSON.parse(l.slice(5)) as ChildStep);
      const cpu = meter.since(mark);
      const sum = (f: (r: ChildStep) => number) => rs.reduce((a, r) => a + f(r), 0);
      const nacks: Record<string, number> = {};
      const expected: Record<string, number> = { ...before };
      for (const r of rs) {
        for (const [c, n] of Object.entries(r.nacks)) nacks[c] = (nacks[c] ?? 0) + n;
        for (const [e, n] of Object.entries(r.ackedByEmoji)) expected[e] = (expected[e] ?? 0) + n;
      }
      // The tally follows the acks through the tallies projection: wait for it to get there (or past it), with a deadline.
      const t0 = performance.now();
      let after = before;
      for (;;) {
        after = await readTallies(gw.url, room, reader);
        const reached = Object.keys(expected).every((e) => (after[e] ?? 0) >= expected[e]!);
        if (reached || performance.now() - t0 > 20_000) break;
        await sleep(200);
      }
      // Anything applied late (an unanswered reaction that was durable after all) shows up within a moment: look again.
      await sleep(1000);
      after = await readTallies(gw.url, room, reader);
      const settleMs = Math.round(performance.now() - t0);
      const exact = sameCounts(after, expected);
      const ack = rs.reduce((h, r) => h.merge(r.ack), new Hist()).summary();
      const acked = sum((r) => r.acked);
      const unanswered = sum((r) => r.unanswered);
      const limitNacks = sum((r) => r.limitNacks);
      const otherNacks = Object.values(nacks).reduce((a, b) => a + b, 0) - limitNacks;
      const achieved = sum((r) => r.achievedRate);
      const closedNow = sum((r) => r.closedInStep);
      const why =
        otherNacks > 0 ? `${otherNacks} nacks (${Object.entries(nacks).map(([c, n]) => `${c} ×${n}`).join(', ')})`
        : unanswered > 0 ? `${unanswered} reactions unanswered after 30 s`
        : acked === 0 ? 'nothing acknowledged'
        : ack.p99 > o.p99LimitMs ? `p99 ack ${ack.p99} ms > ${o.p99LimitMs} ms`
        : achieved < 0.95 * rate ? `the viewers reached only ${Math.round(achieved)}/s`
        : !exact ? 'tallies differ from the acknowledged reactions'
        : undefined;
      const step: ReactionStep = {
        rate,
        sent: sum((r) => r.sent),
        acked,
        nacks,
        limitNacks,
        unanswered,
        socketsClosed: closedNow,
        achievedRate: round(achieved, 0),
        ack,
        tallies: { before, after, expected, exact, settleMs },
        cpu,
        held: why === undefined,
        ...(why ? { why } : {}),
      };
      steps.push(step);
      o.log(`reactions: ${rate}/s → ${acked} acked, p99 ack ${ack.p99} ms, tallies ${exact ? 'exact' : `NOT exact (expected ${JSON.stringify(expected)}, got ${JSON.stringify(after)})`}${why ? ` — not held: ${why}` : ' — held'}`);
      o.log(`reactions:   CPU ${cpu.wallSec} s wall: ${cpuLine(cpu)}`);
      if (why) break;
      highest = rate;
    }
  } finally {
    for (const c of children) c.send('stop');
    for (const c of children) await resultOf(c, 30_000).catch(() => undefined);
    for (const c of children) await c.stop('SIGTERM', 3000);
    for (const p of withDescendants(gw.proc.pid).slice(1)) names.set(p, 'gateway worker');
    await world.stop();
  }
  const profiles = o.cpuProfDir ? readProfiles(o.cpuProfDir, names) : undefined;
  return {
    params: { viewers: o.viewers, children: children.length, rates, holdSec: o.hold, p99LimitMs: o.p99LimitMs, emojis: o.emojis },
    transport,
    probe,
    connected,
    connectFailed,
    connectP99Ms: connectP99,
    highestHeld: highest,
    talliesExact: steps.length > 0 && steps.every((s) => s.tallies.exact),
    steps,
    ...(profiles ? { profiles } : {}),
  };
}

export function reactionsFinalLines(r: ReactionsResult): string[] {
  return [`reactions held: ${r.highestHeld}/s, tallies exact: ${r.talliesExact ? 'yes' : 'no'}`];
}

export function reactionsTable(r: ReactionsResult): string {
  const rows = [['rate/s', 'achieved', 'acked', 'nacks', 'unanswered', 'p50 ack ms', 'p99 ack ms', 'max ms', 'tally Δ', 'acked Δ', 'exact', 'held']];
  for (const s of r.steps) {
    const delta = (m: Record<string, number>) => Object.keys(s.tallies.expected).reduce((a, e) => a + (m[e] ?? 0) - (s.tallies.before[e] ?? 0), 0);
    rows.push([String(s.rate), String(s.achievedRate), String(s.acked), String(Object.values(s.nacks).reduce((a, b) => a + b, 0)), String(s.unanswered), String(s.ack.p50), String(s.ack.p99), String(s.ack.max), String(delta(s.tallies.after)), String(delta(s.tallies.expected)), s.tallies.exact ? 'yes' : 'no', s.held ? 'yes' : `no: ${s.why}`]);
  }
  const out = [
    `${r.connected} viewers of one room connected (${r.connectFailed} failed, p99 connect ${r.connectP99Ms} ms) from ${r.params.children} processes; reactions over ${r.transport === 'ws' ? 'WebSocket' : 'HTTP'}`,
    ...(r.transport === 'http' ? [`WebSocket writes: not supported by this gateway (${r.probe.detail}); each reaction was one POST /v1/rooms/:room/reactions — one Kafka event each, no aggregation`] : []),
    textTable(rows),
  ];
  const names = CPU_ORDER.filter((n) => r.steps.some((s) => (s.cpu.sec[n] ?? 0) > 0));
  const cpuRows = [['step', ...names, 'total', 'wall s']];
  for (const s of r.steps) cpuRows.push([`${s.rate}/s`, ...names.map((n) => String(s.cpu.sec[n] ?? 0)), String(s.cpu.totalSec), String(s.cpu.wallSec)]);
  out.push('', 'CPU seconds per process in each step:', textTable(cpuRows));
  if (r.profiles?.length) out.push('', profileText(r.profiles));
  return out.join('\n');
}

export function reactionsChart(r: ReactionsResult, machine: string): string {
  const pts = (f: (s: ReactionStep) => number) => r.steps.map((s) => [s.rate, f(s)] as [number, number]);
  const a = lines({ x: 80, y: 80, w: 520, h: 320, title: 'Ack latency by offered rate', yLabel: 'ms', log: true, xLabel: 'offered reactions/s', xLog: true, series: [{ name: 'p50 ack', points: pts((s) => s.ack.p50) }, { name: 'p99 ack', points: pts((s) => s.ack.p99) }] });
  const b = bars({ x: 700, y: 80, w: 300, h: 320, title: 'Highest rate held', yLabel: 'reactions/s', groups: [r.talliesExact ? 'tallies exact' : 'tallies NOT exact'], series: [{ name: `ours (${r.transport === 'ws' ? 'WebSocket' : 'HTTP'})`, values: [r.highestHeld] }] });
  const present = CPU_ORDER.filter((n) => r.steps.some((s) => (s.cpu.sec[n] ?? 0) > 0));
  const c = stackedBars({
    x: 80,
    y: 500,
    w: 920,
    h: 260,
    title: 'CPU per process in each step (cores: CPU seconds ÷ wall seconds)',
    yLabel: 'cores',
    groups: r.steps.map((s) => `${s.rate}/s`),
    series: present.map((n) => ({ name: n, values: r.steps.map((s) => round((s.cpu.sec[n] ?? 0) / Math.max(0.1, s.cpu.wallSec), 2)) })),
  });
  return svg(1080, 820, `reactions: ${r.connected} viewers of one room, ${r.params.holdSec} s per step, over ${r.transport === 'ws' ? 'WebSocket' : 'HTTP'}`, machine, [a, b, c]);
}
