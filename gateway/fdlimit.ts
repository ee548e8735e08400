/**
 * Open files: a socket is a file descriptor, and the soft limit a process
 * starts with (often 1,024 or 4,096) is far below what a gateway holding tens
 * of thousands of sockets needs. Go raises its soft limit to the hard one by
 * itself; Node does not, and has no call for it, so the gateway asks
 * util-linux's `prlimit` to raise its own (Linux: a process may raise its soft
 * limit up to its hard limit without privileges).
 *
 * Sockets are then capped below the limit (WS_MAX_CONNECTIONS, or the limit
 * minus GATEWAY_FD_RESERVE): a gateway that ran out of descriptors refused
 * writes, polls and its own health check with the sockets, so the excess
 * sockets are refused instead (503 ERR_TOO_MANY_CONNECTIONS before the
 * upgrade) while the reserve keeps the rest of the gateway answering.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export interface OpenFileLimit {
  soft: number;
  hard: number;
}

/** Parses the "Max open files" row of /proc/<pid>/limits ("unlimited" is Infinity). */
export function parseLimits(text: string): OpenFileLimit | undefined {
  const row = text.split('\n').find((l) => l.startsWith('Max open files'));
  const m = row?.match(/^Max open files\s+(\S+)\s+(\S+)/);
  if (!m) return undefined;
  const n = (s: string) => (s === 'unlimited' ? Infinity : Number(s));
  return { soft: n(m[1]!), hard: n(m[2]!) };
}

export function openFileLimit(pid: number | 'self' = 'self'): OpenFileLimit | undefined {
  try {
    return parseLimits(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
  } catch {
    return undefined; // not Linux
  }
}

/**
 * Raises this process's soft open-file limit to its hard limit. Returns the
 * limit before and after, and why it could not when it could not (no
 * prlimit, not Linux): the gateway then runs with what it has, and caps
 * its sockets below that.
 */
export function raiseOpenFileLimit(): { before?: OpenFileLimit; after?: OpenFileLimit; error?: string } {
  const before = openFileLimit();
  if (!before) return { error: 'no /proc/self/limits (not Linux): the open-file limit is left as it is' };
  if (before.soft >= before.hard) return { before, after: before };
  const hard = Number.isFinite(before.hard) ? String(before.hard) : 'unlimited';
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 5000 });
  } catch (err) {
    return { before, after: openFileLimit(), error: `prlimit failed (${(err as Error).message.split('\n')[0]}): install util-linux to raise it` };
  }
  return { before, after: openFileLimit() };
}

/**
 * Most sockets one gateway process accepts: WS_MAX_CONNECTIONS when set
 * (never above the limit minus the reserve), else the limit minus the reserve.
 */
export function socketCap(configured: number, limit: OpenFileLimit | undefined, reserve: number): number {
  const fromLimit = limit && Number.isFinite(limit.soft) ? Math.max(1, limit.soft - reserve) : Infinity;
  if (configured > 0) return Math.min(configured, fromLimit);
  return fromLimit;
}
