/**
 * Load-generator child: V WebSocket viewers of one room (or of several:
 * `--room a,b,c` puts viewer i in room i mod 3). Prints
 * `READY <connected> <failed>` once all attempted, then records every tagged
 * comment each viewer receives (latency = receive time − the writer's send
 * time in the text, same machine clock). Stdin commands:
 *   status  → `STATUS <deliveries>`
 *   stop    → `RESULT {...}` and exit
 * Exits by itself after --max-sec.
 */
import { parseArgs } from 'node:util';
import readline from 'node:readline';
import { assertLoopback } from '../lib/proc.ts';
import { Hist, nowMs, Series } from '../lib/stats.ts';
import { parseTag } from '../lib/texts.ts';
import { connectViewer, type Kind, type Viewer } from './kinds.ts';

const { values } = parseArgs({
  options: {
    kind: { type: 'string' },
    url: { type: 'string' },
    room: { type: 'string' },
    n: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '50' },
    'max-sec': { type: 'string', default: '300' },
    'local-address': { type: 'string' },
  },
});
const kind = values.kind as Kind;
const roomList = values.room!.split(',');
const url = values.url!;
assertLoopback(url);
const n = Number(values.n);
const concurrency = Number(values.concurrency);
setTimeout(() => {
  console.error('viewers: time limit reached, exiting');
  process.exit(3);
}, Number(values['max-sec']) * 1000).unref();

const t0 = nowMs();
const hist = new Hist();
const series = new Series(t0);
const connectHist = new Hist();
let deliveries = 0;
let untagged = 0;
let duplicates = 0;
let unexpectedCloses = 0;
const closeReasons = new Map<string, number>();
const perViewer: number[] = new Array<number>(n).fill(0);
const seen: Uint8Array[] = [];
const viewers: Viewer[] = [];
let stopping = false;

function mark(v: number, seq: number): boolean {
  let s = seen[v]!;
  if (seq >= s.length * 8) {
    const grown = new Uint8Array(Math.max(s.length * 2, (seq >> 3) + 1024));
    grown.set(s);
    seen[v] = s = grown;
  }
  const bit = 1 << (seq & 7);
  if (s[seq >> 3]! & bit) return false;
  s[seq >> 3] = s[seq >> 3]! | bit;
  return true;
}

function open(i: number): Promise<boolean> {
  seen[i] = new Uint8Array(256);
  return new Promise((resolve) => {
    const start = nowMs();
    let ready = false;
    const v = connectViewer(
      { kind, url, room: roomList[i % roomList.length]!, localAddress: values['local-address'] },
      {
        onReady() {
          if (ready) return;
          ready = true;
          connectHist.add(nowMs() - start);
          resolve(true);
        },
        onText(text) {
          const now = nowMs();
          const tag = parseTag(text);
          if (!tag) {
            untagged++;
            return;
          }
          if (!mark(i, tag.seq)) {
            duplicates++;
            return;
          }
          deliveries++;
          perViewer[i]!++;
          const lat = now - tag.sendMs;
          hist.add(lat);
          series.add(now, lat);
        },
        onClose(reason) {
          if (!ready) return resolve(false);
          if (stopping) return;
          unexpectedCloses++;
          closeReasons.set(reason, (closeReasons.get(reason) ?? 0) + 1);
        },
      },
    );
    viewers.push(v);
    setTimeout(() => {
      if (!ready) resolve(false);
    }, 30_000).unref();
  });
}

let connected = 0;
let failed = 0;
let next = 0;
await Promise.all(
  Array.from({ length: Math.min(concurrency, n) }, async () => {
    while (next < n) {
      const i = next++;
      if (await open(i)) connected++;
      else failed++;
    }
  }),
);
console.log(`READY ${connected} ${failed} ${Math.round(nowMs() - t0)}`);

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const cmd = line.trim();
  if (cmd === 'status') console.log(`STATUS ${deliveries}`);
  if (cmd === 'stop') {
    stopping = true;
    const sorted = [...perViewer].sort((a, b) => a - b);
    const result = {
      kind,
      viewers: n,
      connected,
      failed,
      deliveries,
      duplicates,
      untagged,
      unexpectedCloses,
      closeReasons: Object.fromEntries(closeReasons),
      perViewerMin: sorted[0] ?? 0,
      perViewerMax: sorted[sorted.length - 1] ?? 0,
      latency: hist.toJSON(),
      connect: connectHist.toJSON(),
      series: series.toJSON(),
    };
    console.log(`RESULT ${JSON.stringify(result)}`);
    for (const v of viewers) v.close();
    setTimeout(() => process.exit(0), 200);
  }
});
