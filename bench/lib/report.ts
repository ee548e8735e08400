/** What every scenario's output shares: the machine, the table layout, the result file and the chart file. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../../core/config.ts';

export interface Machine {
  nproc: number;
  memoryGiB: number;
  cpuModel: string;
  node: string;
  kernel: string;
}

export function machine(): Machine {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = m[1]!.trim();
  } catch {
    // not Linux
  }
  return { nproc: os.availableParallelism(), memoryGiB: Math.round(os.totalmem() / 2 ** 30), cpuModel, node: process.version, kernel: os.release() };
}

export const machineLine = (m: Machine) => `${m.nproc} cores (${m.cpuModel}), ${m.memoryGiB} GiB, Node ${m.node}`;

export function textTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const fmtRow = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmtRow(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(fmtRow)].join('\n');
}

export const RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results');

export function writeResult(scenario: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = path.join(RESULTS_DIR, `${scenario}-${stamp}.json`);
  writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
  return file;
}

export function writeChart(dir: string, scenario: string, content: string): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${scenario}.svg`);
  writeFileSync(file, content);
  return file;
}
