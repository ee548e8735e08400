import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeConfig, loadConfig, REPO_ROOT } from './config.ts';
import { ConfigError } from './errors.ts';

describe('config', () => {
  it('given no environment, when loaded, then every default applies', () => {
    const cfg = loadConfig({});
    expect(cfg.kafka.port).toBe(9092);
    expect(cfg.kafka.controllerPort).toBe(9093);
    expect(cfg.kafka.brokers).toBe('127.0.0.1:9092');
    expect(cfg.registry.url).toBe('http://127.0.0.1:8081/apis/ccompat/v7');
    expect(cfg.redis.url).toBe('redis://127.0.0.1:6379');
    expect(cfg.clickhouse.url).toBeUndefined();
    expect(cfg.dataDir).toBe(path.join(REPO_ROOT, '.data'));
    expect(cfg.clickhouse.dataDir).toBe(path.join(REPO_ROOT, '.data', 'chdb'));
  });

  it('given ports and a data folder, when loaded, then derived URLs and paths follow them', () => {
    const cfg = loadConfig({ KAFKA_PORT: '19092', SCHEMA_REGISTRY_PORT: '18081', REDIS_PORT: '16379', DANMAKU_DATA_DIR: '/tmp/x' });
    expect(cfg.kafka.brokers).toBe('127.0.0.1:19092');
    expect(cfg.registry.url).toBe('http://127.0.0.1:18081/apis/ccompat/v7');
    expect(cfg.redis.url).toBe('redis://127.0.0.1:16379');
    expect(cfg.clickhouse.dataDir).toBe('/tmp/x/chdb');
  });

  it('given explicit endpoints, when loaded, then they win over derived ones', () => {
    const cfg = loadConfig({ KAFKA_BROKERS: 'a:1,b:2', CLICKHOUSE_URL: 'http://ch:8123', TEST_EXTERNAL_SERVICES: 'yes' });
    expect(cfg.kafka.brokers).toBe('a:1,b:2');
    expect(cfg.clickhouse.url).toBe('http://ch:8123');
    expect(cfg.test.externalServices).toBe(true);
  });

  it('given several bad values, when loaded, then one error lists them all', () => {
    let err: unknown;
    try {
      loadConfig({ KAFKA_PORT: 'x', REDIS_PORT: '0', LOG_LEVEL: 'loud', TEST_KEEP_SERVICES: 'maybe' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).details!.problems as string[];
    expect(problems.map((p) => p.split(':')[0])).toEqual(['LOG_LEVEL', 'KAFKA_PORT', 'REDIS_PORT', 'TEST_KEEP_SERVICES']);
    expect((err as ConfigError).code).toBe('ERR_CONFIG_INVALID');
  });

  it('documents every setting in the README (the docs cannot drift from the code)', () => {
    const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    const rows = describeConfig();
    expect(rows.length).toBeGreaterThan(10);
    for (const r of rows) {
      expect(r.doc.length, r.env).toBeGreaterThan(10);
      expect(readme, `README lists ${r.env}`).toContain(`\`${r.env}\``);
    }
    expect(new Set(rows.map((r) => r.env)).size).toBe(rows.length);
  });

  it('is the only module that reads process.env', () => {
    const offenders: string[] = [];
    const scan = (dir: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        if (['node_modules', '.data', '.git'].includes(e.name)) continue;
        const p = path.join(dir, e.name);
        if (e.isDirectory()) scan(p);
        else if (/\.ts$/.test(e.name) && !/\.spec\.ts$/.test(e.name) && p !== path.join(REPO_ROOT, 'core', 'config.ts')) {
          const text = fs.readFileSync(p, 'utf8');
          // Passing the environment through to a child process is not reading it.
          const reads = text.match(/process\.env\.[A-Z_]+|process\.env\[/g);
          if (reads) offenders.push(`${path.relative(REPO_ROOT, p)}: ${reads.join(', ')}`);
        }
      }
    };
    scan(REPO_ROOT);
    expect(offenders).toEqual([]);
  });
});
