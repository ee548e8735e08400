/**
 * Live pushes end to end: a real processor (child process) applies events
 * from a private topic into Redis under a private key prefix and publishes
 * its notifications; real gateways built in process push them to real
 * WebSocket clients. Snapshot then batches in log order, resume without gap
 * or duplicate (from Redis and from the log), epoch change, shadow comments,
 * slow consumers, heartbeat reaping and graceful shutdown.
 */
import { createSigner } from 'fast-jwt';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { Config } from '../../core/config.ts';
import { readFeed } from '../../pipelines/read.ts';
import { epochKey, notifyChannel, type ProjectionNaming } from '../../pipelines/naming.ts';
import { createRegistry, EventCodec } from '../../schemas/codec.ts';
import { comment, makeEvent, type RoomEvent } from '../../schemas/events.ts';
import { subjectFor } from '../../schemas/registry.ts';
import { testConfig, waitFor } from '../../test/helpers.ts';
import { startService } from '../../test/processes.ts';
import type { ServiceProcess } from '../../services/spawn.ts';
import { prepareLog, worldEnv, worldId } from '../../services/world.ts';
import { logClient } from '../../topics/client.ts';
import { murmur2Partition, type Ack, type LogAdmin, type LogClient, type LogProducer } from '../../topics/kafka.ts';
import { buildGateway } from '../app.ts';
import { createGatewayDeps, type GatewayDeps } from '../deps.ts';
import { CLOSE, formatPosition, type BatchMessage, type CatchUpMessage, type Position, type ServerMessage, type SnapshotMessage } from '../protocol.ts';
import { pushMetrics } from './metrics.ts';

const base = testConfig();
const modes = base.test.redisModes.split(',').map((m) => m.trim()) as ('single' | 'cluster')[];

interface Gateway {
  app: FastifyInstance;
  deps: GatewayDeps;
  url: string;
  cfg: Config;
}

/** A private world per Redis topology: topics, key prefix, consumer groups, a processor, gateways. */
let kafka: LogClient;
let admin: LogAdmin;
let producer: LogProducer;
let codec: EventCodec;
let proc: ServiceProcess | undefined;
let env: Record<string, string>;
let naming: ProjectionNaming;
let gateways: Gateway[] = [];
let sockets: Conn[] = [];
let gw: Gateway;
let slowGw: Gateway;

async function startGateway(extra: Record<string, string>): Promise<Gateway> {
  const cfg = testConfig({ ...env, ...extra });
  const deps = await createGatewayDeps(cfg);
  const app = await buildGateway(deps);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const addr = app.server.address();
  if (!addr || typeof addr === 'string') throw new Error('no address');
  const g = { app, deps, url: `ws://127.0.0.1:${addr.port}`, cfg };
  gateways.push(g);
  return g;
}

async function setUp(mode: 'single' | 'cluster'): Promise<void> {
  const id = worldId(`push-${mode}`);
  env = worldEnv(id, 2, {
    REDIS_MODE: mode,
    // Redis keeps only the newest 10 items per room: older positions come from the log.
    FEED_MAX_ITEMS: '10',
  });
  naming = { keyPrefix: env.REDIS_KEY_PREFIX!, groupPrefix: env.PIPELINES_GROUP_PREFIX! };
  gateways = [];
  sockets = [];
  const cfg = await prepareLog(env);
  kafka = logClient(cfg, 'push-test');
  admin = kafka.admin();
  await admin.connect();
  codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(id) });
  await codec.init();
  producer = kafka.producer();
  await producer.connect();
  proc = await startService(['pipelines', 'run'], { ...env, MODERATION_ENABLED: 'false' });
  gw = await startGateway({ GATEWAY_ID: `${id}-gw`, PRESENCE_INTERVAL_MS: '200' });
  // Tiny thresholds, acted on at once: a socket that stops reading is degraded, then closed.
  slowGw = await startGateway({
    GATEWAY_ID: `${id}-slow`,
    PUSH_SAMPLED_ABOVE_BYTES: '1024',
    PUSH_TALLIES_ONLY_ABOVE_BYTES: String(512 * 1024),
    PUSH_CLOSE_ABOVE_BYTES: String(2 * 1024 * 1024),
    PUSH_SLOW_FOR_MS: '0',
    // Upgraded back only once its buffer is empty: a paused reader never is, so the degrade test stays degraded.
    PUSH_RECOVER_BELOW_BYTES: '0',
    PUSH_RECOVER_FOR_MS: '200',
    PUSH_HEARTBEAT_SEC: '3600',
  });
}

