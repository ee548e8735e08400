/**
 * A hand-written replay scenario and its three views, worked out by hand from
 * the rules (not computed by the code under test). Shared by the unit spec
 * (in-memory source) and the int spec (Kafka → archiver → ClickHouse → HTTP).
 *
 * Timeline positions (`at`, ms since the stream started): the video offset
 * when the event has one, else occurredAt - T0 (StreamStarted is at T0 with
 * video offset 0).
 */
import { comment, makeEvent, type RoomEvent } from '../schemas/events.ts';
import type { ReplayItem } from './replay.ts';

export const T0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

export const SAMPLED_PER_SECOND = 5;
/** "Now" for the moderated view: frank's mute (until T0 + 9 s) has expired, alice's and eve's have not. */
export const NOW = T0 + 3_600_000;

/**
 * hash01 of the ids of the second burst window (FNV-1a, pipelines/projections/sampled.ts),
 * checked against the code in the unit spec; the sampled expectations below follow from them.
 */
export const BURST_B_HASHES: [string, number][] = [
  ['bb-apple', 0.7646],
  ['bb-banana', 0.236],
  ['bb-cherry', 0.3866],
  ['bb-fig', 0.6881],
  ['bb-damson', 0.0932],
  ['bb-grape', 0.8582],
  ['bb-elder', 0.2422],
  ['bb-kiwi', 0.2873],
  ['bb-lemon', 0.5239],
  ['bb-nectar', 0.1885],
];

const viewer = (userId: string) => ({ userId, role: 'viewer' as const });
const mod = { userId: 'm', role: 'moderator' as const };
const system = { userId: 'moderation', role: 'system' as const };

/**
 * The room's events in log order. Ids are readable on purpose (the schema only
 * asks for a non-empty string) and the same in every room: sampling hashes them.
 */
export function scenario(room: string): RoomEvent[] {
  const ev = (id: string, actor: RoomEvent['actor'], dt: number, videoOffsetMs: number | null, payload: RoomEvent['payload']): RoomEvent =>
    makeEvent({ eventId: id, roomId: room, actor, occurredAt: T0 + dt, videoOffsetMs, payload });
  const id = (x: string) => x;
  const events: RoomEvent[] = [
    ev('start', { userId: 'b', role: 'broadcaster' }, 0, 0, { type: 'StreamStarted', title: 'replay scenario' }),
    ev('c1', viewer('alice'), 1000, 1000, comment('hello')),
    ev('c2', viewer('bob'), 2000, 2000, comment('buy followers at example.com')),
    ev('c3', viewer('carol'), 3000, 3000, comment('hi all', { mode: 'top', color: 0xff0000 })),
    ev('pin-c3', mod, 3500, null, { type: 'CommentPinned', targetEventId: id('c3'), untilMs: null, text: 'hi all' }),
    ev('del-c2', mod, 4000, null, { type: 'CommentDeleted', targetEventId: id('c2'), deletedBy: 'm', reason: 'spam' }),
    // Posted after the deletion in the log, but its viewer's video was behind: 2.5 s on the timeline.
    ev('c4', viewer('dave'), 5000, 2500, comment('what did I miss')),
    ev('hold-c4', system, 5500, null, { type: 'ModerationDecided', targetEventId: id('c4'), targetUserId: 'dave', verdict: 'hold', labels: ['link'], score: 0.9, rule: 'links' }),
    ev('mute-eve', system, 6000, null, { type: 'UserMuted', userId: 'eve', untilMs: null, kind: 'shadow', reason: 'flood' }),
    ev('c5', viewer('eve'), 7000, 7000, comment('nobody sees this')),
    ev('c6', viewer('frank'), 8000, 8000, comment('frank was here')),
    ev('mute-frank', mod, 8500, null, { type: 'UserMuted', userId: 'frank', untilMs: T0 + 9000, kind: 'visible', reason: 'cool down' }),
    ev('mute-alice', mod, 9500, null, { type: 'UserMuted', userId: 'alice', untilMs: null, kind: 'visible', reason: 'abuse' }),
    ev('unpin-c3', mod, 10_000, null, { type: 'CommentUnpinned', targetEventId: id('c3') }),
    ev('heart', viewer('bob'), 10_500, 10_500, { type: 'ReactionAdded', emoji: 'heart', count: 3 }),
    ev('slow', mod, 11_000, null, { type: 'RoomSettingsChanged', slowModeSec: 5, emoteOnly: null, extra: {} }),
  ];
  // Burst A, one second of event time: 6 viewers, a moderator, 1 more viewer.
  ['ba-1', 'ba-2', 'ba-3', 'ba-4', 'ba-5', 'ba-6'].forEach((x, i) => events.push(ev(x, viewer(`fan${i}`), 20_000 + i * 100, 20_000 + i * 100, comment(`wow ${x}`))));
  events.push(ev('ba-mod', mod, 20_700, 20_700, comment('please keep it civil')));
  events.push(ev('ba-7', viewer('fan7'), 20_800, 20_800, comment('wow ba-7')));
  // Burst B, the next second: ids chosen for their hashes (BURST_B_HASHES).
  BURST_B_HASHES.forEach(([x], i) => events.push(ev(x, viewer(`fan-${x}`), 21_000 + i * 90, 21_000 + i * 90, comment(`more ${x}`))));
  events.push(ev('end', { userId: 'b', role: 'broadcaster' }, 30_000, 30_000, { type: 'StreamEnded', reason: 'done' }));
  return events;
}

