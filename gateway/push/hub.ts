/**
 * The push hub: one per gateway process. A room with at least one socket
 * has ONE sharded subscription to its notification channel (SSUBSCRIBE on
 * the separate subscriber connection), released when its last socket leaves.
 *
 * Notifications (one per effect a processor applied, in apply order) become
 * PushEvents, gathered per room and stream:
 *   ordered  — feed comments/deletions + tallies + pin/settings + gifts
 *   sampled  — sampled comments/deletions/rate + tallies + pin/settings + gifts
 *   tallies  — tallies + pin/settings + gifts only (sockets degraded for slowness)
 * Every batch interval (push.batchMs while the room is quiet, longer as its
 * rate grows, up to push.batchMaxMs: batchInterval) a room's buffer is flushed: ONE BatchMessage per
 * stream, serialized once (per wire format: wire.ts), and the same bytes written to every socket of the
 * room on that stream. Shadow comments (author shadow-muted) never enter the
 * shared bytes: they go, as a separate small batch, only to the author's
 * sockets.
 *
 * A socket's life is the state machine of socket-state.ts (joining, live,
 * resyncing, closing, removed). It joins "joining": batches it would get are held (as objects) while
 * the plugin reads its snapshot or catch-up, then `release(floor)` sends them
 * minus the items at or below `floor` (already in the snapshot/catch-up) —
 * no gap (it was registered, and subscribed, before the reads) and no
 * duplicate. Until the room's notifications have passed that floor and the
 * position the socket was given, the socket gets its own filtered copy;
 * after that, the shared bytes.
 *
 * A notification with `resync: true`, or of another projection version than
 * the room was serving, gives every socket of the room a fresh snapshot
 * (reason 'epoch').
 *
 * Slow consumers: on each flush a socket's `bufferedAmount` is checked. Above
 * sampledAboveBytes for slowForMs → sampled stream; above talliesOnlyAboveBytes
 * for slowForMs → tallies only; above closeAboveBytes → closed with 4008.
 * Nothing is ever queued per socket beyond ws's own buffer, which those
 * thresholds bound.
 *
 * Users: the hub indexes signed-in users' sockets across rooms, so it can
 * close them (`closeUser`: bans, revocations, an operator's disconnect, via
 * gateway/connections.ts) and tell the connection registry when they change.
 * A visible `mute` delta on a room's channel closes that user's sockets in
 * the room with 4403; a shadow mute does nothing the user could notice.
 */
import { AppError } from '../../core/errors.ts';
import type { FastifyBaseLogger } from 'fastify';
import type { WebSocket } from 'ws';
import type { Delta, FeedItem } from '../../pipelines/projection.ts';
import { roomEpoch } from '../../pipelines/read.ts';
import { activeVersion, notifyChannel, type Notification } from '../../pipelines/naming.ts';
import type { GatewayDeps } from '../deps.ts';
import type { Presence } from '../presence.ts';
import { CLOSE, type BatchMessage, type DegradedMessage, type Position, type PushEvent, type ServerMessage, type SnapshotMessage, type View, type ViewersMessage } from '../protocol.ts';
import { Frame, wireOf, type Wire } from './wire.ts';
import { applyNotification, readWindow, startWindow, type RoomWindow, type WindowRead } from './window.ts';
import { holdsBatches, isGone, transition, type SocketState } from './socket-state.ts';
import { pushMetrics } from './metrics.ts';

/** What a socket is sent: its view, or a lighter stream once degraded. */
export type Mode = 'ordered' | 'sampled' | 'tallies';
const MODES: readonly Mode[] = ['ordered', 'sampled', 'tallies'];
const PROJECTIONS = ['feed', 'sampled', 'tallies', 'state', 'gifts'] as const;

/** Items a snapshot shows. */
export const SNAPSHOT_ITEMS = 200;
/** Events held for one pending socket before it is given a fresh snapshot instead. */
export const MAX_PENDING_EVENTS = 20_000;

/** Can `userId` see this item? Shadow comments are shown to their author only. */
export function visibleTo(item: FeedItem, userId: string | null): boolean {
  return item.kind !== 'comment' || item.shadow !== true || item.userId === userId;
}

/** The snapshot as `userId` sees it: others' shadow comments left out, the newest SNAPSHOT_ITEMS items. */
export function snapshotFor(base: SnapshotMessage, userId: string | null): SnapshotMessage {
  const items = base.items.some((i) => i.kind === 'comment' && i.shadow) ? base.items.filter((i) => visibleTo(i, userId)) : base.items;
  return { ...base, items: items.length > SNAPSHOT_ITEMS ? items.slice(-SNAPSHOT_ITEMS) : items };
}

/**
 * A snapshot as read from Redis: `msg.items` holds every item read (all
 * users' shadow comments included; `snapshotFor` personalizes), `floor` the
 * highest item offset read (batch items at or below it are in the snapshot).
 */
export interface SnapshotBase {
  msg: SnapshotMessage;
  floor: number;
}
export type SnapshotSource = (room: string, view: View, reason?: SnapshotMessage['reason']) => Promise<SnapshotBase>;

interface Buffered {
  ev: PushEvent;
  /** Offset of the item (comment/deletion); -1 for cumulative events (tally, pin, settings, rate). */
  offset: number;
  /** Set for a shadow comment: only this user's sockets get it. */
  forUser?: string;
}

interface HeldBatch {
  offset: number;
  items: Buffered[];
}

