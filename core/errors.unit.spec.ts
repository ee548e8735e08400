import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isClickHouseUnavailable } from './clickhouse.ts';
import { REPO_ROOT } from './config.ts';
import { AppError, ERROR_CODES, ERRORS, errorsDoc, isRetriable, readmeWithErrorTable, UnavailableError, type ErrorSpec } from './errors.ts';
import { isRedisUnavailable } from './redis.ts';

const HERE = path.join(REPO_ROOT, 'core', 'errors.unit.spec.ts');

/** Every `'ERR_…'` string literal in the project's own sources (this file, the checker, aside). */
function codeLiterals(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  const scan = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (['node_modules', '.data', '.git', 'dist', 'coverage'].includes(e.name)) continue;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) scan(p);
      else if (/\.(ts|mts|js|mjs|html)$/.test(e.name) && p !== HERE) {
        for (const m of fs.readFileSync(p, 'utf8').matchAll(/(['"`])(ERR_[A-Z0-9_]+)\1/g)) {
          found.set(m[2]!, [...(found.get(m[2]!) ?? []), path.relative(REPO_ROOT, p)]);
        }
      }
    }
  };
  scan(REPO_ROOT);
  return found;
}

const systemError = (code: string, message = 'boom') => Object.assign(new Error(message), { code });

describe('the error catalogue', () => {
  it('declares every code used anywhere in the sources (a code must be added there before it is used)', () => {
    const literals = codeLiterals();
    expect(literals.size).toBeGreaterThan(40);
    const unknown = [...literals].filter(([code]) => !(code in ERRORS)).map(([code, files]) => `${code} (${[...new Set(files)].join(', ')})`);
    expect(unknown).toEqual([]);
  });

  it('gives each code a doc line and a coherent status', () => {
    for (const code of ERROR_CODES) {
      const s: ErrorSpec = ERRORS[code];
      expect(code).toMatch(/^ERR_[A-Z0-9_]+$/);
      expect(s.doc.length, code).toBeGreaterThan(15);
      if (!s.client) expect(s.status >= 400 && s.status <= 599, code).toBe(true);
      // An unavailable dependency is always a retriable 503: callers back off, the gateway sends Retry-After.
      if (code.endsWith('_UNAVAILABLE')) expect([s.status, s.retriable], code).toEqual([503, true]);
    }
  });

  it('is documented in docs/errors.md and the README exactly as declared (run `npm run errors` after changing it)', () => {
    expect(fs.readFileSync(path.join(REPO_ROOT, 'docs', 'errors.md'), 'utf8')).toBe(errorsDoc());
    const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    expect(readme).toBe(readmeWithErrorTable(readme));
  });

  it('decides status and retriability; a call site gives only message, details and cause', () => {
    const cause = new Error('underneath');
    const e = new AppError('ERR_IN_PROGRESS', 'busy', { cause, details: { retryAfterSec: 1 } });
    expect([e.status, e.retriable, e.cause, e.toJSON()]).toEqual([409, true, cause, { code: 'ERR_IN_PROGRESS', message: 'busy', details: { retryAfterSec: 1 } }]);
    expect([new UnavailableError('ERR_KAFKA_UNAVAILABLE', 'down').status, new AppError('ERR_RATE_LIMITED', 'slow down').retriable]).toEqual([503, false]);
    // @ts-expect-error a misspelt code does not compile
    expect(() => new AppError('ERR_AUTH_REQUIERD', 'x')).toThrow();
  });
});

describe('retriability comes from structure, never from messages', () => {
  it('AppErrors say it themselves; other errors only when a system error code says the peer was unreachable', () => {
    expect(isRetriable(new UnavailableError('ERR_REGISTRY_UNAVAILABLE', 'down'))).toBe(true);
    expect(isRetriable(new AppError('ERR_KAFKA_REJECTED', 'connect ECONNREFUSED in the message changes nothing'))).toBe(false);
    expect(isRetriable(systemError('ECONNREFUSED'))).toBe(true);
    expect(isRetriable(new TypeError('fetch failed', { cause: systemError('ECONNRESET') }))).toBe(true);
    expect(isRetriable(new AggregateError([systemError('ECONNREFUSED'), systemError('ECONNREFUSED')]))).toBe(true);
    expect(isRetriable(new Error('connect ECONNREFUSED 127.0.0.1:6379'))).toBe(false);
    expect(isRetriable(systemError('ENOENT'))).toBe(false);
    expect(isRetriable('a string')).toBe(false);
  });

  it('Redis: ioredis errors for a closed or unreachable connection, not the ones for a refused command', async () => {
    const { ReplyError } = await import('ioredis');
    expect(isRedisUnavailable(new Error('Connection is closed.'))).toBe(true);
    expect(isRedisUnavailable(Object.assign(new Error('Reached the max retries per request limit'), { name: 'MaxRetriesPerRequestError' }))).toBe(true);
    expect(isRedisUnavailable(systemError('ECONNREFUSED'))).toBe(true);
    expect(isRedisUnavailable(new ReplyError('WRONGTYPE Operation against a key holding the wrong kind of value'))).toBe(false);
  });

  it('ClickHouse: a server that does not answer or an engine already closed, not a refused query', () => {
    expect(isClickHouseUnavailable(systemError('ECONNREFUSED'))).toBe(true);
    expect(isClickHouseUnavailable(systemError('ECONNRESET', 'socket hang up'))).toBe(true);
    expect(isClickHouseUnavailable(new Error('Timeout error.'))).toBe(true);
    expect(isClickHouseUnavailable(new Error('wrapped', { cause: Object.assign(new Error('session closed'), { code: 'CHDB_CLOSED' }) }))).toBe(true);
    expect(isClickHouseUnavailable(Object.assign(new Error('Code: 60. DB::Exception: Unknown table'), { code: '60', type: 'UNKNOWN_TABLE' }))).toBe(false);
  });
});
