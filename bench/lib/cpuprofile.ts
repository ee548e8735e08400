/**
 * A small reader of V8 `.cpuprofile` files (what `node --cpu-prof` writes):
 * self time per function, summed over every node of the call tree that
 * has the same function (name, script, line), and per package, so a run can
 * say what saturates a process.
 *
 * The format: `nodes` (each with `id`, `callFrame {functionName, url,
 * lineNumber (0-based), columnNumber}`, `hitCount` = samples whose top frame
 * was this node, `children`), `samples` (node ids), `timeDeltas` (µs between
 * samples), `startTime`/`endTime` (µs). Self time of a node = its hits × the
 * mean sample interval.
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../core/config.ts';
import { round } from './stats.ts';

export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number; columnNumber?: number }; hitCount?: number; children?: number[] }[];
  samples?: number[];
  timeDeltas?: number[];
  startTime: number;
  endTime: number;
}

export interface FrameSelf {
  /** `name (where:line)`; V8's pseudo-frames keep their own names: (garbage collector), (program), (idle). */
  frame: string;
  selfMs: number;
  /** Share of the samples in which the process was not idle. */
  pct: number;
}

export interface ProfileSummary {
  file: string;
  /** Wall time the profile covers, and the busy part of it (samples not in `(idle)`). */
  durationSec: number;
  busySec: number;
  samples: number;
  top: FrameSelf[];
  packages: FrameSelf[];
  /**
   * Self time attributed to the nearest frame of our own code on the stack
   * (what our code paths cost, the libraries and Node they call included).
   */
  ours: FrameSelf[];
}

/** Where a script lives, shortened: `pkg/path` for node_modules, `repo/path` for ours, `node:…` for Node's own. */
export function whereOf(url: string): string {
  if (!url) return '';
  let u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) return u.slice(nm + '/node_modules/'.length);
  if (u.startsWith(REPO_ROOT + '/')) u = u.slice(REPO_ROOT.length + 1);
  return u;
}

/** The package a script belongs to: an npm package name, `ours: <top folder>`, `node` (its internals), or a V8 pseudo-frame. */
export function packageOf(functionName: string, url: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = u.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (u.startsWith(REPO_ROOT + '/')) return `ours: ${u.slice(REPO_ROOT.length + 1).split('/')[0]}`;
  return path.basename(u);
}

export function summarizeProfile(p: CpuProfile, file = '', topN = 15): ProfileSummary {
  const samples = p.samples?.length ?? p.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0);
  const durationUs = p.endTime - p.startTime;
  const perSampleMs = samples > 0 ? durationUs / 1000 / samples : 0;
  const byFrame = new Map<string, number>();
  const byPackage = new Map<string, number>();
  const byOurs = new Map<string, number>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const isOurs = (url: string) => {
    const u = url.replace(/^file:\/\//, '');
    return u.startsWith(REPO_ROOT + '/') && !u.includes('/node_modules/');
  };
  const oursOf = new Map<number, string>();
  const nearestOurs = (id: number): string => {
    const seen: number[] = [];
    let cur: number | undefined = id;
    let found = '';
    while (cur !== undefined) {
      const memo = oursOf.get(cur);
      if (memo !== undefined) {
        found = memo;
        break;
      }
      seen.push(cur);
      const cf = byId.get(cur)!.callFrame;
      if (cf.url && isOurs(cf.url)) {
        found = `${cf.functionName || '(anonymous)'} (${whereOf(cf.url)}${cf.lineNumber > 0 ? `:${cf.lineNumber + 1}` : ''})`;
        break;
      }
      cur = parent.get(cur);
    }
    for (const s of seen) oursOf.set(s, found);
    return found;
  };
  let idle = 0;
  for (const n of p.nodes) {
    const hits = n.hitCount ?? 0;
    if (!hits) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === '(idle)') {
      idle += hits;
      continue;
    }
    const name = functionName || '(anonymous)';
    // tsx-compiled files report line 0 for everything: a line is shown only when known.
    const key = url ? `${name} (${whereOf(url)}${lineNumber > 0 ? `:${lineNumber + 1}` : ''})` : name;
    byFrame.set(key, (byFrame.get(key) ?? 0) + hits);
    const pkg = packageOf(functionName, url);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + hits);
    const mine = nearestOurs(n.id) || `(no frame of ours: ${pkg})`;
    byOurs.set(mine, (byOurs.get(mine) ?? 0) + hits);
  }
  const busy = samples - idle;
  const rows = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([frame, hits]) => ({ frame, selfMs: round(hits * perSampleMs, 1), pct: round((hits / Math.max(1, busy)) * 100, 1) }));
  return { file, durationSec: round(durationUs / 1e6, 1), busySec: round((busy * perSampleMs) / 1000, 3), samples, top: rows(byFrame, topN), packages: rows(byPackage, 10), ours: rows(byOurs, topN) };
}

export function readProfile(file: string, topN = 15): ProfileSummary {
  return summarizeProfile(JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile, file, topN);
}

/** `CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile` → pid and thread. */
export function pidOfProfile(file: string): { pid: number; thread: number } | undefined {
  const m = /^CPU\.\d+\.\d+\.(\d+)\.(\d+)\.\d+\.cpuprofile$/.exec(path.basename(file));
  return m ? { pid: Number(m[1]), thread: Number(m[2]) } : undefined;
}

export interface NamedProfile extends ProfileSummary {
  process: string;
  pid?: number;
  /** 0: the main thread; others are workers (tsx's module loader among them). */
  thread?: number;
}

/** Every profile in `dir`, named by the process whose pid wrote it (`names`: pid → name). */
export function readProfiles(dir: string, names: Map<number, string>, topN = 15): NamedProfile[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => {
      const id = pidOfProfile(f);
      const name = (id && names.get(id.pid)) || `pid ${id?.pid ?? '?'}`;
      return { ...readProfile(path.join(dir, f), topN), file: path.relative(REPO_ROOT, path.join(dir, f)), process: id && id.thread > 0 ? `${name} (thread ${id.thread})` : name, pid: id?.pid, thread: id?.thread };
    })
    .sort((a, b) => (a.thread ?? 0) - (b.thread ?? 0) || a.process.localeCompare(b.process));
}

/** The top frames as plain text, one block per profile. */
export function profileText(list: NamedProfile[], topN = 12): string {
  const out: string[] = [];
  // Worker threads (tsx’s module loader) are busy only at start-up: listed in the JSON, not shown here.
  const shown = list.filter((p) => (p.thread ?? 0) === 0);
  for (const p of shown) {
    out.push(`cpu profile of ${p.process} (${p.file}): busy ${p.busySec} s of ${p.durationSec} s`);
    out.push(`  by package: ${p.packages.slice(0, 6).map((x) => `${x.frame} ${x.pct}%`).join(', ')}`);
    out.push('  top frames (self time):');
    for (const f of p.top.slice(0, topN)) out.push(`    ${String(f.pct).padStart(5)}%  ${String(Math.round(f.selfMs)).padStart(7)} ms  ${f.frame}`);
    out.push('  by our code path (self time below the nearest frame of ours):');
    for (const f of p.ours.slice(0, Math.min(8, topN))) out.push(`    ${String(f.pct).padStart(5)}%  ${String(Math.round(f.selfMs)).padStart(7)} ms  ${f.frame}`);
  }
  if (shown.length < list.length) out.push(`(${list.length - shown.length} idle worker-thread profiles not shown)`);
  return out.join('\n');
}
