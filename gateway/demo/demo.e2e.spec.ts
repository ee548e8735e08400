/**
 * The demo page in a real browser (Debian's chromium through playwright-core)
 * against the running system: a comment typed in the composer flies over the
 * stage and lands in the chat list; a reaction click raises the tally; a gift
 * button sends a gift and the leaderboard shows it. Leaves a screenshot at
 * .data/demo-screenshot.png.
 */
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../core/config.ts';
import { randomName, waitFor } from '../../test/helpers.ts';
import { startWorld as startSystem, type World as System } from '../../services/world.ts';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = fs.existsSync(CHROMIUM);
const SCREENSHOT = path.join(REPO_ROOT, '.data', 'demo-screenshot.png');

if (!hasChromium) {
  console.warn(`[demo.e2e] skipped: ${CHROMIUM} is missing (install it with: apt-get install -y chromium)`);
}

describe.skipIf(!hasChromium)('demo page (chromium)', () => {
  let sys: System;
  let browser: Browser;

  beforeAll(async () => {
    [sys, browser] = await Promise.all([
      startSystem({ env: { LIMIT_COMMENTS: '1000', MODERATION_ENABLED: 'false', POLL_MIN_MS: '100', DEV_MODE: 'true' } }),
      chromium.launch({
        executablePath: CHROMIUM,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      }),
    ]);
  });
  afterAll(async () => {
    await browser?.close();
    await sys?.stop();
  });

  async function post(room: string, user: string, body: Record<string, unknown>): Promise<void> {
    const res = await fetch(`${sys.url}/v1/rooms/${room}/comments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${sys.token(user)}` },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(202);
  }

  it('a comment from the composer flies over the stage and lands in the chat; a reaction raises its tally', async () => {
    const room = randomName('demo');
    const page = await browser.newPage({ viewport: { width: 1360, height: 820 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));

    await page.goto(`${sys.url}/?room=${room}`);
    await expect.poll(() => page.locator('#conn').textContent(), { timeout: 20_000 }).toBe('live');
    expect(await page.locator('#room-name').textContent()).toBe(room);

    // Some company in the room first, in every mode, colour and size. The page shows the sampled
    // view (at most SAMPLED_PER_SECOND = 5 comments a second): with these four and ours, all five are kept.
    const others: Record<string, unknown>[] = [
      { text: '来了来了 good evening everyone', mode: 'scroll', color: 0x69c0ff },
      { text: '前方高能!!', mode: 'top', color: 0xff4d4f, size: 'large' },
      { text: 'this song is great', mode: 'scroll', color: 0xffd666, size: 'small' },
      { text: '8888888', mode: 'bottom', color: 0x95de64 },
    ];
    for (const [i, body] of others.entries()) await post(room, `viewer-${i}`, body);

    const mine = `hello-${Date.now().toString(36)}`;
    await page.fill('#name', 'alice');
    await page.fill('#text', mine);
    await page.selectOption('#color', 'ff85c0');
    await page.click('#send');

    const flying = page.locator('#layer .danmaku', { hasText: mine });
    await flying.first().waitFor({ state: 'attached', timeout: 20_000 });
    expect(await flying.first().evaluate((el) => getComputedStyle(el).color)).toBe('rgb(255, 133, 192)');
    expect(await flying.first().getAttribute('class')).toContain('own');
    const row = page.locator('#chat-list li', { hasText: mine });
    await row.waitFor({ state: 'visible', timeout: 20_000 });
    expect(await row.locator('.who').textContent()).toBe('alice');
    await expect.poll(() => page.locator('#chat-list li').count(), { timeout: 20_000 }).toBe(others.length + 1);
    expect(await page.inputValue('#text')).toBe('');

    const heart = page.locator('button[data-emoji="heart"]');
    const before = Number(await heart.locator('.count').textContent());
    for (let i = 0; i < 3; i++) await heart.click();
    await expect.poll(async () => Number(await heart.locator('.count').textContent()), { timeout: 20_000 }).toBeGreaterThanOrEqual(before + 3);
    await expect.poll(() => heart.locator('.burst').textContent(), { timeout: 10_000 }).toMatch(/^\+\d+$/);

    // While the comments are still on the stage.
    await waitFor(async () => (await page.locator('#layer .danmaku').count()) >= 3, { what: 'danmaku on the stage' });
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    expect(fs.statSync(SCREENSHOT).size).toBeGreaterThan(10_000);
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it('a gift button sends a gift: it shows in the chat, and the leaderboard ranks the senders', async () => {
    const room = randomName('demo');
    const page = await browser.newPage({ viewport: { width: 1360, height: 820 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${sys.url}/?room=${room}`);
    await expect.poll(() => page.locator('#conn').textContent(), { timeout: 20_000 }).toBe('live');
    // Someone else sent a rocket (200) before.
    const res = await fetch(`${sys.url}/v1/rooms/${room}/gifts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${sys.token('bob')}` },
      body: JSON.stringify({ giftId: 'rocket' }),
    });
    expect(res.status).toBe(202);
    await expect.poll(() => page.locator('#leaderboard li').count(), { timeout: 20_000 }).toBe(1);

    await page.fill('#name', 'carol');
    const castle = page.locator('button[data-gift="castle"]');
    await castle.waitFor({ state: 'visible', timeout: 10_000 });
    await castle.click();
    await expect.poll(() => page.locator('#leaderboard li').allTextContents(), { timeout: 20_000 }).toEqual(['carol1,000', 'bob200']);
    expect(await page.locator('#gift-totals').textContent()).toBe('2 gifts · 1,200 coins · 2 senders');
    await page.locator('#chat-list li.gift-line', { hasText: 'carol sent Castle' }).waitFor({ state: 'attached', timeout: 10_000 });
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it('in DEV_MODE serves viewer tokens only', async () => {
    const ok = await fetch(`${sys.url}/v1/dev/token?user=bob`);
    expect(ok.status).toBe(200);
    const { token } = (await ok.json()) as { token: string };
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { sub: string; role?: string; rooms?: unknown; exp: number };
    expect([claims.sub, claims.role, claims.rooms]).toEqual(['bob', undefined, undefined]);
    expect(claims.exp).toBeGreaterThan(Date.now() / 1000);
    // The token is accepted by the write API.
    const room = randomName('demo');
    const res = await fetch(`${sys.url}/v1/rooms/${room}/reactions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ emoji: 'clap' }),
    });
    expect(res.status).toBe(202);
    // A viewer token does not change settings.
    const settings = await fetch(`${sys.url}/v1/rooms/${room}/settings`, { method: 'PATCH', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ slowModeSec: 5 }) });
    expect(settings.status).toBe(403);

    for (const role of ['moderator', 'broadcaster', 'admin', 'root']) {
      const refused = await fetch(`${sys.url}/v1/dev/token?user=eve&role=${role}`);
      expect([refused.status, ((await refused.json()) as { code: string }).code], role).toEqual([403, 'ERR_FORBIDDEN']);
    }
    expect((await fetch(`${sys.url}/v1/dev/token?user=${encodeURIComponent('a b')}`)).status).toBe(400);

    const js = await fetch(`${sys.url}/demo.js`);
    expect([js.status, js.headers.get('content-type')]).toEqual([200, 'text/javascript; charset=utf-8']);
  });
});
