/**
 * `npm run moderation -- eval` as a user runs it, on a small labelled subset
 * and with the real model (its venv, a Python child): every stage is
 * reported and the last line is the summary line. No Kafka involved.
 */
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../core/config.ts';
import { DEFAULT_LABELLED_PATH } from './eval.ts';

const probe = spawnSync('python3', ['--version'], { encoding: 'utf8' });
const hasPython = !probe.error && probe.status === 0;
if (!hasPython) console.warn('[eval.int] SKIPPED: python3 is not on PATH; the eval runs the model with it.');

describe.skipIf(!hasPython)('npm run moderation -- eval', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mod-eval-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs rules, model and combined over a labelled subset and ends with the summary line', async () => {
    // Every 10th comment of the fixture: both labels, three languages, a second or two of work.
    const rows = fs.readFileSync(DEFAULT_LABELLED_PATH, 'utf8').trim().split('\n');
    const subset = path.join(dir, 'subset.jsonl');
    fs.writeFileSync(subset, `${rows.filter((_, i) => i % 10 === 0).join('\n')}\n`);
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        ['--import', 'tsx', path.join(REPO_ROOT, 'pipelines', 'moderation', 'cli.ts'), 'eval', '--labelled', subset, '--no-data'],
        { cwd: REPO_ROOT, env: process.env, timeout: 600_000, maxBuffer: 4 * 1024 * 1024 },
        (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out)),
      ),
    );
    const lines = stdout.trim().split('\n');
    console.log(stdout);
    expect(lines.find((l) => /^labelled set: /.test(l))).toMatch(/: 33 comments \(/);
    for (const stage of ['rules', 'model', 'combined']) expect(lines.some((l) => new RegExp(`^${stage}\\s+\\d+\\s+\\d+\\s+\\d+\\s+\\d+\\s+[01]\\.\\d\\d`).test(l)), stage).toBe(true);
    expect(lines.some((l) => /^model start: [\d.]+ s from spawn to ready/.test(l))).toBe(true);
    expect(lines.some((l) => /^model latency per batch .*50: p50 [\d.]+ ms/.test(l))).toBe(true);
    expect(lines.at(-1)).toMatch(/^moderation eval: precision [01]\.\d\d, recall [01]\.\d\d, flagged on real chat n\/a %$/);
  }, 600_000);
});
