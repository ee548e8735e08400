/**
 * npm run bench -- <scenario> [options]
 *
 *   fanout       one room, V viewers, R comments/s for T s: ours vs Socket.IO vs Centrifugo
 *   ingest       step the write rate up until p99 write→projection > 1 s or errors; raw kafkajs beside it
 *   rebuild      events/s of `npm run pipelines -- rebuild feed` over a log of N events
 *   connections  most idle WebSockets one gateway holds with heartbeats; memory per connection
 *   archive      events/s into ClickHouse through the archiver vs a raw insert of the same rows
 *   replay       one room of M archived events: first-page latency of 10-min windows, NDJSON stream rate
 *   all          every scenario above, in that order
 *
 * Options:
 *   --ci                  tiny parameters (the CI smoke run); peers only if already built
 *   --quick               shorter holds (ingest) and smaller logs (rebuild)
 *   --viewers N --rate R --seconds T --systems ours,socketio,centrifugo     (fanout)
 *   --hold S --rates a,b,c --max-rate R --raw-max-rate R                     (ingest)
 *   --events N --rooms N                                                     (rebuild, archive)
 *   --events N --windows N                                                   (replay)
 *   --max N --step N --heartbeat S                                           (connections)
 *   --no-build            never build a missing peer (Centrifugo)
 *   --charts DIR          where the SVG charts go (default docs/bench; bench/results with --ci)
 *
 * Prints a table and the JSON result; writes bench/results/<scenario>-<time>.json
 * and <charts>/<scenario>.svg. Every load goes to 127.0.0.1 only, from child
 * processes bounded in count and time.
 */
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../core/config.ts';
import { KINDS, type Kind } from './load/kinds.ts';
import { machine, machineLine, RESULTS_DIR, writeChart, writeResult } from './lib/report.ts';
import { connectionsChart, connectionsTable, runConnections } from './scenarios/connections.ts';
import { fanoutChart, fanoutTable, runFanout } from './scenarios/fanout.ts';
import { ingestChart, ingestTable, ladder, runIngest } from './scenarios/ingest.ts';
import { rebuildChart, rebuildTable, runRebuild } from './scenarios/rebuild.ts';
import { archiveChart, archiveTable, runArchive } from './scenarios/archive.ts';
import { replayChart, replayTable, runReplay } from './scenarios/replay.ts';

