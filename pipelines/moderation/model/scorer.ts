/**
 * The model without Kafka: a Python child running score.py, asked to score
 * batches of texts over JSON lines (its stdin and stdout). What the eval uses
 * (`npm run moderation -- eval`), and what a test uses to call the model.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { MODEL_DIR } from './venv.ts';

export interface ScoredBatch {
  scores: number[];
  /** Time of the model call in Python (vectorize + predict), ms. */
  modelMs: number;
  /** Round trip as seen from here (JSON both ways included), ms. */
  roundTripMs: number;
}

export class ModelScorer {
  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    private readonly lines: AsyncIterator<string>,
    /** e.g. alt-profanity-check-1.9.1 */
    readonly model: string,
    /** Time Python took to load the model, ms (its imports included). */
    readonly loadMs: number,
    /** From spawn to ready, ms (the interpreter's start included). */
    readonly startMs: number,
  ) {}

  /** Starts `score.py` with the venv's python and waits for its ready line. */
  static async start(python: string): Promise<ModelScorer> {
    const t0 = performance.now();
    const child = spawn(python, [path.join(MODEL_DIR, 'score.py')], { cwd: MODEL_DIR, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString('utf8')).slice(-4000)));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code, signal) => reject(new Error(`score.py exited with ${signal ?? code}\n${stderr}`))),
    );
    exited.catch(() => undefined);
    const first = await Promise.race([lines.next(), exited]);
    const ready = JSON.parse(String(first.value)) as { type: string; model: string; loadMs: number };
    if (ready.type !== 'ready') throw new Error(`score.py: expected its ready line, got ${String(first.value)}`);
    return new ModelScorer(child, lines, ready.model, ready.loadMs, performance.now() - t0);
  }

  /** Scores one batch in one model call. Batches are answered in order, one at a time. */
  async score(texts: string[]): Promise<ScoredBatch> {
    const t0 = performance.now();
    this.child.stdin.write(`${JSON.stringify({ id: 0, texts })}\n`);
    const r = await this.lines.next();
    if (r.done) throw new Error('score.py ended');
    const answer = JSON.parse(r.value) as { scores: number[]; ms: number };
    return { scores: answer.scores, modelMs: answer.ms, roundTripMs: performance.now() - t0 };
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    this.child.stdin.end();
    await gone;
  }
}
