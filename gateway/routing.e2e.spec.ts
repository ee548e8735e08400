/**
 * The routing service through its public surfaces: rules changed with the
 * operator's command line (`npm run routing -- set`, audited in its topic),
 * seen by GET /v1/connect on every gateway, and obeyed by the TS client.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomName, waitFor } from '../test/helpers.ts';
import { startScript } from '../test/processes.ts';
import { startWorld, type World } from '../services/world.ts';
import { DanmakuClient, type WebSocketConstructor } from './client/client.ts';
import type { ConnectResponse } from './protocol.ts';

let sys: World;
let env: Record<string, string>;
beforeAll(async () => {
  const audit = randomName('routing-audit');
  sys = await startWorld({ gateways: 2, env: { MODERATION_ENABLED: 'false', ROUTING_REFRESH_MS: '100', ROUTING_RECHECK_SEC: '1', TOPIC_ROUTING_AUDIT: audit, POLL_MIN_MS: '100' } });
  env = { ...sys.env, TOPIC_ROUTING_AUDIT: audit, ROUTING_REFRESH_MS: '100' };
});
afterAll(async () => {
  await sys?.stop();
});

/** Runs `npm run routing -- <args>` against the world; its exit code and output. */
async function routing(args: string[]): Promise<{ code: number | null; out: string }> {
  const p = startScript('gateway/routing-cli.ts', args, env);
  const code = await p.exited;
  return { code, out: p.output.join('\n') };
}

/** Sets rules in full (lists not named are emptied) and waits until both gateways answer with them. */
async function setRules(opts: Record<string, string>): Promise<number> {
  const full: Record<string, string> = { 'allow-users': '', 'allow-devices': '', 'allow-versions': '', 'deny-users': '', 'deny-devices': '', 'deny-versions': '', gateways: '', 'poll-interval-ms': 'default', ...opts };
  const r = await routing(['set', ...Object.entries(full).flatMap(([k, v]) => [`--${k}`, v])]);
  expect(r.code, r.out).toBe(0);
  const version = (JSON.parse(r.out.slice(r.out.indexOf('{'))) as { version: number }).version;
  expect(version).toBeGreaterThanOrEqual(0);
  for (const g of sys.gateways) {
    await waitFor(async () => ((await connect(g.url, { room: 'r' })).body.rulesVersion === version ? true : undefined), { what: `rules v${version} on ${g.url}` });
  }
  return version;
}

