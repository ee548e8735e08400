/**
 * The model stage against the real Kafka and registry: the Python process
 * (Confluent's client, the classifier) reads comments from a private topic
 * and writes its decisions back in the project's wire format; the project's
 * codec decodes them. A toxic comment gets a ModerationDecided with the
 * model's score and a CommentDeleted; a borderline one a ModerationDecided
 * (allow); clean ones and staff nothing. Re-processing after a crash writes
 * the same events under the same derived ids. A killed process shows down and
 * comes back; the composition root runs the stage and learns readiness from it.
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, EventCodec } from '../../../schemas/codec.ts';
import { comment, makeEvent, type EventOf, type RoomEvent } from '../../../schemas/events.ts';
import { subjectFor } from '../../../schemas/registry.ts';
import { prepareLog, worldEnv, worldId } from '../../../services/world.ts';
import { randomName, testConfig, waitFor } from '../../../test/helpers.ts';
import { startService } from '../../../test/processes.ts';
import { logClient } from '../../../topics/client.ts';
import type { Ack, LogAdmin, LogProducer, LogRecord } from '../../../topics/kafka.ts';
import { moderationModelGroup } from '../../naming.ts';
import { derivedEventId } from '../processor.ts';
import { ModelStageService } from './service.ts';
import { ensureModelVenv } from './venv.ts';

const probe = spawnSync('python3', ['--version'], { encoding: 'utf8' });
const hasPython = !probe.error && probe.status === 0;
if (!hasPython) console.warn(`[model.int] SKIPPED: python3 is not on PATH (${probe.error?.message ?? probe.stderr}); the model stage needs it.`);

const MODEL = 'alt-profanity-check-1.9.1';
const RULE = `model:${MODEL}`;

describe.skipIf(!hasPython)('moderation model stage (Python, Confluent client) on the real log', () => {
  const id = worldId('model');
  const env = worldEnv(id, 2, {
    MODERATION_MODEL_METRICS_PORT: '0',
    MODERATION_MODEL_THRESHOLD: '0.95',
    MODERATION_MODEL_RECORD_ABOVE: '0.5',
    MODERATION_MODEL_ACTION: 'delete',
    MODERATION_MODEL_BATCH_MS: '20',
  });
  const cfg = testConfig(env);
  const group = moderationModelGroup(cfg.pipelines.groupPrefix);
  const client = logClient(cfg, 'model-test');
  let admin: LogAdmin;
  let producer: LogProducer;
  let codec: EventCodec;
  let stage: ModelStageService | undefined;
  const lines: string[] = [];
  const newStage = () => new ModelStageService({ cfg, log: (m) => lines.push(m) });

  beforeAll(async () => {
    const t0 = Date.now();
    await ensureModelVenv(cfg, (m) => console.log(`[model.int] ${m}`));
    console.log(`[model.int] venv ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await prepareLog(env);
    admin = client.admin();
    await admin.connect();
    codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(id) });
    await codec.init();
    producer = client.producer({ lingerMs: 0 });
    await producer.connect();
  }, 600_000);

  afterAll(async () => {
    await stage?.stop();
    await producer?.disconnect();
    await admin?.deleteTopics([id, `${id}.dlq`]).catch(() => {});
    await admin?.disconnect();
    await client.close();
  });

  const post = (e: RoomEvent) => producer.send({ topic: id, key: e.roomId, value: codec.encode(e) });

  /** Every record of a topic as it is now. */
  async function readTopic(topic: string): Promise<LogRecord[]> {
    const out: LogRecord[] = [];
    for (const [partition, end] of await admin.endOffsets(topic)) {
      if (BigInt(end) > 0n) out.push(...(await client.readRange(topic, partition, 0, (BigInt(end) - 1n).toString())));
    }
    return out;
  }

  async function decisions(): Promise<{ event: RoomEvent; partition: number }[]> {
    const out: { event: RoomEvent; partition: number }[] = [];
    for (const r of await readTopic(id)) {
      const event = await codec.decode(r.value).catch(() => undefined); // the dead-lettered record
      if (event?.actor.userId === 'moderation-model') out.push({ event, partition: r.partition });
    }
    return out;
  }

  /** Waits until the stage's group committed past every ack (its produces were flushed before). */
  async function committedPast(acks: Ack[], timeoutMs = 60_000): Promise<void> {
    await waitFor(
      async () => {
        const c = await admin.committedOffsets(group, id);
        return acks.every((a) => BigInt(c.get(a.partition) ?? '-1') > BigInt(a.offset));
      },
      { what: `group ${group} to commit past ${acks.map((a) => `${a.partition}/${a.offset}`).join(' ')}`, timeoutMs, intervalMs: 100 },
    );
  }

  const room = randomName('room');
  const viewer = (userId: string) => ({ userId, role: 'viewer' as const });
  const toxic = makeEvent({ roomId: room, actor: viewer('troll'), payload: comment('you are a fucking idiot'), videoOffsetMs: 1234 });
  const borderline = makeEvent({ roomId: room, actor: viewer('fan'), payload: comment('killed it') });
  const clean = makeEvent({ roomId: `${room}-b`, actor: viewer('fan'), payload: comment('nice play, gg') });
  const staff = makeEvent({ roomId: room, actor: { userId: 'mod', role: 'moderator' }, payload: comment('fuck you, banned') });
  const cjk = makeEvent({ roomId: `${room}-b`, actor: viewer('fan2'), payload: comment('草 死ぬほど笑った 8888') });
  let acks: Ack[] = [];

  it('scores comments: toxic → ModerationDecided (score, rule) + CommentDeleted; borderline → ModerationDecided(allow); clean and staff → nothing', async () => {
    stage = newStage();
    const t0 = Date.now();
    await stage.start(new AbortController().signal);
    console.log(`[model.int] stage ready in ${Date.now() - t0} ms (pid ${stage.pid})`);
    expect(stage.health()).toMatchObject({ status: 'ok' });
    expect(stage.model).toBe(MODEL);

    acks = [];
    for (const e of [toxic, borderline, clean, staff, cjk]) acks.push(await post(e));
    await committedPast(acks);

    const got = await decisions();
    const about = (target: string) => got.filter((d) => 'targetEventId' in d.event.payload && d.event.payload.targetEventId === target);

    const [decided, deleted] = about(toxic.eventId).map((d) => d.event);
    expect(about(toxic.eventId)).toHaveLength(2);
    expect(decided).toMatchObject({
      eventId: derivedEventId(toxic.eventId, `${RULE}:decided`, toxic.occurredAt),
      roomId: room,
      actor: { userId: 'moderation-model', role: 'system' },
      occurredAt: toxic.occurredAt,
      videoOffsetMs: 1234,
      payload: { type: 'ModerationDecided', targetEventId: toxic.eventId, targetUserId: 'troll', verdict: 'delete', labels: ['model'], rule: RULE },
    });
    expect((decided as EventOf<'ModerationDecided'>).payload.score).toBeGreaterThanOrEqual(0.95);
    expect(deleted).toMatchObject({
      eventId: derivedEventId(toxic.eventId, `${RULE}:deleted`, toxic.occurredAt),
      payload: { type: 'CommentDeleted', targetEventId: toxic.eventId, deletedBy: 'moderation-model', reason: 'moderation:model' },
    });
    // Keyed by room (murmur2 on both sides): decisions follow the comment in its partition.
    expect(about(toxic.eventId).map((d) => d.partition)).toEqual([acks[0]!.partition, acks[0]!.partition]);

    const b = about(borderline.eventId);
    expect(b).toHaveLength(1);
    expect(b[0]!.event.payload).toMatchObject({ type: 'ModerationDecided', verdict: 'allow', labels: ['model'], rule: RULE });
    const score = (b[0]!.event as EventOf<'ModerationDecided'>).payload.score;
    expect(score).toBeGreaterThanOrEqual(0.5);
    expect(score).toBeLessThan(0.95);

    for (const e of [clean, staff, cjk]) expect(about(e.eventId), e.payload.type === 'CommentPosted' ? e.payload.text : '').toEqual([]);
    expect(got).toHaveLength(3);

    const batches = stage.batches;
    expect(batches.reduce((n, x) => n + x.scored, 0)).toBe(4); // the staff comment is not scored
    console.log(`[model.int] batches: ${batches.map((x) => `${x.records} records, model ${x.scoreMs.toFixed(1)} ms, total ${x.totalMs.toFixed(1)} ms`).join('; ')}`);
  });

  it('dead-letters a record that is not in the wire format, with the reason, and moves on', async () => {
    const ack = await producer.send({ topic: id, key: room, value: Buffer.from('not avro at all') });
    await committedPast([ack]);
    const dead = await waitFor(async () => (await readTopic(`${id}.dlq`)).find((r) => r.headers?.['dlq.consumer.group']?.toString() === group), {
      what: 'the dead letter',
      timeoutMs: 10_000,
    });
    expect(dead.value?.toString()).toBe('not avro at all');
    expect(dead.headers?.['dlq.error.code']?.toString()).toBe('ERR_EVENT_NOT_WIRE_FORMAT');
    expect(dead.headers?.['dlq.source.offset']?.toString()).toBe(ack.offset);
    acks.push(ack);
  });

  it('re-processes the log after losing its offsets (a crash before the commit) and writes only the same events again, under the same ids', async () => {
    const before = await decisions();
    await stage!.stop();
    // What a crash between produce and commit leaves: decisions written, offsets not.
    await admin.deleteGroups([group]);
    stage = newStage();
    await stage.start(new AbortController().signal);
    await committedPast(acks);
    const after = await decisions();
    expect(after.length).toBe(2 * before.length); // every decision written twice...
    const byId = new Map<string, RoomEvent[]>();
    for (const d of after) byId.set(d.event.eventId, [...(byId.get(d.event.eventId) ?? []), d.event]);
    expect([...byId.keys()].sort()).toEqual(before.map((d) => d.event.eventId).sort()); // ...under the same ids
    for (const copies of byId.values()) {
      expect(copies).toHaveLength(2);
      expect(copies[1]).toEqual(copies[0]); // and the same content: a projection sees one decision
    }
  });

  it('shows down at once when the Python process dies, restarts it, and goes on scoring', async () => {
    const pid = stage!.pid;
    stage!.killStage('SIGKILL');
    await waitFor(() => stage!.health().status === 'down', { what: 'health down', timeoutMs: 5_000, intervalMs: 10 });
    expect(stage!.health().detail).toMatch(/exited with SIGKILL; restarting/);
    await waitFor(() => stage!.health().status === 'ok', { what: 'health ok after the restart', timeoutMs: 60_000 });
    expect(stage!.pid).not.toBe(pid);
    const again = makeEvent({ roomId: room, actor: viewer('troll2'), payload: comment('shut the fuck up') });
    const ack = await post(again);
    await committedPast([ack]);
    const got = (await decisions()).filter((d) => 'targetEventId' in d.event.payload && d.event.payload.targetEventId === again.eventId);
    expect(got.map((d) => d.event.payload.type).sort()).toEqual(['CommentDeleted', 'ModerationDecided']);
    acks.push(ack);
    await stage!.stop();
    expect(stage!.health().status).toBe('stopped');
  });

  it('runs as the `moderation-model` service of the composition root, ready by its own report', async () => {
    const proc = await startService(['services', 'run', 'moderation-model'], env, { readyTimeoutMs: 120_000 });
    try {
      expect(proc.lastReport?.services['moderation-model']).toMatchObject({ status: 'ok' });
      const late = makeEvent({ roomId: room, actor: viewer('troll3'), payload: comment('fuck off') });
      const ack = await post(late);
      await committedPast([ack]);
      expect((await decisions()).some((d) => d.event.eventId === derivedEventId(late.eventId, `${RULE}:deleted`, late.occurredAt))).toBe(true);
    } finally {
      await proc.stop();
    }
  });
});
