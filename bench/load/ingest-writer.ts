/**
 * Load-generator child of the ingest scenario: many writer users post
 * comments at a fixed total rate (open loop: sends follow the clock, not the
 * answers), part over HTTP (`POST /v1/rooms/:room/comments`) and part over
 * the room's WebSocket (`{"type":"comment","id",…}` frames answered by
 * `ack`/`nack` frames carrying the same id), as set by --ws-share.
 *
 * Every write carries a clientMsgId, as a client that retries does, so the
 * idempotency claim is part of the path measured.
 *
 * Every user is a benchmark user of the private world (its limits raised by
 * the world's env, never switched off): HTTP writes use the users' tokens
 * round-robin; each WebSocket is one user's, connected with `?token=`.
 *
 * write → projection: the child subscribes (SSUBSCRIBE) to each room's
 * notification channel, as bench/load/writer.ts does, and times each of its
 * own comments (a seq range of its own: several children run side by side)
 * from the send to the feed projection's notification.
 *
 * --invalid-share mixes in bad writes over HTTP, as real clients send them:
 * a broken JSON body, an oversize comment, an unknown emoji, an expired
 * token, in turn. Each must get a 4xx with a stable code; they are counted
 * apart (by code) and never in the valid writes' latencies, so the scenario
 * can compare the valid writes with and without them.
 *
 * Prints progress on stderr and `RESULT {...}` on stdout. Bounded by
 * --seconds plus the answer and drain times, and by --max-inflight.
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { createSigner } from 'fast-jwt';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { loadConfig } from '../../core/config.ts';
import { assertLoopback } from '../lib/proc.ts';
import { Hist, nowMs } from '../lib/stats.ts';
import { loadTexts, parseTag, tagText } from '../lib/texts.ts';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    rooms: { type: 'string' },
    rate: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '5' },
    users: { type: 'string', default: '200' },
    'user-prefix': { type: 'string', default: 'bench-w' },
    'ws-share': { type: 'string', default: '0.5' },
    'ws-sockets': { type: 'string', default: '20' },
    'max-inflight': { type: 'string', default: '4000' },
    'observe-redis': { type: 'string' },
    'observe-prefix': { type: 'string', default: '' },
    'answer-sec': { type: 'string', default: '30' },
    'drain-sec': { type: 'string', default: '10' },
    'seq-start': { type: 'string', default: '0' },
    'invalid-share': { type: 'string', default: '0' },
  },
});
const url = values.url!;
assertLoopback(url);
const rooms = values.rooms!.split(',');
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const wsShare = Math.min(1, Math.max(0, Number(values['ws-share'])));
const users = Math.max(1, Number(values.users));
const wsSockets = wsShare > 0 ? Math.max(rooms.length, Number(values['ws-sockets'])) : 0;
const maxInflight = Number(values['max-inflight']);
const answerMs = Number(values['answer-sec']) * 1000;
const drainMs = Number(values['drain-sec']) * 1000;
setTimeout(() => {
  console.error('ingest-writer: time limit reached, exiting');
  process.exit(3);
}, (seconds + Number(values['answer-sec']) + Number(values['drain-sec']) + 90) * 1000).unref();

const { texts, source } = await loadTexts(5000);
// The gateway under test was started with this JWT_SECRET; the child gets it the same way (config).
const sign = createSigner({ key: loadConfig().auth.jwtSecret, algorithm: 'HS256', expiresIn: 3600_000 });
const invalidShare = Math.min(0.5, Math.max(0, Number(values['invalid-share'])));
// Expired an hour ago (fast-jwt refuses a negative expiresIn: the claim is set directly).
const expiredToken = createSigner({ key: loadConfig().auth.jwtSecret, algorithm: 'HS256' })({ sub: `${values['user-prefix']}expired`, exp: Math.floor(Date.now() / 1000) - 3600 });
const tokens = Array.from({ length: Math.max(users, wsSockets) }, (_, i) => sign({ sub: `${values['user-prefix']}${i}` }));

/** Codes the gateway answers when a limit (not a fault) refused the write. */
const LIMIT_CODES = new Set(['ERR_RATE_LIMITED', 'ERR_SLOW_MODE']);
const errorsByCode = new Map<string, number>();
const fail = (code: string) => errorsByCode.set(code, (errorsByCode.get(code) ?? 0) + 1);

