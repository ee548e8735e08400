/**
 * The tallies check compares the projection with the log up to the
 * projection's own fence, so a write that landed after the load stopped
 * waiting for it (in the log, maybe applied) is neither a loss nor a
 * duplicate — only a count the log cannot explain is.
 */
import { describe, expect, it } from 'vitest';
import type { Load } from './load.ts';
import { checkPhase, type LogView, type ProjectionView, type Row } from './verify.ts';

const row = (): Row => ({
  fault: 'processor-kill', repeats: 1, rate: 0, acked: 0,
  lostLog: 0, lostFeed: 0, lostTallies: 0, lostClickhouse: undefined,
  dupLog: 0, dupFeed: 0, dupTallies: 0, dupClickhouse: undefined,
  viewerGaps: 0, viewerDups: 0, resyncs: 0, recoverySec: [], refused: 0, unknown: 0, notes: [],
});
const load = { acked: new Map(), reactionAcks: new Map(), ackConflicts: 0, observers: [], refused: new Map(), unknown: 0 } as unknown as Load;
// Reactions at offsets 10..13 of room r, counts 1, 2, 3, 4 (10 in all).
const log = (): LogView => ({
  ids: new Map(), clientMsgIds: new Map(), comments: new Map(), records: 4,
  reactions: new Map([['r', 10]]),
  reactionsAt: new Map([['r', [[10, 1], [11, 2], [12, 3], [13, 4]]]]),
});
const proj = (total: number, fence: number): ProjectionView => ({ feed: new Map(), fences: new Map(), tallies: new Map([['r', total]]), tallyFences: new Map([['r', fence]]) });

describe('checkPhase: tallies against the log up to their fence', () => {
  it('given tallies that applied the log up to offset 12, when they hold 6, then nothing is lost or duplicated', () => {
    const r = row();
    checkPhase(r, load, log(), proj(6, 12));
    expect([r.lostTallies, r.dupTallies]).toEqual([0, 0]);
  });

  it('given a count the log up to the fence cannot explain, then it is a duplicate; a missing one a loss', () => {
    const dup = row();
    checkPhase(dup, load, log(), proj(7, 12));
    expect(dup.dupTallies).toBe(1);
    const lost = row();
    checkPhase(lost, load, log(), proj(5, 12));
    expect(lost.lostTallies).toBe(1);
  });

  it('given tallies that applied nothing, then an empty total is exact', () => {
    const r = row();
    checkPhase(r, load, log(), proj(0, -1));
    expect([r.lostTallies, r.dupTallies]).toEqual([0, 0]);
  });
});
