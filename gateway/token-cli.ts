/** npm run token -- --user u1 --role moderator [--ttl 3600]: prints a dev bearer token (HS256, JWT_SECRET). */
import { parseArgs } from 'node:util';
import { createSigner } from 'fast-jwt';
import { loadConfig } from '../core/config.ts';
import { ROLES } from './auth.ts';

const { values } = parseArgs({ options: { user: { type: 'string' }, role: { type: 'string', default: 'viewer' }, ttl: { type: 'string' } } });
const cfg = loadConfig();
if (!values.user || !(ROLES as readonly string[]).includes(values.role!)) {
  console.error(`usage: npm run token -- --user <id> --role <${ROLES.join('|')}> [--ttl seconds]`);
  process.exit(2);
}
const sign = createSigner({ key: cfg.auth.jwtSecret, algorithm: 'HS256', expiresIn: Number(values.ttl ?? cfg.auth.devTokenTtlSec) * 1000 });
console.log(sign({ sub: values.user, role: values.role }));
