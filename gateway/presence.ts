/**
 * Viewer counts per room across every gateway instance: open sockets plus
 * clients that polled recently. Each gateway writes its own count for the
 * rooms it serves into one hash per room (field = gateway id, value =
 * count and time) and sums the fresh fields; a gateway that died stops
 * refreshing and falls out after a few intervals. Counts are pushed to
 * sockets by the push plugin every interval.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';

export interface Presence {
  /** A socket joined; call the returned function when it leaves. */
  join(room: string): () => void;
  /** A polling client was seen (keyed by user or address). */
  touchPoller(room: string, clientKey: string): void;
  /** The last computed count across all gateways (this one's local count before the first refresh). */
  count(room: string): number;
  onUpdate(listener: (room: string, count: number) => void): void;
  /** Recomputes now (tests, shutdown). */
  refresh(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    presence: Presence;
  }
}

export const presenceKey = (prefix: string, room: string) => `${prefix}{${room}}:presence`;

// fp: `app.presence` is read by the read and push plugins.
export const presencePlugin = fp(async (app: FastifyInstance) => {
  const { cfg, redis } = app.deps;
  const gatewayId = cfg.gateway.id;
  const interval = cfg.push.presenceIntervalMs;
  const sockets = new Map<string, number>();
  const pollers = new Map<string, Map<string, number>>();
  const totals = new Map<string, number>();
  const listeners: ((room: string, count: number) => void)[] = [];
  const pollerTtl = Math.max(cfg.push.pollMaxMs * 2, interval * 3);

  const local = (room: string, now: number) => {
    const p = pollers.get(room);
    if (p) for (const [k, at] of p) if (now - at > pollerTtl) p.delete(k);
    return (sockets.get(room) ?? 0) + (p?.size ?? 0);
  };

  const refresh = async () => {
    const now = app.deps.now();
    const rooms = new Set([...sockets.keys(), ...pollers.keys(), ...totals.keys()]);
    await Promise.all(
      [...rooms].map(async (room) => {
        const mine = local(room, now);
        const key = presenceKey(cfg.redis.keyPrefix, room);
        if (mine > 0) await redis.hset(key, gatewayId, `${mine}|${now}`);
        else await redis.hdel(key, gatewayId);
        await redis.pexpire(key, interval * 10);
        const all = await redis.hgetall(key);
        let total = 0;
        const stale: string[] = [];
        for (const [gw, v] of Object.entries(all)) {
          const [n, at] = v.split('|').map(Number);
          if (now - (at ?? 0) > interval * 3) stale.push(gw);
          else total += n ?? 0;
        }
        if (stale.length > 0) await redis.hdel(key, ...stale);
        if (mine === 0 && total === 0) {
          totals.delete(room);
          sockets.delete(room);
          pollers.delete(room);
        } else totals.set(room, total);
        for (const l of listeners) l(room, total);
      }),
    );
  };

  const timer = setInterval(() => void refresh().catch((err) => app.log.warn({ err }, 'presence refresh failed')), interval);
  app.addHook('onClose', async () => {
    clearInterval(timer);
    sockets.clear();
    pollers.clear();
    await refresh().catch(() => undefined); // withdraw this gateway's counts
  });

  const presence: Presence = {
    join(room) {
      sockets.set(room, (sockets.get(room) ?? 0) + 1);
      let left = false;
      return () => {
        if (left) return;
        left = true;
        sockets.set(room, Math.max(0, (sockets.get(room) ?? 1) - 1));
      };
    },
    touchPoller(room, clientKey) {
      let p = pollers.get(room);
      if (!p) pollers.set(room, (p = new Map()));
      p.set(clientKey, app.deps.now());
    },
    count: (room) => totals.get(room) ?? local(room, app.deps.now()),
    onUpdate: (l) => void listeners.push(l),
    refresh,
  };
  app.decorate('presence', presence);
});
