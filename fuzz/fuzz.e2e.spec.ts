/**
 * The fuzzer at CI size: the driver of `npm run fuzz` (a private world, every
 * family of generated attacks) with a few thousand cases and a fixed seed, so
 * a failure replays exactly (`npm run fuzz -- --seed 20261130 --cases 3000`,
 * or one case: `--replay family:index`).
 */
import { expect, it } from 'vitest';
import { runFuzz, summaryLine } from './run.ts';

const SEED = 20_261_130;
const CASES = 3000;

it(`${CASES} generated attacks from outside: no 5xx, no crashed process, nothing invalid accepted`, async () => {
  const lines: string[] = [];
  const r = await runFuzz({ cases: CASES, seed: SEED, log: (l) => lines.push(l) });
  const failed = r.fiveXx + r.crashes + r.acceptedInvalid > 0;
  // The whole report (counterexamples shrunk, with the command to replay each) when something broke.
  if (failed) console.log(lines.join('\n'));
  expect(summaryLine(r)).toBe(`fuzz: ${r.cases} cases, 5xx 0, crashes 0, accepted-invalid 0`);
  expect(r.cases).toBe(CASES);
}, 20 * 60_000);
