/**
 * The generators of `npm run fuzz` (fast-check): each case is something an
 * attacker could send the running system — an HTTP request, a WebSocket
 * session, a replay cursor, a record on the event topic — together with its
 * classification, made **by construction**: a case is `valid` when every part
 * of it is something the API promises to take (README: routes, "Who may do
 * what", the input rules), and `invalid`, with the reasons in `why`, as soon as
 * one part is something it promises to refuse. The classification never asks
 * the product: it follows from how the case was built and from JSON's and
 * HTTP's own rules, so the driver (run.ts) can judge what the system answers.
 *
 * Cases are plain JSON-printable data, so a counterexample prints and replays:
 * tokens are specs the driver signs with the world's secret when it sends
 * them, and what exists only at run time (a seeded comment's event id, a
 * cursor the API issued, the registered schema id) is a placeholder or an
 * index the driver resolves.
 */
import fc from 'fast-check';

export const FAMILIES = ['http-body', 'http-query', 'ws', 'cursor', 'poison'] as const;
export type Family = (typeof FAMILIES)[number];

// ---------------------------------------------------------------------------
// The rules the classification follows (README, gateway section), written out
// here rather than imported, so a product change that breaks a promise shows.
// ---------------------------------------------------------------------------

export const BODY_LIMIT = 16_384; // GATEWAY_BODY_LIMIT_BYTES (default)
export const EMOJIS = ['heart', 'fire', 'laugh', 'clap', 'wow', 'sad']; // GATEWAY_EMOJIS (default): names …
/** … and the emoji themselves, which clients may send instead (variation selectors ignored). */
export const EMOJI_CHARS = ['❤️', '❤', '🔥', '😂', '👏', '😮', '😢'];
const isEmoji = (s: string) => EMOJIS.includes(s) || EMOJI_CHARS.includes(s) || EMOJI_CHARS.includes(s.replace(/[\uFE0E\uFE0F]/g, ''));
export const MAX_TIME_MS = 8.64e15;
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;
export const MAX_TEXT = 200; // code points after normalisation
export const MAX_RAW_TEXT = 2000; // code points before
export const REPLAY_MAX_PAGE = 5000; // REPLAY_MAX_PAGE_ITEMS (default)
export const TALLY_MAX_WINDOW_MS = 24 * 3_600_000; // a tally timeline's longest window (gateway/replay.ts)
export const HELD_PAGE_MAX = 200; // a review-queue page's largest limit (gateway/moderation.ts)
const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
const USER_RE = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$/;
const CMID_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

/**
 * Comments the driver posts before the run, so deletions and pins have real
 * targets: comment i is in room seedRoom(i), written by seedAuthor(i). A case
 * names one with a placeholder exactly as long as an event id (a UUIDv7), so
 * body sizes are known when the case is built.
 */
export const SEEDS = 32;
export const SEED_ROOMS = 4;
export const seedRoom = (i: number) => `seed-${i % SEED_ROOMS}`;
export const seedAuthor = (i: number) => `a${Math.floor(i / SEED_ROOMS) % 4}`;
export const EVENT_ID_LENGTH = 36;
export const seedPlaceholder = (i: number) => `@@seed:${i % SEEDS}@@`.padEnd(EVENT_ID_LENGTH, '#');
export const SEED_PLACEHOLDER = /@@seed:(\d+)@@#*/g;

/** Users the driver's tokens name never start with T; admin cases ban, revoke and disconnect only T… users. */
export const ADMIN_SUB = 'ops';

/** Rooms the poison family writes to (key = room, so poison and valid records share partitions). */
export const POISON_ROOMS = 6;
export const poisonRoom = (i: number) => `poison-${i % POISON_ROOMS}`;

/** Why a case is invalid; empty when it is valid. */
export interface Judged {
  valid: boolean;
  why: string[];
  /** Error codes a valid case may still get from the state of the room (a comment deleted meanwhile, nothing pinned, a retry in flight). */
  allow?: string[];
}

interface Part<T> {
  value: T;
  why: string[];
}
const ok = <T>(value: T): Part<T> => ({ value, why: [] });
const bad = <T>(value: T, why: string): Part<T> => ({ value, why: [why] });
const weighted = <T>(...items: [number, fc.Arbitrary<T>][]) => fc.oneof(...items.map(([weight, arbitrary]) => ({ weight, arbitrary })));

// ---------------------------------------------------------------------------
// Characters
// ---------------------------------------------------------------------------

const chars = (s: string) => [...s];
/** Visible, NFC-stable, never composing with each other, never whitespace: a comment made of them shows exactly them. */
const VISIBLE = chars('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!?.,:;-_()[]<>/\\\'"&#%$@*+=~^`|{}弾幕日本語中文字한국ßøéñçüΩж😀🎉🔥❤👍🐱');
/**
 * Removed by normalisation wherever they stand (README: controls, zero-width,
 * bidi controls, stray tags): a comment keeps its length without them.
 */
const STRIPPED = [
  ...chars('\u0000\u0001\u0007\u0008\t\n\u000b\u000c\r\u001b\u001f\u007f\u0080\u0085\u009f'),
  ...chars('\u00ad\u061c\u200b\u200c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e'),
  ...chars('\u2060\u2061\u2063\u2064\u2066\u2067\u2068\u2069\u206a\u206f\ufeff'),
  ...chars('\u{e0001}\u{e0020}\u{e0041}\u{e0067}\u{e0062}\u{e007f}'),
];
/** Kept by normalisation, yet showing nothing: whitespace, combining marks, variation selectors, fillers, the blank braille pattern. */
const INVISIBLE = chars(' \u00a0\u3000\u2002\u0301\u0308\u034f\u20dd\ufe0f\ufe00\u{e0100}\u180e\u17b4\u115f\u1160\u3164\uffa0\u2800');

const pick = <T>(xs: readonly T[]) => fc.constantFrom(...xs);

/** Inserts `extra` characters at the given positions of `base` (positions wrap). */
function sprinkle(base: string[], extra: [number, string][]): string {
  const out = [...base];
  for (const [at, ch] of extra) out.splice(at % (out.length + 1), 0, ch);
  return out.join('');
}

// ---------------------------------------------------------------------------
// Comment text, classified by what normalisation can and cannot do to it
// ---------------------------------------------------------------------------

export const textArb: fc.Arbitrary<Part<string>> = weighted<Part<string>>(
  // Visible text of 1–200 characters, with stripped characters anywhere: valid.
  [
    8,
    fc
      .tuple(fc.array(pick(VISIBLE), { minLength: 1, maxLength: MAX_TEXT }), fc.array(fc.tuple(fc.nat(), pick(STRIPPED)), { maxLength: 60 }))
      .map(([core, deco]) => ok(sprinkle(core, deco))),
  ],
  // Single spaces between words are kept and counted; still within 200.
  [2, fc.array(fc.stringMatching(/^[a-z弾幕]{1,8}$/), { minLength: 1, maxLength: 20 }).map((words) => ok(words.join(' ')))],
  // Anything at all (any code point) around one visible anchor: NFC expands a code
  // point to at most 3, so 61 stay within 200. Valid unless a lone surrogate is in it.
  [
    3,
    fc.tuple(fc.string({ unit: 'binary', maxLength: 60 }), fc.nat()).map(([s, at]) => {
      const t = sprinkle(chars(s), [[at, 'x']]);
      return t.isWellFormed() ? ok(t) : bad(t, 'text: lone surrogate');
    }),
  ],
  // A lone surrogate among visible text.
  [
    2,
    fc
      .tuple(fc.array(pick(VISIBLE), { minLength: 1, maxLength: 20 }), fc.nat(), fc.integer({ min: 0xd800, max: 0xdfff }))
      .map(([core, at, s]) => bad(sprinkle(core, [[at, String.fromCharCode(s)]]), 'text: lone surrogate')),
  ],
  // More than 200 visible characters (within the 2000 of the schema).
  [1, fc.tuple(fc.array(pick(VISIBLE), { minLength: MAX_TEXT + 1, maxLength: 400 }), fc.array(fc.tuple(fc.nat(), pick(STRIPPED)), { maxLength: 20 })).map(([core, deco]) => bad(sprinkle(core, deco), 'text: over 200 characters'))],
  // Over the schema's 2000 code points.
  [1, fc.integer({ min: MAX_RAW_TEXT + 1, max: 6000 }).map((n) => bad('w'.repeat(n), 'text: over 2000 code points'))],
  // Nothing visible: only stripped and invisible characters.
  [3, fc.array(pick([...STRIPPED, ...INVISIBLE]), { minLength: 1, maxLength: 40 }).map((cs) => bad(cs.join(''), 'text: nothing visible'))],
  [1, fc.constant(bad('', 'text: empty'))],
);

// ---------------------------------------------------------------------------
// JSON literals
// ---------------------------------------------------------------------------

/** A field's value as JSON text. */
type Lit = Part<string>;

const WRONG = {
  string: ['1', '0', '-1', 'true', 'false', 'null', '[]', '{}', '["x"]', '{"a":"b"}', '1e400'],
  integer: ['"1"', '"0"', 'true', 'false', 'null', '[]', '{}', '[1]', '{"n":1}', '""'],
  boolean: ['"true"', '"false"', '1', '0', 'null', '[]', '{}', '"yes"'],
};

