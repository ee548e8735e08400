/**
 * Encoded sample events per schema version, kept in the repo the way kafkajs
 * keeps captured wire fixtures per protocol version. Each version's folder
 * holds Avro bodies (`<name>.avro`, written with that version's schema,
 * `schemas/history/room-event.v<N>.avsc`) and the event they must decode to
 * under the CURRENT schema (`<name>.json`). When the schema evolves, old
 * folders stay and must keep decoding: that is the evolution guarantee.
 *
 * `npm run schemas -- fixtures` writes the folder of the newest version.
 */
import fs from 'node:fs';
import path from 'node:path';
import avsc from 'avsc';
import { REPO_ROOT } from '../core/config.ts';
import { comment, makeEvent, type RoomEvent } from './events.ts';

export const HISTORY_DIR = path.join(REPO_ROOT, 'schemas', 'history');
export const FIXTURES_DIR = path.join(REPO_ROOT, 'schemas', 'fixtures');

export function schemaVersions(): { version: number; file: string }[] {
  return fs
    .readdirSync(HISTORY_DIR)
    .map((f) => ({ m: /^room-event\.v(\d+)\.avsc$/.exec(f), f }))
    .filter((x) => x.m)
    .map((x) => ({ version: Number(x.m![1]), file: path.join(HISTORY_DIR, x.f) }))
    .sort((a, b) => a.version - b.version);
}

const actor = { userId: 'u-fixture', role: 'viewer' as const };
const at = 1_767_225_600_000; // 2026-01-01T00:00:00Z: fixtures must not change between runs

/** Hand-written samples, one per payload kind, with the values a real client would send. */
export function sampleEvents(): Record<string, RoomEvent> {
  const base = { roomId: 'room-fixture', actor, occurredAt: at };
  return {
    'comment-posted': makeEvent({ ...base, eventId: '01940000-0000-7000-8000-000000000001', videoOffsetMs: 61_500, clientMsgId: 'c-1', payload: comment('弾幕 hello 👋', { mode: 'top', color: 0xff0000, size: 'large' }) }),
    'reaction-added': makeEvent({ ...base, eventId: '01940000-0000-7000-8000-000000000002', payload: { type: 'ReactionAdded', emoji: 'heart', count: 5 } }),
    'comment-deleted': makeEvent({ ...base, actor: { userId: 'mod-1', role: 'moderator' }, eventId: '01940000-0000-7000-8000-000000000003', payload: { type: 'CommentDeleted', targetEventId: '01940000-0000-7000-8000-000000000001', deletedBy: 'mod-1', reason: 'spam' } }),
    'comment-pinned': makeEvent({ ...base, eventId: '01940000-0000-7000-8000-000000000004', payload: { type: 'CommentPinned', targetEventId: '01940000-0000-7000-8000-000000000001', untilMs: at + 60_000, text: '弾幕 hello 👋' } }),
    'comment-unpinned': makeEvent({ ...base, eventId: '01940000-0000-7000-8000-000000000005', payload: { type: 'CommentUnpinned', targetEventId: '01940000-0000-7000-8000-000000000001' } }),
    'moderation-decided': makeEvent({ ...base, actor: { userId: 'moderation', role: 'system' }, eventId: '01940000-0000-7000-8000-000000000006', payload: { type: 'ModerationDecided', targetEventId: '01940000-0000-7000-8000-000000000001', targetUserId: 'u-fixture', verdict: 'delete', labels: ['link', 'wordlist'], score: 0.97, rule: 'wordlist' } }),
    'user-muted': makeEvent({ ...base, actor: { userId: 'moderation', role: 'system' }, eventId: '01940000-0000-7000-8000-000000000007', payload: { type: 'UserMuted', userId: 'u-fixture', untilMs: at + 600_000, kind: 'shadow', reason: 'repeat offender' } }),
    'room-settings-changed': makeEvent({ ...base, actor: { userId: 'mod-1', role: 'moderator' }, eventId: '01940000-0000-7000-8000-000000000008', payload: { type: 'RoomSettingsChanged', slowModeSec: 10, emoteOnly: null, extra: { theme: 'dark' } } }),
    'stream-started': makeEvent({ ...base, actor: { userId: 'streamer', role: 'broadcaster' }, eventId: '01940000-0000-7000-8000-000000000009', payload: { type: 'StreamStarted', title: 'Launch day' } }),
    'stream-ended': makeEvent({ ...base, actor: { userId: 'streamer', role: 'broadcaster' }, eventId: '01940000-0000-7000-8000-00000000000a', payload: { type: 'StreamEnded', reason: 'done' } }),
    'comment-released': makeEvent({
      ...base,
      actor: { userId: 'mod-1', role: 'moderator' },
      eventId: '01940000-0000-7000-8000-00000000000b',
      payload: {
        type: 'CommentReleased',
        targetEventId: '01940000-0000-7000-8000-000000000001',
        releasedBy: 'mod-1',
        authorId: 'u-fixture',
        authorRole: 'viewer',
        text: 'see https://example.com 👋',
        mode: 'top',
        color: 0xff0000,
        size: 'large',
        replyTo: null,
        postedAt: at - 5_000,
        postedVideoOffsetMs: 56_500,
      },
    }),
    'gift-sent': makeEvent({ ...base, eventId: '01940000-0000-7000-8000-00000000000c', videoOffsetMs: 62_000, clientMsgId: 'g-1', payload: { type: 'GiftSent', giftId: 'rocket', name: 'Rocket 🚀', count: 3, unitValue: 200, value: 600 } }),
  };
}

export function writeFixtures(toWire: (e: RoomEvent) => unknown): string {
  const newest = schemaVersions().at(-1)!;
  const type = avsc.Type.forSchema(JSON.parse(fs.readFileSync(newest.file, 'utf8')), { wrapUnions: 'auto' });
  const dir = path.join(FIXTURES_DIR, `v${newest.version}`);
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, ev] of Object.entries(sampleEvents())) {
    fs.writeFileSync(path.join(dir, `${name}.avro`), type.toBuffer(toWire(ev)));
    fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify(ev, null, 2) + '\n');
  }
  return dir;
}

export interface Fixture {
  version: number;
  name: string;
  writerSchema: Record<string, unknown>;
  body: Buffer;
  expected: RoomEvent;
}

export function readFixtures(): Fixture[] {
  const out: Fixture[] = [];
  for (const v of schemaVersions()) {
    const dir = path.join(FIXTURES_DIR, `v${v.version}`);
    if (!fs.existsSync(dir)) continue;
    const writerSchema = JSON.parse(fs.readFileSync(v.file, 'utf8')) as Record<string, unknown>;
    for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.avro')).sort()) {
      const name = f.replace(/\.avro$/, '');
      out.push({
        version: v.version,
        name,
        writerSchema,
        body: fs.readFileSync(path.join(dir, f)),
        expected: JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8')) as RoomEvent,
      });
    }
  }
  return out;
}
