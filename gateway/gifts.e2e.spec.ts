/**
 * Gifts as messages (issue 17, item 1), against the running system
 * (processors + gateway as real processes): two users send gifts over HTTP
 * and over the socket; a viewer's WebSocket is pushed each gift with the
 * room's leaderboard, the state API serves the same leaderboard, and the TS
 * client exposes it. An unknown gift is 400 ERR_UNKNOWN_GIFT (HTTP) and the
 * same code as a nack (socket); a retried clientMsgId returns the first
 * result and writes nothing twice; counts are bounded; gifts are rate-limited;
 * the leaderboard is rebuilt from the log like every projection.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../services/world.ts';
import { randomName, waitFor } from '../test/helpers.ts';
import { startScript } from '../test/processes.ts';
import { wsWriter, type WsWriter } from '../test/ws-writer.ts';
import { DanmakuClient, type Leaderboard } from './client/client.ts';
import type { AckMessage, GiftItem, NackMessage, ServerMessage } from './protocol.ts';

let w: World;
const sockets: WsWriter[] = [];
const clients: DanmakuClient[] = [];

beforeAll(async () => {
  w = await startWorld({
    prefix: 'gifts',
    env: { MODERATION_ENABLED: 'false', GIFTS: 'rose:Rose:10,rocket:Rocket 🚀:200,castle:Castle:1000', GIFT_MAX_COUNT: '50', LIMIT_GIFTS: '5', LIMIT_GIFTS_WINDOW_SEC: '60' },
  });
});
afterAll(async () => {
  for (const c of clients) c.close();
  for (const s of sockets) s.close();
  await w?.stop();
});

async function call(method: string, path: string, token?: string, body?: unknown) {
  const res = await fetch(`${w.url}${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, any> };
}

function open(room: string, token?: string): WsWriter {
  const s = wsWriter(w.url, room, token);
  sockets.push(s);
  return s;
}

const state = async (room: string) => (await call('GET', `/v1/rooms/${room}/state`)).body as { leaderboard: Leaderboard };
const ack = (m: AckMessage | NackMessage): AckMessage => {
  expect(m, JSON.stringify(m)).toMatchObject({ type: 'ack' });
  return m as AckMessage;
};

describe('gifts', () => {
  it('two users send gifts (HTTP and socket): a viewer is pushed each gift with the leaderboard, the state and the TS client show the same', async () => {
    const room = randomName('gift');
    // A viewer: a raw socket (the wire) and the TS client (the SDK).
    const viewer = open(room);
    await viewer.ready;
    const snapshot = viewer.messages.find((m) => m.type === 'snapshot') as Extract<ServerMessage, { type: 'snapshot' }>;
    expect(snapshot.leaderboard).toEqual({ top: [], totalValue: 0, totalGifts: 0, senders: 0 });
    const client = new DanmakuClient({ baseUrl: w.url, room, WebSocket });
    clients.push(client);
    const sdkGifts: GiftItem[] = [];
    client.on('gift', (g) => sdkGifts.push(g.gift));
    client.connect();
    await client.ready;

    // The catalogue the gifts come from.
    const catalogue = await client.gifts();
    expect(catalogue).toEqual({ gifts: [{ id: 'rose', name: 'Rose', value: 10 }, { id: 'rocket', name: 'Rocket 🚀', value: 200 }, { id: 'castle', name: 'Castle', value: 1000 }], maxCount: 50 });

    // ann: 3 roses over HTTP (30); bob: a rocket over his socket (200); ann: a castle over HTTP (1030 in all).
    const ann = w.token(`ann-${room}`);
    const first = await call('POST', `/v1/rooms/${room}/gifts`, ann, { giftId: 'rose', count: 3, clientMsgId: 'ann-1' });
    expect(first.status, JSON.stringify(first.body)).toBe(202);
    expect(first.body).toMatchObject({ eventId: expect.any(String), position: { offset: expect.any(Number), epoch: expect.any(Number) } });
    const bobSocket = open(room, w.token(`bob-${room}`));
    await bobSocket.ready;
    const bobAck = ack(await bobSocket.send({ type: 'gift', id: 'g1', giftId: 'rocket' }));
    expect(bobAck).toMatchObject({ id: 'g1', eventId: expect.any(String), position: { offset: expect.any(Number) } });
    const castle = await call('POST', `/v1/rooms/${room}/gifts`, ann, { giftId: 'castle' });
    expect(castle.status).toBe(202);

    const expected = {
      top: [
        { userId: `ann-${room}`, value: 1030, gifts: 4, at: castle.body.position.offset },
        { userId: `bob-${room}`, value: 200, gifts: 1, at: bobAck.position.offset },
      ],
      totalValue: 1230,
      totalGifts: 5,
      senders: 2,
    };
    // Pushed over the WebSocket: each gift, in log order, with the board as it stood after it.
    const pushed = () => viewer.messages.flatMap((m) => (m.type === 'batch' ? m.events.filter((e) => e.t === 'gift') : []));
    await waitFor(() => pushed().length === 3 || undefined, { what: 'three gifts pushed', timeoutMs: 30_000 });
    const gifts = pushed() as Extract<ReturnType<typeof pushed>[number], { t: 'gift' }>[];
    expect(gifts.map((g) => [g.gift.userId, g.gift.giftId, g.gift.name, g.gift.count, g.gift.value])).toEqual([
      [`ann-${room}`, 'rose', 'Rose', 3, 30],
      [`bob-${room}`, 'rocket', 'Rocket 🚀', 1, 200],
      [`ann-${room}`, 'castle', 'Castle', 1, 1000],
    ]);
    expect(gifts.map((g) => g.gift.eventId)).toEqual([first.body.eventId, bobAck.eventId, castle.body.eventId]);
    expect(gifts[1]!.leaderboard.top.map((s) => s.userId)).toEqual([`bob-${room}`, `ann-${room}`]);
    expect(gifts[2]!.leaderboard).toEqual(expected);
    // In the state (polling) API, and in the TS client.
    expect((await state(room)).leaderboard).toEqual(expected);
    await waitFor(() => (client.snapshot.leaderboard.totalGifts === 5 ? true : undefined), { what: 'the client\'s leaderboard' });
    expect(client.snapshot.leaderboard).toEqual(expected);
    expect(sdkGifts.map((g) => g.giftId)).toEqual(['rose', 'rocket', 'castle']);
    // A new viewer's snapshot carries it.
    const late = open(room);
    await late.ready;
    expect((late.messages.find((m) => m.type === 'snapshot') as Extract<ServerMessage, { type: 'snapshot' }>).leaderboard).toEqual(expected);
  }, 120_000);

  it('an unknown gift is 400 ERR_UNKNOWN_GIFT (HTTP) and the same nack on the socket; a count past GIFT_MAX_COUNT is ERR_VALIDATION; anonymous sends are 401', async () => {
    const room = randomName('gift');
    const t = w.token(`cat-${room}`);
    const unknown = await call('POST', `/v1/rooms/${room}/gifts`, t, { giftId: 'yacht' });
    expect([unknown.status, unknown.body.code]).toEqual([400, 'ERR_UNKNOWN_GIFT']);
    expect(unknown.body.details).toEqual({ gifts: ['rose', 'rocket', 'castle'] });
    const tooMany = await call('POST', `/v1/rooms/${room}/gifts`, t, { giftId: 'rose', count: 51 });
    expect([tooMany.status, tooMany.body.code]).toEqual([400, 'ERR_VALIDATION']);
    const zero = await call('POST', `/v1/rooms/${room}/gifts`, t, { giftId: 'rose', count: 0 });
    expect([zero.status, zero.body.code]).toEqual([400, 'ERR_VALIDATION']);
    const anonymous = await call('POST', `/v1/rooms/${room}/gifts`, undefined, { giftId: 'rose' });
    expect([anonymous.status, anonymous.body.code]).toEqual([401, 'ERR_AUTH_REQUIRED']);
    const s = open(room, t);
    await s.ready;
    expect(await s.send({ type: 'gift', id: 'u1', giftId: 'yacht' })).toMatchObject({ type: 'nack', id: 'u1', code: 'ERR_UNKNOWN_GIFT' });
    expect(await s.send({ type: 'gift', id: 'u2', giftId: 'rose', count: 51 })).toMatchObject({ type: 'nack', id: 'u2', code: 'ERR_VALIDATION' });
    // Nothing of these reached the log: the board is empty.
    expect((await state(room)).leaderboard.totalGifts).toBe(0);
  }, 60_000);

  it('is idempotent by clientMsgId over HTTP and the socket alike, and rate-limited per user (LIMIT_GIFTS)', async () => {
    const room = randomName('gift');
    const t = w.token(`dan-${room}`);
    const body = { giftId: 'rocket', count: 2, clientMsgId: `once-${room}` };
    const a = await call('POST', `/v1/rooms/${room}/gifts`, t, body);
    expect(a.status).toBe(202);
    const again = await call('POST', `/v1/rooms/${room}/gifts`, t, body);
    expect(again.status).toBe(202);
    expect(again.body).toEqual({ ...a.body, duplicate: true });
    const s = open(room, t);
    await s.ready;
    const overSocket = ack(await s.send({ type: 'gift', id: 'retry', ...body }));
    expect(overSocket).toMatchObject({ eventId: a.body.eventId, position: a.body.position, duplicate: true });
    await waitFor(async () => ((await state(room)).leaderboard.totalGifts > 0 ? true : undefined), { what: 'the gift applied' });
    // Counted once.
    expect((await state(room)).leaderboard).toMatchObject({ totalValue: 400, totalGifts: 2, senders: 1 });

    // LIMIT_GIFTS = 5 per 60 s: the retries above spent nothing; four more pass, the next is refused.
    for (let i = 0; i < 4; i++) expect((await call('POST', `/v1/rooms/${room}/gifts`, t, { giftId: 'rose' })).status).toBe(202);
    const limited = await call('POST', `/v1/rooms/${room}/gifts`, t, { giftId: 'rose' });
    expect([limited.status, limited.body.code]).toEqual([429, 'ERR_RATE_LIMITED']);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await s.send({ type: 'gift', id: 'over', giftId: 'rose' })).toMatchObject({ type: 'nack', id: 'over', code: 'ERR_RATE_LIMITED' });
    await waitFor(async () => ((await state(room)).leaderboard.totalGifts === 6 ? true : undefined), { what: 'the accepted gifts applied' });
  }, 60_000);

  it('is rebuilt from the log (npm run pipelines -- rebuild gifts): the same leaderboard, viewers resynced, and the live processor follows the new version', async () => {
    const room = randomName('gift');
    const send = async (user: string, giftId: string, count = 1) => expect((await call('POST', `/v1/rooms/${room}/gifts`, w.token(`${user}-${room}`), { giftId, count })).status).toBe(202);
    await send('eve', 'rose', 4);
    await send('fay', 'rocket');
    await send('eve', 'rose', 2);
    const before = await waitFor(async () => {
      const b = (await state(room)).leaderboard;
      return b.totalGifts === 7 ? b : undefined;
    }, { what: 'the gifts applied' });
    const viewer = open(room);
    await viewer.ready;

    const rb = startScript('services/cli.ts', ['pipelines', 'rebuild', 'gifts'], w.env);
    expect(await rb.exited, rb.output.join('\n')).toBe(0);
    expect(rb.output.join('\n')).toMatch(/switched gifts to version \d+/);
    // Rebuilt from the events alone: the same board (the tie-break positions too).
    expect((await state(room)).leaderboard).toEqual(before);
    // New gifts land in the new version, and the viewer (resynced to the new epoch) is pushed them.
    await send('fay', 'castle');
    await waitFor(async () => ((await state(room)).leaderboard.totalGifts === 8 ? true : undefined), { what: 'a gift after the rebuild applied' });
    expect((await state(room)).leaderboard.top.map((s) => [s.userId, s.value])).toEqual([
      [`fay-${room}`, 1200],
      [`eve-${room}`, 60],
    ]);
    await waitFor(
      () => viewer.messages.some((m) => (m.type === 'snapshot' && m.leaderboard?.totalGifts === 8) || (m.type === 'batch' && m.events.some((e) => e.t === 'gift' && e.leaderboard.totalGifts === 8))) || undefined,
      { what: 'the viewer to see the new board', timeoutMs: 30_000 },
    );
  }, 120_000);
});
