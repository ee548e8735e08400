/**
 * Python virtualenvs the project builds for itself, in the cache folder
 * (outside the clone), once, and reuses: the Confluent interop probe's
 * (topics/interop/venv.ts) and the moderation model's
 * (pipelines/moderation/model/). Nothing is fetched at run time beyond what
 * pip installs here, from PyPI, by package name.
 *
 * - Built in place, then a marker file is written last. A folder without the
 *   marker (an install that was interrupted, or failed) is wiped and rebuilt.
 * - A lock folder holding the builder's pid keeps two processes (test workers,
 *   a service and the eval) from building at once; a lock left by a dead
 *   process is taken over.
 * - The marker records the package list, so changing it rebuilds the venv.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const MARKER = '.danmaku-installed.json';

export interface VenvSpec {
  /** The venv's folder (e.g. `<cacheDir>/pyvenv-confluent`). */
  dir: string;
  /** pip requirement specifiers, installed in one `pip install`. */
  packages: readonly string[];
  /** Interpreter that creates the venv (default `python3`). */
  python?: string;
  /** How long to wait for another process's build (default 10 min). */
  lockTimeoutMs?: number;
  /** Told about a build (not about a reuse): what is installed, and where the log is. */
  log?: (msg: string) => void;
}

interface Marker {
  packages: string[];
  installedAt: string;
  freeze: string[];
}

export function venvPython(venvDir: string): string {
  return path.join(venvDir, 'bin', 'python');
}

function readMarker(venvDir: string): Marker | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(venvDir, MARKER), 'utf8')) as Marker;
  } catch {
    return undefined;
  }
}

/** Whether the venv is complete and holds exactly these packages (no build needed). */
export function venvReady(venvDir: string, packages: readonly string[]): boolean {
  const m = readMarker(venvDir);
  return m !== undefined && m.packages.join(' ') === packages.join(' ') && fs.existsSync(venvPython(venvDir));
}

/** `pip freeze` of a built venv (from its marker), e.g. to name the versions a result was measured with. */
export function venvFreeze(venvDir: string): string[] {
  return readMarker(venvDir)?.freeze ?? [];
}

/** Runs a command, output appended to `log`; rejects with the output's tail on failure. */
function run(cmd: string, args: string[], log: string): Promise<string> {
  return new Promise((resolve, reject) => {
    fs.appendFileSync(log, `\n==== ${new Date().toISOString()} ${cmd} ${args.join(' ')}\n`);
    const child = spawn(cmd, args, { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const take = (b: Buffer) => {
      out += b.toString('utf8');
      fs.appendFileSync(log, b);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', (err) => reject(new Error(`${cmd}: ${err.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}); log: ${log}\n${out.slice(-2000)}`));
    });
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock folder, waiting while a live process holds it. */
async function lock(lockDir: string, timeoutMs: number): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      fs.mkdirSync(lockDir);
      fs.writeFileSync(path.join(lockDir, 'pid'), String(process.pid));
      return () => fs.rmSync(lockDir, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder = NaN;
    try {
      holder = Number(fs.readFileSync(path.join(lockDir, 'pid'), 'utf8'));
    } catch {
      // The holder made the folder but has not written its pid yet.
    }
    const stale = Number.isInteger(holder) && !pidAlive(holder);
    if (stale) {
      fs.rmSync(lockDir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${lockDir} (held by pid ${holder})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Returns the venv's python executable, creating the venv and installing `packages` on first use. */
export async function ensureVenv(spec: VenvSpec): Promise<string> {
  const { dir, packages } = spec;
  if (venvReady(dir, packages)) return venvPython(dir);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const unlock = await lock(`${dir}.lock`, spec.lockTimeoutMs ?? 600_000);
  try {
    if (venvReady(dir, packages)) return venvPython(dir); // another process built it while we waited
    const log = `${dir}.log`;
    spec.log?.(`building the Python venv ${dir} (${packages.join(' ')}); log: ${log}`);
    fs.rmSync(dir, { recursive: true, force: true }); // leftovers of an interrupted build
    await run(spec.python ?? 'python3', ['-m', 'venv', dir], log);
    const py = venvPython(dir);
    await run(py, ['-m', 'pip', 'install', '--no-input', '--disable-pip-version-check', ...packages], log);
    const freeze = (await run(py, ['-m', 'pip', 'freeze'], log)).split('\n').filter(Boolean);
    const marker: Marker = { packages: [...packages], installedAt: new Date().toISOString(), freeze };
    // Written last, atomically: its presence means the venv is complete.
    const tmp = path.join(dir, `${MARKER}.${process.pid}.tmp`);
    fs.writeFileSync(tmp, JSON.stringify(marker, null, 2));
    fs.renameSync(tmp, path.join(dir, MARKER));
    return py;
  } finally {
    unlock();
  }
}
