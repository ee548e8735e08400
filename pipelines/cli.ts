/**
 * npm run pipelines -- run [--projections feed,sampled,tallies,state]
 * npm run pipelines -- rebuild <projection>
 * npm run pipelines -- status
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import { shutdownSignal, untilAborted } from '../core/lifecycle.ts';
import { PROJECTION_NAMES, type ProjectionName } from './catalog.ts';
import { ProcessorService } from './service.ts';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { projections: { type: 'string' } } });
const cfg = loadConfig();
const log = (m: string) => console.log(`[pipelines] ${new Date().toISOString()} ${m}`);

function pick(list: string | undefined): ProjectionName[] {
  if (!list) return [...PROJECTION_NAMES];
  const names = list.split(',').map((s) => s.trim());
  for (const n of names) if (!(PROJECTION_NAMES as readonly string[]).includes(n)) throw new AppError('ERR_USAGE', `unknown projection "${n}"; one of ${PROJECTION_NAMES.join(', ')}`);
  return names as ProjectionName[];
}

async function main(): Promise<void> {
  switch (positionals[0]) {
    case 'run': {
      // `--projections` may name `moderation` beside the projections; by default all run.
      const wanted = values.projections?.split(',').map((x) => x.trim());
      const moderation = wanted ? wanted.includes('moderation') : cfg.moderation.enabled;
      const names = wanted ? pick(wanted.filter((x) => x !== 'moderation').join(',') || undefined) : pick(undefined);
      const svc = new ProcessorService({ cfg, projections: wanted && wanted.every((x) => x === 'moderation') ? [] : names, moderation, log });
      const signal = shutdownSignal(log);
      await svc.start(signal);
      log('ready');
      await untilAborted(signal);
      await svc.stop();
      log('stopped');
      break;
    }
    case 'rebuild': {
      const { rebuild } = await import('./rebuild.ts');
      const name = pick(positionals[1])[0];
      if (!positionals[1] || !name) throw new AppError('ERR_USAGE', `usage: npm run pipelines -- rebuild <${PROJECTION_NAMES.join('|')}>`);
      await rebuild({ cfg, projection: name, log, progress: true });
      break;
    }
    default:
      console.error('usage: npm run pipelines -- <run|rebuild> ...');
      process.exitCode = 2;
  }
}

main().catch((err) => {
  console.error(err instanceof AppError ? `${err.code}: ${err.message}` : err);
  process.exit(1);
});