// ---- write → projection -------------------------------------------------------
const seqStart = Number(values['seq-start']);
let seq = seqStart;
const projHist = new Hist();
const observedSeqs = new Set<number>();
const acceptedSeqs = new Set<number>();
let sub: Redis | undefined;
if (values['observe-redis']) {
  sub = new Redis(values['observe-redis']);
  sub.on('smessage', (_channel: string, message: string) => {
    const now = nowMs();
    const n = JSON.parse(message) as { projection: string; deltas: { t: string; entry?: { text: string } }[] };
    if (n.projection !== 'feed') return;
    for (const d of n.deltas) {
      if (d.t !== 'comment' || !d.entry) continue;
      const tag = parseTag(d.entry.text);
      // Only this child's own comments: others' seq ranges are theirs.
      if (!tag || tag.seq < seqStart || tag.seq >= seq || observedSeqs.has(tag.seq)) continue;
      observedSeqs.add(tag.seq);
      projHist.add(now - tag.sendMs);
    }
  });
  for (const r of rooms) await sub.ssubscribe(`${values['observe-prefix']}{${r}}:notify`);
}

// ---- HTTP ---------------------------------------------------------------------
const u = new URL(url);
// Many writers: enough keep-alive connections that the answers, not the client's queue, set the latency.
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
function post(room: string, text: string, clientMsgId: string, token: string, raw?: { body: string; path: string }): Promise<{ status: number; code?: string }> {
  const body = raw?.body ?? JSON.stringify({ text, clientMsgId });
  return new Promise((resolve) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path: `/v1/rooms/${encodeURIComponent(room)}/${raw?.path ?? 'comments'}`, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), authorization: `Bearer ${token}` } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status === 202) return resolve({ status });
          let code = `HTTP_${status}`;
          try {
            code = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { code?: string }).code ?? code;
          } catch {
            // not JSON: the status is the code
          }
          resolve({ status, code });
        });
        res.on('error', () => resolve({ status: 0, code: 'NET_RESPONSE' }));
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ status: 0, code: `NET_${(err as NodeJS.ErrnoException).code ?? err.message.slice(0, 30)}` }));
    req.end(body);
  });
}

// ---- bad input ------------------------------------------------------------------
const INVALID_KINDS = ['bad-json', 'oversize', 'unknown-emoji', 'expired-token'] as const;
const invalidByCode = new Map<string, number>();
const invalidByKind = new Map<string, number>();
let invalidSent = 0;
let invalidAccepted = 0;
let invalid5xx = 0;
function sendInvalid(room: string, k: number, s: number): Promise<void> {
  const kind = INVALID_KINDS[k % INVALID_KINDS.length]!;
  invalidSent++;
  invalidByKind.set(kind, (invalidByKind.get(kind) ?? 0) + 1);
  const token = tokens[k % users]!;
  const call =
    kind === 'bad-json' ? post(room, '', '', token, { path: 'comments', body: `{"text":"unterminated ${s}` })
    : kind === 'oversize' ? post(room, 'x'.repeat(2500), `bad${s}`, token)
    : kind === 'unknown-emoji' ? post(room, '', '', token, { path: 'reactions', body: JSON.stringify({ emoji: 'not-an-emoji', clientMsgId: `bad${s}` }) })
    : post(room, `expired ${s}`, `bad${s}`, expiredToken);
  return call.then((r) => {
    if (r.status >= 200 && r.status < 300) invalidAccepted++;
    if (r.status >= 500 || r.status === 0) invalid5xx++;
    const code = `${r.status} ${r.code ?? ''}`.trim();
    invalidByCode.set(code, (invalidByCode.get(code) ?? 0) + 1);
  });
}