async function connect(base: string, q: Record<string, string>, token?: string): Promise<{ status: number; body: ConnectResponse & { code?: string } }> {
  const res = await fetch(`${base}/v1/connect?${new URLSearchParams(q)}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: (await res.json()) as ConnectResponse & { code?: string } };
}

/** Asks for many clients, a few at a time. */
async function ask<T>(items: T[], fn: (x: T) => Promise<ConnectResponse>): Promise<ConnectResponse[]> {
  const out: ConnectResponse[] = [];
  for (let i = 0; i < items.length; i += 50) out.push(...(await Promise.all(items.slice(i, i + 50).map(fn))));
  return out;
}

describe('routing', () => {
  it('a 10 % roll-out sends about 10 % of 1,000 clients to WebSocket, each always the same way, and 20 % keeps them', async () => {
    await setRules({ 'ws-percent': '10', reason: 'roll-out test' });
    const users = Array.from({ length: 1000 }, (_, i) => `sim-${i}-${randomName('u')}`);
    const tokens = new Map(users.map((u) => [u, sys.token(u)]));
    const [g1, g2] = sys.gateways;
    const first = await ask(users, async (u) => (await connect(g1!.url, { room: 'r', version: '1.0.0' }, tokens.get(u))).body);
    const ws = users.filter((_, i) => first[i]!.transport === 'ws');
    // Binomial(1000, 0.1): mean 100, sd ≈ 9.5; five sd either side (a false failure about once in a million runs).
    expect(ws.length).toBeGreaterThanOrEqual(53);
    expect(ws.length).toBeLessThanOrEqual(147);
    expect(first.every((r) => r.reason === 'rollout' && r.bucket !== null && (r.transport === 'ws') === r.bucket < 1000)).toBe(true);
    // Deterministic: the other gateway answers every one of them the same way.
    const again = await ask(users, async (u) => (await connect(g2!.url, { room: 'r' }, tokens.get(u))).body);
    expect(again.map((r) => r.transport)).toEqual(first.map((r) => r.transport));
    // Monotone: at 20 % everyone who had WebSocket keeps it.
    await setRules({ 'ws-percent': '20' });
    const wider = await ask(ws, async (u) => (await connect(g1!.url, { room: 'r' }, tokens.get(u))).body);
    expect(wider.every((r) => r.transport === 'ws')).toBe(true);
  });

  it('a deny-listed client version always polls; an allow-listed user always gets WebSocket (deny wins)', async () => {
    await setRules({ 'ws-percent': '100', 'deny-versions': '0.9.*' });
    const denied = await ask(Array.from({ length: 200 }, (_, i) => `d${i}`), async (u) => (await connect(sys.url, { room: 'r', version: `0.9.${u.length}` }, sys.token(`${u}-${randomName('x')}`))).body);
    expect(denied.every((r) => r.transport === 'polling' && r.reason === 'deny:version')).toBe(true);
    expect((await connect(sys.url, { room: 'r', version: '1.0.0', device: 'dev-ok' })).body.transport).toBe('ws');

    await setRules({ 'ws-percent': '0', 'allow-users': 'vip-1', 'deny-versions': '0.9.*' });
    const vip = sys.token('vip-1');
    for (const g of sys.gateways) {
      for (let i = 0; i < 20; i++) expect((await connect(g.url, { room: `r${i}`, device: `dev-${i}`, version: '1.0.0' }, vip)).body).toMatchObject({ transport: 'ws', reason: 'allow:user' });
    }
    expect((await connect(sys.url, { room: 'r', version: '0.9.1' }, vip)).body).toMatchObject({ transport: 'polling', reason: 'deny:version' });
    const others = await ask(Array.from({ length: 100 }, (_, i) => `o${i}-${randomName('x')}`), async (u) => (await connect(sys.url, { room: 'r' }, sys.token(u))).body);
    expect(others.every((r) => r.transport === 'polling' && r.reason === 'rollout')).toBe(true);
    // The user id comes from the token only: naming the vip is not a parameter.
    const claim = await connect(sys.url, { room: 'r', user: 'vip-1' });
    expect(claim.status).toBe(400);
    expect(claim.body.code).toBe('ERR_VALIDATION');
  });

  it('refuses bad parameters with 400 and a code, bad tokens with 401', async () => {
    for (const q of [{}, { room: '' }, { room: 'bad room' }, { room: 'r', device: 'x'.repeat(200) }, { room: 'r', device: 'a b' }, { room: 'r', version: '../../x' }, { room: 'r', transport: 'ws' }]) {
      const r = await connect(sys.url, q as Record<string, string>);
      expect(r.status, JSON.stringify(q)).toBe(400);
      expect(r.body.code).toBe('ERR_VALIDATION');
    }
    const bad = await connect(sys.url, { room: 'r' }, 'not.a.token');
    expect(bad.status).toBe(401);
    expect(bad.body.code).toBe('ERR_AUTH_INVALID');
  });

  it('the command line changes what /v1/connect answers, audits each change in its topic, and refuses invalid rules', async () => {
    const v1 = await setRules({ 'ws-percent': '0', 'allow-devices': 'cli-dev', reason: 'cli test one' });
    expect((await connect(sys.url, { room: 'r', device: 'cli-dev' })).body).toMatchObject({ transport: 'ws', reason: 'allow:device', rulesVersion: v1 });
    const v2 = await setRules({ 'ws-percent': '0', 'deny-devices': 'cli-dev', 'allow-devices': 'cli-dev', reason: 'cli test two' });
    expect(v2).toBeGreaterThan(v1);
    for (const g of sys.gateways) expect((await connect(g.url, { room: 'r', device: 'cli-dev' })).body).toMatchObject({ transport: 'polling', reason: 'deny:device', rulesVersion: v2 });

    const shown = await routing(['show']);
    expect(JSON.parse(shown.out.slice(shown.out.indexOf('{')))).toMatchObject({ version: v2, reason: 'cli test two', rules: { deny: { devices: ['cli-dev'] } } });
    const history = await routing(['history', '-n', '2']);
    expect(history.code, history.out).toBe(0);
    const events = history.out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { version: number; reason: string; previousVersion: number; rules: string });
    expect(events.map((e) => [e.version, e.reason, e.previousVersion])).toEqual([
      [v1, 'cli test one', expect.any(Number)],
      [v2, 'cli test two', v1],
    ]);
    expect(JSON.parse(events[1]!.rules)).toMatchObject({ deny: { devices: ['cli-dev'] } });

    const invalid = await routing(['set', '--ws-percent', '150', '--gateways', 'ftp://nowhere']);
    expect(invalid.code).toBe(1);
    expect(invalid.out).toMatch(/ERR_ROUTING_RULES/);
    expect((await connect(sys.url, { room: 'r' })).body.rulesVersion).toBe(v2);
  });

  it('the TS client obeys a polling answer (gateway URL, interval) and moves to WebSocket when the rules change', async () => {
    const [g1, g2] = sys.gateways;
    await setRules({ 'ws-percent': '0', gateways: g2!.url, 'poll-interval-ms': '1200', reason: 'sdk test' });
    const room = randomName('route-sdk');
    const sockets: string[] = [];
    class CountingWebSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols);
        sockets.push(url);
      }
    }
    const requests: { url: string; at: number }[] = [];
    const recording: typeof fetch = (input, init) => {
      requests.push({ url: String(input), at: Date.now() });
      return fetch(input, init);
    };
    const client = new DanmakuClient({ baseUrl: g1!.url, room, WebSocket: CountingWebSocket as unknown as WebSocketConstructor, fetch: recording, token: sys.token('sdk-user'), deviceId: 'sdk-device' });
    try {
      await client.ready;
      expect(client.mode.transport).toBe('polling');
      expect(client.route).toMatchObject({ transport: 'polling', urls: [g2!.url], pollIntervalMs: 1200 });
      const posted = await client.post('routed over polling');
      await waitFor(() => client.items.some((i) => i.eventId === posted.eventId), { what: 'the comment back through polls', timeoutMs: 30_000 });
      const feeds = requests.filter((r) => r.url.includes('/feed'));
      expect(feeds.length).toBeGreaterThanOrEqual(2);
      // Every poll and the write went to the routed gateway, none to the one asked; no socket was opened.
      expect(requests.filter((r) => !r.url.includes('/v1/connect')).every((r) => r.url.startsWith(g2!.url))).toBe(true);
      expect(requests.filter((r) => r.url.includes('/v1/connect')).every((r) => r.url.startsWith(g1!.url))).toBe(true);
      expect(sockets).toEqual([]);
      // Polls no more often than the rules say (the feed's nextPollMs of a quiet room is shorter here: POLL_MIN_MS=100).
      for (let i = 1; i < feeds.length; i++) expect(feeds[i]!.at - feeds[i - 1]!.at).toBeGreaterThanOrEqual(1150);

      // The rules change: the client, asking again every recheckMs while it polls, moves to WebSocket on the gateway the rules name.
      await setRules({ 'ws-percent': '100', gateways: g1!.url });
      await waitFor(() => (client.mode.transport === 'ws' ? true : undefined), { what: 'the client on WebSocket', timeoutMs: 20_000 });
      expect(sockets.length).toBeGreaterThanOrEqual(1);
      expect(sockets.at(-1)!.startsWith(`${g1!.url.replace('http', 'ws')}/v1/rooms/${room}/ws?`)).toBe(true);
      expect(sockets.at(-1)).toContain('device=sdk-device');
    } finally {
      client.close();
    }
  });
});
