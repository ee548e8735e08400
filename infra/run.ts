/**
 * `npm start`: brings the whole system up on this machine. For now: the
 * servers, then the smoke producer/consumer. (The gateway and its demo room
 * join here as they land.)
 */
import { spawnSync } from 'node:child_process';
import { loadConfig, REPO_ROOT } from '../core/config.ts';
import { up } from './stack.ts';

const cfg = loadConfig();
await up(cfg, (m) => console.log(`[infra] ${m}`));
const r = spawnSync(process.execPath, ['--import', 'tsx', 'infra/smoke.ts'], { cwd: REPO_ROOT, stdio: 'inherit' });
process.exit(r.status ?? 1);
