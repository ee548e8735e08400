/**
 * Hand-written SVG charts (no dependency): panels of grouped bars and of
 * lines, composed into one file. Log scales for latencies.
 */
export const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function fmt(v: number): string {
  if (!Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a >= 100) return String(Math.round(v));
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

function niceTicks(max: number, n = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let t = 0; t <= max + step * 0.001; t += step) ticks.push(t);
  if (ticks[ticks.length - 1]! < max) ticks.push(ticks[ticks.length - 1]! + step);
  return ticks;
}

interface Scale {
  map(v: number): number;
  ticks: number[];
}

function scale(values: number[], h: number, log: boolean, headroom = 1): Scale {
  const finite = values.filter((v) => Number.isFinite(v) && (!log || v > 0));
  if (log) {
    const lo = 10 ** Math.floor(Math.log10(Math.min(...finite, 1)));
    const hi = 10 ** Math.ceil(Math.log10(Math.max(...finite, lo * 10) * headroom));
    const ticks: number[] = [];
    for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
    return { map: (v) => h - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * h, ticks };
  }
  const ticks = niceTicks(Math.max(...finite, 0) * headroom);
  const top = ticks[ticks.length - 1]!;
  return { map: (v) => h - (v / top) * h, ticks };
}

export interface Panel {
  x: number;
  y: number;
  w: number;
  h: number;
  title: string;
  yLabel: string;
  log?: boolean;
}

