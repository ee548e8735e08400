/**
 * Load-generator child: the ceiling for ingest — raw kafkajs produce + consume
 * on the same broker, the same rate ladder, hold and success rule as the
 * ingest scenario, without our HTTP API, validation, Avro, Redis or
 * projections. Messages of the same size as our events (key = one of the
 * rooms, value = send time + padding) are produced with acks=all, idempotent,
 * with the configured compression, gathered per 5 ms tick like our producer's
 * linger; a consumer group reads them back. Latency = consume − send.
 *
 * Prints `STEP {...}` per rate and `RESULT {...}` at the end.
 */
import { parseArgs } from 'node:util';
import { CompressionTypes, Kafka, logLevel } from 'kafkajs';
import { Hist, nowMs } from '../lib/stats.ts';

const { values } = parseArgs({
  options: {
    brokers: { type: 'string', default: '127.0.0.1:9092' },
    topic: { type: 'string' },
    partitions: { type: 'string', default: '6' },
    rates: { type: 'string' },
    hold: { type: 'string', default: '10' },
    rooms: { type: 'string', default: '12' },
    'value-bytes': { type: 'string', default: '160' },
    compression: { type: 'string', default: 'gzip' },
    'max-inflight': { type: 'string', default: '2000' },
    'drain-sec': { type: 'string', default: '10' },
    'p99-limit-ms': { type: 'string', default: '1000' },
  },
});
const brokers = values.brokers!.split(',');
for (const b of brokers) if (!/^(127\.\d+\.\d+\.\d+|localhost):\d+$/.test(b)) throw new Error(`refusing broker ${b}: loopback only`);
const topic = values.topic!;
const rates = values.rates!.split(',').map(Number);
const hold = Number(values.hold);
const rooms = Number(values.rooms);
const valueBytes = Math.max(16, Number(values['value-bytes']));
const maxInflight = Number(values['max-inflight']);
const drainMs = Number(values['drain-sec']) * 1000;
const p99Limit = Number(values['p99-limit-ms']);
setTimeout(() => {
  console.error('kafka-raw: time limit reached, exiting');
  process.exit(3);
}, (rates.length * (hold + Number(values['drain-sec']) + 15) + 90) * 1000).unref();

const kafka = new Kafka({ clientId: 'bench-raw', brokers, logLevel: logLevel.NOTHING });
const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic, numPartitions: Number(values.partitions), replicationFactor: 1 }], waitForLeaders: true });
const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 5, allowAutoTopicCreation: false });
await producer.connect();
const consumer = kafka.consumer({ groupId: `${topic}.bench`, maxWaitTimeInMs: 100, allowAutoTopicCreation: false });
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));

let step = -1;
let stepHist = new Hist();
let consumedInStep = 0;
await consumer.run({
  eachBatch: async ({ batch }) => {
    const now = nowMs();
    for (const m of batch.messages) {
      if (!m.value || m.value.length < 12) continue;
      if (m.value.readUInt32BE(8) !== step) continue; // an earlier step's straggler
      stepHist.add(now - m.value.readDoubleBE(0));
      consumedInStep++;
    }
  },
});
await joined;

const compression = values.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;
const steps: unknown[] = [];
let highest = 0;
for (const [i, rate] of rates.entries()) {
  step = i;
  stepHist = new Hist();
  consumedInStep = 0;
  const sendHist = new Hist();
  let sent = 0;
  let acked = 0;
  let errors = 0;
  let skipped = 0;
  let inflight = 0;
  const total = Math.round(rate * hold);
  const pending = new Set<Promise<void>>();
  const t0 = nowMs();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((nowMs() - t0) / 1000) * rate));
      const n = due - sent - skipped;
      if (n > 0) {
        if (inflight + n > maxInflight) skipped += n;
        else {
          const start = nowMs();
          const messages = Array.from({ length: n }, (_, k) => {
            const v = Buffer.alloc(valueBytes, 0x61);
            v.writeDoubleBE(start, 0);
            v.writeUInt32BE(step, 8);
            return { key: `room-${(sent + k) % rooms}`, value: v };
          });
          sent += n;
          inflight += n;
          const p = producer
            .send({ topic, acks: -1, compression, messages })
            .then(
              () => {
                acked += n;
                sendHist.add(nowMs() - start);
              },
              () => {
                errors += n;
              },
            )
            .finally(() => {
              inflight -= n;
              pending.delete(p);
            });
          pending.add(p);
        }
      }
      if (sent + skipped >= total) resolve();
      else setTimeout(tick, 5);
    };
    tick();
  });
  const sendSeconds = (nowMs() - t0) / 1000;
  await Promise.all([...pending]);
  const deadline = nowMs() + drainMs;
  while (consumedInStep < acked && nowMs() < deadline) await new Promise((r) => setTimeout(r, 20));
  const lat = stepHist.summary();
  const held = errors === 0 && skipped === 0 && consumedInStep >= acked && lat.p99 <= p99Limit && sent / sendSeconds >= 0.95 * rate;
  const s = { rate, sent, acked, errors, skipped, consumed: consumedInStep, achievedRate: Math.round(sent / sendSeconds), latency: lat, produceAck: sendHist.summary(), held };
  steps.push(s);
  console.log(`STEP ${JSON.stringify(s)}`);
  if (!held) break;
  highest = rate;
}
await consumer.disconnect();
await producer.disconnect();
await admin.deleteTopics({ topics: [topic] }).catch(() => {});
await admin.disconnect();
console.log(`RESULT ${JSON.stringify({ topic, highest, steps, cpuSec: (process.cpuUsage().user + process.cpuUsage().system) / 1e6 })}`);
process.exit(0);
