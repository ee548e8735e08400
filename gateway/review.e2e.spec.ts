/**
 * The review queue through the running system (processors, moderation and a
 * gateway as real processes, on the real Kafka, registry and Redis): a
 * comment with a link is held by the rules (MODERATION_HOLD_LINKS), listed
 * for the room's moderators and, as pending, for its author alone; a
 * moderator releases it and it reaches every viewer over WebSocket; another
 * held comment is deleted and leaves the queue without ever being shown.
 */
import path from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../core/config.ts';
import type { HeldEntry } from '../pipelines/projections/held.ts';
import { startWorld, type World } from '../services/world.ts';
import { randomName, waitFor } from '../test/helpers.ts';
import { DanmakuClient, type HeldPage } from './client/client.ts';
import type { FeedResponse } from './protocol.ts';

const TEST_WORDLIST = path.join(REPO_ROOT, 'test', 'fixtures', 'wordlist.txt');

let w: World;
const clients: DanmakuClient[] = [];

beforeAll(async () => {
  w = await startWorld({ prefix: 'review', env: { MODERATION_HOLD_LINKS: 'true', MODERATION_WORDLIST: TEST_WORDLIST, LIMIT_COMMENTS: '1000' } });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await w?.stop();
});

const auth = (token?: string): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});

async function post(room: string, token: string, text: string): Promise<string> {
  const r = await fetch(`${w.url}/v1/rooms/${room}/comments`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth(token) }, body: JSON.stringify({ text }) });
  const body = (await r.json()) as { eventId: string };
  expect(r.status, JSON.stringify(body)).toBe(202);
  return body.eventId;
}

async function held(room: string, token?: string, query = ''): Promise<{ status: number; body: HeldPage & { code?: string } }> {
  const r = await fetch(`${w.url}/v1/rooms/${room}/moderation/held${query}`, { headers: auth(token) });
  return { status: r.status, body: (await r.json()) as HeldPage & { code?: string } };
}

async function decide(room: string, token: string, eventId: string, verb: 'release' | 'delete'): Promise<{ status: number; body: { code?: string; eventId?: string } }> {
  const r = await fetch(`${w.url}/v1/rooms/${room}/moderation/held/${eventId}/${verb}`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth(token) }, body: '{}' });
  return { status: r.status, body: (await r.json()) as { code?: string; eventId?: string } };
}

/** Waits until the room's queue (as its moderator sees it) satisfies `ok`. */
function queueWhere(room: string, mod: string, ok: (items: HeldEntry[]) => boolean, what: string): Promise<HeldEntry[]> {
  return waitFor(
    async () => {
      const { status, body } = await held(room, mod);
      expect(status).toBe(200);
      return ok(body.items) ? body.items : undefined;
    },
    { what, timeoutMs: 30_000, intervalMs: 100 },
  );
}

function viewerClient(room: string, token?: string): DanmakuClient {
  const c = new DanmakuClient({ baseUrl: w.url, room, token, WebSocket: WebSocket as never, wsFailuresBeforePolling: 100 });
  clients.push(c);
  return c;
}