// ---- WebSocket ----------------------------------------------------------------
interface Pending {
  start: number;
  seq: number;
  sock: number;
}
const wsPending = new Map<string, Pending>();
const socks: { ws: WebSocket; room: string; open: boolean }[] = [];
const wsAckHist = new Hist();
const httpHist = new Hist();
let okHttp = 0;
let okWs = 0;
let errors = 0;
let limitErrors = 0;
let wsClosed = 0;
let inflight = 0;

const onAnswer = (p: Pending, ok: boolean, code?: string) => {
  inflight--;
  if (ok) {
    okWs++;
    acceptedSeqs.add(p.seq);
    wsAckHist.add(nowMs() - p.start);
  } else {
    errors++;
    if (code && LIMIT_CODES.has(code)) limitErrors++;
    fail(code ?? 'WS_UNKNOWN');
  }
};

async function openSocket(i: number): Promise<void> {
  const room = rooms[i % rooms.length]!;
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/rooms/${encodeURIComponent(room)}/ws?token=${tokens[i]}`, { perMessageDeflate: false, handshakeTimeout: 30_000 });
  const s = { ws, room, open: false };
  socks[i] = s;
  await new Promise<void>((resolve, reject) => {
    ws.on('message', (data: Buffer) => {
      if (!s.open) {
        s.open = true; // the first frame is the snapshot: the socket is in the room
        return resolve();
      }
      // Pushes (batches, viewers…) are most of the traffic: only small frames can be answers.
      if (data.length > 600 || data.indexOf('ack"') < 0) return;
      const m = JSON.parse(data.toString('utf8')) as { type?: string; id?: string; code?: string };
      if ((m.type !== 'ack' && m.type !== 'nack') || !m.id) return;
      const p = wsPending.get(m.id);
      if (!p) return;
      wsPending.delete(m.id);
      onAnswer(p, m.type === 'ack', m.code);
    });
    ws.on('close', (code: number) => {
      if (!s.open) return reject(new Error(`socket ${i} closed ${code} before the snapshot`));
      s.open = false;
      wsClosed++;
      for (const [id, p] of wsPending) {
        if (p.sock !== i) continue;
        wsPending.delete(id);
        onAnswer(p, false, `WS_CLOSED_${code}`);
      }
    });
    ws.on('error', (err: Error) => {
      if (!s.open) reject(err);
    });
  });
}
const wsOpen0 = nowMs();
for (let i = 0; i < wsSockets; i += 20) await Promise.all(Array.from({ length: Math.min(20, wsSockets - i) }, (_, k) => openSocket(i + k)));
if (wsSockets) console.error(`ingest-writer: ${wsSockets} sockets open in ${Math.round(nowMs() - wsOpen0)} ms`);
const socksOf = rooms.map((r) => socks.map((s, i) => (s.room === r ? i : -1)).filter((i) => i >= 0));
const rr = rooms.map(() => 0);

// ---- the open loop -----------------------------------------------------------------
let sent = 0;
let sentHttp = 0;
let sentWs = 0;
let skipped = 0;
const pending = new Set<Promise<void>>();
const cpu0 = process.cpuUsage();
const t0 = nowMs();
const total = Math.round(rate * seconds);
let lastLog = t0;
await new Promise<void>((resolve) => {
  const tick = () => {
    const now = nowMs();
    const due = Math.min(total, Math.floor(((now - t0) / 1000) * rate));
    while (sent + invalidSent + skipped < due) {
      if (inflight >= maxInflight) {
        skipped++;
        continue;
      }
      const ri = (sent + invalidSent) % rooms.length;
      const room = rooms[ri]!;
      // Spread the bad share evenly over the clock (a valid write's seq and index are its own).
      const slot = sent + invalidSent;
      if (invalidShare > 0 && Math.floor((slot + 1) * invalidShare) > Math.floor(slot * invalidShare)) {
        const pr = sendInvalid(room, invalidSent, slot);
        pending.add(pr);
        void pr.then(() => pending.delete(pr));
        continue;
      }
      const i = sent++;
      const s = seq++;
      const text = tagText(s, nowMs(), texts[s % texts.length]!);
      // Spread the WebSocket share evenly over the sequence.
      const viaWs = wsSockets > 0 && Math.floor((i + 1) * wsShare) > Math.floor(i * wsShare);
      inflight++;
      if (viaWs) {
        const list = socksOf[ri]!;
        const si = list[rr[ri]! % list.length]!;
        rr[ri] = rr[ri]! + 1;
        const sock = socks[si]!;
        sentWs++;
        const p: Pending = { start: nowMs(), seq: s, sock: si };
        if (!sock.open) {
          onAnswer(p, false, 'WS_NOT_OPEN');
          continue;
        }
        wsPending.set(`c${s}`, p);
        sock.ws.send(JSON.stringify({ type: 'comment', id: `c${s}`, text, clientMsgId: `b${s}` }));
      } else {
        sentHttp++;
        const start = nowMs();
        const pr = post(room, text, `b${s}`, tokens[i % users]!).then((r) => {
          inflight--;
          httpHist.add(nowMs() - start);
          if (r.status === 202) {
            okHttp++;
            acceptedSeqs.add(s);
          } else {
            errors++;
            if (r.code && LIMIT_CODES.has(r.code)) limitErrors++;
            fail(r.code ?? `HTTP_${r.status}`);
          }
        });
        pending.add(pr);
        void pr.then(() => pending.delete(pr));
      }
    }
    if (now - lastLog > 5000) {
      lastLog = now;
      console.error(`ingest-writer: ${sent} sent, ${okHttp + okWs} accepted, ${errors} errors, ${inflight} in flight, ${observedSeqs.size} in the projection`);
    }
    if (sent + invalidSent + skipped >= total) resolve();
    else setTimeout(tick, 2);
  };
  tick();
});
const sendEnd = nowMs();
// Every write gets an answer, or counts as unanswered after --answer-sec.
const answerDeadline = nowMs() + answerMs;
while ((pending.size > 0 || wsPending.size > 0) && nowMs() < answerDeadline) await new Promise((r) => setTimeout(r, 10));
for (const p of wsPending.values()) onAnswer(p, false, 'WS_NO_ANSWER');
wsPending.clear();
const answeredEnd = nowMs();
if (sub) {
  const deadline = nowMs() + drainMs;
  const allSeen = () => {
    for (const s of acceptedSeqs) if (!observedSeqs.has(s)) return false;
    return true;
  };
  while (nowMs() < deadline && !allSeen()) await new Promise((r) => setTimeout(r, 20));
  sub.disconnect();
}
const cpu = process.cpuUsage(cpu0);
for (const s of socks) s?.ws.terminate();
const result = {
  source,
  rate,
  seconds,
  sent,
  sentHttp,
  sentWs,
  ok: okHttp + okWs,
  okHttp,
  okWs,
  errors,
  limitErrors,
  skipped,
  wsSockets,
  wsClosed,
  errorsByCode: Object.fromEntries(errorsByCode),
  invalid: { sent: invalidSent, accepted: invalidAccepted, serverErrors: invalid5xx, byKind: Object.fromEntries(invalidByKind), byStatusAndCode: Object.fromEntries(invalidByCode) },
  achievedRate: (sent + invalidSent) / ((sendEnd - t0) / 1000),
  answeredSeconds: (answeredEnd - t0) / 1000,
  observed: sub ? observedSeqs.size : undefined,
  missing: sub ? [...acceptedSeqs].filter((s) => !observedSeqs.has(s)).length : undefined,
  projection: projHist.toJSON(),
  http: httpHist.toJSON(),
  wsAck: wsAckHist.toJSON(),
  seqEnd: seq,
  // From the first send to the end of the drain (not the start-up: loading texts, signing, connecting).
  cpuSec: (cpu.user + cpu.system) / 1e6,
};
console.log(`RESULT ${JSON.stringify(result)}`);
process.exit(0);