export interface HubClient {
  readonly ws: WebSocket;
  /** The socket's wire format (its subprotocol): every frame to it is encoded so. */
  readonly wire: Wire;
  readonly room: string;
  readonly view: View;
  readonly userId: string | null;
  mode: Mode;
  /** Where it is in its life (socket-state.ts): joining, live, resyncing, closing, removed. */
  state: SocketState;
  /** Batches held for it while its snapshot is read (joining, resyncing); empty once live. */
  pending: HeldBatch[];
  pendingEvents: number;
  overflow: boolean;
  /** Items at or below this offset are already with the client (per-socket filtering until the stream passes it). */
  floor: number | undefined;
  /** The position offset last told to the client: positions sent never go below it. */
  sentOffset: number;
  /** Per-socket serialization until the room's stream position reaches this. */
  minPos: number | undefined;
  /** A resync asked while joining: run once its first snapshot is sent. */
  resyncWanted: SnapshotMessage['reason'] | undefined;
  /** Bumped per resync asked: only the newest one sends its snapshot. */
  resyncGen: number;
  alive: boolean;
  slowSince: { sampled: number | undefined; tallies: number | undefined };
  /** Since when a degraded socket's buffer has stayed below PUSH_RECOVER_BELOW_BYTES; how often it was degraded. */
  recoveringSince: number | undefined;
  degradations: number;
}

interface Room {
  id: string;
  channel: string;
  clients: Set<HubClient>;
  byUser: Map<string, number>;
  modeCount: Record<Mode, number>;
  ready: Promise<void>;
  epoch: number;
  versions: Map<string, number>;
  /** Offset of the last notification received per feed projection: the stream position. */
  offset: { feed: number; sampled: number };
  buf: Record<Mode, Buffered[]>;
  timer: NodeJS.Timeout | undefined;
  /** Deltas per second reaching the room's sockets (moving average over flushes): sets the batch interval. */
  rate: number;
  lastFlushAt: number;
  viewers: number | undefined;
  uniqueViewers: number | undefined;
  resyncs: Promise<void>;
  gone: boolean;
  /** The ordered view's snapshot kept current in memory (window.ts), once one was read. */
  window: RoomWindow | undefined;
  /** Bumped when the window is dropped: a read begun before it does not start one. */
  windowGen: number;
  /** Snapshot reads of the room in flight, and the notifications since the first began (applied to the window a read starts). */
  reads: number;
  journal: { projection: string; deltas: Delta[] }[] | undefined;
  journalOverflow: boolean;
  /** Long polls waiting for the room's next feed notification (they keep the room subscribed, as sockets do). */
  watchers: Set<Watcher>;
  /** Fires when the pin this gateway last saw pushed expires (its untilMs): the pin's end is pushed then. */
  pinTimer?: NodeJS.Timeout;
}

interface Watcher {
  /** A feed notification arrived since the last `next`. */
  dirty: boolean;
  wake: (() => void) | undefined;
}

/** A long poll's hold on a room: `next(ms)` resolves true at the room's next feed notification (or at once if one came since the last call), false after `ms`. */
export interface RoomWatch {
  next(ms: number): Promise<boolean>;
  close(): void;
}

/**
 * The batch interval of a room: `minMs` while it is quiet (the first comment
 * after a pause goes out within it), stretching with the rate (rate ÷ 10 ms:
 * 10 ms at 100 deltas/s, 30 ms at 300/s) up to `maxMs`, which bounds the
 * frames per second every socket of a hot room is written.
 */
export function batchInterval(rate: number, minMs: number, maxMs: number): number {
  return Math.round(Math.min(maxMs, Math.max(minMs, rate / 10)));
}

/**
 * A tally event carries the room's totals and its newest second's counts,
 * both as they are now: of several in one batch, only the last of each
 * second says anything the client needs (a busy room's reactions flush many
 * times per batch interval).
 */
export function coalesceTallies<T extends { ev: PushEvent }>(list: T[]): T[] {
  let tallies = 0;
  for (const b of list) if (b.ev.t === 'tally') tallies++;
  if (tallies < 2) return list;
  const lastOfSecond = new Map<number, T>();
  for (const b of list) if (b.ev.t === 'tally') lastOfSecond.set(b.ev.second, b);
  const keep = new Set(lastOfSecond.values());
  return list.filter((b) => b.ev.t !== 'tally' || keep.has(b));
}

/** Notifications journaled while reads are in flight before the window gives up (a read that slow reads again next time). */
const MAX_JOURNAL = 10_000;

export interface HubOptions {
  snapshots: SnapshotSource;
  presence?: Presence;
  log?: FastifyBaseLogger;
  /** Told the projection version of every notification (the write path's version cache, gateway/versions.ts). */
  onVersion?: (projection: string, version: number) => void;
}

export interface HubStats {
  rooms: number;
  sockets: number;
  byRoom: Record<string, { sockets: number; modes: Record<Mode, number>; offset: { feed: number; sampled: number }; epoch: number }>;
}

const messageType = (m: ServerMessage) => m.type;

