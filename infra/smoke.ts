/**
 * Smoke check of the real stack: registers an Avro schema, produces a few
 * records in the Confluent wire format, consumes them back and prints both
 * sides. `npm run smoke` (also the last step of `npm start` until the
 * gateway's demo room exists).
 */
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { Kafka, logLevel } from 'kafkajs';
import { loadConfig } from '../core/config.ts';

const cfg = loadConfig();
const topic = `smoke-${Date.now().toString(36)}`;
const kafka = new Kafka({ brokers: cfg.kafka.brokers.split(','), clientId: 'smoke', logLevel: logLevel.NOTHING });
const registry = new SchemaRegistry({ host: cfg.registry.url });
const schema = { type: 'record', name: 'SmokeComment', namespace: 'danmaku.smoke', fields: [{ name: 'room', type: 'string' }, { name: 'text', type: 'string' }] };

const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }, { subject: `${topic}-value` });
console.log(`registered ${topic}-value as schema id ${id}`);

const sent = ['hello', '你好', 'こんにちは', '🎉'].map((text) => ({ room: 'smoke-room', text }));
const producer = kafka.producer({ idempotent: true });
await producer.connect();
for (const v of sent) {
  const value = await registry.encode(id, v);
  await producer.send({ topic, acks: -1, messages: [{ key: v.room, value }] });
  console.log(`sent     ${JSON.stringify(v)}  (${value.length} bytes, magic ${value[0]}, schema id ${value.readUInt32BE(1)})`);
}
await producer.disconnect();

const consumer = kafka.consumer({ groupId: `${topic}-group` });
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
let received = 0;
await new Promise<void>((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`received ${received} of ${sent.length} within 30 s`)), 30_000);
  void consumer.run({
    eachMessage: async ({ message, partition }) => {
      const v = await registry.decode(message.value!);
      console.log(`received ${JSON.stringify(v)}  (partition ${partition}, offset ${message.offset})`);
      if (++received === sent.length) {
        clearTimeout(timer);
        resolve();
      }
    },
  });
});
await consumer.disconnect();
await admin.deleteTopics({ topics: [topic] });
await admin.disconnect();
console.log(`smoke ok: ${received}/${sent.length} records round-tripped through Kafka and the registry`);
