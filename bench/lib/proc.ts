/**
 * Child processes of the bench (servers and load generators) and what /proc
 * tells about them: CPU seconds (utime+stime) and resident memory.
 *
 * Every child runs `node --import tsx <script>` inside a small bash wrapper
 * that raises the open-file limit (`ulimit -n`) as far as the hard limit
 * allows, then `exec`s node, so the pid we hold is node's own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { REPO_ROOT } from '../../core/config.ts';

export interface Child {
  name: string;
  child: ChildProcess;
  pid: number;
  output: string[];
  exited: Promise<number | null>;
  /** Resolves with the first line (present or future) matching `re`. */
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Writes one line to the child's stdin. */
  send(line: string): void;
  /** Writes a command line and resolves with the first line printed after it that matches `re`. */
  ask(line: string, re: RegExp, timeoutMs?: number): Promise<string>;
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

export interface SpawnOptions {
  env?: Record<string, string>;
  /** Wanted open-file limit (raised up to the hard limit). */
  nofile?: number;
  /** Killed (SIGKILL) after this long, whatever it is doing: every child is bounded in time. */
  maxMs: number;
  /** Echo the child's stderr lines (progress) to ours, with this prefix. */
  echo?: string;
}

const CLK_TCK = 100; // USER_HZ on Linux x86-64 and arm64

/** Starts a TypeScript script of the repo as a child process. */
export function startTs(name: string, script: string, args: string[], o: SpawnOptions): Child {
  // The same as the peers get (bench/peers/centrifugo.ts): every system measured with one limit.
  const nofile = o.nofile ?? 65536;
  const quoted = [process.execPath, '--import', 'tsx', path.join(REPO_ROOT, script), ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return startCommand(name, 'bash', ['-c', `ulimit -n ${nofile} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec ${quoted}`], o);
}

export function startCommand(name: string, cmd: string, args: string[], o: SpawnOptions): Child {
  const child = spawn(cmd, args, { cwd: REPO_ROOT, env: { ...process.env, ...o.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const output: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  let done = false;
  const onLine = (line: string, isErr: boolean) => {
    if (!line) return;
    output.push(line);
    if (output.length > 5000) output.splice(0, 1000);
    if (isErr && o.echo) process.stderr.write(`${o.echo}${line}\n`);
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]!;
      if (w.re.test(line)) {
        waiters.splice(i, 1);
        w.resolve(line);
      }
    }
  };
  const lines = (stream: NodeJS.ReadableStream, isErr: boolean) => {
    let rest = '';
    stream.on('data', (b: Buffer) => {
      const parts = (rest + b.toString('utf8')).split('\n');
      rest = parts.pop() ?? '';
      for (const p of parts) onLine(p, isErr);
    });
    stream.on('end', () => onLine(rest, isErr));
  };
  lines(child.stdout!, false);
  lines(child.stderr!, true);
  child.stdin!.on('error', () => {});
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, sig) => resolve(code ?? (sig ? 128 : null))));
  void exited.then(() => (done = true));
  const killer = setTimeout(() => child.kill('SIGKILL'), o.maxMs);
  killer.unref();
  void exited.then(() => clearTimeout(killer));
  const waitNew = (re: RegExp, timeoutMs: number) =>
    new Promise<string>((resolve, reject) => {
        const w = { re, resolve: (l: string) => (clearTimeout(t), resolve(l)) };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`${name}: no line matching ${re} within ${timeoutMs} ms; last output:\n  ${output.slice(-15).join('\n  ')}`));
        }, timeoutMs);
        waiters.push(w);
        void exited.then((code) => {
          if (waiters.includes(w)) {
            clearTimeout(t);
            waiters.splice(waiters.indexOf(w), 1);
            reject(new Error(`${name} exited (${code}) before printing ${re}; last output:\n  ${output.slice(-15).join('\n  ')}`));
          }
        });
    });
  const send = (line: string) => {
    if (!done) child.stdin!.write(line + '\n');
  };
  return {
    name,
    child,
    pid: child.pid ?? -1,
    output,
    exited,
    waitForLine(re, timeoutMs = 60_000) {
      const seen = output.find((l) => re.test(l));
      return seen ? Promise.resolve(seen) : waitNew(re, timeoutMs);
    },
    send,
    ask(line, re, timeoutMs = 60_000) {
      const p = waitNew(re, timeoutMs);
      send(line);
      return p;
    },
    async stop(signal = 'SIGTERM', graceMs = 10_000) {
      if (done) return;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

/** The JSON a load-generator child printed as `RESULT {...}`. */
export async function resultOf<T>(c: Child, timeoutMs: number): Promise<T> {
  const line = await c.waitForLine(/^RESULT /, timeoutMs);
  return JSON.parse(line.slice('RESULT '.length)) as T;
}

/** utime+stime of a process, in seconds (0 when it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** Resident set size in bytes (0 when it is gone). */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export const sumCpu = (pids: number[]) => pids.reduce((a, p) => a + cpuSeconds(p), 0);
export const sumRss = (pids: number[]) => pids.reduce((a, p) => a + rssBytes(p), 0);

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Load generators must only ever target the loopback range. */
export function assertLoopback(url: string): void {
  const host = new URL(url).hostname;
  if (!/^127\.\d+\.\d+\.\d+$/.test(host) && host !== 'localhost' && host !== '[::1]') throw new Error(`refusing to send load to ${host}: the bench targets 127.0.0.0/8 only`);
}
