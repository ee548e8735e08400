/**
 * What one anonymous read may cost: a poll or resume older than Redis is
 * filled from the log only within CATCHUP_LOG_MAX_RECORDS and only up to its
 * `limit`; the throwaway consumer groups such reads use are gone afterwards;
 * and each client has a read budget (LIMIT_READS).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../services/world.ts';
import { randomName, waitFor } from '../test/helpers.ts';
import { logClient } from '../topics/client.ts';
import type { FeedResponse } from './protocol.ts';

let w: World;
const room = randomName('bounds');
// Its own Kafka client id, so the groups its gateways use are told apart from other tests'.
const clientId = randomName('bounds-client');

beforeAll(async () => {
  // Redis keeps 10 items per room; the log may fill gaps of up to 60 records.
  w = await startWorld({ partitions: 1, env: { KAFKA_CLIENT_ID: clientId, FEED_MAX_ITEMS: '10', CATCHUP_LOG_MAX_RECORDS: '60', LIMIT_COMMENTS: '1000', MODERATION_ENABLED: 'false', LIMIT_READS: '1000' } });
  const token = w.token('writer');
  for (let i = 0; i < 100; i++) {
    const res = await fetch(`${w.url}/v1/rooms/${room}/comments`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ text: `c${i}` }) });
    expect(res.status).toBe(202);
  }
  await waitFor(async () => ((await (await fetch(`${w.url}/v1/rooms/${room}/feed?limit=10`)).json()) as FeedResponse).events.some((e) => e.kind === 'comment' && e.text === 'c99') || undefined, {
    what: 'the last comment in Redis',
    timeoutMs: 30_000,
  });
});
afterAll(async () => {
  await w?.stop();
});

const poll = async (q: string) => {
  const res = await fetch(`${w.url}/v1/rooms/${room}/feed?${q}`);
  return { status: res.status, body: (await res.json()) as FeedResponse & { code?: string } };
};

describe('read bounds', () => {
  it('a position older than CATCHUP_LOG_MAX_RECORDS gets a fresh snapshot, not a read of the partition', async () => {
    const epoch = (await poll('limit=1')).body.position.epoch;
    const t0 = Date.now();
    const r = await poll(`since=${epoch}.0&limit=1`);
    expect(r.status).toBe(200);
    expect(r.body.unrecoverable).toBe(true);
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it('a gap within the bound is filled from the log, `limit` items at a time, paging on from the last one given', async () => {
    const first = await poll('limit=10');
    const oldest = first.body.events[0]!.offset;
    const since = oldest - 40; // in the log, not in Redis
    const r = await poll(`since=${first.body.position.epoch}.${since}&limit=3`);
    expect(r.status).toBe(200);
    expect(r.body.unrecoverable).toBeUndefined();
    expect(r.body.events).toHaveLength(3);
    expect(r.body.events.map((e) => e.offset)).toEqual([since + 1, since + 2, since + 3]);
    expect(r.body.position.offset).toBe(since + 3);
    const next = await poll(`since=${r.body.position.epoch}.${r.body.position.offset}&limit=3`);
    expect(next.body.events.map((e) => e.offset)).toEqual([since + 4, since + 5, since + 6]);
  });

  it('leaves no consumer group behind after reading the log', async () => {
    const client = logClient(w.cfg, 'bounds-test');
    const admin = client.admin();
    await admin.connect();
    try {
      const first = await poll('limit=10');
      for (let i = 0; i < 3; i++) await poll(`since=${first.body.position.epoch}.${first.body.events[0]!.offset - 30 + i}&limit=2`);
      const groups = await admin.listGroups();
      expect(groups.filter((g) => g.startsWith(clientId) && g.includes('.range.'))).toEqual([]);
    } finally {
      await admin.disconnect();
      await client.close();
    }
  });
});

describe('per-client read budget', () => {
  it('answers 429 with Retry-After beyond LIMIT_READS, per client', async () => {
    const gw = await w.startGateway({ LIMIT_READS: '5', LIMIT_READS_WINDOW_SEC: '60' });
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 7; i++) {
      const res = await fetch(`${gw.url}/v1/rooms/${room}/state`);
      statuses.push(res.status);
      if (res.status === 429) {
        retryAfter = res.headers.get('retry-after');
        expect(((await res.json()) as { code: string }).code).toBe('ERR_RATE_LIMITED');
      } else await res.arrayBuffer();
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429]);
    expect(Number(retryAfter)).toBeGreaterThan(0);
    // A signed-in user has a budget of their own.
    const res = await fetch(`${gw.url}/v1/rooms/${room}/state`, { headers: { authorization: `Bearer ${w.token('reader')}` } });
    expect(res.status).toBe(200);
  });
});
