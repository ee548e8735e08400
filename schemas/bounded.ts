/**
 * A bounds check of an Avro body against its writer schema, run before avsc
 * decodes it. avsc decodes trustingly: a map or array header claiming 2^31
 * entries makes it loop (or allocate) that many times whatever bytes follow —
 * one 71-byte record stalled or killed every consumer in the fuzz run — an
 * `int` beyond 32 bits decodes to a large number, and string bytes that are
 * not UTF-8 become U+FFFD silently. None of that may reach a projection, so
 * the body is walked once here with every count and length checked against
 * the bytes that remain, ints held to 32 bits, longs to safe integers, and
 * string bytes held to UTF-8. Hand-written because avsc has no bounded mode;
 * it follows the Avro 1.11 binary encoding section.
 */
import { isUtf8 } from 'node:buffer';
import type avsc from 'avsc';

class Bad extends Error {}

/** Undefined when the body is a well-formed encoding of `type` and nothing else; else what is wrong. */
export function checkAvroBody(type: avsc.Type, buf: Buffer): string | undefined {
  const r = { buf, pos: 0 };
  try {
    walk(type, r, 0);
    if (r.pos !== buf.length) return `${buf.length - r.pos} trailing bytes`;
    return undefined;
  } catch (err) {
    if (err instanceof Bad) return err.message;
    throw err;
  }
}

interface Reader {
  buf: Buffer;
  pos: number;
}

const MAX_DEPTH = 64;

/** A zig-zag varint, at most `maxBytes` long, as a number (exact up to 2^53). */
function varint(r: Reader, maxBytes: number, what: string): number {
  let n = 0;
  let mul = 1;
  for (let i = 0; i < maxBytes; i++) {
    if (r.pos >= r.buf.length) throw new Bad(`${what}: truncated`);
    const b = r.buf[r.pos++]!;
    n += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) {
      // zig-zag: n even → n/2, odd → -(n+1)/2
      const v = n % 2 === 0 ? n / 2 : -(n + 1) / 2;
      if (!Number.isSafeInteger(v)) throw new Bad(`${what}: beyond 2^53`);
      return v;
    }
    mul *= 128;
  }
  throw new Bad(`${what}: varint longer than ${maxBytes} bytes`);
}

function take(r: Reader, n: number, what: string): Buffer {
  if (n < 0 || r.pos + n > r.buf.length) throw new Bad(`${what}: length ${n} beyond the ${r.buf.length - r.pos} bytes left`);
  const out = r.buf.subarray(r.pos, r.pos + n);
  r.pos += n;
  return out;
}

/** Blocks of an array or map: each item needs at least `minItemBytes` bytes, so a count cannot outrun the body. */
function blocks(r: Reader, minItemBytes: number, what: string, item: () => void): void {
  for (;;) {
    let count = varint(r, 10, `${what} block count`);
    if (count === 0) return;
    if (count < 0) {
      count = -count;
      const size = varint(r, 10, `${what} block size`);
      if (size < 0 || size > r.buf.length - r.pos) throw new Bad(`${what}: block size ${size} beyond the body`);
    }
    if (count * minItemBytes > r.buf.length - r.pos) throw new Bad(`${what}: ${count} items cannot fit in ${r.buf.length - r.pos} bytes`);
    for (let i = 0; i < count; i++) item();
  }
}

function minBytes(t: avsc.Type): number {
  switch (t.typeName) {
    case 'null':
      return 0;
    case 'fixed':
      return (t as unknown as { size: number }).size;
    case 'record':
    case 'error':
      return (t as unknown as { fields: { type: avsc.Type }[] }).fields.reduce((a, f) => a + minBytes(f.type), 0);
    case 'float':
      return 4;
    case 'double':
      return 8;
    default:
      return 1;
  }
}

function walk(t: avsc.Type, r: Reader, depth: number): void {
  if (depth > MAX_DEPTH) throw new Bad('nested too deep');
  const name = t.typeName;
  switch (name) {
    case 'null':
      return;
    case 'boolean': {
      const b = take(r, 1, 'boolean')[0]!;
      if (b > 1) throw new Bad(`boolean byte ${b}`);
      return;
    }
    case 'int': {
      const v = varint(r, 5, 'int');
      if (v < -2147483648 || v > 2147483647) throw new Bad(`int ${v} beyond 32 bits`);
      return;
    }
    case 'long':
      varint(r, 10, 'long');
      return;
    case 'float':
      take(r, 4, 'float');
      return;
    case 'double':
      take(r, 8, 'double');
      return;
    case 'bytes':
      take(r, varint(r, 10, 'bytes length'), 'bytes');
      return;
    case 'string': {
      const s = take(r, varint(r, 10, 'string length'), 'string');
      if (!isUtf8(s)) throw new Bad('string bytes are not UTF-8');
      return;
    }
    case 'fixed':
      take(r, (t as unknown as { size: number }).size, 'fixed');
      return;
    case 'enum': {
      const i = varint(r, 5, 'enum index');
      const symbols = (t as unknown as { symbols: string[] }).symbols;
      if (i < 0 || i >= symbols.length) throw new Bad(`enum index ${i} of ${symbols.length} symbols`);
      return;
    }
    case 'array': {
      const items = (t as unknown as { itemsType: avsc.Type }).itemsType;
      blocks(r, Math.max(1, minBytes(items)), 'array', () => walk(items, r, depth + 1));
      return;
    }
    case 'map': {
      const values = (t as unknown as { valuesType: avsc.Type }).valuesType;
      // A key is a string: at least its length byte.
      blocks(r, 1 + minBytes(values), 'map', () => {
        const k = take(r, varint(r, 10, 'map key length'), 'map key');
        if (!isUtf8(k)) throw new Bad('map key bytes are not UTF-8');
        walk(values, r, depth + 1);
      });
      return;
    }
    case 'record':
    case 'error':
      for (const f of (t as unknown as { fields: { type: avsc.Type }[] }).fields) walk(f.type, r, depth + 1);
      return;
    default:
      if (name.startsWith('union')) {
        const types = (t as unknown as { types: avsc.Type[] }).types;
        const i = varint(r, 5, 'union index');
        if (i < 0 || i >= types.length) throw new Bad(`union index ${i} of ${types.length} branches`);
        walk(types[i]!, r, depth + 1);
        return;
      }
      // Logical types wrap an underlying type.
      if (name.startsWith('logical:')) {
        walk((t as unknown as { underlyingType: avsc.Type }).underlyingType, r, depth + 1);
        return;
      }
      throw new Bad(`unsupported Avro type ${name}`);
  }
}
