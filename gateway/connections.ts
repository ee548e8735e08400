/**
 * The connection registry: which gateway holds which signed-in users'
 * sockets, so an admin (or a ban) can find and close them wherever they are.
 *
 *   <prefix>gateways                  hash  gateway id → {inst, at}: each gateway's liveness, refreshed
 *                                           every PRESENCE_INTERVAL_MS, removed when it stops
 *   <prefix>conn:user:{<userId>}      hash  gateway id → {inst, rooms: {room: sockets}, at}: written when
 *                                           the user's sockets on that gateway change (debounced, one
 *                                           HSET or HDEL per user), rewritten every CONN_REFRESH_SEC;
 *                                           PEXPIRE 3× that
 *   <prefix>{gw:<id>}:ctl             sharded channel: commands to one gateway (`disconnect`)
 *
 * `inst` is random per process: a gateway restarted under the same id does
 * not vouch for its previous life's entries. An entry is live only while its
 * gateway's liveness is fresh (3 intervals) and of the same `inst`, and the
 * entry itself was refreshed within 3× CONN_REFRESH_SEC; readers ignore the
 * rest, so a gateway that died drops out within 3 presence intervals with no
 * cleanup, and its leftovers expire with the keys. One user's keys share one
 * hash tag; nothing reads or writes two slots in one command.
 *
 * Anonymous sockets are not registered (there is nobody to find).
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../core/config.ts';
import type { RedisClient } from '../core/redis.ts';

export const gatewaysKey = (prefix: string) => `${prefix}gateways`;
export const connKey = (prefix: string, userId: string) => `${prefix}conn:user:{${userId}}`;
export const controlChannel = (prefix: string, gatewayId: string) => `${prefix}{gw:${gatewayId}}:ctl`;

/** A user's sockets on one gateway, as stored. */
export interface ConnEntry {
  inst: string;
  rooms: Record<string, number>;
  at: number;
}

/** A gateway's liveness, as stored. */
export interface GatewayBeat {
  inst: string;
  at: number;
}

/** A user's live sockets on one gateway, as the admin API shows them. */
export interface LiveConnection {
  gateway: string;
  rooms: Record<string, number>;
  sockets: number;
  /** When this gateway last wrote the entry (a change of the user's sockets, or the periodic refresh). */
  updatedAtMs: number;
  /** When the gateway last said it is alive. */
  gatewaySeenAtMs: number;
}

export interface Staleness {
  gatewayStaleMs: number;
  entryStaleMs: number;
}

export const stalenessOf = (cfg: Config): Staleness => ({ gatewayStaleMs: cfg.push.presenceIntervalMs * 3, entryStaleMs: cfg.push.connRefreshSec * 1000 * 3 });

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n > 0;

export function parseConnEntry(raw: string | undefined): ConnEntry | undefined {
  if (!raw) return undefined;
  try {
    const e = JSON.parse(raw) as Partial<ConnEntry>;
    if (typeof e.inst !== 'string' || typeof e.at !== 'number' || typeof e.rooms !== 'object' || e.rooms === null) return undefined;
    const rooms: Record<string, number> = {};
    for (const [room, n] of Object.entries(e.rooms)) if (isCount(n)) rooms[room] = n;
    return { inst: e.inst, rooms, at: e.at };
  } catch {
    return undefined;
  }
}

export function parseBeat(raw: string | undefined): GatewayBeat | undefined {
  if (!raw) return undefined;
  try {
    const b = JSON.parse(raw) as Partial<GatewayBeat>;
    return typeof b.inst === 'string' && typeof b.at === 'number' ? { inst: b.inst, at: b.at } : undefined;
  } catch {
    return undefined;
  }
}

/** Gateways that said they are alive within `staleMs`. Pure. */
export function liveGateways(beats: Record<string, string>, nowMs: number, staleMs: number): Map<string, GatewayBeat> {
  const live = new Map<string, GatewayBeat>();
  for (const [gw, raw] of Object.entries(beats)) {
    const b = parseBeat(raw);
    if (b && nowMs - b.at <= staleMs) live.set(gw, b);
  }
  return live;
}

/**
 * The live entries of a user's hash: its gateway alive and of the same
 * incarnation, the entry refreshed recently, at least one socket. Pure;
 * sorted by gateway id.
 */
