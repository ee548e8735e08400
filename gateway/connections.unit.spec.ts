/** The connection registry's pure parts: which entries are live, and what a control message may say. */
import { describe, expect, it } from 'vitest';
import { closeReason, encodeControl, expiredFields, liveConnections, liveGateways, parseConnEntry, parseControl } from './connections.ts';

const now = 1_700_000_000_000;
const s = { gatewayStaleMs: 9_000, entryStaleMs: 180_000 };
const beat = (inst: string, at: number) => JSON.stringify({ inst, at });
const entry = (inst: string, rooms: Record<string, number>, at: number) => JSON.stringify({ inst, rooms, at });

describe('connection registry: live entries', () => {
  it('given entries of live gateways, when read, then each shows its rooms and socket count', () => {
    const beats = { a: beat('ia', now - 1000), b: beat('ib', now - 8000) };
    const fields = { a: entry('ia', { r1: 2 }, now - 60_000), b: entry('ib', { r1: 1, r2: 1 }, now) };
    expect(liveConnections(fields, beats, now, s)).toEqual([
      { gateway: 'a', rooms: { r1: 2 }, sockets: 2, updatedAtMs: now - 60_000, gatewaySeenAtMs: now - 1000 },
      { gateway: 'b', rooms: { r1: 1, r2: 1 }, sockets: 2, updatedAtMs: now, gatewaySeenAtMs: now - 8000 },
    ]);
  });

  it('ignores a gateway that stopped refreshing, or never said it is alive', () => {
    const beats = { dead: beat('i', now - 9001) };
    const fields = { dead: entry('i', { r: 1 }, now), unknown: entry('j', { r: 1 }, now) };
    expect(liveConnections(fields, beats, now, s)).toEqual([]);
    expect([...liveGateways(beats, now, s.gatewayStaleMs).keys()]).toEqual([]);
  });

  it('ignores the entries of an earlier life of a gateway restarted under the same id', () => {
    const beats = { a: beat('new', now) };
    expect(liveConnections({ a: entry('old', { r: 1 }, now - 1000) }, beats, now, s)).toEqual([]);
  });

  it('ignores entries not refreshed for longer than their staleness, empty ones and garbage', () => {
    const beats = { a: beat('i', now), b: beat('i', now), c: beat('i', now) };
    const fields = { a: entry('i', { r: 1 }, now - 180_001), b: entry('i', { r: 0 }, now), c: '{nope' };
    expect(liveConnections(fields, beats, now, s)).toEqual([]);
    expect(parseConnEntry(entry('i', { r: 1, bad: -1, worse: 1.5 }, now))?.rooms).toEqual({ r: 1 });
  });

  it('lets readers delete only entries that no live gateway would have left behind', () => {
    const fields = { old: entry('i', { r: 1 }, now - 180_001), fresh: entry('i', { r: 1 }, now - 1000), junk: 'x' };
    expect(expiredFields(fields, now, s.entryStaleMs).sort()).toEqual(['junk', 'old']);
  });
});

describe('control messages', () => {
  it('round-trips a disconnect, with or without a room', () => {
    const all = { cmd: 'disconnect' as const, user: 'u1', code: 4403, reason: 'banned: spam' };
    expect(parseControl(encodeControl(all))).toEqual(all);
    const one = { ...all, room: 'r1', code: 4410 };
    expect(parseControl(encodeControl(one))).toEqual(one);
  });

  it('refuses what is not a command it knows: bad JSON, other commands, no user, protocol close codes', () => {
    expect(parseControl('not json')).toBeUndefined();
    expect(parseControl('null')).toBeUndefined();
    expect(parseControl(JSON.stringify({ cmd: 'reboot', user: 'u', code: 4403, reason: '' }))).toBeUndefined();
    expect(parseControl(JSON.stringify({ cmd: 'disconnect', code: 4403, reason: '' }))).toBeUndefined();
    expect(parseControl(JSON.stringify({ cmd: 'disconnect', user: 'u', code: 1000, reason: '' }))).toBeUndefined();
    expect(parseControl(JSON.stringify({ cmd: 'disconnect', user: 'u', code: 4403.5, reason: '' }))).toBeUndefined();
    expect(parseControl(JSON.stringify({ cmd: 'disconnect', user: 'u', room: 7, code: 4403, reason: '' }))).toBeUndefined();
  });

  it('bounds the close reason to what a close frame can carry, without splitting a character', () => {
    const long = 'é'.repeat(200);
    const r = closeReason(long);
    expect(Buffer.byteLength(r)).toBeLessThanOrEqual(123);
    expect(r.endsWith('...')).toBe(true);
    expect(r).not.toContain('\uFFFD');
    expect(parseControl(JSON.stringify({ cmd: 'disconnect', user: 'u', code: 4403, reason: long }))?.reason).toBe(r);
  });
});
