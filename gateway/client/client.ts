/**
 * DanmakuClient: the small TypeScript client of a room, for browsers and Node.
 *
 *   const c = new DanmakuClient({ baseUrl: 'http://127.0.0.1:8080', room: 'demo', WebSocket: ws });
 *   c.on('comment', (e) => show(e));
 *   await c.post('hello', { mode: 'top', color: 0xff0000 });
 *
 * It connects over WebSocket and keeps its last position. When the socket
 * drops it reconnects with jittered exponential backoff and resumes with
 * `since=<last position>`, so its `items` have no gap and no duplicate (the
 * reducer in state.ts dedupes by offset). After a few consecutive failed
 * WebSocket attempts (a proxy that blocks upgrades, a flaky network) it falls
 * back to polling `/feed?since=` at the pace the server asks (`nextPollMs`)
 * and tries WebSocket again now and then.
 *
 * Routing: before it connects, at each reconnect and, while it polls, every
 * `recheckMs`, it asks the routing service (`GET /v1/connect`, with its
 * device id and version) and obeys it: WebSocket or polling (no WebSocket
 * probes while the rules say polling), the gateway URL (the next one after a
 * failed attempt), and the polling interval as a floor. Without an answer it
 * connects to `baseUrl` as above (`route: false` never asks).
 *
 * Writes: with a token, `post`, `react` and `gift` go over the open WebSocket as
 * write frames (protocol.ts `WriteFrame`) and resolve on the gateway's ack
 * (durable in Kafka) or reject on its nack, with the code HTTP would give.
 * While the client polls (or has no socket yet within a few seconds) they
 * go over HTTP instead. A comment always carries a clientMsgId, so it is
 * retried (on 503 or a connection lost before the answer) without ever
 * posting twice; a reaction is retried only when the gateway said it was not
 * counted (503) — one whose connection dropped before its answer rejects with
 * ERR_NETWORK, since it may have been counted. A gift carries a clientMsgId
 * like a comment; the room's gift leaderboard is `snapshot.leaderboard`,
 * kept current by the `gift` pushes (and `/state` while polling).
 *
 * Held comments: with a token, the client knows who it is (the token's
 * `sub`, or `userId`), so its own comment held for review stays in `items`
 * marked `pending` (a `pending` event) until a moderator releases it (it then
 * comes back for everyone as a `comment`) or deletes it; other clients remove
 * it. `myHeld()` lists them again after a fresh snapshot; moderators list the
 * room's queue with `held()` and decide with `release()` / `deleteHeld()`.
 *
 * Node 20 has no global WebSocket: pass `ws`'s (`import WebSocket from 'ws'`).
 */
import { pack, unpack } from 'msgpackr';
import type { HeldEntry } from '../../pipelines/projections/held.ts';
import { ERRORS } from '../../core/errors.ts';
import {
  CLOSE,
  SUBPROTOCOLS,
  formatPosition,
  type AckMessage,
  type ConnectResponse,
  type FeedEntry,
  type FeedResponse,
  type GiftItem,
  type Leaderboard,
  type PinState,
  type Position,
  type RoomSettings,
  type ServerMessage,
  type Tallies,
  type View,
  type WriteFrame,
  type WriteReply,
} from '../protocol.ts';
import {
  backoffDelay,
  initialState,
  needsResync,
  reduce,
  snapshotFromHttp,
  type BackoffOptions,
  type ClientEvent,
  type ClientInput,
  type ClientItem,
  type ClientState,
  type RoomStateResponse,
  type Transport,
} from './state.ts';

export type { ClientItem, ClientState, RoomStateResponse, Transport } from './state.ts';
export type { GiftItem, GiftSender, Leaderboard } from '../protocol.ts';

/** GET /v1/gifts: the catalogue a gift is chosen from. */
export interface GiftCatalogue {
  gifts: { id: string; name: string; value: number }[];
  /** Most of one gift a single send may carry. */
  maxCount: number;
}
export type { HeldEntry } from '../../pipelines/projections/held.ts';
import type { FeedWindowPage } from '../feed-window.ts';
export type { FeedWindowPage } from '../feed-window.ts';
export { backoffDelay, recentBurst } from './state.ts';

