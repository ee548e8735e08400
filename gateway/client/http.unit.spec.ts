/** The client over HTTP with a fake gateway (fetch): the replay client, and how writes retry. */
import { describe, expect, it } from 'vitest';
import { DanmakuError } from './client.ts';
import { ReplayClient } from './replay.ts';

/** A fake gateway: three pages of the timeline, and the request log. */
function fakeFetch() {
  const calls: { url: URL; auth: string | null }[] = [];
  const fn = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    calls.push({ url, auth: new Headers(init?.headers).get('authorization') });
    if (url.pathname.endsWith('/replay')) {
      const page = Number(url.searchParams.get('cursor') ?? '0');
      if (url.searchParams.get('view') === 'bad') return Response.json({ code: 'ERR_VALIDATION', message: 'view' }, { status: 400 });
      const items = [0, 1].map((i) => ({ kind: 'comment', at: page * 2 + i, eventId: `e${page * 2 + i}`, text: `t${page * 2 + i}` }));
      return Response.json({ items, nextCursor: page < 2 ? String(page + 1) : null });
    }
    if (url.pathname.endsWith('/replay/tallies')) return Response.json({ room: 'r', fromMs: 0, toMs: 1000, seconds: [], totals: {} });
    return Response.json({ code: 'ERR_ARCHIVE_UNAVAILABLE', message: 'no archive' }, { status: 503, headers: { 'retry-after': '2' } });
  }) as typeof fetch;
  return { fn, calls };
}

describe('ReplayClient', () => {
  it('follows the cursors through every page of a window, with the token', async () => {
    const f = fakeFetch();
    const r = new ReplayClient({ baseUrl: 'http://gw', room: 'a b', token: 'tok', fetch: f.fn });
    const items = [];
    for await (const i of r.timeline({ fromMs: 0, toMs: 30_000, view: 'moderated', pageSize: 2 })) items.push(i.eventId);
    expect(items).toEqual(['e0', 'e1', 'e2', 'e3', 'e4', 'e5']);
    expect(f.calls.map((c) => c.url.searchParams.get('cursor'))).toEqual([null, '1', '2']);
    expect(f.calls[0]!.url.pathname).toBe('/v1/rooms/a%20b/replay');
    expect(Object.fromEntries(f.calls[0]!.url.searchParams)).toEqual({ fromMs: '0', toMs: '30000', view: 'moderated', format: 'json', limit: '2' });
    expect(f.calls.every((c) => c.auth === 'Bearer tok')).toBe(true);
  });

  it('stops at an aborted signal (a seek)', async () => {
    const f = fakeFetch();
    const ac = new AbortController();
    const got: string[] = [];
    for await (const i of new ReplayClient({ baseUrl: 'http://gw', room: 'r', fetch: f.fn }).timeline({ fromMs: 0, toMs: 1, signal: ac.signal })) {
      got.push(i.eventId);
      ac.abort();
    }
    expect(got).toEqual(['e0', 'e1']);
    expect(f.calls).toHaveLength(1);
  });

  it('answers coded errors as DanmakuError, with Retry-After', async () => {
    const r = new ReplayClient({ baseUrl: 'http://gw', room: 'r', fetch: fakeFetch().fn });
    await expect(r.page({ fromMs: 0, toMs: 1, view: 'bad' as never })).rejects.toMatchObject({ code: 'ERR_VALIDATION', status: 400 });
    const err = await r.stats().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DanmakuError);
    expect(err).toMatchObject({ code: 'ERR_ARCHIVE_UNAVAILABLE', status: 503, retryAfterMs: 2000 });
    expect((await r.tallies({ fromMs: 0, toMs: 1000 })).seconds).toEqual([]);
  });
});

describe('DanmakuClient writes', () => {
  it('asks again on ERR_IN_PROGRESS (its clientMsgId still being written) and gets the first write\'s result; other 4xx are the caller\'s', async () => {
    const { DanmakuClient } = await import('./client.ts');
    const answers = [
      Response.json({ code: 'ERR_IN_PROGRESS', message: 'in flight' }, { status: 409, headers: { 'retry-after': '0' } }),
      Response.json({ eventId: 'e1', position: { epoch: 0, offset: 7 }, duplicate: true }, { status: 202 }),
      Response.json({ code: 'ERR_SLOW_MODE', message: 'slow' }, { status: 429, headers: { 'retry-after': '0' } }),
    ];
    const bodies: string[] = [];
    const fetchFn = (async (_url: string | URL | Request, init?: RequestInit) => {
      bodies.push(String(init?.body));
      return answers.shift()!;
    }) as typeof fetch;
    const c = new DanmakuClient({ baseUrl: 'http://gw', room: 'r', token: 'x.eyJzdWIiOiJ1In0.y', fetch: fetchFn, autoConnect: false, route: false });
    expect(await c.post('hello', { clientMsgId: 'm1' })).toEqual({ eventId: 'e1', position: { epoch: 0, offset: 7 }, duplicate: true });
    expect(bodies.map((b) => JSON.parse(b).clientMsgId)).toEqual(['m1', 'm1']);
    await expect(c.post('again')).rejects.toMatchObject({ code: 'ERR_SLOW_MODE', status: 429 });
    expect(bodies).toHaveLength(3);
    c.close();
  });
});
