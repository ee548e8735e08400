/**
 * Viewers per room across every gateway instance, two figures:
 *
 * - **concurrent viewers**: open sockets plus clients that polled recently.
 *   Each gateway writes its socket count for the rooms it serves into one
 *   hash per room (field = gateway id, value = count and time) and sums the
 *   fresh fields; a gateway that died stops refreshing and falls out after
 *   three intervals. Pollers go into one sorted set per room (identity → last
 *   poll), so a client polling one gateway and then another counts once;
 *   they fall out after max(2 × POLL_MAX_MS, 3 intervals) without a poll.
 * - **unique viewers** of the room's stream: a HyperLogLog per room (the seed's
 *   `stream:viewers:{stream_id}`), PFADDed with each viewer identity — the
 *   token's user id, else the client's stable anonymous id (`device`), else
 *   its address — when it connects or starts polling, and PFCOUNTed. A viewer
 *   who reconnects is the same element: the count does not move. The
 *   estimate's standard error is 0.81 %, and it is exact-looking for small
 *   rooms (sparse encoding).
 *
 * All three keys carry the room's hash tag, so a gateway refreshes a room with
 * one script on the room's slot — its socket count in, the stale gateways and
 * pollers out, the pollers and identities seen since the last refresh added,
 * both figures back — one round trip per room and interval however many
 * viewers came or polled (Redis Cluster too).
 * Counts are pushed to sockets by the push plugin every interval, and the
 * state API reads them from here (from Redis for a room this gateway does not
 * serve).
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type { RedisClient } from '../core/redis.ts';
import { activeVersion } from '../pipelines/naming.ts';
import { roomKeys } from '../pipelines/projection.ts';

export interface ViewerCounts {
  /** Sockets plus recent pollers, across gateways. */
  viewers: number;
  /** Distinct viewer identities of the room's stream (HyperLogLog estimate). */
  uniqueViewers: number;
}

export interface Presence {
  /** A socket joined (`viewer`: its identity, see viewerIdentity); call the returned function when it leaves. */
  join(room: string, viewer: string): () => void;
  /** A polling client was seen (its identity: it counts once however often it polls). */
  touchPoller(room: string, viewer: string): void;
  /** The last computed count across all gateways (this one's local count before the first refresh). */
  count(room: string): number;
  /** The last computed unique-viewer count (0 before the first refresh). */
  unique(room: string): number;
  /** Both figures: from memory for a room this gateway serves, else read from Redis. */
  read(room: string): Promise<ViewerCounts>;
  onUpdate(listener: (room: string, count: number, unique: number) => void): void;
  /** Recomputes now (tests, shutdown). */
  refresh(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    presence: Presence;
  }
}

/** A client's stable anonymous id (`device` on /v1/connect, the socket and the feed): the SDK keeps one per browser. */
export const DEVICE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$';
export const DEVICE_ID = new RegExp(DEVICE_ID_PATTERN);

export const presenceKey = (prefix: string, room: string) => `${prefix}{${room}}:presence`;
export const uniqueViewersKey = (prefix: string, room: string) => `${prefix}{${room}}:viewers:hll`;
/** Which stream the HyperLogLog counts (the `startedAt` of the room's StreamStarted; 0 before any). */
export const viewersStreamKey = (prefix: string, room: string) => `${prefix}{${room}}:viewers:stream`;
/** The unique viewers of the room's earlier streams: stream (`startedAt`) → count when the next one started. */
export const pastStreamsKey = (prefix: string, room: string) => `${prefix}{${room}}:viewers:streams`;
/** The room's polling clients, every gateway's: identity → time of its last poll (a sorted set). */
export const pollersKey = (prefix: string, room: string) => `${prefix}{${room}}:pollers`;

/**
 * Who a viewer is, for both counts: the token's user, else the client's
 * stable anonymous id (a hint: it only counts), else its address.
 */
