/**
 * The infra CLI on a private data folder and port (so the shared test stack is
 * untouched): `up` twice is a no-op, a killed service comes back alone with
 * its data, `down` stops only what `up` started.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../core/config.ts';
import { waitFor } from '../test/helpers.ts';
import { isAlive, readPid } from './proc.ts';

const exec = promisify(execFile);
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'infra-cli-'));
const port = 20000 + Math.floor(Math.random() * 20000);
const env = { ...process.env, DANMAKU_DATA_DIR: dataDir, REDIS_PORT: String(port) };
const cli = (...args: string[]) => exec(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'infra/cli.ts'), ...args], { env, cwd: REPO_ROOT });
const pidFile = path.join(dataDir, 'run', 'redis.pid');

describe('npm run infra', () => {
  afterAll(async () => {
    await cli('down', 'redis').catch(() => {});
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('starts a service, is a no-op when up, restarts a killed one with its data, and stops only its own', async () => {
    const first = await cli('up', 'redis');
    expect(first.stdout).toMatch(/redis: healthy on port \d+/);
    const pid1 = readPid(pidFile)!.pid;

    const second = await cli('up', 'redis');
    expect(second.stdout).toMatch(/redis: already up/);
    expect(second.stdout).toMatch(/started: nothing/);
    expect(readPid(pidFile)!.pid).toBe(pid1);

    const r = new Redis({ port, lazyConnect: true });
    await r.connect();
    await r.set('survives', 'a restart');
    r.disconnect();

    process.kill(pid1, 'SIGKILL');
    await waitFor(() => !isAlive(readPid(pidFile)), { what: 'redis to die' });
    const status = await cli('status').catch((e: { stdout: string }) => e); // exits 1 while something is down
    expect(status.stdout).toMatch(/redis\s+\d+\s+-\s+none\s+down/);

    const third = await cli('up', 'redis');
    expect(third.stdout).toMatch(/started: redis/);
    const pid2 = readPid(pidFile)!.pid;
    expect(pid2).not.toBe(pid1);
    const r2 = new Redis({ port, lazyConnect: true });
    await r2.connect();
    expect(await r2.get('survives')).toBe('a restart');
    r2.disconnect();

    const logs = await cli('logs', 'redis', '-n', '50');
    expect(logs.stdout).toMatch(/Ready to accept connections/);

    const stopped = await cli('down', 'redis');
    expect(stopped.stdout).toMatch(/redis: stopped/);
    expect(isAlive(readPid(pidFile))).toBe(false);
  });

  it('names the service, its log and its last lines when it cannot start', async () => {
    // A stand-in binary that fails the way a broken install would: it prints and exits.
    const binDir = path.join(dataDir, 'fakebin');
    fs.mkdirSync(binDir, { recursive: true });
    const fake = path.join(binDir, 'redis-server');
    fs.writeFileSync(fake, '#!/bin/sh\necho "fatal: simulated start failure"\nexit 3\n', { mode: 0o755 });
    const res = await exec(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'infra/cli.ts'), 'up', 'redis'], {
      env: { ...env, REDIS_SERVER_BIN: fake, REDIS_PORT: String(port + 1), DANMAKU_DATA_DIR: path.join(dataDir, 'broken') },
      cwd: REPO_ROOT,
    }).catch((e: { code: number; stderr: string }) => e);
    expect((res as { code: number }).code).toBe(1);
    const stderr = (res as { stderr: string }).stderr;
    expect(stderr).toMatch(/ERR_INFRA_START_FAILED: redis exited while starting/);
    expect(stderr).toContain(path.join(dataDir, 'broken', 'logs', 'redis.log'));
    expect(stderr).toContain('fatal: simulated start failure');
  });

  it('refuses a port held by something that is not the service', async () => {
    // A port that is held by a plain TCP server which is not Redis.
    const net = await import('node:net');
    const busy = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => busy.once('listening', r));
    const busyPort = (busy.address() as { port: number }).port;
    const res = await exec(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'infra/cli.ts'), 'up', 'redis'], {
      env: { ...env, REDIS_PORT: String(busyPort), DANMAKU_DATA_DIR: path.join(dataDir, 'busy') },
      cwd: REPO_ROOT,
    }).catch((e: { code: number; stderr: string }) => e);
    busy.close();
    expect((res as { code: number }).code).toBe(1);
    expect((res as { stderr: string }).stderr).toMatch(/ERR_INFRA_PORT_BUSY: redis: port \d+ is taken/);
  });

  it('rejects invalid settings with every problem listed', async () => {
    const res = await exec(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'infra/cli.ts'), 'status'], {
      env: { ...env, REDIS_PORT: 'abc', KAFKA_PORT: '70000' },
      cwd: REPO_ROOT,
    }).catch((e: { code: number; stderr: string }) => e);
    expect((res as { code: number }).code).toBe(1);
    expect((res as { stderr: string }).stderr).toMatch(/ERR_CONFIG_INVALID[\s\S]*KAFKA_PORT[\s\S]*REDIS_PORT/);
  });
});
