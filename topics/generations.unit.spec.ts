import { describe, expect, it } from 'vitest';
import { AppError } from '../core/errors.ts';
import {
  currentGeneration,
  GENERATION_SPAN,
  generationGroup,
  generationOfTopic,
  generationTopic,
  initialGenerations,
  MAX_GENERATION,
  parseGenerations,
  positionOf,
  splitPosition,
  unsealed,
} from './generations.ts';
import { leaseVerdict, planGeneration, sealGeneration } from './repartition.ts';

describe('log positions across generations', () => {
  it('given generation 0, then a position is the plain offset (a log never repartitioned reads as before)', () => {
    expect(positionOf(0, 0)).toBe(0);
    expect(positionOf(0, '12345')).toBe(12345);
    expect(splitPosition(12345)).toEqual({ generation: 0, offset: 12345 });
  });

  it('orders every event of a generation before every event of the next, and splits back exactly', () => {
    const lastOfOld = positionOf(0, GENERATION_SPAN - 1);
    const firstOfNew = positionOf(1, 0);
    expect(firstOfNew).toBeGreaterThan(lastOfOld);
    for (const [g, o] of [[1, 0], [1, 77], [3, 2 ** 39 + 5], [MAX_GENERATION, GENERATION_SPAN - 1]] as const) {
      const p = positionOf(g, o);
      expect(Number.isSafeInteger(p)).toBe(true);
      expect(splitPosition(p)).toEqual({ generation: g, offset: o });
    }
    expect(positionOf(MAX_GENERATION, GENERATION_SPAN - 1)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('refuses offsets and generations a position cannot hold', () => {
    expect(() => positionOf(0, GENERATION_SPAN)).toThrow(AppError);
    expect(() => positionOf(MAX_GENERATION + 1, 0)).toThrow(AppError);
    expect(() => positionOf(-1, 0)).toThrow(AppError);
  });

  it('keeps "before anything" (-1) in generation 0', () => {
    expect(splitPosition(-1)).toEqual({ generation: 0, offset: -1 });
  });
});

describe('generation names', () => {
  it('names topics and groups: the declared ones for 0, suffixed after', () => {
    expect(generationTopic('room-events', 0)).toBe('room-events');
    expect(generationTopic('room-events', 2)).toBe('room-events.g2');
    expect(generationGroup('dm.processors', 0)).toBe('dm.processors');
    expect(generationGroup('dm.processors', 2)).toBe('dm.processors.g2');
  });

  it('recognises its own topics and nothing else (the dead-letter topic is not a generation)', () => {
    expect(generationOfTopic('room-events', 'room-events')).toBe(0);
    expect(generationOfTopic('room-events', 'room-events.g12')).toBe(12);
    for (const t of ['room-events.dlq', 'room-events.g', 'room-events.g0', 'room-events.g01', 'room-events.g1x', 'other.g1']) expect(generationOfTopic('room-events', t)).toBeUndefined();
  });
});

describe('the generation record', () => {
  const base = initialGenerations('ev', 2);

  it('plans the next generation with more partitions, and refuses one that would not grow', () => {
    const next = planGeneration(base, 'ev', 5, 1000);
    expect(next).toEqual({ generation: 1, topic: 'ev.g1', partitions: 5, createdAtMs: 1000 });
    expect(() => planGeneration(base, 'ev', 2, 1000)).toThrow(/more than/);
    expect(() => planGeneration(base, 'ev', 1, 1000)).toThrow(AppError);
  });

  it('while the old generation is not sealed, it is the one to finish, and no further generation is planned', () => {
    const switched = { list: [...base.list, planGeneration(base, 'ev', 5, 1000)] };
    expect(unsealed(switched)?.generation).toBe(0);
    expect(currentGeneration(switched).generation).toBe(1);
    expect(() => planGeneration(switched, 'ev', 9, 2000)).toThrow(/not sealed/);
    const sealed = sealGeneration(switched, 0, new Map([[0, '10'], [1, '0']]), 3000);
    expect(unsealed(sealed)).toBeUndefined();
    expect(sealed.list[0]).toMatchObject({ ends: { '0': '10', '1': '0' }, sealedAtMs: 3000 });
    expect(parseGenerations(JSON.stringify(sealed))).toEqual(sealed);
    expect(planGeneration(sealed, 'ev', 9, 4000).generation).toBe(2);
  });

  it('refuses a record it did not write', () => {
    for (const raw of ['', 'nope', '{}', '{"list":[]}', '{"list":[{"generation":1,"topic":"a","partitions":2},{"generation":1,"topic":"b","partitions":3}]}']) {
      expect(() => parseGenerations(raw)).toThrow(AppError);
    }
  });
});

describe('writer leases at a switch to generation 1', () => {
  const now = 1_000_000;
  it('a lease that reports the new generation lets the switch go on', () => {
    expect(leaseVerdict(`1:${now + 500}`, 1, now)).toBe('ok');
  });
  it('a live lease on the old generation (or none yet) holds it', () => {
    expect(leaseVerdict(`0:${now + 500}`, 1, now)).toBe('wait');
    expect(leaseVerdict(`-1:${now + 500}`, 1, now)).toBe('wait');
  });
  it('a lease that ended holds it until the longest wait for an ack has passed too', () => {
    expect(leaseVerdict(`0:${now - 100}`, 1, now, 1000)).toBe('wait');
    expect(leaseVerdict(`0:${now - 1001}`, 1, now, 1000)).toBe('gone');
  });
});
