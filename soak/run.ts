/**
 * The soak: one gateway and the processors as child processes of a private
 * world (its own topic, groups and key prefix: services/world.ts, as the bench
 * and chaos use it), N WebSocket viewers held open in a few rooms from
 * load-generator children (bench/load/idle.ts), and a steady comment rate over
 * HTTP into those rooms (bench/load/writer.ts), so every socket keeps receiving
 * pushes. The gateway is sampled every few seconds from outside: RSS and open
 * descriptors from /proc, heap, event-loop delay, the socket gauge and the
 * write and push counters from its own /metrics.
 *
 * At the end every client socket is closed, and the gateway must come back to
 * the descriptors and sockets it had before the first one opened.
 *
 * Open files: the gateway is started with the hard limit as its soft one (and
 * raises it itself, gateway/fdlimit.ts); the sockets' client ends live in the
 * idle children, each started under its own `ulimit -n` (bench/lib/proc.ts
 * startTs) and on its own 127.0.0.x source address so one address's
 * ephemeral ports do not cap the count. This process holds no socket of the
 * load: only one short /metrics request at a time.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { loadConfig } from '../core/config.ts';
import { openFileLimit, type OpenFileLimit } from '../gateway/fdlimit.ts';
import { BENCH_WORLD, requireInfra } from '../bench/lib/infra.ts';
import { cpuSeconds, resultOf, rssBytes, startTs, type Child } from '../bench/lib/proc.ts';
import { startWorld } from '../services/world.ts';
import { growth, leakedSockets, loopDelayMs, metric, progressLine, verdict, type Growth, type Sample } from './measure.ts';

export interface SoakOptions {
  minutes: number;
  connections: number;
  /** Comments per second, over HTTP. */
  rate: number;
  rooms: number;
  /** Seconds between samples. */
  sampleSec: number;
  /** Sockets per load-generator child. */
  perChild: number;
  /** How long the gateway may take to release the closed sockets. */
  settleSec: number;
  log(m: string): void;
}

export interface SoakResult {
  params: Omit<SoakOptions, 'log'>;
  gatewayNofile: OpenFileLimit | undefined;
  /** Before any socket: descriptors, the socket gauge, memory. */
  baseline: { fds: number; sockets: number; rssMiB: number; heapMiB: number };
  opened: number;
  openFailed: number;
  openSec: number;
  connectP99Ms: number;
  samples: Sample[];
  growth: Growth;
  /** Gateway CPU over the run, percent of one core. */
  gatewayCpuPct: number;
  writer: { sent: number; ok: number; errors: number; errorSamples: Record<string, number> } | undefined;
  /** Sockets closed during the run that the clients did not close (reaped, slow-closed, …). */
  dropped: number;
  after: { fds: number; sockets: number; waitedSec: number; settled: boolean } | undefined;
  leaked: number | undefined;
  crashed: string | undefined;
  verdict: { ok: boolean; reasons: string[] };
}

interface WriterResult {
  sent: number;
  ok: number;
  errors: number;
  errorSamples: Record<string, number>;
}

const MiB = 2 ** 20;
const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Entries of /proc/<pid>/fd (0 when the process is gone). */
export function fdCount(pid: number): number {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/**
 * GET /metrics on a connection of its own, closed after the answer: a
 * keep-alive connection would sit in the gateway's descriptor count, and the
 * leak check compares that count before and after.
 */
function scrape(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/metrics`, { agent: false, headers: { connection: 'close' }, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(new Error(`/metrics answered ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('/metrics timed out')));
    req.on('error', reject);
  });
}

