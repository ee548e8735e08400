/**
 * The sustained load of a chaos phase, and what its clients observed.
 *
 * Writers: per room one signed-in WebSocket writing comment and reaction
 * frames, plus HTTP POSTs for a share of the comments, open loop (sends follow
 * the clock). They behave like the SDK: every comment carries a clientMsgId
 * and is re-sent after a lost connection or a retriable refusal (503, 500,
 * ERR_IN_PROGRESS) with the same clientMsgId — for at most 40 s after its first
 * send, well inside the gateway's 60 s claim, so a retry never outlives the
 * claim that makes it idempotent; a reaction is re-sent (as a new one) only
 * after a refusal, never after a lost connection. A gateway that goes away
 * sends its clients to the other one.
 *
 * Viewers: per room one WebSocket viewer on each gateway (they resume with
 * `since=<epoch>.<offset>` on the other gateway when theirs dies) and one HTTP
 * poller; each records every comment it is shown, so gaps and duplicates are
 * counted against the log afterwards, and when it first saw a comment written
 * after a mark (time to recover).
 */
import http from 'node:http';
import WebSocket from 'ws';
import { ERRORS, type ErrorCode } from '../core/errors.ts';

/**
 * What the load sends again: whatever the catalogue calls retriable, plus a spent
 * rate budget (the load is denser than one user) and ERR_INTERNAL (counted in the
 * report; kept so an unexpected failure shows as refusals, not as a lost write).
 */
function retriable(code: string): boolean {
  return ERRORS[code as ErrorCode]?.retriable === true || code === 'ERR_RATE_LIMITED' || code === 'ERR_INTERNAL';
}
/** A comment is re-sent for at most this long after its first send (the gateway's idempotency claim lasts 60 s). */
const RETRY_WINDOW_MS = 40_000;
const EMOJIS = ['heart', 'fire', 'laugh', 'clap'];

export interface LoadOptions {
  urls: string[];
  rooms: string[];
  /** Comments per second, all rooms together. */
  rate: number;
  reactionRate: number;
  /** Share of the comments posted over HTTP (the rest as WebSocket frames). */
  httpShare: number;
  token(user: string): string;
  log(m: string): void;
}

export interface AckedComment {
  seq: number;
  room: string;
  eventId: string;
  clientMsgId: string;
}

export interface Tick {
  /** ms since the epoch (start of the second). */
  at: number;
  sent: number;
  acked: number;
  refused: number;
  delivered: number;
  p50: number;
  p99: number;
}

interface Pending {
  kind: 'comment' | 'reaction';
  seq: number;
  room: string;
  clientMsgId?: string;
  emoji?: string;
  firstSentAt: number;
  tries: number;
}

const now = () => Date.now();

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** What a viewer (WebSocket or poller) was shown of its room. */
export class Observer {
  /** Every comment ever shown. */
  readonly received = new Set<string>();
  /** Shown since the last fresh snapshot: a comment shown twice here is a duplicate. */
  private shown = new Set<string>();
  readonly duplicates: string[] = [];
  /** Offsets after which the viewer must see every comment (its first position). */
  startOffset: number | undefined;
  /** Offset ranges a fresh snapshot (unrecoverable position, new epoch) excused: the client was told. */
  readonly excused: [number, number][] = [];
  resets = 0;
  reconnects = 0;
  degraded = 0;
  last: { offset: number; epoch: number } | undefined;
  recoveredAt: number | undefined;
  /** A fresh snapshot came after the mark (what recovery from a wipe waits for). */
  resyncedAfterMark = false;

  constructor(
    readonly room: string,
    readonly kind: 'ws' | 'poll',
    readonly load: Load,
  ) {}

  snapshot(items: { kind: string; eventId: string; text?: string }[], position: { offset: number; epoch: number }, fresh: boolean): void {
    if (this.startOffset === undefined) this.startOffset = position.offset;
    else if (fresh) {
      this.resets++;
      this.excused.push([(this.last?.offset ?? -1) + 1, position.offset]);
      if (this.load.markAt !== undefined) this.resyncedAfterMark = true;
    }
    if (fresh) this.shown = new Set();
    for (const i of items) if (i.kind === 'comment') this.deliver(i.eventId, i.text, false);
    // A resume's snapshot has no items and is followed by the catch-up: its position counts once that came.
    if (fresh || this.last === undefined) this.last = position;
  }