/** The part of the WebSocket API the client uses (the browser's and `ws`'s both fit). */
export interface WebSocketLike {
  readonly readyState: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onopen: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onmessage: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onclose: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onerror: ((ev: any) => void) | null;
  close(code?: number, reason?: string): void;
  /** Writes go over the socket when it can send (every real WebSocket can). */
  send?(data: string | Uint8Array): void;
  /** The subprotocol the server chose ('' or absent: none, JSON). */
  readonly protocol?: string;
  binaryType?: string;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ModeInfo {
  /** How the client is receiving right now. */
  transport: Transport;
  view: View;
  /** Set when the server degraded the socket (the client reads too slowly). */
  degraded: 'sampled' | 'tallies' | null;
  /** Sampling rate of the sampled view: below 1, "chat is moving fast". */
  rate: number;
  /** Consecutive WebSocket attempts that failed. */
  wsFailures: number;
}

export interface SnapshotInfo {
  reason: 'fresh' | 'resume' | 'unrecoverable' | 'epoch' | 'resubscribed' | 'recovered';
  items: readonly FeedEntry[];
  pinned: PinState | null;
  tallies: Tallies;
  leaderboard: Leaderboard;
  viewers: number;
  uniqueViewers: number;
  settings: RoomSettings;
  rate: number;
}

export interface ClientEvents {
  comment: FeedEntry;
  delete: { eventId: string; offset: number; reason: string };
  /** The client's own comment was held for review: it stays in `items`, marked pending. */
  pending: ClientItem;
  tally: Tallies;
  /** A gift was sent in the room (pushed): the gift and the leaderboard with it counted. */
  gift: { gift: GiftItem; leaderboard: Leaderboard };
  /** The leaderboard changed: with every gift, and when a polled state brings a new one. */
  leaderboard: Leaderboard;
  pin: PinState | null;
  /** Concurrent viewers across gateways (sockets plus recent pollers). */
  viewers: number;
  /** Distinct viewers of the room's stream so far (HyperLogLog estimate). */
  uniqueViewers: number;
  settings: RoomSettings;
  snapshot: SnapshotInfo;
  mode: ModeInfo;
  /** Something went wrong that the client will not fix by itself (a bad token, a rejected request). */
  error: DanmakuError;
}

export interface PostOptions {
  mode?: 'scroll' | 'top' | 'bottom';
  color?: number;
  size?: 'small' | 'medium' | 'large';
  videoOffsetMs?: number;
  /** Idempotency key; generated when absent (a retried post returns the first result). */
  clientMsgId?: string;
}

/** GET /v1/rooms/:room/moderation/held */
export interface HeldPage {
  items: HeldEntry[];
  nextCursor: string | null;
  total: number;
}

export interface PostResult {
  eventId: string;
  position: Position;
  /** Set when the clientMsgId was seen before: this is the first result again. */
  duplicate?: boolean;
}

export interface DanmakuClientOptions {
  /** Gateway base URL, e.g. `http://127.0.0.1:8080` (a browser page may pass `location.origin`). */
  baseUrl: string;
  room: string;
  view?: View;
  /** Bearer JWT: needed to post and react; optional for reading when the gateway allows anonymous reads. */
  token?: string;
  /** Who the client is, for its own held comments (default: the token's `sub`). */
  userId?: string;
  /** WebSocket constructor; default `globalThis.WebSocket`. In Node 20 pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /**
   * Wire format of the socket (default json): `msgpack` asks for the
   * danmaku.msgpack.v1 subprotocol (smaller frames, cheaper to decode) and
   * falls back to JSON if the gateway does not pick it.
   */
  wire?: 'json' | 'msgpack';
  fetch?: typeof fetch;
  /** Base URL of the WebSocket endpoint when it differs from `baseUrl` (default: the routed gateway's, else baseUrl, with http→ws); when given, it wins over the routing answer's URL. */
  wsUrl?: string;
  /**
   * Ask the routing service (`GET <baseUrl>/v1/connect`) before connecting, at
   * each reconnect and, while polling, every `recheckMs` it says, and obey it:
   * WebSocket or polling, the gateway URL, the polling interval (default
   * true). A gateway without routing (404) or no answer: the client connects
   * to `baseUrl` as it would without it.
   */
  route?: boolean;
  /** This device's stable anonymous id (routing lists, viewer counts); default: one kept in localStorage where there is one, else one per client. */
  deviceId?: string;
  /** The app's version, matched by the routing rules' version lists (default SDK_VERSION). */
  clientVersion?: string;
  /** Start connecting in the constructor (default true); otherwise call `connect()`. */
  autoConnect?: boolean;
  backoff?: BackoffOptions;
  /** Consecutive failed WebSocket attempts before falling back to polling (default 3). */
  wsFailuresBeforePolling?: number;
  /** While polling, how often WebSocket is tried again (jittered; default 30 s). */
  wsRetryMs?: number;
  /** A WebSocket that has not delivered its snapshot by then counts as failed (default 10 s). */
  connectTimeoutMs?: number;
  /** Bounds on the server's `nextPollMs` (defaults 250 ms and 30 s). */
  minPollMs?: number;
  maxPollMs?: number;
  /** Long-poll: ask the server to hold the poll up to this many seconds (default 0: plain polls). */
  pollWaitSec?: number;
  /** Comments kept in `items` (default 500). */
  maxItems?: number;
  /** Retries of a post/react answered 503 or failing on the network (default 2; the clientMsgId keeps them idempotent). */
  writeRetries?: number;
  /** A write while the WebSocket is still connecting waits this long for it before going over HTTP (default 5 s). */
  socketWriteWaitMs?: number;
  random?: () => number;
}

/** An error answer of the gateway (`{code, message}`) or a transport failure (`code` ERR_NETWORK). */
export class DanmakuError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'DanmakuError';
  }
}

type Listener<K extends keyof ClientEvents> = (payload: ClientEvents[K]) => void;

/** Items per feed page (the gateway's default limit). */
const FEED_PAGE = 200;

function randomId(random: () => number): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  // randomUUID exists only in secure contexts in browsers (https or localhost).
  if (c?.randomUUID) return c.randomUUID();
  return Array.from({ length: 4 }, () => Math.floor(random() * 0x100000000).toString(16).padStart(8, '0')).join('-');
}

/** The SDK's version: what GET /v1/connect is told (`version`) unless the app gives its own (`clientVersion`). */
export const SDK_VERSION = '0.1.0';

const DEVICE_KEY = 'danmaku.device';
const DEVICE_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

/** A stable anonymous id for this browser (localStorage), or a fresh one per client where there is no storage (Node). */
function defaultDeviceId(random: () => number): string {
  try {
    const ls = (globalThis as { localStorage?: { getItem(k: string): string | null; setItem(k: string, v: string): void } }).localStorage;
    if (ls) {
      const had = ls.getItem(DEVICE_KEY);
      if (had && DEVICE_ID.test(had)) return had;
      const id = randomId(random);
      ls.setItem(DEVICE_KEY, id);
      return id;
    }
  } catch {
    /* storage refused (private mode): one per client */
  }
  return randomId(random);
}

