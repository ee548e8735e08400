/**
 * A service process seen from the root that started it: the same Service
 * shape (start → ready, stop, health), backed by a child process running
 * services/cli.ts. Readiness and health arrive over Node's IPC channel
 * (services/process.ts); a child that exits — `kill -9` included — is seen as
 * `down` at once through its exit, not through the absence of a log line.
 *
 * Used by `npm start`, the tests (which kill these processes for real) and
 * the benchmarks (which read their CPU and memory by pid).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from '../core/config.ts';
import type { Health, Service } from '../core/service.ts';
import type { ChildMessage } from './process.ts';
import type { ServiceName } from './root.ts';
import type { HealthReport } from './supervisor.ts';

export interface SpawnOptions {
  /** Environment on top of ours (a private world's topics, prefix, ports). */
  env?: Record<string, string>;
  /** The CLI arguments; default `services run <names>`. */
  argv?: string[];
  /** Extra arguments after the default argv (e.g. `--projections feed`). */
  args?: string[];
  /** Open-file limit wanted for the child (raised up to the hard limit). */
  nofile?: number;
  /** A soft open-file limit only, the hard one left as it is (a gateway raises its soft limit itself). */
  nofileSoft?: number;
  /** Killed (SIGKILL) after this long whatever it is doing (benchmarks bound every child). */
  maxMs?: number;
  /** Echo the child's output lines to ours with this prefix. */
  echo?: string;
  /** How long start() waits for readiness. */
  readyTimeoutMs?: number;
  /**
   * Node options before the script (e.g. `--cpu-prof --cpu-prof-dir=…` for the
   * benchmarks' profiles: Node refuses --cpu-prof in NODE_OPTIONS).
   */
  nodeArgs?: string[];
}

const CLI = path.join(REPO_ROOT, 'services', 'cli.ts');

export class ServiceProcess implements Service {
  readonly name: string;
  child: ChildProcess | undefined;
  /** Everything the child printed, a line each (the newest 5,000). */
  readonly output: string[] = [];
  exitCode: number | null | undefined;
  private report: HealthReport | undefined;
  private readonly waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  private exitedP: Promise<number | null> | undefined;
  private stopping = false;
  private failNow!: (err: Error) => void;
  readonly failed: Promise<Error> = new Promise((resolve) => (this.failNow = resolve));

  constructor(
    readonly services: ServiceName[],
    private readonly o: SpawnOptions = {},
  ) {
    this.name = services.join('+');
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }

  /** Resolves with the exit code (128 + n for a signal) once the child is gone. */
  get exited(): Promise<number | null> {
    return this.exitedP ?? Promise.resolve(null);
  }

