/**
 * Reaction tallies: per room, totals per emoji and per-second buckets (the
 * last minute of them) so a client can show the last 10 s burst. The runner
 * applies a whole fetched batch of a room in one script, and tally deltas are
 * cumulative, so clients get one aggregated update per batch, not one per
 * reaction. Exact under redelivery because the fence skips applied offsets.
 *
 * The buckets live in Redis only (`sec`: `<second>:<emoji>` → count); the
 * state keeps the totals (one number per emoji), the newest second seen and
 * its bucket — constant per event, whatever the room's age. When the newest
 * second moves on, the seconds that fell out of the window are deleted by
 * name (every emoji the room has counted, for each of those seconds; the
 * whole hash when the jump is a window or more), in event time, so replay and
 * rebuild drop exactly the same buckets.
 */
import type { Cmd, Projection } from '../projection.ts';

export interface TallyState {
  totals: Record<string, number>;
  /** The newest second (event time) any reaction was counted in; null before the first. */
  newest: number | null;
  /** That second's bucket: emoji → count. */
  burst: Record<string, number>;
}

export const BUCKET_SECONDS = 60;

export function talliesProjection(): Projection<TallyState> {
  return {
    name: 'tallies',
    keySuffixes: ['total', 'sec'],
    initial: () => ({ totals: {}, newest: null, burst: {} }),
    apply(state, e, keys) {
      const p = e.event.payload;
      if (p.type !== 'ReactionAdded') return { state, cmds: [], deltas: [] };
      const sec = Math.floor(e.event.occurredAt / 1000);
      const cmds: Cmd[] = [{ op: 'HINCRBY', key: keys.key('total'), field: p.emoji, by: p.count }];
      // `?? null`: a state written before buckets left it ({totals, secs}) starts the window afresh.
      let newest = state.newest ?? null;
      let burst = state.burst ?? {};
      if (newest === null || sec > newest) {
        // Buckets at or below (new newest - window) leave: seconds (newest - window, sec - window].
        if (newest !== null && sec - newest >= BUCKET_SECONDS) {
          cmds.push({ op: 'DEL', key: keys.key('sec') });
        } else if (newest !== null) {
          const emojis = Object.keys(state.totals);
          const fields: string[] = [];
          for (let s = newest - BUCKET_SECONDS + 1; s <= sec - BUCKET_SECONDS; s++) for (const emoji of emojis) fields.push(`${s}:${emoji}`);
          if (fields.length > 0) cmds.push({ op: 'HDEL', key: keys.key('sec'), fields });
        }
        newest = sec;
        burst = {};
      }
      // A reaction late by a window or more falls out at once: it is only counted in the totals.
      if (sec > newest - BUCKET_SECONDS) cmds.push({ op: 'HINCRBY', key: keys.key('sec'), field: `${sec}:${p.emoji}`, by: p.count });
      if (sec === newest) burst = { ...burst, [p.emoji]: (burst[p.emoji] ?? 0) + p.count };
      const totals = { ...state.totals, [p.emoji]: (state.totals[p.emoji] ?? 0) + p.count };
      // The newest second's bucket: a late reaction's own second is in the totals and in Redis, the burst shows the newest.
      return { state: { totals, newest, burst }, cmds, deltas: [{ t: 'tally', totals, second: newest, burst }] };
    },
  };
}