export function viewerIdentity(userId: string | null | undefined, device: string | undefined, ip: string): string {
  if (userId) return `u:${userId}`;
  if (device) return `d:${device}`;
  return `ip:${ip}`;
}

/** ZADDs and PFADDs at most this many members per command (Lua's unpack has a limit). */
const CHUNK = 500;

/** Sums the fresh gateways' socket counts of a presence hash (and drops the stale ones when `drop`). */
const SUM_SOCKETS = (drop: boolean) => `
local all = redis.call('HGETALL', KEYS[1])
local sockets = 0
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sep = string.find(v, '|', 1, true)
  local n = tonumber(sep and string.sub(v, 1, sep - 1) or v) or 0
  local at = tonumber(sep and string.sub(v, sep + 1) or '0') or 0
  if now - at > stale then ${drop ? "redis.call('HDEL', KEYS[1], all[i])" : ''} else sockets = sockets + n end
end`;

/**
 * The HyperLogLog counts one stream: when the room's state says another
 * stream started (StreamStarted, the state projection's `stream` key), the
 * count of the one before goes into the room's past streams and the
 * HyperLogLog starts empty. KEYS[4..6]: the state's `stream` key, the stream
 * counted, the past streams.
 */
const STREAM_SWITCH = `
local streamJson = redis.call('GET', KEYS[4])
local stream = streamJson and string.match(streamJson, '"startedAt":(%d+)') or '0'
local counted = redis.call('GET', KEYS[5])
if counted ~= stream then
  if counted then
    redis.call('HSET', KEYS[6], counted, redis.call('PFCOUNT', KEYS[2]))
    redis.call('PEXPIRE', KEYS[6], ARGV[6])
    redis.call('DEL', KEYS[2])
  end
  redis.call('SET', KEYS[5], stream)
end
redis.call('PEXPIRE', KEYS[5], ARGV[6])`;

/**
 * KEYS: presence hash (gateway → sockets|time), unique-viewer HLL, pollers
 * (sorted set: identity → last poll), then STREAM_SWITCH's. ARGV: gateway id, its sockets, now,
 * stale after (ms), hash ttl (ms), HLL ttl (ms), poller ttl (ms), number of
 * pollers P, P poller identities, then the identities to PFADD. Returns
 * {sockets of fresh gateways + pollers of every gateway, unique viewers}.
 * Pollers are one set for the room, so a client that polls one gateway, then
 * another, is one viewer.
 */
const REFRESH_LUA = `
local mine = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local stale = tonumber(ARGV[4])
if mine > 0 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3]) else redis.call('HDEL', KEYS[1], ARGV[1]) end
${SUM_SOCKETS(true)}
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local pollerTtl = tonumber(ARGV[7])
local p = tonumber(ARGV[8])
for i = 9, 8 + p, ${CHUNK} do
  local args = {}
  for j = i, math.min(i + ${CHUNK - 1}, 8 + p) do
    args[#args + 1] = ARGV[3]
    args[#args + 1] = ARGV[j]
  end
  redis.call('ZADD', KEYS[3], unpack(args))
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. tostring(now - pollerTtl))
local pollers = redis.call('ZCARD', KEYS[3])
if pollers > 0 then redis.call('PEXPIRE', KEYS[3], pollerTtl * 2) end
${STREAM_SWITCH}
if #ARGV > 8 + p then
  for i = 9 + p, #ARGV, ${CHUNK} do
    redis.call('PFADD', KEYS[2], unpack(ARGV, i, math.min(i + ${CHUNK - 1}, #ARGV)))
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return { sockets + pollers, redis.call('PFCOUNT', KEYS[2]), stream }
`;

/** Read-only: the same two figures (fresh gateways, recent pollers), written by nobody. KEYS as above; ARGV: now, stale after, poller ttl. */
const READ_LUA = `
local now = tonumber(ARGV[1])
local stale = tonumber(ARGV[2])
${SUM_SOCKETS(false)}
local pollers = redis.call('ZCOUNT', KEYS[3], tostring(now - tonumber(ARGV[3])), '+inf')
return { sockets + pollers, redis.call('PFCOUNT', KEYS[2]) }
`;

