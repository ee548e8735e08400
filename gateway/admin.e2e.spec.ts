/**
 * Trust, through the public API of real processes: two gateways sharing
 * Redis, the processors and the moderation processor. An admin lists and
 * ends a user's sockets on every gateway, bans a user and revokes their
 * tokens (sockets close within a second, tokens are refused on every
 * gateway); a visible mute closes the muted user's sockets in the room, a
 * shadow mute closes and tells nothing.
 */
import path from 'node:path';
import { REPO_ROOT } from '../core/config.ts';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../test/helpers.ts';
import { startWorld, type World } from '../services/world.ts';
import { CLOSE, type ServerMessage } from './protocol.ts';

/** One placeholder word: these tests moderate with it, whatever the shipped list holds. */
const TEST_WORDLIST = path.join(REPO_ROOT, 'test', 'fixtures', 'wordlist.txt');

const worlds: World[] = [];
afterAll(async () => {
  await Promise.all(worlds.map((w) => w.stop()));
});

let roomN = 0;
const newRoom = (what: string) => `${what}-${Date.now().toString(36)}-${roomN++}`;

interface Socket {
  ws: WebSocket;
  raw: string[];
  msgs: ServerMessage[];
  closed: Promise<{ code: number; reason: string; at: number }>;
  isClosed(): boolean;
  snapshot: Promise<unknown>;
}

