/**
 * The moderation model stage as a service of the composition root
 * (`moderation-model`): builds (once) the model's venv, spawns the Python
 * stage (processor.py) and learns about it from the JSON lines it writes to
 * a pipe of its own (fd 3) — ready, health, per-batch figures — never from
 * its log lines.
 *
 * Its absence or failure never blocks delivery: comments are shown first and
 * the stage only adds removals, in its own consumer group. So when the Python
 * process dies after it was ready, the service does not die with it (which
 * would stop the processors sharing its process): health turns `down` with
 * the exit, the process is restarted with capped, jittered backoff, and
 * health is `ok` again once the new one reports ready. A restart re-processes
 * what was not committed; the derived event ids make that invisible.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import client from 'prom-client';
import { backoffMs } from '../../../core/backoff.ts';
import type { Config } from '../../../core/config.ts';
import type { Health, Service } from '../../../core/service.ts';
import { topicNames } from '../../../topics/topics.ts';
import { moderationModelGroup } from '../../naming.ts';
import { ensureModelVenv, MODEL_DIR } from './venv.ts';

/** What processor.py reports on its status pipe. */
export type StageMessage =
  | { type: 'ready'; model: string; loadMs: number; group: string }
  | { type: 'health'; status: 'ok' | 'degraded'; detail?: string }
  | { type: 'batch'; records: number; scored: number; decided: number; deleted: number; deadLettered: number; scoreMs: number; totalMs: number }
  | { type: 'stopped' };

export const modelMetrics = new client.Registry();
const batchSeconds = new client.Histogram({
  name: 'danmaku_moderation_model_batch_seconds',
  help: 'Per fetched batch: the model call (phase=score) and the whole batch with produces and commit (phase=total).',
  labelNames: ['phase'],
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [modelMetrics],
});
const recordsCounter = new client.Counter({ name: 'danmaku_moderation_model_records_total', help: 'Records the model stage read (scored: viewers\' comments).', labelNames: ['what'], registers: [modelMetrics] });
const restartsCounter = new client.Counter({ name: 'danmaku_moderation_model_restarts_total', help: 'Times the Python stage exited unasked and was restarted.', registers: [modelMetrics] });

export interface ModelStageOptions {
  cfg: Config;
  log?: (msg: string) => void;
  /** How long the first start may take once the venv is there (default 120 s). */
  readyTimeoutMs?: number;
  /** Cap of the restart backoff (default 30 s). */
  maxRestartBackoffMs?: number;
  /** Every status message, for tests and the eval. */
  onMessage?(m: StageMessage): void;
}

export class ModelStageService implements Service {
  readonly name = 'moderation-model';
  private child: ChildProcess | undefined;
  private state: Health = { status: 'starting' };
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private python = '';
  private readonly output: string[] = [];
  /** The newest batches' figures (for health detail and the eval). */
  readonly batches: Extract<StageMessage, { type: 'batch' }>[] = [];
  model: string | undefined;
  pid: number | undefined;

  constructor(private readonly o: ModelStageOptions) {}

  private log(m: string): void {
    this.o.log?.(m);
  }

