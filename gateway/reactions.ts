/**
 * Reactions, aggregated: the gateway sums the reactions it accepts per room
 * and emoji, and every REACTIONS_FLUSH_MS writes each sum as ONE
 * `ReactionAdded{count}` event (actor `reactions`/system: a sum of many
 * users' reactions). 100,000 reactions/s into a few rooms become a few
 * events per second in the log, the processors and the archive.
 *
 * Exactness: a reaction is acknowledged (HTTP 202, an ack frame) only once
 * the event that holds it is durable in Kafka (acks=all), with that event's
 * id and position; if the produce fails, every reaction of the event is
 * refused (503 ERR_KAFKA_UNAVAILABLE / a nack) and none is counted, since the
 * event is not in the log. So the tally of a room is the sum of the
 * acknowledged reactions. A gateway killed with reactions still in memory
 * never acknowledged them (their clients see the connection drop without an
 * answer: not counted). The one window where the two differ is from the
 * broker's append of a flush's event to its acks reaching the clients: the
 * produce round trip (acks=all; the broker has it before the gateway hears
 * so), one turn of the event loop to write the acks, and the network — a
 * few ms (tens under load) per flush interval. A kill -9 there leaves
 * reactions counted whose clients saw the connection drop unanswered, just
 * like uncounted ones. So a client must treat an unanswered write as
 * "unknown", not as refused, and not resend a reaction blindly (a
 * clientMsgId makes a retry that reaches a live gateway answer with the
 * first result, once that was stored).
 *
 * Per reaction the work is O(1): a Map lookup, an addition and a callback
 * pushed; per flush, one encode and one produce per room × emoji, one epoch
 * read per room, and one serialized ack suffix shared by all its waiters.
 */
import type { FastifyBaseLogger } from 'fastify';
import { AppError } from '../core/errors.ts';
import { roomEpoch } from '../pipelines/read.ts';
import { makeEvent, type RoomEvent } from '../schemas/events.ts';
import type { GatewayDeps } from './deps.ts';
import { asAppError } from './input.ts';
import type { Position } from './protocol.ts';
import { Counter, Histogram, Registry } from 'prom-client';

/** The actor of an aggregated reaction event: no single user. */
export const REACTIONS_ACTOR = { userId: 'reactions', role: 'system' as const };

/** Avro's `int`: a sum is flushed early rather than overflow it. */
const MAX_COUNT = 2_000_000_000;

export interface ReactionAck {
  eventId: string;
  position: Position;
  /**
   * `,"eventId":"…","position":{…}}`: the tail of an ack frame, serialized
   * once per flushed event and shared by every socket waiter.
   */
  frameTail: string;
}

/** Called once per reaction: with the ack when its event is durable, or the error that refused it. */
export type ReactionWaiter = (err: AppError | null, ack: ReactionAck | null) => void;

interface Sum {
  count: number;
  waiters: ReactionWaiter[];
}

export const reactionRegistry = new Registry();
export const reactionMetrics = {
  accepted: new Counter({ name: 'danmaku_reactions_flushed_total', help: 'Reactions (requests and frames) written in a flushed aggregate (acknowledged or refused with it).', registers: [reactionRegistry] }),
  events: new Counter({ name: 'danmaku_reaction_events_total', help: 'ReactionAdded events produced by flushes, by result.', labelNames: ['result'] as const, registers: [reactionRegistry] }),
  perEvent: new Histogram({
    name: 'danmaku_reaction_waiters_per_event',
    help: 'Reactions one flushed ReactionAdded event acknowledges (the aggregation factor).',
    buckets: [1, 2, 5, 10, 50, 100, 500, 1000, 5000, 20000, 100000],
    registers: [reactionRegistry],
  }),
};

