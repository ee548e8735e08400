/**
 * The routing service (Meipai's): the server, not the client, decides who
 * holds a long connection. `GET /v1/connect?room=…` answers a client's
 * transport (WebSocket or polling), the gateway URLs to use, preferred first,
 * and the polling interval, from rules an operator changes at run time
 * (`npm run routing -- set …`, routing-cli.ts):
 *
 * 1. deny lists (user ids, device ids, client versions): polling;
 * 2. allow lists (the same three): WebSocket;
 * 3. the rest by a percentage roll-out: the client's identity (the token's
 *    user id, else its device id, else its address) is hashed with the rules'
 *    seed into one of 10,000 buckets, and buckets below `wsPercent` × 100 get
 *    WebSocket. The bucket never changes for an identity, so a user does not
 *    flap between transports, and raising the percentage only ever adds
 *    buckets: who had WebSocket at 10 % keeps it at 20 %.
 *
 * Deny wins over allow: a client version on the deny list is one whose
 * WebSocket is known broken, whoever runs it. The user id is read from the
 * token only (a client cannot claim someone's allow-listed id); the device id
 * and the client version are hints the client sends, which is fine because
 * all they can select is a transport.
 *
 * The rules live in Redis (`<prefix>routing:rules`, one small key) and every
 * gateway keeps them in memory, re-read every ROUTING_REFRESH_MS: a change
 * reaches /v1/connect within that, and clients on their next connect (a
 * polling client asks again every `recheckMs`). Each change is first written
 * as a RoutingRulesChanged event to the audit topic (TOPIC_ROUTING_AUDIT,
 * schemas/routing-rules-changed.avsc), and the rules in Redis carry that
 * event's offset as their version: Redis only ever takes a newer version, so
 * the rules in force are always those of the last audited change, and
 * `npm run routing -- sync` restores them from the log.
 */
import { createHash } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../core/config.ts';
import { AppError, errorCodeSchema, type ErrorCode } from '../core/errors.ts';
import type { RedisClient } from '../core/redis.ts';
import { requireReader } from './auth.ts';
import { DEVICE_ID_PATTERN } from './presence.ts';
import type { ConnectResponse } from './protocol.ts';
import { ReadLimits } from './read-limits.ts';

export const routingRulesKey = (keyPrefix: string) => `${keyPrefix}routing:rules`;

/** Who may be named in a list: user ids as tokens carry them, device ids, client versions (a trailing `*` matches a prefix). */
export const USER_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$';
export const CLIENT_VERSION_PATTERN = '^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$';
const VERSION_RULE = /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}\*?$|^\*$/;
const MAX_LIST = 10_000;
/** Buckets of the roll-out: a percentage has two decimals. */
export const BUCKETS = 10_000;

export interface RoutingLists {
  users: string[];
  devices: string[];
  /** Exact versions, or prefixes ending in `*` (`1.2.*`). */
  versions: string[];
}

export interface RoutingRules {
  /** Share of clients (not on a list) that get WebSocket, 0..100 with two decimals. */
  wsPercent: number;
  allow: RoutingLists;
  deny: RoutingLists;
  /** Gateway base URLs (http or https) clients are sent to; empty: the gateway that answers. */
  gateways: string[];
  /** The shortest interval a polling client may poll at; null: POLL_MIN_MS. */
  pollIntervalMs: number | null;
  /** Salt of the bucket hash: changing it reshuffles who is in the roll-out. */
  seed: string;
}

/** The rules as Redis holds them: with the audit event that set them. */
export interface StoredRules {
  /** Offset of the RoutingRulesChanged event that set them in the audit topic; -1 for the defaults. */
  version: number;
  updatedAt: number;
  updatedBy: string;
  reason: string;
  rules: RoutingRules;
}

const noLists = (): RoutingLists => ({ users: [], devices: [], versions: [] });

/** What a deployment that never set rules gets: everyone on WebSocket, as before routing existed. */
export const DEFAULT_RULES: RoutingRules = { wsPercent: 100, allow: noLists(), deny: noLists(), gateways: [], pollIntervalMs: null, seed: 'danmaku' };
export const DEFAULT_STORED: StoredRules = { version: -1, updatedAt: 0, updatedBy: '', reason: 'defaults', rules: DEFAULT_RULES };

function routingError(problems: string[]): AppError {
  return new AppError('ERR_ROUTING_RULES', `invalid routing rules:\n  ${problems.join('\n  ')}`, { details: { problems } });
}

