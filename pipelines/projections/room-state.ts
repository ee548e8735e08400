/**
 * Room state: the current pin (with its expiry time — readers compare it with
 * their clock, the projection never does), room settings, muted users and
 * the stream's start (the origin of video offsets).
 *
 * Muted users: the hash `muted` (userId → JSON {untilMs, kind, reason, at},
 * what the gateway reads for one user) with the expiry index `muted:exp`;
 * each mute first drops the mutes that ended by its time (event time), so the
 * hash holds the mutes in force, not every mute the room ever had. Readers
 * still compare untilMs with their clock: an ended mute may stay until the
 * next one.
 */
import type { Cmd, Delta, PinState, Projection, RoomSettings } from '../projection.ts';
import { removalTarget } from './feed.ts';

/** The per-user hash of mutes and its expiry index (the fields are written, never read, by the projection). */
export const MUTED = { key: 'muted', index: 'muted:exp' } as const;

export interface RoomStateState {
  pin: PinState | null;
  settings: RoomSettings;
}

export const defaultSettings = (): RoomSettings => ({ slowModeSec: 0, emoteOnly: false, extra: {} });

export function roomStateProjection(): Projection<RoomStateState> {
  return {
    name: 'state',
    keySuffixes: ['pin', 'settings', MUTED.key, MUTED.index, 'stream', 'streamEnd'],
    initial: () => ({ pin: null, settings: defaultSettings() }),
    apply(state, e, keys) {
      const p = e.event.payload;
      const unpin = (): { state: RoomStateState; cmds: Cmd[]; deltas: Delta[] } => ({
        state: { ...state, pin: null },
        cmds: [{ op: 'DEL', key: keys.key('pin') }],
        deltas: [{ t: 'pin', pin: null }],
      });
      switch (p.type) {
        case 'CommentPinned': {
          const pin: PinState = { eventId: p.targetEventId, text: p.text, untilMs: p.untilMs, by: e.event.actor.userId, offset: e.offset };
          return { state: { ...state, pin }, cmds: [{ op: 'SET', key: keys.key('pin'), value: JSON.stringify(pin) }], deltas: [{ t: 'pin', pin }] };
        }
        case 'CommentUnpinned':
          return state.pin?.eventId === p.targetEventId ? unpin() : { state, cmds: [], deltas: [] };
        case 'CommentDeleted':
        case 'ModerationDecided': {
          const rm = removalTarget(e.event);
          return rm && state.pin?.eventId === rm.target ? unpin() : { state, cmds: [], deltas: [] };
        }
        case 'RoomSettingsChanged': {
          const settings: RoomSettings = {
            slowModeSec: p.slowModeSec ?? state.settings.slowModeSec,
            emoteOnly: p.emoteOnly ?? state.settings.emoteOnly,
            extra: { ...state.settings.extra, ...p.extra },
          };
          return { state: { ...state, settings }, cmds: [{ op: 'SET', key: keys.key('settings'), value: JSON.stringify(settings) }], deltas: [{ t: 'settings', settings }] };
        }
        case 'UserMuted': {
          const value = JSON.stringify({ untilMs: p.untilMs, kind: p.kind, reason: p.reason, at: e.event.occurredAt });
          const k = { key: keys.key(MUTED.key), index: keys.key(MUTED.index) };
          return {
            state,
            cmds: [
              { op: 'fieldsExpire', ...k, upTo: e.event.occurredAt },
              { op: 'fieldSet', ...k, field: p.userId, value, expireAt: p.untilMs ?? -1 },
            ],
            deltas: [{ t: 'mute', userId: p.userId, untilMs: p.untilMs, kind: p.kind }],
          };
        }
        case 'StreamStarted':
          return { state, cmds: [{ op: 'SET', key: keys.key('stream'), value: JSON.stringify({ startedAt: e.event.occurredAt, title: p.title, offset: e.offset, endedAt: null }) }], deltas: [] };
        case 'StreamEnded':
          return { state, cmds: [{ op: 'HSET', key: keys.key('streamEnd'), field: 'endedAt', value: String(e.event.occurredAt) }], deltas: [] };
        case 'CommentPosted':
        case 'ReactionAdded':
        case 'CommentReleased':
        case 'GiftSent':
          return { state, cmds: [], deltas: [] };
        default: {
          const never: never = p;
          throw new Error(`unhandled payload ${JSON.stringify(never)}`);
        }
      }
    },
  };
}
