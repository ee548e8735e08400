/**
 * The write and read API of the running system (processors + gateway as real
 * processes), driven only over HTTP: auth and roles, validation, limits,
 * idempotent retries, per-room order under concurrent writers, and
 * delete / pin / tally propagation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../test/helpers.ts';
import { startWorld as startSystem, type World as System } from '../services/world.ts';
import type { FeedResponse } from './protocol.ts';

let sys: System;

beforeAll(async () => {
  sys = await startSystem({ env: { LIMIT_COMMENTS: '1000', MODERATION_ENABLED: 'false', POLL_MIN_MS: '100' } });
});
afterAll(async () => {
  await sys?.stop();
});

async function call(method: string, path: string, opts: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined || opts.raw !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${sys.url}${path}`, { method, headers, body: opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body)) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, any>) : undefined };
}

const feed = async (room: string, since?: string) => (await call('GET', `/v1/rooms/${room}/feed?limit=500${since ? `&since=${since}` : ''}`)).body as FeedResponse;
const comments = (f: FeedResponse) => f.events.filter((e) => e.kind === 'comment');
let n = 0;
const room = () => `api-room-${Date.now().toString(36)}-${n++}`;

describe('auth and roles', () => {
  it('requires a valid token to write; reads are anonymous', async () => {
    const r = room();
    expect((await call('POST', `/v1/rooms/${r}/comments`, { body: { text: 'hi' } })).body).toMatchObject({ code: 'ERR_AUTH_REQUIRED' });
    const bad = await call('POST', `/v1/rooms/${r}/comments`, { body: { text: 'hi' }, token: 'not.a.jwt' });
    expect([bad.status, bad.body!.code]).toEqual([401, 'ERR_AUTH_INVALID']);
    const expired = await call('POST', `/v1/rooms/${r}/comments`, { body: { text: 'hi' }, token: sys.token('u', 'viewer', { ttlSec: -10 }) });
    expect([expired.status, expired.body!.code]).toEqual([401, 'ERR_AUTH_INVALID']);
    expect((await call('GET', `/v1/rooms/${r}/state`)).status).toBe(200);
  });

  it('enforces the role matrix: who may delete, pin, and change settings', async () => {
    const r = room();
    const viewer = sys.token('alice');
    const other = sys.token('bob');
    const mod = sys.token('mia', 'moderator', { rooms: [r] });
    const caster = sys.token('cas', 'broadcaster', { rooms: [r] });
    const admin = sys.token('ada', 'admin');
    // Room roles hold in their room only: a broadcaster of another room is a viewer here.
    const elsewhere = sys.token('cas', 'broadcaster', { rooms: [`${r}-other`] });
    const posted = await call('POST', `/v1/rooms/${r}/comments`, { token: viewer, body: { text: 'mine' } });
    expect(posted.status).toBe(202);
    const id = posted.body!.eventId as string;
    await waitFor(async () => comments(await feed(r)).some((c) => c.eventId === id), { what: 'the comment in the feed' });

    expect((await call('DELETE', `/v1/rooms/${r}/comments/${id}`, { token: other })).status).toBe(403);
    expect((await call('POST', `/v1/rooms/${r}/pin`, { token: viewer, body: { eventId: id } })).status).toBe(403);
    expect((await call('PATCH', `/v1/rooms/${r}/settings`, { token: viewer, body: { emoteOnly: true } })).status).toBe(403);
    expect((await call('PATCH', `/v1/rooms/${r}/settings`, { token: elsewhere, body: { emoteOnly: true } })).status).toBe(403);
    expect((await call('POST', `/v1/rooms/${r}/pin`, { token: elsewhere, body: { eventId: id } })).status).toBe(403);
    expect((await call('POST', `/v1/rooms/${r}/pin`, { token: caster, body: { eventId: id, durationSec: 60 } })).status).toBe(202);
    expect((await call('POST', `/v1/rooms/${r}/pin`, { token: mod, body: { eventId: id } })).status).toBe(202);
    expect((await call('PATCH', `/v1/rooms/${r}/settings`, { token: admin, body: { slowModeSec: 0 } })).status).toBe(202);
    expect((await call('DELETE', `/v1/rooms/${r}/comments/${id}`, { token: viewer })).status).toBe(202);
    const m2 = await call('POST', `/v1/rooms/${r}/comments`, { token: other, body: { text: 'theirs' } });
    await waitFor(async () => comments(await feed(r)).some((c) => c.eventId === m2.body!.eventId), { what: 'second comment' });
    expect((await call('DELETE', `/v1/rooms/${r}/comments/${m2.body!.eventId}`, { token: mod })).status).toBe(202);
  });
});

describe('validation', () => {
  const t = () => sys.token('val');
  it('answers 400 with a stable code for malformed, mistyped, oversized and out-of-range input', async () => {
    const r = room();
    const cases: [string, Awaited<ReturnType<typeof call>>][] = [
      ['ERR_BAD_JSON', await call('POST', `/v1/rooms/${r}/comments`, { token: t(), raw: '{"text": ' })],
      ['ERR_VALIDATION', await call('POST', `/v1/rooms/${r}/comments`, { token: t(), body: { text: 123 } })],
      ['ERR_VALIDATION', await call('POST', `/v1/rooms/${r}/comments`, { token: t(), body: { text: 'x', color: 0x1000000 } })],
      ['ERR_VALIDATION', await call('POST', `/v1/rooms/${r}/comments`, { token: t(), body: { text: 'x', mode: 'sideways' } })],
      ['ERR_VALIDATION', await call('POST', `/v1/rooms/${r}/comments`, { token: t(), body: { text: 'x', extra: 1 } })],
      ['ERR_VALIDATION', await call('POST', `/v1/rooms/bad%20room!/comments`, { token: t(), body: { text: 'x' } })],
      ['ERR_BODY_TOO_LARGE', await call('POST', `/v1/rooms/${r}/comments`, { token: t(), body: { text: 'x'.repeat(100_000) } })],
      ['ERR_TEXT_LENGTH', await call('POST', `/v1/rooms/${r}/comments`, { token: t(), body: { text: '字'.repeat(201) } })],
      ['ERR_TEXT_LENGTH', await call('POST', `/v1/rooms/${r}/comments`, { token: t(), body: { text: '\u200b\u200b \u0007' } })],
      ['ERR_UNKNOWN_EMOJI', await call('POST', `/v1/rooms/${r}/reactions`, { token: t(), body: { emoji: 'poop' } })],
      ['ERR_VALIDATION', await call('POST', `/v1/rooms/${r}/reactions`, { token: t(), body: { emoji: 'heart', count: 0 } })],
    ];
    for (const [code, res] of cases) {
      expect([res.status, res.body?.code], code).toEqual([400, code]);
    }
    // 200 code points of CJK text is fine (limits count characters, not bytes).
    expect((await call('POST', `/v1/rooms/${r}/comments`, { token: t(), body: { text: '字'.repeat(200) } })).status).toBe(202);
  });
});

describe('writes', () => {
  it('a retry with the same clientMsgId returns the first result and creates no second event', async () => {
    const r = room();
    const token = sys.token('retry');
    const body = { text: 'only once', clientMsgId: 'c-42' };
    const [a, b] = await Promise.all([call('POST', `/v1/rooms/${r}/comments`, { token, body }), call('POST', `/v1/rooms/${r}/comments`, { token, body })]);
    const ok = [a, b].filter((x) => x.status === 202);
    expect(ok.length).toBeGreaterThanOrEqual(1);
    const c = await call('POST', `/v1/rooms/${r}/comments`, { token, body });
    expect(c.status).toBe(202);
    expect(c.body!.eventId).toBe(ok[0]!.body!.eventId);
    expect(c.body!.duplicate).toBe(true);
    await call('POST', `/v1/rooms/${r}/comments`, { token, body: { text: 'marker' } });
    await waitFor(async () => comments(await feed(r)).some((x) => x.kind === 'comment' && x.text === 'marker'), { what: 'marker' });
    expect(comments(await feed(r)).filter((x) => x.kind === 'comment' && x.text === 'only once')).toHaveLength(1);
  });

  it('keeps one order per room across many concurrent writers, each writer\'s comments in its own order', async () => {
    const r = room();
    const writers = 8;
    const each = 15;
    const acks: { writer: number; i: number; eventId: string; offset: number }[] = [];
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        const token = sys.token(`writer-${w}`);
        for (let i = 0; i < each; i++) {
          const res = await call('POST', `/v1/rooms/${r}/comments`, { token, body: { text: `w${w} #${i}` } });
          expect(res.status).toBe(202);
          acks.push({ writer: w, i, eventId: res.body!.eventId, offset: res.body!.position.offset });
        }
      }),
    );
    const f = await waitFor(async () => {
      const x = await feed(r);
      return comments(x).length === writers * each ? x : undefined;
    }, { what: 'all comments in the feed', timeoutMs: 30_000 });
    const got = comments(f);
    // The feed is in log order, and the log order is the order of the acknowledged offsets.
    expect(got.map((c) => c.offset)).toEqual([...acks].sort((a, b) => a.offset - b.offset).map((a) => a.offset));
    expect(new Set(got.map((c) => c.eventId)).size).toBe(writers * each);
    for (let w = 0; w < writers; w++) {
      const mine = got.filter((c) => c.kind === 'comment' && c.userId === `writer-${w}`).map((c) => (c.kind === 'comment' ? c.text : ''));
      expect(mine).toEqual(Array.from({ length: each }, (_, i) => `w${w} #${i}`));
    }
  });

  it('propagates deletes (tombstones), pins and tallies to readers', async () => {
    const r = room();
    const mod = sys.token('mod', 'moderator', { rooms: [r] });
    const viewer = sys.token('v1');
    const c = await call('POST', `/v1/rooms/${r}/comments`, { token: viewer, body: { text: 'pin me', mode: 'top', color: 0xff8800, size: 'large' } });
    const d = await call('POST', `/v1/rooms/${r}/comments`, { token: viewer, body: { text: 'delete me' } });
    // A pin or a deletion must name a comment the gateway can find: wait until Redis holds both.
    await waitFor(async () => comments(await feed(r)).length === 2 || undefined, { what: 'both comments in the feed' });
    await call('POST', `/v1/rooms/${r}/reactions`, { token: viewer, body: { emoji: 'heart', count: 3 } });
    await call('POST', `/v1/rooms/${r}/reactions`, { token: viewer, body: { emoji: 'fire' } });
    await call('POST', `/v1/rooms/${r}/pin`, { token: mod, body: { eventId: c.body!.eventId, durationSec: 300 } });
    await call('DELETE', `/v1/rooms/${r}/comments/${d.body!.eventId}`, { token: mod });
    const state = await waitFor(async () => {
      const s = (await call('GET', `/v1/rooms/${r}/state`)).body!;
      return s.pinned && s.tallies.totals.heart === 3 && s.tallies.totals.fire === 1 ? s : undefined;
    }, { what: 'pin and tallies in the state' });
    expect(state.pinned).toMatchObject({ eventId: c.body!.eventId, text: 'pin me' });
    const f = await waitFor(async () => {
      const x = await feed(r);
      return x.events.some((e) => e.kind === 'delete') ? x : undefined;
    }, { what: 'the tombstone' });
    expect(f.events.map((e) => [e.kind, e.eventId])).toEqual([
      ['comment', c.body!.eventId],
      ['delete', d.body!.eventId],
    ]);
    expect(f.events[0]).toMatchObject({ mode: 'top', color: 0xff8800, size: 'large' });
    expect((await call('DELETE', `/v1/rooms/${r}/pin`, { token: mod })).status).toBe(202);
    await waitFor(async () => (await call('GET', `/v1/rooms/${r}/state`)).body!.pinned === null || undefined, { what: 'unpinned' });
  });

  it('polls with since, answers 304 when nothing changed, and tells a quiet room to come back later', async () => {
    const r = room();
    const token = sys.token('poller');
    await call('POST', `/v1/rooms/${r}/comments`, { token, body: { text: 'one' } });
    const first = await waitFor(async () => {
      const x = await feed(r);
      return comments(x).length === 1 ? x : undefined;
    }, { what: 'one' });
    const since = `${first.position.epoch}.${first.position.offset}`;
    const empty = await call('GET', `/v1/rooms/${r}/feed?since=${since}`);
    expect(empty.body!.events).toEqual([]);
    const etag = empty.headers.get('etag')!;
    expect((await call('GET', `/v1/rooms/${r}/feed?since=${since}`, { headers: { 'if-none-match': etag } })).status).toBe(304);
    // Long poll: held until the next comment arrives.
    const t0 = Date.now();
    const [long] = await Promise.all([call('GET', `/v1/rooms/${r}/feed?since=${since}&wait=10`), call('POST', `/v1/rooms/${r}/comments`, { token, body: { text: 'two' } })]);
    expect(long.body!.events.map((e: { text: string }) => e.text)).toEqual(['two']);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(long.body!.nextPollMs).toBeGreaterThanOrEqual(100);
    // Weak networks: large poll answers are gzipped.
    for (let i = 0; i < 20; i++) await call('POST', `/v1/rooms/${r}/comments`, { token, body: { text: `padding comment number ${i} with some length to it` } });
    await waitFor(async () => comments(await feed(r)).length >= 22 || undefined, { what: 'padding comments' });
    const zipped = await fetch(`${sys.url}/v1/rooms/${r}/feed`, { headers: { 'accept-encoding': 'gzip' } });
    expect(zipped.headers.get('content-encoding')).toBe('gzip');
  });
});

describe('limits', () => {
  it('rate-limits comments per user with 429 and Retry-After, and applies slow mode to viewers only', async () => {
    const limited = await startSystem({ processor: true, env: { LIMIT_COMMENTS: '3', LIMIT_COMMENTS_WINDOW_SEC: '60', MODERATION_ENABLED: 'false' } });
    try {
      const r = room();
      const post = (token: string, text: string) =>
        fetch(`${limited.url}/v1/rooms/${r}/comments`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ text }) });
      const t = limited.token('spammer');
      for (let i = 0; i < 3; i++) expect((await post(t, `m${i}`)).status).toBe(202);
      const over = await post(t, 'too many');
      expect(over.status).toBe(429);
      expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(((await over.json()) as { code: string }).code).toBe('ERR_RATE_LIMITED');
      // Another user has their own bucket.
      expect((await post(limited.token('calm'), 'hello')).status).toBe(202);

      const mod = limited.token('mod', 'moderator', { rooms: [r] });
      const res = await fetch(`${limited.url}/v1/rooms/${r}/settings`, { method: 'PATCH', headers: { 'content-type': 'application/json', authorization: `Bearer ${mod}` }, body: JSON.stringify({ slowModeSec: 30 }) });
      expect(res.status).toBe(202);
      await waitFor(async () => ((await (await fetch(`${limited.url}/v1/rooms/${r}/state`)).json()) as { settings: { slowModeSec: number } }).settings.slowModeSec === 30 || undefined, { what: 'slow mode in state' });
      const v = limited.token('slowpoke');
      expect((await post(v, 'first')).status).toBe(202);
      const slow = await post(v, 'second');
      expect(slow.status).toBe(429);
      expect(((await slow.json()) as { code: string }).code).toBe('ERR_SLOW_MODE');
      expect((await post(mod, 'mods are exempt')).status).toBe(202);
      expect((await post(mod, 'still exempt')).status).toBe(202);
    } finally {
      await limited.stop();
    }
  });
});

describe('operations', () => {
  it('prints room-scoped tokens that the gateway accepts in their room only (npm run token)', async () => {
    const { execFile } = await import('node:child_process');
    const r = room();
    const token = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['--import', 'tsx', 'gateway/token-cli.ts', '--user', 'cli-user', '--role', 'moderator', '--room', r], { env: { ...process.env, ...sys.env } }, (err, out) =>
        err ? reject(err) : resolve(out.trim()),
      ),
    );
    expect((await call('PATCH', `/v1/rooms/${r}/settings`, { token, body: { slowModeSec: 1 } })).status).toBe(202);
    expect((await call('PATCH', `/v1/rooms/${room()}/settings`, { token, body: { slowModeSec: 1 } })).status).toBe(403);
    // A room role without its room is a usage error, not a global moderator.
    const refused = await new Promise<number>((resolve) =>
      execFile(process.execPath, ['--import', 'tsx', 'gateway/token-cli.ts', '--user', 'cli-user', '--role', 'moderator'], { env: { ...process.env, ...sys.env } }, (err) => resolve(err ? (err as { code?: number }).code ?? 1 : 0)),
    );
    expect(refused).toBe(2);
  });

  it('serves health, readiness, Prometheus metrics and the OpenAPI description', async () => {
    expect((await call('GET', '/healthz')).body).toEqual({ status: 'ok' });
    expect((await call('GET', '/readyz')).body).toMatchObject({ status: 'ready', checks: { redis: 'ok', kafka: 'ok' } });
    const metrics = await (await fetch(`${sys.url}/metrics`)).text();
    expect(metrics).toMatch(/danmaku_http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+/);
    const doc = (await call('GET', '/docs/json')).body!;
    for (const p of ['/v1/rooms/{room}/comments', '/v1/rooms/{room}/reactions', '/v1/rooms/{room}/feed', '/v1/rooms/{room}/state', '/v1/rooms/{room}/pin', '/v1/rooms/{room}/settings']) {
      expect(Object.keys(doc.paths), p).toContain(p);
    }
    expect(doc.paths['/v1/rooms/{room}/comments'].post.responses).toHaveProperty('429');
  });
});
