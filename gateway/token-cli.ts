/**
 * npm run token -- --user u1 [--role viewer|admin] [--room A --room-role moderator|broadcaster ...] [--ttl 3600]
 *
 * Prints a bearer token signed with this deployment's HS256 secret: the
 * operator's way to hand out moderator, broadcaster and admin tokens (the dev
 * route signs viewer tokens only). Room roles are per room:
 *   npm run token -- --user u --role broadcaster --room A      → {"rooms": {"A": "broadcaster"}}
 *   npm run token -- --user u --role moderator --room A --room B
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import { jwtSecretOf, PLATFORM_ROLES, ROOM_ROLES, tokenSigner, type RoomRole, type TokenClaims } from './auth.ts';

const USAGE = `usage: npm run token -- --user <id> [--role <${[...PLATFORM_ROLES, ...ROOM_ROLES].join('|')}>] [--room <room> ...] [--ttl seconds]
  moderator and broadcaster are room roles: name the rooms with --room`;

function main(): void {
  const { values } = parseArgs({ options: { user: { type: 'string' }, role: { type: 'string', default: 'viewer' }, room: { type: 'string', multiple: true }, ttl: { type: 'string' } } });
  const cfg = loadConfig();
  const role = values.role!;
  const rooms = values.room ?? [];
  if (!values.user) throw new AppError('ERR_USAGE', USAGE);
  const claims: TokenClaims = { sub: values.user };
  if ((ROOM_ROLES as readonly string[]).includes(role)) {
    if (rooms.length === 0) throw new AppError('ERR_USAGE', `${role} is a room role: name at least one --room\n${USAGE}`);
    claims.rooms = Object.fromEntries(rooms.map((r) => [r, role as RoomRole]));
  } else if ((PLATFORM_ROLES as readonly string[]).includes(role)) {
    if (rooms.length > 0) throw new AppError('ERR_USAGE', `--room goes with a room role (moderator or broadcaster)\n${USAGE}`);
    if (role === 'admin') claims.role = 'admin';
  } else throw new AppError('ERR_USAGE', USAGE);
  const secret = jwtSecretOf(cfg);
  if (!secret) throw new AppError('ERR_USAGE', 'this deployment verifies tokens with public keys (JWT_PUBLIC_KEY_FILE / JWT_JWKS_FILE): its identity provider signs them');
  const ttl = Number(values.ttl ?? cfg.auth.devTokenTtlSec);
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > cfg.auth.maxTokenTtlSec) throw new AppError('ERR_USAGE', `--ttl must be 1..${cfg.auth.maxTokenTtlSec} seconds (AUTH_MAX_TOKEN_TTL_SEC)`);
  console.log(tokenSigner(secret, ttl)(claims));
}

try {
  main();
} catch (err) {
  console.error(err instanceof AppError ? `${err.code}: ${err.message}` : err);
  process.exit(err instanceof AppError && err.code === 'ERR_USAGE' ? 2 : 1);
}