/** Whether a body is a routing answer this client can follow. */
function isConnectResponse(x: unknown): x is ConnectResponse {
  const r = x as Partial<ConnectResponse> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    (r.transport === 'ws' || r.transport === 'polling') &&
    Array.isArray(r.urls) &&
    r.urls.length > 0 &&
    r.urls.every((u) => typeof u === 'string' && /^https?:\/\//.test(u)) &&
    typeof r.pollIntervalMs === 'number' &&
    typeof r.recheckMs === 'number' &&
    r.recheckMs > 0
  );
}

/** The `sub` of a JWT, read without verifying it (the gateway verifies; the client only needs to know itself). */
export function tokenSubject(token: string | undefined): string | undefined {
  const part = token?.split('.')[1];
  if (!part) return undefined;
  try {
    const bytes = Uint8Array.from(atob(part.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
    const json = JSON.parse(new TextDecoder().decode(bytes)) as { sub?: unknown };
    return typeof json.sub === 'string' ? json.sub : undefined;
  } catch {
    return undefined;
  }
}

function retryAfterMs(res: Response): number | undefined {
  const h = res.headers.get('retry-after');
  if (!h) return undefined;
  const n = Number(h);
  return Number.isFinite(n) ? n * 1000 : undefined;
}

/**
 * What a write sends again by itself: 503 (a dependency down, the gateway stopping) and
 * ERR_IN_PROGRESS (409: the same clientMsgId is still being written; asking again gets
 * its result) — the codes the catalogue marks retriable.
 */
function retriableWrite(err: DanmakuError): boolean {
  return err.status === 503 || err.code === 'ERR_IN_PROGRESS';
}

/** The coded error of a non-2xx answer (the catalogue's code and message, Retry-After). */
export async function errorOf(res: Response): Promise<DanmakuError> {
  let code = `ERR_HTTP_${res.status}`;
  let message = res.statusText;
  try {
    const body = (await res.json()) as { code?: string; message?: string };
    if (body.code) code = body.code;
    if (body.message) message = body.message;
  } catch {
    /* not JSON */
  }
  return new DanmakuError(code, message, res.status, retryAfterMs(res));
}

/** The HTTP status a nack's code stands for (the catalogue, core/errors.ts); 0 for a code this client does not know. */
function statusOf(code: string): number {
  return Object.hasOwn(ERRORS, code) ? ERRORS[code as keyof typeof ERRORS].status : 0;
}

/** A write sent on a socket and not answered yet. */
interface PendingWrite {
  socket: WebSocketLike;
  resolve(ack: AckMessage): void;
  reject(err: DanmakuError): void;
}

type WriteBody = { type: 'comment'; text: string } & PostOptions | { type: 'reaction'; emoji: string; count: number } | { type: 'gift'; giftId: string; count: number; clientMsgId: string };

/** A binary message's bytes (browser ArrayBuffer, ws Buffer or fragments). */
function bytesOf(data: unknown): Uint8Array {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) {
    const parts = data.map(bytesOf);
    const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
  return new TextEncoder().encode(String(data));
}

function textOf(data: unknown): string {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data);
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  if (Array.isArray(data)) return data.map(textOf).join(''); // ws: fragmented Buffer[]
  return String(data);
}

export class DanmakuClient {
  private state: ClientState;
  private readonly listeners = new Map<keyof ClientEvents, Set<(p: never) => void>>();
  private readonly opts: DanmakuClientOptions;
  private readonly WS: WebSocketConstructor | undefined;
  private readonly fetchImpl: typeof fetch;
  private readonly random: () => number;
  private token: string | undefined;

  private transport: Transport = 'connecting';
  private closed = false;
  private started = false;
  private wsFailures = 0;
  private socket: WebSocketLike | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private wsRetryTimer: ReturnType<typeof setTimeout> | undefined;
  /** The routing service's last answer (null: none, or routing off). */
  private routing: ConnectResponse | null = null;
  private routeTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly deviceId: string;
  private pollTimer: ReturnType<typeof setTimeout> | undefined;
  private pollAbort: AbortController | null = null;
  private pollGeneration = 0;
  private pollFailures = 0;
  private lastPollMs = 1000;
  /** The socket that delivered its snapshot, and whether it was opened with a token (it may write). */
  private live: { socket: WebSocketLike; authed: boolean } | null = null;
  private liveWaiters: (() => void)[] = [];
  private readonly pendingWrites = new Map<string, PendingWrite>();
  private writeSeq = 0;
  private readyResolve!: () => void;
  /** Resolves once the client has its first snapshot (over WebSocket or polling). */
  readonly ready: Promise<void>;

  constructor(opts: DanmakuClientOptions) {
    this.opts = opts;
    this.token = opts.token;
    this.random = opts.random ?? Math.random;
    this.deviceId = opts.deviceId ?? defaultDeviceId(this.random);
    this.WS = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    const f = opts.fetch ?? globalThis.fetch;
    this.fetchImpl = (input, init) => f(input, init); // unbound window.fetch throws "Illegal invocation"
    this.state = initialState(opts.room, opts.view ?? 'ordered');
    this.ready = new Promise((r) => (this.readyResolve = r));
    if (opts.autoConnect !== false) queueMicrotask(() => this.connect());
  }

  // ---- public surface -------------------------------------------------------

  /** Visible comments, oldest first (no gap, no duplicate, deleted ones removed; the client's own held ones `pending`). */
  get items(): readonly ClientItem[] {
    return this.state.items;
  }

  /** The last position received (resume point), or null before the first snapshot. */
  get position(): Position | null {
    return this.state.position;
  }

  get snapshot(): Readonly<ClientState> {
    return this.state;
  }

  get mode(): ModeInfo {
    return { transport: this.transport, view: this.state.view, degraded: this.state.degraded, rate: this.state.rate, wsFailures: this.wsFailures };
  }

  /**
   * Changes the bearer token used for writes. An open WebSocket is reopened
   * with it (resuming from the client's position: no gap, no duplicate), so
   * writes go over the socket as the new user.
   */
  setToken(token: string | undefined): void {
    if (token === this.token) return;
    this.token = token;
    if (this.closed || !this.started || !this.WS || this.transport === 'polling') return;
    const s = this.socket;
    if (s) {
      this.socket = null;
      this.dropSocket(s);
      this.closeQuietly(s, 1000);
    }
    clearTimeout(this.reconnectTimer);
    this.openSocket(false);
  }

  on<K extends keyof ClientEvents>(event: K, cb: Listener<K>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(cb as (p: never) => void);
    return () => this.off(event, cb);
  }

  off<K extends keyof ClientEvents>(event: K, cb: Listener<K>): void {
    this.listeners.get(event)?.delete(cb as (p: never) => void);
  }

  /** Starts receiving (idempotent). */
  connect(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.begin();
  }

  /** The routing service's last answer: transport, gateway URLs, poll interval, the rule that decided (null before it, or without routing). */
  get route(): ConnectResponse | null {
    return this.routing;
  }

  /** This client's device id (sent to routing, the socket and polls). */
  get device(): string {
    return this.deviceId;
  }

  /** Opens the transport (at the start, and at each reconnect): as the routing service says when it is on. */
  private begin(): void {
    if (this.closed) return;
    if (this.opts.route === false) {
      if (this.WS) this.openSocket(false);
      else this.startPolling(); // no WebSocket at all in this runtime
      return;
    }
    void this.askRoute().then((r) => {
      if (this.closed) return;
      if (r) this.routing = r;
      if ((r ?? this.routing)?.transport === 'polling' || !this.WS) this.startPolling();
      else this.openSocket(false);
    });
  }

  /** GET /v1/connect; null when there is no usable answer (an older gateway, the network), so the client goes on as without routing. */
  private async askRoute(): Promise<ConnectResponse | null> {
    const q = new URLSearchParams({ room: this.opts.room, device: this.deviceId, version: this.opts.clientVersion ?? SDK_VERSION });
    try {
      const r = await this.getJson(`/v1/connect?${q}`, undefined, this.opts.baseUrl);
      return isConnectResponse(r) ? r : null;
    } catch (err) {
      if (err instanceof DanmakuError && (err.status === 400 || err.status === 401 || err.status === 403)) this.emit('error', err);
      return null;
    }
  }

  /** While routed to polling: ask again every `recheckMs`, and try WebSocket once the rules give it. */
  private scheduleRecheck(): void {
    if (this.closed) return;
    clearTimeout(this.routeTimer);
    const every = this.routing?.recheckMs ?? 60_000;
    this.routeTimer = setTimeout(() => {
      void this.askRoute().then((r) => {
        if (this.closed || this.transport !== 'polling') return;
        if (r) this.routing = r;
        if (r?.transport === 'ws' && this.WS) {
          if (!this.socket) this.openSocket(true); // polling goes on until the socket delivers its snapshot
          return;
        }
        this.scheduleRecheck();
      });
    }, every * (0.9 + 0.2 * this.random()));
  }

  /** The gateway to talk to: the routing answer's preferred one (the next after each failed attempt), else baseUrl. */
  private gatewayUrl(): string {
    const urls = this.routing?.urls;
    const u = urls && urls.length > 0 ? urls[this.wsFailures % urls.length]! : this.opts.baseUrl;
    return u.replace(/\/$/, '');
  }

  /** Posts a comment; resolves once it is durable (over the socket when one is open with a token, else HTTP). */
  async post(text: string, opts: PostOptions = {}): Promise<PostResult> {
    const body = { text, ...opts, clientMsgId: opts.clientMsgId ?? randomId(this.random) };
    return this.writeAny({ type: 'comment', ...body }, `/v1/rooms/${encodeURIComponent(this.opts.room)}/comments`, body, true);
  }

  /** Adds a reaction; resolves once the aggregated event holding it is durable (up to the gateway's flush interval). */
  async react(emoji: string, count = 1): Promise<PostResult> {
    return this.writeAny({ type: 'reaction', emoji, count }, `/v1/rooms/${encodeURIComponent(this.opts.room)}/reactions`, { emoji, count }, false);
  }

  /**
   * Sends a gift of the catalogue (`gifts()`), `count` at once; resolves once
   * its GiftSent is durable (over the socket when one is open with a token,
   * else HTTP). Idempotent: a retry with the same `clientMsgId` (generated
   * when absent) returns the first result. 400 ERR_UNKNOWN_GIFT for an id
   * the catalogue does not have.
   */
  async gift(giftId: string, count = 1, opts: { clientMsgId?: string } = {}): Promise<PostResult> {
    const body = { giftId, count, clientMsgId: opts.clientMsgId ?? randomId(this.random) };
    return this.writeAny({ type: 'gift', ...body }, `/v1/rooms/${encodeURIComponent(this.opts.room)}/gifts`, body, true);
  }

  /** The gift catalogue (GET /v1/gifts). */
  async gifts(signal?: AbortSignal): Promise<GiftCatalogue> {
    const c = (await this.getJson('/v1/gifts', signal)) as GiftCatalogue | undefined;
    if (!c) throw new DanmakuError('ERR_NOT_MODIFIED', 'the catalogue answered 304 to a request without a validator', 304);
    return c;
  }

  /** The room's review queue (a moderator, broadcaster or admin of the room), oldest hold first. */
  async held(opts: { limit?: number; cursor?: string } = {}): Promise<HeldPage> {
    return this.heldPage({ ...opts, mine: false });
  }

  /** The caller's own held comments (pending), e.g. after a fresh snapshot, which no longer holds them. */
  async myHeld(opts: { limit?: number; cursor?: string } = {}): Promise<HeldPage> {
    return this.heldPage({ ...opts, mine: true });
  }

  /** Releases a held comment (moderators): it reaches every viewer. Resolves once the CommentReleased is durable. */
  async release(eventId: string): Promise<PostResult> {
    return (await this.write(`/v1/rooms/${encodeURIComponent(this.opts.room)}/moderation/held/${encodeURIComponent(eventId)}/release`, {})) as PostResult;
  }

  /** Deletes a held comment (moderators). */
  async deleteHeld(eventId: string): Promise<PostResult> {
    return (await this.write(`/v1/rooms/${encodeURIComponent(this.opts.room)}/moderation/held/${encodeURIComponent(eventId)}/delete`, {})) as PostResult;
  }

  private async heldPage(o: { limit?: number; cursor?: string; mine: boolean }): Promise<HeldPage> {
    const q = new URLSearchParams();
    if (o.mine) q.set('mine', 'true');
    if (o.limit !== undefined) q.set('limit', String(o.limit));
    if (o.cursor !== undefined) q.set('cursor', o.cursor);
    const page = (await this.getJson(`/v1/rooms/${encodeURIComponent(this.opts.room)}/moderation/held?${q}`)) as HeldPage | undefined;
    if (!page) throw new DanmakuError('ERR_NOT_MODIFIED', 'the queue answered 304 to a request without a validator', 304);
    return page;
  }

  /**
   * The room's comments in a window of event time (`by: 'event'`, the default) or video time
   * (`by: 'video'`), in that order, a page at a time (GET /feed/window): pass `nextCursor`
   * as `after` for the next page. `complete: false` says part of the window could not be read.
   */
  async window(o: { from: number; to: number; by?: 'event' | 'video'; limit?: number; after?: string }, signal?: AbortSignal): Promise<FeedWindowPage> {
    const q = new URLSearchParams({ from: String(o.from), to: String(o.to) });
    if (o.by !== undefined) q.set('by', o.by);
    if (o.limit !== undefined) q.set('limit', String(o.limit));
    if (o.after !== undefined) q.set('after', o.after);
    const page = (await this.getJson(`/v1/rooms/${encodeURIComponent(this.opts.room)}/feed/window?${q}`, signal)) as FeedWindowPage | undefined;
    if (!page) throw new DanmakuError('ERR_NOT_MODIFIED', 'the window answered 304 to a request without a validator', 304);
    return page;
  }

  /** GET /state: pinned comment, tallies, gift leaderboard, viewers, settings, position. */
  async roomState(signal?: AbortSignal): Promise<RoomStateResponse> {
    const st = (await this.getJson(`/v1/rooms/${encodeURIComponent(this.opts.room)}/state`, signal)) as RoomStateResponse | undefined;
    if (!st) throw new DanmakuError('ERR_NOT_MODIFIED', 'the state answered 304 to a request without a validator', 304);
    return st;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.wsRetryTimer);
    clearTimeout(this.routeTimer);
    clearTimeout(this.pinTimer);
    this.stopPolling();
    const s = this.socket;
    this.socket = null;
    if (s) {
      this.dropSocket(s);
      this.closeQuietly(s, 1000);
    }
    for (const w of this.liveWaiters.splice(0)) w();
    this.setTransport('closed');
  }

  // ---- events ---------------------------------------------------------------

  private emit<K extends keyof ClientEvents>(event: K, payload: ClientEvents[K]): void {
    for (const cb of this.listeners.get(event) ?? []) {
      try {
        (cb as Listener<K>)(payload);
      } catch (err) {
        // A listener's bug must not break the client's state machine.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  private emitMode(): void {
    this.emit('mode', this.mode);
  }

  private setTransport(t: Transport): void {
    if (this.transport === t) return;
    this.transport = t;
    this.emitMode();
  }

  private apply(input: ClientInput): void {
    const step = reduce(this.state, input, { maxItems: this.opts.maxItems, me: this.opts.userId ?? tokenSubject(this.token) });
    this.state = step.state;
    for (const e of step.events) this.dispatch(e);
    this.watchPin();
  }

  private pinTimer: ReturnType<typeof setTimeout> | undefined;
  private pinWatched = '';

  /**
   * A pin with a duration disappears on this client's own clock when it
   * expires (the gateway also pushes its end to live sockets; this covers a
   * pin shown from a snapshot, a polling client, a gateway restarted since).
   */
  private watchPin(): void {
    const pin = this.state.pinned;
    const key = pin && pin.untilMs !== null ? `${pin.eventId}@${pin.untilMs}` : '';
    if (key === this.pinWatched) return;
    this.pinWatched = key;
    if (this.pinTimer) clearTimeout(this.pinTimer);
    this.pinTimer = undefined;
    if (!pin || pin.untilMs === null) return;
    const until = pin.untilMs;
    const check = (): void => {
      this.pinTimer = undefined;
      const left = until - Date.now();
      // setTimeout cannot wait longer than 2^31-1 ms: a far expiry is waited for in steps.
      if (left > 0) this.pinTimer = setTimeout(check, Math.min(left, 2 ** 31 - 1));
      else this.apply({ type: 'clock', now: Date.now() });
    };
    check();
  }

  private dispatch(e: ClientEvent): void {
    switch (e.type) {
      case 'comment':
        return this.emit('comment', e.entry);
      case 'delete':
        return this.emit('delete', { eventId: e.eventId, offset: e.offset, reason: e.reason });
      case 'pending':
        return this.emit('pending', e.entry);
      case 'tally':
        return this.emit('tally', e.tallies);
      case 'gift':
        this.emit('gift', { gift: e.gift, leaderboard: e.leaderboard });
        return this.emit('leaderboard', e.leaderboard);
      case 'leaderboard':
        return this.emit('leaderboard', e.leaderboard);
      case 'pin':
        return this.emit('pin', e.pin);
      case 'viewers':
        return this.emit('viewers', e.count);
      case 'uniqueViewers':
        return this.emit('uniqueViewers', e.count);
      case 'settings':
        return this.emit('settings', e.settings);
      case 'rate':
      case 'degraded':
        return this.emitMode();
      case 'snapshot': {
        const s = this.state;
        this.emit('snapshot', { reason: e.reason, items: e.items, pinned: s.pinned, tallies: s.tallies, leaderboard: s.leaderboard, viewers: s.viewers, uniqueViewers: s.uniqueViewers, settings: s.settings, rate: s.rate });
        this.readyResolve();
        return;
      }
    }
  }

  // ---- WebSocket ------------------------------------------------------------

  private wsUrlFor(): string {
    const base = (this.opts.wsUrl ?? this.gatewayUrl().replace(/^http/, 'ws')).replace(/\/$/, '');
    const q = new URLSearchParams({ view: this.state.view, device: this.deviceId });
    if (this.state.position) q.set('since', formatPosition(this.state.position));
    if (this.token) q.set('token', this.token);
    return `${base}/v1/rooms/${encodeURIComponent(this.opts.room)}/ws?${q}`;
  }

  private closeQuietly(s: WebSocketLike, code: number): void {
    // No-ops, not null: `ws` emits 'error' when a connecting socket is closed, and an
    // EventEmitter 'error' without a listener would crash a Node process.
    const noop = () => undefined;
    s.onopen = s.onmessage = s.onclose = s.onerror = noop;
    try {
      s.close(code);
    } catch {
      /* closing a socket that never opened may throw */
    }
  }

  /**
   * Opens a socket. `trial`: a probe while polling — polling goes on until
   * the socket delivers its snapshot, and a failure only schedules the next probe.
   */
  private openSocket(trial: boolean): void {
    if (this.closed || !this.WS) return;
    if (!trial) this.setTransport('connecting');
    let s: WebSocketLike;
    try {
      s = this.opts.wire === 'msgpack' ? new this.WS(this.wsUrlFor(), [SUBPROTOCOLS.msgpack, SUBPROTOCOLS.json]) : new this.WS(this.wsUrlFor());
      if (this.opts.wire === 'msgpack') s.binaryType = 'arraybuffer';
    } catch {
      this.socketFailed(trial, false);
      return;
    }
    this.socket = s;
    const authed = this.token !== undefined;
    let gotSnapshot = false;
    let finished = false;
    const timeout = setTimeout(() => {
      if (!gotSnapshot) fail(undefined);
    }, this.opts.connectTimeoutMs ?? 10_000);
    const fail = (code: number | undefined) => {
      if (finished) return;
      finished = true;
      clearTimeout(timeout);
      if (this.socket === s) this.socket = null;
      this.dropSocket(s);
      this.closeQuietly(s, 1000);
      if (this.closed) return;
      if (code === CLOSE.unauthorized || code === CLOSE.tokenExpired || code === CLOSE.badRequest) {
        this.emit('error', new DanmakuError(code === CLOSE.badRequest ? 'ERR_BAD_REQUEST' : 'ERR_AUTH_INVALID', `the gateway closed the socket (${code})`, 0));
        // A token that expired must not stop reading: carry on anonymously (setToken brings writes back).
        if (code !== CLOSE.badRequest) this.token = undefined;
      }
      this.socketFailed(trial, gotSnapshot);
    };
    s.onmessage = (ev: { data: unknown }) => {
      let msg: ServerMessage | WriteReply;
      try {
        msg = (typeof ev.data === 'string' ? JSON.parse(ev.data) : s.protocol === SUBPROTOCOLS.msgpack ? unpack(bytesOf(ev.data)) : JSON.parse(textOf(ev.data))) as ServerMessage | WriteReply;
      } catch {
        return;
      }
      if (msg.type === 'ack' || msg.type === 'nack') {
        this.answered(msg);
        return;
      }
      if (msg.type === 'snapshot' && !gotSnapshot) {
        gotSnapshot = true;
        clearTimeout(timeout);
        this.wsFailures = 0;
        if (this.transport === 'polling') this.stopPolling();
        clearTimeout(this.wsRetryTimer);
        clearTimeout(this.routeTimer);
        this.transport = 'ws';
        this.live = { socket: s, authed };
        for (const w of this.liveWaiters.splice(0)) w();
        this.apply(msg);
        this.emitMode();
        return;
      }
      if (!gotSnapshot) return;
      this.apply(msg);
    };
    s.onclose = (ev: { code?: number }) => fail(ev?.code);
    s.onerror = () => fail(undefined);
  }

  /** A socket is gone (closed, failed, replaced): its unanswered writes fail with ERR_NETWORK (the write may or may not have been made). */
  private dropSocket(s: WebSocketLike): void {
    if (this.live?.socket === s) this.live = null;
    for (const [id, w] of this.pendingWrites) {
      if (w.socket !== s) continue;
      this.pendingWrites.delete(id);
      w.reject(new DanmakuError('ERR_NETWORK', 'the connection closed before the write was answered', 0));
    }
  }

  private socketFailed(trial: boolean, hadSnapshot: boolean): void {
    if (this.closed) return;
    // Writes waiting for a socket go over HTTP once the client falls back to polling (startPolling wakes them).
    if (trial && this.transport === 'polling') {
      if (this.routing?.transport === 'polling') this.scheduleRecheck();
      else this.scheduleWsRetry();
      return;
    }
    this.wsFailures = hadSnapshot ? 0 : this.wsFailures + 1;
    if (this.wsFailures >= (this.opts.wsFailuresBeforePolling ?? 3)) {
      this.startPolling();
      return;
    }
    if (this.transport === 'connecting') this.emitMode(); // wsFailures changed
    else this.setTransport('connecting');
    clearTimeout(this.reconnectTimer);
    // A reconnect asks the routing service again: a rule change moves the client here.
    this.reconnectTimer = setTimeout(() => this.begin(), backoffDelay(this.wsFailures, this.opts.backoff, this.random));
  }

  private scheduleWsRetry(): void {
    if (this.closed || !this.WS) return;
    clearTimeout(this.wsRetryTimer);
    const every = this.opts.wsRetryMs ?? 30_000;
    this.wsRetryTimer = setTimeout(() => {
      if (this.transport !== 'polling' || this.socket) return;
      if (this.opts.route === false || !this.routing) return this.openSocket(true);
      // Routed: the probe asks first, so rules that now say polling stop the probes.
      void this.askRoute().then((r) => {
        if (this.closed || this.transport !== 'polling' || this.socket) return;
        if (r) this.routing = r;
        if (this.routing?.transport === 'polling') this.scheduleRecheck();
        else this.openSocket(true);
      });
    }, every / 2 + this.random() * every);
  }

  // ---- polling --------------------------------------------------------------

  private startPolling(): void {
    if (this.closed || this.transport === 'polling') return;
    this.setTransport('polling');
    for (const w of this.liveWaiters.splice(0)) w();
    this.pollFailures = 0;
    const gen = ++this.pollGeneration;
    void this.pollOnce(gen);
    // Routed to polling: no WebSocket probes, the routing service says when (a fallback after failed sockets probes as before).
    if (this.routing?.transport === 'polling') this.scheduleRecheck();
    else this.scheduleWsRetry();
  }

  private stopPolling(): void {
    this.pollGeneration++;
    clearTimeout(this.pollTimer);
    this.pollAbort?.abort();
    this.pollAbort = null;
  }

  private async getJson(path: string, signal?: AbortSignal, base = this.gatewayUrl()): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let res: Response;
    try {
      res = await this.fetchImpl(`${base.replace(/\/$/, '')}${path}`, { headers, signal });
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      throw new DanmakuError('ERR_NETWORK', (err as Error).message, 0);
    }
    if (res.status === 304) return undefined;
    if (!res.ok) throw await errorOf(res);
    return res.json();
  }

  private feedPath(since: Position | null): string {
    const q = new URLSearchParams({ view: this.state.view, device: this.deviceId });
    if (since) q.set('since', formatPosition(since));
    if (this.opts.pollWaitSec) q.set('wait', String(this.opts.pollWaitSec));
    return `/v1/rooms/${encodeURIComponent(this.opts.room)}/feed?${q}`;
  }

  /**
   * Reloads from scratch over HTTP: the state, and the feed without `since`
   * (or the page the server already sent with `unrecoverable`).
   */
  private async resyncOverHttp(signal: AbortSignal, reason?: 'unrecoverable' | 'epoch', page?: FeedResponse): Promise<FeedResponse> {
    const [st, feed] = await Promise.all([this.roomState(signal), page ?? this.getFeed(null, signal)]);
    this.apply(snapshotFromHttp(this.opts.room, this.state.view, st, feed, reason));
    return feed;
  }

  private async getFeed(since: Position | null, signal: AbortSignal): Promise<FeedResponse> {
    const res = (await this.getJson(this.feedPath(since), signal)) as FeedResponse | undefined;
    // 304: nothing new since the same question was last answered.
    return res ?? { events: [], position: since ?? { epoch: 0, offset: -1 }, nextPollMs: this.lastPollMs, rate: this.state.rate };
  }

  private async pollOnce(gen: number): Promise<void> {
    if (this.closed || gen !== this.pollGeneration) return;
    const abort = new AbortController();
    this.pollAbort = abort;
    let nextMs: number;
    try {
      let feed: FeedResponse;
      if (!this.state.position) {
        feed = await this.resyncOverHttp(abort.signal);
      } else {
        const [page, st] = await Promise.all([
          this.getFeed(this.state.position, abort.signal),
          // Tallies, pin, viewers and settings are not in the feed: the state endpoint brings them.
          this.roomState(abort.signal).catch(() => undefined),
        ]);
        if (gen !== this.pollGeneration) return; // WebSocket took over meanwhile
        if (needsResync(this.state, page)) {
          feed = await this.resyncOverHttp(abort.signal, page.unrecoverable ? 'unrecoverable' : 'epoch', page.unrecoverable ? page : undefined);
        } else {
          feed = page;
          this.apply({ type: 'feed', response: page });
          if (st) this.apply({ type: 'state', state: st });
        }
      }
      this.pollFailures = 0;
      this.lastPollMs = feed.nextPollMs;
      // A full page means more is waiting: fetch it at once.
      // The routing service's interval is the operator's floor (load relief): it wins over the client's own bounds.
      nextMs = feed.events.length >= FEED_PAGE ? 0 : Math.max(this.routing?.pollIntervalMs ?? 0, Math.min(this.opts.maxPollMs ?? 30_000, Math.max(this.opts.minPollMs ?? 250, feed.nextPollMs)));
    } catch (err) {
      if (this.closed || gen !== this.pollGeneration) return;
      const e = err instanceof DanmakuError ? err : new DanmakuError('ERR_NETWORK', (err as Error).message, 0);
      if (e.status === 400 || e.status === 401 || e.status === 403 || e.status === 404) this.emit('error', e);
      nextMs = e.retryAfterMs ?? backoffDelay(this.pollFailures++, this.opts.backoff, this.random);
    } finally {
      if (this.pollAbort === abort) this.pollAbort = null;
    }
    if (this.closed || gen !== this.pollGeneration) return;
    this.pollTimer = setTimeout(() => void this.pollOnce(gen), nextMs);
  }

  // ---- writes ---------------------------------------------------------------

  /**
   * One write, over the socket when it can, else HTTP; retried (with
   * backoff) on 503, and — `idempotent` writes only — on a lost connection.
   */
  private async writeAny(frame: WriteBody, path: string, body: unknown, idempotent: boolean): Promise<PostResult> {
    const retries = this.opts.writeRetries ?? 2;
    for (let attempt = 0; ; attempt++) {
      const socket = await this.writableSocket();
      if (!socket) return (await this.write(path, body)) as PostResult;
      let err: DanmakuError;
      try {
        const ack = await this.sendFrame(socket, frame);
        return ack.duplicate ? { eventId: ack.eventId, position: ack.position, duplicate: true } : { eventId: ack.eventId, position: ack.position };
      } catch (e) {
        err = e instanceof DanmakuError ? e : new DanmakuError('ERR_NETWORK', (e as Error).message, 0);
        const retriable = retriableWrite(err) || (idempotent && err.code === 'ERR_NETWORK');
        if (!retriable) throw err;
      }
      if (attempt >= retries || this.closed) throw err;
      await new Promise((r) => setTimeout(r, err.retryAfterMs ?? backoffDelay(attempt, this.opts.backoff, this.random)));
    }
  }

  /**
   * The socket writes can go over: open, past its snapshot, opened with a
   * token. While one is connecting, waits for it (socketWriteWaitMs); null
   * means HTTP (polling, no token, no WebSocket, or it did not come).
   */
  private async writableSocket(): Promise<WebSocketLike | null> {
    const usable = () => {
      const l = this.live;
      return l && l.authed && this.token !== undefined && typeof l.socket.send === 'function' && l.socket.readyState === 1 ? l.socket : null;
    };
    const now = usable();
    if (now || !this.WS || !this.token || this.closed || this.transport === 'polling' || this.transport === 'closed') return now;
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, this.opts.socketWriteWaitMs ?? 5000);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.liveWaiters.push(done);
    });
    return usable();
  }

  private sendFrame(socket: WebSocketLike, frame: WriteBody): Promise<AckMessage> {
    const id = `w${++this.writeSeq}`;
    return new Promise<AckMessage>((resolve, reject) => {
      this.pendingWrites.set(id, { socket, resolve, reject });
      try {
        const f = { ...frame, id } satisfies WriteFrame;
        socket.send!(socket.protocol === SUBPROTOCOLS.msgpack ? pack(f) : JSON.stringify(f));
      } catch (e) {
        this.pendingWrites.delete(id);
        reject(new DanmakuError('ERR_NETWORK', (e as Error).message, 0));
      }
    });
  }

  private answered(m: WriteReply): void {
    if (m.id === null) return; // a frame the gateway could not read: never one of ours
    const w = this.pendingWrites.get(m.id);
    if (!w) return;
    this.pendingWrites.delete(m.id);
    if (m.type === 'ack') w.resolve(m);
    else w.reject(new DanmakuError(m.code, m.message, statusOf(m.code), m.retryAfterSec === undefined ? undefined : m.retryAfterSec * 1000));
  }

  private async write(path: string, body: unknown): Promise<unknown> {
    const retries = this.opts.writeRetries ?? 2;
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
      if (this.token) headers.authorization = `Bearer ${this.token}`;
      let err: DanmakuError;
      try {
        const res = await this.fetchImpl(`${this.gatewayUrl()}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
        if (res.ok) return await res.json();
        err = await errorOf(res);
        if (!retriableWrite(err)) throw err; // other 4xx (429 included) are the caller's to handle
      } catch (e) {
        if (e instanceof DanmakuError && !retriableWrite(e)) throw e;
        err = e instanceof DanmakuError ? e : new DanmakuError('ERR_NETWORK', (e as Error).message, 0);
      }
      if (attempt >= retries || this.closed) throw err;
      await new Promise((r) => setTimeout(r, err.retryAfterMs ?? backoffDelay(attempt, this.opts.backoff, this.random)));
    }
  }
}
