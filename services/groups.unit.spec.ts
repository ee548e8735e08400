import { describe, expect, it } from 'vitest';
import { loadConfig } from '../core/config.ts';
import { processGroups } from './root.ts';

describe('processGroups (what `npm start` runs together)', () => {
  it('runs moderation in a process of its own, beside the processors', () => {
    const groups = processGroups(loadConfig({}));
    expect(groups).toContainEqual(['processors']);
    expect(groups).toContainEqual(['moderation']);
    expect(groups.flat().filter((n) => n === 'moderation')).toHaveLength(1);
  });
  it('puts the archiver with the gateway only when ClickHouse is embedded (one process may open it)', () => {
    expect(processGroups(loadConfig({}))).toContainEqual(['archiver', 'gateway']);
    const server = processGroups(loadConfig({ CLICKHOUSE_URL: 'http://127.0.0.1:8123' }));
    expect(server).toContainEqual(['archiver']);
    expect(server).toContainEqual(['gateway']);
  });
  it('leaves moderation out when it is off, and adds the model stage when it is on', () => {
    expect(processGroups(loadConfig({ MODERATION_ENABLED: 'false' })).flat()).not.toContain('moderation');
    expect(processGroups(loadConfig({ MODERATION_MODEL_ENABLED: 'true' }))).toContainEqual(['moderation-model']);
  });
});