export class RoomHub {
  private readonly rooms = new Map<string, Room>();
  private readonly byChannel = new Map<string, Room>();
  /** Every socket of each signed-in user, across rooms: finding or closing a user's sockets costs O(their sockets). */
  private readonly userSockets = new Map<string, Set<HubClient>>();
  private readonly userListeners: ((userId: string) => void)[] = [];
  private readonly heartbeat: NodeJS.Timeout;
  private closed = false;
  private readonly onSMessage = (channel: string, message: string) => this.onMessage(channel, message);
  /** Whether the subscriber has been ready before: a later `ready` is a reconnect. */
  private subscriberWasReady: boolean;
  private readonly onSubscriberReady = () => {
    if (!this.subscriberWasReady) {
      this.subscriberWasReady = true;
      return;
    }
    void this.resubscribe();
  };

  constructor(
    private readonly deps: GatewayDeps,
    private readonly o: HubOptions,
  ) {
    deps.subscriber.on('smessage', this.onSMessage);
    this.subscriberWasReady = deps.subscriber.status === 'ready';
    deps.subscriber.on('ready', this.onSubscriberReady);
    o.presence?.onUpdate((room, count, unique) => this.onViewers(room, count, unique));
    this.heartbeat = setInterval(() => this.beat(), deps.cfg.push.heartbeatSec * 1000);
    this.heartbeat.unref();
  }

  // ---------------------------------------------------------------- sockets

  /**
   * Registers a socket, pending (batches held for it), once the room's
   * subscription is active: everything applied from now on reaches it.
   */
  async add(ws: WebSocket, roomId: string, view: View, userId: string | null): Promise<HubClient> {
    if (this.closed) throw new AppError('ERR_SHUTTING_DOWN', 'the push hub is closed');
    let room = this.rooms.get(roomId);
    if (!room) room = this.openRoom(roomId);
    const c: HubClient = {
      ws,
      wire: wireOf(ws.protocol),
      room: roomId,
      view,
      userId,
      mode: view,
      state: 'joining',
      pending: [],
      pendingEvents: 0,
      overflow: false,
      floor: undefined,
      sentOffset: -1,
      minPos: undefined,
      resyncWanted: undefined,
      resyncGen: 0,
      alive: true,
      slowSince: { sampled: undefined, tallies: undefined },
      recoveringSince: undefined,
      degradations: 0,
    };
    room.clients.add(c);
    room.modeCount[c.mode]++;
    if (userId !== null) {
      room.byUser.set(userId, (room.byUser.get(userId) ?? 0) + 1);
      let mine = this.userSockets.get(userId);
      if (!mine) this.userSockets.set(userId, (mine = new Set()));
      mine.add(c);
      this.userChanged(userId);
    }
    pushMetrics.socketsOpen.inc();
    ws.on('pong', () => (c.alive = true));
    try {
      await room.ready;
    } catch (err) {
      this.remove(c);
      throw err;
    }
    return c;
  }

  /**
   * The snapshot (or snapshot + catch-up) was sent: held batches go out minus
   * items at or below `floor`, and the socket joins the live stream.
   * `position` is what the client was told; later positions never go below it.
   */
  release(c: HubClient, floor: number, position: Position): void {
    const room = this.rooms.get(c.room);
    if (!room || !holdsBatches(c.state)) return;
    const held = c.pending;
    c.pending = [];
    c.pendingEvents = 0;
    c.state = transition(c.state, 'sent')!;
    if (position.epoch > room.epoch) room.epoch = position.epoch;
    c.sentOffset = Math.max(c.sentOffset, position.offset);
    if (c.overflow || c.resyncWanted) {
      const reason = c.resyncWanted ?? 'unrecoverable';
      c.overflow = false;
      c.resyncWanted = undefined;
      this.resync(room, [c], reason);
      return;
    }
    for (const b of held) {
      const events = b.items.filter((x) => !(x.offset >= 0 && x.offset <= floor)).map((x) => x.ev);
      if (events.length === 0) continue;
      this.send(c, this.batchMessage(room, Math.max(b.offset, c.sentOffset), events));
    }
    c.floor = floor;
    c.minPos = c.sentOffset;
  }

  remove(c: HubClient): void {
    const next = transition(c.state, 'remove');
    if (!next) return; // removed already
    c.state = next;
    pushMetrics.socketsOpen.dec();
    if (c.userId !== null) {
      const mine = this.userSockets.get(c.userId);
      if (mine?.delete(c)) {
        if (mine.size === 0) this.userSockets.delete(c.userId);
        this.userChanged(c.userId);
      }
    }
    const room = this.rooms.get(c.room);
    if (!room || !room.clients.delete(c)) return;
    room.modeCount[c.mode]--;
    if (c.userId !== null) {
      const n = (room.byUser.get(c.userId) ?? 1) - 1;
      if (n > 0) room.byUser.set(c.userId, n);
      else room.byUser.delete(c.userId);
    }
    if (room.clients.size === 0 && room.watchers.size === 0) this.closeRoom(room);
  }

  /**
   * Holds the room subscribed for a long poll (woken by the room's
   * notifications instead of reading Redis again and again). Resolves once
   * the subscription is active: a notification after that is never missed.
   */
  async watch(roomId: string): Promise<RoomWatch> {
    if (this.closed) throw new AppError('ERR_SHUTTING_DOWN', 'the push hub is closed');
    const room = this.rooms.get(roomId) ?? this.openRoom(roomId);
    const w: Watcher = { dirty: false, wake: undefined };
    room.watchers.add(w);
    const close = () => {
      if (!room.watchers.delete(w)) return;
      w.wake?.();
      if (room.clients.size === 0 && room.watchers.size === 0 && this.rooms.get(room.id) === room) this.closeRoom(room);
    };
    try {
      await room.ready;
    } catch (err) {
      close();
      throw err;
    }
    return {
      close,
      next: (ms) => {
        if (w.dirty) {
          w.dirty = false;
          return Promise.resolve(true);
        }
        if (!room.watchers.has(w) || room.gone) return Promise.resolve(false);
        return new Promise<boolean>((resolve) => {
          const t = setTimeout(() => {
            w.wake = undefined;
            resolve(false);
          }, Math.max(0, ms));
          w.wake = () => {
            clearTimeout(t);
            w.wake = undefined;
            w.dirty = false;
            resolve(true);
          };
        });
      },
    };
  }