export class ReactionAggregator {
  /** room → emoji → the open sum. Swapped for a new map at each flush. */
  private open = new Map<string, Map<string, Sum>>();
  private timer: NodeJS.Timeout | undefined;
  private readonly flushing = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly deps: GatewayDeps,
    private readonly o: { flushMs: number; log?: FastifyBaseLogger },
  ) {}

  /** Adds a reaction to its room's open sum; `done` is called once its event is durable or failed. */
  add(room: string, emoji: string, count: number, done: ReactionWaiter): void {
    if (this.closed) {
      done(new AppError('ERR_KAFKA_UNAVAILABLE', 'the gateway is shutting down; retry on another', { details: { retryAfterSec: 1 } }), null);
      return;
    }
    let byEmoji = this.open.get(room);
    if (!byEmoji) this.open.set(room, (byEmoji = new Map()));
    let sum = byEmoji.get(emoji);
    if (!sum || sum.count + count > MAX_COUNT) {
      if (sum) this.flushOne(room, emoji, sum); // practically never: an int's worth in one window
      sum = { count: 0, waiters: [] };
      byEmoji.set(emoji, sum);
    }
    sum.count += count;
    sum.waiters.push(done);
    this.timer ??= setTimeout(() => this.flush(), this.o.flushMs);
  }

  /** Writes every open sum now. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const open = this.open;
    if (open.size === 0) return;
    this.open = new Map();
    for (const [room, byEmoji] of open) {
      // One epoch read per room and flush, sent before the produce so it is back long before Kafka's ack.
      const epoch = roomEpoch(this.deps.redis, this.deps.naming, room);
      epoch.catch(() => undefined);
      for (const [emoji, sum] of byEmoji) this.produce(room, emoji, sum, epoch);
    }
  }

  private flushOne(room: string, emoji: string, sum: Sum): void {
    const epoch = roomEpoch(this.deps.redis, this.deps.naming, room);
    epoch.catch(() => undefined);
    this.produce(room, emoji, sum, epoch);
  }

  private produce(room: string, emoji: string, sum: Sum, epoch: Promise<number>): void {
    const { writer, codec } = this.deps;
    const p = (async () => {
      let offset: number;
      let event: RoomEvent;
      try {
        event = makeEvent({ roomId: room, actor: REACTIONS_ACTOR, payload: { type: 'ReactionAdded', emoji, count: sum.count } });
        const ack = await writer.send({ key: room, value: codec.encode(event), headers: { 'event-type': 'ReactionAdded', 'schema-id': String(codec.schemaId) } });
        offset = ack.position;
      } catch (err) {
        reactionMetrics.events.inc({ result: 'failed' });
        reactionMetrics.accepted.inc(sum.waiters.length);
        const e = asAppError(err);
        if (e.code === 'ERR_INTERNAL') this.o.log?.error({ err, room }, 'reactions: flush failed');
        for (const w of sum.waiters) settle(w, e, null, this.o.log);
        return;
      }
      // Durable: from here on every waiter is acknowledged, whatever else fails.
      let ep = 0;
      try {
        ep = await epoch;
      } catch (err) {
        this.o.log?.warn({ err, room }, 'reactions: reading the room epoch failed; acknowledging with epoch 0');
      }
      reactionMetrics.events.inc({ result: 'ok' });
      reactionMetrics.accepted.inc(sum.waiters.length);
      reactionMetrics.perEvent.observe(sum.waiters.length);
      const position = { offset, epoch: ep };
      const ack: ReactionAck = { eventId: event.eventId, position, frameTail: `,"eventId":"${event.eventId}","position":{"offset":${offset},"epoch":${ep}}}` };
      for (const w of sum.waiters) settle(w, null, ack, this.o.log);
    })();
    this.flushing.add(p);
    void p.finally(() => this.flushing.delete(p));
  }

  /** Flushes what is open and waits for every flush in flight (graceful stop); later reactions are refused. */
  async drain(): Promise<void> {
    this.closed = true;
    this.flush();
    while (this.flushing.size > 0) await Promise.allSettled([...this.flushing]);
  }

  /** Reactions waiting in open sums (tests, metrics). */
  get pending(): number {
    let n = 0;
    for (const byEmoji of this.open.values()) for (const s of byEmoji.values()) n += s.waiters.length;
    return n;
  }
}

function settle(w: ReactionWaiter, err: AppError | null, ack: ReactionAck | null, log?: FastifyBaseLogger): void {
  try {
    w(err, ack);
  } catch (e) {
    log?.error({ err: e }, 'reactions: a waiter threw');
  }
}
