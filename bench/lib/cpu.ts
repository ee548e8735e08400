/**
 * CPU seconds per process over a window (a step of a ladder): the gateway,
 * the processors, Kafka, Redis, the registry and the load generators, each
 * read from /proc (utime+stime) at the start and at the end of the window.
 * Load generators that exit before the end report their own CPU instead
 * (process.cpuUsage over the window), added with `extra`.
 */
import { readFileSync } from 'node:fs';
import { cpuSeconds } from './proc.ts';
import { round } from './stats.ts';

/** Names in the order the tables and charts show them. */
export const CPU_ORDER = ['gateway', 'processors', 'kafka', 'redis', 'registry', 'load generators', 'perf tool', 'other processes'] as const;

/** Busy CPU seconds of the whole machine (all cores) from /proc/stat; NaN off Linux. */
export function machineBusySeconds(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + (f[7] ?? 0)) / 100;
  } catch {
    return NaN;
  }
}

export interface CpuSplit {
  wallSec: number;
  /**
   * CPU seconds per process (group) in the window; `other processes` is the
   * rest of the machine's busy time (other users of the machine, the kernel's
   * share not charged to a process), so a noisy run shows as such.
   */
  sec: Record<string, number>;
  /** All of them added up: the machine's busy CPU seconds. */
  totalSec: number;
}

export interface CpuMark {
  t: number;
  machine: number;
  values: Record<string, number>;
  pids: Record<string, number[]>;
}

export class CpuMeter {
  /** `groups()` is read at each mark, so processes started later (load generators) are included. */
  constructor(private readonly groups: () => Record<string, (number | undefined)[]>) {}

  mark(): CpuMark {
    const pids: Record<string, number[]> = {};
    const values: Record<string, number> = {};
    for (const [name, list] of Object.entries(this.groups())) {
      pids[name] = list.filter((p): p is number => typeof p === 'number' && p > 0);
      values[name] = pids[name]!.reduce((a, p) => a + cpuSeconds(p), 0);
    }
    return { t: performance.now(), machine: machineBusySeconds(), values, pids };
  }

  /** CPU since `m` per group (same pids as at the mark), plus `extra` (seconds reported by processes themselves). */
  since(m: CpuMark, extra: Record<string, number> = {}): CpuSplit {
    const sec: Record<string, number> = {};
    for (const [name, pids] of Object.entries(m.pids)) {
      const now = pids.reduce((a, p) => a + cpuSeconds(p), 0);
      sec[name] = round(Math.max(0, now - m.values[name]!));
    }
    for (const [name, s] of Object.entries(extra)) sec[name] = round((sec[name] ?? 0) + s);
    const ours = Object.values(sec).reduce((a, b) => a + b, 0);
    const machine = machineBusySeconds() - m.machine;
    if (Number.isFinite(machine)) sec['other processes'] = round(Math.max(0, machine - ours));
    const totalSec = round(Number.isFinite(machine) ? Math.max(machine, ours) : ours);
    return { wallSec: round((performance.now() - m.t) / 1000), sec, totalSec };
  }
}

/** "gateway 12.1 s (40 %), kafka …": a one-line split, largest first. */
export function cpuLine(c: CpuSplit): string {
  return Object.entries(c.sec)
    .filter(([, s]) => s > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([n, s]) => `${n} ${s} s (${Math.round((s / Math.max(0.01, c.totalSec)) * 100)} %)`)
    .join(', ');
}

/** A process and all its descendants (a gateway with GATEWAY_WORKERS > 1 runs its workers as children). */
export function withDescendants(pid: number | undefined): number[] {
  if (!pid || pid <= 0) return [];
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const t of readFileSync(`/proc/${out[i]}/task/${out[i]}/children`, 'utf8').trim().split(/\s+/)) if (t) out.push(Number(t));
    } catch {
      // gone, or no such file on this kernel
    }
  }
  return out;
}
