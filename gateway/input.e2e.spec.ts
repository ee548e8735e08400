/**
 * Bad input against the running system (processors + gateway as real
 * processes): bytes that are not UTF-8, lone surrogates, text that would show
 * nothing, numbers out of every range, and pins and deletions of comments
 * that do not exist. Each is refused with a 4xx and a stable code, never a
 * 5xx, and nothing of it reaches the log. (Replay and stats need the archive:
 * their ranges are in services/archive-routes.int.spec.ts.)
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startWorld, type World } from '../services/world.ts';
import { randomName, waitFor } from '../test/helpers.ts';
import { CLOSE, type FeedResponse } from './protocol.ts';

let w: World;

beforeAll(async () => {
  w = await startWorld({ env: { LIMIT_COMMENTS: '1000', LIMIT_READS: '100000', MODERATION_ENABLED: 'false', POLL_MIN_MS: '100' } });
});
afterAll(async () => {
  await w?.stop();
});

type Answer = { status: number; body: Record<string, any> | undefined };

/** `raw` is sent as it is (a string or the exact bytes); `body` as JSON. */
async function call(method: string, path: string, o: { token?: string; body?: unknown; raw?: string | Buffer } = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.body !== undefined || o.raw !== undefined) headers['content-type'] = 'application/json';
  const raw = typeof o.raw === 'string' || o.raw === undefined ? o.raw : new Uint8Array(o.raw);
  const res = await fetch(`${w.url}${path}`, { method, headers, body: raw ?? (o.body === undefined ? undefined : JSON.stringify(o.body)) });
  const text = await res.text();
  let body: Record<string, any> | undefined;
  try {
    body = text ? (JSON.parse(text) as Record<string, any>) : undefined;
  } catch {
    body = { unparsed: text };
  }
  return { status: res.status, body };
}

const feed = async (room: string) => (await call('GET', `/v1/rooms/${room}/feed?limit=500`)).body as FeedResponse;
const texts = (f: FeedResponse) => f.events.flatMap((e) => (e.kind === 'comment' ? [e.text] : []));
/** Posts a marker and waits for it: everything the gateway accepted before it is in the feed by then. */
async function settle(room: string): Promise<FeedResponse> {
  const marker = `marker ${Math.random()}`;
  expect((await call('POST', `/v1/rooms/${room}/comments`, { token: w.token('marker'), body: { text: marker } })).status).toBe(202);
  return waitFor(async () => {
    const f = await feed(room);
    return texts(f).includes(marker) ? f : undefined;
  }, { what: 'the marker in the feed' });
}

function expectCode(res: Answer, status: number, code: string, what: string): void {
  expect([res.status, res.body?.code], `${what}: ${JSON.stringify(res.body)}`).toEqual([status, code]);
}

