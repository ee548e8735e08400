/**
 * npm run bench -- <scenario> [options]
 *
 *   fanout       one room, V viewers, R comments/s for T s: ours vs Socket.IO vs Centrifugo
 *   ingest       comments into one room over HTTP + WebSocket, rate doubling to 12,800/s until p99 write→projection > 1 s
 *                or errors; ceilings in the same run: raw kafkajs and Kafka's own producer/consumer perf tools
 *   reactions    5,000 viewers of one room send reactions, 5k → 200k/s: acks (p99 ≤ 2 s) and exact tallies
 *   moderation   comments (5 % bad) produced into one room at 400 → 3,200/s: removal p95 ≤ 2 s and moderation lag p95 ≤ 1 s
 *   rooms        ours, 200 rooms × 50 viewers with Zipf comment rates, beside one room at the same deliveries/s
 *   poll         5,000 pollers (gzip) on one room against one gateway, beside its /healthz ceiling
 *   rebuild      events/s of `npm run pipelines -- rebuild feed` over a log of N events
 *   connections  most idle WebSockets one gateway holds with heartbeats; memory per connection
 *   archive      events/s into ClickHouse through the archiver vs a raw insert of the same rows
 *   replay       one room of M archived events: first-page latency of 10-min windows, NDJSON stream rate
 *   input-cost   the gateway's CPU per request: a valid comment beside bad writes (bad JSON, oversize, unknown emoji, expired token)
 *   all          every scenario above, in that order
 *
 * Options:
 *   --ci                  tiny parameters (the CI smoke run); peers only if already built
 *   --quick               shorter holds (ingest) and smaller logs (rebuild)
 *   --viewers N --rate R --seconds T --systems ours,socketio,centrifugo     (fanout)
 *   --hold S --rates a,b,c --max-rate R --raw-max-rate R --rooms N          (ingest)
 *   --ws-share 0..1 --users N --perf-records N                               (ingest)
 *   --no-raw              skip the raw kafkajs ladder (ingest; e.g. a profiling run)
 *   --gateway-workers N   GATEWAY_WORKERS of the gateway under test (ingest: default 1; fanout: one per core)
 *   --invalid 0..0.5      share of bad writes in a last step at the highest rate held (default 0.05; 0 skips it)
 *   --viewers N --children N --hold S --rates a,b,c                          (reactions)
 *   --rates a,b,c --hold S --rooms N --users N --bad-share 0..1              (moderation)
 *   --pollers N --seconds T                                                  (poll)
 *   --cpu-prof [--cpu-prof-dir DIR]   gateway and processors under `node --cpu-prof`; prints
 *                                      each profile's top frames (ingest, reactions)
 *   --events N --rooms N                                                     (rebuild, archive)
 *   --events N --windows N                                                   (replay)
 *   --requests N                                                             (input-cost)
 *   --max N --step N --heartbeat S                                           (connections)
 *   --no-build            never build a missing peer (Centrifugo)
 *   --charts DIR          where the SVG charts go (default docs/bench; bench/results with --ci)
 *
 * Prints a table and the JSON result; writes bench/results/<scenario>-<time>.json
 * and <charts>/<scenario>.svg. ingest and reactions end with plain summary lines
 * (`highest rate held (…): ours N/s`, `ceilings: …`, `reactions held: N/s, tallies exact: …`,
 * `moderation: highest rate held N comments/s (…)`). Every load goes to 127.0.0.1 only, from child
 * processes bounded in count and time.
 */
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../core/config.ts';
import { KINDS, type Kind } from './load/kinds.ts';
import { machine, machineLine, RESULTS_DIR, writeChart, writeResult } from './lib/report.ts';
import { connectionsChart, connectionsTable, runConnections } from './scenarios/connections.ts';
import { pollChart, pollFinalLines, pollTable, runPoll } from './scenarios/poll.ts';
import { fanoutChart, fanoutTable, roomsFinalLines, roomsTable, runFanout, runRooms } from './scenarios/fanout.ts';
import { ingestChart, ingestFinalLines, ingestTable, ladder, runIngest } from './scenarios/ingest.ts';
import { reactionsChart, reactionsFinalLines, reactionsTable, runReactions } from './scenarios/reactions.ts';
import { MODERATION_RATES, moderationChart, moderationFinalLines, moderationTable, runModeration } from './scenarios/moderation.ts';
import { rebuildChart, rebuildTable, runRebuild } from './scenarios/rebuild.ts';
import { archiveChart, archiveTable, runArchive } from './scenarios/archive.ts';
import { replayChart, replayTable, runReplay } from './scenarios/replay.ts';
import { inputCostChart, inputCostFinalLines, inputCostTable, runInputCost } from './scenarios/input-cost.ts';

