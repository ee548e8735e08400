import { describe, expect, it } from 'vitest';
import { makeEvent } from '../../schemas/events.ts';
import { roomKeys } from '../projection.ts';
import { MemoryStore } from '../store.ts';
import { SHADOW_HISTORY, SHADOW_HISTORY_MS, shadowHistoryCmds, shadowMutesAt } from './feed.ts';

const keys = roomKeys('t:', 'feed', 1, 'r');
const mute = (userId: string, at: number, untilMs: number | null, kind: 'shadow' | 'visible' = 'shadow') =>
  ({ ...makeEvent({ roomId: 'r', actor: { userId: 'moderation', role: 'system' }, payload: { type: 'UserMuted', userId, untilMs, kind, reason: 'x' } }), occurredAt: at });

function historyAfter(...events: ReturnType<typeof mute>[]): Record<string, string> {
  const store = new MemoryStore();
  for (const e of events) store.exec(shadowHistoryCmds(keys, e));
  return Object.fromEntries(store.hash(keys.key(SHADOW_HISTORY.key)));
}

describe('the history of shadow mutes (for gaps filled from the log)', () => {
  it('remembers a shadow mute after it ended, and answers the mutes in force at a time', () => {
    const h = historyAfter(mute('a', 1_000, 5_000), mute('b', 2_000, null), mute('c', 3_000, 4_000, 'visible'), mute('a', 10_000, 12_000));
    expect(shadowMutesAt(h, 500)).toEqual([]);
    expect(new Map(shadowMutesAt(h, 4_500))).toEqual(new Map([['a', 5_000], ['b', null]]));
    expect(new Map(shadowMutesAt(h, 7_000))).toEqual(new Map([['b', null]]));
    expect(new Map(shadowMutesAt(h, 11_000))).toEqual(new Map([['a', 12_000], ['b', null]]));
  });

  it('forgets periods SHADOW_HISTORY_MS after they ended; a mute already over is not one', () => {
    const h = historyAfter(mute('a', 1_000, 5_000), mute('z', 2_000, 1_500), mute('b', 5_000 + SHADOW_HISTORY_MS, 6_000 + SHADOW_HISTORY_MS));
    expect(Object.keys(h).map((f) => f.split('@')[0])).toEqual(['b']);
  });

  it('keeps user ids with @ in them apart from the time', () => {
    expect(shadowMutesAt(historyAfter(mute('x@y', 1_000, 9_000)), 2_000)).toEqual([['x@y', 9_000]]);
  });
});