  /** The room's window in memory (the ordered view), if this gateway keeps one: polls are answered from it. */
  windowOf(roomId: string): RoomWindow | undefined {
    const room = this.rooms.get(roomId);
    return room?.window && room.window.msg.position.epoch === room.epoch ? room.window : undefined;
  }

  /** Serializes and writes one message to one socket. */
  send(c: HubClient, msg: ServerMessage): void {
    if ('position' in msg) c.sentOffset = Math.max(c.sentOffset, msg.position.offset);
    this.write(c, new Frame(msg), messageType(msg));
  }

  /** Closes every socket with 1001 and drops every subscription (app shutdown). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    this.deps.subscriber.off('smessage', this.onSMessage);
    this.deps.subscriber.off('ready', this.onSubscriberReady);
    const channels: string[] = [];
    for (const room of this.rooms.values()) {
      for (const c of room.clients) {
        this.closing(c);
        if (c.ws.readyState === c.ws.OPEN || c.ws.readyState === c.ws.CONNECTING) c.ws.close(CLOSE.shuttingDown, 'server shutting down');
      }
      if (room.timer) clearTimeout(room.timer);
      if (room.pinTimer) clearTimeout(room.pinTimer);
      room.gone = true;
      channels.push(room.channel);
    }
    this.rooms.clear();
    this.byChannel.clear();
    pushMetrics.roomsSubscribed.set(0);
    // One channel per call: in a cluster, channels of different rooms live on different shards.
    await Promise.all(channels.map((ch) => Promise.resolve(this.deps.subscriber.sunsubscribe(ch)).catch(() => undefined)));
  }

  stats(): HubStats {
    const byRoom: HubStats['byRoom'] = {};
    let sockets = 0;
    for (const r of this.rooms.values()) {
      sockets += r.clients.size;
      byRoom[r.id] = { sockets: r.clients.size, modes: { ...r.modeCount }, offset: { ...r.offset }, epoch: r.epoch };
    }
    return { rooms: this.rooms.size, sockets, byRoom };
  }

  // ---------------------------------------------------------------- users

  /** `listener` runs whenever a signed-in user's set of sockets on this gateway changes (the connection registry). */
  onUserSockets(listener: (userId: string) => void): void {
    this.userListeners.push(listener);
  }

  /** Signed-in users with at least one socket here. */
  users(): IterableIterator<string> {
    return this.userSockets.keys();
  }

  /** The rooms where the user has sockets on this gateway, with how many. */
  roomsOf(userId: string): Record<string, number> {
    const rooms: Record<string, number> = {};
    for (const c of this.userSockets.get(userId) ?? []) rooms[c.room] = (rooms[c.room] ?? 0) + 1;
    return rooms;
  }

  /**
   * Closes the user's sockets (only those in `room`, when given) with an
   * application close code; returns how many were closed. Each leaves the
   * hub through its 'close' event, as any socket does.
   */
  closeUser(userId: string, code: number, reason: string, room?: string): number {
    let n = 0;
    for (const c of [...(this.userSockets.get(userId) ?? [])]) {
      if (isGone(c.state) || (room !== undefined && c.room !== room)) continue;
      this.closing(c);
      n++;
      pushMetrics.forcedCloses.inc({ code: String(code) });
      if (c.ws.readyState === c.ws.OPEN || c.ws.readyState === c.ws.CONNECTING) c.ws.close(code, reason);
    }
    return n;
  }

  private userChanged(userId: string): void {
    for (const l of this.userListeners) l(userId);
  }

  /** The hub's record of the sockets of a room (tests and ops). */
  clientsOf(room: string): HubClient[] {
    return [...(this.rooms.get(room)?.clients ?? [])];
  }

  // ---------------------------------------------------------------- rooms

  private openRoom(id: string): Room {
    const { redis, naming, subscriber } = this.deps;
    const room: Room = {
      id,
      channel: notifyChannel(naming, id),
      clients: new Set(),
      byUser: new Map(),
      modeCount: { ordered: 0, sampled: 0, tallies: 0 },
      ready: Promise.resolve(),
      epoch: 0,
      versions: new Map(),
      offset: { feed: -1, sampled: -1 },
      buf: { ordered: [], sampled: [], tallies: [] },
      timer: undefined,
      rate: 0,
      lastFlushAt: 0,
      viewers: undefined,
      uniqueViewers: undefined,
      resyncs: Promise.resolve(),
      gone: false,
      window: undefined,
      windowGen: 0,
      reads: 0,
      journal: undefined,
      journalOverflow: false,
      watchers: new Set(),
    };
    this.rooms.set(id, room);
    this.byChannel.set(room.channel, room);
    pushMetrics.roomsSubscribed.inc();
    room.ready = (async () => {
      // Versions and epoch first, then subscribe: a switch in between shows up as a version mismatch (a resync), never as silence.
      const [epoch, ...versions] = await Promise.all([roomEpoch(redis, naming, id), ...PROJECTIONS.map((p) => activeVersion(redis, naming, p))]);
      room.epoch = Math.max(room.epoch, epoch);
      PROJECTIONS.forEach((p, i) => {
        if (!room.versions.has(p)) room.versions.set(p, versions[i]!);
      });
      if (room.gone) return; // everyone left meanwhile: never subscribe
      await subscriber.ssubscribe(room.channel);
    })();
    room.ready.catch((err: unknown) => {
      this.o.log?.warn({ err, room: id }, 'push: subscribing to the room failed');
    });
    return room;
  }

