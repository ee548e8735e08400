/**
 * A mergeable latency histogram with about 1 % resolution: buckets are
 * round(ln(µs) * 100), so a child process can ship its counts as a small
 * object and the parent adds them up. Exact min/max/count/sum are kept.
 */
export interface HistJson {
  c: Record<string, number>;
  n: number;
  sum: number;
  min: number;
  max: number;
}

const SCALE = 100;

export class Hist {
  private counts = new Map<number, number>();
  n = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;

  /** Records a value in milliseconds. */
  add(ms: number): void {
    const us = Math.max(1, ms * 1000);
    const k = Math.round(Math.log(us) * SCALE);
    this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
    this.n++;
    this.sum += ms;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
  }

  merge(h: Hist | HistJson): this {
    const other = h instanceof Hist ? h.toJSON() : h;
    for (const [k, v] of Object.entries(other.c)) this.counts.set(Number(k), (this.counts.get(Number(k)) ?? 0) + v);
    this.n += other.n;
    this.sum += other.sum;
    if (other.n > 0) {
      this.min = Math.min(this.min, other.min);
      this.max = Math.max(this.max, other.max);
    }
    return this;
  }

  /** The q-quantile (0..1) in milliseconds; NaN when empty. */
  quantile(q: number): number {
    if (this.n === 0) return NaN;
    if (q >= 1) return this.max;
    const target = Math.max(1, Math.ceil(q * this.n));
    let seen = 0;
    for (const k of [...this.counts.keys()].sort((a, b) => a - b)) {
      seen += this.counts.get(k)!;
      if (seen >= target) return Math.min(this.max, Math.max(this.min, Math.exp(k / SCALE) / 1000));
    }
    return this.max;
  }

  get mean(): number {
    return this.n ? this.sum / this.n : NaN;
  }

  summary(): LatencySummary {
    return { count: this.n, p50: round(this.quantile(0.5)), p95: round(this.quantile(0.95)), p99: round(this.quantile(0.99)), max: round(this.n ? this.max : NaN), mean: round(this.mean) };
  }

  toJSON(): HistJson {
    return { c: Object.fromEntries(this.counts), n: this.n, sum: this.sum, min: this.min, max: this.max };
  }

  static from(j: HistJson): Hist {
    return new Hist().merge(j);
  }
}

export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export function round(x: number, digits = 2): number {
  if (!Number.isFinite(x)) return NaN;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Per-second counts and latency histograms, by whole seconds since `t0`. */
export class Series {
  readonly seconds: { n: number; hist: Hist }[] = [];
  constructor(readonly t0: number) {}
  add(now: number, latencyMs: number): void {
    const s = Math.max(0, Math.floor((now - this.t0) / 1000));
    while (this.seconds.length <= s) this.seconds.push({ n: 0, hist: new Hist() });
    const b = this.seconds[s]!;
    b.n++;
    b.hist.add(latencyMs);
  }
  toJSON(): SeriesJson {
    return { t0: this.t0, seconds: this.seconds.map((s) => ({ n: s.n, hist: s.hist.toJSON() })) };
  }
}

export interface SeriesJson {
  t0: number;
  seconds: { n: number; hist: HistJson }[];
}

/** Adds series that may have different t0 (aligned on the earliest). */
export function mergeSeries(list: SeriesJson[]): { t0: number; seconds: { n: number; hist: Hist }[] } {
  const t0 = Math.min(...list.map((s) => s.t0));
  const out: { n: number; hist: Hist }[] = [];
  for (const s of list) {
    const shift = Math.round((s.t0 - t0) / 1000);
    s.seconds.forEach((b, i) => {
      while (out.length <= i + shift) out.push({ n: 0, hist: new Hist() });
      const o = out[i + shift]!;
      o.n += b.n;
      o.hist.merge(b.hist);
    });
  }
  return { t0, seconds: out };
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable between processes of one machine. */
export const nowMs = () => performance.timeOrigin + performance.now();
