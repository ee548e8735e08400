/**
 * The composition root against the real servers: service processes report
 * readiness and health over IPC, and a process killed with -9 is seen as down
 * by the root's health at once (through its exit, not a missing log line).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../core/config.ts';
import { waitFor } from '../test/helpers.ts';
import { compose } from './root.ts';
import { ServiceProcess } from './spawn.ts';
import { Supervisor } from './supervisor.ts';
import { cleanupLog, freePort, prepareLog, worldEnv, worldId } from './world.ts';

const env = worldEnv(worldId('root'), 2, { MODERATION_ENABLED: 'true' });
const cfg = await prepareLog(env);
afterAll(() => cleanupLog(cfg, env));

describe('the composition root', () => {
  it('runs services in-process under one supervisor, each with its health', async () => {
    const root = compose(loadConfig({ ...process.env, ...env }), ['processors', 'moderation']);
    const sup = new Supervisor(root.services);
    await sup.start();
    try {
      const h = sup.health();
      expect(h.status).toBe('ok');
      expect(Object.keys(h.services)).toEqual(['processors', 'moderation']);
      expect(h.services.moderation!.detail).toMatch(/moderator\.v1/);
    } finally {
      await sup.stop();
      await root.close();
    }
    expect(sup.health().status).toBe('stopped');
  });

  it('a service process is ready when it says so, and a kill -9 shows as down in the root health', async () => {
    const port = await freePort();
    const pipelines = new ServiceProcess(['processors', 'moderation'], { env });
    const gateway = new ServiceProcess(['gateway'], { env: { ...env, GATEWAY_PORT: String(port), GATEWAY_ID: `gw-${port}` } });
    const root = new Supervisor([pipelines, gateway]);
    await root.start();
    try {
      expect(pipelines.health()).toEqual({ status: 'ok' });
      expect(pipelines.lastReport?.services).toMatchObject({ processors: { status: 'ok' }, moderation: { status: 'ok' } });
      // The gateway answers as soon as it is reported ready.
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);

      await gateway.kill9();
      const failed = await root.failed;
      expect(failed.service).toBe('gateway');
      expect(root.health().services.gateway).toEqual({ status: 'down', detail: 'exited with 137' });
      expect(root.health().status).toBe('down');
      expect(root.health().services['processors+moderation']!.status).toBe('ok');
    } finally {
      await root.stop();
    }
    expect(pipelines.health().status).toBe('stopped');
  });

  it('a service that cannot start fails the process, which the root sees before readiness', async () => {
    // A taken port: the gateway cannot listen.
    const port = await freePort();
    const blocker = new ServiceProcess(['gateway'], { env: { ...env, GATEWAY_PORT: String(port), GATEWAY_ID: 'first' } });
    await blocker.start();
    try {
      const second = new ServiceProcess(['gateway'], { env: { ...env, GATEWAY_PORT: String(port), GATEWAY_ID: 'second' } });
      await expect(second.start()).rejects.toThrow(/exited with 1 before it was ready/);
      await waitFor(() => second.health().status === 'down', { what: 'the second gateway to be down' });
    } finally {
      await blocker.stop();
    }
  });
});
