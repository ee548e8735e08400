/**
 * Gifts: per room, a leaderboard of the senders by total value and the
 * room's totals (value, gifts, senders). Gifts are messages in the room's one
 * stream (GiftSent, beside comments and reactions); each carries its value
 * as the catalogue had it when sent, so this fold reads nothing else and a
 * rebuild gives the same board whatever GIFTS says today.
 *
 * Constant work per event: every sender's own total is a per-user field
 * (`senders`: userId → {value, gifts, at}), loaded by the runner for the
 * batch's senders only; the state holds the top `size` senders and the
 * totals. That top list stays exact without ever reading the whole hash,
 * because totals only grow: a sender leaves the top only when someone passes
 * them, and comes back only by sending again — when their own field is read.
 *
 * Order: total value, highest first; equal totals by who reached that total
 * first (the position of the gift that made it), so the order is total and
 * the same in live, rebuild and replay.
 *
 * Redis: `board` (the Leaderboard as JSON, what readers serve: bounded by
 * `size`), `senders` (+ `senders:exp`, unused: totals never expire).
 */
import type { Cmd, GiftItem, GiftSender, Leaderboard, Projection } from '../projection.ts';

export type GiftState = Leaderboard;

export const emptyLeaderboard = (): Leaderboard => ({ top: [], totalValue: 0, totalGifts: 0, senders: 0 });

/** Leaderboard order: higher total first, then whoever reached their total first. */
export function compareSenders(a: GiftSender, b: GiftSender): number {
  return b.value - a.value || a.at - b.at || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0);
}

export function giftsProjection(size: number): Projection<GiftState> {
  const users = { suffix: 'senders', readsOf: (e: { payload: { type: string }; actor: { userId: string } }) => (e.payload.type === 'GiftSent' ? [e.actor.userId] : []) };
  return {
    name: 'gifts',
    keySuffixes: ['board'],
    initial: emptyLeaderboard,
    users,
    apply(state, e, keys, view) {
      const p = e.event.payload;
      if (p.type !== 'GiftSent') return { state, cmds: [], deltas: [] };
      const userId = e.event.actor.userId;
      const raw = view.get(userId);
      const prev = raw === undefined ? undefined : (JSON.parse(raw) as Omit<GiftSender, 'userId'>);
      const me: GiftSender = {
        userId,
        value: (prev?.value ?? 0) + p.value,
        gifts: (prev?.gifts ?? 0) + p.count,
        // A gift worth nothing leaves the total, and so the tie-break, where it was.
        at: prev && p.value === 0 ? prev.at : e.offset,
      };
      const top = state.top.filter((s) => s.userId !== userId);
      top.push(me);
      top.sort(compareSenders);
      if (top.length > size) top.length = size;
      const next: Leaderboard = {
        top,
        totalValue: state.totalValue + p.value,
        totalGifts: state.totalGifts + p.count,
        senders: state.senders + (prev ? 0 : 1),
      };
      const k = { key: keys.key(users.suffix), index: keys.key(`${users.suffix}:exp`) };
      const cmds: Cmd[] = [
        { op: 'fieldSet', ...k, field: userId, value: JSON.stringify({ value: me.value, gifts: me.gifts, at: me.at }), expireAt: -1 },
        { op: 'SET', key: keys.key('board'), value: JSON.stringify(next) },
      ];
      const gift: GiftItem = {
        kind: 'gift',
        offset: e.offset,
        eventId: e.event.eventId,
        userId,
        giftId: p.giftId,
        name: p.name,
        count: p.count,
        value: p.value,
        occurredAt: e.event.occurredAt,
        videoOffsetMs: e.event.videoOffsetMs,
      };
      return { state: next, cmds, deltas: [{ t: 'gift', gift, leaderboard: next }] };
    },
  };
}