const SCENARIOS = ['fanout', 'ingest', 'rebuild', 'connections', 'archive', 'replay'] as const;
type Scenario = (typeof SCENARIOS)[number];

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    ci: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    viewers: { type: 'string' },
    rate: { type: 'string' },
    seconds: { type: 'string' },
    systems: { type: 'string' },
    hold: { type: 'string' },
    rates: { type: 'string' },
    'max-rate': { type: 'string' },
    'raw-max-rate': { type: 'string' },
    events: { type: 'string' },
    rooms: { type: 'string' },
    max: { type: 'string' },
    step: { type: 'string' },
    heartbeat: { type: 'string' },
    windows: { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    charts: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

const usage = `usage: npm run bench -- <${[...SCENARIOS, 'all'].join('|')}> [--ci] [--quick] [options]   (see bench/cli.ts)`;
const which = positionals[0];
if (values.help || !which || ![...SCENARIOS, 'all'].includes(which)) {
  console.error(usage);
  process.exit(values.help ? 0 : 2);
}

const ci = values.ci!;
const num = (v: string | undefined, def: number) => (v === undefined ? def : Number(v));
const log = (m: string) => console.error(`[bench] ${new Date().toISOString().slice(11, 19)} ${m}`);
const chartDir = values.charts ? path.resolve(values.charts) : ci ? RESULTS_DIR : path.join(REPO_ROOT, 'docs', 'bench');
const m = machine();

interface Outcome {
  scenario: Scenario;
  ok: boolean;
  summary: string;
}

async function runOne(s: Scenario): Promise<Outcome> {
  const started = new Date().toISOString();
  let result: unknown;
  let table: string;
  let chart: string;
  switch (s) {
    case 'fanout': {
      const systems = (values.systems?.split(',').map((x) => x.trim()) ?? [...KINDS]) as Kind[];
      for (const k of systems) if (!KINDS.includes(k)) throw new Error(`unknown system "${k}"; one of ${KINDS.join(', ')}`);
      const r = await runFanout({
        viewers: num(values.viewers, ci ? 5 : 200),
        rate: num(values.rate, ci ? 5 : 50),
        seconds: num(values.seconds, ci ? 3 : 20),
        systems,
        build: !ci && !values['no-build'],
        log,
      });
      result = r;
      table = fanoutTable(r);
      chart = fanoutChart(r, machineLine(m));
      // Unavailable peers are reported, not failures; ours must run whenever it was asked for.
      const ours = r.systems.find((x) => x.system === 'ours');
      const ok = r.systems.some((x) => x.available && (x.deliveredPct ?? 0) > 0) && (!ours || (ours.available && (ours.deliveredPct ?? 0) > 0));
      return finish(s, started, result, table, chart, ok);
    }
    case 'ingest': {
      const quick = values.quick!;
      const rates = values.rates ? values.rates.split(',').map(Number) : ladder(ci ? 10 : 50, num(values['max-rate'], ci ? 20 : 6400));
      const r = await runIngest({ rates, rawMaxRate: num(values['raw-max-rate'], ci ? 20 : 51_200), hold: num(values.hold, ci ? 2 : quick ? 10 : 60), rooms: num(values.rooms, ci ? 3 : 12), p99LimitMs: 1000, raw: true, log });
      return finish(s, started, r, ingestTable(r), ingestChart(r, machineLine(m)), r.ours.highestHeld > 0);
    }
    case 'rebuild': {
      const r = await runRebuild({ events: num(values.events, ci ? 1000 : values.quick ? 20_000 : 100_000), rooms: num(values.rooms, ci ? 5 : 100), log });
      return finish(s, started, r, rebuildTable(r), rebuildChart(r, machineLine(m)), r.exitCode === 0 && r.reported !== null);
    }
    case 'connections': {
      const r = await runConnections({
        max: num(values.max, ci ? 100 : values.quick ? 5000 : 50_000),
        step: num(values.step, ci ? 50 : values.quick ? 1000 : 2500),
        heartbeatSec: num(values.heartbeat, ci ? 1 : 5),
        perChild: 15_000,
        timeLimitSec: ci ? 60 : 400,
        log,
      });
      return finish(s, started, r, connectionsTable(r), connectionsChart(r, machineLine(m)), r.maxHeld > 0);
    }
    case 'archive': {
      const r = await runArchive({ events: num(values.events, ci ? 5000 : values.quick ? 50_000 : 200_000), rooms: num(values.rooms, ci ? 5 : 100), log });
      return finish(s, started, r, archiveTable(r), archiveChart(r, machineLine(m)), r.archiver.eventsPerSec > 0 && r.raw.rowsInTable === r.params.events);
    }
    case 'replay': {
      const r = await runReplay({ events: num(values.events, ci ? 5000 : values.quick ? 100_000 : 1_000_000), windows: num(values.windows, ci ? 10 : 50), log });
      return finish(s, started, r, replayTable(r), replayChart(r, machineLine(m)), r.firstPage.count > 0 && r.firstPage.errors === 0 && r.stream.endLine && r.stream.items > 0);
    }
  }
}

function finish(s: Scenario, started: string, result: unknown, table: string, chart: string, ok: boolean): Outcome {
  const doc = { scenario: s, started, finished: new Date().toISOString(), ci, machine: m, loadavgAtEnd: os.loadavg().map((x) => +x.toFixed(2)), command: `npm run bench -- ${process.argv.slice(2).join(' ')}`, result };
  const file = writeResult(s, doc);
  const svgFile = writeChart(chartDir, s, chart);
  console.log(`\n== ${s}\n${table}\n`);
  console.log(JSON.stringify(doc, null, 2));
  console.log(`\nresult: ${path.relative(REPO_ROOT, file)}\nchart:  ${path.relative(REPO_ROOT, svgFile)}`);
  return { scenario: s, ok, summary: table.split('\n')[0] ?? '' };
}

const list: Scenario[] = which === 'all' ? [...SCENARIOS] : [which as Scenario];
const outcomes: Outcome[] = [];
for (const s of list) {
  try {
    outcomes.push(await runOne(s));
  } catch (err) {
    log(`${s} failed: ${(err as Error).stack ?? err}`);
    outcomes.push({ scenario: s, ok: false, summary: (err as Error).message });
  }
}
const failed = outcomes.filter((o) => !o.ok);
console.log(`\nbench: ${outcomes.length - failed.length} passed, ${failed.length} failed`);
process.exit(failed.length ? 1 : 0);
