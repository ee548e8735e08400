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
  // The summary in the CI output whatever happened (the line .ci/run and the README promise).
  console.log(summaryLine(r));
  const failed = r.fiveXx + r.crashes + r.acceptedInvalid > 0 || Object.keys(r.tally).some((k) => k.includes('| valid-refused |'));
  // The whole report (counterexamples shrunk, with the command to replay each) when something broke.
  if (failed) console.log(lines.join('\n'));
  expect(summaryLine(r)).toBe(`fuzz: ${r.cases} cases, 5xx 0, crashes 0, accepted-invalid 0`);
  expect(r.cases).toBe(CASES);
  // The other way round too: a well-formed request is never refused (the model and the gateway agree).
  expect(Object.entries(r.tally).filter(([k]) => k.includes('| valid-refused |'))).toEqual([]);
}, 20 * 60_000);
