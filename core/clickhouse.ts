/**
 * The one place that knows whether ClickHouse runs in-process (chDB) or as a
 * server. Everything else gets a plain `@clickhouse/client` client, so replay
 * and analytics code is identical in development (no server to run) and in
 * production (a real cluster).
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { createClient, type ClickHouseClient, type ClickHouseClientConfigOptions } from '@clickhouse/client';
import type { ChdbConnection } from 'chdb/connection';
import { errorChain, isUnreachable } from './errors.ts';

export interface ClickHouseOptions {
  /** Set to talk to a ClickHouse server; omit to run the engine in-process. */
  url?: string;
  /** Embedded mode only: where the engine keeps its tables. */
  dataDir: string;
  database: string;
  username?: string;
  password?: string;
}

export interface ClickHouse {
  client: ClickHouseClient;
  mode: 'embedded' | 'server';
  database: string;
  close(): Promise<void>;
}

export async function openClickHouse(opts: ClickHouseOptions): Promise<ClickHouse> {
  return opts.url === undefined ? openEmbedded(opts.dataDir, opts.database) : openServer(opts.url, opts);
}

async function openServer(url: string, opts: ClickHouseOptions): Promise<ClickHouse> {
  const auth = { username: opts.username, password: opts.password };
  // Over HTTP the `database` parameter is resolved before the statement runs, so
  // a client bound to a database that does not exist yet cannot create it.
  const bootstrap = createClient({ url, ...auth });
  try {
    await bootstrap.command({ query: `CREATE DATABASE IF NOT EXISTS ${quoteIdent(opts.database)}` });
  } finally {
    await bootstrap.close();
  }
  const client = createClient({ url, ...auth, database: opts.database });
  return { client, mode: 'server', database: opts.database, close: () => client.close() };
}

async function openEmbedded(dataDir: string, database: string): Promise<ClickHouse> {
  // chDB keys its process-wide engine by absolute path; resolving here keeps
  // './data' and its absolute spelling from looking like two directories.
  const dir = path.resolve(dataDir);
  await mkdir(dir, { recursive: true });

  // Loaded on demand: importing chDB maps the native engine (hundreds of MB),
  // which server deployments never need and may not even have a build for.
  const { createChdbConnection } = await import('chdb/connection');
  const { drainPending } = await import('chdb');

  let connection: ChdbConnection;
  try {
    connection = createChdbConnection({ path: dir });
  } catch (cause) {
    throw await openFailure(dir, cause);
  }

  // `database` is passed for the client's own bookkeeping only: the chDB
  // connection ignores it, because there is no per-request database on an
  // in-process engine.
  const client = createClient({ connection: asClientConnection(connection), database });
  const close = async (): Promise<void> => {
    await client.close();
    // close() can return while an abandoned (aborted/timed-out) query is still
    // running in the engine; only once that settles is the directory released
    // for another directory in this process or for another process.
    await drainPending();
  };
  try {
    await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${quoteIdent(database)}` });
    // The current database is per chDB connection and sticks across queries,
    // which is what makes this the embedded equivalent of the server's
    // `database` parameter. Other connections on the same directory keep theirs.
    await client.command({ query: `USE ${quoteIdent(database)}` });
  } catch (err) {
    await close();
    throw err;
  }
  return { client, mode: 'embedded', database, close };
}

/**
 * The engine takes an exclusive lock on `<dataDir>/status` and writes its PID
 * there: a data directory belongs to one process at a time (two engines would
 * merge and rewrite the same parts underneath each other). chDB only reports
 * "Failed to create connection", so the status file is what tells a
 * held-elsewhere directory apart from any other failure.
 */
async function openFailure(dir: string, cause: unknown): Promise<Error> {
  const holder = await statusPid(dir);
  if (holder !== undefined && holder !== process.pid) {
    return new Error(
      `Embedded ClickHouse data directory ${dir} is held by another process (pid ${holder} per ${path.join(dir, 'status')}); ` +
        'only one process can open a chDB data directory: stop that process, point this one at the ClickHouse server with a URL, or use a different directory',
      { cause },
    );
  }
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new Error(`Could not open embedded ClickHouse data directory ${dir}: ${reason}`, { cause });
}

async function statusPid(dir: string): Promise<number | undefined> {
  try {
    const match = /^PID:\s*(\d+)/m.exec(await readFile(path.join(dir, 'status'), 'utf8'));
    return match?.[1] === undefined ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

type ClientConnection = NonNullable<ClickHouseClientConfigOptions['connection']>;

/**
 * chDB declares its connection against the separate `@clickhouse/client-common`
 * package while `@clickhouse/client` ships its own copy of those declarations.
 * They are textually identical, but `ClickHouseSettings` mentions the
 * `SettingsMap` class, whose private field makes the two copies nominally
 * distinct to TypeScript. Runtime shapes match (that is the contract
 * `chdb/connection` exists to honour), so only the type is bridged.
 */
function asClientConnection(connection: ChdbConnection): ClientConnection {
  return connection as unknown as ClientConnection;
}

function quoteIdent(name: string): string {
  return '`' + name.replace(/\\/g, '\\\\').replace(/`/g, '\\`') + '`';
}

/** chDB's own error codes for an engine that is closed or did not answer in time. */
const CHDB_UNAVAILABLE = new Set(['CHDB_CLOSED', 'CHDB_TIMEOUT']);
// Two clients fail with a plain `Error` whose message is all there is: the
// HTTP client's request timeout, and chDB's connection used after close(). So
// these message checks live here, beside the clients, and nowhere else.
const UNAVAILABLE_MESSAGES = new Set(['Timeout error.', 'ChdbConnection is closed']);

/**
 * Whether ClickHouse did not answer (a server that is down or too slow, an
 * embedded engine already closed): the archive is unavailable, retry later.
 * A query ClickHouse refused (a ClickHouseError with its code) is not this.
 */
export function isClickHouseUnavailable(err: unknown): boolean {
  if (isUnreachable(err)) return true;
  return errorChain(err).some((e) => {
    const code = (e as { code?: unknown }).code;
    return (typeof code === 'string' && CHDB_UNAVAILABLE.has(code)) || (e instanceof Error && UNAVAILABLE_MESSAGES.has(e.message));
  });
}