export function liveConnections(fields: Record<string, string>, beats: Record<string, string>, nowMs: number, s: Staleness): LiveConnection[] {
  const gateways = liveGateways(beats, nowMs, s.gatewayStaleMs);
  const out: LiveConnection[] = [];
  for (const [gw, raw] of Object.entries(fields)) {
    const e = parseConnEntry(raw);
    const beat = gateways.get(gw);
    if (!e || !beat || beat.inst !== e.inst || nowMs - e.at > s.entryStaleMs) continue;
    const sockets = Object.values(e.rooms).reduce((a, b) => a + b, 0);
    if (sockets === 0) continue;
    out.push({ gateway: gw, rooms: e.rooms, sockets, updatedAtMs: e.at, gatewaySeenAtMs: beat.at });
  }
  return out.sort((a, b) => (a.gateway < b.gateway ? -1 : a.gateway > b.gateway ? 1 : 0));
}

/** Fields a reader may delete: entries so old that no live gateway would have left them (a live one refreshes them). Pure. */
export function expiredFields(fields: Record<string, string>, nowMs: number, entryStaleMs: number): string[] {
  return Object.entries(fields)
    .filter(([, raw]) => {
      const e = parseConnEntry(raw);
      return !e || nowMs - e.at > entryStaleMs;
    })
    .map(([gw]) => gw);
}

// ---------------------------------------------------------------- control channel

/** A command to one gateway. `disconnect`: close the user's sockets (in `room` only, when given) with `code`. */
export interface ControlCommand {
  cmd: 'disconnect';
  user: string;
  room?: string;
  code: number;
  reason: string;
}

/** A WebSocket close reason is at most 123 bytes. */
export function closeReason(s: string): string {
  const b = Buffer.from(s);
  return b.length <= 120 ? s : `${b.subarray(0, 117).toString('utf8').replace(/\uFFFD+$/, '')}...`;
}

export const encodeControl = (c: ControlCommand): string => JSON.stringify(c);

/** A control message, or undefined when it is not one this gateway understands. Pure. */
export function parseControl(message: string): ControlCommand | undefined {
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(message) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof m !== 'object' || m === null || m.cmd !== 'disconnect') return undefined;
  const { user, room, code, reason } = m;
  if (typeof user !== 'string' || user === '' || user.length > 128) return undefined;
  if (room !== undefined && (typeof room !== 'string' || room === '')) return undefined;
  // Application close codes only: 1xxx codes mean protocol things a command must not claim.
  if (typeof code !== 'number' || !Number.isInteger(code) || code < 4000 || code > 4999) return undefined;
  return { cmd: 'disconnect', user, ...(room !== undefined ? { room } : {}), code, reason: closeReason(typeof reason === 'string' ? reason : '') };
}

// ---------------------------------------------------------------- readers (the admin API)

/** The user's live connections across all gateways: two reads (the user's slot, the gateways key). */
export async function readConnections(redis: RedisClient, cfg: Config, userId: string, nowMs: number): Promise<LiveConnection[]> {
  const prefix = cfg.redis.keyPrefix;
  const s = stalenessOf(cfg);
  const [fields, beats] = await Promise.all([redis.hgetall(connKey(prefix, userId)), redis.hgetall(gatewaysKey(prefix))]);
  const expired = expiredFields(fields, nowMs, s.entryStaleMs);
  if (expired.length > 0) await redis.hdel(connKey(prefix, userId), ...expired);
  return liveConnections(fields, beats, nowMs, s);
}

/** Ids of the gateways alive now. */
export async function readLiveGateways(redis: RedisClient, cfg: Config, nowMs: number): Promise<string[]> {
  return [...liveGateways(await redis.hgetall(gatewaysKey(cfg.redis.keyPrefix)), nowMs, stalenessOf(cfg).gatewayStaleMs).keys()].sort();
}

/** Publishes the command on each gateway's control channel (one SPUBLISH per gateway: their channels live on different shards). */
export async function tellGateways(redis: RedisClient, prefix: string, gateways: readonly string[], cmd: ControlCommand): Promise<void> {
  const message = encodeControl(cmd);
  await Promise.all(gateways.map((gw) => redis.spublish(controlChannel(prefix, gw), message)));
}

// ---------------------------------------------------------------- the gateway's side

/** Changes of a user's sockets are gathered this long, so a burst of (re)connects is one write per user. */
const DEBOUNCE_MS = 50;

/**
 * Keeps this gateway's entries in the registry and obeys its control
 * channel. Encapsulated: it decorates nothing; it reads `app.pushHub`, so it
 * is registered after the push plugin.
 */
