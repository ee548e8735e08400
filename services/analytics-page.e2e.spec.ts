/**
 * The analytics page in a real browser (Debian's chromium through
 * playwright-core): a room archived by the real archiver into an embedded
 * ClickHouse, served by a real gateway. The page draws its charts (Chart.js
 * canvases), shows the room's totals as the stats API computes them, and the
 * SQL beside each chart, which gives the same figure when run. Leaves a
 * screenshot at .data/analytics-screenshot.png. Here, in the root's folder:
 * the one place that may see both the archive and the gateway.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasChromium, pageWorld, type PageWorld } from '../test/page-world.ts';
import { REPO_ROOT } from '../core/config.ts';
import { scenario } from '../archive/fixtures.ts';
import { runSql } from '../archive/sql.ts';
import { roomStats } from '../archive/stats.ts';
import { makeEvent, type RoomEvent } from '../schemas/events.ts';

const SCREENSHOT = path.join(REPO_ROOT, '.data', 'analytics-screenshot.png');

/** Gifts in the scenario's first minutes: bob sends 3 rockets (600), ann 2 roses (20). */
function gifts(room: string): RoomEvent[] {
  const at = scenario(room)[0]!.occurredAt;
  const gift = (id: string, userId: string, ms: number, giftId: string, name: string, count: number, unitValue: number) =>
    makeEvent({ roomId: room, eventId: id, actor: { userId, role: 'viewer' }, occurredAt: at + ms, videoOffsetMs: ms, payload: { type: 'GiftSent', giftId, name, count, unitValue, value: count * unitValue } });
  return [gift(`${room}-g1`, 'ann', 1500, 'rose', 'Rose', 2, 10), gift(`${room}-g2`, 'bob', 2600, 'rocket', 'Rocket', 3, 200)];
}

describe.skipIf(!hasChromium)('analytics page (chromium)', () => {
  let pw: PageWorld;
  const room = 'analytics-room';
  const w = () => pw.w;

  beforeAll(async () => {
    pw = await pageWorld([...scenario(room), ...gifts(room)], 'analytics-page');
  }, 120_000);
  afterAll(async () => {
    await pw?.close();
  });

  it('draws the room\'s charts from the archive, with its totals and the SQL behind each chart', async () => {
    const stats = await roomStats(w().ch, room);
    expect(stats.totals.comments).toBeGreaterThan(0);
    const page = await pw.browser.newPage({ viewport: { width: 1400, height: 1300 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${pw.url}/analytics?room=${room}`);
    await expect.poll(() => page.locator('#status').getAttribute('data-state'), { timeout: 30_000 }).toBe('ready');

    expect(await page.locator('[data-total="comments"]').textContent()).toBe(stats.totals.comments.toLocaleString('en-US'));
    expect(await page.locator('[data-total="unique chatters"]').textContent()).toBe(stats.totals.uniqueChatters.toLocaleString('en-US'));
    expect(await page.locator('[data-total="gift value"]').textContent()).toBe(stats.gifts.totalValue.toLocaleString('en-US'));
    // Eight panels of charts and a table; each canvas was drawn on (Chart.js sized it).
    expect(await page.locator('canvas').count()).toBe(7);
    for (const id of ['chart-minutes', 'chart-chatters', 'chart-emojis', 'chart-chatters-top', 'chart-moderation', 'chart-gifts', 'chart-gifters']) {
      const drawn = await page.locator(`#${id}`).evaluate((c: HTMLCanvasElement) => c.width > 0 && c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data.some((v) => v !== 0));
      expect(drawn, id).toBe(true);
    }
    expect(await page.locator('#busiest tbody tr').count()).toBe(Math.min(5, stats.minutes.length));
    // The SQL shown is the SQL that ran: pasted into `npm run sql`, it gives the figure on the page.
    const sql = await page.locator('pre[data-sql="topChatters"]').first().textContent();
    expect(sql).toContain(`'${room}'`);
    const rows = (await runSql(w().ch, sql!)).rows as Record<string, unknown>[];
    expect(rows.map((r) => r.user_id)).toEqual(stats.topChatters.map((c) => c.userId));
    const giftSql = await page.locator('pre[data-sql="topGifters"]').first().textContent();
    expect(giftSql).toContain(`'${room}'`);
    const gifters = (await runSql(w().ch, giftSql!)).rows as Record<string, unknown>[];
    expect(gifters.map((r) => [r.user_id, Number(r.value_n)])).toEqual([['bob', 600], ['ann', 20]]);
    expect(stats.gifts.topGifters.map((g) => [g.userId, g.value])).toEqual([['bob', 600], ['ann', 20]]);
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });
});
