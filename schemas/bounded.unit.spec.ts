/** The bounds check that runs before avsc decodes a body (poison found by the fuzz run). */
import avsc from 'avsc';
import { describe, expect, it } from 'vitest';
import { checkAvroBody } from './bounded.ts';
import { loadRoomEventSchema, toWire } from './codec.ts';
import { comment, makeEvent } from './events.ts';

const t = avsc.Type.forSchema({
  type: 'record',
  name: 'T',
  fields: [
    { name: 'n', type: 'int' },
    { name: 's', type: 'string' },
    { name: 'tags', type: { type: 'array', items: 'string' } },
    { name: 'extra', type: { type: 'map', values: 'string' } },
    { name: 'opt', type: ['null', 'long'] },
  ],
});
const ok = { n: 7, s: 'héllo 弹幕', tags: ['a'], extra: { k: 'v' }, opt: 5 };
const zz = (n: number) => {
  // zig-zag varint, as Avro writes ints and longs
  let v = n >= 0 ? n * 2 : -n * 2 - 1;
  const out: number[] = [];
  while (v >= 128) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
};
const str = (s: string | Buffer) => {
  const b = typeof s === 'string' ? Buffer.from(s) : s;
  return [...zz(b.length), ...b];
};

describe('checkAvroBody', () => {
  it('accepts what avsc writes, for a test schema and for the RoomEvent schema', () => {
    expect(checkAvroBody(t, t.toBuffer(ok))).toBeUndefined();
    const room = avsc.Type.forSchema(loadRoomEventSchema() as avsc.Schema, { wrapUnions: 'auto' });
    const e = makeEvent({ roomId: 'r', actor: { userId: 'u', role: 'viewer' }, payload: comment('弹幕 ❤️ 🏴󠁧󠁢󠁥󠁮󠁧󠁿') });
    expect(checkAvroBody(room, room.toBuffer(toWire(e)))).toBeUndefined();
  });

  it.each([
    ['an int beyond 32 bits', Buffer.from([...zz(2 ** 31), ...str('x'), 0, 0, 0])],
    ['a map claiming 2^31 entries', Buffer.from([...zz(1), ...str('x'), 0, ...zz(2 ** 31)])],
    ['an array claiming 2^31 items', Buffer.from([...zz(1), ...str('x'), ...zz(2 ** 31)])],
    ['a negative block count with a size beyond the body', Buffer.from([...zz(1), ...str('x'), ...zz(-1), ...zz(1000)])],
    ['string bytes that are not UTF-8', Buffer.from([...zz(1), ...str(Buffer.from([0x41, 0xf8, 0x88, 0x80, 0x80, 0x80, 0x42])), 0, 0, 0])],
    ['a lone surrogate written as bytes', Buffer.from([...zz(1), ...str(Buffer.from([0xed, 0xa0, 0x80])), 0, 0, 0])],
    ['a string longer than the body', Buffer.from([...zz(1), ...zz(50), 0x41])],
    ['a union index out of range', Buffer.from([...zz(1), ...str('x'), 0, 0, ...zz(5)])],
    ['a varint that never ends', Buffer.from([...zz(1), ...str('x'), 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
    ['trailing bytes', Buffer.concat([t.toBuffer(ok), Buffer.from([0])])],
    ['a truncated body', t.toBuffer(ok).subarray(0, 5)],
  ])('refuses %s', (_what, body) => {
    expect(checkAvroBody(t, body)).toEqual(expect.any(String));
  });

  it('refuses a hostile count from the header alone, never looping over the claimed entries', () => {
    const body = Buffer.from([...zz(1), ...str('x'), 0, ...zz(2 ** 40)]);
    expect(checkAvroBody(t, body)).toMatch(/2^40|1099511627776 items cannot fit/);
  });
});
