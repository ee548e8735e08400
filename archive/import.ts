/**
 * Importing a recorded chat (JSON Lines, optionally gzipped, as described in
 * ../shared/data/README.md) into the event log, so a finished stream can be
 * replayed or a live one simulated:
 *
 *   {"room": str, "offset_ms": int, "ts": int|null, "user": str|null, "text": str, "kind": "comment", "extra": {...}}
 *
 * Each source room becomes a room (its name made a valid room id, or the one
 * given), framed by StreamStarted and StreamEnded; each line a CommentPosted
 * with its original video offset and display attributes.
 *
 * - As fast as possible (the default): event time is the line's `ts` (when it
 *   has none: the stream is placed so that it ended when the file was last
 *   modified), and event ids are derived from the file, room and line, so
 *   importing the same file twice writes the same events (ClickHouse keeps one
 *   of each; the live projections, keyed by log position, would show both).
 * - `speed: x`: paced by offset_ms at x times real speed across all rooms,
 *   event time = when it is sent: a live stream, simulated.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import zlib from 'node:zlib';
import { AppError } from '../core/errors.ts';
import { illFormedPath } from '../core/unicode.ts';
import type { EventCodec } from '../schemas/codec.ts';
import { comment, makeEvent, newEventId, type PayloadOf, type RoomEvent } from '../schemas/events.ts';
import type { LogWriter } from '../topics/writer.ts';

export interface ChatLine {
  room: string;
  offset_ms: number;
  ts: number | null;
  user: string | null;
  text: string;
  kind: string;
  extra?: Record<string, unknown>;
}

/** Reads a JSON Lines file (gzip when it ends in .gz), one object per line. */
export async function readChatLines(file: string): Promise<ChatLine[]> {
  const input = fs.createReadStream(file);
  const stream = file.endsWith('.gz') ? input.pipe(zlib.createGunzip()) : input;
  const out: ChatLine[] = [];
  let n = 0;
  for await (const line of readline.createInterface({ input: stream, crlfDelay: Infinity })) {
    n++;
    if (!line.trim()) continue;
    let o: ChatLine;
    try {
      o = JSON.parse(line) as ChatLine;
    } catch (cause) {
      throw new AppError('ERR_IMPORT_BAD_LINE', `${file}:${n}: not JSON`, { cause });
    }
    if (typeof o.room !== 'string' || typeof o.offset_ms !== 'number' || typeof o.text !== 'string') {
      throw new AppError('ERR_IMPORT_BAD_LINE', `${file}:${n}: needs room (string), offset_ms (number) and text (string)`);
    }
    // Checked here, before anything is produced: the codec would refuse the event half-way through the import.
    const illFormed = illFormedPath(o);
    if (illFormed) throw new AppError('ERR_IMPORT_BAD_LINE', `${file}:${n}: ${illFormed} is not well-formed Unicode (a lone surrogate)`);
    out.push(o);
  }
  return out;
}

const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

/** A valid room id for a source room name: kept when valid, else made valid and suffixed with a hash of the name. */
export function roomIdFor(source: string): string {
  if (ROOM_RE.test(source)) return source;
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 8);
  const base = source
    .replace(/[^A-Za-z0-9_.:-]+/g, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .replace(/-+$/, '')
    .slice(0, 64 - 9);
  return base ? `${base}-${hash}` : `room-${hash}`;
}

const NICO_COLORS: Record<string, number> = {
  white: 0xffffff, red: 0xff0000, pink: 0xff8080, orange: 0xffc000, yellow: 0xffff00, green: 0x00ff00, cyan: 0x00ffff, blue: 0x0000ff, purple: 0xc000ff, black: 0x000000,
  white2: 0xcccc99, niconicowhite: 0xcccc99, red2: 0xcc0033, truered: 0xcc0033, pink2: 0xff33cc, orange2: 0xff6600, passionorange: 0xff6600, yellow2: 0x999900, madyellow: 0x999900,
  green2: 0x00cc66, elementalgreen: 0x00cc66, cyan2: 0x00cccc, blue2: 0x3399ff, marineblue: 0x3399ff, purple2: 0x6633cc, nobleviolet: 0x6633cc, black2: 0x666666,
};