  start(signal?: AbortSignal): Promise<void> {
    const argv = [...(this.o.argv ?? ['services', 'run', this.services.join(',')]), ...(this.o.args ?? [])];
    const node = [process.execPath, ...(this.o.nodeArgs ?? []), '--import', 'tsx', CLI, ...argv];
    const env = { ...process.env, ...this.o.env };
    // A raised open-file limit needs a shell (Node cannot set rlimits); `exec`
    // keeps the pid node's own and the IPC descriptor open.
    const ulimit = this.o.nofile ? `ulimit -n ${this.o.nofile} 2>/dev/null || ulimit -n "$(ulimit -Hn)"` : this.o.nofileSoft ? `ulimit -Sn ${this.o.nofileSoft}` : undefined;
    const child = ulimit
      ? spawn('bash', ['-c', `${ulimit}; exec ${node.map(quote).join(' ')}`], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
      : spawn(node[0]!, node.slice(1), { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    this.child = child;
    for (const s of [child.stdout!, child.stderr!]) this.lines(s);
    let kill: NodeJS.Timeout | undefined;
    if (this.o.maxMs) {
      kill = setTimeout(() => child.kill('SIGKILL'), this.o.maxMs);
      kill.unref();
    }
    this.exitedP = new Promise((resolve) =>
      child.once('exit', (code, sig) => {
        if (kill) clearTimeout(kill);
        this.exitCode = code ?? (sig ? 128 + (SIGNALS[sig] ?? 0) : null);
        if (!this.stopping) this.failNow(new Error(`${this.name} (pid ${child.pid}) exited with ${sig ?? code}`));
        resolve(this.exitCode);
      }),
    );
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} was not ready within ${this.o.readyTimeoutMs ?? 120_000} ms; output:\n${this.output.slice(-30).join('\n')}`)), this.o.readyTimeoutMs ?? 120_000);
      child.on('message', (m: ChildMessage) => {
        if (m.type === 'health') this.report = m.report;
        if (m.type === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      });
      void this.exitedP!.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited with ${code} before it was ready; output:\n${this.output.slice(-30).join('\n')}`));
      });
    });
  }

  /** The child's own report while it runs; `down` once it exited without being asked to stop. */
  health(): Health {
    if (this.exitCode !== undefined) return this.stopping ? { status: 'stopped' } : { status: 'down', detail: `exited with ${this.exitCode}` };
    if (!this.report) return { status: 'starting' };
    const bad = Object.entries(this.report.services).filter(([, h]) => h.status !== 'ok');
    return bad.length === 0 ? { status: 'ok' } : { status: this.report.status, detail: bad.map(([n, h]) => `${n}: ${h.status}${h.detail ? ` (${h.detail})` : ''}`).join('; ') };
  }

  /** Per-service health as the child last reported it. */
  get lastReport(): HealthReport | undefined {
    return this.report;
  }

  /** The first line (printed already or later) matching `re`: for events, never for readiness. */
  waitForLine(re: RegExp, timeoutMs = 60_000): Promise<string> {
    const seen = this.output.find((l) => re.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = { re, resolve: (l: string) => (clearTimeout(t), resolve(l)) };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`timed out waiting for ${re} from ${this.name}; output:\n${this.output.slice(-30).join('\n')}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  async kill9(): Promise<void> {
    this.child?.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM (graceful), then SIGKILL after `graceMs`. */
  async stop(graceMs = 30_000): Promise<void> {
    this.stopping = true;
    const c = this.child;
    if (!c || this.exitCode !== undefined) return;
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(t);
  }

  private lines(stream: NodeJS.ReadableStream): void {
    let rest = '';
    const onLine = (line: string) => {
      if (!line) return;
      this.output.push(line);
      if (this.output.length > 5000) this.output.splice(0, 1000);
      if (this.o.echo !== undefined) process.stderr.write(`${this.o.echo}${line}\n`);
      for (let i = this.waiters.length - 1; i >= 0; i--) {
        const w = this.waiters[i]!;
        if (w.re.test(line)) {
          this.waiters.splice(i, 1);
          w.resolve(line);
        }
      }
    };
    stream.on('data', (b: Buffer) => {
      const parts = (rest + b.toString('utf8')).split('\n');
      rest = parts.pop() ?? '';
      for (const p of parts) onLine(p);
    });
    stream.on('end', () => onLine(rest));
  }
}

const SIGNALS: Partial<Record<NodeJS.Signals, number>> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2, SIGSTOP: 19 };
const quote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;

/** Starts a service process and waits until it is ready. */
export async function spawnServices(names: ServiceName[], o: SpawnOptions = {}): Promise<ServiceProcess> {
  const p = new ServiceProcess(names, o);
  await p.start();
  return p;
}

/** Runs a CLI command of the root (e.g. `pipelines rebuild feed`) as a child that is not a service: no readiness. */
export function spawnCommand(argv: string[], o: SpawnOptions = {}): ServiceProcess {
  const p = new ServiceProcess([], { ...o, argv });
  // start() resolves on readiness, which a one-shot command never reports: only its exit matters.
  p.start().catch(() => undefined);
  return p;
}