/** A value of the wrong JSON type, sometimes nested deep or very long. */
function wrongType(type: keyof typeof WRONG, field: string): fc.Arbitrary<Lit> {
  return weighted<Lit>(
    [6, pick(WRONG[type]).map((l) => bad(l, `${field}: wrong type ${l.slice(0, 12)}`))],
    [1, fc.integer({ min: 1, max: 7000 }).map((d) => bad('['.repeat(d) + ']'.repeat(d), `${field}: ${d} nested arrays`))],
    [1, fc.integer({ min: 1, max: 2500 }).map((d) => bad('{"a":'.repeat(d) + '1' + '}'.repeat(d), `${field}: ${d} nested objects`))],
  );
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/**
 * A JSON number for an integer field in [min, max]: in range or not, integral
 * or not, written plainly, with an exponent, with a fraction of zeros or with
 * more digits than a double holds. Judged by what JSON.parse makes of it,
 * which is what any JSON reader makes of it.
 */
function jsonInt(field: string, min: number, max: number): fc.Arbitrary<Lit> {
  const value = weighted<number | string>(
    [10, fc.bigInt({ min: BigInt(Math.ceil(min)), max: BigInt(Math.floor(max)) }).map(Number)],
    [2, pick([min - 1, max + 1, min, max, -1, 0, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e21, 1e308, -1e308, 0.5, min + 0.5, max - 0.5])],
    [1, pick(['1e400', '-1e400', '9223372036854775807', '18446744073709551616', '9007199254740993', '1.0000000000000001', '4.9e-324', '-0', '0e0', '1E2', '1.0', '100e-2'])],
  );
  const form = pick(['plain', 'exp', 'dot0'] as const);
  return fc.tuple(value, form).map(([v, f]) => {
    let text: string;
    if (typeof v === 'string') text = v;
    else if (f === 'exp' && Number.isFinite(v) && v !== 0) text = v.toExponential();
    else if (f === 'dot0' && Number.isFinite(v) && Number.isInteger(v) && Math.abs(v) < 1e21) text = `${v}.0`;
    else text = JSON.stringify(v);
    const parsed: unknown = JSON.parse(text);
    return isInt(parsed) && parsed >= min && parsed <= max ? ok(text) : bad(text, `${field}: ${text} is not an integer in [${min}, ${max}]`);
  });
}

const jsonStr = (s: string) => JSON.stringify(s);

/** A text of code points 1..max (any well-formed string; lone surrogates refused). */
function anyText(field: string, max: number): fc.Arbitrary<Lit> {
  return weighted<Lit>(
    [6, fc.string({ unit: 'grapheme', minLength: 1, maxLength: Math.min(max, 120) }).map((s) => ([...s].length <= max ? ok(jsonStr(s)) : bad(jsonStr(s), `${field}: too long`)))],
    [2, fc.string({ unit: 'binary', minLength: 1, maxLength: 60 }).map((s) => (s.isWellFormed() ? ok(jsonStr(s)) : bad(jsonStr(s), `${field}: lone surrogate`)))],
    [1, fc.integer({ min: max + 1, max: max + 3000 }).map((n) => bad(jsonStr('r'.repeat(n)), `${field}: over ${max} characters`))],
    [1, fc.constant(bad('""', `${field}: empty`))],
    [1, wrongType('string', field)],
  );
}

// ---------------------------------------------------------------------------
// Valid, invalid, either: how parts combine into cases
// ---------------------------------------------------------------------------

/**
 * A part of a case, drawn valid, invalid, or either. Cases combine parts so
 * that an invalid case has one broken part (clear counterexamples) and some
 * cases are chaos (every part drawn freely).
 */
interface Gen<T> {
  valid: fc.Arbitrary<Part<T>>;
  /** Absent when the part is never invalid. */
  invalid?: fc.Arbitrary<Part<T>>;
  any: fc.Arbitrary<Part<T>>;
}

const isOk = (p: Part<unknown>) => p.why.length === 0;

/** A mixed arbitrary, split by its own classification. */
function split<T>(arb: fc.Arbitrary<Part<T>>): Gen<T> {
  return { valid: arb.filter(isOk), invalid: arb.filter((p) => !isOk(p)), any: arb };
}

function gen<T>(valid: fc.Arbitrary<Part<T>>, invalid: fc.Arbitrary<Part<T>> | undefined, w: [number, number] = [3, 1]): Gen<T> {
  return { valid, invalid, any: invalid ? weighted([w[0], valid], [w[1], invalid]) : valid };
}

type Parts = Record<string, Part<any>>;

/**
 * Parts combined by `build`: valid when every part is; invalid with exactly
 * one part broken; `any` mostly one of those, sometimes every part drawn
 * freely. `build` may add reasons of its own (a size over the limit).
 */
function combine<T>(parts: Record<string, Gen<any>>, build: (p: Parts) => Part<T>): Gen<T> {
  const keys = Object.keys(parts);
  const rec = (choose: (k: string) => fc.Arbitrary<Part<any>>) => fc.record(Object.fromEntries(keys.map((k) => [k, choose(k)]))) as fc.Arbitrary<Parts>;
  const valid = rec((k) => parts[k]!.valid).map(build).filter(isOk);
  const breakable = keys.filter((k) => parts[k]!.invalid);
  const invalid = breakable.length ? fc.oneof(...breakable.map((b) => rec((k) => (k === b ? parts[k]!.invalid! : parts[k]!.valid)).map(build))).filter((p) => !isOk(p)) : undefined;
  const chaos = rec((k) => parts[k]!.any).map(build);
  return { valid, invalid, any: invalid ? weighted([4, valid], [5, invalid], [1, chaos]) : valid };
}

const whys = (p: Parts) => Object.values(p).flatMap((x) => x.why);

// ---------------------------------------------------------------------------
// JSON bodies and how they travel
// ---------------------------------------------------------------------------

const textGen = split(textArb);
const textLit: Gen<string> = gen(textGen.valid.map((t) => ({ value: jsonStr(t.value), why: t.why })), weighted([6, textGen.invalid!.map((t) => ({ value: jsonStr(t.value), why: t.why }))], [1, wrongType('string', 'text')]));

function intLit(field: string, min: number, max: number): Gen<string> {
  const g = split(jsonInt(field, min, max));
  return gen(g.valid, weighted([5, g.invalid!], [1, wrongType('integer', field)]));
}

function enumLit(field: string, values: string[]): Gen<string> {
  const near = values.flatMap((v) => [v.toUpperCase(), ` ${v}`, `${v} `, v.slice(1), `${v}\u0000`, `${v}\u200b`]);
  return gen(
    pick(values).map((v) => ok(jsonStr(v))),
    weighted([3, pick([...near, '', 'other', 'ß']).map((v) => bad(jsonStr(v), `${field}: ${JSON.stringify(v)}`))], [1, wrongType('string', field)]),
  );
}

const boolLit = (field: string): Gen<string> => gen(pick(['true', 'false']).map(ok), wrongType('boolean', field));

function strLit(field: string, valid: fc.Arbitrary<string>, invalid: string[], check: (s: string) => boolean): Gen<string> {
  const g = split(valid.map((s) => (check(s) ? ok(jsonStr(s)) : bad(jsonStr(s), `${field}: ${JSON.stringify(s).slice(0, 40)} refused`))));
  return gen(g.valid, weighted([3, pick(invalid).map((s) => bad(jsonStr(s), `${field}: ${JSON.stringify(s).slice(0, 40)}`))], [1, wrongType('string', field)]));
}

const anyTextLit = (field: string, max: number) => split(anyText(field, max));

/** A field of an object: present or not (required ones always), valid or not. */
function field(key: string, required: boolean, lit: Gen<string>): Gen<[string, string] | null> {
  const present = (l: Part<string>): Part<[string, string] | null> => ({ value: [key, l.value], why: l.why });
  const valid = required ? lit.valid.map(present) : weighted<Part<[string, string] | null>>([1, fc.constant(ok(null))], [2, lit.valid.map(present)]);
  const invalid = weighted<Part<[string, string] | null>>([4, lit.invalid!.map(present)], ...(required ? [[1, fc.constant(bad(null, `required ${key} missing`))] as [number, fc.Arbitrary<Part<[string, string] | null>>]] : []));
  return gen(valid, invalid);
}

const EXTRA_KEYS = ['extra', 'Text', 'TEXT', 'text ', '', 'admin', 'role', 'userId', 'roomId', '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'x'.repeat(300)];

type Shape = { kind: 'as-is' } | { kind: 'twice'; i: number } | { kind: 'extra'; key: string; lit: string } | { kind: 'top'; text: string };

const shapeGen: Gen<Shape> = gen(
  weighted<Part<Shape>>([8, fc.constant(ok({ kind: 'as-is' as const }))], [1, fc.nat().map((i) => ok({ kind: 'twice' as const, i }))]),
  weighted<Part<Shape>>(
    [3, fc.tuple(pick(EXTRA_KEYS), pick(['1', '"x"', 'true', 'null', '{}', '{"prototype":{"admin":true}}'])).map(([key, lit]) => bad({ kind: 'extra' as const, key, lit }, `unknown field ${JSON.stringify(key.slice(0, 20))}`))],
    [1, pick(['[]', 'null', '"text"', '1', 'true', '[{}]']).map((text) => bad({ kind: 'top' as const, text }, `body is ${text}, not an object`))],
  ),
);

/** An object body: its fields (in order), then a shape: as is, a key twice (same value), an unknown field, not an object at all. */
function objectBody(fields: Record<string, { required: boolean; lit: Gen<string> }>, o: { minProperties?: number } = {}): Gen<string> {
  const parts: Record<string, Gen<any>> = {};
  for (const [k, f] of Object.entries(fields)) parts[`f:${k}`] = field(k, f.required, f.lit);
  parts.shape = shapeGen;
  return combine<string>(parts, (p) => {
    const why = whys(p);
    const shape = p.shape!.value as Shape;
    if (shape.kind === 'top') return { value: shape.text, why };
    const entries = Object.keys(fields)
      .map((k) => p[`f:${k}`]!.value as [string, string] | null)
      .filter((e): e is [string, string] => e !== null);
    if (shape.kind === 'twice' && entries.length > 0) entries.push(entries[shape.i % entries.length]!); // JSON.parse keeps the last: the same value
    if (shape.kind === 'extra') entries.push([shape.key, shape.lit]);
    if (o.minProperties !== undefined && new Set(entries.map(([k]) => k)).size < o.minProperties) why.push(`fewer than ${o.minProperties} fields`);
    return { value: `{${entries.map(([k, l]) => `${jsonStr(k)}:${l}`).join(',')}}`, why };
  });
}

export interface BodySpec {
  /** JSON text before byte-level changes (placeholders resolved at send time, same length or longer). */
  text: string;
  /** Raw bytes inserted at this character offset of the UTF-8 text (invalid UTF-8). */
  inject?: { at: number; bytes: number[] };
  /** Trailing whitespace bytes. */
  pad?: number;
  contentType: string | null;
  /** Content-Encoding header; null: none. */
  encoding: string | null;
  /** How the bytes are really compressed (null: not). */
  compress: 'gzip' | 'deflate' | 'br' | null;
  /** Sent in chunks, without Content-Length. */
  chunked: boolean;
  /** A second Content-Type header after the first. */
  secondContentType?: string;
}

/** Changes to the JSON text that always leave something that is not JSON (or not UTF-8). */
type TextChange =
  | { kind: 'none' }
  | { kind: 'truncate'; at: number }
  | { kind: 'trailing'; garbage: string }
  | { kind: 'trailing-comma' }
  | { kind: 'single-quote' }
  | { kind: 'comment' }
  | { kind: 'control-in-key'; ch: string }
  | { kind: 'nan' }
  | { kind: 'bad-utf8'; bytes: number[] }
  | { kind: 'empty' };

const BAD_UTF8 = [[0x80], [0xff], [0xfe], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xe4, 0xb8], [0xf4, 0x90, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xc3]];

const changeGen: Gen<TextChange> = gen(
  fc.constant(ok<TextChange>({ kind: 'none' })),
  weighted<Part<TextChange>>(
    [3, fc.nat().map((at) => bad<TextChange>({ kind: 'truncate', at }, 'json: truncated'))],
    [1, pick(['x', '}', '{}', ',', '"', 'null', ']', '\u0000']).map((garbage) => bad<TextChange>({ kind: 'trailing', garbage }, `json: trailing ${JSON.stringify(garbage)}`))],
    [1, fc.constant(bad<TextChange>({ kind: 'trailing-comma' }, 'json: trailing comma'))],
    [1, fc.constant(bad<TextChange>({ kind: 'single-quote' }, 'json: single quote'))],
    [1, fc.constant(bad<TextChange>({ kind: 'comment' }, 'json: comment'))],
    [1, pick(['\u0000', '\u0001', '\n', '\t', '\u001f']).map((ch) => bad<TextChange>({ kind: 'control-in-key', ch }, `json: raw ${JSON.stringify(ch)} in a string`))],
    [1, fc.constant(bad<TextChange>({ kind: 'nan' }, 'json: NaN'))],
    [4, pick(BAD_UTF8).map((bytes) => bad<TextChange>({ kind: 'bad-utf8', bytes }, `utf-8: bytes ${bytes.map((b) => b.toString(16)).join(' ')}`))],
    [1, fc.constant(bad<TextChange>({ kind: 'empty' }, 'json: empty body'))],
  ),
);

function applyTextChange(text: string, c: TextChange): { text: string; inject?: BodySpec['inject'] } {
  switch (c.kind) {
    case 'none':
      return { text };
    case 'truncate':
      // No proper prefix of a JSON text that is an object, array or string is JSON.
      return { text: text.slice(0, c.at % Math.max(1, text.length)) };
    case 'trailing':
      return { text: text + c.garbage };
    case 'trailing-comma':
      return { text: text.endsWith('}') && text !== '{}' ? `${text.slice(0, -1)},}` : `${text},` };
    case 'single-quote':
      return { text: text.startsWith('{"') ? `{'${text.slice(2)}` : `'${text}` };
    case 'comment':
      return { text: `/*c*/${text}` };
    case 'control-in-key':
      return { text: text.startsWith('{"') ? `{"${c.ch}${text.slice(2)}` : `"${c.ch}"` };
    case 'nan':
      return { text: text.startsWith('{') && text !== '{}' ? `${text.slice(0, -1)},"n":NaN}` : 'NaN' };
    case 'bad-utf8':
      return { text, inject: { at: text.startsWith('{"') ? 2 : 0, bytes: c.bytes } };
    case 'empty':
      return { text: '' };
  }
}

const CONTENT_TYPES_OK = ['application/json; charset=utf-8', 'application/json;charset=UTF-8', 'Application/JSON', 'application/json; charset="utf-8"', 'application/json; charset=iso-8859-1', 'application/json; foo=bar'];
const CONTENT_TYPES_BAD = ['text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=xyz', 'application/xml', 'application/jsonp', 'application/json-seq', 'application/problem+json', 'json', 'application/', '*/*', 'application/*', 'application/octet-stream'];

interface Transport {
  contentType: string | null;
  encoding: string | null;
  compress: BodySpec['compress'];
  chunked: boolean;
  pad: number;
  second: string | null;
}

const contentTypeGen: Gen<string | null> = gen(weighted<Part<string | null>>([12, fc.constant(ok('application/json'))], [3, pick(CONTENT_TYPES_OK).map(ok)]), weighted<Part<string | null>>([6, pick(CONTENT_TYPES_BAD).map((t) => bad(t, `content-type ${t}`))], [1, fc.constant(bad(null, 'no content-type'))]));

type Encoding = { header: string | null; compress: BodySpec['compress'] };
const encodingGen: Gen<Encoding> = gen(
  weighted<Part<Encoding>>(
    [12, fc.constant(ok<Encoding>({ header: null, compress: null }))],
    [1, fc.constant(ok<Encoding>({ header: 'identity', compress: null }))],
    [2, fc.constant(ok<Encoding>({ header: 'gzip', compress: 'gzip' }))],
    [1, fc.constant(ok<Encoding>({ header: 'deflate', compress: 'deflate' }))],
    [1, fc.constant(ok<Encoding>({ header: 'br', compress: 'br' }))],
  ),
  weighted<Part<Encoding>>(
    [1, fc.constant(bad<Encoding>({ header: 'gzip', compress: null }, 'content-encoding gzip on plain bytes'))],
    [1, fc.constant(bad<Encoding>({ header: 'br', compress: 'gzip' }, 'content-encoding br on gzip bytes'))],
    [2, pick(['compress', 'bogus', 'gzip, deflate', 'zstd', '*']).map((h) => bad<Encoding>({ header: h, compress: null }, `content-encoding ${h}`))],
  ),
);

const transportGen: Gen<Transport> = combine<Transport>(
  {
    ct: contentTypeGen,
    enc: encodingGen,
    chunked: gen(fc.boolean().map(ok), undefined),
    pad: gen(weighted<Part<number>>([12, fc.constant(ok(0))], [2, fc.integer({ min: 1, max: 2000 }).map(ok)], [1, fc.integer({ min: 8000, max: 40_000 }).map(ok)]), undefined),
    // Content-Type twice is refused whatever the values (gateway/input.ts: a singleton header
    // repeated is ambiguous — which one a proxy and the gateway each believe is how smuggling starts).
    second: gen(fc.constant(ok(null)), pick(['application/json', 'text/plain', 'application/x-www-form-urlencoded']).map((t) => bad(t, `a second Content-Type header, ${t}`))),
  },
  (p) => {
    const enc = p.enc!.value as Encoding;
    const ct = p.ct!.value as string | null;
    let second = p.second!.value as string | null;
    let why = whys(p);
    // Without a first Content-Type there is no second: the case is the first's alone.
    if (ct === null && second !== null) {
      why = why.filter((w) => !w.startsWith('a second Content-Type'));
      second = null;
    }
    return { value: { contentType: ct, encoding: enc.header, compress: enc.compress, chunked: p.chunked!.value, pad: p.pad!.value, second }, why };
  },
);

/** The body a request sends: the object, a change of its text, how it travels; the size judged last (after decompression). */
function bodyGen(object: Gen<string>): Gen<BodySpec> {
  return combine<BodySpec>({ object, change: changeGen, transport: transportGen }, (p) => {
    const why = whys(p);
    const changed = applyTextChange(p.object!.value, p.change!.value as TextChange);
    const t = p.transport!.value as Transport;
    const spec: BodySpec = { text: changed.text, contentType: t.contentType, encoding: t.encoding, compress: t.compress, chunked: t.chunked };
    if (t.second !== null) spec.secondContentType = t.second;
    if (changed.inject) spec.inject = changed.inject;
    if (t.pad) spec.pad = t.pad;
    const size = bodySize(spec);
    if (size > BODY_LIMIT) why.push(`body: ${size} bytes`);
    return { value: spec, why };
  });
}

export const bodySize = (b: BodySpec) => Buffer.byteLength(b.text) + (b.inject?.bytes.length ?? 0) + (b.pad ?? 0);

/** A route without a body may still get one: JSON is parsed and ignored, anything else refused. */
const strayBodyGen: Gen<BodySpec | null> = gen(
  weighted<Part<BodySpec | null>>([20, fc.constant(ok(null))], [1, fc.constant(ok<BodySpec | null>({ text: '{"x":1}', contentType: 'application/json', encoding: null, compress: null, chunked: false }))]),
  weighted<Part<BodySpec | null>>(
    [2, pick(['{"x":', 'nope', '']).map((text) => bad<BodySpec | null>({ text, contentType: 'application/json', encoding: null, compress: null, chunked: false }, `stray body ${JSON.stringify(text)}`))],
    [1, pick(BAD_UTF8).map((bytes) => bad<BodySpec | null>({ text: '{"x":""}', inject: { at: 2, bytes }, contentType: 'application/json', encoding: null, compress: null, chunked: false }, 'stray body: bad utf-8'))],
  ),
  [10, 1],
);

// ---------------------------------------------------------------------------
// Extra headers
// ---------------------------------------------------------------------------

const headersGen: Gen<[string, string][]> = gen(
  weighted<Part<[string, string][]>>(
    [20, fc.constant(ok([]))],
    [
      2,
      fc.array(fc.tuple(pick(['x-forwarded-for', 'x-real-ip', 'forwarded', 'x-request-id', 'user-agent', 'accept', 'accept-encoding', 'origin', 'referer', 'x-forwarded-proto']), fc.stringMatching(/^[ -~]{0,80}$/)), { maxLength: 4 }).map((hs) =>
        // Singleton headers may appear once (gateway/input.ts): X-Forwarded-For twice is refused.
        hs.filter(([k]) => k === 'x-forwarded-for').length > 1 ? bad(hs, 'headers: X-Forwarded-For twice') : ok(hs),
      ),
    ],
    [1, fc.stringMatching(/^[ -~\u00a0-\u00ff]{1,40}$/).map((v) => ok<[string, string][]>([['x-latin1', v]]))],
    [1, fc.integer({ min: 50, max: 300 }).map((n) => ok<[string, string][]>(Array.from({ length: n }, (_, i) => [`x-h${i}`, 'v'])))],
  ),
  fc.integer({ min: 17_000, max: 40_000 }).map((n) => bad<[string, string][]>([['x-pad', 'p'.repeat(n)]], `a ${n}-byte header`)),
  [12, 1],
);

// ---------------------------------------------------------------------------
// Tokens: what they claim, and how they are broken
// ---------------------------------------------------------------------------

export type RoomRole = 'moderator' | 'broadcaster';
/**
 * What a token claims. `@room` stands for the room of the request and
 * `@author` for the author of the comment it names (the driver fills them in
 * when it signs), so a token is built without knowing either.
 */
export interface Grant {
  sub: string;
  role?: 'viewer' | 'admin';
  rooms?: Record<string, RoomRole>;
}
export const ROOM_REF = '@room';
export const AUTHOR_REF = '@author';

export type TokenSpec =
  | { kind: 'valid'; grant: Grant }
  | { kind: 'expired' | 'wrong-key' | 'no-exp' | 'too-long' | 'not-yet' | 'alg-none' | 'alg-hs512' | 'alg-rs256' | 'tampered' | 'cut-signature'; grant: Grant }
  | { kind: 'bad-claims'; claims: Record<string, unknown>; what: string }
  | { kind: 'garbage'; text: string };

export interface AuthLine {
  scheme: string;
  sep: string;
  token: TokenSpec;
  tail: string;
}

/** Authorization header lines (none, one, or the header twice), and `?token=` (read only on the WebSocket upgrade). */
export interface AuthSpec {
  lines: AuthLine[];
  query?: TokenSpec;
}

/** What a route needs of its caller (README: Who may do what). */
export type Need = 'reader' | 'user' | 'moderator' | 'admin' | 'author-or-moderator';

/** Token subjects: never an author of a seeded comment (only @author is) and never a T… admin target. */
const userIdArb = weighted<string>([4, pick(['u1', 'u2', 'u3', 'viewer'])], [2, fc.stringMatching(/^[uv][A-Za-z0-9_.:@-]{0,30}$/)], [1, fc.constant('u'.repeat(64))]);

const grantArb: fc.Arbitrary<Grant> = weighted<Grant>(
  [6, userIdArb.map((sub) => ({ sub }))],
  [1, userIdArb.map((sub) => ({ sub, role: 'viewer' as const }))],
  [3, fc.constant({ sub: ADMIN_SUB, role: 'admin' as const })],
  [2, fc.tuple(userIdArb, pick(['moderator', 'broadcaster'] as const)).map(([sub, r]) => ({ sub, rooms: { 'other-room': r } }))],
  [4, fc.tuple(userIdArb, pick(['moderator', 'broadcaster'] as const)).map(([sub, r]) => ({ sub, rooms: { [ROOM_REF]: r } }))],
  [1, fc.tuple(userIdArb, fc.array(fc.stringMatching(/^r[a-z0-9]{0,10}$/), { maxLength: 30 })).map(([sub, rs]) => ({ sub, rooms: { ...Object.fromEntries(rs.map((r) => [r, 'broadcaster' as const])), [ROOM_REF]: 'moderator' as const } }))],
  [4, fc.constant({ sub: AUTHOR_REF })],
);

const BAD_CLAIMS: [string, Record<string, unknown>][] = [
  ['a numeric sub', { sub: 123 }],
  ['an empty sub', { sub: '' }],
  ['a sub of 65 characters', { sub: 's'.repeat(65) }],
  ['a sub with a space', { sub: 'a b' }],
  ['a sub with a slash', { sub: 'a/b' }],
  ['a global moderator role', { sub: 'u1', role: 'moderator' }],
  ['a global broadcaster role', { sub: 'u1', role: 'broadcaster' }],
  ['an unknown role', { sub: 'u1', role: 'superuser' }],
  ['rooms as an array', { sub: 'u1', rooms: ['A'] }],
  ['rooms with an unknown role', { sub: 'u1', rooms: { A: 'owner' } }],
  ['rooms with a bad room id', { sub: 'u1', rooms: { 'a b': 'moderator' } }],
  ['iat as a string', { sub: 'u1', iat: 'yesterday' }],
  ['rooms as null', { sub: 'u1', rooms: null }],
];

const tokenArb: fc.Arbitrary<TokenSpec> = weighted<TokenSpec>(
  [20, grantArb.map((g) => ({ kind: 'valid' as const, grant: g }))],
  [4, fc.tuple(pick(['expired', 'wrong-key', 'no-exp', 'too-long', 'not-yet', 'alg-none', 'alg-hs512', 'alg-rs256', 'tampered', 'cut-signature'] as const), grantArb).map(([kind, g]) => ({ kind, grant: g }))],
  [2, pick(BAD_CLAIMS).map(([what, claims]) => ({ kind: 'bad-claims' as const, claims, what }))],
  [2, weighted<string>([2, fc.stringMatching(/^[A-Za-z0-9._~+/=-]{1,200}$/)], [1, pick(['a.b.c', '..', 'null', 'undefined', 'eyJ.eyJ.', '%00', 'Bearer'])]).map((text) => ({ kind: 'garbage' as const, text }))],
);

/** Whether a grant satisfies a need (on the request's room, by the comment's author). */
export function grants(g: Grant, need: Need): boolean {
  const modHere = g.role === 'admin' || (g.rooms !== undefined && Object.hasOwn(g.rooms, ROOM_REF));
  switch (need) {
    case 'reader':
    case 'user':
      return true;
    case 'moderator':
      return modHere;
    case 'admin':
      return g.role === 'admin';
    case 'author-or-moderator':
      return g.sub === AUTHOR_REF || modHere;
  }
}

const schemeArb = weighted<Part<string>>([20, fc.constant(ok('Bearer'))], [1, pick(['bearer', 'BEARER']).map(ok)], [2, pick(['Basic', 'Token', 'Bearer:', '']).map((s) => bad(s, `auth: scheme ${JSON.stringify(s)}`))]);
const sepArb = weighted<Part<string>>([20, fc.constant(ok(' '))], [1, pick(['  ', '\t', ' \t ']).map(ok)], [1, fc.constant(bad('', 'auth: no space after the scheme'))]);
const tailArb = weighted<Part<string>>([20, fc.constant(ok(''))], [1, pick([' ', '\t']).map(ok)], [1, pick([' x', ',', ' Bearer y', ';']).map((s) => bad(s, `auth: ${JSON.stringify(s)} after the token`))]);

function judgeToken(t: TokenSpec, need: Need): string[] {
  if (t.kind === 'valid') return grants(t.grant, need) ? [] : [`auth: ${JSON.stringify(t.grant)} may not (${need})`];
  if (t.kind === 'bad-claims') return [`auth: a token with ${t.what}`];
  if (t.kind === 'garbage') return ['auth: a garbage token'];
  return [`auth: ${t.kind} token`];
}

function authArb(need: Need, ws = false): fc.Arbitrary<Part<AuthSpec>> {
  const line = fc.tuple(schemeArb, sepArb, tokenArb, tailArb).map(([scheme, sep, token, tail]): Part<AuthLine> => ({ value: { scheme: scheme.value, sep: sep.value, token, tail: tail.value }, why: [...scheme.why, ...sep.why, ...tail.why, ...judgeToken(token, need)] }));
  const items: [number, fc.Arbitrary<Part<AuthSpec>>][] = [
    [need === 'reader' ? 6 : 1, fc.constant(need === 'reader' ? ok<AuthSpec>({ lines: [] }) : bad<AuthSpec>({ lines: [] }, 'auth: no token'))],
    [12, line.map((l) => ({ value: { lines: [l.value] }, why: l.why }))],
    // The gateway refuses any repeated Authorization header (gateway/input.ts), even two equal ones.
    [1, line.map((l) => ({ value: { lines: [l.value, l.value] }, why: [...l.why, 'auth: the Authorization header twice'] }))],
    // Two different Authorization headers: which one counts is anyone's guess, so neither may.
    [1, fc.tuple(line, line).filter(([a, b]) => JSON.stringify(a.value) !== JSON.stringify(b.value)).map(([a, b]) => ({ value: { lines: [a.value, b.value] }, why: [...a.why, ...b.why, 'auth: two different Authorization headers'] }))],
    // `?token=`: read on the WebSocket upgrade (browsers cannot set headers there), ignored on HTTP routes.
    [ws ? 8 : 1, tokenArb.map((t) => {
      const value: AuthSpec = { lines: [], query: t };
      if (ws) return { value, why: judgeToken(t, need) };
      return need === 'reader' ? ok(value) : bad(value, 'auth: a query token on HTTP (ignored: no token)');
    })],
  ];
  return weighted(...items);
}

const AUTH: Record<Need, Gen<AuthSpec>> = {
  reader: split(authArb('reader')),
  user: split(authArb('user')),
  moderator: split(authArb('moderator')),
  admin: split(authArb('admin')),
  'author-or-moderator': split(authArb('author-or-moderator')),
};
const WS_AUTH = split(authArb('reader', true));

// ---------------------------------------------------------------------------
// Path segments
// ---------------------------------------------------------------------------

/** A path segment as sent (percent-encoded) and what it decodes to. */
export interface Seg {
  raw: string;
  /** The decoded value, when the segment decodes. */
  decoded?: string;
}

/** Percent-encoded UTF-8; a lone surrogate as the three bytes it would be (WTF-8), which no UTF-8 decoder takes. */
function enc(s: string): string {
  let out = '';
  for (const c of s) {
    const u = c.codePointAt(0)!;
    if (u >= 0xd800 && u <= 0xdfff) out += [0xe0 | (u >> 12), 0x80 | ((u >> 6) & 0x3f), 0x80 | (u & 0x3f)].map((b) => `%${b.toString(16).toUpperCase()}`).join('');
    else out += encodeURIComponent(c).replace(/[!'()*~]/g, (x) => `%${x.charCodeAt(0).toString(16).toUpperCase()}`);
  }
  return out;
}

/** Every UTF-8 byte of `c` as %XX, whatever it is (`a` → `%61`). */
const pct = (c: string) => [...Buffer.from(c, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');

/** `s` with every character outside [A-Za-z0-9_.:@-] percent-encoded, and those at `mask` positions too even when they need not be (it decodes to `s`). */
export function encodeSome(s: string, mask: number[]): string {
  const cs = [...s];
  const set = new Set(mask.map((m) => m % Math.max(1, cs.length)));
  return cs.map((c, i) => (/[^A-Za-z0-9_.:@-]/.test(c) ? enc(c) : set.has(i) ? pct(c) : c)).join('');
}

const BAD_ESCAPES = ['%FF', '%ED%A0%80', '%C0%AF', '%E4%B8', '%F4%90%80%80', '%', '%Z1', '%2', '%%', '%u0041'];
const INSIDE = [' ', '/', '?', '#', '%', '{', '}', '\\', '"', '<', "'", '!', '~', '+', '*', ',', ';', '=', '&', 'é', '中', '\u0000', '\n', '\u202e', '😀', '\u200b', '[', ']', '|', '^', '`', '$'];

/** A segment: a valid id (prefix + a tail of the pattern), percent-encoded or not, or a hostile one. */
function segGen(o: { what: string; prefix: string; tail: RegExp; re: RegExp; extra?: string[]; ws?: boolean }): Gen<Seg> {
  const validId = fc.stringMatching(o.tail).map((t) => `${o.prefix}${t}`);
  const judged = (decoded: string, raw: string): Part<Seg> => (o.re.test(decoded) ? ok({ raw, decoded }) : bad({ raw, decoded }, `${o.what}: ${JSON.stringify(decoded.slice(0, 40))}${decoded.length > 40 ? `… (${decoded.length})` : ''}`));
  const valid: [number, fc.Arbitrary<Part<Seg>>][] = [
    [8, validId.map((id) => ok({ raw: encodeSome(id, []), decoded: id }))],
    [2, fc.tuple(validId, fc.array(fc.nat(), { minLength: 1, maxLength: 5 })).map(([id, mask]) => ok({ raw: encodeSome(id, mask), decoded: id }))],
  ];
  if (o.extra) valid.push([3, pick(o.extra).map((id) => ok({ raw: id, decoded: id }))]);
  const invalid: [number, fc.Arbitrary<Part<Seg>>][] = [
    [3, fc.tuple(validId, fc.nat(), pick(INSIDE)).map(([id, at, c]) => {
      const d = sprinkle([...id], [[at, c]]);
      return judged(d, encodeSome(d, []));
    })],
    [1, fc.tuple(pick(['-', '_', '.', ':', '@']), validId).map(([c, id]) => judged(c + id, encodeSome(c + id, [])))],
    [1, fc.integer({ min: 65, max: 99 }).map((n) => judged(`${o.prefix}${'x'.repeat(n)}`.slice(0, n), `${o.prefix}${'x'.repeat(n)}`.slice(0, n)))],
    [1, fc.integer({ min: 101, max: 3000 }).map((n) => bad<Seg>({ raw: 'y'.repeat(n) }, `${o.what}: ${n} characters`))],
    [2, fc.tuple(validId, pick(BAD_ESCAPES)).map(([id, e]) => bad<Seg>({ raw: `${id}${e}` }, `${o.what}: escape ${e}`))],
    [1, fc.constant(bad<Seg>({ raw: '%00' }, `${o.what}: NUL`))],
  ];
  // URL parsers resolve dot segments and drop empty ones: the WebSocket client could not send these as they are.
  if (!o.ws) invalid.push([1, pick(['.', '..', '']).map((raw) => bad<Seg>({ raw, decoded: raw }, `${o.what}: ${JSON.stringify(raw)}`))]);
  return gen(weighted(...valid), weighted(...invalid).filter((p) => !isOk(p)));
}

const ROOM_TAIL = /^[A-Za-z0-9_.:-]{0,58}$/;
const roomSeg = (prefix: string, o: { extra?: string[]; ws?: boolean } = {}) => segGen({ what: 'room', prefix, tail: ROOM_TAIL, re: ROOM_RE, ...o });
/** Admin targets all start with T: no user a fuzz token names is ever banned or revoked. */
const userSeg = segGen({ what: 'user', prefix: 'T', tail: /^[A-Za-z0-9_.:@-]{0,40}$/, re: USER_RE });

// ---------------------------------------------------------------------------
// Query strings
// ---------------------------------------------------------------------------

/** Decimal digits for an integer in [min, max] (at most 16 digits, leading zeros and all), and every way to get it wrong. */
function qInt(name: string, min: number, max: number): Gen<string> {
  const digits = (n: bigint, width: number) => {
    const s = (n < 0n ? -n : n).toString();
    return (n < 0n ? '-' : '') + (s.length < width ? s.padStart(Math.min(width, 16), '0') : s);
  };
  const valid = fc.tuple(fc.bigInt({ min: BigInt(min), max: BigInt(max) }), weighted<number>([8, fc.constant(0)], [1, fc.integer({ min: 1, max: 16 })])).map(([n, w]) => ok(digits(n, w)));
  const specials = [String(min - 1), String(max + 1), '9223372036854775807', '9007199254740993', '99999999999999999999', '-9223372036854775808', '1e3', '1E3', '1e400', '-1e400', 'NaN', 'Infinity', '-Infinity', '1.5', '1.0', '.5', '5.', '0x10', '0b1', '0o7', ' 1', '1 ', '+1', '', '-', '--1', '1_000', '1,5', 'true', 'null', '[]', '١٢', '１', '\u00a01', '1\u0000'];
  return gen(min <= 0 && max >= 0 ? weighted([10, valid], [1, fc.constant(ok('-0'))]) : valid, pick(specials).map((v) => bad(v, `${name}=${JSON.stringify(v)}`)));
}

function qEnum(name: string, values: string[]): Gen<string> {
  return gen(pick(values).map(ok), pick([...values.map((v) => v.toUpperCase()), ...values.map((v) => `${v} `), '', 'all', 'null', '0', ...values.map((v) => `${v}\u0000`)]).map((v) => bad(v, `${name}=${JSON.stringify(v)}`)));
}

/** `<epoch>.<offset>`, each part at most 2^53 − 1 (offset -1: before anything). */
function qPosition(name: string): Gen<string> {
  const part = fc.tuple(fc.bigInt({ min: 0n, max: BigInt(MAX_SAFE) }), weighted<boolean>([6, fc.constant(false)], [1, fc.constant(true)])).map(([n, pad]) => (pad ? n.toString().padStart(Math.min(16, n.toString().length + 2), '0') : n.toString()));
  return gen(
    fc.tuple(weighted<string>([3, pick(['0', '1'])], [1, part]), weighted<string>([2, pick(['-1', '0', '1', '5'])], [1, part])).map(([e, o]) => ok(`${e}.${o}`)),
    pick(['9007199254740992.0', '0.9007199254740992', '99999999999999999.0', '0.-2', '-1.0', '1', '.', '1.', '.1', '1.2.3', 'a.b', ' 0.1', '0.1 ', '0,1', '0.1e3', '0x1.0', '', '١.١', '0.-1-1', '1.+1']).map((v) => bad(v, `${name}=${JSON.stringify(v)}`)),
  );
}

/** Query pieces no route knows: ignored (prototype names and undecodable escapes included). */
const JUNK = ['', '&', '=', '=x', 'foo=bar', 'LIMIT=9', 'since%5B%5D=1', 'limit[]=5', 'limit[0]=5', '__proto__=x', '__proto__[a]=1', 'constructor=x', 'toString=1', 'hasOwnProperty=1', 'valueOf=1', 'a%FF=1', 'x=%FF', 'x=%ED%A0%80', `x=${'z'.repeat(3000)}`, 'a=1=2'];

type Trick = { kind: 'none' } | { kind: 'encode'; mask: number[] } | { kind: 'junk'; pieces: string[] } | { kind: 'double-encode'; i: number } | { kind: 'repeat'; i: number; same: boolean } | { kind: 'semicolon' };

/**
 * Parameters joined into a query string, with a trick: percent-encoding
 * characters that need none (nothing changes once decoded), unknown pieces
 * (ignored), or — never valid — a known one double-encoded, repeated, or
 * glued to the next with `;`.
 */
function queryGen(params: { name: string; value: Gen<string>; absent?: number; onlyInvalid?: boolean }[], o: { ws?: boolean; rule?: (q: string) => string | undefined } = {}): Gen<string> {
  // `token=` is no junk on the WebSocket upgrade, which reads it; HTTP routes ignore it.
  const junk = o.ws ? JUNK : [...JUNK, 'token=abc', 'token='];
  const parts: Record<string, Gen<any>> = {};
  for (const p of params) {
    parts[`p:${p.name}`] = gen(p.onlyInvalid ? fc.constant(ok(null)) : weighted<Part<string | null>>([p.absent ?? 2, fc.constant(ok(null))], [2, p.value.valid]), p.value.invalid);
  }
  parts.trick = gen(
    weighted<Part<Trick>>([12, fc.constant(ok<Trick>({ kind: 'none' }))], [2, fc.array(fc.nat(), { minLength: 1, maxLength: 6 }).map((mask) => ok<Trick>({ kind: 'encode', mask }))], [2, fc.array(pick(junk), { minLength: 1, maxLength: 4 }).map((pieces) => ok<Trick>({ kind: 'junk', pieces }))]),
    weighted<Part<Trick>>([1, fc.nat().map((i) => bad<Trick>({ kind: 'double-encode', i }, 'double-encoded'))], [2, fc.tuple(fc.nat(), fc.boolean()).map(([i, same]) => bad<Trick>({ kind: 'repeat', i, same }, 'given twice'))], [1, fc.constant(bad<Trick>({ kind: 'semicolon' }, 'glued with ;'))]),
  );
  return combine<string>(parts, (p) => {
    const why: string[] = [];
    const used = params.flatMap((q) => {
      const v = p[`p:${q.name}`]!;
      return v.value === null ? [] : [{ name: q.name, value: v.value as string, why: v.why }];
    });
    for (const u of used) why.push(...u.why);
    let pieces = used.map((u) => `${enc(u.name)}=${encodeSome(u.value, [])}`);
    const t = p.trick!.value as Trick;
    const at = (i: number) => i % used.length;
    if (t.kind === 'encode') pieces = used.map((u, i) => `${i === 0 ? encodeSome(u.name, t.mask) : enc(u.name)}=${encodeSome(u.value, t.mask)}`);
    if (t.kind === 'junk') pieces.push(...t.pieces);
    if (t.kind === 'double-encode' && used.length > 0 && used[at(t.i)]!.value.length > 0) {
      const u = used[at(t.i)]!;
      pieces[at(t.i)] = `${enc(u.name)}=${encodeSome(u.value, [...u.value].map((_, i) => i)).replace(/%/g, '%25')}`;
      why.push(`${u.name}: double percent-encoded`);
    }
    if (t.kind === 'repeat' && used.length > 0) {
      const u = used[at(t.i)]!;
      pieces.push(`${enc(u.name)}=${t.same ? encodeSome(u.value, []) : '1'}`);
      why.push(`${u.name}: given twice`);
    }
    if (t.kind === 'semicolon' && used.length >= 2) {
      const [a, b] = [used[0]!, used[1]!];
      pieces = [`${enc(a.name)}=${encodeSome(a.value, [])};${enc(b.name)}=${encodeSome(b.value, [])}`, ...pieces.slice(2)];
      why.push(`${a.name}: "${a.value};${b.name}=…" (a semicolon is not a separator)`);
    }
    const q = pieces.join('&');
    const rule = o.rule?.(q);
    if (rule) why.push(rule);
    return { value: q, why };
  });
}

/** The value of a parameter as a server decodes it (the first one; repeated ones are judged invalid anyway). */
function param(q: string, name: string): string | undefined {
  for (const piece of q.split('&')) {
    const eq = piece.indexOf('=');
    try {
      if (decodeURIComponent(eq < 0 ? piece : piece.slice(0, eq)) !== name) continue;
      return decodeURIComponent((eq < 0 ? '' : piece.slice(eq + 1)).replace(/\+/g, ' '));
    } catch {
      continue;
    }
  }
  return undefined;
}
const DIGITS = /^-?\d{1,16}$/;

// ---------------------------------------------------------------------------
// HTTP cases
// ---------------------------------------------------------------------------

export interface HttpCase extends Judged {
  family: 'http-body' | 'http-query';
  route: string;
  gateway: 'main' | 'dev';
  method: string;
  /** Path as sent (seed placeholders resolved at send time). */
  path: string;
  /** Query as sent, without `?` ('' for none). */
  query: string;
  auth: AuthSpec;
  headers: [string, string][];
  body: BodySpec | null;
  /** What @room and @author stand for in the tokens. */
  ctx: { room?: string; author?: string };
}

function httpGen(family: HttpCase['family'], name: string, parts: Record<string, Gen<any>>, make: (p: Parts) => Omit<HttpCase, 'family' | 'route' | 'valid' | 'why' | 'query' | 'headers' | 'body' | 'auth' | 'gateway'> & Partial<Pick<HttpCase, 'query' | 'headers' | 'body' | 'auth' | 'gateway'>> & { extraWhy?: string[] }): fc.Arbitrary<HttpCase> {
  const g = combine<HttpCase>(parts, (p) => {
    const m = make(p);
    const why = [...whys(p), ...(m.extraWhy ?? [])];
    const { extraWhy: _, ...rest } = m;
    const c: HttpCase = { family, route: name, gateway: 'main', query: '', headers: [], body: null, auth: { lines: [] }, ...rest, valid: why.length === 0, why };
    return { value: c, why };
  });
  // Valid cases, invalid ones (one part broken) and chaos, about 4 : 5 : 1.
  return g.any.map((p) => p.value);
}

const clientMsgIdLit = strLit('clientMsgId', fc.stringMatching(/^[A-Za-z0-9_.:-]{1,64}$/), ['', 'a b', 'ü', 'x'.repeat(65), 'a/b', 'a\u0000', '\ud800', '😀', 'a+b'], (s) => CMID_RE.test(s));

const commentBody = bodyGen(
  objectBody({
    text: { required: true, lit: textLit },
    mode: { required: false, lit: enumLit('mode', ['scroll', 'top', 'bottom']) },
    color: { required: false, lit: intLit('color', 0, 0xffffff) },
    size: { required: false, lit: enumLit('size', ['small', 'medium', 'large']) },
    videoOffsetMs: { required: false, lit: intLit('videoOffsetMs', 0, MAX_TIME_MS) },
    clientMsgId: { required: false, lit: clientMsgIdLit },
  }),
);

const reactionBody = bodyGen(
  objectBody({
    emoji: { required: true, lit: strLit('emoji', pick([...EMOJIS, ...EMOJI_CHARS]), ['Heart', 'heart ', '🙂', '❤️‍🔥', '🔥🔥', '', 'x'.repeat(33), 'smile', 'fire\u0000', '\ud83d', 'heart,fire'], isEmoji) },
    count: { required: false, lit: intLit('count', 1, 100) },
    clientMsgId: { required: false, lit: clientMsgIdLit },
  }),
);

const settingsBody = bodyGen(objectBody({ slowModeSec: { required: false, lit: intLit('slowModeSec', 0, 3600) }, emoteOnly: { required: false, lit: boolLit('emoteOnly') } }, { minProperties: 1 }));

const banBody = bodyGen(objectBody({ durationSec: { required: false, lit: intLit('durationSec', 1, 10 * 365 * 24 * 3600) }, reason: { required: true, lit: anyTextLit('reason', 500) } }));

/** The pin body names its target through a placeholder the case fills in (`"@@target@@"`, never longer than what replaces it). */
const TARGET = '"@@target@@"';
const pinBody = bodyGen(objectBody({ eventId: { required: true, lit: gen(fc.constant(ok(TARGET)), wrongType('string', 'eventId')) }, durationSec: { required: false, lit: intLit('durationSec', 1, 24 * 3600) } }));

const seedRooms = Array.from({ length: SEED_ROOMS }, (_, i) => seedRoom(i));
const writeRoom = (prefix: string) => roomSeg(prefix);
const roomText = (p: Parts) => (p.room!.value as Seg).raw;
const decodedRoom = (p: Parts) => (p.room!.value as Seg).decoded;

/**
 * A comment to delete or pin and the room the request names: a seeded
 * comment in its own room, or — never valid — in another room, one that does
 * not exist, or something that is not an id.
 */
interface Target {
  room: Seg;
  /** The id as it goes into a path (seed placeholder, or the id percent-encoded) and into JSON. */
  pathId: string;
  jsonId: string;
  author: string;
}
const targetGen: Gen<Target> = (() => {
  const seeded = (i: number, room: Seg): Target => ({ room, pathId: seedPlaceholder(i), jsonId: jsonStr(seedPlaceholder(i)), author: seedAuthor(i) });
  const otherRoom = roomSeg('p-', { extra: seedRooms });
  const valid = fc.nat({ max: SEEDS - 1 }).map((i) => ok(seeded(i, { raw: seedRoom(i), decoded: seedRoom(i) })));
  const invalid = weighted<Part<Target>>(
    [3, fc.tuple(fc.nat({ max: SEEDS - 1 }), otherRoom.valid).filter(([i, r]) => r.value.decoded !== seedRoom(i)).map(([i, r]) => bad(seeded(i, r.value), `eventId: comment ${i} is in ${seedRoom(i)}, not ${r.value.decoded}`))],
    [2, fc.tuple(fc.nat({ max: SEEDS - 1 }), otherRoom.invalid!).map(([i, r]) => ({ value: seeded(i, r.value), why: r.why }))],
    [2, fc.tuple(pick(seedRooms), fc.oneof(fc.uuid(), fc.stringMatching(/^[A-Za-z0-9:_-]{1,64}$/))).map(([room, id]) => bad<Target>({ room: { raw: room, decoded: room }, pathId: id, jsonId: jsonStr(id), author: 'nobody' }, 'eventId: no such comment'))],
    [2, fc.tuple(pick(seedRooms), pick(['', 'x'.repeat(65), 'a.b', 'a b', 'a/b', '..', 'é', 'a@b', '\u0000', 'a\u202eb'])).map(([room, id]) => bad<Target>({ room: { raw: room, decoded: room }, pathId: encodeSome(id, []), jsonId: jsonStr(id), author: 'nobody' }, `eventId: ${JSON.stringify(id)}`))],
    [1, fc.tuple(pick(seedRooms), pick(['%ED%A0%80', '%FF', '%00', '%', '%C0%AF'])).map(([room, id]) => bad<Target>({ room: { raw: room, decoded: room }, pathId: id, jsonId: jsonStr(id), author: 'nobody' }, `eventId: path escape ${id}`))],
  );
  return gen(valid, invalid, [3, 2]);
})();

const commentsCase = httpGen('http-body', 'POST /v1/rooms/:room/comments', { room: writeRoom('c-'), auth: AUTH.user, headers: headersGen, body: commentBody }, (p) => {
  const body = p.body!.value as BodySpec;
  return {
    method: 'POST',
    path: `/v1/rooms/${roomText(p)}/comments`,
    auth: p.auth!.value,
    headers: p.headers!.value,
    body,
    ctx: { room: decodedRoom(p) },
    // A retry with the same clientMsgId while the first is in flight.
    ...(body.text.includes('"clientMsgId"') ? { allow: ['ERR_IN_PROGRESS'] } : {}),
  };
});

const reactionsCase = httpGen('http-body', 'POST /v1/rooms/:room/reactions', { room: writeRoom('c-'), auth: AUTH.user, headers: headersGen, body: reactionBody }, (p) => ({
  method: 'POST',
  path: `/v1/rooms/${roomText(p)}/reactions`,
  auth: p.auth!.value,
  headers: p.headers!.value,
  body: p.body!.value,
  ctx: { room: decodedRoom(p) },
  allow: ['ERR_IN_PROGRESS'],
}));

const deleteCommentCase = httpGen('http-body', 'DELETE /v1/rooms/:room/comments/:eventId', { target: targetGen, auth: AUTH['author-or-moderator'], headers: headersGen, body: strayBodyGen }, (p) => {
  const t = p.target!.value as Target;
  return {
    method: 'DELETE',
    path: `/v1/rooms/${t.room.raw}/comments/${t.pathId}`,
    auth: p.auth!.value,
    headers: p.headers!.value,
    body: p.body!.value,
    ctx: { room: t.room.decoded, author: t.author },
    // Deleted before and not archived yet: Redis holds only its tombstone.
    allow: ['ERR_COMMENT_NOT_FOUND'],
  };
});

const pinCase = httpGen('http-body', 'POST /v1/rooms/:room/pin', { target: targetGen, auth: AUTH.moderator, headers: headersGen, body: pinBody }, (p) => {
  const t = p.target!.value as Target;
  const b = p.body!.value as BodySpec;
  const body = { ...b, text: b.text.replaceAll(TARGET, t.jsonId) };
  const size = bodySize(body);
  return {
    method: 'POST',
    path: `/v1/rooms/${t.room.raw}/pin`,
    auth: p.auth!.value,
    headers: p.headers!.value,
    body,
    ctx: { room: t.room.decoded },
    allow: ['ERR_COMMENT_NOT_FOUND'],
    extraWhy: size > BODY_LIMIT && bodySize(b) <= BODY_LIMIT ? [`body: ${size} bytes`] : [],
  };
});

const unpinCase = httpGen('http-body', 'DELETE /v1/rooms/:room/pin', { room: roomSeg('p-', { extra: seedRooms }), auth: AUTH.moderator, headers: headersGen, body: strayBodyGen }, (p) => ({
  method: 'DELETE',
  path: `/v1/rooms/${roomText(p)}/pin`,
  auth: p.auth!.value,
  headers: p.headers!.value,
  body: p.body!.value,
  ctx: { room: decodedRoom(p) },
  allow: ['ERR_NOT_PINNED'],
}));

/** Settings only ever change `set-…` rooms: slow mode and emote-only never reach the rooms comments are posted to. */
const settingsCase = httpGen('http-body', 'PATCH /v1/rooms/:room/settings', { room: writeRoom('set-'), auth: AUTH.moderator, headers: headersGen, body: settingsBody }, (p) => ({
  method: 'PATCH',
  path: `/v1/rooms/${roomText(p)}/settings`,
  auth: p.auth!.value,
  headers: p.headers!.value,
  body: p.body!.value,
  ctx: { room: decodedRoom(p) },
}));

/**
 * A moderator's decision on a held comment: no body of its own (a stray one as on other
 * body-less routes). The seeded comments are not held, so a valid decision may be 404
 * ERR_HELD_NOT_FOUND; what matters is that nobody but a moderator of the room gets past it.
 */
const heldDecisionCases = (['release', 'delete'] as const).map((verb) =>
  httpGen('http-body', `POST /v1/rooms/:room/moderation/held/:eventId/${verb}`, { target: targetGen, auth: AUTH.moderator, headers: headersGen, body: strayBodyGen }, (p) => {
    const t = p.target!.value as Target;
    return {
      method: 'POST',
      path: `/v1/rooms/${t.room.raw}/moderation/held/${t.pathId}/${verb}`,
      auth: p.auth!.value,
      headers: p.headers!.value,
      body: p.body!.value,
      ctx: { room: t.room.decoded },
      allow: ['ERR_HELD_NOT_FOUND'],
    };
  }),
);

const adminParts = { user: userSeg, auth: AUTH.admin, headers: headersGen };
const adminPath = (p: Parts, suffix: string) => `/v1/admin/users/${(p.user!.value as Seg).raw}${suffix}`;
const adminCases = [
  httpGen('http-body', 'GET /v1/admin/users/:user/connections', adminParts, (p) => ({ method: 'GET', path: adminPath(p, '/connections'), auth: p.auth!.value, headers: p.headers!.value, ctx: {} })),
  httpGen(
    'http-body',
    'DELETE /v1/admin/users/:user/connections',
    { ...adminParts, query: queryGen([{ name: 'room', value: gen(fc.stringMatching(ROOM_RE).map(ok), pick(['', 'a b', '-x', 'x'.repeat(65), 'é']).map((v) => bad(v, `room=${JSON.stringify(v)}`))) }]), body: strayBodyGen },
    (p) => ({ method: 'DELETE', path: adminPath(p, '/connections'), query: p.query!.value, auth: p.auth!.value, headers: p.headers!.value, body: p.body!.value, ctx: {} }),
  ),
  httpGen('http-body', 'POST /v1/admin/users/:user/ban', { ...adminParts, body: banBody }, (p) => ({ method: 'POST', path: adminPath(p, '/ban'), auth: p.auth!.value, headers: p.headers!.value, body: p.body!.value, ctx: {} })),
  httpGen('http-body', 'DELETE /v1/admin/users/:user/ban', { ...adminParts, body: strayBodyGen }, (p) => ({ method: 'DELETE', path: adminPath(p, '/ban'), auth: p.auth!.value, headers: p.headers!.value, body: p.body!.value, ctx: {} })),
  httpGen('http-body', 'POST /v1/admin/users/:user/revoke', { ...adminParts, body: strayBodyGen }, (p) => ({ method: 'POST', path: adminPath(p, '/revoke'), auth: p.auth!.value, headers: p.headers!.value, body: p.body!.value, ctx: {} })),
];

/** A body route reached with another method, or a path that is no route: never a write. */
const wrongRouteCase: fc.Arbitrary<HttpCase> = fc
  .tuple(writeRoom('c-').valid, pick<[string, string]>([['PUT', '/comments'], ['GET', '/comments'], ['PATCH', '/comments'], ['POST', '/settings'], ['PUT', '/pin'], ['POST', '/Comments'], ['POST', '/comments/x/y'], ['POST', '/comment']]), commentBody.valid, AUTH.user.valid)
  .map(([room, [method, suffix], body, auth]) => ({
    family: 'http-body' as const,
    route: `${method} /v1/rooms/:room${suffix}`,
    gateway: 'main' as const,
    method,
    path: `/v1/rooms/${room.value.raw}${suffix}`,
    query: '',
    auth: auth.value,
    headers: [],
    body: body.value,
    ctx: { room: room.value.decoded },
    valid: false,
    why: [`no route ${method} …${suffix}`],
  }));

export const httpBodyArb: fc.Arbitrary<HttpCase> = weighted<HttpCase>(
  [10, commentsCase],
  [4, reactionsCase],
  [3, deleteCommentCase],
  [3, pinCase],
  [2, unpinCase],
  [3, settingsCase],
  ...adminCases.map((c) => [1, c] as [number, fc.Arbitrary<HttpCase>]),
  ...heldDecisionCases.map((c) => [1, c] as [number, fc.Arbitrary<HttpCase>]),
  [1, wrongRouteCase],
);

// Reads ----------------------------------------------------------------------

const readRoom = roomSeg('r-', { extra: [...seedRooms, 'cursor-room'] });
const methodGen: Gen<string> = gen(weighted<Part<string>>([20, fc.constant(ok('GET'))], [1, fc.constant(ok('HEAD'))]), pick(['POST', 'PUT', 'OPTIONS', 'TRACE']).map((m) => bad(m, `method ${m}`)), [12, 1]);

// No stray bodies on reads: a GET body has no meaning (RFC 9110), so neither taking nor refusing one would tell anything.
function readCase(name: string, suffix: string, query: Gen<string>): fc.Arbitrary<HttpCase> {
  return httpGen('http-query', name, { room: readRoom, query, auth: AUTH.reader, headers: headersGen, method: methodGen }, (p) => ({
    method: p.method!.value,
    path: `/v1/rooms/${roomText(p)}${suffix}`,
    query: p.query!.value,
    auth: p.auth!.value,
    headers: p.headers!.value,
    ctx: { room: decodedRoom(p) },
  }));
}

const feedQuery = queryGen([
  { name: 'since', value: qPosition('since') },
  { name: 'view', value: qEnum('view', ['ordered', 'sampled']) },
  // A valid wait holds the request (up to LONG_POLL_MAX_SEC): mostly 0.
  { name: 'wait', value: (() => { const q = qInt('wait', 0, 300); return gen(weighted([6, fc.constant(ok('0'))], [1, q.valid]), q.invalid); })(), absent: 6 },
  { name: 'limit', value: qInt('limit', 1, 500) },
]);

/** toMs > fromMs when both are given. */
function rangeRule(q: string): string | undefined {
  const from = param(q, 'fromMs');
  const to = param(q, 'toMs');
  if (from !== undefined && to !== undefined && DIGITS.test(from) && DIGITS.test(to) && Number(to) <= Number(from)) return `range: toMs ${to} <= fromMs ${from}`;
  return undefined;
}

/** … and a JSON page holds at most REPLAY_MAX_PAGE items. */
function replayRule(q: string): string | undefined {
  const limit = param(q, 'limit');
  const format = param(q, 'format') ?? 'json';
  if (format === 'json' && limit !== undefined && DIGITS.test(limit) && Number(limit) > REPLAY_MAX_PAGE) return `limit ${limit} > ${REPLAY_MAX_PAGE} in a JSON page`;
  return rangeRule(q);
}

const replayQuery = queryGen(
  [
    { name: 'fromMs', value: qInt('fromMs', -MAX_TIME_MS, MAX_TIME_MS) },
    { name: 'toMs', value: qInt('toMs', -MAX_TIME_MS, MAX_TIME_MS) },
    { name: 'view', value: qEnum('view', ['live', 'moderated', 'sampled']) },
    { name: 'format', value: qEnum('format', ['json', 'ndjson']) },
    // Up to 2^53 − 1 for a stream; the JSON page's own maximum is replayRule's.
    { name: 'limit', value: (() => { const a = qInt('limit', 1, 6000); const b = qInt('limit', 1, MAX_SAFE); return gen(weighted([4, a.valid], [1, b.valid]), b.invalid); })() },
    // Cursors here are never ones the API issued, so never valid (real ones: the cursor family).
    { name: 'cursor', value: gen(fc.constant(ok('')), weighted<string>([3, fc.stringMatching(/^[A-Za-z0-9_-]{1,120}(\.[A-Za-z0-9_-]{1,30})?$/)], [1, fc.string({ maxLength: 40 })]).map((c) => bad(c, 'cursor: not one the API issued'))), onlyInvalid: true },
  ],
  { rule: replayRule },
);

const statsQuery = queryGen([{ name: 'fromMs', value: qInt('fromMs', -MAX_TIME_MS, MAX_TIME_MS) }, { name: 'toMs', value: qInt('toMs', -MAX_TIME_MS, MAX_TIME_MS) }], { rule: rangeRule });

/** A tally window: both ends required, toMs > fromMs, at most 24 h long. */
function talliesRule(q: string): string | undefined {
  const from = param(q, 'fromMs');
  const to = param(q, 'toMs');
  if (from === undefined) return 'fromMs: missing';
  if (to === undefined) return 'toMs: missing';
  if (DIGITS.test(from) && DIGITS.test(to) && Number(to) - Number(from) > TALLY_MAX_WINDOW_MS) return `window: ${Number(to) - Number(from)} ms > 24 h`;
  return rangeRule(q);
}

/** Mostly windows that fit (from in the first ten minutes, to after it within the hour), else any time. */
function talliesEnd(name: string, near: fc.Arbitrary<number>): Gen<string> {
  const q = qInt(name, -MAX_TIME_MS, MAX_TIME_MS);
  return gen(weighted<Part<string>>([3, near.map((n) => ok(String(n)))], [1, q.valid]), q.invalid);
}
const talliesQuery = queryGen(
  [
    { name: 'fromMs', value: talliesEnd('fromMs', fc.integer({ min: -60_000, max: 600_000 })), absent: 1 },
    { name: 'toMs', value: talliesEnd('toMs', fc.integer({ min: 600_001, max: 3_600_000 })), absent: 1 },
  ],
  { rule: talliesRule },
);

/** The review queue: a page size, a cursor (a position: digits), and `mine` (a boolean, as JSON Schema coerces it: true or false). */
const heldQuery = queryGen([
  { name: 'limit', value: qInt('limit', 1, HELD_PAGE_MAX) },
  { name: 'cursor', value: gen(fc.stringMatching(/^\d{1,16}$/).map(ok), pick(['', '-1', '1.5', 'a', '1e3', '0x10', '１', ' 1', '12345678901234567', '0.-1', '1\u0000']).map((v) => bad(v, `cursor=${JSON.stringify(v)}`))) },
  { name: 'mine', value: gen(pick(['true', 'false']).map(ok), pick(['yes', 'TRUE', 'True', 'on', 'tru', '2', 'null', 'true\u0000', 'true ']).map((v) => bad(v, `mine=${JSON.stringify(v)}`))) },
]);

/** The whole queue needs a moderator, broadcaster or admin of the room; with mine=true any user gets their own. */
const heldCase = httpGen('http-query', 'GET /v1/rooms/:room/moderation/held', { room: readRoom, query: heldQuery, auth: AUTH.user, headers: headersGen }, (p) => {
  const query = p.query!.value as string;
  const auth = p.auth!.value as AuthSpec;
  const line = auth.lines.length === 1 ? auth.lines[0]! : undefined;
  const grant = line?.token.kind === 'valid' ? line.token.grant : undefined;
  const wholeQueue = param(query, 'mine') !== 'true';
  return {
    method: 'GET',
    path: `/v1/rooms/${roomText(p)}/moderation/held`,
    query,
    auth,
    headers: p.headers!.value,
    ctx: { room: decodedRoom(p) },
    extraWhy: wholeQueue && grant && !grants(grant, 'moderator') ? [`auth: ${JSON.stringify(grant)} may not read the whole queue (moderator)`] : [],
  };
});

const stateQuery: Gen<string> = gen(weighted<Part<string>>([6, fc.constant(ok(''))], [1, fc.array(pick(JUNK), { minLength: 1, maxLength: 4 }).map((ps) => ok(ps.join('&')))]), undefined);

/** The dev route signs `user` once trimmed; a role other than viewer is refused. It reads no token. */
const devQuery = queryGen(
  [
    {
      name: 'user',
      value: gen(
        fc.tuple(pick(['', '', '', ' ', '\t', '\u00a0', '\u3000', '\ufeff', '\n']), fc.stringMatching(/^[a-z0-9][A-Za-z0-9_.:@-]{0,40}$/), pick(['', '', '', ' ', '\u2028', '\r\n'])).map(([a, u, b]) => ok(a + u + b)),
        pick(['', ' ', 'a b', '-x', 'x'.repeat(65), 'é', '\ud800', 'a/b', '@x', 'x\u0000', '<script>', ' '.repeat(70)]).map((v) => bad(v, `user=${JSON.stringify(v)}`)),
      ),
      absent: 0,
    },
    { name: 'role', value: gen(fc.constant(ok('viewer')), pick(['moderator', 'broadcaster', 'admin', '', 'Viewer', 'viewer ', 'system']).map((v) => bad(v, `role=${JSON.stringify(v)}`))) },
  ],
  { rule: (q) => (param(q, 'user') === undefined ? 'user: missing' : undefined) },
);

const devTokenCase = httpGen('http-query', 'GET /v1/dev/token', { query: devQuery, headers: headersGen, method: methodGen }, (p) => ({ gateway: 'dev', method: p.method!.value, path: '/v1/dev/token', query: p.query!.value, headers: p.headers!.value, ctx: {} }));

export const httpQueryArb: fc.Arbitrary<HttpCase> = weighted<HttpCase>(
  [10, readCase('GET /v1/rooms/:room/feed', '/feed', feedQuery)],
  [4, readCase('GET /v1/rooms/:room/state', '/state', stateQuery)],
  [7, readCase('GET /v1/rooms/:room/replay', '/replay', replayQuery)],
  [3, readCase('GET /v1/rooms/:room/stats', '/stats', statsQuery)],
  [2, readCase('GET /v1/rooms/:room/replay/tallies', '/replay/tallies', talliesQuery)],
  [2, heldCase],
  [3, devTokenCase],
);

// ---------------------------------------------------------------------------
// WebSocket sessions
// ---------------------------------------------------------------------------

export type Frame =
  | { kind: 'text'; text: string }
  | { kind: 'binary'; bytes: number[] }
  | { kind: 'huge'; size: number; binary: boolean }
  | { kind: 'bad-utf8'; bytes: number[] }
  | { kind: 'ping'; bytes: number[] }
  | { kind: 'fragmented'; parts: string[] };

export interface WsCase extends Judged {
  family: 'ws';
  path: string;
  /** Query as sent; `@@token@@` stands for the query token (auth.query), signed at send time. */
  query: string;
  auth: AuthSpec;
  /** Frames sent once connected: clients send none today, so each one is to be ignored or end in a clean close. */
  frames: Frame[];
}

const frameArb = weighted<Frame>(
  [4, fc.string({ maxLength: 200 }).map((text) => ({ kind: 'text' as const, text }))],
  [2, pick(['{"type":"subscribe","room":"other"}', '{"type":"resync"}', 'null', '[]', '{"__proto__":{"x":1}}', '{']).map((text) => ({ kind: 'text' as const, text }))],
  [3, fc.uint8Array({ maxLength: 300 }).map((b) => ({ kind: 'binary' as const, bytes: [...b] }))],
  [1, fc.tuple(fc.integer({ min: 64 * 1024 + 1, max: 2 * 1024 * 1024 }), fc.boolean()).map(([size, binary]) => ({ kind: 'huge' as const, size, binary }))],
  [2, pick(BAD_UTF8).map((bytes) => ({ kind: 'bad-utf8' as const, bytes: [0x61, ...bytes, 0x62] }))],
  [1, fc.uint8Array({ maxLength: 125 }).map((b) => ({ kind: 'ping' as const, bytes: [...b] }))],
  [1, fc.array(fc.string({ maxLength: 20 }), { minLength: 2, maxLength: 5 }).map((parts) => ({ kind: 'fragmented' as const, parts }))],
);

/** The upgrade's own rules: `view` and `since` empty mean "not given"; repeats are refused. */
const wsQuery = queryGen(
  [
    { name: 'since', value: (() => { const q = qPosition('since'); return gen(weighted([5, q.valid], [1, fc.constant(ok(''))]), q.invalid!.filter((p) => p.value !== '')); })(), absent: 3 },
    { name: 'view', value: (() => { const q = qEnum('view', ['ordered', 'sampled']); return gen(weighted([5, q.valid], [1, fc.constant(ok(''))]), q.invalid!.filter((p) => p.value !== '')); })(), absent: 3 },
  ],
  { ws: true },
);

const wsGen = combine<WsCase>(
  { room: roomSeg('r-', { extra: seedRooms, ws: true }), query: wsQuery, auth: WS_AUTH, frames: gen(weighted<Part<Frame[]>>([3, fc.constant(ok([]))], [4, fc.array(frameArb, { minLength: 1, maxLength: 4 }).map(ok)]), undefined) },
  (p) => {
    const auth = p.auth!.value as AuthSpec;
    const q = p.query!.value as string;
    const query = auth.query ? `${q ? `${q}&` : ''}token=@@token@@` : q;
    const why = whys(p);
    return { value: { family: 'ws', path: `/v1/rooms/${roomText(p)}/ws`, query, auth, frames: p.frames!.value, valid: why.length === 0, why }, why };
  },
);
export const wsArb: fc.Arbitrary<WsCase> = wsGen.any.map((p) => p.value);

// ---------------------------------------------------------------------------
// Replay cursors: what is done to a real one
// ---------------------------------------------------------------------------

export type CursorMutation =
  | { kind: 'none' }
  | { kind: 'percent-encoded'; mask: number[] }
  | { kind: 'other-limit'; limit: number }
  | { kind: 'ndjson' }
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'append'; text: string }
  | { kind: 'delete'; at: number }
  | { kind: 'case'; at: number }
  | { kind: 'swap-parts' }
  | { kind: 'cross-mac' }
  | { kind: 'std-base64' }
  | { kind: 'edit'; field: 'key0' | 'key1' | 'key2' | 'key3' | 'offset' | 'partition' | 'fromMs' | 'toMs' | 'view' | 'v' | 'state'; delta: number }
  | { kind: 'forged'; field: 'key3' | 'offset' | 'state' }
  | { kind: 'legacy' }
  | { kind: 'other-view' }
  | { kind: 'other-range'; fromMs: number; toMs: number | null }
  | { kind: 'other-room'; room: string }
  | { kind: 'repeated' };

export interface CursorCase extends Judged {
  family: 'cursor';
  /** Index of the issued cursor to start from (modulo how many the API issued). */
  base: number;
  /** A second issued cursor (cross-mac). */
  other: number;
  mutation: CursorMutation;
}

/** Ways to reuse a cursor that keep it the request it came from: exactly as issued, percent-encoded, another page size, streamed. */
const SAME_REQUEST = new Set(['none', 'percent-encoded', 'other-limit', 'ndjson']);

export const cursorArb: fc.Arbitrary<CursorCase> = fc
  .tuple(
    fc.nat(),
    fc.nat(),
    weighted<CursorMutation>(
      [3, fc.constant({ kind: 'none' as const })],
      [1, fc.record({ kind: fc.constant('percent-encoded' as const), mask: fc.array(fc.nat(), { minLength: 1, maxLength: 8 }) })],
      [1, fc.record({ kind: fc.constant('other-limit' as const), limit: fc.integer({ min: 1, max: 50 }) })],
      [1, fc.constant({ kind: 'ndjson' as const })],
      [4, fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 6 }) })],
      [2, fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() })],
      [1, fc.record({ kind: fc.constant('append' as const), text: fc.stringMatching(/^[A-Za-z0-9_=.-]{1,8}$/) })],
      [1, fc.record({ kind: fc.constant('delete' as const), at: fc.nat() })],
      [1, fc.record({ kind: fc.constant('case' as const), at: fc.nat() })],
      [1, fc.constant({ kind: 'swap-parts' as const })],
      [1, fc.constant({ kind: 'cross-mac' as const })],
      [1, fc.constant({ kind: 'std-base64' as const })],
      [3, fc.record({ kind: fc.constant('edit' as const), field: pick(['key0', 'key1', 'key2', 'key3', 'offset', 'partition', 'fromMs', 'toMs', 'view', 'v', 'state'] as const), delta: fc.integer({ min: -1000, max: 1000 }).filter((d) => d !== 0) })],
      [1, fc.record({ kind: fc.constant('forged' as const), field: pick(['key3', 'offset', 'state'] as const) })],
      [1, fc.constant({ kind: 'legacy' as const })],
      [2, fc.constant({ kind: 'other-view' as const })],
      [1, fc.record({ kind: fc.constant('other-range' as const), fromMs: fc.integer({ min: -5000, max: 50_000 }), toMs: fc.option(fc.integer({ min: 50_001, max: 100_000 }), { nil: null }) })],
      [2, fc.record({ kind: fc.constant('other-room' as const), room: pick(['seed-0', 'seed-1', 'r-empty', 'cursor-room-2']) })],
      [1, fc.constant({ kind: 'repeated' as const })],
    ),
  )
  .map(([base, other, mutation]) => ({ family: 'cursor' as const, base, other, mutation, valid: SAME_REQUEST.has(mutation.kind), why: SAME_REQUEST.has(mutation.kind) ? [] : [`cursor: ${mutation.kind}`] }));

