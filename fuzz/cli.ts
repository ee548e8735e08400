/**
 * `npm run fuzz [-- --cases N] [--seed S] [--concurrency C] [--only http-body,ws] [--replay family:index] [--echo]`
 *
 * Throws property-based cases (fuzz/arbitraries.ts) at a private running
 * system from outside (fuzz/run.ts) and ends with exactly one line,
 * `fuzz: N cases, 5xx X, crashes C, accepted-invalid A`; exit code 1 when
 * any of the three is not zero (or a family could not run, which the report says).
 */
import { parseArgs } from 'node:util';
import { FAMILIES, type Family } from './arbitraries.ts';
import { runFuzz, summaryLine } from './run.ts';

const { values } = parseArgs({
  options: {
    cases: { type: 'string' },
    seed: { type: 'string' },
    concurrency: { type: 'string' },
    only: { type: 'string' },
    replay: { type: 'string' },
    echo: { type: 'boolean' },
  },
});

function int(name: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) {
    console.error(`--${name} must be an integer, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

function families(list: string | undefined): Family[] | undefined {
  if (!list) return undefined;
  const fs = list.split(',').map((x) => x.trim());
  for (const f of fs) {
    if (!(FAMILIES as readonly string[]).includes(f)) {
      console.error(`unknown family ${JSON.stringify(f)}; one of ${FAMILIES.join(', ')}`);
      process.exit(2);
    }
  }
  return fs as Family[];
}

let replay: { family: Family; index: number } | undefined;
if (values.replay) {
  const [family, index] = values.replay.split(':');
  replay = { family: families(family)![0]!, index: int('replay', index, 0) };
}

const result = await runFuzz({
  cases: int('cases', values.cases, 100_000),
  seed: int('seed', values.seed, Math.floor(Math.random() * 2 ** 31)),
  concurrency: int('concurrency', values.concurrency, 16),
  only: families(values.only),
  replay,
  echo: values.echo,
});
console.log(summaryLine(result));
// A run that could not run every family is no pass either (the report says which and why).
process.exit(result.fiveXx + result.crashes + result.acceptedInvalid > 0 || result.aborted.length > 0 ? 1 : 0);
