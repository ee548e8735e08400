/**
 * Every command that runs or administers a long-running part, through the
 * composition root:
 *
 *   npm run pipelines -- run [--projections feed,sampled,tallies,state,moderation]
 *   npm run pipelines -- rebuild <feed|sampled|tallies|state>
 *   npm run archiver -- run [--gateway]     (--gateway: replay and analytics from this process, what embedded ClickHouse needs)
 *   npm run archiver -- migrate | status
 *   npm run gateway
 *   npm run services -- run <processors,moderation,moderation-model,archiver,gateway,chatter> [--projections ...]
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import { archiveStatus, migrateArchive } from '../archive/admin.ts';
import { PROJECTION_NAMES, type ProjectionName } from '../pipelines/catalog.ts';
import { runServiceProcess } from './process.ts';
import { parseServiceNames, type ServiceName } from './root.ts';

const USAGE = `usage:
  npm run pipelines -- run [--projections ${[...PROJECTION_NAMES, 'moderation'].join(',')}]
  npm run pipelines -- rebuild <${PROJECTION_NAMES.join('|')}>
  npm run archiver -- run [--gateway] | migrate | status
  npm run gateway
  npm run services -- run <names> [--projections ...]`;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { projections: { type: 'string' }, gateway: { type: 'boolean' } },
});
const cfg = loadConfig();

function projectionsOf(list: string[]): ProjectionName[] {
  for (const n of list) {
    if (!(PROJECTION_NAMES as readonly string[]).includes(n)) throw new AppError('ERR_USAGE', `unknown projection "${n}"; one of ${PROJECTION_NAMES.join(', ')}`);
  }
  return list as ProjectionName[];
}

/** `--projections` may name `moderation` beside the projections; by default all run (moderation if enabled). */
function pipelinesServices(): { names: ServiceName[]; projections?: ProjectionName[] } {
  const wanted = values.projections
    ?.split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  if (!wanted) return { names: cfg.moderation.enabled ? ['processors', 'moderation'] : ['processors'] };
  const projections = projectionsOf(wanted.filter((x) => x !== 'moderation'));
  const names: ServiceName[] = [];
  if (projections.length > 0) names.push('processors');
  if (wanted.includes('moderation')) names.push('moderation');
  return { names, projections };
}

async function main(): Promise<number> {
  const [command, sub, arg] = positionals;
  const log = (m: string) => console.log(`[${command}] ${new Date().toISOString()} ${m}`);
  switch (`${command} ${sub ?? ''}`.trim()) {
    case 'pipelines run': {
      const { names, projections } = pipelinesServices();
      return runServiceProcess(cfg, names, { projections });
    }
    case 'pipelines rebuild': {
      if (!arg) throw new AppError('ERR_USAGE', `usage: npm run pipelines -- rebuild <${PROJECTION_NAMES.join('|')}>`);
      const { rebuild } = await import('../pipelines/rebuild.ts');
      await rebuild({ cfg, projection: projectionsOf([arg])[0]!, log, progress: true });
      return 0;
    }
    case 'archiver run':
      return runServiceProcess(cfg, values.gateway ? ['archiver', 'gateway'] : ['archiver']);
    case 'archiver migrate':
      await migrateArchive(cfg, log);
      return 0;
    case 'archiver status':
      await archiveStatus(cfg);
      return 0;
    case 'gateway':
      return runServiceProcess(cfg, ['gateway']);
    case 'services run': {
      if (!arg) throw new AppError('ERR_USAGE', USAGE);
      const names = parseServiceNames(arg);
      const projections = values.projections ? projectionsOf(values.projections.split(',').map((x) => x.trim())) : undefined;
      return runServiceProcess(cfg, names, { projections });
    }
    default:
      console.error(USAGE);
      return 2;
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof AppError ? `${err.code}: ${err.message}` : err);
    process.exit(1);
  },
);
