/**
 * Mutes and room modes through the public API, with the moderation processor
 * running: a visibly muted user's comments are rejected with a reason; a
 * shadow-muted user's comments are accepted but shown to that user alone;
 * emote-only rooms take emoji only.
 */
import path from 'node:path';
import { REPO_ROOT } from '../core/config.ts';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../test/helpers.ts';
import { startWorld as startSystem, type World as System } from '../services/world.ts';
import type { FeedResponse } from './protocol.ts';

/** One placeholder word: these tests moderate with it, whatever the shipped list holds. */
const TEST_WORDLIST = path.join(REPO_ROOT, 'test', 'fixtures', 'wordlist.txt');

const systems: System[] = [];
afterAll(async () => {
  await Promise.all(systems.map((s) => s.stop()));
});

async function system(muteKind: 'shadow' | 'visible') {
  const s = await startSystem({ env: { MODERATION_WORDLIST: TEST_WORDLIST, MODERATION_MUTE_KIND: muteKind, MODERATION_OFFENSES_TO_MUTE: '2', LIMIT_COMMENTS: '1000' } });
  systems.push(s);
  const post = (room: string, token: string, text: string) =>
    fetch(`${s.url}/v1/rooms/${room}/comments`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ text }) });
  const feed = async (room: string, token?: string) =>
    (await (await fetch(`${s.url}/v1/rooms/${room}/feed?limit=500`, { headers: token ? { authorization: `Bearer ${token}` } : {} })).json()) as FeedResponse;
  const muted = async (room: string) => {
    // The mute is an event written by the moderation processor; wait until a write is refused (visible) or until the comment is shadowed.
    return waitFor(async () => {
      const st = (await (await fetch(`${s.url}/v1/rooms/${room}/feed?limit=500`)).json()) as FeedResponse;
      return st.events.filter((e) => e.kind === 'delete').length >= 2 ? true : undefined;
    }, { what: 'two moderation removals', timeoutMs: 20_000 });
  };
  return { s, post, feed, muted };
}

describe('mutes and room modes', () => {
  it('rejects a visibly muted user\'s comments with a reason', async () => {
    const { s, post, muted } = await system('visible');
    const room = `mute-v-${Date.now().toString(36)}`;
    const troll = s.token('troll');
    expect((await post(room, troll, 'badword one')).status).toBe(202);
    expect((await post(room, troll, 'badword two')).status).toBe(202);
    await muted(room);
    const refused = await waitFor(async () => {
      const r = await post(room, troll, 'hello?');
      return r.status === 403 ? r : undefined;
    }, { what: 'the mute to apply', timeoutMs: 20_000 });
    const body = (await refused.json()) as { code: string; message: string; details: { reason: string } };
    expect(body.code).toBe('ERR_MUTED');
    expect(body.details.reason).toMatch(/repeat offender/);
    expect((await post(room, s.token('someone-else'), 'hello')).status).toBe(202);
  });

  it('accepts a shadow-muted user\'s comments but shows them to that user alone', async () => {
    const { s, post, feed, muted } = await system('shadow');
    const room = `mute-s-${Date.now().toString(36)}`;
    const troll = s.token('shadowed');
    await post(room, troll, 'badword one');
    await post(room, troll, 'badword two');
    await muted(room);
    const text = `after the mute ${Date.now()}`;
    const own = await waitFor(async () => {
      const r = await post(room, troll, `${text} ${Math.random()}`);
      expect(r.status).toBe(202);
      const mine = await feed(room, troll);
      const last = mine.events.filter((e) => e.kind === 'comment').at(-1);
      return last && last.kind === 'comment' && last.shadow ? last : undefined;
    }, { what: 'a shadowed comment', timeoutMs: 20_000 });
    const others = await feed(room);
    expect(others.events.some((e) => e.eventId === own.eventId)).toBe(false);
    const mine = await feed(room, troll);
    expect(mine.events.some((e) => e.eventId === own.eventId)).toBe(true);
  });

  it('emote-only rooms take emoji and :codes: only, from viewers', async () => {
    const { s, post } = await system('shadow');
    const room = `emote-${Date.now().toString(36)}`;
    const mod = s.token('mod', 'moderator', { rooms: [room] });
    const r = await fetch(`${s.url}/v1/rooms/${room}/settings`, { method: 'PATCH', headers: { 'content-type': 'application/json', authorization: `Bearer ${mod}` }, body: JSON.stringify({ emoteOnly: true }) });
    expect(r.status).toBe(202);
    const viewer = s.token('v');
    await waitFor(async () => ((await post(room, viewer, 'words')).status === 403 ? true : undefined), { what: 'emote-only to apply', timeoutMs: 20_000 });
    const refused = await post(room, viewer, 'more words');
    expect(((await refused.json()) as { code: string }).code).toBe('ERR_EMOTE_ONLY');
    expect((await post(room, viewer, '🎉🎉 :heart:')).status).toBe(202);
    expect((await post(room, mod, 'moderators may still talk')).status).toBe(202);
  });
});
