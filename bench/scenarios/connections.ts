/**
 * connections: the most idle WebSocket connections one gateway holds with
 * heartbeats on. Connections are opened in steps (from child processes, each
 * on its own 127.0.0.x source address and under its own fd limit) into a
 * handful of rooms; after each step the bench waits two heartbeat periods and
 * checks that every socket is still open, the gateway still answers /healthz,
 * and records its RSS. It stops at the first step that loses a connection or
 * fails to open one, at --max, or at the time bound. Memory per connection is
 * the gateway's RSS growth over the connections it held.
 *
 * The gateway and the children are started by a bash wrapper that raises
 * `ulimit -n` as far as the hard limit allows; that limit is reported, since
 * it caps the figure on a machine where it cannot be raised.
 */
import { readFileSync } from 'node:fs';
import { loadConfig } from '../../core/config.ts';
import { bars, lines, svg } from '../lib/chart.ts';
import { BENCH_WORLD, requireInfra } from '../lib/infra.ts';
import { cpuSeconds, resultOf, rssBytes, sleep, startTs, type Child } from '../lib/proc.ts';
import { textTable } from '../lib/report.ts';
import { round } from '../lib/stats.ts';
import { startWorld } from '../../services/world.ts';

export interface ConnectionsOptions {
  max: number;
  step: number;
  heartbeatSec: number;
  /** Connections per load-generator child. */
  perChild: number;
  timeLimitSec: number;
  log(m: string): void;
}

export interface ConnStep {
  connections: number;
  failed: number;
  closed: number;
  rssMiB: number;
  perConnectionKiB: number;
  idleCpuPct: number;
  connectP99Ms: number;
  healthzMs: number;
  held: boolean;
}

export interface ConnectionsResult {
  params: { max: number; step: number; heartbeatSec: number; rooms: number };
  gatewayNofile: { soft: number | null; hard: number | null };
  baselineRssMiB: number;
  /** Largest step at which every connection opened and stayed open. */
  maxHeld: number;
  /** Most connections open at once, including the step that failed. */
  peakOpen: number;
  perConnectionKiB: number;
  stoppedBecause: string;
  steps: ConnStep[];
}

function limitsOf(pid: number): { soft: number | null; hard: number | null } {
  try {
    const m = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    const n = (s: string | undefined) => (s && s !== 'unlimited' ? Number(s) : null);
    return { soft: n(m?.[1]), hard: n(m?.[2]) };
  } catch {
    return { soft: null, hard: null };
  }
}

async function healthz(url: string): Promise<number> {
  const t0 = performance.now();
  try {
    const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5000) });
    return r.ok ? performance.now() - t0 : Infinity;
  } catch {
    return Infinity;
  }
}