describe('bodies that are not valid UTF-8 are refused, not rewritten', () => {
  it('answers 400 ERR_INVALID_UTF8 for invalid bytes on every route with a body', async () => {
    const room = randomName('utf8');
    const t = w.token('bytes');
    const mod = w.token('mod', 'moderator', { rooms: [room] });
    const bodies: [string, Buffer][] = [
      ['a stray continuation byte', Buffer.from([...Buffer.from('{"text":"hi '), 0x80, ...Buffer.from('"}')])],
      ['0xFF', Buffer.from([...Buffer.from('{"text":"'), 0xff, ...Buffer.from('"}')])],
      ['a truncated sequence', Buffer.from([...Buffer.from('{"text":"'), 0xe4, 0xb8, ...Buffer.from('"}')])],
      ['an overlong "/"', Buffer.from([...Buffer.from('{"text":"'), 0xc0, 0xaf, ...Buffer.from('"}')])],
      ['a surrogate encoded as bytes (CESU-8)', Buffer.from([...Buffer.from('{"text":"'), 0xed, 0xa0, 0x80, ...Buffer.from('"}')])],
      ['a code point above U+10FFFF', Buffer.from([...Buffer.from('{"text":"'), 0xf4, 0x90, 0x80, 0x80, ...Buffer.from('"}')])],
    ];
    for (const [what, raw] of bodies) expectCode(await call('POST', `/v1/rooms/${room}/comments`, { token: t, raw }), 400, 'ERR_INVALID_UTF8', what);
    // The JSON with a 0xFF byte where the % is.
    const bad = (json: string) => Buffer.concat([Buffer.from(json.slice(0, json.indexOf('%'))), Buffer.from([0xff]), Buffer.from(json.slice(json.indexOf('%') + 1))]);
    expectCode(await call('POST', `/v1/rooms/${room}/reactions`, { token: t, raw: bad('{"emoji":"heart%"}') }), 400, 'ERR_INVALID_UTF8', 'reactions');
    expectCode(await call('POST', `/v1/rooms/${room}/pin`, { token: mod, raw: bad('{"eventId":"e1%"}') }), 400, 'ERR_INVALID_UTF8', 'pin');
    expectCode(await call('PATCH', `/v1/rooms/${room}/settings`, { token: mod, raw: bad('{"emoteOnly":true}%') }), 400, 'ERR_INVALID_UTF8', 'settings');
    // Valid multi-byte text (CJK, astral emoji) is of course fine.
    expect((await call('POST', `/v1/rooms/${room}/comments`, { token: t, raw: Buffer.from('{"text":"弾幕 😀"}') })).status).toBe(202);
    expect(texts(await settle(room))).toEqual(['弾幕 😀', expect.stringMatching(/^marker/)]);
  });

  it('refuses lone surrogate escapes anywhere in a body, and takes paired ones', async () => {
    const room = randomName('surrogate');
    const t = w.token('escapes');
    for (const raw of [
      '{"text":"\\ud800"}',
      '{"text":"ok \\udfff ok"}',
      '{"text":"\\ude00\\ud83d"}',
      '{"text":"hi","clientMsgId":"\\ud800"}',
      '{"text":"hi","\\udc00":1}',
    ]) {
      expectCode(await call('POST', `/v1/rooms/${room}/comments`, { token: t, raw }), 400, 'ERR_INVALID_UTF8', raw);
    }
    // An escaped backslash before "ud800" is plain text, and a pair is one character.
    expect((await call('POST', `/v1/rooms/${room}/comments`, { token: t, raw: '{"text":"\\\\ud800 \\ud83d\\ude00"}' })).status).toBe(202);
    expect(texts(await settle(room))).toEqual(['\\ud800 😀', expect.stringMatching(/^marker/)]);
  });

  it('keeps fastify\'s JSON rules: malformed, empty and prototype-poisoning bodies are ERR_BAD_JSON, a big one ERR_BODY_TOO_LARGE', async () => {
    const room = randomName('json');
    const t = w.token('json');
    expectCode(await call('POST', `/v1/rooms/${room}/comments`, { token: t, raw: '{"text": ' }), 400, 'ERR_BAD_JSON', 'malformed');
    expectCode(await call('POST', `/v1/rooms/${room}/comments`, { token: t, raw: '' }), 400, 'ERR_BAD_JSON', 'empty');
    expectCode(await call('POST', `/v1/rooms/${room}/comments`, { token: t, raw: '{"text":"hi","__proto__":{"admin":true}}' }), 400, 'ERR_BAD_JSON', '__proto__');
    expectCode(await call('POST', `/v1/rooms/${room}/comments`, { token: t, raw: '{"text":"hi","constructor":{"prototype":{"admin":true}}}' }), 400, 'ERR_BAD_JSON', 'constructor.prototype');
    expectCode(await call('POST', `/v1/rooms/${room}/comments`, { token: t, body: { text: 'x'.repeat(100_000) } }), 400, 'ERR_BODY_TOO_LARGE', 'too large');
    // A body that is too large is refused for its size even when its bytes are not UTF-8.
    expectCode(await call('POST', `/v1/rooms/${room}/comments`, { token: t, raw: Buffer.alloc(100_000, 0xff) }), 400, 'ERR_BODY_TOO_LARGE', 'too large, and invalid');
  });
});

describe('text that displays as text', () => {
  it('strips bidi controls and stray tags, keeps flags and emoji whole, and refuses what would show nothing', async () => {
    const room = randomName('text');
    const t = w.token('texter');
    const england = '\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}';
    const post = (text: string) => call('POST', `/v1/rooms/${room}/comments`, { token: t, body: { text } });
    expectCode(await post('\u3164'), 400, 'ERR_TEXT_INVISIBLE', 'a Hangul filler');
    expectCode(await post('\uFE0F\uFE0F\u{E0100}'), 400, 'ERR_TEXT_INVISIBLE', 'variation selectors');
    expectCode(await post('\u0301\u0302'), 400, 'ERR_TEXT_INVISIBLE', 'combining marks');
    expectCode(await post(' \u2800 \u115F '), 400, 'ERR_TEXT_INVISIBLE', 'braille blank and a Hangul filler');
    expectCode(await post('\u202E\u2066\u200F\u061C\u{E0041}\u{E007F}'), 400, 'ERR_TEXT_LENGTH', 'nothing but bidi controls and tags');
    expect((await post(`go ${england}! ❤️ 👍🏽 👨‍👩‍👧 \u202Eevil\u202C \u2067rtl\u2069 hid\u{E0068}\u{E0069}den`)).status).toBe(202);
    expect(texts(await settle(room))[0]).toBe(`go ${england}! ❤️ 👍🏽 👨‍👩‍👧 evil rtl hidden`);
  });
});

