/** The bench's pure parts: the mergeable histogram, the text tags, the SVG writer, the perf tools' output, the profile reader. */
import { describe, expect, it } from 'vitest';
import { bars, lines, stackedBars, svg } from './lib/chart.ts';
import { packageOf, pidOfProfile, summarizeProfile, type CpuProfile } from './lib/cpuprofile.ts';
import { parseConsumerPerf, parseProducerPerf } from './lib/kafka-perf.ts';
import { Hist, mergeSeries, Series } from './lib/stats.ts';
import { generatedTexts, parseTag, tagText } from './lib/texts.ts';
import { ingestFinalLines, ladder, writersFor, type IngestResult } from './scenarios/ingest.ts';
import { reactionsFinalLines, type ReactionsResult } from './scenarios/reactions.ts';
import { REPO_ROOT } from '../core/config.ts';

describe('Hist', () => {
  it('gives quantiles within about 1 % and exact extremes', () => {
    const h = new Hist();
    for (let i = 1; i <= 10_000; i++) h.add(i / 10); // 0.1 .. 1000 ms
    expect(h.n).toBe(10_000);
    expect(h.quantile(0.5)).toBeGreaterThan(500 * 0.99);
    expect(h.quantile(0.5)).toBeLessThan(500 * 1.01);
    expect(h.quantile(0.99)).toBeGreaterThan(990 * 0.99);
    expect(h.quantile(0.99)).toBeLessThan(990 * 1.01);
    expect(h.quantile(1)).toBe(1000);
    expect(h.min).toBe(0.1);
  });

  it('merges through JSON as if recorded in one place', () => {
    const a = new Hist();
    const b = new Hist();
    const all = new Hist();
    for (let i = 0; i < 1000; i++) {
      const v = (i * 7919) % 300;
      (i % 2 ? a : b).add(v);
      all.add(v);
    }
    const m = Hist.from(JSON.parse(JSON.stringify(a.toJSON()))).merge(b.toJSON());
    expect(m.summary()).toEqual(all.summary());
  });

  it('is NaN when empty', () => {
    expect(new Hist().quantile(0.5)).toBeNaN();
  });
});

describe('Series', () => {
  it('aligns per-second buckets of processes that started at different times', () => {
    const s1 = new Series(1_000_000);
    const s2 = new Series(1_002_000);
    s1.add(1_000_500, 1);
    s1.add(1_002_500, 1);
    s2.add(1_002_100, 1);
    const m = mergeSeries([s1.toJSON(), s2.toJSON()]);
    expect(m.seconds.map((b) => b.n)).toEqual([1, 0, 2]);
  });
});

describe('text tags', () => {
  it('round-trips sequence and send time with microsecond precision', () => {
    const t = tagText(42, 1_700_000_000_123.456, '哈哈哈 草');
    expect(t.endsWith(' 哈哈哈 草')).toBe(true);
    const tag = parseTag(t)!;
    expect(tag.seq).toBe(42);
    expect(tag.sendMs).toBeCloseTo(1_700_000_000_123.456, 3);
    expect(parseTag('plain text')).toBeUndefined();
  });

  it('generates deterministic texts when the real logs are absent', () => {
    expect(generatedTexts(5)).toEqual(generatedTexts(5));
    expect(generatedTexts(100).every((t) => t.length > 0 && [...t].length <= 150)).toBe(true);
  });
});

describe('charts', () => {
  it('writes a well-formed SVG with escaped labels and skips non-finite values', () => {
    const doc = svg(800, 400, 'a < b & c', 'sub', [
      bars({ x: 60, y: 60, w: 300, h: 200, title: 't', yLabel: 'ms', log: true, groups: ['p50', 'p99'], series: [{ name: 'x', values: [1.5, NaN] }] }),
      lines({ x: 420, y: 60, w: 300, h: 200, title: 'l', yLabel: 'n', xLabel: 's', series: [{ name: 'y', points: [[0, 1], [1, 3], [2, NaN]] }] }),
    ]);
    expect(doc.startsWith('<svg')).toBe(true);
    expect(doc).toContain('a &lt; b &amp; c');
    expect(doc).not.toContain('NaN');
    expect(doc.trim().endsWith('</svg>')).toBe(true);
  });

  it('stacks bars and labels each stack with its total', () => {
    const doc = svg(800, 400, 'cpu', 'sub', [stackedBars({ x: 60, y: 60, w: 600, h: 200, title: 't', yLabel: 'cores', groups: ['a', 'b'], series: [{ name: 'gw', values: [0.5, 1] }, { name: 'kafka', values: [0.25, NaN] }] })]);
    expect(doc).toContain('>0.75<');
    expect(doc).toContain('>1.00<');
    expect(doc).not.toContain('NaN');
  });
});

describe('ingest ladder', () => {
  it('doubles up to the maximum', () => {
    expect(ladder(50, 400)).toEqual([50, 100, 200, 400]);
    expect(ladder(10, 20)).toEqual([10, 20]);
  });
});

