/**
 * Proves each server is real: an Avro schema registered in the registry, a
 * record produced and consumed through Kafka in the Confluent wire format
 * (magic byte 0 + 4-byte schema id + Avro body), a Redis round trip.
 */
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { randomName, testConfig, waitFor } from './helpers.ts';

const cfg = testConfig();

describe('the real stack', () => {
  const kafka = new Kafka({ brokers: cfg.kafka.brokers.split(','), clientId: randomName('stack-test'), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  const redis = new Redis(cfg.redis.url, { lazyConnect: true });
  afterAll(async () => {
    await admin.disconnect();
    redis.disconnect();
  });

  it('registers an Avro schema and moves a record through Kafka in the Confluent wire format', async () => {
    const topic = randomName('stack-avro');
    const registry = new SchemaRegistry({ host: cfg.registry.url });
    const schema = {
      type: 'record',
      name: 'Probe',
      namespace: 'test.stack',
      fields: [
        { name: 'room', type: 'string' },
        { name: 'n', type: 'long' },
      ],
    };
    const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }, { subject: `${topic}-value` });
    expect(id).toBeGreaterThan(0);
    // The registry answers the same id for the same schema (it is stored, not echoed).
    expect(await registry.getRegistryId(`${topic}-value`, 'latest')).toBe(id);

    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    const value = await registry.encode(id, { room: 'r1', n: 42 });
    await producer.send({ topic, acks: -1, messages: [{ key: 'r1', value }] });
    await producer.disconnect();

    const consumer = kafka.consumer({ groupId: randomName('stack-group') });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const got: Buffer[] = [];
    await consumer.run({ eachMessage: async ({ message }) => void got.push(message.value!) });
    const raw = await waitFor(() => got[0], { what: 'the record to be consumed', timeoutMs: 30_000 });
    await consumer.disconnect();

    expect(raw[0]).toBe(0); // magic byte
    expect(raw.readUInt32BE(1)).toBe(id); // schema id, big-endian
    expect(await registry.decode(raw)).toEqual({ room: 'r1', n: 42 });
  });

  it('round-trips a value through Redis', async () => {
    await redis.connect();
    const key = `${randomName('test')}:k`;
    await redis.set(key, 'héllo', 'EX', 60);
    expect(await redis.get(key)).toBe('héllo');
    const info = await redis.info('server');
    expect(info).toMatch(/redis_version:7\./);
    await redis.del(key);
  });
});