describe('paths and query strings that do not decode', () => {
  it('answers 400 with a code for percent-escapes that are not UTF-8, malformed or too long, on HTTP and WebSocket', async () => {
    const t = w.token('paths');
    expectCode(await call('POST', '/v1/rooms/%ED%A0%80/comments', { token: t, body: { text: 'x' } }), 400, 'ERR_INVALID_UTF8', 'a surrogate in the path');
    expectCode(await call('GET', '/v1/rooms/%FF/state'), 400, 'ERR_INVALID_UTF8', '0xFF in the path');
    expectCode(await call('GET', '/v1/rooms/%ZZ/state'), 400, 'ERR_BAD_REQUEST', 'a malformed escape');
    expectCode(await call('DELETE', `/v1/rooms/r/comments/${'%ED%A0%80'}`, { token: t }), 400, 'ERR_INVALID_UTF8', 'a surrogate in the event id');
    expectCode(await call('GET', `/v1/rooms/${'r'.repeat(101)}/state`), 400, 'ERR_VALIDATION', 'a room id past the router\'s limit');
    expectCode(await call('GET', '/v1/rooms/r/feed?since=%ED%A0%80'), 400, 'ERR_VALIDATION', 'a surrogate in since');
    expectCode(await call('GET', '/v1/rooms/r/feed?view=%ED%A0%80'), 400, 'ERR_VALIDATION', 'a surrogate in view');
    for (const q of ['since=%ED%A0%80', 'view=%FF']) {
      const ws = new WebSocket(`${w.url.replace('http', 'ws')}/v1/rooms/r/ws?${q}`);
      ws.on('error', () => undefined);
      const closed = await new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
      expect(closed, q).toBe(CLOSE.badRequest);
    }
  });
});

