/**
 * Background processes owned through pid files. `infra down` must stop only
 * what `infra up` started, so every process we spawn gets a pid file holding
 * its pid and a marker that must appear in /proc/<pid>/cmdline: a recycled pid
 * belonging to some other program is then never mistaken for ours.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export interface PidRecord {
  pid: number;
  marker: string;
  startedAt: string;
}

export function readPid(file: string): PidRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as PidRecord;
  } catch {
    return undefined;
  }
}

export function isAlive(rec: PidRecord | undefined): rec is PidRecord {
  if (!rec) return false;
  try {
    process.kill(rec.pid, 0);
  } catch {
    return false;
  }
  try {
    const cmdline = fs.readFileSync(`/proc/${rec.pid}/cmdline`, 'utf8');
    const stat = fs.readFileSync(`/proc/${rec.pid}/stat`, 'utf8');
    // A zombie (state Z) is dead for our purposes.
    if (/^\d+ \(.*\) Z/.test(stat)) return false;
    return cmdline.includes(rec.marker);
  } catch {
    return false;
  }
}

export interface SpawnSpec {
  cmd: string;
  args: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  logFile: string;
  pidFile: string;
  /** A string that appears in the command line, to recognise the process later. */
  marker: string;
}

/** Starts a detached process that outlives this CLI, output appended to its log. */
export function spawnDetached(spec: SpawnSpec): PidRecord {
  fs.mkdirSync(path.dirname(spec.logFile), { recursive: true });
  fs.mkdirSync(path.dirname(spec.pidFile), { recursive: true });
  const fd = fs.openSync(spec.logFile, 'a');
  fs.writeSync(fd, `\n==== ${new Date().toISOString()} starting: ${spec.cmd} ${spec.args.join(' ')}\n`);
  const child = spawn(spec.cmd, spec.args, {
    cwd: spec.cwd,
    env: spec.env ?? process.env,
    detached: true,
    stdio: ['ignore', fd, fd],
  });
  fs.closeSync(fd);
  if (child.pid === undefined) throw new Error(`could not start ${spec.cmd}`);
  child.unref();
  const rec: PidRecord = { pid: child.pid, marker: spec.marker, startedAt: new Date().toISOString() };
  fs.writeFileSync(spec.pidFile, JSON.stringify(rec));
  return rec;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function stopProcess(rec: PidRecord, graceMs = 30_000): Promise<'stopped' | 'killed'> {
  const signalGroup = (sig: NodeJS.Signals) => {
    // Detached children lead their own process group; signal the group so
    // anything they forked goes too, and fall back to the pid alone.
    try {
      process.kill(-rec.pid, sig);
    } catch {
      try {
        process.kill(rec.pid, sig);
      } catch {
        /* already gone */
      }
    }
  };
  signalGroup('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(rec)) return 'stopped';
    await delay(200);
  }
  signalGroup('SIGKILL');
  while (isAlive(rec)) await delay(100);
  return 'killed';
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function portOpen(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

export function lastLines(file: string, n: number): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.split('\n').slice(-n - 1).join('\n');
  } catch {
    return `(no log at ${file})`;
  }
}

/** Resolves a command on PATH, or undefined. */
export function which(cmd: string): string | undefined {
  if (cmd.includes('/')) return fs.existsSync(cmd) ? cmd : undefined;
  const r = spawnSync('sh', ['-c', `command -v "${cmd}"`], { encoding: 'utf8' });
  const out = r.stdout.trim();
  return r.status === 0 && out ? out : undefined;
}

/** Runs a command to completion, streaming nothing; throws with its output tail on failure. */
export function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; logFile?: string } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const log = opts.logFile ? fs.createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
    const take = (b: Buffer) => {
      chunks.push(b);
      log?.write(b);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', reject);
    child.on('close', (code) => {
      log?.end();
      if (code === 0) resolve();
      else {
        const out = Buffer.concat(chunks).toString('utf8').split('\n').slice(-30).join('\n');
        reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}:\n${out}`));
      }
    });
  });
}
