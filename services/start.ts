/**
 * `npm start`: the whole system on this machine, with a live demo room.
 * Starts the servers (installing what is missing), declares the topics,
 * registers the schemas, then runs the service processes the root groups
 * (processors; moderation; archiver + gateway) and the demo chatter, each
 * known ready by its own report. Ctrl-C stops them (the servers keep
 * running; `npm run infra -- down` stops those). If a service process dies,
 * its health says so and everything stops, as a supervisor should.
 */
import { loadConfig } from '../core/config.ts';
import { up } from '../infra/stack.ts';
import { registerRoomEvents } from '../schemas/registry.ts';
import { logClient } from '../topics/client.ts';
import { applyTopics, declaredTopics } from '../topics/topics.ts';
import { compose, processGroups } from './root.ts';
import { ServiceProcess } from './spawn.ts';
import { Supervisor } from './supervisor.ts';

// The demo is a development setup: its conveniences (the dev token route, the
// documented dev secret when JWT_SECRET is unset) are switched on here, and
// nowhere else. DEMO_DEV_MODE=false npm start runs it as a deployment would.
const devEnv: Record<string, string> = loadConfig().demo.devMode ? { DEV_MODE: 'true' } : {};
const cfg = loadConfig({ ...process.env, ...devEnv });
const log = (m: string) => console.log(`[start] ${m}`);
if (cfg.auth.devMode) log('DEV_MODE is on: the dev token route signs viewer tokens; do not expose this to the internet');

await up(cfg, (m) => console.log(`[infra] ${m}`));
const client = logClient(cfg, 'start');
const admin = client.admin();
await admin.connect();
const topics = await applyTopics(admin, declaredTopics(cfg));
for (const d of topics.drift) log(`topic drift: ${d.topic} ${d.what} declared ${d.declared}, actual ${d.actual}`);
await admin.disconnect();
await client.close();
const reg = await registerRoomEvents(cfg.registry.url, cfg.topics.roomEvents);
log(`schema ${reg.subject}: id ${reg.id}, version ${reg.version}`);

const processes = processGroups(cfg).map((names) => new ServiceProcess(names, { echo: '', env: devEnv }));
const chatter = compose(cfg, ['chatter'], { chatter: { room: 'demo', rate: 3 } });
const root = new Supervisor([...processes, ...chatter.services], log);

let exiting = false;
async function exit(code: number): Promise<never> {
  if (!exiting) {
    exiting = true;
    await root.stop();
  }
  process.exit(code);
}
process.once('SIGINT', () => void exit(0));
process.once('SIGTERM', () => void exit(0));

try {
  await root.start();
} catch (err) {
  log(`could not start: ${(err as Error).message}`);
  await exit(1);
}
void root.failed.then(({ service, error }) => {
  log(`${service} is ${root.health().services[service]?.status ?? 'down'} (${error.message}); stopping everything`);
  void exit(1);
});

const base = cfg.gateway.publicUrl ?? `http://${cfg.gateway.host}:${cfg.gateway.port}`;
log('');
log(`the demo room is live: open ${base}/?room=demo`);
log(`API docs: ${base}/docs   metrics: ${base}/metrics`);
log(`replay page: ${base}/replay?room=demo   analytics page: ${base}/analytics?room=demo`);
log(`replay API: ${base}/v1/rooms/demo/replay?view=live&format=ndjson   stats: ${base}/v1/rooms/demo/stats`);
log(`health: ${Object.entries(root.health().services).map(([n, h]) => `${n} ${h.status}`).join(', ')}`);
log('Ctrl-C stops the services (servers keep running: npm run infra -- down)');
