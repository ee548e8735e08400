/**
 * The soak's pure parts: reading the gateway's Prometheus text, the memory
 * slope, the leak count, the verdict and the lines it prints. No I/O, so the
 * unit spec covers them without a server.
 */

/** One reading of the gateway, `t` seconds after the sockets were all open. */
export interface Sample {
  t: number;
  rssMiB: number;
  /** V8 heap in use (from /metrics; NaN when the scrape failed). */
  heapMiB: number;
  /** Entries of /proc/<pid>/fd. */
  fds: number;
  /** Event-loop delay p99 over the interval since the previous scrape, ms (NaN when the scrape failed). */
  loopP99Ms: number;
  /** The push hub's socket gauge. */
  sockets: number;
  /** Comments the gateway accepted (202) per second over the interval. */
  writesPerSec: number;
  /** WebSocket frames written per second over the interval. */
  framesPerSec: number;
  /** The machine's 1-minute load average: loop delay on a shared machine reads with it. */
  load1: number;
}

/**
 * Sum of every series of `name` whose labels include `where` (a Prometheus
 * text exposition, as prom-client writes it). NaN when no series matches.
 */
export function metric(text: string, name: string, where: Record<string, string> = {}): number {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    if (Object.entries(where).some(([k, v]) => labels[k] !== v)) continue;
    sum += Number(m[3]);
    found = true;
  }
  return found ? sum : NaN;
}

/**
 * prom-client's event-loop gauges come from `monitorEventLoopDelay`, whose
 * histogram records the whole interval between two firings of its timer
 * (10 ms by default, prom-client's `eventLoopMonitoringPrecision`): an idle
 * loop reads ~10 ms. The delay is what lies beyond the timer's own period.
 */
export const LOOP_RESOLUTION_MS = 10;
export const loopDelayMs = (p99Seconds: number) => (Number.isFinite(p99Seconds) ? Math.max(0, p99Seconds * 1000 - LOOP_RESOLUTION_MS) : NaN);

/** Least-squares line through the points: slope (y per x) and intercept. NaN with fewer than two distinct x. */
export function fitLine(points: [number, number][]): { slope: number; intercept: number } {
  const pts = points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const n = pts.length;
  if (n < 2) return { slope: NaN, intercept: NaN };
  const mx = pts.reduce((a, [x]) => a + x, 0) / n;
  const my = pts.reduce((a, [, y]) => a + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const [x, y] of pts) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
  }
  if (sxx === 0) return { slope: NaN, intercept: NaN };
  const slope = sxy / sxx;
  return { slope, intercept: my - slope * mx };
}

/**
 * Where the warm-up ends: the first 20 % of the run or its first 30 s,
 * whichever is longer (heaps, JIT and socket buffers settle), but never so
 * late that fewer than three samples are left to fit.
 */
export function warmupEnd(samples: Sample[], runSec: number): number {
  const want = Math.max(30, 0.2 * runSec);
  const ts = samples.map((s) => s.t);
  const keepFrom = ts.length >= 3 ? ts[ts.length - 3]! : 0;
  return Math.min(want, keepFrom);
}

export interface Growth {
  /** Slope of RSS after the warm-up, MiB per hour. */
  rssMiBPerHour: number;
  /** The same for the V8 heap in use. */
  heapMiBPerHour: number;
  /** RSS on the fitted line where the warm-up ends: what the growth is measured against. */
  warmedRssMiB: number;
  warmupSec: number;
  /** The growth as a share of the warmed RSS per 30 minutes, percent. */
  pctPer30Min: number;
}

export function growth(samples: Sample[], runSec: number): Growth {
  const warmupSec = warmupEnd(samples, runSec);
  const after = samples.filter((s) => s.t >= warmupSec);
  const rss = fitLine(after.map((s) => [s.t, s.rssMiB]));
  const heap = fitLine(after.map((s) => [s.t, s.heapMiB]));
  const warmedRssMiB = rss.intercept + rss.slope * warmupSec;
  const rssMiBPerHour = rss.slope * 3600;
  return { rssMiBPerHour, heapMiBPerHour: heap.slope * 3600, warmedRssMiB, warmupSec, pctPer30Min: ((rssMiBPerHour / 2) / warmedRssMiB) * 100 };
}