  private closeRoom(room: Room): void {
    room.gone = true;
    if (room.timer) clearTimeout(room.timer);
    if (room.pinTimer) clearTimeout(room.pinTimer);
    room.timer = undefined;
    if (this.rooms.get(room.id) === room) this.rooms.delete(room.id);
    if (this.byChannel.get(room.channel) === room) this.byChannel.delete(room.channel);
    pushMetrics.roomsSubscribed.dec();
    // Commands on the subscriber connection run in order: an SSUBSCRIBE of a
    // room reopened later is sent after this (it first reads versions).
    void room.ready
      .then(() => (this.rooms.get(room.id) ? undefined : this.deps.subscriber.sunsubscribe(room.channel)))
      .catch(() => undefined);
  }

  // ---------------------------------------------------------------- notifications

  private onMessage(channel: string, message: string): void {
    const room = this.byChannel.get(channel);
    if (!room || room.gone) return;
    let n: Notification & { resync?: boolean };
    try {
      n = JSON.parse(message) as Notification & { resync?: boolean };
    } catch {
      return;
    }
    this.o.onVersion?.(n.projection, n.version);
    // Long polls read again on any news of the feeds (a resync included: their next read sees the new epoch).
    if (room.watchers.size > 0 && (n.projection === 'feed' || n.projection === 'sampled' || n.resync === true)) {
      for (const w of room.watchers) {
        w.dirty = true;
        w.wake?.();
      }
    }
    const known = room.versions.get(n.projection);
    room.versions.set(n.projection, n.version);
    if (n.resync === true || (known !== undefined && known !== n.version)) {
      // The fresh snapshot is read after this message was published: it covers these deltas.
      this.resync(room, [...room.clients], 'epoch');
      return;
    }
    this.follow(room, n.projection, n.deltas);
    const b = room.buf;
    const has = room.modeCount;
    switch (n.projection) {
      case 'feed':
      case 'sampled': {
        const mode: Mode = n.projection === 'feed' ? 'ordered' : 'sampled';
        if (n.offset > room.offset[n.projection]) room.offset[n.projection] = n.offset;
        if (has[mode] === 0) break;
        for (const d of n.deltas) {
          if (d.t === 'comment') {
            const forUser = d.entry.shadow === true ? d.entry.userId : undefined;
            if (forUser !== undefined && !room.byUser.has(forUser)) continue; // its author is not here
            b[mode].push(forUser === undefined ? { ev: d, offset: d.entry.offset } : { ev: d, offset: d.entry.offset, forUser });
          } else if (d.t === 'delete') b[mode].push({ ev: d, offset: d.offset });
          else if (d.t === 'rate' && mode === 'sampled') b[mode].push({ ev: d, offset: -1 });
        }
        break;
      }
      case 'tallies':
      case 'state':
      case 'gifts':
        for (const d of n.deltas) {
          if (d.t === 'mute') this.onMute(room, d);
          if (d.t === 'pin') this.watchPin(room, d.pin);
          // Gifts are cumulative like tallies (each carries the whole leaderboard): every stream gets them.
          if (d.t !== 'tally' && d.t !== 'pin' && d.t !== 'settings' && d.t !== 'gift') continue; // 'mute' is not for clients
          const item: Buffered = { ev: d, offset: -1 };
          for (const m of MODES) if (has[m] > 0) b[m].push(item);
        }
        break;
      default:
        return;
    }
    if (!room.timer && (b.ordered.length > 0 || b.sampled.length > 0 || b.tallies.length > 0)) {
      room.timer = setTimeout(() => this.flush(room), batchInterval(room.rate, this.deps.cfg.push.batchMs, this.deps.cfg.push.batchMaxMs));
    }
  }

  /**
   * A pin with a duration ends on every viewer's screen when it expires: no
   * event marks that moment in the log (the projection keeps the pin with its
   * untilMs; readers compare it with their clock), so the gateway pushes the
   * pin's end to its sockets then. Each gateway does it for its own sockets;
   * the SDK also hides it on its own clock.
   */
  private watchPin(room: Room, pin: { untilMs: number | null } | null): void {
    if (room.pinTimer) clearTimeout(room.pinTimer);
    room.pinTimer = undefined;
    if (!pin || pin.untilMs === null) return;
    const until = pin.untilMs;
    const check = (): void => {
      room.pinTimer = undefined;
      if (room.gone) return;
      const left = until - Date.now();
      if (left > 0) {
        room.pinTimer = setTimeout(check, Math.min(left, 2 ** 31 - 1));
        room.pinTimer.unref();
        return;
      }
      const item: Buffered = { ev: { t: 'pin', pin: null }, offset: -1 };
      for (const m of MODES) if (room.modeCount[m] > 0) room.buf[m].push(item);
      if (!room.timer && (room.buf.ordered.length > 0 || room.buf.sampled.length > 0 || room.buf.tallies.length > 0)) room.timer = setTimeout(() => this.flush(room), 0);
    };
    // An expired pin arriving (a processor catching up) is ended right after it is pushed.
    room.pinTimer = setTimeout(check, Math.max(0, Math.min(until - Date.now(), 2 ** 31 - 1)));
    room.pinTimer.unref();
  }

