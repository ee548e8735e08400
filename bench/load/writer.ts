/**
 * Load-generator child: posts comments at a fixed rate (open loop: sends are
 * scheduled by the clock, not by answers) for a fixed time, each text tagged
 * with its sequence number and send time. Rooms are used round-robin.
 *
 * With --observe-redis it also subscribes to each room's notification channel
 * (`<prefix>{room}:notify`) and measures write → projection: the time from
 * sending the POST to the feed projection's notification for that comment.
 *
 * Prints progress on stderr and `RESULT {...}` on stdout. Bounded by
 * --seconds plus --drain-sec, and by --max-inflight requests at once.
 */
import { loadConfig } from '../../core/config.ts';
import { parseArgs } from 'node:util';
import { createSigner } from 'fast-jwt';
import { Redis } from 'ioredis';
import { assertLoopback } from '../lib/proc.ts';
import { Hist, nowMs, Series } from '../lib/stats.ts';
import { loadTexts, parseTag, tagText } from '../lib/texts.ts';
import { isAccepted, publish, type Kind } from './kinds.ts';

const { values } = parseArgs({
  options: {
    kind: { type: 'string' },
    url: { type: 'string' },
    rooms: { type: 'string' },
    rate: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '5' },
    users: { type: 'string', default: '50' },
    'max-inflight': { type: 'string', default: '2000' },
    'api-key': { type: 'string' },
    'observe-redis': { type: 'string' },
    'observe-prefix': { type: 'string' },
    'drain-sec': { type: 'string', default: '10' },
    'seq-start': { type: 'string', default: '0' },
    /** Relative rate of each room (same order as --rooms); default: equal. */
    weights: { type: 'string' },
  },
});
const kind = values.kind as Kind;
const url = values.url!;
assertLoopback(url);
const rooms = values.rooms!.split(',');
// Write i goes to the room whose share of the cumulative weights holds
// frac(i × golden ratio): deterministic, spread evenly over time, each room
// getting its weight's share (a Zipf spread makes a few rooms hot).
const weights = values.weights ? values.weights.split(',').map(Number) : rooms.map(() => 1);
const cumulative: number[] = [];
weights.reduce((a, w, k) => (cumulative[k] = a + w / weights.reduce((x, y) => x + y, 0)), 0);
const roomOf = (i: number): string => {
  if (rooms.length === 1) return rooms[0]!;
  const u = (i * 0.6180339887498949) % 1;
  const k = cumulative.findIndex((c) => u < c);
  return rooms[k < 0 ? rooms.length - 1 : k]!;
};
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const maxInflight = Number(values['max-inflight']);
const drainMs = Number(values['drain-sec']) * 1000;
const hardStop = setTimeout(() => {
  console.error('writer: time limit reached, exiting');
  process.exit(3);
}, (seconds + Number(values['drain-sec']) + 60) * 1000);
hardStop.unref();

const { texts, source } = await loadTexts(5000);
let tokens: string[] | undefined;
if (kind === 'ours') {
  // The gateway under test was started with this JWT_SECRET; the writer gets it the same way (config).
  const secret = loadConfig().auth.jwtSecret;
  const sign = createSigner({ key: secret, algorithm: 'HS256', expiresIn: 3600_000 });
  tokens = Array.from({ length: Number(values.users) }, (_, i) => sign({ sub: `bench-u${i}`, role: 'viewer' }));
}
const target = { kind, url, tokens, apiKey: values['api-key'] };

// write → projection observation (ours only)
const projHist = new Hist();
let projSeries: Series | undefined;
let observed = 0;
let sub: Redis | undefined;
const acceptedSeqs = new Set<number>();
const observedSeqs = new Set<number>();
if (values['observe-redis']) {
  sub = new Redis(values['observe-redis']);
  const prefix = values['observe-prefix'] ?? '';
  sub.on('smessage', (_channel: string, message: string) => {
    const now = nowMs();
    const n = JSON.parse(message) as { projection: string; deltas: { t: string; entry?: { text: string } }[] };
    if (n.projection !== 'feed') return;
    for (const d of n.deltas) {
      if (d.t !== 'comment' || !d.entry) continue;
      const tag = parseTag(d.entry.text);
      if (!tag || observedSeqs.has(tag.seq)) continue;
      observedSeqs.add(tag.seq);
      observed++;
      projHist.add(now - tag.sendMs);
      projSeries?.add(now, now - tag.sendMs);
    }
  });
  for (const r of rooms) await sub.ssubscribe(`${prefix}{${r}}:notify`);
}

const httpHist = new Hist();
const errorSamples = new Map<string, number>();
let sent = 0;
let ok = 0;
let errors = 0;
let skipped = 0;
let inflight = 0;
let seq = Number(values['seq-start']);
const pending = new Set<Promise<void>>();

const t0 = nowMs();
projSeries = new Series(t0);
const sendSeries = new Series(t0);
const total = Math.round(rate * seconds);
let lastLog = t0;
await new Promise<void>((resolve) => {
  const tick = () => {
    const now = nowMs();
    const due = Math.min(total, Math.floor(((now - t0) / 1000) * rate));
    while (sent + skipped < due) {
      if (inflight >= maxInflight) {
        skipped++;
        continue;
      }
      const s = seq++;
      const i = sent++;
      const text = tagText(s, nowMs(), texts[s % texts.length]!);
      const start = nowMs();
      inflight++;
      const p = publish(target, values.weights ? roomOf(i) : rooms[i % rooms.length]!, text, i).then((r) => {
        inflight--;
        const end = nowMs();
        httpHist.add(end - start);
        sendSeries.add(end, end - start);
        if (isAccepted(kind, r)) {
          ok++;
          acceptedSeqs.add(s);
        } else {
          errors++;
          const key = `${r.status} ${r.body.slice(0, 120)}`;
          errorSamples.set(key, (errorSamples.get(key) ?? 0) + 1);
        }
      });
      pending.add(p);
      void p.then(() => pending.delete(p));
    }
    if (now - lastLog > 5000) {
      lastLog = now;
      console.error(`writer: ${sent} sent, ${ok} accepted, ${errors} errors, ${inflight} in flight, ${observed} observed`);
    }
    if (sent + skipped >= total) resolve();
    else setTimeout(tick, 2);
  };
  tick();
});
const sendEnd = nowMs();
await Promise.all([...pending]);
const answeredEnd = nowMs();
if (sub) {
  const deadline = nowMs() + drainMs;
  while (nowMs() < deadline && [...acceptedSeqs].some((s) => !observedSeqs.has(s))) await new Promise((r) => setTimeout(r, 20));
  sub.disconnect();
}
const result = {
  kind,
  source,
  rate,
  seconds,
  sent,
  ok,
  errors,
  skipped,
  errorSamples: Object.fromEntries([...errorSamples].slice(0, 5)),
  achievedRate: sent / ((sendEnd - t0) / 1000),
  sendSeconds: (sendEnd - t0) / 1000,
  answeredSeconds: (answeredEnd - t0) / 1000,
  t0,
  http: httpHist.toJSON(),
  observed: sub ? observed : undefined,
  missing: sub ? [...acceptedSeqs].filter((s) => !observedSeqs.has(s)).length : undefined,
  projection: sub ? projHist.toJSON() : undefined,
  projectionSeries: sub ? projSeries.toJSON() : undefined,
  seqEnd: seq,
  cpuSec: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
};
console.log(`RESULT ${JSON.stringify(result)}`);
process.exit(0);