/**
 * Sockets the gateway kept after every client closed: descriptors above the
 * count before any socket was opened, or sockets the push hub still has
 * registered above its count then (a socket whose descriptor was closed but
 * that the hub still holds leaks its memory and its room subscription), the
 * larger of the two.
 */
export function leakedSockets(before: { fds: number; sockets: number }, after: { fds: number; sockets: number }): number {
  const byFd = after.fds - before.fds;
  const byGauge = Number.isFinite(after.sockets) && Number.isFinite(before.sockets) ? after.sockets - before.sockets : 0;
  return Math.max(0, byFd, byGauge);
}

/** Most RSS growth a soak of ≥ 10 minutes may show: 5 % of the warmed RSS per 30 minutes. */
export const GROWTH_LIMIT_PCT_PER_30_MIN = 5;
/** Runs shorter than this are not judged on their slope. */
export const MIN_MINUTES_FOR_GROWTH = 10;

export interface VerdictInput {
  minutes: number;
  growth: Growth;
  /** undefined: not measured (the gateway was gone). */
  leaked: number | undefined;
  /** Why the gateway exited during the run, if it did. */
  crashed?: string;
  wanted: number;
  opened: number;
}

export function verdict(v: VerdictInput): { ok: boolean; reasons: string[] } {
  const reasons: string[] = [];
  if (v.crashed) reasons.push(`the gateway exited during the run: ${v.crashed}`);
  if (v.opened < v.wanted) reasons.push(`only ${v.opened} of ${v.wanted} sockets opened: the soak did not hold the load it was asked for`);
  if (v.leaked === undefined && !v.crashed) reasons.push('leaked sockets were not measured');
  if (v.leaked !== undefined && v.leaked > 0) reasons.push(`${v.leaked} socket(s) still held by the gateway after every client closed`);
  // A slope fitted over a minute or two measures the heap's sawtooth and the
  // allocator settling, not a leak: a GC cycle moves RSS by more than a real
  // leak adds in that time, so short runs (CI's one minute) are judged only on
  // leaked sockets and crashes, and report the slope without failing on it.
  if (v.minutes >= MIN_MINUTES_FOR_GROWTH) {
    if (!Number.isFinite(v.growth.pctPer30Min)) reasons.push('memory growth could not be fitted (too few samples)');
    else if (v.growth.pctPer30Min > GROWTH_LIMIT_PCT_PER_30_MIN)
      reasons.push(`memory grew ${v.growth.pctPer30Min.toFixed(1)} % of the warmed RSS per 30 min (limit ${GROWTH_LIMIT_PCT_PER_30_MIN} %)`);
  }
  return { ok: reasons.length === 0, reasons };
}

/** One decimal, never "-0.0". */
export function oneDecimal(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  const s = x.toFixed(1);
  return s === '-0.0' ? '0.0' : s;
}

/** The line the soak ends with. */
export function finalLine(growthMiBPerHour: number, leaked: number | undefined): string {
  return `soak: memory growth ${oneDecimal(growthMiBPerHour)} MiB/h, leaked sockets ${leaked ?? 'unknown'}`;
}

const mmss = (sec: number) => `${String(Math.floor(sec / 60)).padStart(2, '0')}:${String(Math.floor(sec % 60)).padStart(2, '0')}`;
const num = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : '–');

/** The progress line printed every 10 s. */
export function progressLine(s: Sample, clientsOpen: number, minutes: number): string {
  return `${mmss(s.t)}/${mmss(minutes * 60)}  sockets ${clientsOpen} (gateway ${Number.isFinite(s.sockets) ? s.sockets : '–'})  rss ${num(s.rssMiB)} MiB  heap ${num(s.heapMiB)} MiB  fds ${s.fds}  loop p99 ${num(s.loopP99Ms)} ms  writes ${num(s.writesPerSec)}/s  frames ${Number.isFinite(s.framesPerSec) ? Math.round(s.framesPerSec) : '–'}/s  load ${num(s.load1)}`;
}

/** Median of the finite values (NaN when none). */
export function median(xs: number[]): number {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}