export async function connectionsPlugin(app: FastifyInstance): Promise<void> {
  const { cfg, redis, subscriber } = app.deps;
  const hub = app.pushHub;
  const prefix = cfg.redis.keyPrefix;
  const gatewayId = cfg.gateway.id;
  const inst = randomBytes(6).toString('hex');
  const beatMs = cfg.push.presenceIntervalMs;
  const refreshMs = cfg.push.connRefreshSec * 1000;
  const channel = controlChannel(prefix, gatewayId);
  /** Users whose entry of this gateway is (or is being) in Redis. */
  const registered = new Set<string>();
  const dirty = new Set<string>();
  let flushTimer: NodeJS.Timeout | undefined;
  let closed = false;
  const warn = (what: string) => (err: unknown) => app.log.warn({ err }, `connections: ${what} failed`);

  async function writeUser(userId: string, nowMs: number): Promise<void> {
    const key = connKey(prefix, userId);
    const rooms = hub.roomsOf(userId);
    if (Object.keys(rooms).length === 0) {
      if (!registered.delete(userId)) return;
      try {
        await redis.hdel(key, gatewayId);
      } catch (err) {
        registered.add(userId); // the next refresh tries again
        throw err;
      }
      return;
    }
    registered.add(userId);
    const entry: ConnEntry = { inst, rooms, at: nowMs };
    // Sent together, in order, on the user's slot: the write and the key's lifetime.
    await Promise.all([redis.hset(key, gatewayId, JSON.stringify(entry)), redis.pexpire(key, refreshMs * 3)]);
  }

  const writeAll = (users: Iterable<string>) => {
    const nowMs = app.deps.now();
    return Promise.all([...users].map((u) => writeUser(u, nowMs)));
  };

  const flush = () => {
    flushTimer = undefined;
    const users = [...dirty];
    dirty.clear();
    void writeAll(users).catch(warn('writing the connection registry'));
  };

  hub.onUserSockets((userId) => {
    if (closed) return;
    dirty.add(userId);
    flushTimer ??= setTimeout(flush, DEBOUNCE_MS);
  });

  async function beat(): Promise<void> {
    const nowMs = app.deps.now();
    const key = gatewaysKey(prefix);
    const beats = await redis.hgetall(key);
    await redis.hset(key, gatewayId, JSON.stringify({ inst, at: nowMs } satisfies GatewayBeat));
    await redis.pexpire(key, beatMs * 10);
    // Gateways gone for good (ids of processes that never come back) are dropped by whoever beats next.
    const gone = Object.entries(beats)
      .filter(([gw, raw]) => gw !== gatewayId && nowMs - (parseBeat(raw)?.at ?? 0) > beatMs * 10)
      .map(([gw]) => gw);
    if (gone.length > 0) await redis.hdel(key, ...gone);
  }

  const onControl = (ch: string, message: string) => {
    if (ch !== channel || closed) return; // the push hub's room channels arrive on the same connection
    const cmd = parseControl(message);
    if (!cmd) {
      app.log.warn({ message: message.slice(0, 200) }, 'connections: ignoring a control message it does not understand');
      return;
    }
    const n = hub.closeUser(cmd.user, cmd.code, cmd.reason, cmd.room);
    app.log.info({ user: cmd.user, room: cmd.room, code: cmd.code, sockets: n }, 'connections: closed a user\'s sockets on request');
  };

  // Alive and listening before the gateway serves anything.
  await beat();
  subscriber.on('smessage', onControl);
  await subscriber.ssubscribe(channel);

  const beatTimer = setInterval(() => void beat().catch(warn('the gateway liveness refresh')), beatMs);
  const refreshTimer = setInterval(() => void writeAll(new Set([...hub.users(), ...registered])).catch(warn('refreshing the connection registry')), refreshMs);
  beatTimer.unref();
  refreshTimer.unref();

  app.addHook('onClose', async () => {
    closed = true;
    clearInterval(beatTimer);
    clearInterval(refreshTimer);
    if (flushTimer) clearTimeout(flushTimer);
    subscriber.off('smessage', onControl);
    // Withdraw at once rather than wait to go stale: this gateway and every entry it wrote.
    await Promise.all([
      Promise.resolve(subscriber.sunsubscribe(channel)).catch(() => undefined),
      redis.hdel(gatewaysKey(prefix), gatewayId).catch(() => undefined),
      ...[...registered].map((u) => redis.hdel(connKey(prefix, u), gatewayId).catch(() => undefined)),
    ]);
    registered.clear();
  });
}
