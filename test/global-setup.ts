/**
 * Starts the real stack once per test run (vitest globalSetup) and stops at
 * the end exactly what it started: servers that were already running (a
 * developer's `npm run infra -- up`) are left as they were. The local Redis
 * Cluster is started too, whatever REDIS_MODE says.
 */
import { loadConfig } from '../core/config.ts';
import { dockerReachable, startContainers } from './containers.ts';
import { selectServices, status, up, down } from '../infra/stack.ts';

export default async function setup(): Promise<() => Promise<void>> {
  const cfg = loadConfig();
  const log = (m: string) => console.log(`[global-setup] ${m}`);
  if (cfg.test.containers === 'always' || (cfg.test.containers === 'auto' && dockerReachable())) {
    const stack = await startContainers(cfg.kafka.version, cfg.registry.version);
    // Workers start after this and inherit the environment: they see the containers' endpoints.
    Object.assign(process.env, stack.env);
    log(`servers from containers: ${JSON.stringify(stack.env)}`);
    return () => stack.stop();
  }
  if (cfg.test.externalServices) {
    const rows = await status(cfg);
    const bad = rows.filter((r) => r.health !== 'ok');
    if (bad.length > 0) throw new Error(`TEST_EXTERNAL_SERVICES is set but these are not healthy: ${bad.map((b) => `${b.name} (${b.health})`).join(', ')}`);
    return async () => {};
  }
  const t0 = Date.now();
  // The int tests run against a single Redis and a Redis Cluster: bring up both.
  const { started } = await up(cfg, log, [...selectServices(cfg).map((s) => s.name), 'redis-cluster']);
  log(`stack ready in ${((Date.now() - t0) / 1000).toFixed(1)}s (started: ${started.join(', ') || 'none'})`);
  return async () => {
    if (cfg.test.keepServices || started.length === 0) return;
    await down(cfg, log, started);
  };
}
