/**
 * The connection registry, control channels, visible mutes, bans and
 * revocations on real Redis — a single server and the Redis Cluster — with
 * two real gateways built in process and real WebSocket clients. No
 * processor: room notifications are published the way a processor does.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { Config } from '../core/config.ts';
import { notifyChannel, type Notification } from '../pipelines/naming.ts';
import type { Delta } from '../pipelines/projection.ts';
import { worldEnv, worldId } from '../services/world.ts';
import { testConfig, waitFor } from '../test/helpers.ts';
import { buildGateway } from './app.ts';
import { tokenSigner } from './auth.ts';
import { banKey, banUser, blockOf, revokedKey, revokeTokens, unbanUser } from './blocks.ts';
import { connKey, gatewaysKey, readConnections, readLiveGateways, tellGateways } from './connections.ts';
import { createGatewayDeps, type GatewayDeps } from './deps.ts';
import { CLOSE, type ServerMessage } from './protocol.ts';

const modes = testConfig().test.redisModes.split(',').map((m) => m.trim()) as ('single' | 'cluster')[];

interface Gateway {
  app: FastifyInstance;
  deps: GatewayDeps;
  url: string;
  cfg: Config;
}

interface Conn {
  ws: WebSocket;
  msgs: ServerMessage[];
  closed: Promise<{ code: number; reason: string }>;
  isClosed(): boolean;
}

describe.each(modes)('connection registry on %s Redis', (mode) => {
  let env: Record<string, string>;
  let gateways: Gateway[] = [];
  const sockets: Conn[] = [];
  let a: Gateway;
  let b: Gateway;

  async function startGateway(id: string): Promise<Gateway> {
    const cfg = testConfig({ ...env, GATEWAY_ID: id });
    const deps = await createGatewayDeps(cfg);
    const app = await buildGateway(deps);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.server.address();
    if (!addr || typeof addr === 'string') throw new Error('no address');
    const g = { app, deps, url: `ws://127.0.0.1:${addr.port}`, cfg };
    gateways.push(g);
    return g;
  }

  beforeAll(async () => {
    const id = worldId(`conn-${mode}`);
    // No processor and no topics: room notifications are published by hand.
    env = worldEnv(id, 3, { REDIS_MODE: mode, PRESENCE_INTERVAL_MS: '300' });
    gateways = [];
    a = await startGateway(`${id}-a`);
    b = await startGateway(`${id}-b`);
  });

  afterAll(async () => {
    for (const s of sockets) s.ws.terminate();
    for (const g of gateways) {
      await g.app.close().catch(() => undefined);
      await g.deps.close().catch(() => undefined);
    }
  });

  const prefix = () => env.REDIS_KEY_PREFIX!;
  const token = (sub: string) => tokenSigner(env.JWT_SECRET!, 600)({ sub });
  let roomN = 0;
  const newRoom = (what: string) => `${what}-${Date.now().toString(36)}-${roomN++}`;

  function connect(g: Gateway, room: string, user?: string): Conn {
    const ws = new WebSocket(`${g.url}/v1/rooms/${room}/ws${user ? `?token=${token(user)}` : ''}`);
    const msgs: ServerMessage[] = [];
    let done = false;
    ws.on('message', (data) => msgs.push(JSON.parse(String(data)) as ServerMessage));
    ws.on('error', () => undefined);
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      ws.on('close', (code, reason) => {
        done = true;
        resolve({ code, reason: reason.toString() });
      }),
    );
    const c = { ws, msgs, closed, isClosed: () => done };
    sockets.push(c);
    return c;
  }
  const snapshot = (c: Conn) => waitFor(() => c.msgs.some((m) => m.type === 'snapshot') || undefined, { what: 'a snapshot' });
  const connections = (user: string, via: Gateway = a) => readConnections(via.deps.redis, via.cfg, user, Date.now());
  const notify = (room: string, deltas: Delta[]) => {
    const n: Notification = { room, projection: 'state', version: 1, offset: 0, deltas };
    return a.deps.redis.spublish(notifyChannel(a.deps.naming, room), JSON.stringify(n));
  };

  it('records which gateway holds a signed-in user\'s sockets, per room, and forgets them when they close', async () => {
    const r1 = newRoom('reg');
    const r2 = newRoom('reg');
    const c1 = connect(a, r1, 'carol');
    const c2 = connect(a, r1, 'carol');
    const c3 = connect(b, r2, 'carol');
    const anon = connect(a, r1);
    await Promise.all([c1, c2, c3, anon].map(snapshot));
    const live = await waitFor(async () => {
      const cs = await connections('carol', b);
      return cs.length === 2 && cs.every((c) => c.sockets === (c.gateway === a.cfg.gateway.id ? 2 : 1)) ? cs : undefined;
    }, { what: 'carol on both gateways' });
    expect(live.map((c) => [c.gateway, c.rooms])).toEqual([
      [a.cfg.gateway.id, { [r1]: 2 }],
      [b.cfg.gateway.id, { [r2]: 1 }],
    ]);
    // Anonymous sockets are nobody's: the only users with entries are signed in.
    expect(a.app.pushHub.clientsOf(r1)).toHaveLength(3);
    expect([...a.app.pushHub.users()]).toEqual(['carol']);

    c3.ws.close();
    await waitFor(async () => ((await connections('carol')).map((c) => c.gateway).join() === a.cfg.gateway.id ? true : undefined), { what: 'carol only on a' });
    expect(await a.deps.redis.hexists(connKey(prefix(), 'carol'), b.cfg.gateway.id)).toBe(0);
    c1.ws.close();
    c2.ws.close();
    await waitFor(async () => ((await connections('carol')).length === 0 ? true : undefined), { what: 'carol gone' });
    expect(await a.deps.redis.exists(connKey(prefix(), 'carol'))).toBe(0);
  });

  it('closes a user\'s sockets on command, in one room or all, with the code it is given', async () => {
    const r1 = newRoom('ctl');
    const r2 = newRoom('ctl');
    const inR1 = connect(a, r1, 'dan');
    const inR2 = connect(a, r2, 'dan');
    const onB = connect(b, r1, 'dan');
    const other = connect(a, r1, 'erin');
    await Promise.all([inR1, inR2, onB, other].map(snapshot));
    const gws = await readLiveGateways(a.deps.redis, a.cfg, Date.now());
    expect(gws).toEqual([a.cfg.gateway.id, b.cfg.gateway.id].sort());

    await tellGateways(a.deps.redis, prefix(), gws, { cmd: 'disconnect', user: 'dan', room: r1, code: CLOSE.disconnected, reason: 'bye' });
    expect(await inR1.closed).toEqual({ code: CLOSE.disconnected, reason: 'bye' });
    expect(await onB.closed).toEqual({ code: CLOSE.disconnected, reason: 'bye' });
    expect(inR2.isClosed()).toBe(false);

    await tellGateways(a.deps.redis, prefix(), [a.cfg.gateway.id], { cmd: 'disconnect', user: 'dan', code: CLOSE.forbidden, reason: 'banned' });
    expect((await inR2.closed).code).toBe(CLOSE.forbidden);
    expect(other.isClosed()).toBe(false);
    expect(a.app.pushHub.clientsOf(r1).map((c) => c.userId)).toEqual(['erin']);
  });

  it('a visible mute closes the user\'s sockets in that room on every gateway; a shadow mute closes nothing', async () => {
    const room = newRoom('mute');
    const elsewhere = newRoom('mute');
    const trollA = connect(a, room, 'troll');
    const trollB = connect(b, room, 'troll');
    const trollElsewhere = connect(a, elsewhere, 'troll');
    const shady = connect(a, room, 'shady');
    const bystander = connect(b, room, 'bob');
    await Promise.all([trollA, trollB, trollElsewhere, shady, bystander].map(snapshot));

    await notify(room, [{ t: 'mute', userId: 'shady', untilMs: null, kind: 'shadow' }]);
    const t0 = Date.now();
    await notify(room, [{ t: 'mute', userId: 'troll', untilMs: Date.now() + 60_000, kind: 'visible' }]);
    const [ca, cb] = await Promise.all([trollA.closed, trollB.closed]);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(ca).toEqual({ code: CLOSE.forbidden, reason: 'muted in this room' });
    expect(cb.code).toBe(CLOSE.forbidden);

    // Notifications of a room arrive in order: once this one is through, the mutes before it were handled.
    const settings = { slowModeSec: 3, emoteOnly: false, extra: {} };
    await notify(room, [{ t: 'settings', settings }]);
    const sawSettings = (c: Conn) => c.msgs.some((m) => m.type === 'batch' && m.events.some((e) => e.t === 'settings'));
    await waitFor(() => (sawSettings(shady) && sawSettings(bystander)) || undefined, { what: 'the settings after the mutes' });
    expect(shady.isClosed()).toBe(false);
    expect(bystander.isClosed()).toBe(false);
    expect(trollElsewhere.isClosed()).toBe(false);

    // A mute that already ended (redelivered, replayed) closes nothing.
    const late = connect(a, room, 'late');
    await snapshot(late);
    await notify(room, [{ t: 'mute', userId: 'late', untilMs: Date.now() - 1, kind: 'visible' }, { t: 'settings', settings: { ...settings, slowModeSec: 4 } }]);
    await waitFor(() => late.msgs.some((m) => m.type === 'batch' && m.events.some((e) => e.t === 'settings' && e.settings.slowModeSec === 4)) || undefined, { what: 'settings after a stale mute' });
    expect(late.isClosed()).toBe(false);
  });

  it('keeps bans and revocations on the user\'s slot; a revocation never moves back', async () => {
    const redis = a.deps.redis;
    const now = Date.now();
    expect(await blockOf(redis, prefix(), 'fay', undefined, now)).toBeNull();
    await banUser(redis, prefix(), 'fay', { untilMs: now + 60_000, reason: 'spam', by: 'ada', atMs: now });
    expect((await blockOf(redis, prefix(), 'fay', now / 1000, now))?.code).toBe('ERR_BANNED');
    expect(await redis.pttl(banKey(prefix(), 'fay'))).toBeGreaterThan(55_000);
    expect(await unbanUser(redis, prefix(), 'fay')).toBe(true);
    expect(await blockOf(redis, prefix(), 'fay', now / 1000, now)).toBeNull();

    expect(await revokeTokens(redis, prefix(), 'fay', now, 3600)).toBe(now);
    expect(await revokeTokens(redis, prefix(), 'fay', now - 5000, 3600)).toBe(now);
    expect(await redis.pttl(revokedKey(prefix(), 'fay'))).toBeGreaterThan(3_600_000);
    expect((await blockOf(redis, prefix(), 'fay', Math.floor(now / 1000) - 1, now))?.code).toBe('ERR_TOKEN_REVOKED');
    expect(await blockOf(redis, prefix(), 'fay', Math.floor(now / 1000) + 1, now)).toBeNull();
  });

  it('a gateway that stops withdraws itself and its entries', async () => {
    const c = await startGateway(`${env.TOPIC_ROOM_EVENTS}-c`);
    const s = connect(c, newRoom('stop'), 'gus');
    await snapshot(s);
    await waitFor(async () => ((await connections('gus')).length === 1 ? true : undefined), { what: 'gus registered' });
    await c.app.close();
    expect((await s.closed).code).toBe(CLOSE.shuttingDown);
    expect(await a.deps.redis.hexists(connKey(prefix(), 'gus'), c.cfg.gateway.id)).toBe(0);
    expect(await a.deps.redis.hexists(gatewaysKey(prefix()), c.cfg.gateway.id)).toBe(0);
    expect(await connections('gus')).toEqual([]);
  });
});