const SCENARIOS = ['fanout', 'rooms', 'ingest', 'reactions', 'moderation', 'poll', 'rebuild', 'connections', 'archive', 'replay', 'input-cost'] as const;
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
    requests: { type: 'string' },
    'ws-share': { type: 'string' },
    users: { type: 'string' },
    'perf-records': { type: 'string' },
    invalid: { type: 'string' },
    'bad-share': { type: 'string' },
    'gateway-workers': { type: 'string' },
    'no-raw': { type: 'boolean', default: false },
    pollers: { type: 'string' },
    children: { type: 'string' },
    'cpu-prof': { type: 'boolean', default: false },
    'cpu-prof-dir': { type: 'string' },
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
  /** Plain lines the whole run ends with. */
  finalLines?: string[];
}

/** Where --cpu-prof puts a scenario's profiles. */
const cpuProfDir = (s: Scenario) =>
  values['cpu-prof'] || values['cpu-prof-dir'] ? path.resolve(values['cpu-prof-dir'] ?? path.join(RESULTS_DIR, `cpuprof-${s}-${new Date().toISOString().replace(/[:.]/g, '-')}`)) : undefined;

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
        // Ours gets every core, as Centrifugo does (GOMAXPROCS): one gateway worker per core.
        gatewayWorkers: values['gateway-workers'] ? Number(values['gateway-workers']) : ci ? 1 : undefined,
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
      const rates = values.rates ? values.rates.split(',').map(Number) : ladder(ci ? 10 : 50, num(values['max-rate'], ci ? 20 : 12_800));
      const wsShare = num(values['ws-share'], 0.5);
      if (!(wsShare >= 0 && wsShare <= 1)) throw new Error('--ws-share must be between 0 and 1');
      const r = await runIngest({
        rates,
        rawMaxRate: num(values['raw-max-rate'], ci ? 20 : 51_200),
        hold: num(values.hold, ci ? 2 : quick ? 10 : 60),
        rooms: num(values.rooms, 1),
        wsShare,
        users: num(values.users, ci ? 20 : 400),
        wsSockets: ci ? 4 : 40,
        p99LimitMs: 1000,
        raw: !values['no-raw'],
        perfRecords: num(values['perf-records'], ci ? 2000 : quick ? 300_000 : 1_000_000),
        invalidShare: num(values.invalid, 0.05),
        gatewayWorkers: num(values['gateway-workers'], 1),
        cpuProfDir: cpuProfDir(s),
        log,
      });
      return finish(s, started, r, ingestTable(r), ingestChart(r, machineLine(m)), r.ours.highestHeld > 0, ingestFinalLines(r));
    }
    case 'reactions': {
      const r = await runReactions({
        viewers: num(values.viewers, ci ? 40 : 5000),
        children: num(values.children, ci ? 1 : 4),
        rates: values.rates ? values.rates.split(',').map(Number) : ci ? [20, 50] : undefined,
        hold: num(values.hold, ci ? 2 : values.quick ? 10 : 30),
        p99LimitMs: 2000,
        emojis: ['heart', 'fire', 'clap'],
        cpuProfDir: cpuProfDir(s),
        log,
      });
      // Held at some rate with exact tallies; in CI, the scenario running end to end with exact tallies.
      return finish(s, started, r, reactionsTable(r), reactionsChart(r, machineLine(m)), r.talliesExact && (ci || r.highestHeld > 0), reactionsFinalLines(r));
    }
    case 'moderation': {
      const r = await runModeration({
        rates: values.rates ? values.rates.split(',').map(Number) : ci ? [200, 400] : MODERATION_RATES,
        hold: num(values.hold, ci ? 10 : values.quick ? 10 : 30),
        rooms: num(values.rooms, 1),
        users: num(values.users, 20_000),
        badShare: num(values['bad-share'], 0.05),
        limits: { removalP95Ms: 2000, lagP95Sec: 1 },
        missingAfterSec: 15,
        log,
      });
      // A step not held is a finding; in CI the scenario fails only when nothing held or a bad comment was never removed.
      return finish(s, started, r, moderationTable(r), moderationChart(r, machineLine(m)), ci ? r.highestHeld > 0 && r.missingTotal === 0 : r.steps.length > 0, moderationFinalLines(r));
    }
    case 'rebuild': {
      const r = await runRebuild({ events: num(values.events, ci ? 1000 : values.quick ? 20_000 : 100_000), rooms: num(values.rooms, ci ? 5 : 100), log });
      return finish(s, started, r, rebuildTable(r), rebuildChart(r, machineLine(m)), r.exitCode === 0 && r.reported !== null, [`rebuild: ${Math.round(r.reported?.eventsPerSec ?? 0)} events/s`]);
    }
    case 'rooms': {
      const r = await runRooms({
        rooms: num(values.rooms, ci ? 4 : 200),
        viewersPerRoom: num(values.viewers, ci ? 5 : 50),
        rate: num(values.rate, ci ? 20 : 500),
        seconds: num(values.seconds, ci ? 3 : 20),
        zipf: 1.1,
        gatewayWorkers: values['gateway-workers'] ? Number(values['gateway-workers']) : ci ? 1 : undefined,
        log,
      });
      return finish(s, started, r, roomsTable(r), fanoutChart({ params: { viewers: r.params.rooms * r.params.viewersPerRoom, rate: r.params.rate, seconds: r.params.seconds }, systems: [r.many, r.one], ratios: {} }, machineLine(m)), (r.many.deliveredPct ?? 0) > 0, roomsFinalLines(r));
    }
    case 'poll': {
      const r = await runPoll({ pollers: num(values.pollers, ci ? 20 : 5000), seconds: num(values.seconds, ci ? 3 : 20), log });
      return finish(s, started, r, pollTable(r), pollChart(r, machineLine(m)), (r.phases[0]?.perSec ?? 0) > 0 && r.phases.every((p) => p.errors === 0), pollFinalLines(r));
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
      return finish(s, started, r, archiveTable(r), archiveChart(r, machineLine(m)), r.archiver.eventsPerSec > 0 && r.raw.rowsInTable === r.params.events, [
        `archive: ${Math.round(r.archiver.eventsPerSec)} events/s, raw insert ${Math.round(r.raw.eventsPerSec)}/s`,
      ]);
    }
    case 'input-cost': {
      const r = await runInputCost({ requests: num(values.requests, ci ? 200 : 5000), concurrency: 20, log });
      return finish(s, started, r, inputCostTable(r), inputCostChart(r, machineLine(m)), r.rows.length > 0 && r.rows.every((x) => x.expected), inputCostFinalLines(r));
    }
    case 'replay': {
      const r = await runReplay({ events: num(values.events, ci ? 5000 : values.quick ? 100_000 : 1_000_000), windows: num(values.windows, ci ? 10 : 50), log });
      return finish(s, started, r, replayTable(r), replayChart(r, machineLine(m)), r.firstPage.count > 0 && r.firstPage.errors === 0 && r.stream.endLine && r.stream.items > 0, [
        `replay: first page p95 ${r.firstPage.p95} ms, stream ${Math.round(r.stream.itemsPerSec)} items/s`,
      ]);
    }
  }
}

function finish(s: Scenario, started: string, result: unknown, table: string, chart: string, ok: boolean, finalLines?: string[]): Outcome {
  const doc = { scenario: s, started, finished: new Date().toISOString(), ci, machine: m, loadavgAtEnd: os.loadavg().map((x) => +x.toFixed(2)), command: `npm run bench -- ${process.argv.slice(2).join(' ')}`, result };
  const file = writeResult(s, doc);
  const svgFile = writeChart(chartDir, s, chart);
  console.log(`\n== ${s}\n${table}\n`);
  console.log(JSON.stringify(doc, null, 2));
  console.log(`\nresult: ${path.relative(REPO_ROOT, file)}\nchart:  ${path.relative(REPO_ROOT, svgFile)}`);
  return { scenario: s, ok, summary: table.split('\n')[0] ?? '', finalLines };
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
// The scenarios' plain summary lines come last, where people and tools look for them.
const last = outcomes.flatMap((o) => o.finalLines ?? []);
if (last.length) console.log(last.join('\n'));
process.exit(failed.length ? 1 : 0);
