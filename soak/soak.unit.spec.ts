/** The soak's pure parts: the slope, the warm-up, the leak count, the verdict, the lines it prints, the doc section's markers. */
import { describe, expect, it } from 'vitest';
import { finalLine, fitLine, growth, leakedSockets, loopDelayMs, metric, oneDecimal, progressLine, verdict, warmupEnd, type Growth, type Sample } from './measure.ts';
import { SOAK_END, SOAK_START, withSection } from './report.ts';

const sample = (t: number, rssMiB: number, heapMiB = 50): Sample => ({ t, rssMiB, heapMiB, fds: 100, loopP99Ms: 1, sockets: 10, writesPerSec: 50, framesPerSec: 1000, load1: 1 });

describe('fitLine', () => {
  it('finds the slope and intercept of points on a line', () => {
    const { slope, intercept } = fitLine([0, 1, 2, 3, 4].map((x) => [x, 3 * x + 7]));
    expect(slope).toBeCloseTo(3, 10);
    expect(intercept).toBeCloseTo(7, 10);
  });

  it('fits the least-squares line through noise, and ignores NaN points', () => {
    // y = 2x ± 1, alternating: the fit is 2 plus the noise's own tilt, Σ(x−x̄)e / Σ(x−x̄)² = 3 / 17.5.
    const pts: [number, number][] = [0, 1, 2, 3, 4, 5].map((x, i) => [x, 2 * x + (i % 2 ? 1 : -1)]);
    pts.push([6, NaN]);
    expect(fitLine(pts).slope).toBeCloseTo(2 + 3 / 17.5, 10);
  });

  it('has no slope with fewer than two distinct x', () => {
    expect(fitLine([]).slope).toBeNaN();
    expect(fitLine([[1, 2]]).slope).toBeNaN();
    expect(fitLine([[1, 2], [1, 3]]).slope).toBeNaN();
  });
});

describe('growth', () => {
  it('skips the warm-up: the larger of 20 % of the run and 30 s', () => {
    const thirty = Array.from({ length: 360 }, (_, i) => sample((i + 1) * 5, 100));
    expect(warmupEnd(thirty, 1800)).toBe(360);
    const one = Array.from({ length: 12 }, (_, i) => sample((i + 1) * 5, 100));
    expect(warmupEnd(one, 60)).toBe(30);
    // Never so late that fewer than three samples are left.
    expect(warmupEnd([sample(5, 1), sample(10, 1), sample(15, 1)], 60)).toBe(5);
  });

  it('gives MiB per hour from the samples after the warm-up, against the warmed RSS', () => {
    // A steep climb during the warm-up, then 0.01 MiB/s (36 MiB/h) from 200 MiB at 6 min.
    const samples = Array.from({ length: 360 }, (_, i) => {
      const t = (i + 1) * 5;
      return sample(t, t < 360 ? 50 + (150 * t) / 360 : 200 + 0.01 * (t - 360), 80);
    });
    const g = growth(samples, 1800);
    expect(g.warmupSec).toBe(360);
    expect(g.rssMiBPerHour).toBeCloseTo(36, 6);
    expect(g.warmedRssMiB).toBeCloseTo(200, 6);
    expect(g.pctPer30Min).toBeCloseTo((18 / 200) * 100, 6);
    expect(g.heapMiBPerHour).toBeCloseTo(0, 6);
  });

  it('is flat for a flat run', () => {
    const g = growth(Array.from({ length: 60 }, (_, i) => sample((i + 1) * 5, 300 + (i % 2 ? 2 : -2))), 300);
    expect(Math.abs(g.rssMiBPerHour)).toBeLessThan(20);
    expect(oneDecimal(-0.01)).toBe('0.0');
  });
});

describe('leakedSockets', () => {
  it('counts descriptors above the baseline, and sockets still registered', () => {
    expect(leakedSockets({ fds: 40, sockets: 0 }, { fds: 40, sockets: 0 })).toBe(0);
    expect(leakedSockets({ fds: 40, sockets: 0 }, { fds: 38, sockets: 0 })).toBe(0);
    expect(leakedSockets({ fds: 40, sockets: 0 }, { fds: 43, sockets: 0 })).toBe(3);
    expect(leakedSockets({ fds: 40, sockets: 0 }, { fds: 40, sockets: 5 })).toBe(5);
    expect(leakedSockets({ fds: 40, sockets: 0 }, { fds: 42, sockets: NaN })).toBe(2);
  });
});