function axes(p: Panel, s: Scale, parts: string[]): void {
  parts.push(`<text x="${p.x + p.w / 2}" y="${p.y - 12}" text-anchor="middle" font-size="14" font-weight="bold">${esc(p.title)}</text>`);
  for (const t of s.ticks) {
    const y = p.y + s.map(t);
    parts.push(`<line x1="${p.x}" x2="${p.x + p.w}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    parts.push(`<text x="${p.x - 6}" y="${y + 4}" text-anchor="end" font-size="11">${fmt(t)}</text>`);
  }
  parts.push(`<line x1="${p.x}" x2="${p.x}" y1="${p.y}" y2="${p.y + p.h}" stroke="#333"/>`);
  parts.push(`<line x1="${p.x}" x2="${p.x + p.w}" y1="${p.y + p.h}" y2="${p.y + p.h}" stroke="#333"/>`);
  parts.push(`<text transform="translate(${p.x - 48},${p.y + p.h / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(p.yLabel)}${p.log ? ' (log)' : ''}</text>`);
}

function legend(x: number, y: number, names: string[], parts: string[]): void {
  names.forEach((n, i) => {
    parts.push(`<rect x="${x}" y="${y + i * 16}" width="10" height="10" fill="${COLORS[i % COLORS.length]}"/>`);
    parts.push(`<text x="${x + 14}" y="${y + i * 16 + 9}" font-size="11">${esc(n)}</text>`);
  });
}

/** Groups along x (e.g. p50/p95/p99), one bar per series (e.g. system) in each group. */
export function bars(p: Panel & { groups: string[]; series: { name: string; values: number[] }[] }): string {
  const parts: string[] = [];
  // Headroom above the tallest bar for the legend.
  const s = scale(p.series.flatMap((x) => x.values), p.h, p.log ?? false, 1 + 0.1 * (p.series.length + 1));
  axes(p, s, parts);
  const gw = p.w / p.groups.length;
  const bw = (gw * 0.75) / Math.max(1, p.series.length);
  p.groups.forEach((g, gi) => {
    parts.push(`<text x="${p.x + gw * gi + gw / 2}" y="${p.y + p.h + 16}" text-anchor="middle" font-size="12">${esc(g)}</text>`);
    p.series.forEach((ser, si) => {
      const v = ser.values[gi]!;
      if (!Number.isFinite(v)) return;
      const x = p.x + gw * gi + gw * 0.125 + bw * si;
      const y = p.y + s.map(v);
      parts.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(p.y + p.h - y).toFixed(1)}" fill="${COLORS[si % COLORS.length]}"><title>${esc(`${ser.name} ${g}: ${fmt(v)}`)}</title></rect>`);
      parts.push(`<text x="${(x + bw / 2 - 1).toFixed(1)}" y="${(y - 3).toFixed(1)}" text-anchor="middle" font-size="9">${fmt(v)}</text>`);
    });
  });
  legend(p.x + 8, p.y + 4, p.series.map((x) => x.name), parts);
  return parts.join('\n');
}

/** Lines over a numeric x axis. */
export function lines(p: Panel & { xLabel: string; series: { name: string; points: [number, number][] }[]; xLog?: boolean }): string {
  const parts: string[] = [];
  const s = scale(p.series.flatMap((x) => x.points.map((pt) => pt[1])), p.h, p.log ?? false);
  axes(p, s, parts);
  const xs = p.series.flatMap((x) => x.points.map((pt) => pt[0]));
  let xTicks: number[];
  let mx: (v: number) => number;
  const xPos = xs.filter((v) => v > 0);
  if (p.xLog && xPos.length > 0) {
    // A doubling ladder: its own rates as ticks (few), else powers of ten.
    const lo = Math.min(...xPos);
    const hi = Math.max(lo * 2, ...xPos);
    const distinct = [...new Set(xPos)].sort((a, b) => a - b);
    xTicks = distinct.length <= 12 ? distinct : Array.from({ length: Math.floor(Math.log10(hi)) - Math.ceil(Math.log10(lo)) + 1 }, (_, i) => 10 ** (Math.ceil(Math.log10(lo)) + i));
    const l0 = Math.log10(lo) - 0.05;
    const l1 = Math.log10(hi) + 0.05;
    mx = (v: number) => p.x + ((Math.log10(Math.max(v, lo)) - l0) / (l1 - l0)) * p.w;
  } else {
    const xmax = Math.max(1, ...xs);
    const xmin = Math.min(0, ...xs);
    xTicks = niceTicks(xmax - xmin, 6).map((t) => t + xmin);
    mx = (v: number) => p.x + ((v - xmin) / (xTicks[xTicks.length - 1]! - xmin)) * p.w;
  }
  for (const t of xTicks) parts.push(`<text x="${mx(t)}" y="${p.y + p.h + 16}" text-anchor="middle" font-size="11">${fmt(t)}</text>`);
  parts.push(`<text x="${p.x + p.w / 2}" y="${p.y + p.h + 32}" text-anchor="middle" font-size="12">${esc(p.xLabel)}${p.xLog ? ' (log)' : ''}</text>`);
  p.series.forEach((ser, si) => {
    const pts = ser.points.filter((pt) => Number.isFinite(pt[1]) && (!p.log || pt[1] > 0));
    if (pts.length === 0) return;
    const d = pts.map((pt, i) => `${i ? 'L' : 'M'}${mx(pt[0]).toFixed(1)},${(p.y + s.map(pt[1])).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${COLORS[si % COLORS.length]}" stroke-width="2"/>`);
    for (const pt of pts) parts.push(`<circle cx="${mx(pt[0]).toFixed(1)}" cy="${(p.y + s.map(pt[1])).toFixed(1)}" r="2.5" fill="${COLORS[si % COLORS.length]}"><title>${esc(`${ser.name} @${fmt(pt[0])}: ${fmt(pt[1])}`)}</title></circle>`);
  });
  legend(p.x + 8, p.y + 4, p.series.map((x) => x.name), parts);
  return parts.join('\n');
}

export function svg(width: number, height: number, title: string, subtitle: string, panels: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>`,
    `<text x="${width / 2}" y="42" text-anchor="middle" font-size="11" fill="#555">${esc(subtitle)}</text>`,
    ...panels,
    '</svg>',
    '',
  ].join('\n');
}

/** Groups along x (e.g. steps), each one bar stacked from the series (e.g. processes), with the group's total above it. */
export function stackedBars(p: Panel & { groups: string[]; series: { name: string; values: number[] }[] }): string {
  const parts: string[] = [];
  const totals = p.groups.map((_, gi) => p.series.reduce((a, s) => a + (Number.isFinite(s.values[gi]!) ? s.values[gi]! : 0), 0));
  // Headroom above the tallest stack for the legend.
  const s = scale(totals, p.h, false, 1 + 0.08 * (p.series.length + 1));
  axes(p, s, parts);
  const gw = p.w / Math.max(1, p.groups.length);
  const bw = gw * 0.6;
  p.groups.forEach((g, gi) => {
    const x = p.x + gw * gi + (gw - bw) / 2;
    parts.push(`<text x="${(x + bw / 2).toFixed(1)}" y="${p.y + p.h + 16}" text-anchor="middle" font-size="11">${esc(g)}</text>`);
    let acc = 0;
    p.series.forEach((ser, si) => {
      const v = ser.values[gi]!;
      if (!Number.isFinite(v) || v <= 0) return;
      const y0 = p.y + s.map(acc);
      acc += v;
      const y1 = p.y + s.map(acc);
      parts.push(`<rect x="${x.toFixed(1)}" y="${y1.toFixed(1)}" width="${bw.toFixed(1)}" height="${(y0 - y1).toFixed(1)}" fill="${COLORS[si % COLORS.length]}"><title>${esc(`${ser.name} ${g}: ${fmt(v)}`)}</title></rect>`);
    });
    parts.push(`<text x="${(x + bw / 2).toFixed(1)}" y="${(p.y + s.map(acc) - 3).toFixed(1)}" text-anchor="middle" font-size="9">${fmt(acc)}</text>`);
  });
  legend(p.x + 8, p.y + 4, p.series.map((x) => x.name), parts);
  return parts.join('\n');
}
