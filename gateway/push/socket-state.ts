/**
 * A socket's life in the push hub, named in one place (the hub used to keep
 * it in loose flags: connecting, closing, removed, and whether it had held
 * batches):
 *
 *   joining ──sent──▶ live ──resync──▶ resyncing ──sent──▶ live
 *      │ resync: remembered, run once its first snapshot is sent
 *   joining | live | resyncing ──close──▶ closing ──remove──▶ removed
 *   any ──remove──▶ removed        (its 'close' event: the peer left)
 *
 * `sent`: the socket was sent its snapshot (or snapshot + catch-up), and the
 * batches held for it meanwhile. While `joining` or `resyncing` the hub holds
 * the room's batches for it (`holdsBatches`); once `live` it gets the shared
 * bytes. Its stream (ordered, sampled, tallies: degradation for slowness) is
 * separate from this, and so are its slowness timers.
 */
export type SocketState = 'joining' | 'live' | 'resyncing' | 'closing' | 'removed';
export type SocketEvent = 'sent' | 'resync' | 'close' | 'remove';

export const TRANSITIONS: { readonly [S in SocketState]: Partial<Record<SocketEvent, SocketState>> } = {
  joining: { sent: 'live', resync: 'joining', close: 'closing', remove: 'removed' },
  live: { resync: 'resyncing', close: 'closing', remove: 'removed' },
  resyncing: { sent: 'live', resync: 'resyncing', close: 'closing', remove: 'removed' },
  closing: { close: 'closing', remove: 'removed' },
  removed: {},
};

/** The state after `event`, or undefined when `event` means nothing in `state` (the hub then leaves the socket as it is). */
export function transition(state: SocketState, event: SocketEvent): SocketState | undefined {
  return TRANSITIONS[state][event];
}

/** Its snapshot is being read: the room's batches are held for it. */
export function holdsBatches(s: SocketState): boolean {
  return s === 'joining' || s === 'resyncing';
}

/** Closing or removed: nothing more is written to it. */
export function isGone(s: SocketState): boolean {
  return s === 'closing' || s === 'removed';
}
