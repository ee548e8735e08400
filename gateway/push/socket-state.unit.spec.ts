import { describe, expect, it } from 'vitest';
import { holdsBatches, isGone, transition, TRANSITIONS, type SocketEvent, type SocketState } from './socket-state.ts';

const STATES = Object.keys(TRANSITIONS) as SocketState[];
const EVENTS: SocketEvent[] = ['sent', 'resync', 'close', 'remove'];

describe('a socket in the push hub', () => {
  it('joins, goes live once sent its snapshot, resyncs and goes live again', () => {
    let s: SocketState = 'joining';
    for (const e of ['sent', 'resync', 'sent', 'resync', 'resync', 'sent'] as const) s = transition(s, e)!;
    expect(s).toBe('live');
    expect(transition('joining', 'resync')).toBe('joining'); // remembered, run after its first snapshot
  });

  it('holds batches exactly while its snapshot is read, and is written nothing once closing', () => {
    expect(STATES.filter(holdsBatches)).toEqual(['joining', 'resyncing']);
    expect(STATES.filter(isGone)).toEqual(['closing', 'removed']);
  });

  it('can be closed from any state but removed, removed from any, and nothing brings it back', () => {
    for (const s of STATES) {
      expect(transition(s, 'remove')).toBe(s === 'removed' ? undefined : 'removed');
      if (s !== 'removed') expect(transition(s, 'close')).toBe('closing');
    }
    for (const e of EVENTS) {
      expect(transition('removed', e)).toBeUndefined();
      expect([undefined, 'closing', 'removed']).toContain(transition('closing', e));
    }
    expect(transition('live', 'sent')).toBeUndefined(); // a live socket is not sent a first snapshot again
  });
});
