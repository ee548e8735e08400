/**
 * Load-generator child: idle WebSocket viewers of ours, opened on command and
 * held (the ws client answers the gateway's heartbeat pings by itself).
 * Connections come from --local-address (one of 127.0.0.0/8) so several
 * children are not limited by one source address's ephemeral ports.
 *
 * Stdin: `open N` → opens N more (concurrency --concurrency), then
 * `OPENED <open> <failed> <p99 connect ms>`; `status` → `STATUS <open> <closed> <failed>`;
 * `stop` → `RESULT {...}` and exit. Exits by itself after --max-sec.
 */
import { parseArgs } from 'node:util';
import readline from 'node:readline';
import WebSocket from 'ws';
import { assertLoopback } from '../lib/proc.ts';
import { Hist, nowMs } from '../lib/stats.ts';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    rooms: { type: 'string', default: '10' },
    'local-address': { type: 'string', default: '127.0.0.1' },
    concurrency: { type: 'string', default: '100' },
    'max-sec': { type: 'string', default: '300' },
  },
});
const url = values.url!;
assertLoopback(url);
if (!/^127\./.test(values['local-address']!)) throw new Error('local address must be in 127.0.0.0/8');
const rooms = Number(values.rooms);
setTimeout(() => process.exit(3), Number(values['max-sec']) * 1000).unref();

const sockets: WebSocket[] = [];
let open = 0;
let closed = 0;
let failed = 0;
let opened = 0;
const closeCodes = new Map<string, number>();
const connect = new Hist();
let stopping = false;

function one(i: number): Promise<void> {
  return new Promise((resolve) => {
    const start = nowMs();
    let ready = false;
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/rooms/idle-${i % rooms}/ws`, { perMessageDeflate: false, localAddress: values['local-address'], handshakeTimeout: 30_000 });
    sockets.push(ws);
    ws.once('message', () => {
      ready = true;
      open++;
      connect.add(nowMs() - start);
      resolve();
    });
    ws.on('close', (code: number) => {
      if (!ready) {
        failed++;
        return resolve();
      }
      open--;
      if (!stopping) {
        closed++;
        closeCodes.set(String(code), (closeCodes.get(String(code)) ?? 0) + 1);
      }
    });
    ws.on('error', (err: Error) => {
      if (!ready) closeCodes.set(`error ${err.message.slice(0, 60)}`, (closeCodes.get(`error ${err.message.slice(0, 60)}`) ?? 0) + 1);
    });
  });
}

async function openMore(n: number): Promise<void> {
  const start = opened;
  opened += n;
  let next = start;
  await Promise.all(
    Array.from({ length: Math.min(Number(values.concurrency), n) }, async () => {
      while (next < start + n) await one(next++);
    }),
  );
}

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on('line', (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'open') {
    queue = queue.then(async () => {
      await openMore(Number(arg));
      console.log(`OPENED ${open} ${failed} ${Math.round(connect.quantile(0.99))}`);
    });
  } else if (cmd === 'status') {
    console.log(`STATUS ${open} ${closed} ${failed}`);
  } else if (cmd === 'stop') {
    stopping = true;
    console.log(`RESULT ${JSON.stringify({ open, closed, failed, closeCodes: Object.fromEntries(closeCodes), connect: connect.summary(), cpuSec: (process.cpuUsage().user + process.cpuUsage().system) / 1e6, rssMiB: Math.round(process.memoryUsage.rss() / 2 ** 20) })}`);
    for (const s of sockets) s.terminate();
    setTimeout(() => process.exit(0), 300);
  }
});
console.log('IDLE-READY');