async function tearDown(): Promise<void> {
  for (const s of sockets) s.ws.terminate();
  for (const g of gateways) {
    await g.app.close().catch(() => undefined);
    await g.deps.close().catch(() => undefined);
  }
  await proc?.stop();
  await producer?.disconnect();
  await admin?.disconnect();
  await kafka?.close();
}

// ------------------------------------------------------------------ helpers

interface Conn {
  ws: WebSocket;
  msgs: ServerMessage[];
  raw: string[];
  closed: Promise<{ code: number; reason: string }>;
  isClosed: () => boolean;
}

function connect(g: Gateway, room: string, query: Record<string, string> = {}): Conn {
  const qs = new URLSearchParams(query).toString();
  const ws = new WebSocket(`${g.url}/v1/rooms/${encodeURIComponent(room)}/ws${qs ? `?${qs}` : ''}`);
  const msgs: ServerMessage[] = [];
  const raw: string[] = [];
  let done = false;
  ws.on('message', (data) => {
    const s = data.toString();
    raw.push(s);
    msgs.push(JSON.parse(s) as ServerMessage);
  });
  ws.on('error', () => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => {
      done = true;
      resolve({ code, reason: reason.toString() });
    }),
  );
  const c = { ws, msgs, raw, closed, isClosed: () => done };
  sockets.push(c);
  return c;
}

const token = (sub: string) => createSigner({ key: env.JWT_SECRET!, algorithm: 'HS256', expiresIn: 600_000 })({ sub });

let roomN = 0;
const newRoom = (what: string) => `${what}-${Date.now().toString(36)}-${roomN++}`;

const viewer = (userId: string) => ({ userId, role: 'viewer' as const });
const mod = { userId: 'mod', role: 'moderator' as const };
const say = (roomId: string, text: string, actor: { userId: string; role: 'viewer' | 'moderator' } = viewer('alice')) => makeEvent({ roomId, actor, payload: comment(text) }) as RoomEvent;
const del = (roomId: string, target: string) =>
  makeEvent({ roomId, actor: mod, payload: { type: 'CommentDeleted', targetEventId: target, deletedBy: 'mod', reason: 'test' } }) as RoomEvent;

async function produce(events: RoomEvent[]): Promise<Ack[]> {
  return Promise.all(events.map((e) => producer.send({ topic: env.TOPIC_ROOM_EVENTS!, key: e.roomId, value: codec.encode(e) })));
}

/** Waits until the ordered feed projection has applied up to `offset` for the room. */
async function applied(room: string, offset: number): Promise<void> {
  // Without a limit reached, the position is the projection's fence.
  await waitFor(async () => (await readFeed(gw.deps.redis, naming, room, { view: 'ordered', limit: 1000 })).position.offset >= offset || undefined, {
    what: `feed of ${room} to reach ${offset}`,
    timeoutMs: 30_000,
  });
}

interface Got {
  kind: 'comment' | 'delete';
  eventId: string;
  offset: number;
}

/** Every feed item a socket was given, in the order given: snapshot and catch-up items, batch comments and deletions. */
function itemsOf(msgs: ServerMessage[]): Got[] {
  const out: Got[] = [];
  for (const m of msgs) {
    if (m.type === 'snapshot' || m.type === 'catchup') for (const i of m.items) out.push({ kind: i.kind, eventId: i.eventId, offset: i.offset });
    if (m.type === 'batch') {
      for (const e of m.events) {
        if (e.t === 'comment') out.push({ kind: 'comment', eventId: e.entry.eventId, offset: e.entry.offset });
        if (e.t === 'delete') out.push({ kind: 'delete', eventId: e.eventId, offset: e.offset });
      }
    }
  }
  return out;
}
const commentIds = (msgs: ServerMessage[]) => itemsOf(msgs).filter((i) => i.kind === 'comment').map((i) => i.eventId);
const batches = (msgs: ServerMessage[]) => msgs.filter((m): m is BatchMessage => m.type === 'batch');
const snapshots = (msgs: ServerMessage[]) => msgs.filter((m): m is SnapshotMessage => m.type === 'snapshot');

