/**
 * The event log against the real Kafka and registry: topics as code, schema
 * registration and compatibility, the typed codec through Kafka, per-room
 * order, and dead letters with their reasons.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { SchemaType } from '@kafkajs/confluent-schema-registry';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../core/config.ts';
import { createRegistry, EventCodec, loadRoomEventSchema } from '../schemas/codec.ts';
import { comment, makeEvent, type RoomEvent } from '../schemas/events.ts';
import { readFixtures, sampleEvents } from '../schemas/fixtures.ts';
import { getCompatibility, registerRoomEvents, subjectFor } from '../schemas/registry.ts';
import { randomName, testConfig, waitFor } from '../test/helpers.ts';
import { logClient } from './client.ts';
import { DLQ_HEADERS, EventConsumer, type DecodedRecord } from './consumer.ts';
import type { LogRecord } from './kafka.ts';
import { applyTopics, declaredTopics } from './topics.ts';

const exec = promisify(execFile);
const cfg = testConfig();
const client = logClient(cfg, 'event-log-test');
const admin = client.admin();

function freshNames() {
  const t = randomName('events');
  return { roomEvents: t, deadLetter: `${t}.dlq` };
}

/** Reads every record of a topic from the start with a throwaway group. */
async function readAll(topic: string, atLeast: number): Promise<LogRecord[]> {
  const consumer = client.consumer(randomName('reader'));
  const got: LogRecord[] = [];
  await consumer.connect();
  await consumer.subscribe([topic], true);
  await consumer.run({
    eachBatch: async (records, ctx) => {
      got.push(...records);
      await ctx.commit((BigInt(records.at(-1)!.offset) + 1n).toString());
    },
  });
  await waitFor(() => got.length >= atLeast, { what: `${atLeast} records in ${topic} (have ${got.length})`, timeoutMs: 30_000 });
  await consumer.disconnect();
  return got;
}

