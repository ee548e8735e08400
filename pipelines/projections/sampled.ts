/**
 * Sampled feed for busy rooms: at most K comments per second per room,
 * chosen deterministically — by a stable hash of the event id within
 * one-second windows of event time, in log order — so live, rebuild and
 * replay pick exactly the same comments. Comments of the broadcaster,
 * moderators and admins are always kept, and so is a comment once
 * released from the review queue (a moderator chose it; it takes no place
 * in the window's count). A pinned comment reaches sampled viewers as the
 * room's pin (the room-state projection), live and in replay alike: a pin
 * adds no entry here, since one written without a delta would be seen by
 * snapshot readers only, never pushed nor replayed.
 *
 * The keep-probability of a window is K / (comments seen in the previous
 * window, or so far in this one, whichever is larger): the first comments of
 * a burst are not all taken just because the window has not filled yet. The
 * current probability is published as the room's sampling rate, so clients
 * can say "chat is moving fast".
 */
import type { Delta, PositionedEvent, Projection } from '../projection.ts';
import { feedEntryOf, isShadowed, releasedEntryOf, removal, removalTarget, shadowCmds, SHADOW_USERS } from './feed.ts';

/** The sampling window: a few numbers (shadow mutes are per-user fields, as in the feed). */
export interface SampledState {
  win: number;
  seen: number;
  kept: number;
  prevSeen: number;
  /** Keep-probability in the current window, rounded to 1/1000. */
  rate: number;
}

const PRIORITY_ROLES = new Set(['broadcaster', 'moderator', 'admin', 'system']);

/** FNV-1a over the UTF-16 code units, mapped to [0, 1): stable across runtimes and runs. */
export function hash01(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h / 0x100000000;
}

export interface SampleDecision {
  keep: boolean;
  state: SampledState;
}

/** The sampling rule alone (pure), shared with replay. */
export function sampleComment(state: SampledState, e: PositionedEvent, perSecond: number): SampleDecision {
  const sec = Math.floor(e.event.occurredAt / 1000);
  let { win, seen, kept, prevSeen } = state;
  if (sec !== win) {
    prevSeen = sec === win + 1 ? seen : 0;
    win = sec;
    seen = 0;
    kept = 0;
  }
  seen++;
  const p = Math.min(1, perSecond / Math.max(prevSeen, seen, 1));
  const priority = PRIORITY_ROLES.has(e.event.actor.role);
  const keep = priority || (kept < perSecond && hash01(e.event.eventId) < p);
  if (keep) kept++;
  return { keep, state: { ...state, win, seen, kept, prevSeen, rate: Math.round(p * 1000) / 1000 } };
}

export function sampledProjection(perSecond: number, maxItems: number): Projection<SampledState> {
  return {
    name: 'sampled',
    keySuffixes: ['z', 'idx'],
    initial: () => ({ win: 0, seen: 0, kept: 0, prevSeen: 0, rate: 1 }),
    users: SHADOW_USERS,
    apply(state, e, keys, users) {
      const trim = { op: 'feedTrim' as const, key: keys.key('z'), index: keys.key('idx'), keep: maxItems };
      const entry = feedEntryOf(e.event, e.offset);
      if (entry) {
        const d = sampleComment(state, e, perSecond);
        const deltas: Delta[] = [];
        // Tell clients when the rate moves by a visible step, not on every comment.
        if (Math.abs(d.state.rate - state.rate) >= 0.05 || (d.state.rate === 1) !== (state.rate === 1)) deltas.push({ t: 'rate', rate: d.state.rate });
        if (!d.keep) return { state: d.state, cmds: [], deltas };
        if (isShadowed(users, entry.userId, entry.occurredAt)) entry.shadow = true;
        deltas.push({ t: 'comment', entry });
        return {
          state: d.state,
          cmds: [{ op: 'feedAdd', key: keys.key('z'), index: keys.key('idx'), eventId: entry.eventId, offset: e.offset, member: JSON.stringify(entry) }, trim],
          deltas,
        };
      }
      const released = releasedEntryOf(e.event, e.offset);
      if (released) {
        if (isShadowed(users, released.userId, e.event.occurredAt)) released.shadow = true;
        return {
          state,
          cmds: [{ op: 'feedAdd', key: keys.key('z'), index: keys.key('idx'), eventId: released.eventId, offset: e.offset, member: JSON.stringify(released) }, trim],
          deltas: [{ t: 'comment', entry: released }],
        };
      }
      const rm = removalTarget(e.event);
      if (rm) {
        const r = removal(keys, e, rm.target, rm.reason);
        return { state, cmds: [...r.cmds, trim], deltas: r.deltas };
      }
      return { state, cmds: shadowCmds(keys, e.event), deltas: [] };
    },
  };
}