/** The resume point a client keeps: the position of the last message that carried one. */
function lastPosition(msgs: ServerMessage[]): Position {
  for (let i = msgs.length - 1; i >= 0; i--) {
    const m = msgs[i]!;
    if ('position' in m) return m.position;
  }
  throw new Error('no position yet');
}

async function firstSnapshot(c: Conn): Promise<SnapshotMessage> {
  return waitFor(() => snapshots(c.msgs)[0], { what: 'the snapshot' });
}

// ------------------------------------------------------------------ tests

describe.each(modes)('push over WebSocket on %s Redis', (mode) => {
  beforeAll(() => setUp(mode));
  afterAll(() => tearDown());

  it('sends the snapshot first, then batches in log order, serialized once for every socket of the room', async () => {
    const room = newRoom('order');
    const a = connect(gw, room);
    const b = connect(gw, room);
    const s = connect(gw, room, { view: 'sampled' });
    for (const c of [a, b, s]) expect((await firstSnapshot(c)).items).toEqual([]);
    expect(a.msgs[0]!.type).toBe('snapshot');
    expect((a.msgs[0] as SnapshotMessage).view).toBe('ordered');
    expect((s.msgs[0] as SnapshotMessage).view).toBe('sampled');

    const framesBefore = (await pushMetrics.batchesSent.get()).values.reduce((x, v) => x + v.value, 0);
    const events = Array.from({ length: 300 }, (_, i) => say(room, `comment ${i}`, i % 10 === 0 ? mod : viewer(`u${i % 7}`)));
    // In chunks, as a live room sees them: many notifications, many batches.
    const acks: Ack[] = [];
    for (let i = 0; i < events.length; i += 20) acks.push(...(await produce(events.slice(i, i + 20))));
    const ids = events.map((e) => e.eventId);
    await waitFor(() => commentIds(a.msgs).length >= 300 && commentIds(b.msgs).length >= 300, { what: '300 comments on both sockets', timeoutMs: 30_000 });
    expect(commentIds(a.msgs)).toEqual(ids);
    expect(commentIds(b.msgs)).toEqual(ids);
    // Batched: far fewer frames than comments; both sockets got the very same bytes.
    const frames = batches(a.msgs).length;
    expect(frames).toBeLessThan(300);
    expect(b.raw.filter((r) => r.startsWith('{"type":"batch"'))).toEqual(a.raw.filter((r) => r.startsWith('{"type":"batch"')));
    const serialized = (await pushMetrics.batchesSent.get()).values.reduce((x, v) => x + v.value, 0) - framesBefore;
    console.log(`[push] 300 comments → ${frames} batch frames per socket; ${serialized} batches serialized for 3 sockets on 2 views`);
    // Positions only move forward and end at the last comment.
    const offsets = batches(a.msgs).map((m) => m.position.offset);
    expect(offsets).toEqual([...offsets].sort((x, y) => x - y));
    expect(lastPosition(a.msgs).offset).toBe(Math.max(...acks.map((k) => Number(k.offset))));

    // The sampled view: a subset of the same comments, in the same order; moderators' always kept.
    const modIds = events.filter((e) => e.actor.role === 'moderator').map((e) => e.eventId);
    await waitFor(() => modIds.every((id) => commentIds(s.msgs).includes(id)), { what: 'moderator comments in the sampled view' });
    const metrics = await (await fetch(`${gw.url.replace('ws:', 'http:')}/metrics`)).text();
    expect(metrics).toMatch(/danmaku_push_batches_total\{mode="ordered"\} \d+/);
    expect(metrics).toMatch(/danmaku_push_sockets_open \d+/);
    const sampled = commentIds(s.msgs);
    expect(sampled.length).toBeLessThanOrEqual(300);
    expect(ids.filter((id) => sampled.includes(id))).toEqual(sampled);
  });

  it('resumes with `since` after a disconnect: no gap, no duplicate (from Redis)', async () => {
    const room = newRoom('resume');
    const c1 = connect(gw, room);
    await firstSnapshot(c1);
    const first = Array.from({ length: 20 }, (_, i) => say(room, `before ${i}`));
    await produce(first);
    await waitFor(() => commentIds(c1.msgs).length === 20, { what: 'the first 20' });
    const pos = lastPosition(c1.msgs);
    c1.ws.close();
    expect((await c1.closed).code).toBe(1005); // the server echoes a code-less close as it came

    const missed = Array.from({ length: 5 }, (_, i) => say(room, `missed ${i}`));
    const acks = await produce(missed);
    await applied(room, Number(acks[acks.length - 1]!.offset));

    const c2 = connect(gw, room, { since: formatPosition(pos) });
    const live = Array.from({ length: 3 }, (_, i) => say(room, `live ${i}`));
    await produce(live); // races the catch-up on purpose
    await waitFor(() => commentIds(c2.msgs).length >= 8, { what: 'missed + live comments' });
    const snap = c2.msgs[0] as SnapshotMessage;
    expect(snap.type).toBe('snapshot');
    expect(snap.items).toEqual([]);
    expect(snap.reason).toBeUndefined();
    const cu = c2.msgs[1] as CatchUpMessage;
    expect(cu.type).toBe('catchup');
    expect(cu.source).toBe('redis');
    expect(commentIds(c2.msgs)).toEqual([...missed, ...live].map((e) => e.eventId));
    expect([...commentIds(c1.msgs), ...commentIds(c2.msgs)]).toEqual([...first, ...missed, ...live].map((e) => e.eventId));
  });

  it('resumes from a position older than Redis holds, from the log, with deletions applied', async () => {
    const room = newRoom('gap');
    const c1 = connect(gw, room);
    await firstSnapshot(c1);
    const early = Array.from({ length: 5 }, (_, i) => say(room, `early ${i}`));
    await produce(early);
    await waitFor(() => commentIds(c1.msgs).length === 5, { what: 'the early comments' });
    const pos = lastPosition(c1.msgs);
    c1.ws.close();
    await c1.closed;

    // 30 comments (Redis keeps 10), then one of them deleted and one from before the gap.
    const later = Array.from({ length: 30 }, (_, i) => say(room, `later ${i}`, viewer(`v${i % 3}`)));
    await produce(later);
    const dels = [del(room, later[3]!.eventId), del(room, early[0]!.eventId)];
    const delAcks = await produce(dels);
    await applied(room, Number(delAcks[1]!.offset));
    const oldest = (await readFeed(gw.deps.redis, naming, room, { view: 'ordered' })).oldestOffset!;
    expect(oldest).toBeGreaterThan(pos.offset + 1); // Redis really lost part of the gap

    const c2 = connect(gw, room, { since: formatPosition(pos) });
    const cu = await waitFor(() => c2.msgs.find((m): m is CatchUpMessage => m.type === 'catchup'), { what: 'the catch-up', timeoutMs: 30_000 });
    expect(c2.msgs[0]!.type).toBe('snapshot');
    expect((c2.msgs[0] as SnapshotMessage).items).toEqual([]);
    expect(cu.source).toBe('log');
    const want = [...later.map((e) => e.eventId).filter((id) => id !== later[3]!.eventId).map((id) => ['comment', id]), ['delete', later[3]!.eventId], ['delete', early[0]!.eventId]];
    expect(cu.items.map((i) => [i.kind, i.eventId])).toEqual(want);
    expect(cu.position.offset).toBe(Number(delAcks[1]!.offset));

    // Live continues after the catch-up, nothing twice.
    const after = say(room, 'after the gap');
    await produce([after]);
    await waitFor(() => commentIds(c2.msgs).includes(after.eventId), { what: 'the live comment' });
    const all = itemsOf(c2.msgs).map((i) => `${i.kind}:${i.eventId}`);
    expect(new Set(all).size).toBe(all.length);
  });

  it('gives a fresh snapshot with reason "epoch" when the room epoch changes', async () => {
    const room = newRoom('epoch');
    const c = connect(gw, room);
    expect((await firstSnapshot(c)).position.epoch).toBe(0);
    const events = Array.from({ length: 3 }, (_, i) => say(room, `e ${i}`));
    await produce(events);
    await waitFor(() => commentIds(c.msgs).length === 3, { what: 'three comments' });
    const oldPos = lastPosition(c.msgs);

    await gw.deps.redis.incr(epochKey(naming, room));
    await gw.deps.redis.spublish(notifyChannel(naming, room), JSON.stringify({ room, projection: 'feed', version: 1, offset: -1, deltas: [], resync: true }));
    const fresh = await waitFor(() => snapshots(c.msgs)[1], { what: 'the fresh snapshot' });
    expect(fresh.reason).toBe('epoch');
    expect(fresh.position.epoch).toBe(1);
    expect(fresh.items.map((i) => i.eventId)).toEqual(events.map((e) => e.eventId));

    const next = say(room, 'new epoch');
    await produce([next]);
    const b = await waitFor(() => batches(c.msgs).find((m) => m.events.some((e) => e.t === 'comment' && e.entry.eventId === next.eventId)), { what: 'a batch after the resync' });
    expect(b.position.epoch).toBe(1);

    // Resuming with the old epoch: a full snapshot, reason 'epoch'.
    const c2 = connect(gw, room, { since: formatPosition(oldPos) });
    const s2 = await firstSnapshot(c2);
    expect(s2.reason).toBe('epoch');
    expect(s2.position.epoch).toBe(1);
    expect(s2.items.map((i) => i.eventId)).toEqual([...events, next].map((e) => e.eventId));
    expect(c2.msgs.some((m) => m.type === 'catchup')).toBe(false);
  });

  it('sends shadow comments only to their author', async () => {
    const room = newRoom('shadow');
    await produce([makeEvent({ roomId: room, actor: { userId: 'moderation', role: 'system' }, payload: { type: 'UserMuted', userId: 'shady', untilMs: null, kind: 'shadow', reason: 'test' } }) as RoomEvent]);
    const author = connect(gw, room, { token: token('shady') });
    const other = connect(gw, room, { token: token('bob') });
    const anon = connect(gw, room);
    for (const c of [author, other, anon]) await firstSnapshot(c);
    const before = lastPosition(other.msgs);

    const s1 = say(room, 'hidden 1', viewer('shady'));
    const a1 = say(room, 'seen 1', viewer('alice'));
    const s2 = say(room, 'hidden 2', viewer('shady'));
    const a2 = say(room, 'seen 2', viewer('alice'));
    await produce([s1, a1, s2, a2]);
    await waitFor(() => commentIds(author.msgs).length === 4 && commentIds(other.msgs).includes(a2.eventId) && commentIds(anon.msgs).includes(a2.eventId), {
      what: 'the comments',
    });
    expect(commentIds(author.msgs).sort()).toEqual([s1, a1, s2, a2].map((e) => e.eventId).sort());
    expect(commentIds(other.msgs)).toEqual([a1.eventId, a2.eventId]);
    expect(commentIds(anon.msgs)).toEqual([a1.eventId, a2.eventId]);
    for (const r of [...other.raw, ...anon.raw]) expect(r).not.toContain('hidden');

    // Snapshots and catch-ups are filtered the same way.
    const author2 = connect(gw, room, { token: token('shady') });
    const other2 = connect(gw, room, { token: token('bob') });
    expect((await firstSnapshot(author2)).items.map((i) => i.eventId)).toEqual([s1, a1, s2, a2].map((e) => e.eventId));
    expect((await firstSnapshot(other2)).items.map((i) => i.eventId)).toEqual([a1, a2].map((e) => e.eventId));
    const other3 = connect(gw, room, { since: formatPosition(before) });
    const cu = await waitFor(() => other3.msgs.find((m): m is CatchUpMessage => m.type === 'catchup'), { what: 'catch-up' });
    expect(cu.items.map((i) => i.eventId)).toEqual([a1, a2].map((e) => e.eventId));
  });

  it('degrades a socket that stops reading, then closes it with 4008, while the others keep receiving', async () => {
    const room = newRoom('slow');
    const reader = connect(slowGw, room);
    const slow = connect(slowGw, room, { token: token('slowpoke') });
    await firstSnapshot(reader);
    await firstSnapshot(slow);
    const hubClient = () => slowGw.app.pushHub.clientsOf(room).find((c) => c.userId === 'slowpoke');
    expect(hubClient()?.mode).toBe('ordered');
    (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();

    const big = 'x'.repeat(32 * 1024);
    const posted: string[] = [];
    const bigComments = async (n: number) => {
      // Moderators' comments are always kept in the sampled view too, so it keeps growing there.
      const evs = Array.from({ length: n }, (_, i) => say(room, `${i} ${big}`, mod));
      posted.push(...evs.map((e) => e.eventId));
      await produce(evs);
    };
    await waitFor(async () => hubClient()?.mode === 'sampled' || (await bigComments(4), false), { what: 'degraded to sampled', timeoutMs: 60_000, intervalMs: 20 });
    await waitFor(async () => hubClient()?.mode === 'tallies' || (await bigComments(4), false), { what: 'degraded to tallies only', timeoutMs: 60_000, intervalMs: 20 });
    let n = 0;
    await waitFor(
      async () => {
        const c = hubClient();
        if (!c || c.state === 'closing' || c.state === 'removed') return true;
        const blob = `${n++} ${'y'.repeat(256 * 1024)}`;
        await produce([makeEvent({ roomId: room, actor: mod, payload: { type: 'RoomSettingsChanged', slowModeSec: null, emoteOnly: null, extra: { blob } } }) as RoomEvent]);
        return false;
      },
      { what: 'closed as a slow consumer', timeoutMs: 60_000, intervalMs: 20 },
    );
    // The client reads again: it finds the degradations and the close, in that order.
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const closed = await slow.closed;
    expect(closed).toEqual({ code: CLOSE.slowConsumer, reason: 'slow consumer' });
    const modes = slow.msgs.flatMap((m) => (m.type === 'degraded' ? [m.mode] : []));
    expect(modes).toEqual(['sampled', 'tallies']);
    console.log(`[push] slow socket: ${slow.msgs.length} messages read after resuming; ${posted.length} big comments + ${n} settings blobs posted`);

    // The reader was never degraded and got every comment in order, and still gets new ones.
    const last = say(room, 'still here');
    await produce([last]);
    await waitFor(() => commentIds(reader.msgs).includes(last.eventId), { what: 'the reader to get the last comment', timeoutMs: 30_000 });
    expect(commentIds(reader.msgs)).toEqual([...posted, last.eventId]);
    expect(reader.msgs.some((m) => m.type === 'degraded')).toBe(false);
    expect(reader.isClosed()).toBe(false);
  });

  it('upgrades a degraded socket back to its view once it reads again, with a fresh snapshot of what it missed', async () => {
    const room = newRoom('recover');
    const slow = connect(slowGw, room, { token: token('recoverer') });
    await firstSnapshot(slow);
    const hubClient = () => slowGw.app.pushHub.clientsOf(room).find((c) => c.userId === 'recoverer');
    const sock = (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    sock.pause();
    const big = 'x'.repeat(32 * 1024);
    await waitFor(async () => hubClient()?.mode !== 'ordered' || (await produce([say(room, big, mod)]), false), { what: 'degraded', timeoutMs: 60_000, intervalMs: 20 });
    const missed = say(room, 'while degraded'); // a viewer's comment: not in its sampled stream
    await produce([missed]);
    sock.resume();
    // The buffer drains; the check runs on the room's flushes, so keep the room busy (reactions: the feed keeps its 10 items).
    const react = () => makeEvent({ roomId: room, actor: viewer('bob'), payload: { type: 'ReactionAdded', emoji: 'heart', count: 1 } }) as RoomEvent;
    await waitFor(async () => hubClient()?.mode === 'ordered' || (await produce([react()]), false), { what: 'upgraded back to ordered', timeoutMs: 30_000, intervalMs: 100 });
    const snap = await waitFor(() => slow.msgs.find((m): m is SnapshotMessage => m.type === 'snapshot' && m.reason === 'recovered'), { what: 'the recovery snapshot' });
    expect(snap.items.some((i) => i.kind === 'comment' && i.eventId === missed.eventId)).toBe(true);
    const last = say(room, 'after recovery');
    await produce([last]);
    await waitFor(() => commentIds(slow.msgs).includes(last.eventId) || undefined, { what: 'ordered batches again' });
    expect(slow.isClosed()).toBe(false);
  });

  it('sends a full snapshot with reason "unrecoverable" when neither Redis nor the log holds the gap', async () => {
    const room = newRoom('lost');
    const c1 = connect(gw, room);
    await firstSnapshot(c1);
    await produce([say(room, 'seen')]);
    await waitFor(() => commentIds(c1.msgs).length === 1, { what: 'the first comment' });
    const pos = lastPosition(c1.msgs);
    c1.ws.close();
    await c1.closed;
    const later = Array.from({ length: 15 }, (_, i) => say(room, `later ${i}`, mod));
    const acks = await produce(later);
    const lastAck = acks[acks.length - 1]!;
    await applied(room, Number(lastAck.offset));

    // The sampled view cannot be rebuilt from the log: older than Redis is unrecoverable there.
    const s = connect(gw, room, { since: formatPosition(pos), view: 'sampled' });
    const ss = await firstSnapshot(s);
    expect(ss.reason).toBe('unrecoverable');
    expect(ss.items.length).toBeGreaterThan(0);

    // Retention deleted the records the gap needs.
    expect(murmur2Partition(room, 2)).toBe(lastAck.partition);
    await admin.deleteRecordsBefore(env.TOPIC_ROOM_EVENTS!, lastAck.partition, lastAck.offset);
    const c2 = connect(gw, room, { since: formatPosition(pos) });
    const snap = await firstSnapshot(c2);
    expect(snap.reason).toBe('unrecoverable');
    expect(snap.items.map((i) => i.eventId)).toEqual(later.slice(-10).map((e) => e.eventId));
    expect(c2.msgs.some((m) => m.type === 'catchup')).toBe(false);
  });

  it('pushes viewer counts as sockets come and go', async () => {
    const room = newRoom('viewers');
    const a = connect(gw, room);
    expect((await firstSnapshot(a)).viewers).toBe(1);
    const b = connect(gw, room);
    await firstSnapshot(b);
    await waitFor(() => a.msgs.some((m) => m.type === 'viewers' && m.count === 2) || undefined, { what: 'viewers: 2' });
    b.ws.close();
    await waitFor(() => a.msgs.some((m) => m.type === 'viewers' && m.count === 1) || undefined, { what: 'viewers: 1' });
  });

  it('rejects bad requests and bad tokens with the protocol close codes', async () => {
    expect((await connect(gw, '-bad-room').closed).code).toBe(CLOSE.badRequest);
    expect((await connect(gw, newRoom('q'), { since: 'yesterday' }).closed).code).toBe(CLOSE.badRequest);
    expect((await connect(gw, newRoom('q'), { view: 'sideways' }).closed).code).toBe(CLOSE.badRequest);
    const bad = await connect(gw, newRoom('q'), { token: 'not.a.jwt' }).closed;
    expect(bad.code).toBe(CLOSE.unauthorized);
  });

  it('reaps a socket that stops answering pings, and closes the rest with 1001 on shutdown', async () => {
    const g = await startGateway({ GATEWAY_ID: `${env.TOPIC_ROOM_EVENTS}-hb`, PUSH_HEARTBEAT_SEC: '1' });
    const room = newRoom('hb');
    const alive = connect(g, room);
    const mute = connect(g, room, { token: token('mute') });
    await firstSnapshot(alive);
    await firstSnapshot(mute);
    (mute.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    await waitFor(() => g.app.pushHub.clientsOf(room).every((c) => c.userId !== 'mute') || undefined, { what: 'the silent socket to be reaped', timeoutMs: 10_000 });
    expect(g.app.pushHub.clientsOf(room)).toHaveLength(1);
    expect(alive.isClosed()).toBe(false);

    await g.app.close();
    expect((await alive.closed).code).toBe(CLOSE.shuttingDown);
    expect(g.app.pushHub.stats().rooms).toBe(0);
  });
});
