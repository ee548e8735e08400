/**
 * npm run topics -- apply                          create missing declared topics, report drift (never destroys data)
 * npm run topics -- describe                       declared vs actual, and the log's generations
 * npm run topics -- repartition --partitions N     grow the event log as a new generation (topics/repartition.ts)
 *                  [--no-wait]                     without waiting for readers to finish the old generation
 */
import { loadConfig } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import { openRedis, redisOptions } from '../core/redis.ts';
import { logClient } from './client.ts';
import { readGenerations } from './generations.ts';
import { repartition } from './repartition.ts';
import { applyTopics, declaredTopics, diffTopics } from './topics.ts';

const cmd = process.argv[2];
const cfg = loadConfig();
const client = logClient(cfg, 'topics-cli');
const admin = client.admin();
try {
  await admin.connect();
  const declared = declaredTopics(cfg);
  if (cmd === 'apply') {
    const r = await applyTopics(admin, declared);
    for (const t of r.created) console.log(`created   ${t}`);
    for (const t of r.unchanged) console.log(`exists    ${t}`);
    for (const d of r.drift) console.log(`DRIFT     ${d.topic}: ${d.what} declared ${d.declared}, actual ${d.actual}`);
    if (r.drift.length > 0) {
      console.log('drift is reported, not repaired: changing partitions moves rooms between partitions; to grow the event log, run `npm run topics -- repartition --partitions N`.');
      process.exitCode = 3;
    }
  } else if (cmd === 'describe') {
    const states = await admin.describeTopics(declared.map((d) => d.name).filter((n) => n));
    for (const d of declared) {
      const s = states.find((x) => x.name === d.name);
      console.log(`${d.name}: declared ${d.partitions} partitions; actual ${s ? `${s.partitions} partitions` : 'missing'}`);
    }
    for (const d of diffTopics(declared, states)) console.log(`  DRIFT ${d.topic}: ${d.what} declared ${d.declared}, actual ${d.actual}`);
    const redis = openRedis({ ...redisOptions(cfg), name: 'topics-cli' });
    try {
      const gens = await readGenerations(redis, cfg.redis.keyPrefix, cfg.topics.roomEvents, cfg.topics.partitions);
      for (const g of gens.list) {
        const state = g === gens.list[gens.list.length - 1] ? 'current' : g.ends ? `sealed at ${Object.entries(g.ends).map(([p, e]) => `${p}:${e}`).join(' ')}` : 'switched from, not sealed (run repartition again)';
        console.log(`generation ${g.generation}: ${g.topic}, ${g.partitions} partitions, ${state}`);
      }
    } finally {
      redis.disconnect();
    }
  } else if (cmd === 'repartition') {
    const i = process.argv.indexOf('--partitions');
    const partitions = i > 0 ? Number(process.argv[i + 1]) : NaN;
    if (!Number.isInteger(partitions)) throw new AppError('ERR_USAGE', 'usage: npm run topics -- repartition --partitions <N> [--no-wait]');
    await repartition({ cfg, partitions, waitForReaders: !process.argv.includes('--no-wait'), log: (m) => console.log(m) });
  } else {
    console.error('usage: npm run topics -- <apply|describe|repartition --partitions N>');
    process.exitCode = 2;
  }
} catch (err) {
  console.error(err instanceof AppError ? `${err.code}: ${err.message}` : err);
  process.exitCode = 1;
} finally {
  await admin.disconnect();
  await client.close();
}
