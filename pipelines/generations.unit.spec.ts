import { describe, expect, it } from 'vitest';
import { readToEnds } from './generations.ts';

describe('reading a sealed generation to its ends', () => {
  it('counts a partition that never had a record as read, and needs every other one committed at its end', () => {
    const ends = { '0': '5', '1': '0', '2': '3' };
    expect(readToEnds(ends, new Map([[0, '5'], [2, '3']]))).toBe(true);
    expect(readToEnds(ends, new Map([[0, '5'], [1, '-1'], [2, '4']]))).toBe(true);
    expect(readToEnds(ends, new Map([[0, '4'], [2, '3']]))).toBe(false);
    expect(readToEnds(ends, new Map([[0, '5']]))).toBe(false);
  });
});