describe('ingest', () => {
  it('adds writer processes with the rate, up to 4', () => {
    expect([50, 3200, 3201, 12_800, 51_200].map(writersFor)).toEqual([1, 1, 2, 4, 4]);
  });

  it('ends with the plain lines, the parenthesis following the options used', () => {
    const r = (rooms: number, shareUsed: number) =>
      ({ params: { rooms, p99LimitMs: 1000 }, ws: { shareUsed }, ours: { highestHeld: 1600, steps: [] }, raw: { highestHeld: 6400, steps: [] }, kafkaPerf: { ceiling: 42_409 } }) as unknown as IngestResult;
    expect(ingestFinalLines(r(1, 0.5))).toEqual(['highest rate held (one room, p99 write→projection ≤ 1 s): ours 1600/s', 'ceilings: raw kafkajs 6400/s, kafka-perf 42409/s']);
    expect(ingestFinalLines(r(4, 0))[0]).toBe('highest rate held (4 rooms, HTTP only, p99 write→projection ≤ 1 s): ours 1600/s');
  });
});

describe('reactions', () => {
  it('ends with the plain line', () => {
    expect(reactionsFinalLines({ highestHeld: 25_000, talliesExact: true } as ReactionsResult)).toEqual(['reactions held: 25000/s, tallies exact: yes']);
  });
});

describe("Kafka's perf tools", () => {
  it('reads the producer summary line', () => {
    const out = ['100000 records sent, 46339.2 records/sec (8.84 MB/sec), 120.5 ms avg latency, 640.0 ms max latency.', '300000 records sent, 29761.904762 records/sec (5.68 MB/sec), 448.84 ms avg latency, 1468.00 ms max latency, 374 ms 50th, 1172 ms 95th, 1318 ms 99th, 1416 ms 99.9th.'];
    expect(parseProducerPerf(out)).toEqual({ records: 300_000, recordsPerSec: 29761.904762, mbPerSec: 5.68, avgMs: 448.84, maxMs: 1468, p50Ms: 374, p95Ms: 1172, p99Ms: 1318, p999Ms: 1416 });
    expect(parseProducerPerf(['nothing'])).toBeUndefined();
  });

  it('reads the consumer CSV', () => {
    const out = [
      'start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec',
      '2026-12-01 01:55:00:100, 2026-12-01 01:55:04:930, 57.2205, 11.6107, 300000, 60852.0, 851, 4079, 14.0281, 73547.4',
    ];
    expect(parseConsumerPerf(out)).toEqual({ messages: 300_000, msgPerSec: 60852, fetchMsgPerSec: 73547, mbPerSec: 11.61, rebalanceMs: 851, fetchMs: 4079 });
  });
});

describe('cpuprofile reader', () => {
  it('sums self time per function and per package, leaving idle out of the busy share', () => {
    const f = (functionName: string, url: string) => ({ functionName, url, lineNumber: 9 });
    const p: CpuProfile = {
      startTime: 0,
      endTime: 10_000, // 10 ms over 10 samples: 1 ms each
      samples: [1, 2, 2, 3, 3, 3, 4, 4, 5, 5],
      nodes: [
        { id: 1, callFrame: f('(root)', ''), hitCount: 1, children: [2, 4, 5] },
        { id: 2, callFrame: f('handle', `file://${REPO_ROOT}/gateway/write.ts`), hitCount: 2, children: [3] },
        { id: 3, callFrame: f('encode', `file://${REPO_ROOT}/node_modules/avsc/lib/types.js`), hitCount: 3 },
        { id: 4, callFrame: f('(garbage collector)', ''), hitCount: 2 },
        { id: 5, callFrame: f('(idle)', ''), hitCount: 2 },
      ],
    };
    const s = summarizeProfile(p);
    expect(s.samples).toBe(10);
    expect(s.busySec).toBeCloseTo(0.008, 3);
    expect(s.top[0]).toEqual({ frame: 'encode (avsc/lib/types.js:10)', selfMs: 3, pct: 37.5 });
    expect(s.packages.map((x) => x.frame)).toEqual(['avsc', 'ours: gateway', '(garbage collector)', '(root)']);
    // avsc's time is charged to the frame of ours that called it.
    expect(s.ours[0]).toEqual({ frame: 'handle (gateway/write.ts:10)', selfMs: 5, pct: 62.5 });
  });

  it('names packages and profile files', () => {
    expect(packageOf('x', 'file:///a/node_modules/@kafkajs/confluent-schema-registry/dist/x.js')).toBe('@kafkajs/confluent-schema-registry');
    expect(packageOf('x', 'node:zlib')).toBe('node');
    expect(pidOfProfile('/tmp/CPU.20261201.015258.19797.0.001.cpuprofile')).toEqual({ pid: 19797, thread: 0 });
  });
});