  private flush(room: Room): void {
    room.timer = undefined;
    if (room.gone) return;
    const now = Date.now();
    // The room's rate, from what this flush carries over the time since the last one (a quiet spell resets it).
    const since = now - room.lastFlushAt;
    const carried = room.buf.ordered.length + room.buf.sampled.length;
    const sample = since > 0 ? (carried * 1000) / since : room.rate;
    room.rate = since > 2000 ? sample : 0.7 * room.rate + 0.3 * sample;
    room.lastFlushAt = now;
    for (const c of room.clients) if (c.state === 'live') this.checkSlow(room, c, now);
    for (const mode of MODES) {
      const list = room.buf[mode];
      if (list.length === 0) continue;
      room.buf[mode] = [];
      this.distribute(room, mode, coalesceTallies(list));
    }
  }

  private streamOffset(room: Room, mode: Mode): number {
    return mode === 'sampled' ? room.offset.sampled : room.offset.feed;
  }

  private batchMessage(room: Room, offset: number, events: PushEvent[]): BatchMessage {
    return { type: 'batch', room: room.id, position: { offset, epoch: room.epoch }, events };
  }

  /** One flush of one stream: serialized once per distinct position, written to every socket of the stream. */
  private distribute(room: Room, mode: Mode, list: Buffered[]): void {
    const streamAt = this.streamOffset(room, mode);
    const shared = list.filter((b) => b.forUser === undefined);
    const hasPrivate = shared.length !== list.length;
    const sharedEvents = shared.map((b) => b.ev);
    // Normally one entry (the stream position); sockets that joined at a later position than the stream has reached get their own.
    const bytesAt = new Map<number, Frame>();
    const sharedBytes = (offset: number) => {
      let bytes = bytesAt.get(offset);
      if (!bytes) {
        bytes = new Frame(this.batchMessage(room, offset, sharedEvents));
        bytesAt.set(offset, bytes);
        pushMetrics.batchesSent.inc({ mode });
      }
      return bytes;
    };
    const privateBytes = new Map<string, Frame | null>();
    for (const c of room.clients) {
      if (c.mode !== mode || isGone(c.state)) continue;
      if (holdsBatches(c.state)) {
        this.hold(c, { offset: streamAt, items: hasPrivate ? list.filter((b) => b.forUser === undefined || b.forUser === c.userId) : list });
        continue;
      }
      if (c.minPos !== undefined && streamAt >= c.minPos) c.minPos = undefined;
      const offset = Math.max(streamAt, c.minPos ?? -1);
      if (c.floor !== undefined) {
        // Just released: items at or below the floor came with its snapshot/catch-up.
        const floor = c.floor;
        if (streamAt > floor || mode === 'tallies') c.floor = undefined;
        const mine = list.filter((b) => (b.forUser === undefined || b.forUser === c.userId) && !(b.offset >= 0 && b.offset <= floor));
        if (mine.length === shared.length && !mine.some((b) => b.forUser !== undefined)) {
          if (shared.length > 0) this.write(c, sharedBytes(offset), 'batch');
        } else if (mine.length > 0) this.send(c, this.batchMessage(room, offset, mine.map((b) => b.ev)));
        c.sentOffset = Math.max(c.sentOffset, offset);
        continue;
      }
      if (shared.length > 0) {
        this.write(c, sharedBytes(offset), 'batch');
        c.sentOffset = Math.max(c.sentOffset, offset);
      }
      if (hasPrivate && c.userId !== null) {
        let own = privateBytes.get(c.userId);
        if (own === undefined) {
          const events = list.filter((b) => b.forUser === c.userId).map((b) => b.ev);
          own = events.length > 0 ? new Frame(this.batchMessage(room, offset, events)) : null;
          privateBytes.set(c.userId, own);
        }
        if (own) this.write(c, own, 'batch');
      }
    }
  }

  private hold(c: HubClient, batch: HeldBatch): void {
    if (!holdsBatches(c.state) || c.overflow || batch.items.length === 0) return;
    c.pendingEvents += batch.items.length;
    if (c.pendingEvents > MAX_PENDING_EVENTS) {
      // Bounded: past this, the socket gets a fresh snapshot when released instead.
      c.overflow = true;
      c.pending = [];
      c.pendingEvents = 0;
      return;
    }
    c.pending.push(batch);
  }

  // ---------------------------------------------------------------- snapshots from memory

