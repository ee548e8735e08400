import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openClickHouse } from './clickhouse.ts';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DATABASE = 'danmaku_it';

interface Comment {
  id: number;
  room: string;
  body: string;
}

const rows: Comment[] = [
  { id: 1, room: 'r1', body: 'first!' },
  { id: 2, room: 'r1', body: '弹幕' },
  { id: 3, room: 'r2', body: "it's live" },
];

describe('openClickHouse (embedded)', () => {
  let tmp: string;

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), `danmaku-ch-${randomBytes(4).toString('hex')}-`));
  });

  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('writes rows, reads them back, and keeps them across a reopen', async () => {
    const dataDir = path.join(tmp, 'persist');
    const table = `comments_${randomBytes(6).toString('hex')}`;

    const ch = await openClickHouse({ dataDir, database: DATABASE });
    try {
      expect(ch.mode).toBe('embedded');
      expect(ch.database).toBe(DATABASE);
      // Unqualified name on purpose: the client must already default to DATABASE.
      await ch.client.command({
        query: `CREATE TABLE ${table} (id UInt32, room String, body String) ENGINE = MergeTree ORDER BY id`,
      });
      await ch.client.insert({ table, values: rows, format: 'JSONEachRow' });
      const rs = await ch.client.query({ query: `SELECT id, room, body FROM ${table} ORDER BY id`, format: 'JSONEachRow' });
      expect(await rs.json<Comment>()).toEqual(rows);
    } finally {
      await ch.close();
    }

    const reopened = await openClickHouse({ dataDir, database: DATABASE });
    try {
      const rs = await reopened.client.query({
        query: `SELECT id, room, body FROM ${DATABASE}.${table} ORDER BY id`,
        format: 'JSONEachRow',
      });
      expect(await rs.json<Comment>()).toEqual(rows);
    } finally {
      await reopened.close();
    }
  });

  it('runs a 26.x or newer engine', async () => {
    const ch = await openClickHouse({ dataDir: path.join(tmp, 'version'), database: DATABASE });
    try {
      const rs = await ch.client.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' });
      const [row] = await rs.json<{ v: string }>();
      expect(row?.v).toMatch(/^\d+\.\d+/);
      expect(Number(row?.v.split('.')[0])).toBeGreaterThanOrEqual(26);
    } finally {
      await ch.close();
    }
  });

  it('says so when another process holds the data directory', async () => {
    const dataDir = path.join(tmp, 'held');
    const holder = await holdInChildProcess(dataDir);
    try {
      const err = await openClickHouse({ dataDir, database: DATABASE }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toContain(dataDir);
      expect((err as Error).message).toContain(`held by another process (pid ${holder.pid}`);
      expect((err as Error).cause).toBeDefined();
    } finally {
      await stop(holder);
    }

    // Once the holder is gone the directory opens normally.
    const ch = await openClickHouse({ dataDir, database: DATABASE });
    await ch.close();
  });
});

/** Opens `dataDir` with chDB in a separate Node process and keeps it open until killed. */
async function holdInChildProcess(dataDir: string): Promise<ChildProcess> {
  const script = `
    require('node:fs').mkdirSync(process.argv[1], { recursive: true });
    const { Session } = require('chdb');
    new Session(process.argv[1]);
    process.stdout.write('ready\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['-e', script, dataDir], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`holder exited early (${code}): ${stderr}`)));
  });
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}