// ---------------------------------------------------------------------------
// Poison records: bytes on the event topic
// ---------------------------------------------------------------------------

/** Zig-zag varint of Avro longs and ints. */
export function zigzag(n: bigint): number[] {
  let z = n >= 0n ? n << 1n : ((-n) << 1n) - 1n;
  const out: number[] = [];
  while (z >= 0x80n) {
    out.push(Number((z & 0x7fn) | 0x80n));
    z >>= 7n;
  }
  out.push(Number(z));
  return out;
}
const avroStr = (s: string | number[]) => {
  const b = typeof s === 'string' ? [...Buffer.from(s, 'utf8')] : s;
  return [...zigzag(BigInt(b.length)), ...b];
};
const avroLong = (n: number | bigint) => zigzag(BigInt(n));

/**
 * A RoomEvent in Avro, written by hand from schemas/room-event.avsc (field
 * order, union branches), so any part of it can be made wrong on purpose.
 * `payload` is the union branch index and its fields already encoded.
 */
export interface EventBytes {
  eventId: number[];
  roomId: number[];
  userId: number[];
  role: number[];
  occurredAt: number[];
  videoOffsetMs: number[];
  clientMsgId: number[];
  payload: number[];
}

export const PAYLOADS = ['CommentPosted', 'ReactionAdded', 'CommentDeleted', 'CommentPinned', 'CommentUnpinned', 'ModerationDecided', 'UserMuted', 'RoomSettingsChanged', 'StreamStarted', 'StreamEnded'] as const;