/** Checks rules (from the CLI or from Redis) and returns them in canonical form; throws ERR_ROUTING_RULES listing every problem. */
export function validateRules(x: unknown): RoutingRules {
  const problems: string[] = [];
  const o = (typeof x === 'object' && x !== null ? x : {}) as Record<string, unknown>;
  if (typeof x !== 'object' || x === null) problems.push('rules must be an object');
  const known = new Set(['wsPercent', 'allow', 'deny', 'gateways', 'pollIntervalMs', 'seed']);
  for (const k of Object.keys(o)) if (!known.has(k)) problems.push(`unknown field ${k}`);
  const pct = o.wsPercent;
  if (typeof pct !== 'number' || !Number.isFinite(pct) || pct < 0 || pct > 100 || Math.round(pct * 100) !== pct * 100) problems.push(`wsPercent must be a number in 0..100 with at most two decimals, got ${JSON.stringify(pct)}`);
  const lists = (name: 'allow' | 'deny'): RoutingLists => {
    const l = (typeof o[name] === 'object' && o[name] !== null ? o[name] : {}) as Record<string, unknown>;
    if (typeof o[name] !== 'object' || o[name] === null) problems.push(`${name} must be an object {users, devices, versions}`);
    const one = (field: keyof RoutingLists, ok: (s: string) => boolean, what: string): string[] => {
      const v = l[field] ?? [];
      if (!Array.isArray(v) || v.some((e) => typeof e !== 'string')) {
        problems.push(`${name}.${field} must be a list of strings`);
        return [];
      }
      if (v.length > MAX_LIST) problems.push(`${name}.${field} has ${v.length} entries (at most ${MAX_LIST})`);
      for (const e of v as string[]) if (!ok(e)) problems.push(`${name}.${field}: "${e}" is not ${what}`);
      return [...new Set(v as string[])].sort();
    };
    for (const k of Object.keys(l)) if (!['users', 'devices', 'versions'].includes(k)) problems.push(`unknown field ${name}.${k}`);
    return {
      users: one('users', (s) => new RegExp(USER_ID_PATTERN).test(s), 'a user id'),
      devices: one('devices', (s) => new RegExp(DEVICE_ID_PATTERN).test(s), 'a device id'),
      versions: one('versions', (s) => VERSION_RULE.test(s), 'a version or a version prefix ending in *'),
    };
  };
  const allow = lists('allow');
  const deny = lists('deny');
  let gateways: string[] = [];
  if (!Array.isArray(o.gateways) || o.gateways.some((g) => typeof g !== 'string')) problems.push('gateways must be a list of URLs');
  else {
    gateways = (o.gateways as string[]).map((g) => g.replace(/\/+$/, ''));
    for (const g of gateways) {
      let u: URL | undefined;
      try {
        u = new URL(g);
      } catch {
        /* below */
      }
      if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:') || u.search || u.hash || u.username) problems.push(`gateway "${g}" is not an http(s) base URL`);
    }
    if (gateways.length > 100) problems.push('at most 100 gateways');
  }
  const poll = o.pollIntervalMs;
  if (poll !== null && (typeof poll !== 'number' || !Number.isInteger(poll) || poll < 100 || poll > 600_000)) problems.push(`pollIntervalMs must be null or an integer in 100..600000, got ${JSON.stringify(poll)}`);
  if (typeof o.seed !== 'string' || o.seed.length < 1 || o.seed.length > 64) problems.push('seed must be a string of 1–64 characters');
  if (problems.length > 0) throw routingError(problems);
  return { wsPercent: pct as number, allow, deny, gateways: [...new Set(gateways)], pollIntervalMs: poll as number | null, seed: o.seed as string };
}

/** The stored record from its JSON (Redis), checked. */
export function parseStored(raw: string): StoredRules {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    throw routingError(['the stored record is not JSON']);
  }
  if (typeof j.version !== 'number' || !Number.isSafeInteger(j.version)) throw routingError(['the stored record has no version']);
  return { version: j.version, updatedAt: Number(j.updatedAt ?? 0), updatedBy: String(j.updatedBy ?? ''), reason: String(j.reason ?? ''), rules: validateRules(j.rules) };
}

/** The bucket (0..BUCKETS-1) of an identity under a seed: the same for the same pair, everywhere, always. */
export function bucketOf(seed: string, identity: string): number {
  return createHash('sha256').update(`${seed}\u0000${identity}`).digest().readUInt32BE(0) % BUCKETS;
}

/** Rules with their lists as sets and version patterns split, ready to answer many requests. */
export interface CompiledRules {
  stored: StoredRules;
  allow: { users: Set<string>; devices: Set<string>; versions: (v: string) => boolean };
  deny: { users: Set<string>; devices: Set<string>; versions: (v: string) => boolean };
  threshold: number;
}

function versionMatcher(list: string[]): (v: string) => boolean {
  const exact = new Set(list.filter((p) => !p.endsWith('*')));
  const prefixes = list.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1));
  return (v) => exact.has(v) || prefixes.some((p) => v.startsWith(p));
}

