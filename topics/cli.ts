/**
 * npm run topics -- apply      create missing declared topics, report drift (never destroys data)
 * npm run topics -- describe   declared vs actual
 */
import { loadConfig } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import { logClient } from './client.ts';
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
      console.log('drift is reported, not repaired: changing partitions moves rooms between partitions; review and change by hand.');
      process.exitCode = 3;
    }
  } else if (cmd === 'describe') {
    const states = await admin.describeTopics(declared.map((d) => d.name).filter((n) => n));
    for (const d of declared) {
      const s = states.find((x) => x.name === d.name);
      console.log(`${d.name}: declared ${d.partitions} partitions; actual ${s ? `${s.partitions} partitions` : 'missing'}`);
    }
    for (const d of diffTopics(declared, states)) console.log(`  DRIFT ${d.topic}: ${d.what} declared ${d.declared}, actual ${d.actual}`);
  } else {
    console.error('usage: npm run topics -- <apply|describe>');
    process.exitCode = 2;
  }
} catch (err) {
  console.error(err instanceof AppError ? `${err.code}: ${err.message}` : err);
  process.exitCode = 1;
} finally {
  await admin.disconnect();
  await client.close();
}
