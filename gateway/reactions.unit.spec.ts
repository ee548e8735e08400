import { describe, expect, it } from 'vitest';
import { AppError, UnavailableError } from '../core/errors.ts';
import { testConfig } from '../test/helpers.ts';
import type { GatewayDeps } from './deps.ts';
import { MemoryBuckets } from './limits.ts';
import { ReactionAggregator, type ReactionAck } from './reactions.ts';
import { ackFrame, nackFrame } from './socket-writes.ts';

interface Produced {
  key: string;
  event: { eventId: string; actor: unknown; payload: { type: string; emoji: string; count: number } };
}

/** Just what the aggregator touches: a log writer that records (or fails), a codec, and Redis for the epoch. */
function fakeDeps(o: { fail?: boolean } = {}) {
  const produced: Produced[] = [];
  let offset = 100;
  const deps = {
    cfg: testConfig(),
    naming: { keyPrefix: 't:', groupPrefix: 't.' },
    topics: { roomEvents: 'events', deadLetter: 'dlq' },
    // The room's own epoch 7, two rebuild switches: the epoch clients see is 9 (pipelines/read.ts roomEpoch).
    redis: { get: async (key: string) => (key.endsWith('switches') ? '2' : '7') },
    codec: { schemaId: 1, encode: (e: unknown) => Buffer.from(JSON.stringify(e)) },
    writer: {
      send: async (r: { key: string; value: Buffer }) => {
        if (o.fail) throw new UnavailableError('ERR_KAFKA_UNAVAILABLE', 'down');
        produced.push({ key: r.key, event: JSON.parse(r.value.toString()) as Produced['event'] });
        const at = offset++;
        return { topic: 'events', partition: 0, offset: String(at), generation: 0, position: at };
      },
    },
  } as unknown as GatewayDeps;
  return { deps, produced };
}

type Answer = { err: AppError | null; ack: ReactionAck | null };

describe('reaction aggregation', () => {
  it('given many reactions in one window, then one event per room and emoji with the sum, and every waiter acked with it', async () => {
    const { deps, produced } = fakeDeps();
    const agg = new ReactionAggregator(deps, { flushMs: 60_000 });
    const answers: Answer[] = [];
    const add = (room: string, emoji: string, count: number) => agg.add(room, emoji, count, (err, ack) => answers.push({ err, ack }));
    for (let i = 0; i < 50; i++) add('A', 'heart', 1 + (i % 3));
    for (let i = 0; i < 10; i++) add('A', 'fire', 2);
    add('B', 'heart', 5);
    expect(agg.pending).toBe(61);
    await agg.drain();
    expect(produced.map((p) => [p.key, p.event.payload.emoji, p.event.payload.count])).toEqual([
      ['A', 'heart', 99],
      ['A', 'fire', 20],
      ['B', 'heart', 5],
    ]);
    expect(produced[0]!.event.actor).toEqual({ userId: 'reactions', role: 'system' });
    expect(answers.every((a) => a.err === null)).toBe(true);
    const heart = answers.slice(0, 50).map((a) => a.ack!);
    expect(new Set(heart.map((a) => a.eventId))).toEqual(new Set([produced[0]!.event.eventId]));
    expect(heart[0]!.position).toEqual({ offset: 100, epoch: 9 });
    // The shared tail completes an ack frame.
    expect(JSON.parse(`{"type":"ack","id":"x"${heart[0]!.frameTail}`)).toEqual({ type: 'ack', id: 'x', eventId: produced[0]!.event.eventId, position: { offset: 100, epoch: 9 } });
    expect(answers[60]!.ack!.position.offset).toBe(102);
  });

  it('when the produce fails, then every reaction of the event is refused with its error, none acknowledged', async () => {
    const { deps } = fakeDeps({ fail: true });
    const agg = new ReactionAggregator(deps, { flushMs: 60_000 });
    const answers: Answer[] = [];
    for (let i = 0; i < 5; i++) agg.add('A', 'wow', 1, (err, ack) => answers.push({ err, ack }));
    await agg.drain();
    expect(answers.map((a) => [a.err?.code, a.ack])).toEqual(Array.from({ length: 5 }, () => ['ERR_KAFKA_UNAVAILABLE', null]));
  });

  it('a drained aggregator flushed what it held and refuses what comes after (the gateway is stopping)', async () => {
    const { deps, produced } = fakeDeps();
    const agg = new ReactionAggregator(deps, { flushMs: 60_000 });
    const answers: Answer[] = [];
    agg.add('A', 'clap', 3, (err, ack) => answers.push({ err, ack }));
    await agg.drain();
    agg.add('A', 'clap', 1, (err, ack) => answers.push({ err, ack }));
    expect(produced).toHaveLength(1);
    expect(answers.map((a) => a.err?.code ?? 'ack')).toEqual(['ack', 'ERR_KAFKA_UNAVAILABLE']);
  });
});

describe('in-memory reaction budget', () => {
  it('spends tokens, refuses with the wait once empty, refills at capacity per window', () => {
    const b = new MemoryBuckets();
    const spec = { capacity: 3, windowMs: 3000 };
    expect([b.take('u', spec, 0), b.take('u', spec, 0), b.take('u', spec, 0)]).toEqual([0, 0, 0]);
    expect(b.take('u', spec, 0)).toBe(1000);
    expect(b.take('other', spec, 0)).toBe(0);
    expect(b.take('u', spec, 999)).toBeGreaterThan(0); // a millisecond (or two, by rounding) short
    expect(b.take('u', spec, 1000)).toBe(0);
    // Idle buckets are swept once they would be full anyway.
    b.take('u', spec, 120_000);
    expect(b.size).toBe(1);
  });
});

describe('answer frames', () => {
  it('acks and nacks are the protocol\'s JSON', () => {
    expect(JSON.parse(ackFrame('a"1', { eventId: 'e', position: { offset: 5, epoch: 1 } }))).toEqual({ type: 'ack', id: 'a"1', eventId: 'e', position: { offset: 5, epoch: 1 } });
    expect(JSON.parse(ackFrame('a', { eventId: 'e', position: { offset: 5, epoch: 1 }, duplicate: true })).duplicate).toBe(true);
    expect(JSON.parse(nackFrame(null, new AppError('ERR_BAD_JSON', 'bad')))).toEqual({ type: 'nack', id: null, code: 'ERR_BAD_JSON', message: 'bad' });
    expect(JSON.parse(nackFrame('x', new AppError('ERR_SLOW_MODE', 'slow', { details: { retryAfterSec: 7 } })))).toEqual({ type: 'nack', id: 'x', code: 'ERR_SLOW_MODE', message: 'slow', retryAfterSec: 7, details: { retryAfterSec: 7 } });
    expect(JSON.parse(nackFrame('x', new UnavailableError('ERR_KAFKA_UNAVAILABLE', 'down'))).retryAfterSec).toBe(1);
  });
});