describe('every number has bounds', () => {
  // Query strings: huge, negative, exponent, NaN/Infinity, float, empty and not a number.
  const BAD_QUERY_INTEGERS = ['9223372036854775807', '9007199254740993', '-1', '1e3', '1e400', '-1e400', 'NaN', 'Infinity', '-Infinity', '1.5', '', ' 1', '0x10', 'abc'];

  it('feed: wait and limit', async () => {
    for (const param of ['wait', 'limit']) {
      for (const v of BAD_QUERY_INTEGERS) {
        expectCode(await call('GET', `/v1/rooms/r/feed?${param}=${encodeURIComponent(v)}`), 400, 'ERR_VALIDATION', `${param}=${v}`);
      }
    }
    expectCode(await call('GET', '/v1/rooms/r/feed?wait=301'), 400, 'ERR_VALIDATION', 'wait=301');
    expectCode(await call('GET', '/v1/rooms/r/feed?limit=0'), 400, 'ERR_VALIDATION', 'limit=0');
    expectCode(await call('GET', '/v1/rooms/r/feed?limit=1&limit=2'), 400, 'ERR_VALIDATION', 'limit twice');
    expect((await call('GET', '/v1/rooms/r/feed?wait=0&limit=500')).status).toBe(200);
  });

  const BAD_POSITIONS = [
    '9007199254740992.0', // epoch past 2^53 - 1
    '0.9007199254740992', // offset past 2^53 - 1
    '99999999999999999999.0',
    '0.99999999999999999999',
    '0.-2',
    '-1.0',
    '1e3.0',
    '0.1e3',
    '0.Infinity',
    'NaN.0',
    '0.1.5',
    '0.',
    '.5',
    '',
    '0',
  ];

  it('feed: since, a position <epoch>.<offset>', async () => {
    for (const since of BAD_POSITIONS) {
      expectCode(await call('GET', `/v1/rooms/r/feed?since=${encodeURIComponent(since)}`), 400, 'ERR_VALIDATION', `since=${since}`);
    }
    const edge = await call('GET', '/v1/rooms/r/feed?since=9007199254740991.-1');
    expect(edge.status, JSON.stringify(edge.body)).toBe(200);
  });

  it('push: since closes the socket with the bad-request code', async () => {
    for (const since of BAD_POSITIONS.filter((s) => s !== '')) {
      const ws = new WebSocket(`${w.url.replace('http', 'ws')}/v1/rooms/r/ws?since=${encodeURIComponent(since)}`);
      ws.on('error', () => undefined);
      const closed = await new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
      expect(closed, `since=${since}`).toEqual({ code: CLOSE.badRequest, reason: expect.stringMatching(/since/) });
    }
    // The largest position is one: a snapshot (of another epoch) comes back.
    const ws = new WebSocket(`${w.url.replace('http', 'ws')}/v1/rooms/r/ws?since=9007199254740991.9007199254740991`);
    const first = await new Promise<{ type: string; reason?: string }>((resolve, reject) => {
      ws.once('message', (d) => resolve(JSON.parse(d.toString()) as { type: string; reason?: string }));
      ws.once('close', (code) => reject(new Error(`closed ${code}`)));
    });
    ws.close();
    expect(first).toMatchObject({ type: 'snapshot', reason: 'epoch' });
  });

  it('write bodies: color, videoOffsetMs, count, durationSec, slowModeSec', async () => {
    const room = randomName('numbers');
    const t = w.token('numbers');
    const mod = w.token('mod', 'moderator', { rooms: [room] });
    // JSON numbers as written: huge, negative, exponent (1e400 parses as Infinity), float, and what is not a number.
    const BAD = ['9223372036854775807', '1e400', '-1e400', '-1', '1.5', '1e-7', '"1"', 'null', 'true', '"NaN"', '[]'];
    const cases: [string, string, string, string][] = [
      ['POST', `/v1/rooms/${room}/comments`, 'color', '{"text":"x","color":%}'],
      ['POST', `/v1/rooms/${room}/comments`, 'videoOffsetMs', '{"text":"x","videoOffsetMs":%}'],
      ['POST', `/v1/rooms/${room}/reactions`, 'count', '{"emoji":"heart","count":%}'],
      ['POST', `/v1/rooms/${room}/pin`, 'durationSec', '{"eventId":"e1","durationSec":%}'],
      ['PATCH', `/v1/rooms/${room}/settings`, 'slowModeSec', '{"slowModeSec":%}'],
    ];
    for (const [method, path, field, template] of cases) {
      for (const v of BAD) {
        const res = await call(method, path, { token: method === 'PATCH' || path.endsWith('/pin') ? mod : t, raw: template.replace('%', v) });
        expectCode(res, 400, 'ERR_VALIDATION', `${field}=${v}`);
      }
    }
    // The upper bounds themselves.
    expectCode(await call('POST', `/v1/rooms/${room}/comments`, { token: t, raw: '{"text":"x","color":16777216}' }), 400, 'ERR_VALIDATION', 'color 0x1000000');
    expectCode(await call('POST', `/v1/rooms/${room}/comments`, { token: t, raw: '{"text":"x","videoOffsetMs":8640000000000001}' }), 400, 'ERR_VALIDATION', 'videoOffsetMs past 8.64e15');
    expectCode(await call('POST', `/v1/rooms/${room}/reactions`, { token: t, raw: '{"emoji":"heart","count":101}' }), 400, 'ERR_VALIDATION', 'count 101');
    expectCode(await call('POST', `/v1/rooms/${room}/pin`, { token: mod, raw: '{"eventId":"e1","durationSec":86401}' }), 400, 'ERR_VALIDATION', 'durationSec 86401');
    expectCode(await call('PATCH', `/v1/rooms/${room}/settings`, { token: mod, raw: '{"slowModeSec":3601}' }), 400, 'ERR_VALIDATION', 'slowModeSec 3601');
    expect((await call('POST', `/v1/rooms/${room}/comments`, { token: t, raw: '{"text":"far in","videoOffsetMs":8640000000000000,"color":16777215}' })).status).toBe(202);
    // Nothing refused reached the log: the room holds the one comment and the marker.
    expect(texts(await settle(room))).toEqual(['far in', expect.stringMatching(/^marker/)]);
  });
});