  /** Forgets what was shown (once checked): a run keeps many phases' results. */
  release(): void {
    this.received.clear();
    this.shown.clear();
  }

  /** The gateway switched this socket to a lighter stream (too slow a reader): from here on it was told, not a gap. */
  degrade(): void {
    this.degraded++;
    this.excused.push([(this.last?.offset ?? -1) + 1, Number.MAX_SAFE_INTEGER]);
  }

  deliver(eventId: string, text: string | undefined, live: boolean): void {
    if (this.shown.has(eventId)) this.duplicates.push(eventId);
    this.shown.add(eventId);
    this.received.add(eventId);
    const seq = text ? seqOf(text) : undefined;
    if (seq === undefined) return;
    const sentAt = this.load.sentAt(seq);
    if (sentAt === undefined) return;
    const t = now();
    if (live && this.kind === 'ws') this.load.latency(t - sentAt);
    if (this.recoveredAt === undefined && this.load.markAt !== undefined && sentAt >= this.load.markAt && (!this.load.markNeedsResync || this.resyncedAfterMark)) this.recoveredAt = t;
  }

  position(p: { offset: number; epoch: number }): void {
    this.last = p;
  }
}

const seqOf = (text: string): number | undefined => {
  const m = /^chaos (\d+)/.exec(text);
  return m ? Number(m[1]) : undefined;
};

export class Load {
  private running = false;
  private stopped = false;
  private seq = 0;
  private rseq = 0;
  private readonly firstSent = new Map<number, number>();
  readonly acked = new Map<string, AckedComment>();
  /** Reaction requests acknowledged: per event id, how many. */
  readonly reactionAcks = new Map<string, { room: string; count: number }>();
  /** Acks for an already acknowledged clientMsgId naming another event: a duplicate the client saw. */
  ackConflicts = 0;
  refused = new Map<string, number>();
  unknown = 0;
  sentComments = 0;
  sentReactions = 0;
  skipped = 0;
  markAt: number | undefined;
  /** Recovery counts only once the viewer got a fresh snapshot (after a wipe: the rebuilt projection, a new epoch). */
  markNeedsResync = false;
  readonly ticks: Tick[] = [];
  private cur = { sent: 0, acked: 0, refused: 0, delivered: 0, lat: [] as number[] };
  private readonly writers: Writer[] = [];
  readonly observers: Observer[] = [];
  private readonly viewers: WsViewer[] = [];
  private readonly pollers: Poller[] = [];
  private timers: NodeJS.Timeout[] = [];
  readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  private t0 = 0;
  private pendingHttp = 0;
  /** Writes waiting for their retry timer. */
  private retrying = 0;

  constructor(readonly o: LoadOptions) {}

  sentAt(seq: number): number | undefined {
    return this.firstSent.get(seq);
  }

  latency(ms: number): void {
    this.cur.delivered++;
    this.cur.lat.push(ms);
  }

  /** Viewers' recovery is measured for comments first sent from now on. */
  mark(at = now(), needsResync = false): void {
    this.markAt = at;
    this.markNeedsResync = needsResync;
    for (const o of this.observers) {
      o.recoveredAt = undefined;
      o.resyncedAfterMark = false;
    }
  }

  /** Time from the mark until every WebSocket viewer was shown a comment written after it; undefined until then. */
  recoveryMs(): number | undefined {
    if (this.markAt === undefined) return undefined;
    const ws = this.observers.filter((o) => o.kind === 'ws');
    if (ws.some((o) => o.recoveredAt === undefined)) return undefined;
    return Math.max(...ws.map((o) => o.recoveredAt!)) - this.markAt;
  }

