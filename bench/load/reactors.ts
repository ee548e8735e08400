/**
 * Load-generator child of the reactions scenario: N viewers of one room,
 * each a WebSocket of its own benchmark user (`?token=`), from one
 * 127.0.0.x source address. On command they send reactions at a fixed
 * total rate (open loop, round-robin over the viewers) and time each one to
 * its answer:
 *   ws    `{"type":"reaction","id","emoji"}` on the viewer's socket → `ack` / `nack` with that id
 *   http  `POST /v1/rooms/:room/reactions` with the viewer's token → 202 (the fallback for a
 *         gateway without WebSocket writes)
 * The sockets also receive the room's pushes (snapshot, tallies, viewers),
 * as real viewers do; only small frames are looked at as possible answers.
 *
 * Stdin: `open` → opens the N sockets, then `OPENED <open> <failed> <p99 connect ms>`;
 * `run <rate> <seconds> <step>` → `STEP {...}` once every reaction of the step is
 * answered or --answer-sec passed; `stop` → `RESULT {...}` and exit. Exits by
 * itself after --max-sec.
 */
import http from 'node:http';
import readline from 'node:readline';
import { parseArgs } from 'node:util';
import { createSigner } from 'fast-jwt';
import WebSocket from 'ws';
import { loadConfig } from '../../core/config.ts';
import { assertLoopback } from '../lib/proc.ts';
import { Hist, nowMs } from '../lib/stats.ts';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    room: { type: 'string' },
    n: { type: 'string', default: '100' },
    'user-start': { type: 'string', default: '0' },
    transport: { type: 'string', default: 'ws' },
    emojis: { type: 'string', default: 'heart' },
    'local-address': { type: 'string', default: '127.0.0.1' },
    concurrency: { type: 'string', default: '100' },
    'answer-sec': { type: 'string', default: '30' },
    'max-sec': { type: 'string', default: '900' },
  },
});
const url = values.url!;
assertLoopback(url);
if (!/^127\./.test(values['local-address']!)) throw new Error('local address must be in 127.0.0.0/8');
const room = values.room!;
const n = Number(values.n);
const transport = values.transport === 'http' ? 'http' : 'ws';
const emojis = values.emojis!.split(',');
const answerMs = Number(values['answer-sec']) * 1000;
setTimeout(() => process.exit(3), Number(values['max-sec']) * 1000).unref();

const sign = createSigner({ key: loadConfig().auth.jwtSecret, algorithm: 'HS256', expiresIn: 3600_000 });
const userStart = Number(values['user-start']);
const tokens = Array.from({ length: n }, (_, i) => sign({ sub: `bench-v${userStart + i}` }));
const LIMIT_CODES = new Set(['ERR_RATE_LIMITED', 'ERR_SLOW_MODE']);

interface Viewer {
  ws: WebSocket;
  open: boolean;
}
interface Pending {
  start: number;
  emoji: string;
  viewer: number;
}
const viewers: Viewer[] = [];
const pending = new Map<string, Pending>();
let open = 0;
let failed = 0;
let closed = 0;
const closeCodes = new Map<string, number>();
const connectHist = new Hist();

// Per step (reset by `run`).
let ackHist = new Hist();
let acked = 0;
let ackedByEmoji: Record<string, number> = {};
let nacks: Record<string, number> = {};
let limitNacks = 0;

function answer(p: Pending, ok: boolean, code?: string): void {
  if (ok) {
    acked++;
    ackedByEmoji[p.emoji] = (ackedByEmoji[p.emoji] ?? 0) + 1;
    ackHist.add(nowMs() - p.start);
  } else {
    const c = code ?? 'UNKNOWN';
    nacks[c] = (nacks[c] ?? 0) + 1;
    if (LIMIT_CODES.has(c)) limitNacks++;
  }
}