/** Display attributes from a line's `extra` (Bilibili mode/size/colour, Niconico pos/size/colour). */
export function displayOf(extra: Record<string, unknown> = {}): Pick<PayloadOf<'CommentPosted'>, 'mode' | 'size' | 'color'> {
  let mode: PayloadOf<'CommentPosted'>['mode'] = 'scroll';
  const bMode = extra.mode;
  if (bMode === 4 || extra.pos === 'shita') mode = 'bottom';
  else if (bMode === 5 || extra.pos === 'ue') mode = 'top';
  let size: PayloadOf<'CommentPosted'>['size'] = 'medium';
  if (typeof extra.size === 'number') size = extra.size <= 18 ? 'small' : extra.size >= 36 ? 'large' : 'medium';
  else if (extra.size === 'small') size = 'small';
  else if (extra.size === 'big') size = 'large';
  let color = 0xffffff;
  const c = extra.color;
  if (typeof c === 'string') {
    const hex = /^#?([0-9a-f]{6})$/i.exec(c);
    if (hex) color = parseInt(hex[1]!, 16);
    else if (NICO_COLORS[c.toLowerCase()] !== undefined) color = NICO_COLORS[c.toLowerCase()]!;
  } else if (typeof c === 'number' && c >= 0 && c <= 0xffffff) color = c;
  return { mode, size, color };
}

