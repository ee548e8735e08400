/** What a token grants, decided without any server: claims, lifetimes, room roles, secrets. */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../core/config.ts';
import { DEV_JWT_SECRET, isModeratorIn, jwtSecretOf, redactUrl, roleIn, userFromClaims } from './auth.ts';

const NOW = 1_800_000_000_000;
const sec = NOW / 1000;
const MAX = 3600;
const claims = (extra: Record<string, unknown>) => ({ sub: 'u1', exp: sec + 60, iat: sec, ...extra });

describe('userFromClaims', () => {
  it('makes a viewer by default, an admin when asked, and room roles from `rooms`', () => {
    expect(userFromClaims(claims({}), MAX, NOW)).toEqual({ id: 'u1', role: 'viewer', rooms: {}, iat: sec });
    expect(userFromClaims(claims({ role: 'admin' }), MAX, NOW).role).toBe('admin');
    const u = userFromClaims(claims({ rooms: { A: 'broadcaster', B: 'moderator' } }), MAX, NOW);
    expect([roleIn(u, 'A'), roleIn(u, 'B'), roleIn(u, 'C')]).toEqual(['broadcaster', 'moderator', 'viewer']);
    expect([isModeratorIn(u, 'A'), isModeratorIn(u, 'C')]).toEqual([true, false]);
    const admin = userFromClaims(claims({ role: 'admin' }), MAX, NOW);
    expect([roleIn(admin, 'anything'), isModeratorIn(admin, 'anything')]).toEqual(['admin', true]);
  });

  it('does not let inherited object keys look like rooms', () => {
    const u = userFromClaims(claims({}), MAX, NOW);
    expect([roleIn(u, 'constructor'), roleIn(u, '__proto__'), roleIn(u, 'toString')]).toEqual(['viewer', 'viewer', 'viewer']);
  });

  it.each([
    ['an object sub', { sub: { id: 'x' } }],
    ['a numeric sub', { sub: 42 }],
    ['an empty sub', { sub: '' }],
    ['a sub with spaces', { sub: 'a b' }],
    ['no exp', { exp: undefined }],
    ['a string exp', { exp: '9999999999' }],
    ['a lifetime over the maximum', { exp: sec + MAX + 1 }],
    ['no iat and exp too far away', { iat: undefined, exp: sec + MAX + 10 }],
    ['an iat in the future (lifetime cap and revocations dodged)', { iat: sec + 10 * 365 * 86_400, exp: sec + 10 * 365 * 86_400 + 60 }],
    ['an iat a minute ahead', { iat: sec + 60, exp: sec + 120 }],
    ['a global moderator role', { role: 'moderator' }],
    ['a global broadcaster role', { role: 'broadcaster' }],
    ['an unknown role', { role: 'root' }],
    ['rooms as an array', { rooms: ['A'] }],
    ['a room role that is not one', { rooms: { A: 'admin' } }],
    ['a bad room id', { rooms: { 'a b': 'moderator' } }],
    ['too many rooms', { rooms: Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`r${i}`, 'moderator'])) }],
  ])('refuses %s with ERR_AUTH_INVALID', (_what, extra) => {
    expect(() => userFromClaims(claims(extra), MAX, NOW)).toThrow(expect.objectContaining({ code: 'ERR_AUTH_INVALID', status: 401 }));
  });

  it('says where room roles go when a token carries a global one', () => {
    expect(() => userFromClaims(claims({ role: 'moderator' }), MAX, NOW)).toThrow(/per room: use the `rooms` claim/);
  });
});

describe('jwtSecretOf (fail closed)', () => {
  const cfg = (env: Record<string, string>) => loadConfig({ ...env });
  it('refuses no secret, the development secret and short secrets outside DEV_MODE, naming the variable', () => {
    expect(() => jwtSecretOf(cfg({}))).toThrow(/JWT_SECRET is not set/);
    expect(() => jwtSecretOf(cfg({ JWT_SECRET: '' }))).toThrow(/JWT_SECRET is not set/);
    expect(() => jwtSecretOf(cfg({ JWT_SECRET: DEV_JWT_SECRET }))).toThrow(/JWT_SECRET is the documented development secret/);
    expect(() => jwtSecretOf(cfg({ JWT_SECRET: 'short-secret' }))).toThrow(/JWT_SECRET is shorter than 32/);
    expect(() => jwtSecretOf(cfg({}))).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }));
  });
  it('uses a real secret as given, the dev secret only in DEV_MODE, and none with public keys', () => {
    const real = 'x'.repeat(40);
    expect(jwtSecretOf(cfg({ JWT_SECRET: real }))).toBe(real);
    expect(jwtSecretOf(cfg({ DEV_MODE: 'true' }))).toBe(DEV_JWT_SECRET);
    expect(jwtSecretOf(cfg({ DEV_MODE: 'true', JWT_SECRET: 'short' }))).toBe('short');
    expect(jwtSecretOf(cfg({ JWT_PUBLIC_KEY_FILE: '/k.pem' }))).toBeUndefined();
    expect(jwtSecretOf(cfg({ JWT_JWKS_FILE: '/jwks.json' }))).toBeUndefined();
  });
});

describe('redactUrl', () => {
  it('hides a query token wherever it stands', () => {
    expect(redactUrl('/v1/rooms/a/ws?token=abc.def.ghi&since=0.1')).toBe('/v1/rooms/a/ws?token=[redacted]&since=0.1');
    expect(redactUrl('/v1/rooms/a/ws?view=sampled&TOKEN=abc')).toBe('/v1/rooms/a/ws?view=sampled&TOKEN=[redacted]');
    expect(redactUrl('/v1/rooms/a/feed?since=0.1')).toBe('/v1/rooms/a/feed?since=0.1');
  });
});