export async function runConnections(o: ConnectionsOptions): Promise<ConnectionsResult> {
  const cfg = loadConfig();
  await requireInfra(cfg, ['kafka', 'redis', 'registry']);
  const rooms = 10;
  const maxMs = (o.timeLimitSec + 120) * 1000;
  o.log(`connections: starting a gateway (heartbeat ${o.heartbeatSec} s)`);
  const world = await startWorld({ ...BENCH_WORLD, env: { ...BENCH_WORLD.env }, processor: false, gateways: 0, maxMs });
  const gw = await world.startGateway({ PUSH_HEARTBEAT_SEC: String(o.heartbeatSec), PRESENCE_INTERVAL_MS: '5000' }, { nofile: 1_048_576 });
  const pid = gw.proc.pid;
  const nofile = limitsOf(pid);
  o.log(`connections: gateway open-file limit ${nofile.soft}/${nofile.hard}`);
  const children: Child[] = [];
  const steps: ConnStep[] = [];
  const deadline = Date.now() + o.timeLimitSec * 1000;
  await sleep(1500);
  const rss0 = rssBytes(pid);
  let total = 0;
  let maxHeld = 0;
  let perConn = NaN;
  let stoppedBecause = `reached --max ${o.max}`;
  const status = async () => {
    let open = 0;
    let closed = 0;
    let failed = 0;
    for (const c of children) {
      const l = (await c.ask('status', /^STATUS /, 20_000)).split(' ');
      open += Number(l[1]);
      closed += Number(l[2]);
      failed += Number(l[3]);
    }
    return { open, closed, failed };
  };
  try {
    while (total < o.max) {
      if (Date.now() > deadline) {
        stoppedBecause = `time limit ${o.timeLimitSec} s`;
        break;
      }
      let want = Math.min(o.step, o.max - total);
      let p99 = 0;
      while (want > 0) {
        const idx = Math.floor(total / o.perChild);
        if (!children[idx]) {
          const c = startTs('idle', 'bench/load/idle.ts', ['--url', gw.url, '--rooms', String(rooms), '--local-address', `127.0.0.${2 + idx}`, '--max-sec', String(o.timeLimitSec + 100)], { maxMs, nofile: o.perChild + 1024, echo: '  [idle] ' });
          await c.waitForLine(/^IDLE-READY/, 60_000);
          children[idx] = c;
        }
        const c = children[idx]!;
        const n = Math.min(want, (idx + 1) * o.perChild - total);
        const l = (await c.ask(`open ${n}`, /^OPENED /, 300_000)).split(' ');
        p99 = Math.max(p99, Number(l[3]));
        total += n;
        want -= n;
      }
      const cpu0 = cpuSeconds(pid);
      const t0 = Date.now();
      await sleep(o.heartbeatSec * 2000 + 1000);
      const idleCpuPct = ((cpuSeconds(pid) - cpu0) / ((Date.now() - t0) / 1000)) * 100;
      const st = await status();
      const h = await healthz(gw.url);
      const rss = rssBytes(pid);
      const held = st.closed === 0 && st.failed === 0 && st.open === total && Number.isFinite(h);
      const step: ConnStep = {
        connections: st.open,
        failed: st.failed,
        closed: st.closed,
        rssMiB: round(rss / 2 ** 20, 1),
        perConnectionKiB: round((rss - rss0) / 1024 / Math.max(1, st.open), 2),
        idleCpuPct: round(idleCpuPct, 1),
        connectP99Ms: p99,
        healthzMs: round(h, 1),
        held,
      };
      steps.push(step);
      o.log(`connections: ${st.open}/${total} open, ${st.failed} failed, ${st.closed} closed, RSS ${step.rssMiB} MiB, ${step.perConnectionKiB} KiB/conn, idle CPU ${step.idleCpuPct}%, /healthz ${step.healthzMs} ms`);
      if (!held) {
        stoppedBecause = st.failed ? `${st.failed} connections failed to open at ${total}` : st.closed ? `${st.closed} connections were closed at ${total}` : !Number.isFinite(h) ? `/healthz did not answer at ${total}` : `only ${st.open} of ${total} open`;
        break;
      }
      maxHeld = st.open;
      perConn = step.perConnectionKiB;
    }
  } finally {
    for (const c of children) c.send('stop');
    for (const c of children) await resultOf(c, 30_000).catch(() => undefined);
    for (const c of children) await c.stop('SIGTERM', 3000);
    await world.stop();
  }
  const peakOpen = Math.max(0, ...steps.map((x) => x.connections));
  if (nofile.soft !== null && peakOpen + 200 >= nofile.soft) stoppedBecause += ` (the gateway's open-file limit is ${nofile.soft}, hard ${nofile.hard})`;
  return { params: { max: o.max, step: o.step, heartbeatSec: o.heartbeatSec, rooms }, gatewayNofile: nofile, baselineRssMiB: round(rss0 / 2 ** 20, 1), maxHeld, peakOpen, perConnectionKiB: perConn, stoppedBecause, steps };
}

export function connectionsTable(r: ConnectionsResult): string {
  const rows = [['connections', 'failed', 'closed', 'RSS MiB', 'KiB/conn', 'idle CPU %', 'connect p99 ms', '/healthz ms', 'held']];
  for (const s of r.steps) rows.push([String(s.connections), String(s.failed), String(s.closed), String(s.rssMiB), String(s.perConnectionKiB), String(s.idleCpuPct), String(s.connectP99Ms), String(s.healthzMs), s.held ? 'yes' : 'no']);
  return [
    textTable(rows),
    `most idle connections held: ${r.maxHeld}; peak open ${r.peakOpen} (heartbeat ${r.params.heartbeatSec} s; baseline RSS ${r.baselineRssMiB} MiB; ${r.perConnectionKiB} KiB per connection); stopped: ${r.stoppedBecause}`,
  ].join('\n');
}

export function connectionsChart(r: ConnectionsResult, machine: string): string {
  const a = lines({ x: 80, y: 80, w: 420, h: 300, title: 'Gateway RSS by idle connections', yLabel: 'MiB', xLabel: 'open connections', series: [{ name: 'RSS', points: [[0, r.baselineRssMiB], ...r.steps.map((s) => [s.connections, s.rssMiB] as [number, number])] }] });
  const b = lines({ x: 600, y: 80, w: 420, h: 300, title: 'Idle CPU (heartbeats, presence)', yLabel: '% of one core', xLabel: 'open connections', series: [{ name: 'gateway CPU', points: r.steps.map((s) => [s.connections, s.idleCpuPct] as [number, number]) }] });
  const c = bars({ x: 80, y: 470, w: 420, h: 200, title: 'Most held', yLabel: 'connections', groups: ['max held'], series: [{ name: `${r.perConnectionKiB} KiB / connection`, values: [r.maxHeld] }] });
  return svg(1080, 720, `connections: idle WebSockets on one gateway (heartbeat ${r.params.heartbeatSec} s)`, `${machine} — stopped: ${r.stoppedBecause}`, [a, b, c]);
}