export function eventBytes(e: EventBytes): number[] {
  return [...e.eventId, ...e.roomId, ...e.userId, ...e.role, ...e.occurredAt, ...e.videoOffsetMs, ...e.clientMsgId, ...e.payload];
}

/** A well-formed event of each payload type (strings may be replaced by the caller). */
export function sampleEvent(room: string, type: (typeof PAYLOADS)[number], s: { id?: string; text?: string } = {}): EventBytes {
  const id = s.id ?? '0190f000-0000-7000-8000-000000000000';
  const idx = (t: (typeof PAYLOADS)[number]) => zigzag(BigInt(PAYLOADS.indexOf(t)));
  const body: Record<(typeof PAYLOADS)[number], number[]> = {
    CommentPosted: [...avroStr(s.text ?? 'poison'), 0, ...zigzag(0xffffffn), 2, 0],
    ReactionAdded: [...avroStr('heart'), ...zigzag(1n)],
    CommentDeleted: [...avroStr('target'), ...avroStr('u1'), ...avroStr('author')],
    CommentPinned: [...avroStr('target'), 0, 0],
    CommentUnpinned: [...avroStr('target')],
    // targetEventId, targetUserId null, verdict delete, labels ["x"], score 0.0, rule "".
    ModerationDecided: [...avroStr('target'), 0, ...zigzag(2n), ...zigzag(1n), ...avroStr('x'), ...zigzag(0n), 0, 0, 0, 0, 0, 0, 0, 0, ...avroStr('')],
    UserMuted: [...avroStr('u1'), 0, 0, ...avroStr('')],
    RoomSettingsChanged: [0, 0, 0],
    StreamStarted: [...avroStr('title')],
    StreamEnded: [...avroStr('')],
  };
  return {
    eventId: avroStr(id),
    roomId: avroStr(room),
    userId: avroStr('u1'),
    role: zigzag(0n),
    occurredAt: avroLong(1_700_000_000_000),
    videoOffsetMs: [0],
    clientMsgId: [0],
    payload: [...idx(type), ...body[type]],
  };
}

