/**
 * The auth matrix, against the running system (processors + gateways as real
 * processes): every role × every action × its own room / another room, every
 * token defect, asymmetric verification beside HS256, the fail-closed start,
 * DEV_MODE, where tokens may come from, and which proxy headers are believed.
 */
import { createHmac, generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createSigner } from 'fast-jwt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ServiceProcess } from '../services/spawn.ts';
import { freePort, startWorld, type World } from '../services/world.ts';
import { randomName, waitFor } from '../test/helpers.ts';
import type { FeedResponse } from './protocol.ts';

let w: World;
const A = randomName('auth-a');
const B = randomName('auth-b');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'danmaku-auth-'));

beforeAll(async () => {
  w = await startWorld({ env: { LIMIT_COMMENTS: '1000', MODERATION_ENABLED: 'false', PRESENCE_INTERVAL_MS: '300' } });
});
afterAll(async () => {
  await w?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function call(base: string, method: string, p: string, o: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...o.headers };
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${p}`, { method, headers, body: o.body === undefined ? undefined : JSON.stringify(o.body) });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, any>) : undefined };
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
/** A token built by hand, so every defect can be made exactly. */
function handmade(payload: Record<string, unknown>, o: { alg?: string; key?: string | Buffer; signature?: string } = {}): string {
  const alg = o.alg ?? 'HS256';
  const head = `${b64({ alg, typ: 'JWT' })}.${b64(payload)}`;
  if (o.signature !== undefined) return `${head}.${o.signature}`;
  const hash = alg === 'HS512' ? 'sha512' : 'sha256';
  return `${head}.${createHmac(hash, o.key ?? w.env.JWT_SECRET!).update(head).digest('base64url')}`;
}
const nowSec = () => Math.floor(Date.now() / 1000);

describe('the role matrix', () => {
  type Action = 'comment' | 'reaction' | 'delete-other' | 'pin' | 'unpin' | 'settings' | 'held-read' | 'held-release' | 'held-delete';
  const ACTIONS: Action[] = ['comment', 'reaction', 'delete-other', 'pin', 'unpin', 'settings', 'held-read', 'held-release', 'held-delete'];
  const moderating: Action[] = ['delete-other', 'pin', 'unpin', 'settings', 'held-read', 'held-release', 'held-delete'];
  // What an allowed call answers: 202 for writes; the queue's page (200); a decision on an id the
  // queue does not hold passes the role check and then finds nothing (404).
  const ALLOWED: Partial<Record<Action, [number, string | undefined]>> = { 'held-read': [200, undefined], 'held-release': [404, 'ERR_HELD_NOT_FOUND'], 'held-delete': [404, 'ERR_HELD_NOT_FOUND'] };

  it('grants each action to exactly the roles that hold it in that room', async () => {
    const actors: Record<string, string | undefined> = {
      anonymous: undefined,
      viewer: w.token('val'),
      'moderator of A': w.token('mia', 'moderator', { rooms: [A] }),
      'broadcaster of A': w.token('cas', 'broadcaster', { rooms: [A] }),
      'moderator of B only': w.token('mob', 'moderator', { rooms: [B] }),
      'broadcaster of B only': w.token('cab', 'broadcaster', { rooms: [B] }),
      admin: w.token('ada', 'admin'),
    };
    const allowed = (actor: string, action: Action) =>
      actor === 'anonymous' ? false : moderating.includes(action) ? ['moderator of A', 'broadcaster of A', 'admin'].includes(actor) : true;

    // Comments of someone else to act on (deleting one uses it up).
    const victim = w.token('vic');
    const pool: string[] = [];
    for (let i = 0; i < 6; i++) pool.push((await call(w.url, 'POST', `/v1/rooms/${A}/comments`, { token: victim, body: { text: `target ${i}` } })).body!.eventId as string);
    const inFeed = async (id: string) => ((await call(w.url, 'GET', `/v1/rooms/${A}/feed?limit=500`)).body as FeedResponse).events.some((e) => e.kind === 'comment' && e.eventId === id);
    await waitFor(async () => (await inFeed(pool[pool.length - 1]!)) || undefined, { what: 'the target comments in the feed', timeoutMs: 20_000 });
    const pinned = async () => ((await call(w.url, 'GET', `/v1/rooms/${A}/state`)).body as { pinned: unknown }).pinned !== null;

    const seen: string[] = [];
    for (const [actor, token] of Object.entries(actors)) {
      for (const action of ACTIONS) {
        if (action === 'unpin' && allowed(actor, action)) {
          // Something must be pinned for an allowed unpin to be a 202.
          await call(w.url, 'POST', `/v1/rooms/${A}/pin`, { token: actors.admin, body: { eventId: pool[0] } });
          await waitFor(async () => (await pinned()) || undefined, { what: 'a pin to unpin' });
        }
        const res =
          action === 'comment'
            ? await call(w.url, 'POST', `/v1/rooms/${A}/comments`, { token, body: { text: `hello from ${actor}` } })
            : action === 'reaction'
              ? await call(w.url, 'POST', `/v1/rooms/${A}/reactions`, { token, body: { emoji: 'clap' } })
              : action === 'delete-other'
                ? await call(w.url, 'DELETE', `/v1/rooms/${A}/comments/${allowed(actor, action) ? pool.pop() : pool[0]}`, { token })
                : action === 'pin'
                  ? await call(w.url, 'POST', `/v1/rooms/${A}/pin`, { token, body: { eventId: pool[0] } })
                  : action === 'unpin'
                    ? await call(w.url, 'DELETE', `/v1/rooms/${A}/pin`, { token })
                    : action === 'held-read'
                      ? await call(w.url, 'GET', `/v1/rooms/${A}/moderation/held`, { token })
                      : action === 'held-release' || action === 'held-delete'
                        ? await call(w.url, 'POST', `/v1/rooms/${A}/moderation/held/${pool[0]}/${action === 'held-release' ? 'release' : 'delete'}`, { token })
                        : await call(w.url, 'PATCH', `/v1/rooms/${A}/settings`, { token, body: { slowModeSec: 0 } });
        const want = allowed(actor, action) ? (ALLOWED[action] ?? [202, undefined]) : token === undefined ? [401, 'ERR_AUTH_REQUIRED'] : [403, 'ERR_FORBIDDEN'];
        expect([res.status, res.status < 300 ? undefined : res.body?.code], `${actor} → ${action}`).toEqual(want);
        seen.push(`${actor}/${action}`);
      }
    }
    expect(seen).toHaveLength(Object.keys(actors).length * ACTIONS.length);
    // The role written into the log is the actor's role in that room.
    await waitFor(async () => {
      const g = (await call(w.url, 'GET', `/v1/rooms/${A}/feed?limit=500`)).body as FeedResponse;
      return g.events.some((e) => e.kind === 'comment' && e.text === 'hello from broadcaster of B only') || undefined;
    }, { what: 'the last comments' });
    const g = (await call(w.url, 'GET', `/v1/rooms/${A}/feed?limit=500`)).body as FeedResponse;
    const role = (t: string) => (g.events.find((e) => e.kind === 'comment' && e.text === t) as { role: string } | undefined)?.role;
    expect([role('hello from moderator of A'), role('hello from moderator of B only'), role('hello from admin'), role('hello from viewer')]).toEqual(['moderator', 'viewer', 'admin', 'viewer']);
  });

  it('refuses every token defect with 401 ERR_AUTH_INVALID', async () => {
    const secret = w.env.JWT_SECRET!;
    const base = { sub: 'eve', iat: nowSec() };
    const defects: Record<string, string> = {
      expired: handmade({ ...base, iat: nowSec() - 120, exp: nowSec() - 60 }),
      'no exp': handmade({ ...base }),
      'alg none': handmade({ ...base, exp: nowSec() + 60 }, { alg: 'none', signature: '' }),
      'another algorithm (HS512)': handmade({ ...base, exp: nowSec() + 60 }, { alg: 'HS512', key: secret }),
      'a wrong key': handmade({ ...base, exp: nowSec() + 60 }, { key: 'not-the-secret-of-this-deployment-at-all' }),
      'a lifetime over AUTH_MAX_TOKEN_TTL_SEC': handmade({ ...base, exp: nowSec() + 8 * 24 * 3600 }),
      'an iat in the future': handmade({ sub: 'eve', iat: nowSec() + 365 * 86_400, exp: nowSec() + 365 * 86_400 + 60 }),
      'a global moderator role': handmade({ ...base, exp: nowSec() + 60, role: 'moderator' }),
      'an object sub': handmade({ sub: { id: 'eve' }, iat: nowSec(), exp: nowSec() + 60 }),
      'a tampered payload': (() => {
        const t = handmade({ ...base, exp: nowSec() + 60 });
        const [h, , s] = t.split('.');
        return `${h}.${b64({ ...base, exp: nowSec() + 60, role: 'admin' })}.${s}`;
      })(),
      garbage: 'not.a.jwt',
    };
    for (const [what, token] of Object.entries(defects)) {
      const res = await call(w.url, 'PATCH', `/v1/rooms/${A}/settings`, { token, body: { slowModeSec: 0 } });
      expect([res.status, res.body?.code], what).toEqual([401, 'ERR_AUTH_INVALID']);
      const post = await call(w.url, 'POST', `/v1/rooms/${A}/comments`, { token, body: { text: 'x' } });
      expect([post.status, post.body?.code], what).toEqual([401, 'ERR_AUTH_INVALID']);
    }
    // A malformed header is an error, never anonymity.
    const res = await fetch(`${w.url}/v1/rooms/${A}/state`, { headers: { authorization: 'Basic dXNlcjpwYXNz' } });
    expect(res.status).toBe(401);
  });

  it('reads tokens from the Authorization header on writes, and ?token= only on the WebSocket upgrade', async () => {
    const token = w.token('qq');
    const viaQuery = await call(w.url, 'POST', `/v1/rooms/${A}/comments?token=${token}`, { body: { text: 'sneaky' } });
    expect([viaQuery.status, viaQuery.body?.code]).toEqual([401, 'ERR_AUTH_REQUIRED']);

    const open = (t: string) =>
      new Promise<{ code?: number; first?: { type: string } }>((resolve) => {
        const ws = new WebSocket(`${w.url.replace('http', 'ws')}/v1/rooms/${A}/ws?token=${t}`);
        ws.once('message', (m) => {
          resolve({ first: JSON.parse(m.toString()) as { type: string } });
          ws.close();
        });
        ws.once('close', (code) => resolve({ code }));
      });
    expect((await open(token)).first?.type).toBe('snapshot');
    expect((await open(handmade({ sub: 'x', exp: nowSec() - 10, iat: nowSec() - 20 }))).code).toBe(4001);
  });

  it('believes X-Forwarded-For only from configured proxies', async () => {
    const room = randomName('xff');
    for (let i = 0; i < 60; i++) {
      const r = await fetch(`${w.url}/v1/rooms/${room}/feed`, { headers: { 'x-forwarded-for': `203.0.113.${i}` } });
      expect(r.status).toBe(200);
    }
    // Sixty addresses claimed, one client seen: the room counts one poller.
    await waitFor(async () => ((await call(w.url, 'GET', `/v1/rooms/${room}/state`)).body as { viewers: number }).viewers === 1 || undefined, { what: 'the poller counted' });
    const proxied = await w.startGateway({ GATEWAY_TRUSTED_PROXIES: '127.0.0.1' });
    const room2 = randomName('xff');
    for (let i = 0; i < 5; i++) await fetch(`${proxied.url}/v1/rooms/${room2}/feed`, { headers: { 'x-forwarded-for': `203.0.113.${i}` } });
    await waitFor(async () => ((await call(proxied.url, 'GET', `/v1/rooms/${room2}/state`)).body as { viewers: number }).viewers === 5 || undefined, { what: 'five proxied pollers' });
  });
});

describe('asymmetric verification beside HS256', () => {
  it('verifies RS256 with a public key file and RS256/ES256 with a JWKS file by kid; refuses HS256 tokens and key confusion', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pemFile = path.join(tmp, 'rsa.pub.pem');
    const publicPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    fs.writeFileSync(pemFile, publicPem);
    const jwksFile = path.join(tmp, 'jwks.json');
    fs.writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...rsa.publicKey.export({ format: 'jwk' }), kid: 'rs-1', alg: 'RS256' }, { ...ec.publicKey.export({ format: 'jwk' }), kid: 'es-1', alg: 'ES256' }] }));
    const byPem = await w.startGateway({ JWT_PUBLIC_KEY_FILE: pemFile });
    const byJwks = await w.startGateway({ JWT_JWKS_FILE: jwksFile });
    const rs = (claims: object, kid?: string) => createSigner({ key: rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), algorithm: 'RS256', expiresIn: 60_000, ...(kid ? { kid } : {}) })(claims);
    const es = (claims: object, kid?: string) => createSigner({ key: ec.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), algorithm: 'ES256', expiresIn: 60_000, ...(kid ? { kid } : {}) })(claims);
    const settings = (base: string, token: string) => call(base, 'PATCH', `/v1/rooms/${A}/settings`, { token, body: { slowModeSec: 0 } });

    expect((await settings(byPem.url, rs({ sub: 'm', rooms: { [A]: 'moderator' } }))).status).toBe(202);
    expect((await settings(byPem.url, rs({ sub: 'm', rooms: { [B]: 'moderator' } }))).status).toBe(403);
    expect((await settings(byJwks.url, rs({ sub: 'm', rooms: { [A]: 'moderator' } }, 'rs-1'))).status).toBe(202);
    expect((await settings(byJwks.url, es({ sub: 'm', rooms: { [A]: 'broadcaster' } }, 'es-1'))).status).toBe(202);
    // Unknown kid, a key under another kid, HS256 tokens of the secret, and the public key used as an HMAC secret.
    const refused = {
      'unknown kid': [byJwks.url, es({ sub: 'm', rooms: { [A]: 'moderator' } }, 'nope')],
      'wrong kid': [byJwks.url, es({ sub: 'm', rooms: { [A]: 'moderator' } }, 'rs-1')],
      'HS256 on a public-key gateway': [byPem.url, w.token('m', 'moderator', { rooms: [A] })],
      'key confusion (HS256 keyed with the public key)': [byPem.url, handmade({ sub: 'm', iat: nowSec(), exp: nowSec() + 60, rooms: { [A]: 'moderator' } }, { key: publicPem })],
      'RS256 on the HS256 gateway': [w.url, rs({ sub: 'm', rooms: { [A]: 'moderator' } })],
    } as const;
    for (const [what, [base, token]] of Object.entries(refused)) expect((await settings(base, token)).status, what).toBe(401);
  });
});

describe('development conveniences are off unless switched on', () => {
  it('has no dev token route without DEV_MODE', async () => {
    expect((await fetch(`${w.url}/v1/dev/token?user=bob`)).status).toBe(404);
  });

  it('a gateway refuses to start without a secret, with an empty one, or with the documented dev secret — unless DEV_MODE', async () => {
    for (const secret of [undefined, '', 'dev-only-secret-change-me', 'too-short']) {
      const port = await freePort();
      const env: Record<string, string> = { ...w.env, GATEWAY_PORT: String(port), GATEWAY_ID: `closed-${port}` };
      if (secret === undefined) delete env.JWT_SECRET;
      else env.JWT_SECRET = secret;
      const gw = new ServiceProcess(['gateway'], { env: { ...env, JWT_SECRET: env.JWT_SECRET ?? '' } });
      await expect(gw.start(), String(secret)).rejects.toThrow(/JWT_SECRET/);
      expect(gw.health().status).toBe('down');
    }
    const port = await freePort();
    const dev = new ServiceProcess(['gateway'], { env: { ...w.env, JWT_SECRET: '', DEV_MODE: 'true', GATEWAY_PORT: String(port), GATEWAY_ID: `dev-${port}` } });
    await dev.start();
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v1/dev/token?user=bob`);
      expect(res.status).toBe(200);
      const { token } = (await res.json()) as { token: string };
      expect((await call(`http://127.0.0.1:${port}`, 'POST', `/v1/rooms/${A}/reactions`, { token, body: { emoji: 'fire' } })).status).toBe(202);
    } finally {
      await dev.stop();
    }
  });

  it('never writes a query token into the log', async () => {
    const port = await freePort();
    const gw = new ServiceProcess(['gateway'], { env: { ...w.env, LOG_LEVEL: 'debug', GATEWAY_PORT: String(port), GATEWAY_ID: `log-${port}` } });
    await gw.start();
    try {
      const token = w.token('logged');
      await new Promise<void>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/rooms/${A}/ws?token=${token}`);
        ws.once('message', () => ws.close());
        ws.once('close', () => resolve());
      });
      await waitFor(() => gw.output.some((l) => l.includes('[redacted]')) || undefined, { what: 'the request logged' });
      expect(gw.output.filter((l) => l.includes(token))).toEqual([]);
    } finally {
      await gw.stop();
    }
  });
});
