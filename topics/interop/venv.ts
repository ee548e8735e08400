/**
 * A Python virtualenv holding Confluent's own Kafka client, used only to
 * prove our wire format with a client nobody here wrote. It lives in the
 * cache folder (outside the clone), is built once and reused:
 *
 * - Built in place, then a marker file is written last. A folder without the
 *   marker (an install that was interrupted, or failed) is wiped and rebuilt.
 * - A lock folder holding the builder's pid keeps two test workers from
 *   building at once; a lock left by a dead process is taken over.
 * - The marker records the package list, so changing it rebuilds the venv.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * The extras matter: since 2.x the client's schema_registry module imports
 * httpx and authlib at load time, which only its `avro`/`schemaregistry`
 * extras pull in; a bare `confluent-kafka` fails on `import` of it.
 */
export const VENV_PACKAGES = ['confluent-kafka[avro,schemaregistry]', 'fastavro', 'requests', 'attrs', 'cachetools'] as const;
const MARKER = '.danmaku-installed.json';

interface Marker {
  packages: string[];
  installedAt: string;
  freeze: string[];
}

function pythonOf(venvDir: string): string {
  return path.join(venvDir, 'bin', 'python');
}

function readMarker(venvDir: string): Marker | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(venvDir, MARKER), 'utf8')) as Marker;
  } catch {
    return undefined;
  }
}

function isReady(venvDir: string): boolean {
  const m = readMarker(venvDir);
  return m !== undefined && m.packages.join(' ') === VENV_PACKAGES.join(' ') && fs.existsSync(pythonOf(venvDir));
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

/**
 * Returns the python executable of `<cacheDir>/pyvenv-confluent`, creating
 * the venv and installing the Confluent client into it on first use.
 */
export async function ensurePythonVenv(cacheDir: string, opts: { python?: string; lockTimeoutMs?: number } = {}): Promise<string> {
  const venvDir = path.join(cacheDir, 'pyvenv-confluent');
  if (isReady(venvDir)) return pythonOf(venvDir);
  fs.mkdirSync(cacheDir, { recursive: true });
  const unlock = await lock(`${venvDir}.lock`, opts.lockTimeoutMs ?? 600_000);
  try {
    if (isReady(venvDir)) return pythonOf(venvDir); // another worker built it while we waited
    const log = `${venvDir}.log`;
    fs.rmSync(venvDir, { recursive: true, force: true }); // leftovers of an interrupted build
    await run(opts.python ?? 'python3', ['-m', 'venv', venvDir], log);
    const py = pythonOf(venvDir);
    await run(py, ['-m', 'pip', 'install', '--no-input', ...VENV_PACKAGES], log);
    const freeze = (await run(py, ['-m', 'pip', 'freeze'], log)).split('\n').filter(Boolean);
    const marker: Marker = { packages: [...VENV_PACKAGES], installedAt: new Date().toISOString(), freeze };
    // Written last, atomically: its presence means the venv is complete.
    const tmp = path.join(venvDir, `${MARKER}.${process.pid}.tmp`);
    fs.writeFileSync(tmp, JSON.stringify(marker, null, 2));
    fs.renameSync(tmp, path.join(venvDir, MARKER));
    return py;
  } finally {
    unlock();
  }
}
