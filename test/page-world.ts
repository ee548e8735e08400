/**
 * For the Chromium tests of the archive's pages (analytics, replay): a room
 * archived by the real archiver into an embedded ClickHouse, served by a real
 * gateway reading it (wired as the composition root wires it), and a
 * headless chromium.
 */
import fs from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser } from 'playwright-core';
import { archiveKit, type World } from '../test/archive-world.ts';
import { buildGateway } from '../gateway/app.ts';
import { createGatewayDeps, type GatewayDeps } from '../gateway/deps.ts';
import type { RoomEvent } from '../schemas/events.ts';
import { testConfig, waitFor } from './helpers.ts';
import { archiveReaderFor } from '../services/root.ts';

export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = fs.existsSync(CHROMIUM);

export interface PageWorld {
  w: World;
  /** The gateway's base URL. */
  url: string;
  browser: Browser;
  close(): Promise<void>;
}

export async function pageWorld(events: RoomEvent[], secretName: string): Promise<PageWorld> {
  const kit = await archiveKit();
  const w = await kit.world();
  let deps: GatewayDeps | undefined;
  let app: FastifyInstance | undefined;
  let browser: Browser | undefined;
  const close = async () => {
    await browser?.close();
    await app?.close();
    await deps?.close();
    await w.close();
    await kit.close();
  };
  try {
    await w.produce(events);
    const a = w.archiver();
    await a.start();
    await waitFor(() => w.caughtUp(), { what: 'the archive', timeoutMs: 60_000, intervalMs: 200 });
    await a.stop();
    const env = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
    const cfg = testConfig({ ...env, CLICKHOUSE_DATABASE: w.cfg.clickhouse.database, JWT_SECRET: `${secretName}-test-secret-${Date.now()}-0123456789` });
    deps = await createGatewayDeps(cfg, { archive: archiveReaderFor(cfg, async () => w.ch) });
    app = await buildGateway(deps);
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    return { w, url, browser, close };
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
}
