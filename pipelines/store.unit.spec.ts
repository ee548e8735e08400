/**
 * The command table is internally consistent: each Lua body reads only the
 * keys and arguments its entry declares, and reads all of them (a field the
 * script ignores would be a field MemoryStore and Redis disagree on). That
 * the two executors agree on effects is store.int.spec.ts's job.
 */
import { describe, expect, it } from 'vitest';
import { APPLY_LUA, COMMANDS, compactRuns, encodeCmds, MemoryStore, type Cmd } from './store.ts';

const refs = (lua: string, name: 'K' | 'A') => new Set([...lua.matchAll(new RegExp(`\\b${name}\\[(\\d+)\\]`, 'g'))].map((m) => Number(m[1])));
const oneTo = (n: number) => new Set(Array.from({ length: n }, (_, i) => i + 1));

describe('the command table', () => {
  for (const [op, spec] of Object.entries(COMMANDS)) {
    it(`${op}: its Lua body uses exactly the declared keys and arguments, and is part of the script`, () => {
      expect(refs(spec.lua, 'K')).toEqual(oneTo(spec.keys.length));
      expect(refs(spec.lua, 'A')).toEqual(oneTo(Object.keys(spec.args).length));
      expect(APPLY_LUA).toContain(`run['${op}'] = function(K, A)`);
    });
  }

  it('encodes key names as KEYS indexes (meta first), numbers as they are and strings by their place, in declared order', () => {
    const cmds: Cmd[] = [
      { op: 'feedAdd', key: 'z', index: 'i', eventId: 'e1', offset: 7, member: '{"a":"b"}' },
      { op: 'HDEL', key: 'h', fields: ['a', 'b'] },
      { op: 'feedTrim', key: 'z', index: 'i', keep: 3 },
      { op: 'DEL', key: 'h' },
    ];
    const { keys, json, strings } = encodeCmds('meta', cmds);
    expect(keys).toEqual(['meta', 'z', 'i', 'h']);
    expect(JSON.parse(json)).toEqual([
      ['feedAdd', [2, 3], ['1', 7, '2']],
      ['HDEL', [4], [['3', '4']]],
      ['feedTrim', [2, 3], [3]],
      ['DEL', [4], []],
    ]);
    expect(strings).toEqual(['e1', '{"a":"b"}', 'a', 'b']);
  });

  it('folds runs of add + trim pairs into feedAppend, and they leave a feed as the pairs do', () => {
    // Feeds as the projections keep them: each member indexed under its own id, one member per offset.
    const item = (id: string, offset: number) => JSON.stringify({ kind: 'comment', eventId: id, offset });
    const pairs = (from: number, n: number, keep: number, ids = (i: number) => `c${i}`): Cmd[] =>
      Array.from({ length: n }, (_, k): Cmd[] => [
        { op: 'feedAdd', key: 'z', index: 'i', eventId: ids(from + k), offset: from + k, member: item(ids(from + k), from + k) },
        { op: 'feedTrim', key: 'z', index: 'i', keep },
      ]).flat();
    const tomb: Cmd[] = [
      { op: 'feedRemove', key: 'z', index: 'i', eventId: 'c8' },
      { op: 'feedAdd', key: 'z', index: 'i', eventId: 'del:d1', offset: 20, member: JSON.stringify({ kind: 'delete', eventId: 'c8', deletionId: 'd1', offset: 20 }) },
      { op: 'feedTrim', key: 'z', index: 'i', keep: 3 },
    ];
    // Re-adds: of an id trimmed long ago (c1), and of one that only a pending trim drops first (c12).
    const readd = pairs(21, 3, 3, (i) => ['c1', 'c12', 'c23'][i - 21]!);
    const cmds = [...pairs(0, 10, 3), ...tomb, ...pairs(10, 4, 3), ...readd];
    const compacted = compactRuns(cmds);
    expect(compacted.map((c) => c.op)).toEqual(['feedAppend', 'feedRemove', 'feedAppend']);
    const one = new MemoryStore();
    one.exec(cmds);
    const folded = new MemoryStore();
    folded.exec(compacted);
    expect(folded.sortedMembers('z')).toEqual(one.sortedMembers('z'));
    expect(folded.hash('i')).toEqual(one.hash('i'));
    expect([...one.hash('i').keys()].sort()).toEqual(['c1', 'c12', 'c23']);
  });

  it('types commands from the table', () => {
    // @ts-expect-error a field the table does not declare for HSET
    const wrong: Cmd = { op: 'HSET', key: 'k', field: 'f', value: 'v', by: 1 };
    // @ts-expect-error an op the table does not declare
    const unknown: Cmd = { op: 'LPUSH', key: 'k' };
    expect([wrong, unknown]).toHaveLength(2);
  });
});
