/** The shared local servers (Kafka, registry, Redis) as the bench sees them: pids for CPU accounting, and a health check. */
import type { Config } from '../../core/config.ts';
import { status } from '../../infra/stack.ts';

export interface InfraPids {
  kafka?: number;
  redis?: number;
  registry?: number;
}

export async function infraPids(cfg: Config): Promise<InfraPids> {
  const rows = await status(cfg);
  const pid = (n: string) => rows.find((r) => r.name === n && r.health === 'ok')?.pid;
  return { kafka: pid('kafka'), redis: pid('redis'), registry: pid('registry') };
}

/** Throws a readable error when a server the bench needs is not healthy. */
export async function requireInfra(cfg: Config, names: ('kafka' | 'redis' | 'registry')[], waitMs = 60_000): Promise<void> {
  // A busy machine can make one health probe time out: retry for a while before giving up.
  const deadline = Date.now() + waitMs;
  for (;;) {
    const rows = await status(cfg);
    const bad = names.filter((n) => rows.find((r) => r.name === n)?.health !== 'ok');
    if (bad.length === 0) return;
    if (Date.now() > deadline) throw new Error(`not healthy: ${bad.map((n) => `${n} (${rows.find((r) => r.name === n)?.health.split('\n')[0]})`).join(', ')} — start the servers with \`npm run infra -- up\``);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

/**
 * How the benchmarks use a private world (services/world.ts): limits raised
 * for the load generator's users (a benchmark user set, not limits off),
 * moderation off unless a scenario measures it, topics and keys removed after.
 */
export const BENCH_WORLD = {
  prefix: 'bench',
  cleanup: true,
  // Raised, not off: the viewers of a run connect from one address, which the read budget counts as one client.
  env: { LIMIT_COMMENTS: '100000', LIMIT_COMMENTS_WINDOW_SEC: '1', LIMIT_READS: '10000000', MODERATION_ENABLED: 'false' },
} as const;
