/**
 * npm run infra -- up [service...]     install what is missing, start, wait until healthy
 * npm run infra -- down [service...]   stop what `up` started (pid files)
 * npm run infra -- status [--json]     each service with port, pid and health
 * npm run infra -- logs <service> [-n N] [-f]
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { loadConfig, type Config } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import { lastLines } from './proc.ts';
import { allServices, type ServiceName } from './services.ts';
import { down, status, up, type ServiceStatus } from './stack.ts';

function table(rows: ServiceStatus[]): string {
  const head = ['service', 'port', 'pid', 'owner', 'health'];
  const body = rows.map((r) => [r.name, r.port === undefined ? '-' : String(r.port), r.pid === undefined ? '-' : String(r.pid), r.owner, r.health.split('\n')[0]!.slice(0, 80)]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [fmt(head), fmt(widths.map((w) => '-'.repeat(w))), ...body.map(fmt)].join('\n');
}

/** kafka, redis, registry, clickhouse, the cluster's nodes (redis-cluster-<port>) and redis-cluster. */
const namesOf = (cfg: Config): ServiceName[] => allServices(cfg).map((s) => s.name);

function pickServices(cfg: Config, args: string[]): ServiceName[] | undefined {
  if (args.length === 0) return undefined;
  const names = namesOf(cfg);
  for (const a of args) if (!names.includes(a as ServiceName)) throw new AppError('ERR_INFRA_USAGE', `unknown service "${a}"; one of ${names.join(', ')}`);
  return args as ServiceName[];
}

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { json: { type: 'boolean' }, lines: { type: 'string', short: 'n' }, follow: { type: 'boolean', short: 'f' } },
  });
  const [cmd, ...rest] = positionals;
  const cfg = loadConfig();
  const log = (m: string) => console.log(`[infra] ${m}`);
  switch (cmd) {
    case 'up': {
      const t0 = Date.now();
      const res = await up(cfg, log, pickServices(cfg, rest));
      console.log(table(res.statuses));
      log(`up in ${((Date.now() - t0) / 1000).toFixed(1)}s; started: ${res.started.join(', ') || 'nothing (all were up)'}`);
      return 0;
    }
    case 'down':
      await down(cfg, log, pickServices(cfg, rest));
      return 0;
    case 'status': {
      const rows = await status(cfg);
      console.log(values.json ? JSON.stringify(rows, null, 2) : table(rows));
      return rows.every((r) => r.health === 'ok') ? 0 : 1;
    }
    case 'logs': {
      const name = pickServices(cfg, rest.slice(0, 1))?.[0];
      if (!name) throw new AppError('ERR_INFRA_USAGE', `usage: infra logs <${namesOf(cfg).join('|')}> [-n N] [-f]`);
      const svc = allServices(cfg).find((s) => s.name === name)!;
      const n = Number(values.lines ?? 100);
      if (values.follow) {
        const child = spawn('tail', ['-n', String(n), '-F', svc.logFile], { stdio: 'inherit' });
        return await new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 0)));
      }
      console.log(lastLines(svc.logFile, n));
      return 0;
    }
    default:
      console.error('usage: npm run infra -- <up|down|status|logs> [service...]\n  services: ' + namesOf(cfg).join(', '));
      return 2;
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof AppError ? `[infra] ${err.code}: ${err.message}` : err);
    process.exit(1);
  },
);
