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

const SCREENSHOT = path.join(REPO_ROOT, '.data', 'analytics-screenshot.png');

describe.skipIf(!hasChromium)('analytics page (chromium)', () => {
  let pw: PageWorld;
  const room = 'analytics-room';
  const w = () => pw.w;

  beforeAll(async () => {
    pw = await pageWorld(scenario(room), 'analytics-page');
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
    // Six panels of charts and a table; each canvas was drawn on (Chart.js sized it).
    expect(await page.locator('canvas').count()).toBe(5);
    for (const id of ['chart-minutes', 'chart-chatters', 'chart-emojis', 'chart-chatters-top', 'chart-moderation']) {
      const drawn = await page.locator(`#${id}`).evaluate((c: HTMLCanvasElement) => c.width > 0 && c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data.some((v) => v !== 0));
      expect(drawn, id).toBe(true);
    }
    expect(await page.locator('#busiest tbody tr').count()).toBe(Math.min(5, stats.minutes.length));
    // The SQL shown is the SQL that ran: pasted into `npm run sql`, it gives the figure on the page.
    const sql = await page.locator('pre[data-sql="topChatters"]').first().textContent();
    expect(sql).toContain(`'${room}'`);
    const rows = (await runSql(w().ch, sql!)).rows as Record<string, unknown>[];
    expect(rows.map((r) => r.user_id)).toEqual(stats.topChatters.map((c) => c.userId));
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });
});
