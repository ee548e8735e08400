/** The archiver's pure parts: rows, batch cuts and tokens, migrations, import mapping. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { comment, makeEvent, PAYLOAD_TYPES, type RoomEvent } from '../schemas/events.ts';
import { cutBatch, tokenOf } from './archiver.ts';
import { displayOf, planRooms, readChatLines, roomEvents, roomIdFor, stableEventId, type ChatLine } from './import.ts';
import { loadMigrations, statementsOf } from './migrate.ts';
import { eventOf, rowOf } from './rows.ts';
import { cleanStatement } from './sql.ts';
import { ceilMinute, floorMinute } from './stats.ts';

const actor = { userId: 'u1', role: 'moderator' as const };
const one: Record<RoomEvent['payload']['type'], RoomEvent['payload']> = {
  CommentPosted: comment('弹幕 ✨', { mode: 'top', color: 0x00ff00, size: 'large', replyTo: 'e0' }),
  ReactionAdded: { type: 'ReactionAdded', emoji: 'fire', count: 7 },
  CommentDeleted: { type: 'CommentDeleted', targetEventId: 'e1', deletedBy: 'm', reason: 'spam' },
  CommentPinned: { type: 'CommentPinned', targetEventId: 'e1', untilMs: 1_767_225_660_000, text: 'pinned' },
  CommentUnpinned: { type: 'CommentUnpinned', targetEventId: 'e1' },
  ModerationDecided: { type: 'ModerationDecided', targetEventId: 'e1', targetUserId: 'u9', verdict: 'hold', labels: ['link', 'spam'], score: 0.75, rule: 'links' },
  UserMuted: { type: 'UserMuted', userId: 'u9', untilMs: null, kind: 'shadow', reason: 'flood' },
  RoomSettingsChanged: { type: 'RoomSettingsChanged', slowModeSec: 3, emoteOnly: null, extra: { lang: 'ja' } },
  StreamStarted: { type: 'StreamStarted', title: 'debut' },
  StreamEnded: { type: 'StreamEnded', reason: 'done' },
  CommentReleased: {
    type: 'CommentReleased',
    targetEventId: 'e1',
    releasedBy: 'm',
    authorId: 'u9',
    authorRole: 'viewer',
    text: 'see example.com',
    mode: 'scroll',
    color: 0xffffff,
    size: 'medium',
    replyTo: null,
    postedAt: 1_767_225_599_000,
    postedVideoOffsetMs: 4100,
  },
  GiftSent: { type: 'GiftSent', giftId: 'rose', name: 'Rose', count: 2, unitValue: 10, value: 20 },
};

describe('rows', () => {
  it('every kind of event becomes a row and comes back from it unchanged', () => {
    for (const type of PAYLOAD_TYPES) {
      const e = makeEvent({ roomId: 'r1', actor, occurredAt: 1_767_225_600_123, videoOffsetMs: type === 'CommentPosted' ? 4200 : null, clientMsgId: 'm-1', payload: one[type] });
      const row = rowOf(e, { topic: 't', partition: 2, offset: '41', timestamp: 1_767_225_600_200 });
      expect(row).toMatchObject({ event_id: e.eventId, room_id: 'r1', kind: type, occurred_at: e.occurredAt, user_id: 'u1', role: 'moderator', kafka_partition: 2, kafka_offset: 41 });
      // Over HTTP, 64-bit integers arrive as strings: eventOf takes both.
      const back = eventOf({ ...row, occurred_ms: String(row.occurred_at), video_offset_ms: row.video_offset_ms === null ? null : String(row.video_offset_ms) });
      expect(back).toEqual(e);
    }
  });

  it('typed columns carry what analytics needs', () => {
    const at = { topic: 't', partition: 0, offset: 1, timestamp: 0 };
    const row = (type: RoomEvent['payload']['type']) => rowOf(makeEvent({ roomId: 'r', actor, payload: one[type] }), at);
    expect(row('CommentPosted')).toMatchObject({ text: '弹幕 ✨', display_mode: 'top', color: 0x00ff00, size: 'large', reply_to: 'e0' });
    expect(row('ReactionAdded')).toMatchObject({ emoji: 'fire', reaction_count: 7 });
    expect(row('ModerationDecided')).toMatchObject({ target_event_id: 'e1', target_user_id: 'u9', verdict: 'hold', labels: ['link', 'spam'], score: 0.75, rule: 'links' });
    expect(row('UserMuted')).toMatchObject({ target_user_id: 'u9', until_at: null, mute_kind: 'shadow', reason: 'flood' });
    expect(row('CommentPinned')).toMatchObject({ target_event_id: 'e1', until_at: 1_767_225_660_000, text: 'pinned' });
  });
});

describe('batches', () => {
  it('cuts a fetched batch into inserts of at most N rows', () => {
    const offsets = [10, 11, 12, 13, 14, 15, 16];
    expect(cutBatch(offsets, 3)).toEqual([
      { first: 10, last: 12, start: 0, end: 3 },
      { first: 13, last: 15, start: 3, end: 6 },
      { first: 16, last: 16, start: 6, end: 7 },
    ]);
  });

  it('after a restart, re-forms exactly the insert journaled at the first offset, then goes on as usual', () => {
    expect(cutBatch([20, 21, 22, 23, 24, 25, 26, 27], 3, 24)).toEqual([
      { first: 20, last: 24, start: 0, end: 5 },
      { first: 25, last: 27, start: 5, end: 8 },
    ]);
    // Offsets may skip (dead letters are still in the range, transaction markers are not records).
    expect(cutBatch([20, 22, 25, 26], 10, 23)[0]).toEqual({ first: 20, last: 22, start: 0, end: 2 });
  });

  it('a token names the topic, partition and offset range: a retry of the same range has the same one', () => {
    expect(tokenOf('room-events', 3, 100, 4099)).toBe('room-events/3/100-4099');
  });
});

describe('migrations', () => {
  it('are numbered files, each with statements qualified by the configured database', () => {
    const ms = loadMigrations();
    expect(ms.map((m) => m.version)).toEqual([...ms.map((m) => m.version)].sort());
    expect(ms.length).toBeGreaterThanOrEqual(2);
    for (const m of ms) {
      const statements = statementsOf(m.sql, 'db_x');
      expect(statements.length).toBeGreaterThan(0);
      for (const s of statements) {
        expect(s).not.toContain('${database}');
        expect(s).toMatch(/^(\s*--[^\n]*\n|\s*\n)*\s*(CREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS `db_x`\.|ALTER TABLE `db_x`\.\w+ (ADD INDEX IF NOT EXISTS|MATERIALIZE INDEX) )/);
      }
    }
  });

  it('statement splitting leaves semicolons inside lines alone', () => {
    expect(statementsOf("-- a; comment\nSELECT 'a;b';\n\nSELECT 2;", 'd')).toEqual(["-- a; comment\nSELECT 'a;b'", 'SELECT 2']);
  });

  it('the SQL runner strips leading comments and a trailing semicolon', () => {
    expect(cleanStatement('-- top chatters\n-- per hour\nSELECT 1;\n')).toBe('SELECT 1');
  });

  it('stats ranges widen to whole minutes', () => {
    expect(floorMinute(1_767_225_659_999)).toBe(1_767_225_600_000);
    expect(ceilMinute(1_767_225_600_001)).toBe(1_767_225_660_000);
    expect(ceilMinute(1_767_225_600_000)).toBe(1_767_225_600_000);
  });
});

describe('import', () => {
  it('room names become valid room ids, stable and distinct', () => {
    expect(roomIdFor('nico:so40699478')).toBe('nico:so40699478');
    const a = roomIdFor('bili:2020.12.11 全团首播');
    expect(a).toMatch(/^bili:2020\.12\.11-[0-9a-f]{8}$/);
    expect(roomIdFor('bili:2020.12.11 全团首播')).toBe(a);
    expect(roomIdFor('bili:2020.12.11 嘉然')).not.toBe(a);
    expect(roomIdFor('全团')).toMatch(/^room-[0-9a-f]{8}$/);
    expect(roomIdFor('x'.repeat(100)).length).toBeLessThanOrEqual(64);
  });

  it('refuses a line with a lone surrogate before producing anything (the codec would refuse its event)', async () => {
    const file = path.join(os.tmpdir(), `import-${process.pid}-${Date.now()}.jsonl`);
    fs.writeFileSync(file, ['{"room":"r","offset_ms":1,"text":"fine 😀"}', '{"room":"r","offset_ms":2,"text":"bad \\ud800"}'].join('\n'));
    try {
      await expect(readChatLines(file)).rejects.toMatchObject({ code: 'ERR_IMPORT_BAD_LINE', message: expect.stringMatching(/:2: \/text is not well-formed/) });
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  it('display attributes from Bilibili and Niconico', () => {
    expect(displayOf({ mode: 1, size: 25, color: '#ffffff', pool: 0 })).toEqual({ mode: 'scroll', size: 'medium', color: 0xffffff });
    expect(displayOf({ mode: 5, size: 18, color: '#ff0000' })).toEqual({ mode: 'top', size: 'small', color: 0xff0000 });
    expect(displayOf({ mode: 4, size: 36 })).toEqual({ mode: 'bottom', size: 'large', color: 0xffffff });
    expect(displayOf({ pos: 'shita', size: 'big', color: 'red' })).toEqual({ mode: 'bottom', size: 'large', color: 0xff0000 });
    expect(displayOf({ pos: 'ue', size: 'small' })).toEqual({ mode: 'top', size: 'small', color: 0xffffff });
    expect(displayOf({ pos: 'naka', color: 'nope' })).toEqual({ mode: 'scroll', size: 'medium', color: 0xffffff });
  });

  it('stable event ids are UUIDv7-shaped, carry the time, and depend only on the seed', () => {
    const id = stableEventId(1_607_630_590_000, 'f\nroom\n1');
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(1_607_630_590_000);
    expect(stableEventId(1_607_630_590_000, 'f\nroom\n1')).toBe(id);
    expect(stableEventId(1_607_630_590_000, 'f\nroom\n2')).not.toBe(id);
  });

  const lines: ChatLine[] = [
    { room: 'a b', offset_ms: 2000, ts: 1_600_000_002_000, user: 'u1', text: 'two', kind: 'comment', extra: { mode: 1 } },
    { room: 'a b', offset_ms: -500, ts: 1_599_999_999_500, user: null, text: 'early', kind: 'comment' },
    { room: 'c', offset_ms: 10, ts: null, user: 'u2', text: 'x', kind: 'comment' },
  ];

  it('plans rooms: all of them, one by name, or the first under a given id', () => {
    expect(planRooms(lines, {}).map((p) => [p.room, p.lines.map((l) => l.offset_ms)])).toEqual([
      [roomIdFor('a b'), [-500, 2000]],
      ['c', [10]],
    ]);
    expect(planRooms(lines, { fromRoom: 'c', room: 'mine' }).map((p) => [p.source, p.room])).toEqual([['c', 'mine']]);
    expect(planRooms(lines, { room: 'mine' }).map((p) => p.source)).toEqual(['a b']);
    expect(planRooms(lines, { limit: 2 }).flatMap((p) => p.lines).length).toBe(2);
    expect(() => planRooms(lines, { fromRoom: 'zzz' })).toThrow(expect.objectContaining({ code: 'ERR_IMPORT_NO_ROOM' }));
    expect(() => planRooms(lines, { room: 'bad room' })).toThrow(expect.objectContaining({ code: 'ERR_IMPORT_ROOM_ID' }));
  });

  it('a room is framed by StreamStarted and StreamEnded; comments keep their video offsets and times', () => {
    const [plan] = planRooms(lines, {});
    const events = roomEvents(plan!, '/data/x.jsonl.gz', 1_700_000_000_000);
    expect(events.map((e) => [e.payload.type, e.videoOffsetMs, e.occurredAt])).toEqual([
      ['StreamStarted', 0, 1_600_000_000_000],
      ['CommentPosted', -500, 1_599_999_999_500],
      ['CommentPosted', 2000, 1_600_000_002_000],
      ['StreamEnded', 2000, 1_600_000_002_000],
    ]);
    expect(events[1]!.actor).toEqual({ userId: 'anonymous', role: 'viewer' });
    // The same file imported again gives the same ids (ClickHouse keeps one row per event).
    expect(roomEvents(plan!, '/elsewhere/x.jsonl.gz', 1).map((e) => e.eventId)).toEqual(events.map((e) => e.eventId));
    // Without ts the stream is placed so that it ended at the given time (the file's modification time).
    const [, c] = planRooms(lines, {});
    expect(roomEvents(c!, 'x', 1_700_000_000_000).map((e) => e.occurredAt)).toEqual([1_699_999_999_990, 1_700_000_000_000, 1_700_000_000_000]);
  });
});