export function compileRules(stored: StoredRules): CompiledRules {
  const r = stored.rules;
  const lists = (l: RoutingLists) => ({ users: new Set(l.users), devices: new Set(l.devices), versions: versionMatcher(l.versions) });
  return { stored, allow: lists(r.allow), deny: lists(r.deny), threshold: Math.round(r.wsPercent * 100) };
}

export interface Asker {
  userId: string | null;
  deviceId: string | null;
  clientVersion: string | null;
  /** The client's address (fastify's req.ip: X-Forwarded-For only from GATEWAY_TRUSTED_PROXIES). */
  ip: string;
}

export type Transport = 'ws' | 'polling';
export type RouteReason = 'deny:user' | 'deny:device' | 'deny:version' | 'allow:user' | 'allow:device' | 'allow:version' | 'rollout';

export interface Decision {
  transport: Transport;
  reason: RouteReason;
  /** The identity's bucket when the roll-out decided, else null. */
  bucket: number | null;
  /** What the bucket and the gateway order were computed from. */
  identity: string;
}

/** The identity a client is bucketed and spread by: the token's user, else its device, else its address. */
export const identityOf = (a: Asker) => (a.userId !== null ? `u:${a.userId}` : a.deviceId !== null ? `d:${a.deviceId}` : `ip:${a.ip}`);

/** Pure: where a client goes under the rules. */
export function decide(c: CompiledRules, a: Asker): Decision {
  const identity = identityOf(a);
  const hit = (l: CompiledRules['allow']): 'user' | 'device' | 'version' | undefined =>
    a.userId !== null && l.users.has(a.userId) ? 'user' : a.deviceId !== null && l.devices.has(a.deviceId) ? 'device' : a.clientVersion !== null && l.versions(a.clientVersion) ? 'version' : undefined;
  const denied = hit(c.deny);
  if (denied) return { transport: 'polling', reason: `deny:${denied}`, bucket: null, identity };
  const allowed = hit(c.allow);
  if (allowed) return { transport: 'ws', reason: `allow:${allowed}`, bucket: null, identity };
  const bucket = bucketOf(c.stored.rules.seed, identity);
  return { transport: bucket < c.threshold ? 'ws' : 'polling', reason: 'rollout', bucket, identity };
}

/**
 * The gateways in the order this identity should try them (rendezvous
 * hashing): clients spread evenly, each always prefers the same gateway, and
 * adding or removing one moves only the clients that preferred it.
 */
export function gatewayOrder(urls: string[], identity: string): string[] {
  const score = (u: string) => createHash('sha256').update(`${u}\u0000${identity}`).digest().readUInt32BE(0);
  return [...urls].map((u) => ({ u, s: score(u) })).sort((x, y) => y.s - x.s || (x.u < y.u ? -1 : 1)).map((x) => x.u);
}

/**
 * Writes rules into Redis unless Redis already holds a version at least as
 * new (a slower writer of an older audited change never overwrites a newer
 * one). Returns 1 when written.
 */
