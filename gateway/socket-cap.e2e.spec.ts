/**
 * Connections: the gateway raises its soft open-file limit to the hard one on
 * start (Node does not by itself), caps its WebSockets (WS_MAX_CONNECTIONS)
 * and refuses the excess before the upgrade with 503 ERR_TOO_MANY_CONNECTIONS
 * and Retry-After, while writes, polls and health go on answering; a slot
 * freed by a close is taken by the next socket.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startWorld, type World, type WorldGateway } from '../services/world.ts';
import { randomName, waitFor } from '../test/helpers.ts';
import { openFileLimit } from './fdlimit.ts';

let w: World;
let gw: WorldGateway;
const room = randomName('cap');

beforeAll(async () => {
  w = await startWorld({ processor: false, gateways: 0, env: { MODERATION_ENABLED: 'false' } });
  // Started with a low soft limit (and the hard limit as it is): the gateway raises it itself.
  gw = await w.startGateway({ WS_MAX_CONNECTIONS: '3' }, { nofileSoft: 512 });
});
afterAll(async () => {
  await w?.stop();
});

const wsUrl = (g: WorldGateway) => `${g.url.replace(/^http/, 'ws')}/v1/rooms/${room}/ws`;

/** Opens a socket and waits for its first frame (the snapshot: it is in the room). */
function connect(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('message', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode, retryAfter: res.headers['retry-after'], body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as { code: string } })));
    });
  });
}

describe('the socket cap', () => {
  it('raises the soft open-file limit to the hard limit on start', () => {
    const mine = openFileLimit()!;
    const its = openFileLimit(gw.proc.pid)!;
    expect(its.hard).toBe(mine.hard);
    expect(its.soft).toBe(its.hard);
    expect(its.soft).toBeGreaterThan(512);
  });

  it('refuses the socket past WS_MAX_CONNECTIONS with 503 and Retry-After; writes, polls and health still answer; a close frees a slot', async () => {
    const open = await Promise.all([connect(wsUrl(gw)), connect(wsUrl(gw)), connect(wsUrl(gw))]);
    const refused = await connect(wsUrl(gw)).then(
      () => undefined,
      (e: { status?: number; retryAfter?: string; body?: { code: string } }) => e,
    );
    expect(refused).toMatchObject({ status: 503, body: { code: 'ERR_TOO_MANY_CONNECTIONS' } });
    expect(Number(refused!.retryAfter)).toBeGreaterThan(0);

    const post = await fetch(`${gw.url}/v1/rooms/${room}/comments`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${w.token('capped')}` }, body: JSON.stringify({ text: 'still writing' }) });
    expect(post.status).toBe(202);
    expect((await fetch(`${gw.url}/v1/rooms/${room}/feed`)).status).toBe(200);
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/^danmaku_push_socket_cap 3$/m);
    expect(metrics).toMatch(/^danmaku_push_cap_refusals_total [1-9]/m);

    open[0]!.close();
    const again = await waitFor(() => connect(wsUrl(gw)).catch(() => undefined), { what: 'a socket in the freed slot', timeoutMs: 10_000 });
    for (const s of [...open.slice(1), again]) s.terminate();
  });
});
