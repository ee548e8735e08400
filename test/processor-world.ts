/**
 * A private world for tests of the processors (services/world.ts: its own
 * topics, key prefix and groups), with what those tests share: a producer
 * that records every event's position as Kafka acknowledged it (the input of
 * `expectedSnapshot`), and whether the live group has applied everything.
 */
import type { Config } from '../core/config.ts';
import { liveGroupOf } from '../pipelines/naming.ts';
import type { PositionedEvent } from '../pipelines/projection.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import type { RoomEvent } from '../schemas/events.ts';
import { subjectFor } from '../schemas/registry.ts';
import { prepareLog, worldEnv, worldId, type WorldEnv } from '../services/world.ts';
import type { LogAdmin, LogClient, LogProducer } from '../topics/kafka.ts';
import { measureLag } from '../topics/lag.ts';

export interface ProcessorWorld {
  env: WorldEnv;
  cfg: Config;
  naming: { keyPrefix: string; groupPrefix: string };
  producer: LogProducer;
  /** Every event produced so far, with the partition and offset Kafka acknowledged. */
  positioned: PositionedEvent[];
  produce(events: RoomEvent[]): Promise<void>;
  /** The live projections' one group has committed everything produced. */
  caughtUp(): Promise<boolean>;
}

export async function processorWorld(client: LogClient, admin: LogAdmin, name: string, partitions: number, extra: Record<string, string> = {}): Promise<ProcessorWorld> {
  const env = worldEnv(worldId(name), partitions, extra);
  const cfg = await prepareLog(env);
  const codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(env.TOPIC_ROOM_EVENTS) });
  await codec.init();
  const producer = client.producer();
  await producer.connect();
  const positioned: PositionedEvent[] = [];
  const naming = { keyPrefix: env.REDIS_KEY_PREFIX, groupPrefix: env.PIPELINES_GROUP_PREFIX };
  return {
    env,
    cfg,
    naming,
    producer,
    positioned,
    async produce(events) {
      const acks = await Promise.all(events.map((e) => producer.send({ topic: env.TOPIC_ROOM_EVENTS, key: e.roomId, value: codec.encode(e) })));
      acks.forEach((a, i) => positioned.push({ event: events[i]!, offset: Number(a.offset), partition: a.partition }));
    },
    async caughtUp() {
      const lag = await measureLag(admin, liveGroupOf(naming), env.TOPIC_ROOM_EVENTS);
      return ![...lag.values()].some((n) => n > 0);
    },
  };
}
