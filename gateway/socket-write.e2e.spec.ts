/**
 * Writes over the viewer's WebSocket, against the running system (processors
 * + gateway as real processes): acks carry the durable event's id and
 * position; every refusal is a nack with the code HTTP gives; clientMsgId
 * makes retries idempotent on the socket and across socket and HTTP;
 * anonymous sockets cannot write; deletes respect room roles; a socket's
 * writes in flight are bounded; unreadable frames never break the socket.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../services/world.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { makeEvent } from '../schemas/events.ts';
import { subjectFor } from '../schemas/registry.ts';
import { testConfig, waitFor } from '../test/helpers.ts';
import { wsWriter, type WsWriter } from '../test/ws-writer.ts';
import { logClient } from '../topics/client.ts';
import type { AckMessage, FeedResponse, NackMessage } from './protocol.ts';

let sys: World;
const sockets: WsWriter[] = [];
let n = 0;
const room = () => `wsw-${Date.now().toString(36)}-${n++}`;

beforeAll(async () => {
  sys = await startWorld({ env: { LIMIT_COMMENTS: '1000', MODERATION_ENABLED: 'false', REACTIONS_FLUSH_MS: '200', PRESENCE_INTERVAL_MS: '500' } });
});
afterAll(async () => {
  for (const s of sockets) s.close();
  await sys?.stop();
});

function open(url: string, r: string, token?: string): WsWriter {
  const s = wsWriter(url, r, token);
  sockets.push(s);
  return s;
}

async function http(method: string, path: string, token: string, body?: unknown, base = sys.url) {
  const res = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

const feed = async (r: string) => (await (await fetch(`${sys.url}/v1/rooms/${r}/feed?limit=500`)).json()) as FeedResponse;
const ack = (m: AckMessage | NackMessage): AckMessage => {
  expect(m, JSON.stringify(m)).toMatchObject({ type: 'ack' });
  return m as AckMessage;
};
const nack = (m: AckMessage | NackMessage, code: string, id: string | null): NackMessage => {
  expect(m, JSON.stringify(m)).toMatchObject({ type: 'nack', code, id });
  return m as NackMessage;
};

describe('comments over the socket', () => {
  it('acks with the eventId and position of the durable event; the comment is in the feed at that position', async () => {
    const r = room();
    const s = open(sys.url, r, sys.token('alice'));
    await s.ready;
    const a = ack(await s.send({ type: 'comment', id: 'c1', text: '  hello\u200b over   the socket ', mode: 'top', color: 0xff0000, size: 'large', videoOffsetMs: 1234 }));
    expect(a.id).toBe('c1');
    expect(a.eventId).toMatch(/^[0-9a-f-]{36}$/);
    expect(a.position).toEqual({ offset: expect.any(Number), epoch: 0 });
    const got = await waitFor(async () => (await feed(r)).events.find((e) => e.eventId === a.eventId), { what: 'the comment in the feed' });
    expect(got).toMatchObject({ kind: 'comment', offset: a.position.offset, userId: 'alice', text: 'hello over the socket', mode: 'top', color: 0xff0000, size: 'large', videoOffsetMs: 1234 });
    // It reaches the writer's own socket as a push, like any viewer's.
    await waitFor(() => s.messages.some((m) => m.type === 'batch' && m.events.some((e) => e.t === 'comment' && e.entry.eventId === a.eventId)) || undefined, { what: 'the push' });
  });

  it('keeps a socket\'s pipelined comments in frame order', async () => {
    const r = room();
    const s = open(sys.url, r, sys.token('pipeliner'));
    await s.ready;
    const acks = (await Promise.all(Array.from({ length: 40 }, (_, i) => s.send({ type: 'comment', text: `p${i}` })))).map(ack);
    const offsets = acks.map((a) => a.position.offset);
    expect(offsets).toEqual([...offsets].sort((x, y) => x - y));
    const f = await waitFor(async () => {
      const x = await feed(r);
      return x.events.length === 40 ? x : undefined;
    }, { what: 'all 40 in the feed' });
    expect(f.events.map((e) => (e.kind === 'comment' ? e.text : ''))).toEqual(acks.map((_, i) => `p${i}`));
  });

  it('answers each error class with a nack carrying the code HTTP gives', async () => {
    const r = room();
    const s = open(sys.url, r, sys.token('val'));
    await s.ready;
    // Frames that cannot be read: id null when it cannot be read, never a crash.
    nack(await s.sendRaw('{"type": "comment", ', null), 'ERR_BAD_JSON', null);
    nack(await s.sendRaw('not json at all', null), 'ERR_BAD_JSON', null);
    nack(await s.sendRaw('[1,2,3]', null), 'ERR_VALIDATION', null);
    nack(await s.sendRaw('"a string"', null), 'ERR_VALIDATION', null);
    nack(await s.sendRaw('{"type":"comment","text":"no id"}', null), 'ERR_VALIDATION', null);
    nack(await s.sendRaw(Buffer.from('{"type":"comment","id":"b","text":"x"}'), null, true), 'ERR_VALIDATION', null);
    nack(await s.sendRaw('{"type":"comment","id":"p1","text":"hi","__proto__":{"admin":true}}', 'p1'), 'ERR_BAD_JSON', 'p1');
    nack(await s.sendRaw('{"type":"comment","id":"p2","text":"hi","constructor":{"prototype":{"admin":true}}}', 'p2'), 'ERR_BAD_JSON', 'p2');
    nack(await s.sendRaw('{"type":"comment","id":"u1","text":"bad \\ud800 surrogate"}', 'u1'), 'ERR_INVALID_UTF8', 'u1');
    // Read, but not a write this protocol knows or not one of its shape.
    nack(await s.send({ type: 'pin', id: 't1', eventId: 'x' }), 'ERR_VALIDATION', 't1');
    nack(await s.send({ type: 'comment', id: 'v1', text: 123 }), 'ERR_VALIDATION', 'v1');
    nack(await s.send({ type: 'comment', id: 'v2', text: 'x', color: 0x1000000 }), 'ERR_VALIDATION', 'v2');
    nack(await s.send({ type: 'comment', id: 'v3', text: 'x', extra: 1 }), 'ERR_VALIDATION', 'v3');
    nack(await s.sendRaw(JSON.stringify({ type: 'comment', id: 'x'.repeat(65), text: 'x' }), null), 'ERR_VALIDATION', null);
    nack(await s.send({ type: 'reaction', id: 'v4', emoji: 'heart', count: 0 }), 'ERR_VALIDATION', 'v4');
    nack(await s.send({ type: 'delete', id: 'v5', eventId: 'has space' }), 'ERR_VALIDATION', 'v5');
    // Past the schema: the same checks and codes as HTTP.
    nack(await s.send({ type: 'comment', id: 'l1', text: '字'.repeat(201) }), 'ERR_TEXT_LENGTH', 'l1');
    nack(await s.send({ type: 'comment', id: 'l2', text: '\u200b\u200b \u0007' }), 'ERR_TEXT_LENGTH', 'l2');
    nack(await s.send({ type: 'comment', id: 'i1', text: '\u0301\ufe0f' }), 'ERR_TEXT_INVISIBLE', 'i1');
    nack(await s.send({ type: 'reaction', id: 'e1', emoji: 'poop' }), 'ERR_UNKNOWN_EMOJI', 'e1');
    nack(await s.send({ type: 'delete', id: 'd1', eventId: 'no-such-comment' }), 'ERR_COMMENT_NOT_FOUND', 'd1');
    // HTTP gives the same codes for the same bodies.
    const t = sys.token('val');
    expect((await http('POST', `/v1/rooms/${r}/comments`, t, { text: '字'.repeat(201) })).body.code).toBe('ERR_TEXT_LENGTH');
    expect((await http('POST', `/v1/rooms/${r}/reactions`, t, { emoji: 'poop' })).body.code).toBe('ERR_UNKNOWN_EMOJI');
    // The socket is still fine.
    expect(s.closed).toBeUndefined();
    ack(await s.send({ type: 'comment', text: '字'.repeat(200) }));
  });

  it('refuses writes on an anonymous socket, and after the token expired', async () => {
    const r = room();
    const anon = open(sys.url, r);
    await anon.ready;
    const refused = nack(await anon.send({ type: 'comment', id: 'a1', text: 'hi' }), 'ERR_AUTH_REQUIRED', 'a1');
    expect(refused.message).toMatch(/token/);
    nack(await anon.send({ type: 'reaction', id: 'a2', emoji: 'heart' }), 'ERR_AUTH_REQUIRED', 'a2');
    // A token that expires in two seconds: accepted at connect, writes refused once it has.
    const short = open(sys.url, r, sys.token('brief', 'viewer', { ttlSec: 2 }));
    await short.ready;
    ack(await short.send({ type: 'comment', text: 'while valid' }));
    const expired = await waitFor(async () => {
      const m = await short.send({ type: 'reaction', emoji: 'heart' });
      return m.type === 'nack' ? m : undefined;
    }, { what: 'a nack after exp', timeoutMs: 15_000, intervalMs: 250 });
    expect(expired.code).toBe('ERR_AUTH_INVALID');
    // Reading goes on (anonymous reads are allowed).
    expect(short.closed).toBeUndefined();
  });

  it('closes a socket with 4402 when its token expires and anonymous reads are off', async () => {
    const g = await sys.startGateway({ AUTH_ANONYMOUS_READS: 'false' });
    const s = open(g.url, room(), sys.token('brief', 'viewer', { ttlSec: 2 }));
    await s.ready;
    await waitFor(() => s.closed, { what: 'the close at exp', timeoutMs: 15_000 });
    expect(s.closed).toEqual({ code: 4402, reason: 'token expired: reconnect with a new one' });
    await g.proc.stop();
  });

  it('limits, slow mode and emote-only answer as HTTP does (on the Redis Cluster: every key of the comment gate is on the room\'s slot)', async () => {
    const limited = await startWorld({ env: { REDIS_MODE: testConfig().test.redisModes.includes('cluster') ? 'cluster' : 'single', LIMIT_COMMENTS: '3', LIMIT_COMMENTS_WINDOW_SEC: '60', LIMIT_REACTIONS: '2', LIMIT_REACTIONS_WINDOW_SEC: '60', MODERATION_ENABLED: 'false', REACTIONS_FLUSH_MS: '100' } });
    try {
      const r = room();
      const s = open(limited.url, r, limited.token('spammer'));
      await s.ready;
      for (let i = 0; i < 3; i++) ack(await s.send({ type: 'comment', text: `m${i}` }));
      const over = nack(await s.send({ type: 'comment', id: 'over', text: 'too many' }), 'ERR_RATE_LIMITED', 'over');
      expect(over.retryAfterSec).toBeGreaterThan(0);
      // The bucket is per user per room, shared by both transports.
      expect((await http('POST', `/v1/rooms/${r}/comments`, limited.token('spammer'), { text: 'http too' }, limited.url)).body.code).toBe('ERR_RATE_LIMITED');
      expect((await http('POST', `/v1/rooms/${room()}/comments`, limited.token('spammer'), { text: 'another room' }, limited.url)).status).toBe(202);
      // Reactions: in the gateway's memory.
      ack(await s.send({ type: 'reaction', emoji: 'heart' }));
      ack(await s.send({ type: 'reaction', emoji: 'fire', count: 5 }));
      nack(await s.send({ type: 'reaction', id: 'r3', emoji: 'heart' }), 'ERR_RATE_LIMITED', 'r3');

      const mod = limited.token('mod', 'moderator', { rooms: [r] });
      expect((await http('PATCH', `/v1/rooms/${r}/settings`, mod, { slowModeSec: 30, emoteOnly: true }, limited.url)).status).toBe(202);
      const v = open(limited.url, r, limited.token('slowpoke'));
      await v.ready;
      await waitFor(async () => ((await v.send({ type: 'comment', text: 'words' })).type === 'nack' ? true : undefined), { what: 'the settings to apply' });
      nack(await v.send({ type: 'comment', id: 'w', text: 'more words' }), 'ERR_EMOTE_ONLY', 'w');
      ack(await v.send({ type: 'comment', text: '🎉 :heart:' }));
      const slow = nack(await v.send({ type: 'comment', id: 's', text: '🎉' }), 'ERR_SLOW_MODE', 's');
      expect(slow.retryAfterSec).toBeGreaterThan(20);
      // Moderators are exempt from both.
      const m = open(limited.url, r, mod);
      await m.ready;
      ack(await m.send({ type: 'comment', text: 'moderators may talk' }));
      ack(await m.send({ type: 'comment', text: 'and again' }));
    } finally {
      await limited.stop();
    }
  });

  it('refuses a visibly muted user\'s comments with ERR_MUTED and its reason', async () => {
    const r = room();
    const client = logClient(sys.cfg, 'wsw-mute');
    const producer = client.producer();
    await producer.connect();
    const codec = new EventCodec({ registry: createRegistry(sys.cfg.registry.url), subject: subjectFor(sys.env.TOPIC_ROOM_EVENTS!) });
    await codec.init();
    try {
      const e = makeEvent({ roomId: r, actor: { userId: 'moderation', role: 'system' }, payload: { type: 'UserMuted', userId: 'troll', untilMs: Date.now() + 600_000, kind: 'visible', reason: 'testing mutes' } });
      await producer.send({ topic: sys.env.TOPIC_ROOM_EVENTS!, key: r, value: codec.encode(e) });
    } finally {
      await producer.disconnect();
      await client.close();
    }
    const refused = await waitFor(async () => {
      const s = open(sys.url, r, sys.token('troll'));
      await s.ready;
      const m = await s.send({ type: 'comment', id: 'm', text: 'hello?' });
      s.close();
      // The mute's notification also closes the user's open sockets (4403): a socket it closed mid-write tries again.
      return m.type === 'nack' && m.code !== 'SOCKET_CLOSED' ? m : undefined;
    }, { what: 'the mute to apply', timeoutMs: 20_000, intervalMs: 200 });
    expect(refused).toMatchObject({ code: 'ERR_MUTED', details: { reason: 'testing mutes' } });
    expect(refused.message).toMatch(/testing mutes/);
    expect((await http('POST', `/v1/rooms/${r}/comments`, sys.token('troll'), { text: 'http?' })).body.code).toBe('ERR_MUTED');
    const other = open(sys.url, r, sys.token('someone-else'));
    await other.ready;
    ack(await other.send({ type: 'comment', text: 'hello' }));
  });
});

describe('idempotency', () => {
  it('a retry with the same clientMsgId returns the first result, on the socket and across socket and HTTP', async () => {
    const r = room();
    const token = sys.token('retrier');
    const s = open(sys.url, r, token);
    await s.ready;
    const first = ack(await s.send({ type: 'comment', text: 'only once', clientMsgId: 'cm-1' }));
    const again = ack(await s.send({ type: 'comment', text: 'only once', clientMsgId: 'cm-1' }));
    expect([again.eventId, again.position, again.duplicate]).toEqual([first.eventId, first.position, true]);
    const viaHttp = await http('POST', `/v1/rooms/${r}/comments`, token, { text: 'only once', clientMsgId: 'cm-1' });
    expect([viaHttp.status, viaHttp.body.eventId, viaHttp.body.duplicate]).toEqual([202, first.eventId, true]);
    // HTTP first, then the socket (another socket, same user).
    const h = await http('POST', `/v1/rooms/${r}/comments`, token, { text: 'posted over http', clientMsgId: 'cm-2' });
    const s2 = open(sys.url, r, token);
    await s2.ready;
    const viaSocket = ack(await s2.send({ type: 'comment', text: 'posted over http', clientMsgId: 'cm-2' }));
    expect([viaSocket.eventId, viaSocket.duplicate]).toEqual([h.body.eventId, true]);
    // Concurrent retries on one socket: one event; the other answer is the first result or ERR_IN_PROGRESS.
    const both = await Promise.all([s.send({ type: 'comment', text: 'racing', clientMsgId: 'cm-3' }), s.send({ type: 'comment', text: 'racing', clientMsgId: 'cm-3' })]);
    const eventIds = new Set(both.flatMap((m) => (m.type === 'ack' ? [m.eventId] : [])));
    expect(eventIds.size).toBe(1);
    for (const m of both) if (m.type === 'nack') expect(m.code).toBe('ERR_IN_PROGRESS');
    // Another user's clientMsgId is theirs alone.
    const other = open(sys.url, r, sys.token('someone'));
    await other.ready;
    expect(ack(await other.send({ type: 'comment', text: 'mine', clientMsgId: 'cm-1' })).eventId).not.toBe(first.eventId);
    // Reactions with a clientMsgId: the retry is the first result, counted once.
    const r1 = ack(await s.send({ type: 'reaction', emoji: 'clap', count: 7, clientMsgId: 'rx-1' }));
    const r2 = ack(await s.send({ type: 'reaction', emoji: 'clap', count: 7, clientMsgId: 'rx-1' }));
    expect([r2.eventId, r2.duplicate]).toEqual([r1.eventId, true]);

    await waitFor(async () => (await feed(r)).events.filter((e) => e.kind === 'comment').length === 4 || undefined, { what: 'four comments' });
    const texts = (await feed(r)).events.map((e) => (e.kind === 'comment' ? e.text : ''));
    expect(texts.filter((t) => t === 'only once')).toHaveLength(1);
    expect(texts.filter((t) => t === 'racing')).toHaveLength(1);
    const st = await waitFor(async () => {
      const x = (await (await fetch(`${sys.url}/v1/rooms/${r}/state`)).json()) as { tallies: { totals: Record<string, number> } };
      return x.tallies.totals.clap ? x : undefined;
    }, { what: 'the clap tally' });
    expect(st.tallies.totals.clap).toBe(7);
  });
});

describe('deletes over the socket', () => {
  it('lets the author and the room\'s moderators delete, nobody else', async () => {
    const r = room();
    const author = open(sys.url, r, sys.token('author'));
    const other = open(sys.url, r, sys.token('other'));
    const mod = open(sys.url, r, sys.token('mod', 'moderator', { rooms: [r] }));
    const elsewhere = open(sys.url, r, sys.token('cas', 'broadcaster', { rooms: [`${r}-other`] }));
    await Promise.all([author.ready, other.ready, mod.ready, elsewhere.ready]);
    const c1 = ack(await author.send({ type: 'comment', text: 'first' }));
    const c2 = ack(await author.send({ type: 'comment', text: 'second' }));
    await waitFor(async () => (await feed(r)).events.length === 2 || undefined, { what: 'both comments in the feed' });
    nack(await other.send({ type: 'delete', id: 'x1', eventId: c1.eventId }), 'ERR_FORBIDDEN', 'x1');
    nack(await elsewhere.send({ type: 'delete', id: 'x2', eventId: c1.eventId }), 'ERR_FORBIDDEN', 'x2');
    const d1 = ack(await author.send({ type: 'delete', eventId: c1.eventId }));
    const d2 = ack(await mod.send({ type: 'delete', eventId: c2.eventId }));
    expect(d2.position.offset).toBeGreaterThan(d1.position.offset);
    const f = await waitFor(async () => {
      const x = await feed(r);
      return x.events.filter((e) => e.kind === 'delete').length === 2 ? x : undefined;
    }, { what: 'two tombstones' });
    expect(f.events.filter((e) => e.kind === 'delete').map((e) => [e.eventId, e.kind === 'delete' ? e.reason : ''])).toEqual([
      [c1.eventId, 'author'],
      [c2.eventId, 'moderator'],
    ]);
  });
});

describe('bounds', () => {
  it('nacks frames beyond WS_MAX_INFLIGHT_WRITES at once with ERR_RATE_LIMITED, and answers the rest', async () => {
    const g = await sys.startGateway({ WS_MAX_INFLIGHT_WRITES: '5', REACTIONS_FLUSH_MS: '1000', LIMIT_REACTIONS: '1000' });
    const r = room();
    const s = open(g.url, r, sys.token('eager'));
    await s.ready;
    // Reactions wait for their flush (1 s): the first five are in flight when the rest arrive.
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => s.send({ type: 'reaction', id: `q${i}`, emoji: 'wow' })));
    const acks = answers.filter((m) => m.type === 'ack');
    const nacks = answers.filter((m): m is NackMessage => m.type === 'nack');
    expect(acks.map((m) => m.id)).toEqual(['q0', 'q1', 'q2', 'q3', 'q4']);
    expect(nacks).toHaveLength(15);
    for (const m of nacks) expect([m.code, m.retryAfterSec]).toEqual(['ERR_RATE_LIMITED', 1]);
    // The nacks came before the acks: refused at once, not queued.
    expect(s.replies.findIndex((m) => m.type === 'ack')).toBe(15);
    // Once answered, the socket writes again.
    ack(await s.send({ type: 'reaction', emoji: 'wow' }));
  });

  it('nacks writes with ERR_KAFKA_UNAVAILABLE when Kafka does not acknowledge, and counts none of them', async () => {
    // A gateway whose Kafka is unreachable (nothing listens on the port).
    const g = await sys.startGateway({ KAFKA_BROKERS: '127.0.0.1:1', REACTIONS_FLUSH_MS: '100' });
    const r = room();
    const s = open(g.url, r, sys.token('unlucky'));
    await s.ready;
    const [c, ...rs] = await Promise.all([s.send({ type: 'comment', id: 'k', text: 'lost?' }), ...Array.from({ length: 5 }, () => s.send({ type: 'reaction', emoji: 'sad' }))]);
    const k = nack(c!, 'ERR_KAFKA_UNAVAILABLE', 'k');
    expect(k.retryAfterSec).toBeGreaterThan(0);
    for (const m of rs) expect(m).toMatchObject({ type: 'nack', code: 'ERR_KAFKA_UNAVAILABLE' });
    // Through a healthy gateway the room has no tally and no comment.
    const st = (await (await fetch(`${sys.url}/v1/rooms/${r}/state`)).json()) as { tallies: { totals: Record<string, number> } };
    expect(st.tallies.totals).toEqual({});
    expect((await feed(r)).events).toEqual([]);
  });
});