/** A UUIDv7-shaped id with the given time and bits derived from `seed`: the same line always gets the same id. */
export function stableEventId(ms: number, seed: string): string {
  const b = createHash('sha256').update(seed).digest().subarray(0, 16);
  let t = BigInt(Math.max(0, Math.floor(ms)));
  for (let i = 5; i >= 0; i--) {
    b[i] = Number(t & 0xffn);
    t >>= 8n;
  }
  b[6] = (b[6]! & 0x0f) | 0x70;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export interface RoomPlan {
  source: string;
  room: string;
  lines: ChatLine[];
}

/** Which source rooms go where. `room` without `fromRoom` takes the file's first room. */
export function planRooms(lines: ChatLine[], opts: { room?: string; fromRoom?: string; limit?: number }): RoomPlan[] {
  const bySource = new Map<string, ChatLine[]>();
  for (const l of lines) {
    const list = bySource.get(l.room) ?? [];
    list.push(l);
    bySource.set(l.room, list);
  }
  let sources = [...bySource.keys()];
  if (opts.fromRoom !== undefined) {
    sources = sources.filter((s) => s === opts.fromRoom || roomIdFor(s) === opts.fromRoom);
    if (sources.length === 0) throw new AppError('ERR_IMPORT_NO_ROOM', `no room "${opts.fromRoom}" in the file; it has: ${[...bySource.keys()].slice(0, 20).join(', ')}`);
  } else if (opts.room !== undefined) {
    sources = sources.slice(0, 1);
  }
  if (opts.room !== undefined && !ROOM_RE.test(opts.room)) throw new AppError('ERR_IMPORT_ROOM_ID', `"${opts.room}" is not a valid room id (${ROOM_RE.source})`);
  let budget = opts.limit ?? Infinity;
  const plans: RoomPlan[] = [];
  for (const s of sources) {
    if (budget <= 0) break;
    const sorted = [...bySource.get(s)!].sort((a, b) => a.offset_ms - b.offset_ms);
    const taken = sorted.slice(0, Math.min(sorted.length, budget));
    budget -= taken.length;
    plans.push({ source: s, room: opts.room ?? roomIdFor(s), lines: taken });
  }
  return plans;
}

const importer = { userId: 'import', role: 'system' as const };

/**
 * The events of one room, in order, for an import as fast as possible (pure).
 * `endedAt` places a recording without `ts`: its last comment at that time
 * (the import uses the file's modification time, so a re-import of the same
 * file gives the same times and ids).
 */
export function roomEvents(plan: RoomPlan, file: string, endedAt: number): RoomEvent[] {
  const first = plan.lines[0]?.offset_ms ?? 0;
  const last = plan.lines[plan.lines.length - 1]?.offset_ms ?? 0;
  // Event time of video offset 0: the median of ts - offset where lines have a ts, else "ended at import time".
  const anchors = plan.lines.filter((l) => typeof l.ts === 'number').map((l) => l.ts! - l.offset_ms).sort((a, b) => a - b);
  const origin = anchors.length > 0 ? anchors[Math.floor(anchors.length / 2)]! : Math.floor(endedAt) - Math.max(last, 0);
  const seed = `${path.basename(file)}\n${plan.source}\n${plan.room}\n`;
  const events: RoomEvent[] = [
    makeEvent({ eventId: stableEventId(origin, `${seed}start`), roomId: plan.room, actor: importer, occurredAt: origin, videoOffsetMs: 0, payload: { type: 'StreamStarted', title: plan.source } }),
  ];
  plan.lines.forEach((l, i) => {
    const at = typeof l.ts === 'number' ? l.ts : origin + l.offset_ms;
    events.push(
      makeEvent({
        eventId: stableEventId(at, `${seed}${i}`),
        roomId: plan.room,
        actor: { userId: l.user ?? 'anonymous', role: 'viewer' },
        occurredAt: at,
        videoOffsetMs: l.offset_ms,
        payload: comment(l.text, displayOf(l.extra)),
      }),
    );
  });
  const endAt = origin + Math.max(last, first, 0);
  events.push(makeEvent({ eventId: stableEventId(endAt, `${seed}end`), roomId: plan.room, actor: importer, occurredAt: endAt, videoOffsetMs: Math.max(last, 0), payload: { type: 'StreamEnded', reason: 'import' } }));
  return events;
}

export interface ImportOptions {
  file: string;
  room?: string;
  fromRoom?: string;
  /** Real-time factor; absent = as fast as possible. */
  speed?: number;
  limit?: number;
  /** To the log's current generation, under a lease a repartition waits on (topics/writer.ts). */
  writer: Pick<LogWriter, 'send'>;
  codec: EventCodec;
  now?: () => number;
  onStart?(total: number, plans: RoomPlan[]): void;
  onProgress?(acked: number): void;
}

export interface ImportResult {
  rooms: { source: string; room: string; comments: number }[];
  events: number;
  seconds: number;
}

/** Sends records with at most `window` unacknowledged (the producer group-commits them). */
class Pipeline {
  private readonly pending = new Set<Promise<void>>();
  private failed: { err: unknown } | undefined;
  acked = 0;
  constructor(
    private readonly window: number,
    private readonly onAck: (n: number) => void,
  ) {}
  async add(send: () => Promise<unknown>): Promise<void> {
    while (this.pending.size >= this.window) await Promise.race(this.pending);
    if (this.failed) throw this.failed.err;
    const p: Promise<void> = send()
      .then(
        () => this.onAck(++this.acked),
        (err: unknown) => void (this.failed ??= { err }),
      )
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
  }
  async drain(): Promise<void> {
    await Promise.all(this.pending);
    if (this.failed) throw this.failed.err;
  }
}

export async function importChat(o: ImportOptions): Promise<ImportResult> {
  const now = o.now ?? Date.now;
  const t0 = now();
  const lines = await readChatLines(o.file);
  const plans = planRooms(lines.filter((l) => (l.kind ?? 'comment') === 'comment'), { room: o.room, fromRoom: o.fromRoom, limit: o.limit });
  const total = plans.reduce((a, p) => a + p.lines.length + 2, 0);
  o.onStart?.(total, plans);
  const pipeline = new Pipeline(o.speed === undefined ? 20_000 : 5_000, (n) => o.onProgress?.(n));
  const send = (e: RoomEvent) => pipeline.add(() => o.writer.send({ key: e.roomId, value: o.codec.encode(e), headers: { 'event-type': e.payload.type, source: 'import' } }));

  if (o.speed === undefined) {
    const fileTime = fs.statSync(o.file).mtimeMs;
    for (const plan of plans) for (const e of roomEvents(plan, o.file, fileTime)) await send(e);
  } else {
    // All rooms on one clock: lines in offset order, each sent when its offset comes up.
    const speed = o.speed;
    const timeline = plans.flatMap((p) => p.lines.map((l) => ({ plan: p, line: l }))).sort((a, b) => a.line.offset_ms - b.line.offset_ms);
    const start = timeline[0]?.line.offset_ms ?? 0;
    const wall0 = now();
    for (const p of plans) await send(makeEvent({ roomId: p.room, actor: importer, occurredAt: wall0, videoOffsetMs: 0, payload: { type: 'StreamStarted', title: p.source } }));
    for (const { plan, line } of timeline) {
      const due = wall0 + (line.offset_ms - start) / speed;
      const wait = due - now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await send(
        makeEvent({
          eventId: newEventId(),
          roomId: plan.room,
          actor: { userId: line.user ?? 'anonymous', role: 'viewer' },
          occurredAt: now(),
          videoOffsetMs: line.offset_ms,
          payload: comment(line.text, displayOf(line.extra)),
        }),
      );
    }
    for (const p of plans) {
      const last = p.lines[p.lines.length - 1]?.offset_ms ?? 0;
      await send(makeEvent({ roomId: p.room, actor: importer, occurredAt: now(), videoOffsetMs: Math.max(last, 0), payload: { type: 'StreamEnded', reason: 'import' } }));
    }
  }
  await pipeline.drain();
  return { rooms: plans.map((p) => ({ source: p.source, room: p.room, comments: p.lines.length })), events: pipeline.acked, seconds: (now() - t0) / 1000 };
}