export type PoisonKind =
  | 'random-bytes'
  | 'empty'
  | 'short'
  | 'bad-magic'
  | 'unknown-schema'
  | 'foreign-schema'
  | 'truncated'
  | 'trailing'
  | 'bad-index'
  | 'bad-length'
  | 'block-count'
  | 'int-overflow'
  | 'invariant'
  | 'bad-utf8';

/** The schema id a poison record's header names: the room events' own, a foreign one the driver registered, or a literal id. */
export type SchemaRef = { kind: 'writer' } | { kind: 'foreign'; index: number } | { kind: 'literal'; id: number };

export interface PoisonCase extends Judged {
  family: 'poison';
  kind: PoisonKind;
  /** Index of the poison room (its key). */
  room: number;
  /** The record value: raw bytes (`header: null`), or a wire header naming `schema` and then `body`. */
  header: { magic: number; schema: SchemaRef } | null;
  body: number[];
  /** What `dlq.error.code` may say. */
  expect: string[];
  what: string;
}

export const FOREIGN_SCHEMAS = [
  { type: 'record', name: 'NotAnEvent', namespace: 'fuzz', fields: [{ name: 'x', type: 'int' }] },
  { type: 'record', name: 'Note', namespace: 'fuzz', fields: [{ name: 's', type: 'string' }] },
  { type: 'record', name: 'RoomEvent', namespace: 'other.events', fields: [{ name: 'eventId', type: 'string' }] },
  { type: 'record', name: 'RoomEvent', namespace: 'danmaku.events', fields: [{ name: 'eventId', type: 'string' }, { name: 'mandatory', type: 'long' }] },
] as const;
/** A value of each foreign schema, in Avro. */
export const FOREIGN_VALUES: number[][] = [zigzag(7n), avroStr('hello'), avroStr('e1'), [...avroStr('e1'), ...zigzag(5n)]];