function connect(i: number): Promise<void> {
  return new Promise((resolve) => {
    const start = nowMs();
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/rooms/${encodeURIComponent(room)}/ws?token=${tokens[i]}`, { perMessageDeflate: false, localAddress: values['local-address'], handshakeTimeout: 30_000 });
    const v: Viewer = { ws, open: false };
    viewers[i] = v;
    ws.on('message', (data: Buffer) => {
      if (!v.open) {
        v.open = true; // the snapshot
        open++;
        connectHist.add(nowMs() - start);
        return resolve();
      }
      if (data.length > 600 || data.indexOf('ack"') < 0) return;
      const m = JSON.parse(data.toString('utf8')) as { type?: string; id?: string; code?: string };
      if ((m.type !== 'ack' && m.type !== 'nack') || !m.id) return;
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      answer(p, m.type === 'ack', m.code);
    });
    ws.on('close', (code: number) => {
      if (!v.open) {
        failed++;
        closeCodes.set(`before open ${code}`, (closeCodes.get(`before open ${code}`) ?? 0) + 1);
        return resolve();
      }
      v.open = false;
      open--;
      closed++;
      closeCodes.set(String(code), (closeCodes.get(String(code)) ?? 0) + 1);
      for (const [id, p] of pending) {
        if (p.viewer !== i) continue;
        pending.delete(id);
        answer(p, false, `WS_CLOSED_${code}`);
      }
    });
    ws.on('error', () => {});
  });
}

const u = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256, localAddress: values['local-address'] } as http.AgentOptions);
function post(i: number, emoji: string): Promise<{ ok: boolean; code?: string }> {
  const body = JSON.stringify({ emoji });
  return new Promise((resolve) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path: `/v1/rooms/${encodeURIComponent(room)}/reactions`, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), authorization: `Bearer ${tokens[i]}` } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode === 202) return resolve({ ok: true });
          let code = `HTTP_${res.statusCode}`;
          try {
            code = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { code?: string }).code ?? code;
          } catch {
            // the status is the code
          }
          resolve({ ok: false, code });
        });
        res.on('error', () => resolve({ ok: false, code: 'NET_RESPONSE' }));
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ ok: false, code: `NET_${(err as NodeJS.ErrnoException).code ?? 'ERROR'}` }));
    req.end(body);
  });
}

async function openAll(): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(Number(values.concurrency), n) }, async () => {
      while (next < n) await connect(next++);
    }),
  );
}

async function runStep(rate: number, seconds: number, step: string): Promise<unknown> {
  ackHist = new Hist();
  acked = 0;
  ackedByEmoji = {};
  nacks = {};
  limitNacks = 0;
  const closed0 = closed;
  let sent = 0;
  const sentByEmoji: Record<string, number> = {};
  const httpPending = new Set<Promise<void>>();
  const total = Math.round(rate * seconds);
  const cpu0 = process.cpuUsage();
  const t0 = nowMs();
  let cursor = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((nowMs() - t0) / 1000) * rate));
      while (sent < due) {
        const i = sent++;
        const emoji = emojis[i % emojis.length]!;
        sentByEmoji[emoji] = (sentByEmoji[emoji] ?? 0) + 1;
        // Round-robin over the viewers whose socket is open.
        let vi = cursor++ % n;
        for (let k = 0; k < n && !viewers[vi]?.open; k++) vi = cursor++ % n;
        const p: Pending = { start: nowMs(), emoji, viewer: vi };
        if (transport === 'http') {
          const pr = post(vi, emoji).then((r) => answer(p, r.ok, r.code));
          httpPending.add(pr);
          void pr.then(() => httpPending.delete(pr));
          continue;
        }
        const v = viewers[vi];
        if (!v?.open) {
          answer(p, false, 'WS_NOT_OPEN');
          continue;
        }
        const id = `r${step}-${i}`;
        pending.set(id, p);
        v.ws.send(`{"type":"reaction","id":"${id}","emoji":"${emoji}"}`);
      }
      if (sent >= total) resolve();
      else setTimeout(tick, 2);
    };
    tick();
  });
  const sendSec = (nowMs() - t0) / 1000;
  const deadline = nowMs() + answerMs;
  while ((pending.size > 0 || httpPending.size > 0) && nowMs() < deadline) await new Promise((r) => setTimeout(r, 10));
  const unanswered = pending.size + httpPending.size;
  pending.clear();
  const cpu = process.cpuUsage(cpu0);
  return {
    step,
    rate,
    sent,
    sentByEmoji,
    acked,
    ackedByEmoji,
    nacks,
    limitNacks,
    unanswered,
    closedInStep: closed - closed0,
    open,
    achievedRate: sent / sendSec,
    answeredSec: (nowMs() - t0) / 1000,
    ack: ackHist.toJSON(),
    cpuSec: (cpu.user + cpu.system) / 1e6,
  };
}

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on('line', (line) => {
  const [cmd, a, b, c] = line.trim().split(/\s+/);
  if (cmd === 'open') {
    queue = queue.then(async () => {
      if (transport === 'ws' || viewers.length === 0) await openAll();
      console.log(`OPENED ${open} ${failed} ${Math.round(connectHist.quantile(0.99) || 0)}`);
    });
  } else if (cmd === 'run') {
    queue = queue.then(async () => console.log(`STEP ${JSON.stringify(await runStep(Number(a), Number(b), c ?? '0'))}`));
  } else if (cmd === 'stop') {
    queue = queue.then(() => {
      console.log(`RESULT ${JSON.stringify({ open, closed, failed, closeCodes: Object.fromEntries(closeCodes), connect: connectHist.summary(), rssMiB: Math.round(process.memoryUsage.rss() / 2 ** 20) })}`);
      for (const v of viewers) v?.ws.terminate();
      setTimeout(() => process.exit(0), 300);
    });
  }
});
console.log('REACTORS-READY');