  async start(): Promise<void> {
    const { rooms, urls } = this.o;
    rooms.forEach((room, i) => {
      this.writers.push(new Writer(this, room, i % urls.length));
      for (let g = 0; g < urls.length; g++) {
        const v = new WsViewer(this, room, (i + g) % urls.length);
        this.viewers.push(v);
        this.observers.push(v.obs);
      }
      const p = new Poller(this, room, (i + 1) % urls.length);
      this.pollers.push(p);
      this.observers.push(p.obs);
    });
    for (const v of this.viewers) v.connect();
    for (const w of this.writers) w.connect();
    // Writers and viewers connected before the first write.
    const deadline = now() + 30_000;
    while (now() < deadline && (this.writers.some((w) => !w.open) || this.viewers.some((v) => v.obs.last === undefined))) await new Promise((r) => setTimeout(r, 50));
    for (const p of this.pollers) void p.run();
    this.running = true;
    this.t0 = now();
    let lastSecond = this.t0;
    let doneComments = 0;
    let doneReactions = 0;
    this.timers.push(
      setInterval(() => {
        if (!this.running) return;
        const el = (now() - this.t0) / 1000;
        const wantC = Math.floor(el * this.o.rate) - doneComments;
        const wantR = Math.floor(el * this.o.reactionRate) - doneReactions;
        for (let k = 0; k < wantC; k++) this.sendComment((doneComments + k) % rooms.length);
        for (let k = 0; k < wantR; k++) this.sendReaction((doneReactions + k) % rooms.length);
        doneComments += Math.max(0, wantC);
        doneReactions += Math.max(0, wantR);
      }, 10),
      setInterval(() => {
        const t = now();
        if (t - lastSecond < 1000) return;
        const lat = this.cur.lat.sort((a, b) => a - b);
        this.ticks.push({ at: lastSecond, sent: this.cur.sent, acked: this.cur.acked, refused: this.cur.refused, delivered: this.cur.delivered, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) });
        this.cur = { sent: 0, acked: 0, refused: 0, delivered: 0, lat: [] };
        lastSecond += 1000;
      }, 100),
    );
  }

  /** Stops writing; waits (at most `ms`) until every write has its answer. */
  async stopWriting(ms = 45_000): Promise<void> {
    this.running = false;
    const deadline = now() + ms;
    while (now() < deadline && (this.pendingCount() > 0 || this.pendingHttp > 0 || this.retrying > 0)) await new Promise((r) => setTimeout(r, 100));
    this.unknown += this.pendingCount() + this.pendingHttp + this.retrying;
    this.stopped = true;
    for (const w of this.writers) w.close();
  }

  get writing(): boolean {
    return !this.stopped;
  }

  private pendingCount(): number {
    return this.writers.reduce((a, w) => a + w.pending.size + w.queue.length, 0);
  }

  async close(): Promise<void> {
    this.running = false;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    for (const w of this.writers) w.close();
    for (const v of this.viewers) v.close();
    for (const p of this.pollers) p.stop();
    this.agent.destroy();
    for (const o of this.observers) o.release();
    this.firstSent.clear();
  }

  private sendComment(roomIndex: number): void {
    const room = this.o.rooms[roomIndex]!;
    const w = this.writers[roomIndex]!;
    if (w.pending.size + w.queue.length > 3000) {
      this.skipped++;
      return;
    }
    const seq = this.seq++;
    this.firstSent.set(seq, now());
    this.sentComments++;
    this.cur.sent++;
    const p: Pending = { kind: 'comment', seq, room, clientMsgId: `cm-${seq}-${room}`, firstSentAt: now(), tries: 0 };
    if (Math.random() < this.o.httpShare) this.postHttp(p, roomIndex % this.o.urls.length);
    else w.send(p);
  }

  private sendReaction(roomIndex: number): void {
    const room = this.o.rooms[roomIndex]!;
    const w = this.writers[roomIndex]!;
    if (w.pending.size + w.queue.length > 3000) {
      this.skipped++;
      return;
    }
    this.sentReactions++;
    this.cur.sent++;
    w.send({ kind: 'reaction', seq: this.rseq++, room, emoji: EMOJIS[this.rseq % EMOJIS.length]!, firstSentAt: now(), tries: 0 });
  }

  ackComment(p: Pending, eventId: string): void {
    const prev = this.acked.get(p.clientMsgId!);
    if (prev) {
      if (prev.eventId !== eventId) this.ackConflicts++;
      return;
    }
    this.acked.set(p.clientMsgId!, { seq: p.seq, room: p.room, eventId, clientMsgId: p.clientMsgId! });
    this.cur.acked++;
  }

  ackReaction(p: Pending, eventId: string): void {
    const r = this.reactionAcks.get(eventId) ?? { room: p.room, count: 0 };
    r.count++;
    this.reactionAcks.set(eventId, r);
    this.cur.acked++;
  }

  refuse(code: string): void {
    this.refused.set(code, (this.refused.get(code) ?? 0) + 1);
    this.cur.refused++;
  }

  /** A refused or unanswered write: retried when it may be, else counted. */
  retryOrDrop(p: Pending, code: string | undefined, afterMs: number, resend: (p: Pending) => void): void {
    const again = p.kind === 'comment' ? code === undefined || retriable(code) : code !== undefined && retriable(code);
    if (code) this.refuse(code);
    if (!again || this.stopped || (p.kind === 'comment' && now() - p.firstSentAt > RETRY_WINDOW_MS)) {
      if (code === undefined || code === 'ERR_IN_PROGRESS') this.unknown++;
      return;
    }
    p.tries++;
    this.retrying++;
    const t = setTimeout(() => {
      this.retrying--;
      if (!this.stopped) resend(p); // else counted as unanswered by stopWriting
    }, Math.max(100, afterMs) * (1 + Math.random() * 0.3));
    t.unref();
  }

  postHttp(p: Pending, gw: number): void {
    const url = new URL(`/v1/rooms/${encodeURIComponent(p.room)}/comments`, this.o.urls[gw]!);
    const body = JSON.stringify({ text: `chaos ${p.seq} ${p.room}`, clientMsgId: p.clientMsgId });
    this.pendingHttp++;
    let done = false;
    const finish = (status: number | undefined, json: { eventId?: string; code?: string } | undefined, retryAfter: number) => {
      if (done) return;
      done = true;
      this.pendingHttp--;
      if (status === 202 && json?.eventId) return this.ackComment(p, json.eventId);
      // A connection that failed goes to the other gateway; a refusal retries where it was.
      const next = status === undefined ? (gw + 1) % this.o.urls.length : gw;
      this.retryOrDrop(p, status === undefined ? undefined : (json?.code ?? `HTTP_${status}`), retryAfter * 1000 || 250, (q) => this.postHttp(q, next));
    };
    const req = http.request(
      url,
      { method: 'POST', agent: this.agent, headers: { 'content-type': 'application/json', authorization: `Bearer ${this.o.token(`chaos-h-${p.room}`)}` }, timeout: 30_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let json: { eventId?: string; code?: string } | undefined;
          try {
            json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof json;
          } catch {
            json = undefined;
          }
          finish(res.statusCode, json, Number(res.headers['retry-after'] ?? 0));
        });
        res.on('error', () => finish(undefined, undefined, 0));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => finish(undefined, undefined, 0));
    req.end(body);
  }
}

