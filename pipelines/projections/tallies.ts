/**
 * Reaction tallies: per room, totals per emoji and per-second buckets (the
 * last minute of them) so a client can show the last 10 s burst. The runner
 * applies a whole fetched batch of a room in one script, and tally deltas are
 * cumulative, so clients get one aggregated update per batch, not one per
 * reaction. Exact under redelivery because the fence skips applied offsets.
 */
import type { Cmd, Projection } from '../projection.ts';

export interface TallyState {
  totals: Record<string, number>;
  /** second → emoji → count, for the last BUCKET_SECONDS seconds seen. */
  secs: Record<string, Record<string, number>>;
}

export const BUCKET_SECONDS = 60;

export function talliesProjection(): Projection<TallyState> {
  return {
    name: 'tallies',
    initial: () => ({ totals: {}, secs: {} }),
    apply(state, e, keys) {
      const p = e.event.payload;
      if (p.type !== 'ReactionAdded') return { state, cmds: [], deltas: [] };
      const sec = Math.floor(e.event.occurredAt / 1000);
      const totals = { ...state.totals, [p.emoji]: (state.totals[p.emoji] ?? 0) + p.count };
      const bucket = { ...(state.secs[sec] ?? {}), [p.emoji]: (state.secs[sec]?.[p.emoji] ?? 0) + p.count };
      const secs: TallyState['secs'] = { ...state.secs, [sec]: bucket };
      const cmds: Cmd[] = [
        { op: 'HINCRBY', key: keys.key('total'), field: p.emoji, by: p.count },
        { op: 'HINCRBY', key: keys.key('sec'), field: `${sec}:${p.emoji}`, by: p.count },
      ];
      // Drop buckets that fell out of the window (relative to the newest second seen).
      const newest = Math.max(sec, ...Object.keys(secs).map(Number));
      for (const s of Object.keys(secs)) {
        if (Number(s) <= newest - BUCKET_SECONDS) {
          cmds.push({ op: 'HDEL', key: keys.key('sec'), fields: Object.keys(secs[s]!).map((emoji) => `${s}:${emoji}`) });
          delete secs[s];
        }
      }
      return { state: { totals, secs }, cmds, deltas: [{ t: 'tally', totals, second: sec, burst: bucket }] };
    },
  };
}