  /**
   * A socket's snapshot of the room. The ordered view is answered from the
   * room's window (window.ts) when there is one; otherwise `read` reads
   * Redis, and the read starts the window: the notifications that arrived
   * while it was in flight are applied to it (journaled), those it already
   * covers skipped by offset. A connect storm costs one read.
   */
  async snapshot<R extends WindowRead>(roomId: string, view: View, read: () => Promise<R>): Promise<R | WindowRead> {
    const room = this.rooms.get(roomId);
    if (!room || view !== 'ordered' || !this.deps.cfg.push.memorySnapshots) {
      pushMetrics.snapshotReads.inc({ source: 'redis' });
      return read();
    }
    const w = room.window;
    if (w && w.msg.position.epoch === room.epoch) {
      pushMetrics.snapshotReads.inc({ source: 'memory' });
      const r = readWindow(w, this.deps.now(), this.o.presence?.count(roomId) ?? w.msg.viewers);
      if (this.o.presence) r.msg.uniqueViewers = this.o.presence.unique(roomId);
      return r;
    }
    if (w) this.dropWindow(room); // an epoch newer than the window's was seen
    const gen = room.windowGen;
    room.reads++;
    room.journal ??= [];
    try {
      const r = await read();
      pushMetrics.snapshotReads.inc({ source: 'redis' });
      if (gen === room.windowGen && !room.window && !room.gone && !room.journalOverflow && r.msg.position.epoch >= room.epoch) {
        const fresh = startWindow('ordered', r);
        const max = this.deps.cfg.pipelines.feedMaxItems;
        if ((room.journal ?? []).every((n) => applyNotification(fresh, n.projection, n.deltas, max))) room.window = fresh;
      }
      return r;
    } finally {
      if (--room.reads === 0) {
        room.journal = undefined;
        room.journalOverflow = false;
      }
    }
  }

  /** A notification reaches the room's window (and the journal of the reads in flight). */
  private follow(room: Room, projection: string, deltas: Delta[]): void {
    if (room.journal && !room.journalOverflow) {
      room.journal.push({ projection, deltas });
      if (room.journal.length > MAX_JOURNAL) {
        room.journalOverflow = true;
        room.journal = [];
      }
    }
    if (room.window && !applyNotification(room.window, projection, deltas, this.deps.cfg.pipelines.feedMaxItems)) this.dropWindow(room);
  }

  private dropWindow(room: Room): void {
    room.window = undefined;
    room.windowGen++;
  }

  // ---------------------------------------------------------------- resync

  /**
   * The subscriber's connection to Redis was cut and is back: whatever was
   * published meanwhile never reached this gateway (pub/sub keeps nothing),
   * so every room is subscribed again (confirmed by Redis, whatever ioredis
   * re-sends on its own) and each live socket gets a fresh snapshot.
   */
  private async resubscribe(): Promise<void> {
    const rooms = [...this.rooms.values()];
    this.o.log?.warn({ rooms: rooms.length }, 'push: the Redis subscriber reconnected; resubscribing and resyncing every live socket');
    for (const room of rooms) {
      if (this.closed || this.rooms.get(room.id) !== room) continue;
      try {
        await this.deps.subscriber.ssubscribe(room.channel);
      } catch (err) {
        this.o.log?.warn({ err, room: room.id }, 'push: resubscribing failed; the next reconnect tries again');
        continue;
      }
      this.resync(room, [...room.clients], 'resubscribed');
    }
  }

  /** Fresh snapshots for `clients`, read once per view, serialized once per distinct content. */
  private resync(room: Room, clients: HubClient[], reason: NonNullable<SnapshotMessage['reason']>): void {
    // A new epoch or version, or a lost subscription, also ends the room's window (one socket's overflow or recovery does not).
    if (reason === 'epoch' || reason === 'resubscribed') this.dropWindow(room);
    const targets = new Map<HubClient, number>();
    for (const c of clients) {
      if (isGone(c.state)) continue;
      if (c.state === 'joining') {
        c.resyncWanted = reason; // its first snapshot is being read: resync right after it
        continue;
      }
      c.state = transition(c.state, 'resync')!;
      c.pending = [];
      c.pendingEvents = 0;
      c.overflow = false;
      c.floor = undefined;
      c.minPos = undefined;
      c.sentOffset = -1; // the client drops what it has: the fresh snapshot's position is its position
      targets.set(c, ++c.resyncGen);
    }
    if (targets.size === 0) return;
    const job = async () => {
      const views = new Map<View, HubClient[]>();
      for (const [c, gen] of targets) {
        if (isGone(c.state) || !room.clients.has(c) || c.resyncGen !== gen) continue;
        const list = views.get(c.view);
        if (list) list.push(c);
        else views.set(c.view, [c]);
      }
      for (const [view, list] of views) {
        let base: SnapshotBase;
        try {
          const read = await this.snapshot(room.id, view, () => this.o.snapshots(room.id, view, reason));
          base = read.msg.reason === reason ? read : { ...read, msg: { ...read.msg, reason } };
        } catch (err) {
          this.o.log?.warn({ err, room: room.id }, 'push: resync snapshot failed; closing the sockets');
          for (const c of list) {
            if (isGone(c.state)) continue;
            this.closing(c);
            c.ws.close(1011, 'resync failed');
          }
          continue;
        }
        if (base.msg.position.epoch > room.epoch) room.epoch = base.msg.position.epoch;
        const bytes = new Map<string, Frame>();
        const personal = base.msg.items.some((i) => i.kind === 'comment' && i.shadow);
        for (const c of list) {
          if (c.state !== 'resyncing' || !room.clients.has(c) || c.resyncGen !== targets.get(c)) continue;
          const key = personal && c.userId !== null && base.msg.items.some((i) => i.kind === 'comment' && i.shadow && i.userId === c.userId) ? `u:${c.userId}` : '';
          let b = bytes.get(key);
          if (!b) bytes.set(key, (b = new Frame(snapshotFor(base.msg, c.userId))));
          this.write(c, b, 'snapshot');
          pushMetrics.resyncs.inc({ reason });
          this.release(c, base.floor, base.msg.position);
        }
      }
    };
    room.resyncs = room.resyncs.then(job).catch((err: unknown) => this.o.log?.error({ err, room: room.id }, 'push: resync failed'));
  }