/** One room's signed-in socket: comment and reaction frames, answered by ack/nack frames. */
class Writer {
  ws: WebSocket | undefined;
  open = false;
  readonly pending = new Map<string, Pending>();
  readonly queue: Pending[] = [];
  private frame = 0;
  private closed = false;

  constructor(
    private readonly load: Load,
    private readonly room: string,
    private gw: number,
  ) {}

  connect(): void {
    if (this.closed) return;
    const base = this.load.o.urls[this.gw]!.replace(/^http/, 'ws');
    const ws = new WebSocket(`${base}/v1/rooms/${encodeURIComponent(this.room)}/ws?view=ordered&token=${this.load.o.token(`chaos-w-${this.room}`)}`);
    this.ws = ws;
    ws.on('message', (data: Buffer) => {
      if (!this.open) {
        // The first frame is the snapshot: the socket is in the room and its write frames are read.
        this.open = true;
        const q = this.queue.splice(0);
        for (const p of q) this.send(p);
      }
      const s = data.toString('utf8');
      // Only answers matter here (the viewers watch the room); they are small frames.
      if (!s.startsWith('{"type":"ack"') && !s.startsWith('{"type":"nack"')) return;
      const m = JSON.parse(s) as { type: string; id: string | null; eventId?: string; code?: string; retryAfterSec?: number };
      const p = m.id ? this.pending.get(m.id) : undefined;
      if (!p) return;
      this.pending.delete(m.id!);
      if (m.type === 'ack') {
        if (p.kind === 'comment') this.load.ackComment(p, m.eventId!);
        else this.load.ackReaction(p, m.eventId!);
      } else this.load.retryOrDrop(p, m.code, (m.retryAfterSec ?? 0) * 1000 || 250, (q) => this.send(q));
    });
    ws.on('close', () => {
      this.open = false;
      // Unanswered: comments are re-sent (same clientMsgId), reactions are not (they may have counted).
      const lost = [...this.pending.values()];
      this.pending.clear();
      for (const p of lost) {
        if (p.kind === 'comment') this.load.retryOrDrop(p, undefined, 200, (q) => this.send(q));
        else this.load.unknown++;
      }
      if (this.closed) return;
      this.gw = (this.gw + 1) % this.load.o.urls.length;
      setTimeout(() => this.connect(), 200).unref();
    });
    ws.on('error', () => {});
  }

