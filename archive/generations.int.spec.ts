/**
 * The archive across a repartition (topics/generations.ts): each generation's
 * topic is archived by its own archiver, rows keep their topic and hold the
 * event's position in `kafka_offset`, and replay orders a room by position, so
 * a room whose new partition number is below its old one still replays in
 * log order (a deletion in the new generation of a comment in the old).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { comment, makeEvent, type RoomEvent } from '../schemas/events.ts';
import { archiveKit } from '../test/archive-world.ts';
import { waitFor } from '../test/helpers.ts';
import { generationGroup, generationTopic, positionOf } from '../topics/generations.ts';
import { murmur2Partition } from '../topics/kafka.ts';
import { measureLag } from '../topics/lag.ts';
import { declaredTopics } from '../topics/topics.ts';
import { Archiver } from './archiver.ts';
import { ClickHouseReplaySource, replay, type ReplayItem } from './replay.ts';

const kit = await archiveKit();
afterAll(() => kit.close());

describe('the archive across log generations', () => {
  it('archives every generation and replays a room in log order across them', async () => {
    const w = await kit.world(); // generation 0: the world's topic, 3 partitions
    const g1 = generationTopic(w.id, 1);
    const spec = declaredTopics(w.cfg, { roomEvents: w.id, deadLetter: `${w.id}.dlq` })[0]!;
    await kit.admin.createTopics([{ ...spec, name: g1, partitions: 7 }]);
    // Ordered by partition first, this room's generations would swap.
    let room = '';
    for (let i = 0; ; i++) {
      room = `gen-room-${i}`;
      if (murmur2Partition(room, 7) < murmur2Partition(room, 3)) break;
    }
    const at = { roomId: room, videoOffsetMs: 1000 };
    const viewer = { userId: 'u1', role: 'viewer' as const };
    const old: RoomEvent[] = [makeEvent({ ...at, actor: viewer, payload: comment('first') }), makeEvent({ ...at, actor: viewer, payload: comment('second') })];
    const later: RoomEvent[] = [
      makeEvent({ ...at, actor: viewer, payload: comment('third') }),
      makeEvent({ ...at, actor: { userId: 'm1', role: 'moderator' }, payload: { type: 'CommentDeleted', targetEventId: old[0]!.eventId, deletedBy: 'm1', reason: 'test' } }),
    ];
    await w.produce(old);
    const producer = kit.client.producer();
    await producer.connect();
    for (const e of later) await producer.send({ topic: g1, key: room, value: w.codec.encode(e) });
    await producer.disconnect();

    const a0 = w.archiver();
    await a0.start();
    const group1 = generationGroup(w.groupId, 1);
    const a1 = new Archiver({ client: kit.client, codec: w.codec, ch: w.ch, topic: g1, generation: 1, deadLetterTopic: `${w.id}.dlq`, groupId: group1, batchRows: 500, batchMs: 20, maxBackoffMs: 300 });
    await a1.start();
    try {
      await waitFor(async () => (await w.caughtUp()) && [...(await measureLag(kit.admin, group1, g1)).values()].every((n) => n === 0), {
        what: 'both generations archived',
        timeoutMs: 60_000,
        intervalMs: 200,
      });
    } finally {
      await a1.stop();
    }

    const rs = await w.ch.client.query({
      query: `SELECT event_id, kafka_topic, kafka_offset FROM ${w.ch.database}.events FINAL WHERE room_id = {room:String} ORDER BY kafka_offset`,
      query_params: { room },
      format: 'JSONEachRow',
    });
    const rows = await rs.json<{ event_id: string; kafka_topic: string; kafka_offset: string | number }>();
    expect(rows.map((r) => [r.event_id, r.kafka_topic, Number(r.kafka_offset)])).toEqual([
      [old[0]!.eventId, w.id, 0],
      [old[1]!.eventId, w.id, 1],
      [later[0]!.eventId, g1, positionOf(1, 0)],
      [later[1]!.eventId, g1, positionOf(1, 1)],
    ]);

    const items: ReplayItem[] = [];
    for await (const o of replay(new ClickHouseReplaySource(w.ch), { room, view: 'live', perSecond: 5, maxItems: 500, nowMs: Date.now(), chunkRows: 1000 })) if (o.type === 'item') items.push(o.item);
    expect(items.map((i) => [i.kind, i.kind === 'comment' ? i.text : i.eventId, i.offset])).toEqual([
      ['comment', 'first', 0],
      ['comment', 'second', 1],
      ['comment', 'third', positionOf(1, 0)],
      ['delete', old[0]!.eventId, positionOf(1, 1)],
    ]);
    await w.close();
  });
});
