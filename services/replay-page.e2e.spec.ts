/**
 * The replay page in a real browser (Debian's chromium through
 * playwright-core), over a room archived by the real archiver into an
 * embedded ClickHouse and served by a real gateway: comments fly over the
 * stage at their place on the video timeline; seeking plays from there; the
 * view switch replays "as moderated now" (a comment of a user muted since is
 * gone); the reaction tally timeline is drawn. Leaves a screenshot at
 * .data/replay-screenshot.png. In the root's folder: it sees both sides.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasChromium, pageWorld, type PageWorld } from '../test/page-world.ts';
import { REPO_ROOT } from '../core/config.ts';
import { scenario } from '../archive/fixtures.ts';

const SCREENSHOT = path.join(REPO_ROOT, '.data', 'replay-screenshot.png');

describe.skipIf(!hasChromium)('replay page (chromium)', () => {
  let pw: PageWorld;
  const room = 'replay-room';
  const w = () => pw.w;

  beforeAll(async () => {
    pw = await pageWorld(scenario(room), 'replay-page');
  }, 120_000);
  afterAll(async () => {
    await pw?.close();
  });

  const logText = (page: Page) => page.locator('#log').textContent();
  const playhead = async (page: Page) => Number(await page.locator('#stage').getAttribute('data-playhead'));

  it('plays comments at their time, seeks, switches to "as moderated now", and draws the tally timeline', async () => {
    const page = await pw.browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));

    // As seen live, from 0.5 s at 2×: alice's "hello" (1 s) flies over the stage.
    await page.goto(`${pw.url}/replay?room=${room}&t=500&speed=2`);
    await expect.poll(() => page.locator('#status').getAttribute('data-state'), { timeout: 30_000 }).toBe('ready');
    await expect.poll(() => page.locator('.danmaku', { hasText: 'hello' }).count(), { timeout: 15_000 }).toBeGreaterThan(0);

    // Seek to 19.9 s: the first burst plays from there.
    await page.locator('#scrubber').evaluate((el: HTMLInputElement) => {
      el.value = '19900';
      el.dispatchEvent(new Event('change'));
    });
    await expect.poll(() => logText(page), { timeout: 15_000 }).toContain('wow ba-1');
    expect(await logText(page)).not.toContain('hello'); // the log starts over at a seek
    await page.screenshot({ path: SCREENSHOT });

    // As moderated now, from 0.5 s (still 2×): alice is muted since, so "hello" is gone; carol's "hi all" (3 s) stays.
    await page.locator('#view').selectOption('moderated');
    await page.locator('#scrubber').evaluate((el: HTMLInputElement) => {
      el.value = '500';
      el.dispatchEvent(new Event('change'));
    });
    await expect.poll(() => logText(page), { timeout: 15_000 }).toContain('hi all');
    expect(await playhead(page)).toBeGreaterThan(3000);
    expect(await logText(page)).not.toContain('hello');

    // The tally timeline was drawn (bob's 3 hearts at 10.5 s).
    const drawn = await page.locator('#tallies').evaluate((c: HTMLCanvasElement) => c.width > 0 && c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data.some((v) => v !== 0));
    expect(drawn).toBe(true);
    expect(errors).toEqual([]);
    await page.close();
  });
});
