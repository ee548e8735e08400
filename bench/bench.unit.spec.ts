/** The bench's pure parts: the mergeable histogram, the text tags, the SVG writer. */
import { describe, expect, it } from 'vitest';
import { bars, lines, svg } from './lib/chart.ts';
import { Hist, mergeSeries, Series } from './lib/stats.ts';
import { generatedTexts, parseTag, tagText } from './lib/texts.ts';
import { ladder } from './scenarios/ingest.ts';

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
});

describe('ingest ladder', () => {
  it('doubles up to the maximum', () => {
    expect(ladder(50, 400)).toEqual([50, 100, 200, 400]);
    expect(ladder(10, 20)).toEqual([10, 20]);
  });
});
