/**
 * The demo page in a real browser (Debian's chromium through playwright-core):
 * a moderator pins a comment for 2 s; the pin shows on the open page with its
 * text, and disappears from it when it expires — pushed by the gateway and
 * hidden by the client on its own clock — without a reload.
 */
import fs from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomName, waitFor } from '../../test/helpers.ts';
import { startWorld, type World } from '../../services/world.ts';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = fs.existsSync(CHROMIUM);

describe.skipIf(!hasChromium)('demo page: a pin that expires (chromium)', () => {
  let sys: World;
  let browser: Browser;

  beforeAll(async () => {
    [sys, browser] = await Promise.all([
      startWorld({ env: { LIMIT_COMMENTS: '1000', MODERATION_ENABLED: 'false', DEV_MODE: 'true' } }),
      chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] }),
    ]);
  });
  afterAll(async () => {
    await browser?.close();
    await sys?.stop();
  });

  async function send(method: string, path: string, token: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${sys.url}${path}`, { method, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  it('shows a pinned comment with its text, then takes it off the screen when it expires', async () => {
    const room = randomName('demo-pin');
    const page = await browser.newPage({ viewport: { width: 1360, height: 820 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    try {
      await page.goto(`${sys.url}/?room=${room}`);
      await expect.poll(() => page.locator('#conn').textContent(), { timeout: 20_000 }).toBe('live');

      const text = `pin me ${Date.now().toString(36)}`;
      const posted = await send('POST', `/v1/rooms/${room}/comments`, sys.token('author'), { text });
      expect(posted.status).toBe(202);
      await waitFor(async () => ((await (await fetch(`${sys.url}/v1/rooms/${room}/feed`)).json()) as { events: { eventId: string }[] }).events.some((e) => e.eventId === posted.body.eventId) || undefined, {
        what: 'the comment in the feed',
      });
      const pinned = await send('POST', `/v1/rooms/${room}/pin`, sys.token('mod', 'moderator', { rooms: [room] }), { eventId: posted.body.eventId, durationSec: 2 });
      expect(pinned.status).toBe(202);

      const box = page.locator('#pinned');
      await box.waitFor({ state: 'visible', timeout: 20_000 });
      expect(await page.locator('#pinned-text').textContent()).toBe(text);
      const shownAt = Date.now();
      // Expired: off the screen on its own, no reload, no other write to the room.
      await box.waitFor({ state: 'hidden', timeout: 15_000 });
      expect(Date.now() - shownAt).toBeLessThan(15_000);
      // And a later read agrees: nothing pinned.
      expect(((await (await fetch(`${sys.url}/v1/rooms/${room}/state`)).json()) as { pinned: unknown }).pinned).toBeNull();
      expect(pageErrors).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
