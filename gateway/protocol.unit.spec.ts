/** Positions on the wire: `<epoch>.<offset>`, every part an exact JavaScript number. */
import { describe, expect, it } from 'vitest';
import { formatPosition, parsePosition, POSITION_PATTERN } from './protocol.ts';

describe('parsePosition', () => {
  it('reads what formatPosition writes, up to 2^53 - 1 in each part', () => {
    for (const p of [{ epoch: 0, offset: -1 }, { epoch: 0, offset: 0 }, { epoch: 3, offset: 1234 }, { epoch: Number.MAX_SAFE_INTEGER, offset: Number.MAX_SAFE_INTEGER }]) {
      expect(parsePosition(formatPosition(p))).toEqual(p);
    }
  });

  it.each(['9007199254740992.0', '0.9007199254740992', '99999999999999999.0', '0.99999999999999999', '0.-2', '-1.0', '1e3.0', '0.1e3', '0.Infinity', 'NaN.0', '0.1.5', '0.', '.5', '', '0', ' 0.1', '0.1 ', '0x1.0'])(
    'refuses %j',
    (s) => {
      expect(parsePosition(s)).toBeUndefined();
    },
  );

  it('the schema pattern accepts exactly the syntax parsePosition reads', () => {
    const re = new RegExp(POSITION_PATTERN);
    expect(['0.-1', '12.34', '9007199254740991.9007199254740991'].every((s) => re.test(s))).toBe(true);
    expect(['0.-2', '1e3.0', '00000000000000000.0', ''].some((s) => re.test(s))).toBe(false);
  });
});