describe('verdict', () => {
  const g = (pct: number): Growth => ({ rssMiBPerHour: pct * 4, heapMiBPerHour: 0, warmedRssMiB: 200, warmupSec: 360, pctPer30Min: pct });
  const base = { wanted: 10_000, opened: 10_000, leaked: 0 };

  it('passes a flat run without leaks', () => {
    expect(verdict({ ...base, minutes: 30, growth: g(1) })).toEqual({ ok: true, reasons: [] });
  });

  it('fails growth above 5 % per 30 min only for runs of 10 minutes or more', () => {
    expect(verdict({ ...base, minutes: 30, growth: g(6) }).ok).toBe(false);
    expect(verdict({ ...base, minutes: 10, growth: g(6) }).ok).toBe(false);
    expect(verdict({ ...base, minutes: 5, growth: g(60) }).ok).toBe(true);
    expect(verdict({ ...base, minutes: 1, growth: g(NaN) }).ok).toBe(true);
  });

  it('fails a leaked socket, a crash, and sockets that never opened, whatever the length', () => {
    expect(verdict({ ...base, minutes: 1, growth: g(0), leaked: 1 }).reasons[0]).toMatch(/1 socket\(s\) still held/);
    expect(verdict({ ...base, minutes: 1, growth: g(0), leaked: undefined, crashed: 'gateway exited with 137' }).ok).toBe(false);
    expect(verdict({ ...base, minutes: 1, growth: g(0), opened: 9_000 }).reasons[0]).toMatch(/only 9000 of 10000/);
    expect(verdict({ ...base, minutes: 1, growth: g(0), leaked: undefined }).ok).toBe(false);
  });
});

describe('lines', () => {
  it('ends with the exact final line, one decimal, never -0.0', () => {
    expect(finalLine(1.234, 0)).toBe('soak: memory growth 1.2 MiB/h, leaked sockets 0');
    expect(finalLine(-0.04, 3)).toBe('soak: memory growth 0.0 MiB/h, leaked sockets 3');
    expect(finalLine(-12.36, 0)).toBe('soak: memory growth -12.4 MiB/h, leaked sockets 0');
    expect(finalLine(NaN, undefined)).toBe('soak: memory growth n/a MiB/h, leaked sockets unknown');
  });

  it('prints progress with the minute mark, sockets, memory, fds, loop delay and rates', () => {
    const s: Sample = { t: 130.2, rssMiB: 312.44, heapMiB: 120.3, fds: 10_043, loopP99Ms: 3.21, sockets: 10_000, writesPerSec: 49.96, framesPerSec: 24_999.6, load1: 1.234 };
    expect(progressLine(s, 10_000, 30)).toBe('02:10/30:00  sockets 10000 (gateway 10000)  rss 312.4 MiB  heap 120.3 MiB  fds 10043  loop p99 3.2 ms  writes 50.0/s  frames 25000/s  load 1.2');
    expect(progressLine({ ...s, heapMiB: NaN, loopP99Ms: NaN, sockets: NaN, writesPerSec: NaN, framesPerSec: NaN }, 9, 1)).toBe('02:10/01:00  sockets 9 (gateway –)  rss 312.4 MiB  heap – MiB  fds 10043  loop p99 – ms  writes –/s  frames –/s  load 1.2');
  });
});

describe('metric', () => {
  const text = [
    '# HELP danmaku_http_requests_total HTTP requests by route and status.',
    '# TYPE danmaku_http_requests_total counter',
    'danmaku_http_requests_total{method="POST",route="/v1/rooms/:room/comments",status="202"} 120',
    'danmaku_http_requests_total{method="POST",route="/v1/rooms/:room/comments",status="429"} 3',
    'danmaku_http_requests_total{method="GET",route="/metrics",status="200"} 9',
    'danmaku_push_sockets_open 10000',
    'danmaku_push_sockets_open_max 1',
    'danmaku_gateway_nodejs_eventloop_lag_p99_seconds 0.012345',
    'danmaku_push_frames_sent_total{type="batch"} 700',
    'danmaku_push_frames_sent_total{type="presence"} 300',
  ].join('\n');

  it('reads a gauge, sums a counter over its labels, and filters on labels', () => {
    expect(metric(text, 'danmaku_push_sockets_open')).toBe(10_000);
    expect(metric(text, 'danmaku_push_frames_sent_total')).toBe(1000);
    expect(metric(text, 'danmaku_http_requests_total', { route: '/v1/rooms/:room/comments', status: '202' })).toBe(120);
    expect(metric(text, 'danmaku_http_requests_total', { method: 'POST' })).toBe(123);
    expect(metric(text, 'danmaku_absent')).toBeNaN();
    expect(metric('', 'danmaku_push_sockets_open')).toBeNaN();
  });

  it('takes the 10 ms timer period off the loop-delay gauge', () => {
    expect(loopDelayMs(metric(text, 'danmaku_gateway_nodejs_eventloop_lag_p99_seconds'))).toBeCloseTo(2.345, 6);
    expect(loopDelayMs(0.0099)).toBe(0);
    expect(loopDelayMs(NaN)).toBeNaN();
  });
});

describe('the doc section', () => {
  it('is appended once, then replaced in place, leaving the rest of the file', () => {
    const doc = '# Reliability\n\ntable\n';
    const once = withSection(doc, 'first\n');
    expect(once).toBe(`# Reliability\n\ntable\n\n${SOAK_START}\nfirst\n${SOAK_END}\n`);
    const twice = withSection(`${once}\nafter\n`, 'second\n');
    expect(twice).toBe(`# Reliability\n\ntable\n\n${SOAK_START}\nsecond\n${SOAK_END}\n\nafter\n`);
  });
});