const COMMENTS = { method: 'POST', route: '/v1/rooms/:room/comments', status: '202' };

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const cfg = loadConfig();
  await requireInfra(cfg, ['kafka', 'redis', 'registry']);
  const runSec = o.minutes * 60;
  // Every child is bounded in time, whatever happens to this process.
  const maxMs = (runSec + 900) * 1000;
  o.log(`starting a private world: processors + one gateway`);
  const world = await startWorld({ ...BENCH_WORLD, prefix: 'soak', env: { ...BENCH_WORLD.env }, processor: true, gateways: 0, maxMs });
  const children: Child[] = [];
  let writer: Child | undefined;
  try {
    const gw = await world.startGateway({}, { nofile: 1_048_576 });
    const pid = gw.proc.pid;
    const nofile = openFileLimit(pid);
    o.log(`gateway pid ${pid} at ${gw.url}, open-file limit ${nofile?.soft}/${nofile?.hard}`);
    if (nofile && nofile.soft < o.connections + 1024) throw new Error(`the gateway's open-file limit (${nofile.soft}) is too low for ${o.connections} sockets; raise the hard limit (ulimit -Hn) or lower --connections`);
    const rooms = Array.from({ length: o.rooms }, (_, k) => `idle-${k}`); // bench/load/idle.ts puts socket i in idle-<i mod rooms>
    const writerEnv = { JWT_SECRET: world.env.JWT_SECRET! };
    const writerArgs = (rate: number, seconds: number, seqStart: number) => ['--kind', 'ours', '--url', gw.url, '--rooms', rooms.join(','), '--rate', String(rate), '--seconds', String(seconds), '--users', '100', '--drain-sec', '0', '--seq-start', String(seqStart)];

    // Warm-up before the baseline: the producer's connections, the rooms' first comments, JIT.
    const warm = startTs('writer', 'bench/load/writer.ts', writerArgs(Math.min(o.rate, 20), 2, 1_000_000_000), { env: writerEnv, maxMs: 120_000 });
    const w0 = await resultOf<WriterResult>(warm, 120_000);
    if (w0.ok === 0) throw new Error(`warm-up writes all failed: ${JSON.stringify(w0.errorSamples)}`);

    // Baseline: descriptors steady for 2 s (the warm-up's HTTP connections closed).
    let fds = fdCount(pid);
    let steadySince = Date.now();
    for (const deadline = Date.now() + 20_000; Date.now() - steadySince < 2000 && Date.now() < deadline; ) {
      await delay(250);
      const n = fdCount(pid);
      if (n !== fds) (fds = n), (steadySince = Date.now());
    }
    const text0 = await scrape(gw.url);
    const baseline = { fds, sockets: metric(text0, 'danmaku_push_sockets_open'), rssMiB: rssBytes(pid) / MiB, heapMiB: metric(text0, 'danmaku_gateway_nodejs_heap_size_used_bytes') / MiB };
    o.log(`baseline: ${baseline.fds} fds, ${baseline.sockets} sockets, RSS ${baseline.rssMiB.toFixed(1)} MiB, heap ${baseline.heapMiB.toFixed(1)} MiB`);

    // The sockets, from as many children as needed, all opening at once.
    const nChildren = Math.max(1, Math.ceil(o.connections / o.perChild));
    o.log(`opening ${o.connections} WebSockets in ${o.rooms} rooms (${nChildren} client process${nChildren > 1 ? 'es' : ''})`);
    const open0 = Date.now();
    for (let k = 0; k < nChildren; k++) {
      const c = startTs('idle', 'bench/load/idle.ts', ['--url', gw.url, '--rooms', String(o.rooms), '--local-address', `127.0.0.${2 + k}`, '--max-sec', String(runSec + 900)], { maxMs, nofile: o.perChild + 1024, echo: `  [clients ${k}] ` });
      children.push(c);
      await c.waitForLine(/^IDLE-READY/, 60_000);
    }
    let opened = 0;
    let openFailed = 0;
    let connectP99Ms = 0;
    const shares = children.map((_, k) => Math.min(o.perChild, o.connections - k * o.perChild));
    await Promise.all(
      children.map(async (c, k) => {
        const l = (await c.ask(`open ${shares[k]}`, /^OPENED /, 600_000)).split(' ');
        opened += Number(l[1]);
        openFailed += Number(l[2]);
        connectP99Ms = Math.max(connectP99Ms, Number(l[3]));
      }),
    );
    const openSec = (Date.now() - open0) / 1000;
    o.log(`${opened} open, ${openFailed} failed in ${openSec.toFixed(1)} s (connect p99 ${connectP99Ms} ms)`);

    const clients = async () => {
      let open = 0;
      let closed = 0;
      for (const c of children) {
        const l = (await c.ask('status', /^STATUS /, 30_000)).split(' ');
        open += Number(l[1]);
        closed += Number(l[2]);
      }
      return { open, closed };
    };

    // The steady part: writes at a fixed rate for the whole run, a sample every sampleSec.
    const t0 = Date.now();
    writer = startTs('writer', 'bench/load/writer.ts', writerArgs(o.rate, runSec, 0), { env: writerEnv, maxMs });
    const writerDone = resultOf<WriterResult>(writer, maxMs);
    writerDone.catch(() => undefined);
    const cpu0 = cpuSeconds(pid);
    const samples: Sample[] = [];
    let prev = { at: t0, writes: 0, frames: 0 };
    let crashed: string | undefined;
    const deadOne = () => {
      if (gw.proc.exitCode !== undefined) return `gateway exited with ${gw.proc.exitCode}; its last lines:\n    ${gw.proc.output.slice(-15).join('\n    ')}`;
      if (world.processor && world.processor.exitCode !== undefined) return `processors exited with ${world.processor.exitCode}; their last lines:\n    ${world.processor.output.slice(-15).join('\n    ')}`;
      return undefined;
    };
    const takeSample = async (): Promise<Sample> => {
      const at = Date.now();
      // /proc first: the scrape's own connection is then not in the count.
      const fdsNow = fdCount(pid);
      const rss = rssBytes(pid) / MiB;
      const text = await scrape(gw.url).catch(() => '');
      const writes = metric(text, 'danmaku_http_requests_total', COMMENTS) || 0;
      const frames = metric(text, 'danmaku_push_frames_sent_total') || 0;
      const dt = (at - prev.at) / 1000;
      const s: Sample = {
        t: (at - t0) / 1000,
        rssMiB: rss,
        heapMiB: metric(text, 'danmaku_gateway_nodejs_heap_size_used_bytes') / MiB,
        fds: fdsNow,
        loopP99Ms: loopDelayMs(metric(text, 'danmaku_gateway_nodejs_eventloop_lag_p99_seconds')),
        sockets: metric(text, 'danmaku_push_sockets_open'),
        writesPerSec: text ? (writes - prev.writes) / dt : NaN,
        framesPerSec: text ? (frames - prev.frames) / dt : NaN,
        load1: os.loadavg()[0]!,
      };
      if (text) prev = { at, writes, frames };
      return s;
    };
    // The counters' starting point; this scrape also resets the loop-delay histogram, which ran through the connect storm.
    const textStart = await scrape(gw.url);
    prev = { at: Date.now(), writes: metric(textStart, 'danmaku_http_requests_total', COMMENTS) || 0, frames: metric(textStart, 'danmaku_push_frames_sent_total') || 0 };
    const end = t0 + runSec * 1000;
    let nextProgress = 10;
    for (let next = t0 + o.sampleSec * 1000; next <= end + 100; next += o.sampleSec * 1000) {
      await Promise.race([delay(Math.max(0, next - Date.now())), gw.proc.exited]);
      if ((crashed = deadOne())) break;
      const s = await takeSample();
      samples.push(s);
      if (s.t >= nextProgress || next + o.sampleSec * 1000 > end + 100) {
        nextProgress += 10 * Math.max(1, Math.floor((s.t - nextProgress) / 10) + 1);
        o.log(progressLine(s, (await clients()).open, o.minutes));
      }
    }
    const gatewayCpuPct = ((cpuSeconds(pid) - cpu0) / ((Date.now() - t0) / 1000)) * 100;
    const writerResult = crashed ? undefined : await writerDone.catch(() => undefined);
    const dropped = crashed ? 0 : (await clients()).closed;

    // Close every client socket (the children exit, the kernel closes what they held) and wait for the gateway to let go.
    for (const c of children) c.send('stop');
    for (const c of children) await resultOf(c, 30_000).catch(() => undefined);
    for (const c of children) await c.stop('SIGTERM', 3000);
    let after: SoakResult['after'];
    let leaked: number | undefined;
    if (!crashed && !(crashed = deadOne())) {
      const w0 = Date.now();
      let last = { fds: fdCount(pid), sockets: NaN };
      let settled = false;
      // Polled to a deadline, not slept: most runs settle in well under a second.
      for (const deadline = Date.now() + o.settleSec * 1000; ; ) {
        const fdsNow = fdCount(pid);
        const text = await scrape(gw.url).catch(() => '');
        last = { fds: fdsNow, sockets: metric(text, 'danmaku_push_sockets_open') };
        if (last.fds <= baseline.fds && last.sockets <= baseline.sockets) {
          settled = true;
          break;
        }
        if (Date.now() > deadline) break;
        await delay(500);
      }
      after = { ...last, waitedSec: (Date.now() - w0) / 1000, settled };
      leaked = leakedSockets(baseline, last);
      o.log(`after close: ${last.fds} fds (baseline ${baseline.fds}), ${last.sockets} sockets (baseline ${baseline.sockets}), ${settled ? 'settled' : 'not settled'} in ${after.waitedSec.toFixed(1)} s`);
    }
    const g = growth(samples, runSec);
    const params = { minutes: o.minutes, connections: o.connections, rate: o.rate, rooms: o.rooms, sampleSec: o.sampleSec, perChild: o.perChild, settleSec: o.settleSec };
    return {
      params,
      gatewayNofile: nofile,
      baseline,
      opened,
      openFailed,
      openSec,
      connectP99Ms,
      samples,
      growth: g,
      gatewayCpuPct,
      writer: writerResult && { sent: writerResult.sent, ok: writerResult.ok, errors: writerResult.errors, errorSamples: writerResult.errorSamples },
      dropped,
      after,
      leaked,
      crashed,
      verdict: verdict({ minutes: o.minutes, growth: g, leaked, crashed, wanted: o.connections, opened }),
    };
  } finally {
    for (const c of children) await c.stop('SIGTERM', 3000);
    await writer?.stop('SIGTERM', 3000);
    await world.stop();
  }
}
