/**
 * The wire format is the standard one, proven with clients nobody here wrote:
 * - Confluent's Python client (AvroDeserializer + the registry's ccompat API)
 *   decodes events the project produced, and the project decodes an event
 *   produced by its AvroSerializer;
 * - kcat (Debian's) shows the raw records: magic byte 0, then the 4-byte
 *   big-endian id the registry gave the schema, then the Avro body.
 */
import { execFile, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, EventCodec } from '../../schemas/codec.ts';
import { comment, makeEvent, newEventId, type EventOf, type RoomEvent } from '../../schemas/events.ts';
import { randomName, testConfig, waitFor } from '../../test/helpers.ts';
import { logClient } from '../client.ts';
import type { Ack, LogConsumer, LogRecord } from '../kafka.ts';
import { applyTopics, declaredTopics } from '../topics.ts';
import { ensurePythonVenv } from './venv.ts';

const cfg = testConfig();
const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'confluent_roundtrip.py');
const BROKERS = cfg.kafka.brokers.split(',').map((b) => b.trim());

const probe = spawnSync('python3', ['--version'], { encoding: 'utf8' });
const hasPython = !probe.error && probe.status === 0;
if (!hasPython) console.warn(`[confluent-python.int] SKIPPED: python3 is not on PATH (${probe.error?.message ?? probe.stderr}); the Confluent Python interop check needs it.`);

interface Run {
  stdout: Buffer;
  stderr: string;
}