describe('the event log', () => {
  beforeAll(() => admin.connect());
  afterAll(async () => {
    await admin.disconnect();
    await client.close();
  });

  it('creates declared topics, is idempotent, and reports drift without touching data', async () => {
    const names = freshNames();
    const declared = declaredTopics(cfg, names);
    const first = await applyTopics(admin, declared);
    expect(first.created.sort()).toEqual([names.roomEvents, names.deadLetter].sort());
    const [log] = await admin.describeTopics([names.roomEvents]);
    expect(log!.partitions).toBe(cfg.topics.partitions);
    expect(log!.configs['retention.ms']).toBe('-1');
    expect(log!.configs['cleanup.policy']).toBe('delete');

    const second = await applyTopics(admin, declared);
    expect(second.created).toEqual([]);
    expect(second.drift).toEqual([]);

    // Declare more partitions than exist: drift is reported, nothing is changed.
    const grown = declared.map((d) => (d.name === names.roomEvents ? { ...d, partitions: d.partitions + 2 } : d));
    const third = await applyTopics(admin, grown);
    expect(third.drift).toContainEqual({ topic: names.roomEvents, what: 'partitions', declared: String(cfg.topics.partitions + 2), actual: String(cfg.topics.partitions) });
    expect((await admin.describeTopics([names.roomEvents]))[0]!.partitions).toBe(cfg.topics.partitions);
  });

  it('registers idempotently with BACKWARD_TRANSITIVE, and `schemas check` rejects a field without a default', async () => {
    const topic = randomName('schemas');
    const a = await registerRoomEvents(cfg.registry.url, topic);
    const b = await registerRoomEvents(cfg.registry.url, topic);
    expect(b).toEqual(a);
    expect(a.version).toBe(1);
    expect(await getCompatibility(cfg.registry.url, subjectFor(topic))).toBe('BACKWARD_TRANSITIVE');

    const schema = loadRoomEventSchema() as { fields: object[] };
    const fs = await import('node:fs');
    const os = await import('node:os');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'schema-'));
    const bad = path.join(dir, 'bad.avsc');
    fs.writeFileSync(bad, JSON.stringify({ ...schema, fields: [...schema.fields, { name: 'region', type: 'string' }] }));
    const good = path.join(dir, 'good.avsc');
    fs.writeFileSync(good, JSON.stringify({ ...schema, fields: [...schema.fields, { name: 'region', type: 'string', default: '' }] }));
    const run = (file: string) =>
      exec(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'schemas/cli.ts'), 'check', '--schema', file], {
        cwd: REPO_ROOT,
        env: { ...process.env, TOPIC_ROOM_EVENTS: topic },
      }).then(
        (r) => ({ code: 0, out: r.stdout }),
        (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
      );
    const rejected = await run(bad);
    expect(rejected.code).toBe(1);
    expect(rejected.out).toMatch(/NOT compatible/);
    const accepted = await run(good);
    expect(accepted.code).toBe(0);
    expect(accepted.out).toMatch(/compatible with the registered versions/);
    // And the registry itself refuses to register the incompatible one.
    await expect(registerRoomEvents(cfg.registry.url, topic, JSON.parse(fs.readFileSync(bad, 'utf8')))).rejects.toMatchObject({ code: 'ERR_SCHEMA_REJECTED' });
  });

  it('decodes the stored fixtures of every schema version after registering that version', async () => {
    const registry = createRegistry(cfg.registry.url);
    const codec = new EventCodec({ registry, subject: `${randomName('fx')}-value` });
    await codec.init();
    for (const f of readFixtures()) {
      // The writer schema as it was registered back then, under its own subject.
      const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(f.writerSchema) }, { subject: `${randomName(`fx-v${f.version}`)}-value` });
      const wire = Buffer.concat([Buffer.from([0]), Buffer.alloc(4), f.body]);
      wire.writeUInt32BE(id, 1);
      expect(await codec.decode(wire), `v${f.version}/${f.name}`).toEqual(f.expected);
    }
  });

  it('moves every kind of event through Kafka typed, a room in one partition in order, and dead-letters garbage with its reason', async () => {
    const names = freshNames();
    await applyTopics(admin, declaredTopics(cfg, names));
    const registry = createRegistry(cfg.registry.url);
    const codec = new EventCodec({ registry, subject: subjectFor(names.roomEvents) });
    const schemaId = await codec.init();

    const producer = client.producer();
    await producer.connect();
    const room = randomName('room');
    const samples = Object.values(sampleEvents()).map((e) => ({ ...e, roomId: room }));
    // Concurrent sends share batches; acks still map back to each record.
    const acks = await Promise.all(samples.map((ev) => producer.send({ topic: names.roomEvents, key: room, value: codec.encode(ev), headers: { 'event-type': ev.payload.type } })));
    expect(new Set(acks.map((a) => a.partition)).size).toBe(1);
    const offsets = acks.map((a) => BigInt(a.offset));
    expect(offsets).toEqual([...offsets].sort((x, y) => (x < y ? -1 : 1)));

    // Garbage bytes, then a record under a schema that is not a RoomEvent, then a good event.
    const { id: wrongId } = await registry.register(
      { type: SchemaType.AVRO, schema: JSON.stringify({ type: 'record', name: 'NotAnEvent', namespace: 'test', fields: [{ name: 'x', type: 'int' }] }) },
      { subject: `${randomName('wrong')}-value` },
    );
    const wrong = await registry.encode(wrongId, { x: 7 });
    await producer.send({ topic: names.roomEvents, key: room, value: Buffer.from('definitely not avro') });
    await producer.send({ topic: names.roomEvents, key: room, value: wrong });
    const last = makeEvent({ roomId: room, actor: { userId: 'u9', role: 'viewer' }, payload: comment('after the garbage') });
    await producer.send({ topic: names.roomEvents, key: room, value: codec.encode(last) });
    await producer.disconnect();

    const seen: DecodedRecord[] = [];
    const consumer = new EventConsumer({
      client,
      codec,
      topic: names.roomEvents,
      deadLetterTopic: names.deadLetter,
      groupId: randomName('typed'),
      handle: async (events) => void seen.push(...events),
    });
    await consumer.start();
    await waitFor(() => seen.length >= samples.length + 1, { what: 'all good events', timeoutMs: 30_000 });
    await consumer.stop();

    const events: RoomEvent[] = seen.map((s) => s.event);
    expect(events).toEqual([...samples, last]);
    expect(seen.every((s) => s.partition === acks[0]!.partition)).toBe(true);

    const dead = await readAll(names.deadLetter, 2);
    expect(dead).toHaveLength(2);
    expect(dead[0]!.value!.toString()).toBe('definitely not avro');
    expect(dead[0]!.headers[DLQ_HEADERS.errorCode]).toBe('ERR_EVENT_NOT_WIRE_FORMAT');
    expect(dead[0]!.headers[DLQ_HEADERS.sourceTopic]).toBe(names.roomEvents);
    expect(dead[0]!.headers[DLQ_HEADERS.sourceOffset]).toBe(String(offsets.at(-1)! + 1n));
    expect(dead[1]!.headers[DLQ_HEADERS.errorCode]).toBe('ERR_EVENT_WRONG_SCHEMA');
    expect(dead[1]!.headers[DLQ_HEADERS.errorMessage]).toMatch(new RegExp(`schema ${wrongId}`));
    expect(dead[1]!.value!.readUInt32BE(1)).toBe(wrongId);
    expect(schemaId).not.toBe(wrongId);
  });
});
