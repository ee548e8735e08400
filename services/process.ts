/**
 * A service process: runs some services under one Supervisor until SIGTERM
 * or SIGINT (graceful), or until one of them dies (exit 1).
 *
 * When started by the root (services/spawn.ts) it talks to its parent over
 * Node's IPC channel: `{type: 'ready'}` once every service started, its health
 * report whenever it changes, and it stops when the parent goes away, so no
 * orphan keeps consuming after `npm start` is killed. Readiness is that
 * message, never a line of output.
 */
import type http from 'node:http';
import type { Config } from '../core/config.ts';
import { shutdownSignal, untilAborted } from '../core/lifecycle.ts';
import { serveMetrics } from './metrics.ts';
import { compose, type RootOptions, type ServiceName } from './root.ts';
import { Supervisor, type HealthReport } from './supervisor.ts';

/** Messages a service process sends its parent. */
export type ChildMessage = { type: 'ready'; services: string[] } | { type: 'health'; report: HealthReport } | { type: 'failed'; service: string; message: string };

export async function runServiceProcess(cfg: Config, names: ServiceName[], o: Omit<RootOptions, 'log'> = {}): Promise<number> {
  const tag = names.join('+');
  const log = (m: string) => console.log(`[${tag}] ${new Date().toISOString()} ${m}`);
  const send = (m: ChildMessage) => {
    if (process.send && process.connected) process.send(m);
  };
  const signal = shutdownSignal(log);
  const root = compose(cfg, names, { ...o, log: (svc, m) => log(svc === tag ? m : `${svc}: ${m}`) });
  const sup = new Supervisor(root.services, log);
  const servers: http.Server[] = [];
  const parentGone = new AbortController();
  process.on('disconnect', () => {
    log('parent process went away: stopping');
    parentGone.abort();
  });

  let lastHealth = '';
  const reportHealth = () => {
    const report = sup.health();
    const json = JSON.stringify(report);
    if (json !== lastHealth) {
      lastHealth = json;
      send({ type: 'health', report });
    }
  };
  const healthTimer = setInterval(reportHealth, 250);
  healthTimer.unref();

  let code = 0;
  try {
    for (const [port, sources] of root.metrics) servers.push(await serveMetrics(port, sources));
    await sup.start(signal);
    reportHealth();
    if (!signal.aborted) {
      log(`ready: ${names.join(', ')}`);
      send({ type: 'ready', services: names });
      const died = await Promise.race([untilAborted(signal).then(() => undefined), untilAborted(parentGone.signal).then(() => undefined), sup.failed]);
      if (died) {
        code = 1;
        send({ type: 'failed', service: died.service, message: died.error.message });
      }
    }
  } finally {
    await sup.stop();
    reportHealth();
    clearInterval(healthTimer);
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    await root.close();
  }
  log(code === 0 ? 'stopped' : 'stopped after a failure');
  return code;
}
