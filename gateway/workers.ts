/**
 * GATEWAY_WORKERS=N: one gateway as N worker processes on one port, with
 * Node's `cluster` module (the primary holds the listening socket and hands
 * connections to the workers in turn). Each worker is a whole gateway — its
 * own Redis and Kafka clients, push hub, presence and connection registry
 * entries, reaction sums — under its own GATEWAY_ID (`<id>-w<n>`), so they
 * share nothing but Redis and Kafka, exactly as separate gateways do:
 * presence sums every worker's count, an admin's disconnect reaches the
 * worker holding the socket through its own control channel.
 *
 * The primary only supervises. It is ready once every worker reported ready
 * (its services started: it listens). A worker that crashes or is killed is
 * restarted, with a backoff from 100 ms; the service is `degraded` meanwhile
 * (the detail counts the listening workers). One that dies more than
 * RESTARTS_MAX times within RESTART_WINDOW_MS takes the service `down` (its
 * `failed` settles, so the process holding it stops and the composition root
 * shows it down): a crash loop is a bug to see, not to hide. A worker that
 * stopped gracefully on its own (exit 0: a terminal's Ctrl-C reaches every
 * process of the group) is not restarted.
 */
import cluster, { type Worker } from 'node:cluster';
import { Liveness, type Health } from '../core/service.ts';

export const RESTARTS_MAX = 5;
export const RESTART_WINDOW_MS = 60_000;

export interface WorkersOptions {
  count: number;
  /** The gateway id the workers' ids derive from. */
  baseId: string;
  /** The script a worker runs and its arguments (the composition root's CLI, `gateway`). */
  exec: string;
  args: string[];
  log: (m: string) => void;
  /** How long start() waits for every worker to be ready. */
  readyTimeoutMs?: number;
  /** How long a worker gets to stop gracefully before SIGKILL. */
  stopGraceMs?: number;
}

interface Slot {
  index: number;
  worker: Worker | undefined;
  ready: boolean;
  restarts: number[];
}

export class GatewayWorkers {
  private readonly live = new Liveness();
  readonly failed = this.live.failed;
  private readonly slots: Slot[];
  private stopping = false;

  constructor(private readonly o: WorkersOptions) {
    this.slots = Array.from({ length: o.count }, (_, index) => ({ index, worker: undefined, ready: false, restarts: [] }));
  }

  /** The worker's own id: presence, the connection registry and logs tell workers apart by it. */
  idOf(index: number): string {
    return `${this.o.baseId}-w${index + 1}`;
  }

  async start(): Promise<void> {
    if (!cluster.isPrimary) throw new Error('GATEWAY_WORKERS: a worker cannot start workers');
    // The workers run the CLI's `gateway` command with the primary's Node flags (tsx's loader).
    cluster.setupPrimary({ exec: this.o.exec, args: this.o.args });
    await Promise.all(this.slots.map((s) => this.fork(s)));
    this.report();
  }

  private fork(slot: Slot): Promise<void> {
    // Settings reach the worker the one way settings travel (core/config.ts reads the environment):
    // its own GATEWAY_ID, and one process.
    const worker = cluster.fork({ GATEWAY_ID: this.idOf(slot.index), GATEWAY_WORKERS: '1' });
    slot.worker = worker;
    slot.ready = false;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`gateway worker ${slot.index + 1} was not ready within ${this.o.readyTimeoutMs ?? 120_000} ms`)), this.o.readyTimeoutMs ?? 120_000);
      timer.unref();
      worker.on('message', (m: { type?: string }) => {
        if (m?.type !== 'ready') return;
        clearTimeout(timer);
        slot.ready = true;
        this.o.log(`worker ${slot.index + 1} (${this.idOf(slot.index)}, pid ${worker.process.pid}) ready`);
        this.report();
        resolve();
      });
      worker.once('exit', (code, signal) => {
        clearTimeout(timer);
        const was = slot.ready;
        slot.ready = false;
        if (slot.worker === worker) slot.worker = undefined;
        if (this.stopping) return;
        const why = `gateway worker ${slot.index + 1} (pid ${worker.process.pid}) exited with ${signal ?? code}`;
        if (!was) {
          reject(new Error(`${why} before it was ready`));
          return;
        }
        if (code === 0 && signal === null) {
          // It stopped gracefully on its own (a terminal's Ctrl-C reaches every process of the group): not a crash.
          this.o.log(`${why} (a graceful stop)`);
          this.report();
          return;
        }
        this.restart(slot, why);
      });
    });
  }

  private restart(slot: Slot, why: string): void {
    const now = Date.now();
    slot.restarts = slot.restarts.filter((t) => now - t < RESTART_WINDOW_MS);
    slot.restarts.push(now);
    if (slot.restarts.length > RESTARTS_MAX) {
      this.o.log(`${why}: ${RESTARTS_MAX} restarts within ${RESTART_WINDOW_MS / 1000} s; the gateway is down`);
      this.live.died(new Error(`${why}; restarted ${RESTARTS_MAX} times within ${RESTART_WINDOW_MS / 1000} s`));
      return;
    }
    const delay = Math.min(5000, 100 * 2 ** (slot.restarts.length - 1));
    this.o.log(`${why}; restarting it in ${delay} ms`);
    this.report();
    const t = setTimeout(() => {
      if (this.stopping) return;
      this.fork(slot).catch((err: Error) => {
        if (this.stopping) return;
        this.restart(slot, err.message);
      });
    }, delay);
    t.unref();
  }

  private report(): void {
    if (this.stopping || this.live.health.status === 'down') return;
    const ready = this.slots.filter((s) => s.ready).length;
    this.live.set(ready === this.slots.length ? 'ok' : 'degraded', `${ready}/${this.slots.length} workers listening`);
  }

  health(): Health {
    return this.live.health;
  }

  /** SIGTERM to every worker (each stops gracefully: reactions flushed, sockets told 1001), SIGKILL after the grace. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const grace = this.o.stopGraceMs ?? 30_000;
    await Promise.all(
      this.slots.map(async (s) => {
        const w = s.worker;
        if (!w || w.isDead()) return;
        const gone = new Promise<void>((r) => w.once('exit', () => r()));
        w.process.kill('SIGTERM');
        const t = setTimeout(() => w.process.kill('SIGKILL'), grace);
        await gone;
        clearTimeout(t);
      }),
    );
    this.live.set('stopped');
  }
}