/** Runs a program to completion; stdout kept as bytes (kcat prints binary values). */
function run(cmd: string, args: string[], timeoutMs = 45_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'buffer', timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: process.env }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr.toString('utf8')}`));
      else resolve({ stdout, stderr: stderr.toString('utf8') });
    });
  });
}

/** One record exactly as kcat prints it with the format `%k %s\n`. */
async function kcatRecord(topic: string, partition: number, offset: string): Promise<Buffer> {
  const { stdout } = await run('kcat', ['-C', '-b', BROKERS[0]!, '-t', topic, '-p', String(partition), '-o', offset, '-c', '1', '-e', '-q', '-f', '%k %s\n']);
  return stdout;
}

interface PyRecord {
  key: string;
  partition: number;
  offset: number;
  magic: number;
  schemaId: number;
  value: Record<string, unknown> & { payload: Record<string, unknown> };
}

describe.skipIf(!hasPython)('Confluent Python client and kcat read and write our wire format', () => {
  const topic = randomName('interop');
  const dlq = `${topic}.dlq`;
  const room = randomName('room');
  const client = logClient(cfg, 'interop-test');
  const admin = client.admin();
  const producer = client.producer({ lingerMs: 0 });
  const codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: `${topic}-value` });
  const consumers: LogConsumer[] = [];
  let python = '';
  let schemaId = 0;

  beforeAll(async () => {
    const t0 = Date.now();
    python = await ensurePythonVenv(cfg.cacheDir);
    console.log(`[confluent-python.int] venv ready in ${((Date.now() - t0) / 1000).toFixed(1)}s: ${python}`);
    await admin.connect();
    await applyTopics(admin, declaredTopics(cfg, { roomEvents: topic, deadLetter: dlq }));
    schemaId = await codec.init();
    await producer.connect();
  }, 300_000);

  afterAll(async () => {
    for (const c of consumers) await c.disconnect();
    await producer.disconnect();
    await admin.deleteTopics([topic, dlq]).catch(() => {});
    await admin.disconnect();
    await client.close();
  });

  const py = (...args: string[]) => run(python, [SCRIPT, ...args, '--bootstrap', BROKERS.join(','), '--registry', cfg.registry.url, '--topic', topic]);

  it('the Python AvroDeserializer decodes what the project produced, and kcat shows the raw header', async () => {
    const posted = makeEvent({
      roomId: room,
      actor: { userId: 'u-1', role: 'viewer' },
      payload: comment('弹幕テスト ✓ 🎉 ñandú', { mode: 'bottom', color: 0x00ff7f, size: 'small' }),
      videoOffsetMs: 12_345,
      clientMsgId: 'c-1',
    });
    const reaction = makeEvent({ roomId: room, actor: { userId: 'u-2', role: 'broadcaster' }, payload: { type: 'ReactionAdded', emoji: '👏', count: 3 } });
    const deleted = makeEvent({
      roomId: room,
      actor: { userId: 'mod-1', role: 'moderator' },
      payload: { type: 'CommentDeleted', targetEventId: posted.eventId, deletedBy: 'mod-1', reason: 'spam' },
    });
    const events: RoomEvent[] = [posted, reaction, deleted];
    const values = events.map((e) => codec.encode(e));
    const acks: Ack[] = [];
    for (const value of values) acks.push(await producer.send({ topic, key: room, value })); // one by one: a room is ordered

    const { stdout } = await py('consume', '--count', '3');
    const got = stdout
      .toString('utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as PyRecord);
    expect(got).toHaveLength(3);
    for (const [i, r] of got.entries()) {
      expect(r.key).toBe(room);
      expect(r.partition).toBe(acks[i]!.partition);
      expect(String(r.offset)).toBe(acks[i]!.offset);
      expect(r.magic).toBe(0);
      expect(r.schemaId).toBe(schemaId);
      // Every field, exactly as the project wrote it (timestamps as ms, enums as symbols).
      expect(r.value).toEqual(events[i]);
    }
    expect(got[0]!.value.payload).toMatchObject({ type: 'CommentPosted', text: '弹幕テスト ✓ 🎉 ñandú', mode: 'bottom', color: 0x00ff7f });
    expect(got[1]!.value.payload).toEqual({ type: 'ReactionAdded', emoji: '👏', count: 3 });
    expect(got[2]!.value.payload).toEqual({ type: 'CommentDeleted', targetEventId: posted.eventId, deletedBy: 'mod-1', reason: 'spam' });

    // kcat's `%k %s\n`: the key, a space, then the value's bytes as stored.
    for (const [i, ack] of acks.entries()) {
      const line = await kcatRecord(topic, ack.partition, ack.offset);
      expect(line.equals(Buffer.concat([Buffer.from(`${room} `), values[i]!, Buffer.from('\n')]))).toBe(true);
      const raw = line.subarray(room.length + 1, line.length - 1);
      expect(raw[0]).toBe(0x00);
      expect(raw.readUInt32BE(1)).toBe(schemaId);
    }
  });

  it('the project decodes what the Python AvroSerializer produced, in the same partition as the room', async () => {
    const eventId = newEventId();
    const text = 'from Python: 你好 👋 — ok';
    const { stdout } = await py('produce', '--room', room, '--event-id', eventId, '--text', text);
    const ack = JSON.parse(stdout.toString('utf8')) as { partition: number; offset: number; schemaId: number };
    // use.latest.version: it wrote with the schema the project registered, not one of its own.
    expect(ack.schemaId).toBe(schemaId);

    const consumer = client.consumer(randomName('g-interop'));
    consumers.push(consumer);
    // Keyed by position: a batch whose offset was not committed yet may be fetched again.
    const seen = new Map<string, LogRecord>();
    await consumer.connect();
    await consumer.subscribe([topic], true);
    void consumer.run({
      eachBatch: async (records, ctx) => {
        for (const r of records) seen.set(`${r.partition}/${r.offset}`, r);
        const last = records.at(-1);
        if (last) await ctx.commit(String(BigInt(last.offset) + 1n));
      },
    });
    const rec = await waitFor(() => seen.get(`${ack.partition}/${ack.offset}`), {
      timeoutMs: 30_000,
      what: `the Python-produced record at ${ack.partition}/${ack.offset}`,
    });
    // murmur2 on both sides: the Python record joined the room's partition, after the project's 3.
    const inPartition = [...seen.values()].filter((r) => r.partition === ack.partition);
    expect(inPartition.map((r) => [r.offset, r.key?.toString('utf8')])).toEqual(['0', '1', '2', '3'].map((o) => [o, room]));
    expect(rec.key?.toString('utf8')).toBe(room);
    expect(rec.value?.[0]).toBe(0);
    expect(EventCodec.schemaIdOf(rec.value!)).toBe(schemaId);

    const ev = (await codec.decode(rec.value)) as EventOf<'CommentPosted'>;
    expect(ev.payload.type).toBe('CommentPosted');
    expect(ev).toMatchObject({
      eventId,
      roomId: room,
      actor: { userId: 'py-user', role: 'moderator' },
      videoOffsetMs: 4242,
      clientMsgId: `py-${eventId}`,
      payload: { type: 'CommentPosted', text, mode: 'top', color: 0xff8800, size: 'large', replyTo: null },
    });
    expect(Math.abs(ev.occurredAt - Date.now())).toBeLessThan(5 * 60_000);

    // And kcat sees the Python record with the same header.
    const line = await kcatRecord(topic, ack.partition, String(ack.offset));
    expect(line.equals(Buffer.concat([Buffer.from(`${room} `), rec.value!, Buffer.from('\n')]))).toBe(true);
  });
});
