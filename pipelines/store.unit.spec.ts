/**
 * The command table is internally consistent: each Lua body reads only the
 * keys and arguments its entry declares, and reads all of them (a field the
 * script ignores would be a field MemoryStore and Redis disagree on). That
 * the two executors agree on effects is store.int.spec.ts's job.
 */
import { describe, expect, it } from 'vitest';
import { APPLY_LUA, COMMANDS, encodeCmds, type Cmd } from './store.ts';

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

  it('encodes key names as KEYS indexes (meta first) and arguments in declared order', () => {
    const cmds: Cmd[] = [
      { op: 'feedAdd', key: 'z', index: 'i', eventId: 'e1', offset: 7, member: '{}' },
      { op: 'HDEL', key: 'h', fields: ['a', 'b'] },
      { op: 'feedTrim', key: 'z', index: 'i', keep: 3 },
      { op: 'DEL', key: 'h' },
    ];
    const { keys, json } = encodeCmds('meta', cmds);
    expect(keys).toEqual(['meta', 'z', 'i', 'h']);
    expect(JSON.parse(json)).toEqual([
      ['feedAdd', [2, 3], ['e1', 7, '{}']],
      ['HDEL', [4], [['a', 'b']]],
      ['feedTrim', [2, 3], [3]],
      ['DEL', [4], []],
    ]);
  });

  it('types commands from the table', () => {
    // @ts-expect-error a field the table does not declare for HSET
    const wrong: Cmd = { op: 'HSET', key: 'k', field: 'f', value: 'v', by: 1 };
    // @ts-expect-error an op the table does not declare
    const unknown: Cmd = { op: 'LPUSH', key: 'k' };
    expect([wrong, unknown]).toHaveLength(2);
  });
});