/** One line per item: `<at> <kind> <subject>`, subject = comment id, removed comment id, or pinned comment id / `-`. */
export function describeItem(i: ReplayItem): string {
  if (i.kind === 'comment') return `${i.at} comment ${i.eventId}`;
  if (i.kind === 'delete') return `${i.at} delete ${i.eventId}`;
  if (i.kind === 'gift') return `${i.at} gift ${i.eventId}`;
  return `${i.at} pin ${i.pin ? i.pin.eventId : '-'}`;
}

const burstA = ['20000 comment ba-1', '20100 comment ba-2', '20200 comment ba-3', '20300 comment ba-4', '20400 comment ba-5'];
const burstAAll = [...burstA, '20500 comment ba-6', '20700 comment ba-mod', '20800 comment ba-7'];
const burstBAll = BURST_B_HASHES.map(([x], i) => `${21_000 + i * 90} comment ${x}`);

/**
 * What viewers saw live: c2 shows until its deletion at 4 s, c4 (placed at 2.5 s
 * by its video offset) until its hold at 5.5 s; eve was shadow-muted, so c5
 * was shown to her alone; the pin of c3 from 3.5 s to 10 s.
 */
export const EXPECTED_LIVE = [
  '1000 comment c1',
  '2000 comment c2',
  '2500 comment c4',
  '3000 comment c3',
  '3500 pin c3',
  '4000 delete c2',
  '5500 delete c4',
  '8000 comment c6',
  '10000 pin -',
  ...burstAAll,
  ...burstBAll,
];

/**
 * Moderated as of NOW: c2 deleted and c4 held (removed, no tombstones); alice
 * and eve are muted now (c1 and c5 removed); frank's mute expired (c6 stays).
 */
export const EXPECTED_MODERATED = ['3000 comment c3', '3500 pin c3', '8000 comment c6', '10000 pin -', ...burstAAll, ...burstBAll];

/**
 * Sampled, 5 per second: outside the bursts every second has one comment (kept).
 * Burst A (nothing in the second before, so p = 1): ba-1..ba-5 kept, ba-6 over
 * the cap, ba-mod kept (moderators always are), ba-7 over the cap.
 * Burst B (8 seen the second before, so p = 5/8 = 0.625 up to the 8th comment,
 * then 5/9, 5/10): apple 0.7646 ✗, banana 0.2360 ✓, cherry 0.3866 ✓, fig
 * 0.6881 ✗, damson 0.0932 ✓, grape 0.8582 ✗, elder 0.2422 ✓, kiwi 0.2873 ✓
 * (5 kept: the cap), lemon and nectar ✗ (cap reached).
 */
export const EXPECTED_SAMPLED = [
  '1000 comment c1',
  '2000 comment c2',
  '2500 comment c4',
  '3000 comment c3',
  '3500 pin c3',
  '4000 delete c2',
  '5500 delete c4',
  '8000 comment c6',
  '10000 pin -',
  ...burstA,
  '20700 comment ba-mod',
  '21090 comment bb-banana',
  '21180 comment bb-cherry',
  '21360 comment bb-damson',
  '21540 comment bb-elder',
  '21630 comment bb-kiwi',
];