  // ---------------------------------------------------------------- slow consumers, heartbeat, viewers

  /** The hub closes it (shutdown, a slow or dead peer, a user's sockets closed on purpose): nothing more is written to it. */
  private closing(c: HubClient): void {
    c.state = transition(c.state, 'close') ?? c.state;
  }

  private checkSlow(room: Room, c: HubClient, now: number): void {
    const p = this.deps.cfg.push;
    const buffered = c.ws.bufferedAmount;
    if (buffered > p.closeAboveBytes) {
      this.closing(c);
      pushMetrics.slowCloses.inc();
      this.o.log?.info({ room: room.id, buffered }, 'push: closing a slow consumer');
      c.ws.close(CLOSE.slowConsumer, 'slow consumer');
      return;
    }
    if (buffered > p.talliesOnlyAboveBytes) {
      c.slowSince.tallies ??= now;
      if (c.mode !== 'tallies' && now - c.slowSince.tallies >= p.slowForMs) this.degrade(room, c, 'tallies');
    } else c.slowSince.tallies = undefined;
    if (buffered > p.sampledAboveBytes) {
      c.slowSince.sampled ??= now;
      if (c.mode === 'ordered' && now - c.slowSince.sampled >= p.slowForMs) this.degrade(room, c, 'sampled');
    } else c.slowSince.sampled = undefined;
    // Caught up: back to its view. The wait doubles with each degradation, so
    // a client that cannot keep up does not swing between the two every few seconds.
    if (c.mode !== c.view && buffered <= p.recoverBelowBytes) {
      c.recoveringSince ??= now;
      if (now - c.recoveringSince >= p.recoverForMs * 2 ** Math.min(Math.max(0, c.degradations - 1), 5)) this.upgrade(room, c);
    } else c.recoveringSince = undefined;
  }

  private upgrade(room: Room, c: HubClient): void {
    room.modeCount[c.mode]--;
    room.modeCount[c.view]++;
    c.mode = c.view;
    c.recoveringSince = undefined;
    c.slowSince = { sampled: undefined, tallies: undefined };
    pushMetrics.upgrades.inc({ mode: c.view });
    // What it missed while degraded comes with a fresh snapshot (from the room's window when there is one).
    this.resync(room, [c], 'recovered');
  }

  private degrade(room: Room, c: HubClient, mode: 'sampled' | 'tallies'): void {
    room.modeCount[c.mode]--;
    room.modeCount[mode]++;
    if (c.mode === c.view) c.degradations++; // one more episode (sampled, then tallies, is one)
    c.mode = mode;
    c.recoveringSince = undefined;
    // Items it already has stay out of the new stream; positions never go back.
    c.floor = c.sentOffset;
    c.minPos = c.sentOffset;
    pushMetrics.degradations.inc({ mode });
    const msg: DegradedMessage = { type: 'degraded', room: room.id, mode };
    this.send(c, msg);
  }

  private beat(): void {
    for (const room of this.rooms.values()) {
      for (const c of room.clients) {
        if (!c.alive) {
          pushMetrics.reaped.inc();
          this.closing(c);
          c.ws.terminate(); // 'close' follows; the plugin removes it
          continue;
        }
        c.alive = false;
        try {
          c.ws.ping();
        } catch {
          // not open (yet/anymore)
        }
      }
    }
  }

  /**
   * A visible mute ends the muted user's sockets in the room at once, with a
   * code that says why (every gateway serving the room gets the same
   * notification). A shadow mute must stay invisible to its user: nothing
   * happens. A mute that already ended (a redelivered or replayed event) is
   * ignored.
   */
  private onMute(room: Room, d: Extract<Delta, { t: 'mute' }>): void {
    if (d.kind !== 'visible' || !room.byUser.has(d.userId)) return;
    if (d.untilMs !== null && d.untilMs <= this.deps.now()) return;
    const n = this.closeUser(d.userId, CLOSE.forbidden, 'muted in this room', room.id);
    if (n > 0) this.o.log?.info({ room: room.id, user: d.userId, sockets: n }, 'push: closed a visibly muted user\'s sockets');
  }

  private onViewers(roomId: string, count: number, unique: number): void {
    const room = this.rooms.get(roomId);
    if (!room || room.gone || (room.viewers === count && room.uniqueViewers === unique)) return;
    room.viewers = count;
    room.uniqueViewers = unique;
    const msg: ViewersMessage = { type: 'viewers', room: roomId, count, uniqueViewers: unique };
    const frame = new Frame(msg);
    for (const c of room.clients) if (c.state === 'live') this.write(c, frame, 'viewers');
  }

  private write(c: HubClient, frame: Frame, type: string): void {
    if (c.ws.readyState !== c.ws.OPEN) return;
    const bytes = frame.bytes(c.wire);
    c.ws.send(bytes, { binary: c.wire === 'msgpack' });
    pushMetrics.framesSent.inc({ type });
    pushMetrics.bytesSent.inc(bytes.length);
  }
}
