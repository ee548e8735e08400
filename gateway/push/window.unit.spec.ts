import { describe, expect, it } from 'vitest';
import type { FeedEntry } from '../../pipelines/projection.ts';
import type { SnapshotMessage } from '../protocol.ts';
import { applyNotification, readWindow, startWindow } from './window.ts';

const entry = (offset: number, text = `c${offset}`, extra: Partial<FeedEntry> = {}): FeedEntry => ({
  kind: 'comment', offset, eventId: `e${offset}`, userId: 'u', role: 'viewer', text, mode: 'scroll', color: 0xffffff, size: 'medium', occurredAt: 1_700_000_000_000 + offset, videoOffsetMs: null, replyTo: null, ...extra,
});
const snap = (items: FeedEntry[]): SnapshotMessage => ({
  type: 'snapshot', room: 'r', view: 'ordered', position: { offset: items.at(-1)?.offset ?? -1, epoch: 3 }, items, pinned: null,
  tallies: { totals: {}, lastSeconds: {} }, viewers: 1, settings: { slowModeSec: 0, emoteOnly: false, extra: {} }, rate: 1,
});

describe('a room window', () => {
  it('appends comments after its floor, skips those it has, keeps the newest maxItems like the feed', () => {
    const w = startWindow('ordered', { msg: snap([entry(1), entry(2)]), floor: 2, oldestOffset: 1 });
    expect(applyNotification(w, 'feed', [{ t: 'comment', entry: entry(2) }, { t: 'comment', entry: entry(5) }, { t: 'comment', entry: entry(7) }], 3)).toBe(true);
    expect(w.msg.items.map((i) => i.offset)).toEqual([2, 5, 7]);
    expect([w.floor, w.oldestOffset, w.msg.position]).toEqual([7, 2, { offset: 7, epoch: 3 }]);
  });

  it('replaces a deleted comment with the tombstone the feed holds; gives up on a deletion without its fields', () => {
    const w = startWindow('ordered', { msg: snap([entry(1), entry(2)]), floor: 2, oldestOffset: 1 });
    applyNotification(w, 'feed', [{ t: 'delete', eventId: 'e1', offset: 4, reason: 'typo', deletionId: 'd4', occurredAt: 9 }], 10);
    expect(w.msg.items).toEqual([entry(2), { kind: 'delete', offset: 4, eventId: 'e1', deletionId: 'd4', occurredAt: 9, reason: 'typo' }]);
    expect(applyNotification(w, 'feed', [{ t: 'delete', eventId: 'e2', offset: 6, reason: 'old processor' }], 10)).toBe(false);
  });

  it('follows tallies, pin and settings; ignores the sampled feed and mutes; a read drops expired pins and old tally seconds', () => {
    const w = startWindow('ordered', { msg: snap([]), floor: -1, oldestOffset: undefined });
    applyNotification(w, 'sampled', [{ t: 'comment', entry: entry(3) }, { t: 'rate', rate: 0.5 }], 10);
    applyNotification(w, 'tallies', [{ t: 'tally', totals: { heart: 5 }, second: 100, burst: { heart: 2 } }], 10);
    applyNotification(w, 'tallies', [{ t: 'tally', totals: { heart: 6 }, second: 105, burst: { heart: 1 } }], 10);
    applyNotification(w, 'state', [{ t: 'pin', pin: { eventId: 'e1', text: 'hi', untilMs: 50_000, by: 'm', offset: 1 } }, { t: 'settings', settings: { slowModeSec: 5, emoteOnly: true, extra: {} } }, { t: 'mute', userId: 'x', untilMs: null, kind: 'shadow' }], 10);
    expect(w.msg.items).toEqual([]);
    expect(w.msg.rate).toBe(1);
    const early = readWindow(w, 40_000, 7);
    expect(early.msg.pinned?.eventId).toBe('e1');
    expect(early.msg.viewers).toBe(7);
    expect(early.msg.settings.slowModeSec).toBe(5);
    const later = readWindow(w, 112_000, 7);
    expect(later.msg.pinned).toBeNull();
    expect(later.msg.tallies).toEqual({ totals: { heart: 6 }, lastSeconds: { '105': { heart: 1 } } });
    // A read is a copy: sending it never changes the window.
    later.msg.items.push(entry(99));
    expect(w.msg.items).toEqual([]);
  });
});

describe('the batch interval', () => {
  it('is the minimum while a room is quiet, grows with its rate, and stops at the maximum', async () => {
    const { batchInterval } = await import('./hub.ts');
    expect([0, 50, 100].map((r) => batchInterval(r, 10, 50))).toEqual([10, 10, 10]);
    expect(batchInterval(300, 10, 50)).toBe(30);
    expect([500, 5000, 1e6].map((r) => batchInterval(r, 10, 50))).toEqual([50, 50, 50]);
  });
});

describe('tallies in one batch', () => {
  it('keep only the last event of each second, in place; other events untouched', async () => {
    const { coalesceTallies } = await import('./hub.ts');
    const t = (second: number, n: number) => ({ ev: { t: 'tally' as const, totals: { heart: n }, second, burst: { heart: n } } });
    const c = { ev: { t: 'comment' as const, entry: entry(1) } };
    const list = [t(100, 1), c, t(100, 2), t(101, 3), t(101, 4)];
    expect(coalesceTallies(list)).toEqual([c, list[2], list[4]]);
    expect(coalesceTallies([c])).toEqual([c]);
  });
});