  send(p: Pending): void {
    if (this.closed) {
      this.load.unknown++;
      return;
    }
    if (!this.open || !this.ws) {
      this.queue.push(p);
      return;
    }
    const id = `${this.frame++}`;
    this.pending.set(id, p);
    const frame =
      p.kind === 'comment'
        ? { type: 'comment', id, text: `chaos ${p.seq} ${p.room}`, clientMsgId: p.clientMsgId }
        : { type: 'reaction', id, emoji: p.emoji };
    this.ws.send(JSON.stringify(frame));
  }

  close(): void {
    this.closed = true;
    this.ws?.close();
  }
}

/** A room's viewer on one gateway; resumes where it was on the other gateway when the socket drops. */
class WsViewer {
  readonly obs: Observer;
  private ws: WebSocket | undefined;
  private closed = false;

  constructor(
    private readonly load: Load,
    readonly room: string,
    private gw: number,
  ) {
    this.obs = new Observer(room, 'ws', load);
  }

  connect(): void {
    if (this.closed) return;
    const base = this.load.o.urls[this.gw]!.replace(/^http/, 'ws');
    const since = this.obs.last ? `&since=${this.obs.last.epoch}.${this.obs.last.offset}` : '';
    const ws = new WebSocket(`${base}/v1/rooms/${encodeURIComponent(this.room)}/ws?view=ordered${since}`);
    this.ws = ws;
    ws.on('message', (data: Buffer) => {
      const m = JSON.parse(data.toString('utf8')) as {
        type: string;
        position?: { offset: number; epoch: number };
        items?: { kind: string; eventId: string; text?: string }[];
        events?: { t: string; entry?: { eventId: string; text: string } }[];
        reason?: string;
      };
      if (m.type === 'snapshot') this.obs.snapshot(m.items ?? [], m.position!, m.reason !== undefined || this.obs.startOffset === undefined);
      else if (m.type === 'catchup') {
        for (const i of m.items ?? []) if (i.kind === 'comment') this.obs.deliver(i.eventId, i.text, false);
        this.obs.position(m.position!);
      } else if (m.type === 'degraded') this.obs.degrade();
      else if (m.type === 'batch') {
        for (const e of m.events ?? []) if (e.t === 'comment' && e.entry) this.obs.deliver(e.entry.eventId, e.entry.text, true);
        this.obs.position(m.position!);
      }
    });
    ws.on('close', () => {
      if (this.closed) return;
      this.obs.reconnects++;
      this.gw = (this.gw + 1) % this.load.o.urls.length;
      setTimeout(() => this.connect(), 100 + Math.random() * 200).unref();
    });
    ws.on('error', () => {});
  }

  close(): void {
    this.closed = true;
    this.ws?.close();
  }
}

/** A room's HTTP poller: `GET /feed?since=` at the pace the gateway asks for. */
class Poller {
  readonly obs: Observer;
  private stopped = false;

  constructor(
    private readonly load: Load,
    readonly room: string,
    private gw: number,
  ) {
    this.obs = new Observer(room, 'poll', load);
  }

  async run(): Promise<void> {
    while (!this.stopped) {
      let wait = 250;
      try {
        const since = this.obs.last ? `&since=${this.obs.last.epoch}.${this.obs.last.offset}` : '';
        const res = await fetch(`${this.load.o.urls[this.gw]}/v1/rooms/${encodeURIComponent(this.room)}/feed?view=ordered&limit=500${since}`, { signal: AbortSignal.timeout(10_000) });
        if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
        const body = (await res.json()) as { events: { kind: string; eventId: string; text?: string }[]; position: { offset: number; epoch: number }; nextPollMs: number; unrecoverable?: true };
        const fresh = this.obs.last === undefined || body.unrecoverable === true || body.position.epoch !== this.obs.last.epoch;
        if (fresh) this.obs.snapshot(body.events, body.position, true);
        else {
          for (const i of body.events) if (i.kind === 'comment') this.obs.deliver(i.eventId, i.text, false);
          this.obs.position(body.position);
        }
        wait = body.events.length >= 500 ? 0 : Math.min(body.nextPollMs, 1000);
      } catch {
        this.obs.reconnects++;
        this.gw = (this.gw + 1) % this.load.o.urls.length;
      }
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  }

  stop(): void {
    this.stopped = true;
  }
}
