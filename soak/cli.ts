/**
 * npm run soak -- [--minutes M] [--connections N] [--rate R] [--rooms K] [--ci] [--doc]
 *
 *   --minutes M       steady part of the run (default 30)
 *   --connections N   WebSockets held open (default 10,000)
 *   --rate R          comments/s over HTTP into the sockets' rooms (default 50)
 *   --rooms K         rooms the sockets are spread over (default 20)
 *   --sample-sec S    seconds between samples of the gateway (default 5)
 *   --settle-sec S    how long the gateway may take to release closed sockets (default 30)
 *   --ci              1 minute, 2,000 sockets; docs left alone
 *   --doc             write docs/soak.svg and the Soak section of docs/reliability.md
 *
 * Prints a progress line every 10 s and ends with
 * `soak: memory growth X MiB/h, leaked sockets N`; exits 1 on a leaked socket,
 * a crash, sockets that could not be opened, or (runs of ≥ 10 min) RSS growth
 * above 5 % of the warmed RSS per 30 min. The chart goes to bench/results/soak.svg
 * without --doc. Everything runs on 127.0.0.1, in children bounded in time.
 */
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../core/config.ts';
import { machine, machineLine, RESULTS_DIR, writeChart, writeResult } from '../bench/lib/report.ts';
import { finalLine, median, oneDecimal } from './measure.ts';
import { soakChart, writeDoc } from './report.ts';
import { runSoak } from './run.ts';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string' },
    connections: { type: 'string' },
    rate: { type: 'string', default: '50' },
    rooms: { type: 'string', default: '20' },
    'sample-sec': { type: 'string', default: '5' },
    'settle-sec': { type: 'string', default: '30' },
    ci: { type: 'boolean', default: false },
    doc: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.error('usage: npm run soak -- [--minutes M] [--connections N] [--rate R] [--rooms K] [--sample-sec S] [--settle-sec S] [--ci] [--doc]   (see soak/cli.ts)');
  process.exit(0);
}
const ci = values.ci!;
const positive = (name: string, v: string | undefined, def: number) => {
  const n = v === undefined ? def : Number(v);
  if (!(n > 0)) {
    console.error(`--${name} must be a positive number (got ${v})`);
    process.exit(2);
  }
  return n;
};
const minutes = positive('minutes', values.minutes, ci ? 1 : 30);
const connections = Math.round(positive('connections', values.connections, ci ? 2000 : 10_000));
const log = (m: string) => console.error(`[soak] ${new Date().toISOString().slice(11, 19)} ${m}`);
if (ci && values.doc) log('--ci leaves the docs alone: --doc ignored');

const started = new Date().toISOString();
const r = await runSoak({
  minutes,
  connections,
  rate: positive('rate', values.rate, 50),
  rooms: Math.round(positive('rooms', values.rooms, 20)),
  sampleSec: positive('sample-sec', values['sample-sec'], 5),
  settleSec: positive('settle-sec', values['settle-sec'], 30),
  perChild: 5000,
  log,
}).catch((err: Error) => {
  log(`the soak could not run: ${err.stack ?? err}`);
  console.log(`soak: did not run (${err.message.split('\n')[0]})`);
  process.exit(1);
});

const command = `npm run soak -- ${process.argv.slice(2).join(' ')}`.trim();
const m = machine();
const subtitle = `${machineLine(m)} — ${command}`;
const file = writeResult('soak', { command, started, finished: new Date().toISOString(), ci, machine: m, loadavgAtEnd: os.loadavg().map((x) => +x.toFixed(2)), result: r });
const written = values.doc && !ci ? writeDoc(path.join(REPO_ROOT, 'docs'), r, command, subtitle) : { chart: writeChart(RESULTS_DIR, 'soak', soakChart(r, subtitle)), doc: undefined };

const loops = r.samples.map((s) => s.loopP99Ms);
const lastRss = r.samples[r.samples.length - 1]?.rssMiB ?? NaN;
console.log(
  [
    `sockets: ${r.opened} opened (${r.openFailed} failed, connect p99 ${r.connectP99Ms} ms), ${r.dropped} dropped during the run`,
    `writes: ${r.writer ? `${r.writer.ok} of ${r.writer.sent} accepted${r.writer.errors ? `, errors ${JSON.stringify(r.writer.errorSamples)}` : ''}` : 'no writer result'}`,
    `gateway RSS: ${oneDecimal(r.baseline.rssMiB)} MiB before the sockets, ${oneDecimal(r.growth.warmedRssMiB)} MiB warmed, ${oneDecimal(lastRss)} MiB at the end; growth ${oneDecimal(r.growth.rssMiBPerHour)} MiB/h = ${oneDecimal(r.growth.pctPer30Min)} % per 30 min (heap ${oneDecimal(r.growth.heapMiBPerHour)} MiB/h; fitted after ${r.growth.warmupSec.toFixed(0)} s)`,
    `fds: ${r.baseline.fds} before, ${Math.max(0, ...r.samples.map((s) => s.fds))} at most, ${r.after?.fds ?? '–'} after close; sockets gauge ${r.baseline.sockets} before, ${r.after?.sockets ?? '–'} after (${r.after ? `${r.after.settled ? 'settled' : 'NOT settled'} in ${r.after.waitedSec.toFixed(1)} s` : 'not measured'})`,
    `event-loop delay p99: median ${oneDecimal(median(loops))} ms, worst ${oneDecimal(Math.max(...loops.filter(Number.isFinite)))} ms; gateway CPU ${oneDecimal(r.gatewayCpuPct)} % of a core; machine load average median ${oneDecimal(median(r.samples.map((s) => s.load1)))}`,
    `result: ${path.relative(REPO_ROOT, file)}`,
    `chart:  ${path.relative(REPO_ROOT, written.chart)}${written.doc ? `\ndoc:    ${path.relative(REPO_ROOT, written.doc)}` : ''}`,
    ...(r.crashed ? [`crash: ${r.crashed}`] : []),
    ...(r.verdict.ok ? ['soak: passed'] : r.verdict.reasons.map((x) => `FAILED: ${x}`)),
    finalLine(r.growth.rssMiBPerHour, r.leaked),
  ].join('\n'),
);
process.exit(r.verdict.ok ? 0 : 1);