const ANY_EVENT_CODE = ['ERR_EVENT_NOT_WIRE_FORMAT', 'ERR_EVENT_SCHEMA_UNKNOWN', 'ERR_EVENT_WRONG_SCHEMA', 'ERR_EVENT_UNDECODABLE', 'ERR_EVENT_INVALID'];

function poison(kind: PoisonKind, room: number, header: PoisonCase['header'], body: number[], expect: string[], what: string): PoisonCase {
  return { family: 'poison', kind, room, header, body, expect, what, valid: false, why: [`poison: ${kind}: ${what}`] };
}
const writer = (magic = 0): PoisonCase['header'] => ({ magic, schema: { kind: 'writer' } });
const payloadType = pick(PAYLOADS);

export const poisonArb: fc.Arbitrary<PoisonCase> = fc.nat({ max: POISON_ROOMS - 1 }).chain((room) => {
  const r = poisonRoom(room);
  const event = payloadType.map((t) => sampleEvent(r, t));
  return weighted<PoisonCase>(
    [2, fc.uint8Array({ minLength: 1, maxLength: 200 }).filter((b) => b[0] !== 0).map((b) => poison('random-bytes', room, null, [...b], ['ERR_EVENT_NOT_WIRE_FORMAT'], `${b.length} random bytes`))],
    [1, fc.constant(poison('empty', room, null, [], ['ERR_EVENT_NOT_WIRE_FORMAT'], 'an empty value'))],
    [1, fc.uint8Array({ minLength: 0, maxLength: 3 }).map((b) => poison('short', room, null, [0, ...b], ['ERR_EVENT_NOT_WIRE_FORMAT'], `a ${b.length + 1}-byte value`))],
    [1, fc.tuple(fc.integer({ min: 1, max: 255 }), event).map(([m, e]) => poison('bad-magic', room, writer(m), eventBytes(e), ['ERR_EVENT_NOT_WIRE_FORMAT'], `magic byte ${m}`))],
    [1, fc.tuple(fc.integer({ min: 100_000_000, max: 2 ** 32 - 1 }), event).map(([id, e]) => poison('unknown-schema', room, { magic: 0, schema: { kind: 'literal', id } }, eventBytes(e), ['ERR_EVENT_SCHEMA_UNKNOWN'], `schema id ${id}`))],
    [1, fc.nat({ max: FOREIGN_SCHEMAS.length - 1 }).map((i) => poison('foreign-schema', room, { magic: 0, schema: { kind: 'foreign', index: i } }, FOREIGN_VALUES[i]!, ['ERR_EVENT_WRONG_SCHEMA'], `a ${JSON.stringify(FOREIGN_SCHEMAS[i]).slice(0, 60)}`))],
    [2, fc.tuple(event, fc.nat()).map(([e, at]) => {
      const b = eventBytes(e);
      const keep = at % b.length;
      return poison('truncated', room, writer(), b.slice(0, keep), ['ERR_EVENT_UNDECODABLE'], `cut to ${keep} of ${b.length} bytes`);
    })],
    [1, fc.tuple(event, fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([e, extra]) => poison('trailing', room, writer(), [...eventBytes(e), ...extra], ['ERR_EVENT_UNDECODABLE'], `${extra.length} trailing bytes`))],
    [2, fc.tuple(event, pick(['role', 'payload', 'videoOffsetMs', 'clientMsgId'] as const), fc.integer({ min: 2, max: 1000 })).map(([e, field, n]) => {
      const limit = { role: 5, payload: PAYLOADS.length, videoOffsetMs: 2, clientMsgId: 2 }[field];
      const i = field === 'payload' ? limit + n : limit + n - 2;
      const patched = { ...e, [field]: field === 'payload' ? [...zigzag(BigInt(i)), ...e.payload.slice(1)] : zigzag(BigInt(i)) };
      return poison('bad-index', room, writer(), eventBytes(patched), ['ERR_EVENT_UNDECODABLE'], `${field} branch/symbol ${i}`);
    })],
    [2, fc.tuple(event, pick(['eventId', 'roomId', 'userId'] as const), pick([-1n, -1000n, 2n ** 31n, 2n ** 40n, 2n ** 62n])).map(([e, field, len]) => poison('bad-length', room, writer(), eventBytes({ ...e, [field]: [...zigzag(len), 0x41, 0x41] }), ['ERR_EVENT_UNDECODABLE'], `${field} length ${len}`))],
    // A block count with nothing after it: a map (RoomSettingsChanged.extra) or an array (ModerationDecided.labels) claiming n entries.
    [2, fc.tuple(pick(['map', 'array'] as const), pick([3n, 1000n, 100_000n, 2n ** 31n, 2n ** 40n, 2n ** 53n, 2n ** 62n, -(2n ** 40n)])).map(([what, n]) => {
      const e = sampleEvent(r, what === 'map' ? 'RoomSettingsChanged' : 'ModerationDecided');
      const head = eventBytes({ ...e, payload: [] });
      const payload =
        what === 'map'
          ? [...zigzag(BigInt(PAYLOADS.indexOf('RoomSettingsChanged'))), 0, 0, ...zigzag(n), ...(n < 0n ? zigzag(1n) : [])]
          : [...zigzag(BigInt(PAYLOADS.indexOf('ModerationDecided'))), ...avroStr('target'), 0, ...zigzag(2n), ...zigzag(n), ...(n < 0n ? zigzag(1n) : [])];
      return poison('block-count', room, writer(), [...head, ...payload], ['ERR_EVENT_UNDECODABLE'], `${what} block count ${n}, no entries`);
    })],
    // An Avro int is 32 bits: a longer varint is not one (Java and librdkafka readers refuse it).
    [1, pick([2n ** 31n, 2n ** 40n, -(2n ** 31n) - 1n]).map((n) => {
      const e = sampleEvent(r, 'ReactionAdded');
      return poison('int-overflow', room, writer(), eventBytes({ ...e, payload: [...zigzag(1n), ...avroStr('heart'), ...zigzag(n)] }), ANY_EVENT_CODE, `ReactionAdded.count ${n}`);
    })],
    // Well-formed Avro, but an event that breaks an invariant (schemas/codec.ts validateEvent).
    [3, pick(['eventId', 'roomId', 'userId', 'occurredAt', 'color', 'count', 'target', 'muted', 'slow'] as const).map((which) => {
      const base = sampleEvent(r, which === 'color' ? 'CommentPosted' : which === 'count' ? 'ReactionAdded' : which === 'target' ? 'CommentDeleted' : which === 'muted' ? 'UserMuted' : which === 'slow' ? 'RoomSettingsChanged' : 'CommentPosted');
      const p = (t: (typeof PAYLOADS)[number]) => zigzag(BigInt(PAYLOADS.indexOf(t)));
      const e: EventBytes = { ...base };
      if (which === 'eventId') e.eventId = avroStr('');
      if (which === 'roomId') e.roomId = avroStr('');
      if (which === 'userId') e.userId = avroStr('');
      if (which === 'occurredAt') e.occurredAt = avroLong(-5);
      if (which === 'color') e.payload = [...p('CommentPosted'), ...avroStr('bad colour'), 0, ...zigzag(0x1000000n), 2, 0];
      if (which === 'count') e.payload = [...p('ReactionAdded'), ...avroStr('heart'), ...zigzag(0n)];
      if (which === 'target') e.payload = [...p('CommentDeleted'), ...avroStr(''), ...avroStr('u1'), ...avroStr('')];
      if (which === 'muted') e.payload = [...p('UserMuted'), ...avroStr(''), 0, 0, ...avroStr('')];
      if (which === 'slow') e.payload = [...p('RoomSettingsChanged'), 2, ...zigzag(-5n), 0, 0];
      return poison('invariant', room, writer(), eventBytes(e), ['ERR_EVENT_INVALID'], `${which} breaks an invariant`);
    })],
    // Bytes that are not UTF-8 inside a string: the log holds only UTF-8 (README), so such a record is not an event.
    [3, fc.tuple(pick(BAD_UTF8), pick(['text', 'eventId', 'roomId', 'userId', 'emoji'] as const)).map(([bytes, field]) => {
      const junk = [0x41, ...bytes, 0x42];
      const base = sampleEvent(r, field === 'emoji' ? 'ReactionAdded' : 'CommentPosted', { id: undefined });
      const e: EventBytes = { ...base };
      if (field === 'text') e.payload = [...zigzag(0n), ...avroStr(junk), 0, ...zigzag(0xffffffn), 2, 0];
      if (field === 'emoji') e.payload = [...zigzag(1n), ...avroStr(junk), ...zigzag(1n)];
      if (field === 'eventId') e.eventId = avroStr(junk);
      if (field === 'roomId') e.roomId = avroStr([...Buffer.from(r), ...bytes]);
      if (field === 'userId') e.userId = avroStr(junk);
      return poison('bad-utf8', room, writer(), eventBytes(e), ANY_EVENT_CODE, `${field} holds bytes ${bytes.map((b) => b.toString(16)).join(' ')}`);
    })],
  );
});

// ---------------------------------------------------------------------------

export type Case = HttpCase | WsCase | CursorCase | PoisonCase;

export const ARBITRARIES: Record<Family, fc.Arbitrary<Case>> = {
  'http-body': httpBodyArb,
  'http-query': httpQueryArb,
  ws: wsArb,
  cursor: cursorArb,
  poison: poisonArb,
};

/** Shares of the cases per family: most to HTTP, fewer to what costs more per case. */
export const SHARES: Record<Family, number> = { 'http-body': 0.48, 'http-query': 0.38, ws: 0.07, cursor: 0.05, poison: 0.02 };