/** The unique viewers of the room's earlier streams, oldest first (`stream`: its StreamStarted time). */
export async function readPastStreams(redis: RedisClient, keyPrefix: string, room: string): Promise<{ stream: number; uniqueViewers: number }[]> {
  const h = await redis.hgetall(pastStreamsKey(keyPrefix, room));
  return Object.entries(h)
    .map(([stream, n]) => ({ stream: Number(stream), uniqueViewers: Number(n) }))
    .sort((a, b) => a.stream - b.stream);
}

/** Both figures of a room as Redis holds them (any process: the state and stats routes, tests). */
export async function readViewerCounts(redis: RedisClient, keyPrefix: string, room: string, o: { nowMs: number; staleMs: number; pollerTtlMs: number }): Promise<ViewerCounts> {
  const keys = [presenceKey(keyPrefix, room), uniqueViewersKey(keyPrefix, room), pollersKey(keyPrefix, room)];
  const [viewers, uniqueViewers] = (await redis.eval(READ_LUA, 3, ...keys, String(o.nowMs), String(o.staleMs), String(o.pollerTtlMs))) as [number, number];
  return { viewers: Number(viewers), uniqueViewers: Number(uniqueViewers) };
}

// fp: `app.presence` is read by the read and push plugins.
export const presencePlugin = fp(async (app: FastifyInstance) => {
  const { cfg, redis } = app.deps;
  const prefix = cfg.redis.keyPrefix;
  const gatewayId = cfg.gateway.id;
  const interval = cfg.push.presenceIntervalMs;
  const staleMs = interval * 3;
  const hllTtlMs = cfg.push.uniqueViewersTtlSec * 1000;
  const sockets = new Map<string, number>();
  /** This gateway's pollers per room, with their last poll: the local count before a refresh, and whether the room is still served here. */
  const pollers = new Map<string, Map<string, number>>();
  /** Pollers per room since the last refresh, ZADDed by it into the room's one set of pollers. */
  const polled = new Map<string, Set<string>>();
  const totals = new Map<string, number>();
  const uniques = new Map<string, number>();
  /** Identities seen per room since the last refresh, PFADDed by it in one command. */
  const seen = new Map<string, Set<string>>();
  const listeners: ((room: string, count: number, unique: number) => void)[] = [];
  /** Identities of this gateway's sockets per room (→ sockets each), and the stream each room's count was last of. */
  const present = new Map<string, Map<string, number>>();
  const streams = new Map<string, string>();
  const pollerTtl = Math.max(cfg.push.pollMaxMs * 2, interval * 3);

  const local = (room: string, now: number) => {
    const p = pollers.get(room);
    if (p) for (const [k, at] of p) if (now - at > pollerTtl) p.delete(k);
    return (sockets.get(room) ?? 0) + (p?.size ?? 0);
  };

  const add = (m: Map<string, Set<string>>, room: string, viewer: string) => {
    let s = m.get(room);
    if (!s) m.set(room, (s = new Set()));
    s.add(viewer);
  };

  const refreshRoom = async (room: string, now: number) => {
    const mine = sockets.get(room) ?? 0;
    const here = local(room, now);
    const ids = seen.get(room);
    const polls = polled.get(room);
    seen.delete(room);
    polled.delete(room);
    let total: number;
    let unique: number;
    try {
      const stream = roomKeys(prefix, 'state', stateVersion, room).key('stream');
      const keys = [presenceKey(prefix, room), uniqueViewersKey(prefix, room), pollersKey(prefix, room), stream, viewersStreamKey(prefix, room), pastStreamsKey(prefix, room)];
      const args = [gatewayId, String(mine), String(now), String(staleMs), String(interval * 10), String(hllTtlMs), String(pollerTtl), String(polls?.size ?? 0), ...(polls ?? []), ...(ids ?? [])];
      const r = (await redis.eval(REFRESH_LUA, keys.length, ...keys, ...args)) as [number, number, string];
      total = Number(r[0]);
      unique = Number(r[1]);
      // Another stream began in the room: whoever is here now is one of its viewers too (added with the next refresh).
      const before = streams.get(room);
      streams.set(room, r[2]);
      if (before !== undefined && before !== r[2]) {
        for (const id of present.get(room)?.keys() ?? []) add(seen, room, id);
        for (const id of pollers.get(room)?.keys() ?? []) add(seen, room, id);
      }
    } catch (err) {
      // Not lost: they go with the next refresh.
      for (const id of ids ?? []) add(seen, room, id);
      for (const id of polls ?? []) add(polled, room, id);
      throw err;
    }
    if (here === 0 && total === 0 && !seen.has(room) && !polled.has(room)) {
      totals.delete(room);
      uniques.delete(room);
      streams.delete(room);
      present.delete(room);
      sockets.delete(room);
      pollers.delete(room);
    } else {
      totals.set(room, total);
      uniques.set(room, unique);
    }
    for (const l of listeners) l(room, total, unique);
  };

  /** The room-state projection's active version (where each room's `stream` key is), read once per refresh. */
  let stateVersion = 1;
  const refresh = async () => {
    const now = app.deps.now();
    stateVersion = await activeVersion(redis, app.deps.naming, 'state').catch(() => stateVersion);
    const rooms = new Set([...sockets.keys(), ...pollers.keys(), ...totals.keys(), ...seen.keys(), ...polled.keys()]);
    const results = await Promise.allSettled([...rooms].map((room) => refreshRoom(room, now)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  };

  const timer = setInterval(() => void refresh().catch((err) => app.log.warn({ err }, 'presence refresh failed')), interval);
  app.addHook('onClose', async () => {
    clearInterval(timer);
    sockets.clear();
    pollers.clear();
    await refresh().catch(() => undefined); // withdraw this gateway's counts
  });

  const presence: Presence = {
    join(room, viewer) {
      sockets.set(room, (sockets.get(room) ?? 0) + 1);
      add(seen, room, viewer);
      let here = present.get(room);
      if (!here) present.set(room, (here = new Map()));
      here.set(viewer, (here.get(viewer) ?? 0) + 1);
      let left = false;
      return () => {
        if (left) return;
        left = true;
        sockets.set(room, Math.max(0, (sockets.get(room) ?? 1) - 1));
        const h = present.get(room);
        const n = (h?.get(viewer) ?? 1) - 1;
        if (n > 0) h!.set(viewer, n);
        else h?.delete(viewer);
      };
    },
    touchPoller(room, viewer) {
      let p = pollers.get(room);
      if (!p) pollers.set(room, (p = new Map()));
      const now = app.deps.now();
      const last = p.get(viewer);
      // Added to the HyperLogLog when it starts polling (again), not on every poll.
      if (last === undefined || now - last > pollerTtl) add(seen, room, viewer);
      p.set(viewer, now);
      // Its time in the room's set of pollers is refreshed once per interval, however often it polls.
      add(polled, room, viewer);
    },
    count: (room) => totals.get(room) ?? local(room, app.deps.now()),
    unique: (room) => uniques.get(room) ?? 0,
    async read(room) {
      const t = totals.get(room);
      if (t !== undefined) return { viewers: t, uniqueViewers: uniques.get(room) ?? 0 };
      const fromRedis = await readViewerCounts(redis, prefix, room, { nowMs: app.deps.now(), staleMs, pollerTtlMs: pollerTtl });
      // Viewers of this gateway not refreshed yet count too (its field in Redis is not written before the first refresh).
      return { viewers: Math.max(fromRedis.viewers, local(room, app.deps.now())), uniqueViewers: fromRedis.uniqueViewers };
    },
    onUpdate: (l) => void listeners.push(l),
    refresh,
  };
  app.decorate('presence', presence);
});