describe('the review queue', () => {
  it('a held comment is released by a moderator and then reaches every viewer; another is deleted and never shown', async () => {
    const room = randomName('review');
    const author = `ann-${room}`;
    const authorToken = w.token(author);
    const viewerToken = w.token(`vic-${room}`);
    const mod = w.token(`mod-${room}`, 'moderator', { rooms: [room] });
    const modElsewhere = w.token(`mod2-${room}`, 'moderator', { rooms: [`${room}-other`] });
    const admin = w.token(`ops-${room}`, 'admin');

    // Viewers over WebSocket: an anonymous one, a signed-in one, and the author's own client.
    const anonymous = viewerClient(room);
    const signedIn = viewerClient(room, viewerToken);
    const own = viewerClient(room, authorToken);
    await Promise.all([anonymous.ready, signedIn.ready, own.ready]);
    for (const c of [anonymous, signedIn, own]) expect(c.mode.transport).toBe('ws');

    const linkText = `look at https://example.com/${room}`;
    const id = await post(room, authorToken, linkText);
    await post(room, viewerToken, 'a plain comment');

    // Held by the rules: the moderator's queue lists it with its text and rule.
    const [entry] = await queueWhere(room, mod, (items) => items.some((i) => i.eventId === id), 'the comment in the queue');
    expect(entry).toMatchObject({ kind: 'held', eventId: id, userId: author, text: linkText, rule: 'link' });

    // Who may see the queue: the room's moderators and admins; a viewer, a moderator of another room, nobody without a token: no.
    expect((await held(room, admin)).body.items.map((i) => i.eventId)).toEqual([id]);
    for (const token of [viewerToken, authorToken, modElsewhere]) {
      const r = await held(room, token);
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('ERR_FORBIDDEN');
    }
    expect((await held(room)).status).toBe(401);
    // The author sees their own held comment (pending); anyone else's `mine` is empty.
    const mine = await held(room, authorToken, '?mine=true');
    expect(mine.status).toBe(200);
    expect(mine.body).toMatchObject({ total: 1, nextCursor: null, items: [{ eventId: id, text: linkText }] });
    expect((await held(room, viewerToken, '?mine=true')).body).toMatchObject({ items: [], total: 0 });
    expect((await own.myHeld()).items.map((i) => i.eventId)).toEqual([id]);
    // Deciding needs a moderator of this room.
    expect((await decide(room, viewerToken, id, 'release')).status).toBe(403);
    expect((await decide(room, modElsewhere, id, 'release')).status).toBe(403);
    const unknown = await decide(room, mod, '01940000-0000-7000-8000-00000000dead', 'release');
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('ERR_HELD_NOT_FOUND');

    // Live, the hold removed it for everyone but its author, whose client keeps it as pending.
    await waitFor(() => own.items.find((i) => i.eventId === id)?.pending === true, { what: 'the author’s comment pending', timeoutMs: 30_000 });
    await waitFor(() => anonymous.items.some((i) => i.text === 'a plain comment') && signedIn.items.some((i) => i.text === 'a plain comment'), { what: 'the plain comment', timeoutMs: 30_000 });
    for (const c of [anonymous, signedIn]) expect(c.items.some((i) => i.eventId === id)).toBe(false);

    // Released: every viewer gets it, over its socket.
    const released = await decide(room, mod, id, 'release');
    expect(released.status).toBe(202);
    for (const c of [anonymous, signedIn, own]) {
      const got = await waitFor(() => c.items.find((i) => i.eventId === id && !i.pending), { what: 'the released comment at a viewer', timeoutMs: 30_000 });
      expect(got).toMatchObject({ text: linkText, userId: author, released: true });
      expect(c.mode.transport).toBe('ws');
    }
    expect(own.items.filter((i) => i.eventId === id)).toHaveLength(1);
    // Polling viewers too, and it leaves the queue (a second decision is then 404).
    const feed = (await (await fetch(`${w.url}/v1/rooms/${room}/feed?limit=500`)).json()) as FeedResponse;
    expect(feed.events.filter((e) => e.kind === 'comment' && e.eventId === id)).toHaveLength(1);
    await queueWhere(room, mod, (items) => items.length === 0, 'the queue to empty');
    expect((await decide(room, mod, id, 'delete')).body.code).toBe('ERR_HELD_NOT_FOUND');
    expect((await held(room, authorToken, '?mine=true')).body.items).toEqual([]);

    // Another held comment, deleted by the moderator: it leaves the queue and no viewer ever sees it.
    const spam = `buy now at https://example.org/${room}`;
    const id2 = await post(room, authorToken, spam);
    await queueWhere(room, mod, (items) => items.some((i) => i.eventId === id2), 'the second comment in the queue');
    await waitFor(() => own.items.find((i) => i.eventId === id2)?.pending === true, { what: 'the second comment pending at its author', timeoutMs: 30_000 });
    const deleted = await decide(room, mod, id2, 'delete');
    expect(deleted.status).toBe(202);
    await queueWhere(room, mod, (items) => !items.some((i) => i.eventId === id2), 'the deleted comment to leave the queue');
    await waitFor(() => !own.items.some((i) => i.eventId === id2), { what: 'the pending comment gone at its author', timeoutMs: 30_000 });
    const after = (await (await fetch(`${w.url}/v1/rooms/${room}/feed?limit=500`)).json()) as FeedResponse;
    expect(after.events.some((e) => e.kind === 'comment' && e.eventId === id2)).toBe(false);
    expect(after.events.find((e) => e.kind === 'delete' && e.eventId === id2 && e.reason === 'moderation:review')).toBeTruthy();
    for (const c of [anonymous, signedIn]) expect(c.items.some((i) => i.eventId === id2)).toBe(false);
  });

  it('pages the queue with a bounded limit and a cursor', async () => {
    const room = randomName('review-pages');
    const mod = w.token(`mod-${room}`, 'moderator', { rooms: [room] });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await post(room, w.token(`u${i}-${room}`), `link ${i} example.com/${i}`));
    await queueWhere(room, mod, (items) => items.length === 5, 'five held comments');
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await held(room, mod, `?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.body.items.length).toBeLessThanOrEqual(2);
      expect(page.body.total).toBe(5);
      seen.push(...page.body.items.map((i) => i.eventId));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(seen).toEqual(ids);
    expect((await held(room, mod, '?limit=201')).status).toBe(400);
    expect((await held(room, mod, '?cursor=x')).status).toBe(400);
  });

  it('documents its routes in the OpenAPI description (/docs)', async () => {
    const doc = (await (await fetch(`${w.url}/docs/json`)).json()) as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    expect(Object.keys(doc.paths['/v1/rooms/{room}/moderation/held']!)).toEqual(['get']);
    expect(doc.paths['/v1/rooms/{room}/moderation/held']!.get!.responses).toHaveProperty('403');
    for (const verb of ['release', 'delete']) expect(doc.paths[`/v1/rooms/{room}/moderation/held/{eventId}/${verb}`]!.post!.responses).toHaveProperty('404');
  });
});