function socket(base: string, room: string, token?: string): Socket {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/v1/rooms/${room}/ws${token ? `?token=${token}` : ''}`);
  const raw: string[] = [];
  const msgs: ServerMessage[] = [];
  let done = false;
  ws.on('message', (data) => {
    raw.push(String(data));
    msgs.push(JSON.parse(String(data)) as ServerMessage);
  });
  ws.on('error', () => undefined);
  const closed = new Promise<{ code: number; reason: string; at: number }>((resolve) =>
    ws.on('close', (code, reason) => {
      done = true;
      resolve({ code, reason: reason.toString(), at: Date.now() });
    }),
  );
  const snapshot = waitFor(() => msgs.some((m) => m.type === 'snapshot') || undefined, { what: `a snapshot of ${room}` });
  snapshot.catch(() => undefined); // a socket refused at the door never gets one: only an await of it fails
  return { ws, raw, msgs, closed, isClosed: () => done, snapshot };
}

async function call(base: string, method: string, path: string, o: { token?: string; body?: unknown } = {}) {
  const headers: Record<string, string> = {};
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: o.body === undefined ? undefined : JSON.stringify(o.body) });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as Record<string, any> };
}

const post = (base: string, room: string, token: string, text: string) => call(base, 'POST', `/v1/rooms/${room}/comments`, { token, body: { text } });

describe('the admin API and visible mutes, two gateways', () => {
  let w: World;
  let A: string;
  let B: string;
  let admin: string;
  const idOf = (url: string) => `gw-${new URL(url).port}`;

  beforeAll(async () => {
    w = await startWorld({ gateways: 2, env: { MODERATION_WORDLIST: TEST_WORDLIST, LIMIT_COMMENTS: '1000', MODERATION_MUTE_KIND: 'visible', MODERATION_OFFENSES_TO_MUTE: '2' } });
    worlds.push(w);
    A = w.gateways[0]!.url;
    B = w.gateways[1]!.url;
    admin = w.token('ada', 'admin');
  });

  it('refuses the admin routes to anyone but a platform admin', async () => {
    const room = newRoom('forbid');
    const routes: [string, string, unknown?][] = [
      ['GET', '/v1/admin/users/carol/connections'],
      ['DELETE', '/v1/admin/users/carol/connections'],
      ['POST', '/v1/admin/users/carol/ban', { reason: 'x' }],
      ['DELETE', '/v1/admin/users/carol/ban'],
      ['POST', '/v1/admin/users/carol/revoke'],
    ];
    for (const [method, path, body] of routes) {
      for (const token of [w.token('vic'), w.token('mo', 'moderator', { rooms: [room] }), w.token('bo', 'broadcaster', { rooms: [room] })]) {
        const r = await call(A, method, path, { token, body });
        expect([r.status, r.body.code], `${method} ${path}`).toEqual([403, 'ERR_FORBIDDEN']);
      }
      const anon = await call(B, method, path, { body });
      expect([anon.status, anon.body.code], `${method} ${path} anonymous`).toEqual([401, 'ERR_AUTH_REQUIRED']);
    }
    // Nothing happened to carol.
    expect((await post(A, room, w.token('carol'), 'still here')).status).toBe(202);
  });

  it('lists a user\'s sockets on both gateways from either one, and DELETE closes them all within a second', async () => {
    const r1 = newRoom('list');
    const r2 = newRoom('list');
    const carol = w.token('carol');
    const onA = socket(A, r1, carol);
    const onB = socket(B, r2, carol);
    const bystander = socket(B, r2, w.token('bob'));
    await Promise.all([onA.snapshot, onB.snapshot, bystander.snapshot]);

    for (const via of [A, B]) {
      const list = await waitFor(async () => {
        const r = await call(via, 'GET', '/v1/admin/users/carol/connections', { token: admin });
        expect(r.status).toBe(200);
        return r.body.connections.length === 2 ? r.body : undefined;
      }, { what: 'carol on both gateways' });
      expect(list.userId).toBe('carol');
      expect(list.connections.map((c: any) => [c.gateway, c.rooms, c.sockets])).toEqual(
        [
          [idOf(A), { [r1]: 1 }, 1],
          [idOf(B), { [r2]: 1 }, 1],
        ].sort((x, y) => String(x[0]).localeCompare(String(y[0]))),
      );
      for (const c of list.connections) expect(Date.now() - c.gatewaySeenAtMs).toBeLessThan(30_000);
    }

    const t0 = Date.now();
    const del = await call(B, 'DELETE', '/v1/admin/users/carol/connections', { token: admin });
    expect(del).toEqual({ status: 202, body: { userId: 'carol', gatewaysTold: 2 } });
    const [ca, cb] = await Promise.all([onA.closed, onB.closed]);
    expect([ca.code, cb.code]).toEqual([CLOSE.disconnected, CLOSE.disconnected]);
    expect(Math.max(ca.at, cb.at) - t0).toBeLessThan(1000);
    expect(bystander.isClosed()).toBe(false);
    await waitFor(async () => ((await call(A, 'GET', '/v1/admin/users/carol/connections', { token: admin })).body.connections.length === 0 ? true : undefined), {
      what: 'carol gone from the registry',
    });
    // A disconnect is not a ban: carol may come back.
    const again = socket(A, r1, carol);
    await again.snapshot;
    again.ws.close();
  });

  it('a ban on gateway A closes the user\'s socket on B within a second and refuses their tokens on both until lifted', async () => {
    const room = newRoom('ban');
    const dave = w.token('dave');
    const onB = socket(B, room, dave);
    await onB.snapshot;
    expect((await post(B, room, dave, 'hello before')).status).toBe(202);

    const t0 = Date.now();
    const ban = await call(A, 'POST', '/v1/admin/users/dave/ban', { token: admin, body: { durationSec: 600, reason: 'spam waves' } });
    expect(ban.status).toBe(200);
    expect(ban.body).toMatchObject({ userId: 'dave', reason: 'spam waves', gatewaysTold: 2 });
    expect(ban.body.untilMs).toBeGreaterThan(t0 + 590_000);
    const closed = await onB.closed;
    expect(closed.code).toBe(CLOSE.forbidden);
    expect(closed.reason).toBe('banned: spam waves');
    expect(closed.at - t0).toBeLessThan(1000);

    for (const g of [A, B]) {
      const r = await post(g, room, dave, 'hello after');
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('ERR_BANNED');
      expect(r.body.details).toEqual({ untilMs: ban.body.untilMs, reason: 'spam waves' });
    }
    // A new socket with the token is refused at the door (and an anonymous one still reads).
    expect((await socket(B, room, dave).closed).code).toBe(CLOSE.unauthorized);

    const lifted = await call(B, 'DELETE', '/v1/admin/users/dave/ban', { token: admin });
    expect(lifted).toEqual({ status: 200, body: { userId: 'dave', lifted: true } });
    expect((await post(A, room, dave, 'hello again')).status).toBe(202);
  });

  it('a revoke refuses the tokens issued before it and closes the sockets within a second; a token issued after works', async () => {
    const room = newRoom('revoke');
    const old = w.token('erin');
    const onB = socket(B, room, old);
    await onB.snapshot;

    const t0 = Date.now();
    const rev = await call(A, 'POST', '/v1/admin/users/erin/revoke', { token: admin });
    expect(rev.status).toBe(200);
    expect(rev.body).toMatchObject({ userId: 'erin', gatewaysTold: 2 });
    const revokedAtMs = rev.body.revokedAtMs as number;
    const closed = await onB.closed;
    expect(closed.code).toBe(CLOSE.revoked);
    expect(closed.at - t0).toBeLessThan(1000);

    for (const g of [A, B]) {
      const r = await post(g, room, old, 'with the old token');
      expect([r.status, r.body.code]).toEqual([401, 'ERR_TOKEN_REVOKED']);
    }
    // `iat` has whole seconds: a token is "after" the revocation from the next second on.
    await waitFor(() => Date.now() >= (Math.floor(revokedAtMs / 1000) + 1) * 1000 || undefined, { what: 'the second after the revocation', timeoutMs: 2000, intervalMs: 20 });
    const fresh = w.token('erin');
    for (const g of [A, B]) expect((await post(g, room, fresh, `with a new token ${g}`)).status).toBe(202);
    const s = socket(A, room, fresh);
    await s.snapshot;
    s.ws.close();
  });

  it('a visible mute closes the muted user\'s sockets in that room on both gateways, and no others', async () => {
    const room = newRoom('mute-v');
    const elsewhere = newRoom('mute-v');
    const troll = w.token('troll');
    const onA = socket(A, room, troll);
    const onB = socket(B, room, troll);
    const inOtherRoom = socket(A, elsewhere, troll);
    const bystander = socket(B, room, w.token('bob'));
    await Promise.all([onA.snapshot, onB.snapshot, inOtherRoom.snapshot, bystander.snapshot]);

    expect((await post(A, room, troll, 'badword one')).status).toBe(202);
    expect((await post(B, room, troll, 'badword two')).status).toBe(202);
    // The moderation processor removes both, then mutes: the state projection's visible mute reaches both gateways.
    const [ca, cb] = await Promise.all([onA.closed, onB.closed]);
    expect([ca.code, cb.code]).toEqual([CLOSE.forbidden, CLOSE.forbidden]);
    expect(ca.reason).toBe('muted in this room');
    expect(Math.abs(ca.at - cb.at)).toBeLessThan(1000);
    expect(inOtherRoom.isClosed()).toBe(false);
    expect(bystander.isClosed()).toBe(false);
    const refused = await post(A, room, troll, 'let me talk');
    expect([refused.status, refused.body.code]).toEqual([403, 'ERR_MUTED']);
    inOtherRoom.ws.close();
    bystander.ws.close();
  });
});

describe('a shadow mute', () => {
  let w: World;

  beforeAll(async () => {
    w = await startWorld({ env: { MODERATION_WORDLIST: TEST_WORDLIST, LIMIT_COMMENTS: '1000', MODERATION_MUTE_KIND: 'shadow', MODERATION_OFFENSES_TO_MUTE: '2' } });
    worlds.push(w);
  });

  it('closes nothing and tells the muted user nothing', async () => {
    const room = newRoom('mute-s');
    const troll = w.token('shade');
    const s = socket(w.url, room, troll);
    await s.snapshot;
    expect((await post(w.url, room, troll, 'badword one')).status).toBe(202);
    expect((await post(w.url, room, troll, 'badword two')).status).toBe(202);

    // Muted once the troll's own comments come back shadowed (shown to them alone).
    let n = 0;
    await waitFor(async () => {
      const text = `after ${n++} ${Date.now()}`;
      expect((await post(w.url, room, troll, text)).status).toBe(202);
      const mine = await waitFor(() => {
        for (const m of s.msgs) if (m.type === 'batch') for (const e of m.events) if (e.t === 'comment' && e.entry.text === text) return e.entry;
        return undefined;
      }, { what: `"${text}" on the troll's socket`, timeoutMs: 20_000 });
      return mine.shadow === true || undefined;
    }, { what: 'a shadowed comment', timeoutMs: 40_000, intervalMs: 200 });

    // The mute event precedes this change in the room's log, and the state projection notifies in log order:
    // once the settings reach the socket, the mute was handled before them.
    const mod = w.token('mo', 'moderator', { rooms: [room] });
    expect((await call(w.url, 'PATCH', `/v1/rooms/${room}/settings`, { token: mod, body: { slowModeSec: 1 } })).status).toBe(202);
    await waitFor(() => s.msgs.some((m) => m.type === 'batch' && m.events.some((e) => e.t === 'settings' && e.settings.slowModeSec === 1)) || undefined, {
      what: 'the settings change on the troll\'s socket',
      timeoutMs: 20_000,
    });
    expect(s.isClosed()).toBe(false);
    // Only what every viewer gets: no message, event or field about the mute.
    expect(s.msgs.filter((m) => !['snapshot', 'batch', 'viewers'].includes(m.type))).toEqual([]);
    expect(s.raw.some((r) => r.includes('"t":"mute"') || r.includes('"muted"'))).toBe(false);
    s.ws.close();
  });
});