  async start(signal?: AbortSignal): Promise<void> {
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    const t0 = Date.now();
    this.python = await ensureModelVenv(this.o.cfg, (m) => this.log(m));
    if (Date.now() - t0 > 1000) this.log(`venv ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (this.stopping) return;
    // The first start must work: a stage that cannot start (bad venv, wrong
    // broker address) is a configuration problem to report, not to retry.
    await this.spawnStage();
  }

  health(): Health {
    return this.state;
  }

  /** Sends SIGTERM: the stage finishes its batch, commits, leaves its group. SIGKILL after `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const c = this.child;
    if (c && c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
      await gone;
      clearTimeout(t);
    }
    this.state = { status: 'stopped' };
  }

  /** Kills the Python process as a crash would (tests). */
  killStage(sig: NodeJS.Signals = 'SIGKILL'): void {
    this.child?.kill(sig);
  }

  private args(): string[] {
    const { cfg } = this.o;
    const m = cfg.moderation.model;
    const t = topicNames(cfg);
    return [
      path.join(MODEL_DIR, 'processor.py'),
      ...['--bootstrap', cfg.kafka.brokers, '--registry', cfg.registry.url, '--topic', t.roomEvents, '--dead-letter-topic', t.deadLetter],
      ...['--group', moderationModelGroup(cfg.pipelines.groupPrefix), '--client-id', cfg.kafka.clientId],
      ...['--threshold', String(m.threshold), '--record-above', String(m.recordAbove), '--action', m.action],
      ...['--batch-max', String(m.batchMax), '--batch-ms', String(m.batchMs), '--compression', cfg.producer.compression],
      ...['--status-fd', '3', '--watch-stdin'],
    ];
  }

  /** Spawns the stage; resolves when it reports ready, rejects if it exits or times out first. */
  private spawnStage(): Promise<void> {
    // stdin: a pipe we never write, whose end tells the stage we are gone (kill -9 included).
    const child = spawn(this.python, this.args(), { cwd: MODEL_DIR, stdio: ['pipe', 'pipe', 'pipe', 'pipe'], env: { ...process.env, PYTHONUNBUFFERED: '1' } });
    this.child = child;
    this.pid = child.pid;
    for (const s of [child.stdout!, child.stderr!]) {
      createInterface({ input: s }).on('line', (l) => {
        this.output.push(l);
        if (this.output.length > 200) this.output.splice(0, 100);
        this.log(l);
      });
    }
    let ready = false;
    return new Promise<void>((resolve, reject) => {
      const timeoutMs = this.o.readyTimeoutMs ?? 120_000;
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`moderation-model was not ready within ${timeoutMs} ms; output:\n${this.output.slice(-20).join('\n')}`));
      }, timeoutMs);
      createInterface({ input: child.stdio[3] as Readable }).on('line', (line) => {
        let m: StageMessage;
        try {
          m = JSON.parse(line) as StageMessage;
        } catch {
          return; // not ours to interpret
        }
        this.o.onMessage?.(m);
        this.onMessage(m);
        if (m.type === 'ready' && !ready) {
          ready = true;
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        const how = sig ?? `code ${code}`;
        if (!ready) {
          if (this.stopping) resolve();
          else reject(new Error(`moderation-model exited with ${how} before it was ready; output:\n${this.output.slice(-20).join('\n')}`));
          return;
        }
        if (this.stopping) return;
        // Died after it was ready: down, then restarted (delivery never waits for this stage).
        restartsCounter.inc();
        this.state = { status: 'down', detail: `the Python stage (pid ${child.pid}) exited with ${how}; restarting` };
        this.log(this.state.detail!);
        this.scheduleRestart(0);
      });
    });
  }

  private scheduleRestart(attempt: number): void {
    if (this.stopping) return;
    const wait = 500 + backoffMs(attempt, this.o.maxRestartBackoffMs ?? 30_000, 500);
    this.restartTimer = setTimeout(() => {
      this.spawnStage().catch((err: unknown) => {
        if (this.stopping) return;
        this.state = { status: 'down', detail: `restart failed: ${(err as Error).message.split('\n')[0]}` };
        this.log(this.state.detail!);
        this.scheduleRestart(attempt + 1);
      });
    }, wait);
    this.restartTimer.unref();
  }

  private onMessage(m: StageMessage): void {
    switch (m.type) {
      case 'ready':
        this.model = m.model;
        this.state = { status: 'ok', detail: `${m.model}, group ${m.group}` };
        this.log(`ready: ${m.model} loaded in ${(m.loadMs / 1000).toFixed(1)} s, group ${m.group}`);
        break;
      case 'health':
        // Only a ready stage is ok; before that it is starting, after an exit down.
        if (this.state.status === 'ok' || this.state.status === 'degraded') {
          this.state = m.status === 'ok' ? { status: 'ok', detail: this.model } : { status: 'degraded', detail: m.detail };
        }
        break;
      case 'batch':
        batchSeconds.observe({ phase: 'score' }, m.scoreMs / 1000);
        batchSeconds.observe({ phase: 'total' }, m.totalMs / 1000);
        recordsCounter.inc({ what: 'read' }, m.records);
        recordsCounter.inc({ what: 'scored' }, m.scored);
        recordsCounter.inc({ what: 'decided' }, m.decided);
        recordsCounter.inc({ what: 'deleted' }, m.deleted);
        this.batches.push(m);
        if (this.batches.length > 1000) this.batches.splice(0, 500);
        break;
      case 'stopped':
        break;
      default: {
        const never: never = m;
        void never;
      }
    }
  }
}
