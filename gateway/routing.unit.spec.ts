/**
 * The routing rules as pure functions: validation, the order of the rules
 * (deny, then allow, then the roll-out), deterministic and monotone bucketing,
 * the gateway order, and the CLI's list edits.
 */
import { describe, expect, it } from 'vitest';
import { AppError } from '../core/errors.ts';
import { editList, patchRules } from './routing-cli.ts';
import { BUCKETS, bucketOf, compileRules, decide, DEFAULT_RULES, DEFAULT_STORED, gatewayOrder, validateRules, type Asker, type RoutingRules } from './routing.ts';

const rules = (r: Partial<RoutingRules>) => compileRules({ ...DEFAULT_STORED, version: 1, rules: validateRules({ ...DEFAULT_RULES, ...r }) });
const asker = (a: Partial<Asker>): Asker => ({ userId: null, deviceId: null, clientVersion: null, ip: '10.0.0.1', ...a });

describe('routing rules', () => {
  it('defaults send everyone to WebSocket', () => {
    const c = compileRules(DEFAULT_STORED);
    expect(decide(c, asker({})).transport).toBe('ws');
    expect(decide(c, asker({ userId: 'u1' })).reason).toBe('rollout');
  });

  it('refuses invalid rules, listing every problem', () => {
    let err: unknown;
    try {
      validateRules({ ...DEFAULT_RULES, wsPercent: 150, gateways: ['ftp://x'], allow: { users: ['bad id'], devices: [], versions: [] }, extra: 1 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('ERR_ROUTING_RULES');
    expect(((err as AppError).details as { problems: string[] }).problems).toHaveLength(4);
    expect(() => validateRules({ ...DEFAULT_RULES, wsPercent: 10.123 })).toThrow(/two decimals/);
    expect(validateRules({ ...DEFAULT_RULES, wsPercent: 12.5, gateways: ['http://a:1/'] }).gateways).toEqual(['http://a:1']);
  });

  it('deny wins over allow; allow wins over the roll-out', () => {
    const c = rules({ wsPercent: 0, allow: { users: ['vip'], devices: ['dev-1'], versions: [] }, deny: { users: [], devices: [], versions: ['0.9.*', '2.0.0'] } });
    expect(decide(c, asker({ userId: 'vip' }))).toMatchObject({ transport: 'ws', reason: 'allow:user' });
    expect(decide(c, asker({ deviceId: 'dev-1' }))).toMatchObject({ transport: 'ws', reason: 'allow:device' });
    expect(decide(c, asker({ userId: 'vip', clientVersion: '0.9.4' }))).toMatchObject({ transport: 'polling', reason: 'deny:version' });
    expect(decide(c, asker({ userId: 'x', clientVersion: '2.0.0' }))).toMatchObject({ transport: 'polling', reason: 'deny:version' });
    expect(decide(c, asker({ userId: 'x', clientVersion: '2.0.01' }))).toMatchObject({ transport: 'polling', reason: 'rollout' });
    expect(decide(rules({ wsPercent: 100 }), asker({ userId: 'x' })).transport).toBe('ws');
  });

  it('buckets are deterministic per identity, and a larger percentage only adds clients', () => {
    expect(bucketOf('s', 'u:a')).toBe(bucketOf('s', 'u:a'));
    expect(bucketOf('s', 'u:a')).toBeLessThan(BUCKETS);
    const ids = Array.from({ length: 2000 }, (_, i) => `user-${i}`);
    const at = (pct: number) => new Set(ids.filter((u) => decide(rules({ wsPercent: pct }), asker({ userId: u })).transport === 'ws'));
    const ten = at(10);
    const twenty = at(20);
    for (const u of ten) expect(twenty.has(u)).toBe(true);
    // 2000 clients at 10 %: mean 200, sd ≈ 13.4; five sd either side.
    expect(ten.size).toBeGreaterThan(133);
    expect(ten.size).toBeLessThan(267);
    // The identity: the token's user, else the device, else the address.
    const c = rules({ wsPercent: 50 });
    expect(decide(c, asker({ userId: 'u', deviceId: 'd' })).identity).toBe('u:u');
    expect(decide(c, asker({ deviceId: 'd' })).identity).toBe('d:d');
    expect(decide(c, asker({})).identity).toBe('ip:10.0.0.1');
  });

  it('orders gateways per identity, stably, moving only the clients of a removed gateway', () => {
    const gws = ['http://g1', 'http://g2', 'http://g3'];
    const first = new Map(Array.from({ length: 300 }, (_, i) => [`u:${i}`, gatewayOrder(gws, `u:${i}`)[0]!]));
    const counts = [...first.values()].reduce<Record<string, number>>((a, g) => ({ ...a, [g]: (a[g] ?? 0) + 1 }), {});
    for (const g of gws) expect(counts[g]).toBeGreaterThan(50);
    for (const [id, g] of first) {
      expect(gatewayOrder(gws, id)[0]).toBe(g);
      if (g !== 'http://g3') expect(gatewayOrder(['http://g1', 'http://g2'], id)[0]).toBe(g);
    }
  });

  it('the CLI replaces lists, or edits them with +x / -x', () => {
    expect(editList(['a', 'b'], 'c,d')).toEqual(['c', 'd']);
    expect(editList(['a', 'b'], '+c,-a')).toEqual(['b', 'c']);
    expect(editList(['a'], '')).toEqual([]);
    const r = patchRules(DEFAULT_RULES, { 'ws-percent': '10', 'deny-versions': '1.2.*', 'allow-users': 'vip', 'poll-interval-ms': '2000' });
    expect(r).toMatchObject({ wsPercent: 10, pollIntervalMs: 2000, deny: { versions: ['1.2.*'] }, allow: { users: ['vip'] } });
    expect(patchRules(r, { 'poll-interval-ms': 'default' }).pollIntervalMs).toBeNull();
    expect(() => patchRules(r, { 'ws-percent': 'lots' })).toThrow(AppError);
  });
});
