/**
 * npm run chaos -- <fault|all> [--seconds S] [--repeats N] [--rate R] [--ci] [--doc] [--verbose]
 *
 * Drives a sustained load (comments and reactions over 20 rooms, WebSocket
 * viewers and HTTP pollers on two gateways) against a private world on
 * private servers, injects one fault at a time (each repeated), then checks
 * every acknowledged write against the log, the feed and tallies projections
 * and ClickHouse, and what the viewers were shown. Prints a row per fault and
 * ends with the line
 *   chaos: F faults, W acknowledged writes, lost L, duplicated D, max recovery S s
 * Exits 1 on any loss or duplicate (viewers' gaps and duplicates included) or
 * a fault the system did not recover from. Faults: see chaos/faults.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import { REPO_ROOT } from '../core/config.ts';
import { FAULTS, type FaultName } from './faults.ts';
import { checkArchiveOf, RECOVERY_DEADLINE_MS, runPhase, type Phase, type PhaseOptions } from './run.ts';
import { PrivateServers } from './servers.ts';
import { dupOf, lostOf, type Row } from './verify.ts';
import { ChaosWorld } from './world.ts';
import { writeReport } from './report.ts';
import { rowCells } from './cli-rows.ts';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string' },
    repeats: { type: 'string' },
    rate: { type: 'string' },
    'reaction-rate': { type: 'string' },
    rooms: { type: 'string', default: '20' },
    ci: { type: 'boolean', default: false },
    doc: { type: 'boolean' },
    verbose: { type: 'boolean', default: false },
  },
});

const USAGE = `usage: npm run chaos -- <${FAULTS.join('|')}|all>[,<fault>...] [--seconds S] [--repeats N] [--rate R] [--reaction-rate R] [--rooms N] [--ci] [--doc] [--verbose]`;
const started = Date.now();
const log = (m: string) => console.log(`[chaos ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${m}`);

const arg = positionals[0];
if (!arg) {
  console.error(USAGE);
  process.exit(2);
}
const wanted: FaultName[] = arg === 'all' ? [...FAULTS] : (arg.split(',') as FaultName[]);
for (const f of wanted) {
  if (!FAULTS.includes(f)) {
    console.error(`unknown fault "${f}"\n${USAGE}`);
    process.exit(2);
  }
}
const ci = values.ci!;
const seconds = Number(values.seconds ?? (ci ? 20 : 60));
const repeats = Number(values.repeats ?? (ci ? 1 : 2));
const rate = Number(values.rate ?? (ci ? 300 : 2000));
const reactionRate = Number(values['reaction-rate'] ?? Math.round(rate / 4));
const roomsPerPhase = Number(values.rooms);
const writeDoc = values.doc ?? !ci;
const phaseOptions: PhaseOptions = { seconds, repeats, rate, reactionRate, rooms: roomsPerPhase, log };

function printRows(rows: Row[]): void {
  const t = new Table({
    head: ['fault', 'reps', 'comments/s', 'acked', 'lost log/feed/tallies/CH', 'dup log/feed/tallies/CH', 'viewer gaps', 'viewer dups', 'resyncs', 'recovery s', 'refused', 'unanswered'],
    style: { head: [], border: [] },
  });
  for (const r of rows) t.push(rowCells(r));
  console.log(t.toString());
}

async function main(): Promise<number> {
  log(`faults: ${wanted.join(', ')}; ${seconds} s of load per fault, ${repeats} repetition(s), ${rate} comments/s + ${reactionRate} reactions/s offered over ${roomsPerPhase} rooms${ci ? ' (CI)' : ''}`);
  const phases: Phase[] = [];
  const mainFaults = wanted.filter((f) => f !== 'broker3-kill');
  const cleanups: (() => Promise<void>)[] = [];
  let aborted = false;
  const onSignal = () => {
    log('interrupted: stopping the private world and servers');
    void Promise.allSettled(cleanups.map((c) => c())).then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    // One set of private servers; the three-broker fault adds a cluster beside it (sharing its registry and Redis).
    const servers = await PrivateServers.start({ brokers: 1, registry: true, redis: true, log });
    cleanups.unshift(() => servers.stop());
    let clusterStart: Promise<PrivateServers> | undefined;
    const startCluster = () => {
      clusterStart = PrivateServers.start({ brokers: 3, share: servers, log });
      clusterStart.catch(() => undefined);
      cleanups.unshift(async () => (await clusterStart!.catch(() => undefined))?.stop());
    };
    if (mainFaults.length > 0) {
      const world = new ChaosWorld({ prefix: 'chaos', servers: servers.worldEnv, clickhouseDir: ChaosWorld.clickhouseDir(servers.dir, 'main'), verbose: values.verbose!, log });
      cleanups.unshift(() => world.stop());
      log(`world ${world.id}: starting 2 processors, 2 gateways and the archiver`);
      await world.start();
      const mine: Phase[] = [];
      for (const f of mainFaults) {
        // A phase that failed may have left a part down: each starts from a whole world.
        await servers.up();
        const healed = await world.heal();
        if (healed.length) log(`restarted ${healed.join(', ')} before ${f}`);
        mine.push(await runPhase(f, world, servers, phaseOptions));
      }
      // The cluster starts while the archive is checked (no load runs then).
      if (wanted.includes('broker3-kill')) startCluster();
      await checkArchiveOf(world, mine, log);
      phases.push(...mine);
      await world.stop(); // (its cleanup stays registered: stopping twice is a no-op)
    }
    if (wanted.includes('broker3-kill')) {
      if (!clusterStart) startCluster();
      const cluster = await clusterStart!;
      const world = new ChaosWorld({ prefix: 'chaos3', servers: cluster.worldEnv, clickhouseDir: ChaosWorld.clickhouseDir(cluster.dir, 'cluster'), verbose: values.verbose!, log });
      cleanups.unshift(() => world.stop());
      log(`world ${world.id} on the three-broker cluster: starting 2 processors, 2 gateways and the archiver`);
      await world.start();
      const p = await runPhase('broker3-kill', world, cluster, phaseOptions);
      await checkArchiveOf(world, [p], log);
      phases.push(p);
    }
    for (const c of cleanups.splice(0)) await c();
  } catch (err) {
    // The rows measured so far are still printed; the run fails.
    aborted = true;
    log(`failed: ${(err as Error).stack ?? err}`);
    for (const c of cleanups.splice(0)) await c().catch(() => undefined);
  }

  const rows = phases.map((p) => p.row);
  console.log('');
  printRows(rows);
  const W = rows.reduce((a, r) => a + r.acked, 0);
  const L = rows.reduce((a, r) => a + lostOf(r), 0);
  const D = rows.reduce((a, r) => a + dupOf(r), 0);
  const gaps = rows.reduce((a, r) => a + r.viewerGaps, 0);
  const vdups = rows.reduce((a, r) => a + r.viewerDups, 0);
  const recoveries = rows.flatMap((r) => r.recoverySec);
  const never = recoveries.filter((s) => !Number.isFinite(s)).length;
  const failed = rows.filter((r) => r.failed);
  const maxRecovery = Math.max(0, ...recoveries.map((s) => (Number.isFinite(s) ? s : RECOVERY_DEADLINE_MS / 1000)));
  if (writeDoc && phases.length > 0) {
    const out = writeReport(phases, { seconds, repeats, rate, reactionRate, rooms: roomsPerPhase, command: `npm run chaos -- ${process.argv.slice(2).join(' ')}`, totals: { W, L, D, maxRecovery } });
    log(`wrote ${path.relative(REPO_ROOT, out.doc)} and ${path.relative(REPO_ROOT, out.chart)}`);
  }
  if (gaps || vdups) console.log(`viewers: ${gaps} comments never shown after a resume, ${vdups} shown twice`);
  for (const r of failed) console.log(`${r.fault}: ${r.notes.join('; ')}`);
  if (never) console.log(`${never} injection(s) after which viewers saw no new write within ${RECOVERY_DEADLINE_MS / 1000} s`);
  console.log(`chaos: ${rows.length} faults, ${W} acknowledged writes, lost ${L}, duplicated ${D}, max recovery ${maxRecovery.toFixed(1)} s`);
  return aborted || L || D || gaps || vdups || never || failed.length || rows.length === 0 ? 1 : 0;
}

fs.mkdirSync(path.join(REPO_ROOT, '.data'), { recursive: true });
main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