const STORE_LUA = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if ok and type(rec) == 'table' and tonumber(rec.version) and tonumber(rec.version) >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`;

export async function storeRules(redis: RedisClient, keyPrefix: string, stored: StoredRules): Promise<boolean> {
  const r = await redis.eval(STORE_LUA, 1, routingRulesKey(keyPrefix), String(stored.version), JSON.stringify(stored));
  return Number(r) === 1;
}

/** The stored rules, or the defaults when none were set. Throws ERR_ROUTING_RULES when the record is not valid. */
export async function loadRules(redis: RedisClient, keyPrefix: string): Promise<StoredRules> {
  const raw = await redis.get(routingRulesKey(keyPrefix));
  return raw === null ? DEFAULT_STORED : parseStored(raw);
}

// ---------------------------------------------------------------- the route

const ErrorBody = Type.Object({ code: Type.Unsafe<ErrorCode>(errorCodeSchema), message: Type.String(), details: Type.Optional(Type.Unknown()) });

const ConnectQuery = Type.Object(
  {
    room: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$', description: 'The room the client is about to join.' }),
    device: Type.Optional(Type.String({ pattern: DEVICE_ID_PATTERN, description: 'A stable id of the device or browser (the SDK keeps one): a hint for the allow/deny lists, and the identity bucketed when there is no token.' })),
    version: Type.Optional(Type.String({ pattern: CLIENT_VERSION_PATTERN, description: 'The client\'s version (the app\'s, or the SDK\'s): a hint for the allow/deny lists.' })),
  },
  { additionalProperties: false },
);

const ConnectAnswer = Type.Object({
  transport: Type.Union([Type.Literal('ws'), Type.Literal('polling')], { description: 'How to receive: a WebSocket (`<url>/v1/rooms/:room/ws`) or polling (`<url>/v1/rooms/:room/feed`).' }),
  urls: Type.Array(Type.String(), { description: 'Gateway base URLs, preferred first (the same for the same identity); try the next when one fails.' }),
  wsUrl: Type.String({ description: 'The room\'s WebSocket endpoint on the first gateway (when transport is ws; informative otherwise).' }),
  pollIntervalMs: Type.Integer({ description: 'Poll no more often than this (a feed answer\'s nextPollMs may ask for longer).' }),
  recheckMs: Type.Integer({ description: 'A polling client asks /v1/connect again after this long (a WebSocket client asks at each reconnect).' }),
  reason: Type.String({ description: 'Which rule decided: deny:user|device|version, allow:user|device|version, or rollout.' }),
  bucket: Type.Union([Type.Integer(), Type.Null()], { description: 'The identity\'s roll-out bucket (0..9999) when the roll-out decided.' }),
  rulesVersion: Type.Integer({ description: 'Version of the rules (offset of their audit event; -1: defaults).' }),
});
// The answer's type is the protocol's (shared with the SDK); the schema above documents and serializes it.
export type { ConnectResponse };

/**
 * The rules in memory, re-read every ROUTING_REFRESH_MS. A record that is
 * not valid is logged and the last valid rules kept; Redis out of reach keeps
 * them too (routing goes on answering).
 */
export class RoutingRulesCache {
  private current = compileRules(DEFAULT_STORED);
  private timer: NodeJS.Timeout | undefined;
  private loaded: Promise<void> | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly cfg: Config,
    private readonly warn: (obj: unknown, msg: string) => void,
  ) {}

  start(): Promise<void> {
    if (!this.timer) {
      this.timer = setInterval(() => void this.refresh(), this.cfg.routing.refreshMs);
      this.timer.unref();
      this.loaded = this.refresh();
    }
    return this.loaded!;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async refresh(): Promise<void> {
    try {
      const raw = await this.redis.get(routingRulesKey(this.cfg.redis.keyPrefix));
      const stored = raw === null ? DEFAULT_STORED : parseStored(raw);
      if (stored.version !== this.current.stored.version) this.current = compileRules(stored);
    } catch (err) {
      this.warn({ err }, 'routing: rules not re-read; the last valid ones stay in force');
    }
  }

  rules(): CompiledRules {
    return this.current;
  }
}

/** This gateway's own base URL as the client reached it (GATEWAY_PUBLIC_URL when set). */
function selfUrl(req: FastifyRequest, cfg: Config): string {
  return (cfg.gateway.publicUrl ?? `${req.protocol}://${req.host}`).replace(/\/+$/, '');
}

export async function routingPlugin(app: FastifyInstance): Promise<void> {
  const { cfg, redis } = app.deps;
  const limits = new ReadLimits(cfg);
  const cache = new RoutingRulesCache(redis, cfg, (obj, msg) => app.log.warn(obj, msg));
  // Not awaited here: a gateway starts (and serves everything else) while Redis is away; the route waits for the first read.
  const loaded = cache.start();
  app.addHook('onClose', async () => cache.stop());

  app.get<{ Querystring: Static<typeof ConnectQuery> }>(
    '/v1/connect',
    {
      schema: {
        tags: ['read'],
        summary: 'Where and how to connect: transport (WebSocket or polling), gateway URLs and polling interval, from the routing rules (deny lists, allow lists, percentage roll-out)',
        description:
          'The user id is read from the token (when one is sent); `device` and `version` are the client\'s hints. Deny lists win over allow lists; everyone else is bucketed by a hash of their identity (user, else device, else address), so the answer stays the same for them until the rules change. Rules: `npm run routing -- set|show`.',
        querystring: ConnectQuery,
        response: { 200: ConnectAnswer, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 429: ErrorBody },
      },
    },
    async (req, reply): Promise<ConnectResponse> => {
      // Per client (its token, device, address): never from a shared cache.
      void reply.header('Cache-Control', 'no-store');
      const user = await requireReader(req);
      await limits.take(req, user);
      await loaded;
      const rules = cache.rules();
      const d = decide(rules, { userId: user?.id ?? null, deviceId: req.query.device ?? null, clientVersion: req.query.version ?? null, ip: req.ip });
      const r = rules.stored.rules;
      const urls = gatewayOrder(r.gateways.length > 0 ? r.gateways : [selfUrl(req, cfg)], d.identity);
      return {
        transport: d.transport,
        urls,
        wsUrl: `${urls[0]!.replace(/^http/, 'ws')}/v1/rooms/${encodeURIComponent(req.query.room)}/ws`,
        pollIntervalMs: r.pollIntervalMs ?? cfg.push.pollMinMs,
        recheckMs: cfg.routing.recheckSec * 1000,
        reason: d.reason,
        bucket: d.bucket,
        rulesVersion: rules.stored.version,
      };
    },
  );
}