describe('pins and deletions name a comment of the room', () => {
  it('refuses unknown ids with 404 ERR_COMMENT_NOT_FOUND, for a moderator, an author and a pin, and writes nothing', async () => {
    const room = randomName('unknown');
    const other = randomName('unknown-other');
    const viewer = w.token('author');
    const mod = w.token('mod', 'moderator', { rooms: [room, other] });
    const posted = await call('POST', `/v1/rooms/${other}/comments`, { token: viewer, body: { text: 'in the other room' } });
    const elsewhere = posted.body!.eventId as string;
    await settle(other);
    const ghost = '01900000-0000-7000-8000-000000000000';
    expectCode(await call('DELETE', `/v1/rooms/${room}/comments/${ghost}`, { token: mod }), 404, 'ERR_COMMENT_NOT_FOUND', 'moderator deletes a ghost');
    expectCode(await call('DELETE', `/v1/rooms/${room}/comments/${ghost}`, { token: viewer }), 404, 'ERR_COMMENT_NOT_FOUND', 'a viewer deletes a ghost');
    expectCode(await call('POST', `/v1/rooms/${room}/pin`, { token: mod, body: { eventId: ghost } }), 404, 'ERR_COMMENT_NOT_FOUND', 'pin a ghost');
    // A comment of another room is not one of this room.
    expectCode(await call('DELETE', `/v1/rooms/${room}/comments/${elsewhere}`, { token: mod }), 404, 'ERR_COMMENT_NOT_FOUND', 'delete across rooms');
    expectCode(await call('DELETE', `/v1/rooms/${room}/comments/${elsewhere}`, { token: viewer }), 404, 'ERR_COMMENT_NOT_FOUND', 'its author, across rooms');
    expectCode(await call('POST', `/v1/rooms/${room}/pin`, { token: mod, body: { eventId: elsewhere } }), 404, 'ERR_COMMENT_NOT_FOUND', 'pin across rooms');
    // A tombstone is not a comment either.
    expectCode(await call('POST', `/v1/rooms/${room}/pin`, { token: mod, body: { eventId: `del:${ghost}` } }), 404, 'ERR_COMMENT_NOT_FOUND', 'pin a tombstone id');
    const f = await settle(room);
    expect(f.events.filter((e) => e.kind === 'delete')).toEqual([]);
    expect((await call('GET', `/v1/rooms/${room}/state`)).body!.pinned).toBeNull();
    expect(texts(await feed(other))).toContain('in the other room');
  });

  it('accepts them for a comment Redis holds: pinned with its text, deleted by its author', async () => {
    const room = randomName('known');
    const viewer = w.token('author');
    const mod = w.token('mod', 'moderator', { rooms: [room] });
    const id = (await call('POST', `/v1/rooms/${room}/comments`, { token: viewer, body: { text: 'pin me' } })).body!.eventId as string;
    await settle(room);
    expect((await call('POST', `/v1/rooms/${room}/pin`, { token: mod, body: { eventId: id } })).status).toBe(202);
    const pinned = await waitFor(async () => (await call('GET', `/v1/rooms/${room}/state`)).body!.pinned ?? undefined, { what: 'the pin' });
    expect(pinned).toMatchObject({ eventId: id, text: 'pin me' });
    expect((await call('DELETE', `/v1/rooms/${room}/comments/${id}`, { token: viewer })).status).toBe(202);
    await waitFor(async () => (await feed(room)).events.some((e) => e.kind === 'delete' && e.eventId === id) || undefined, { what: 'the tombstone' });
  });
});

describe('one request, one reading of it', () => {
  /** Sends raw HTTP/1.1 and returns the status line and headers (sockets, so headers can repeat). */
  const raw = (request: string) =>
    new Promise<string>((resolve, reject) => {
      const { port } = new URL(w.url);
      const s = net.connect(Number(port), '127.0.0.1', () => s.write(request));
      let out = '';
      s.on('data', (b) => (out += b.toString('latin1')));
      s.on('end', () => resolve(out));
      s.on('error', reject);
    });

  it('refuses a repeated Authorization or Content-Type header instead of taking the first', async () => {
    const room = randomName('dup');
    const body = JSON.stringify({ text: 'who am I' });
    const twoTokens = await raw(
      `POST /v1/rooms/${room}/comments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${w.token('first')}\r\nAuthorization: Bearer ${w.token('second')}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(twoTokens).toMatch(/^HTTP\/1\.1 400/);
    expect(twoTokens).toContain('ERR_BAD_REQUEST');
    const twoTypes = await raw(
      `POST /v1/rooms/${room}/comments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${w.token('first')}\r\nContent-Type: application/json\r\nContent-Type: text/plain\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(twoTypes).toMatch(/^HTTP\/1\.1 400/);
    // One of each is fine.
    const once = await raw(
      `POST /v1/rooms/${room}/comments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${w.token('first')}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(once).toMatch(/^HTTP\/1\.1 202/);
  });

  it('answers oversized headers without a body, even to HEAD', async () => {
    const res = await raw(`HEAD /v1/rooms/x/state HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(17_000)}\r\nConnection: close\r\n\r\n`);
    expect(res).toMatch(/^HTTP\/1\.1 431/);
    expect(res).toMatch(/Content-Length: 0\r\n/);
    expect(res.endsWith('\r\n\r\n')).toBe(true);
  });
});
