/**
 * `npm start`: the whole system on this machine, with a live demo room.
 * Starts the servers (installing what is missing), declares the topics,
 * registers the schemas, then runs the processors, the archiver and the
 * gateway as child processes and a chatter bot that keeps the demo room alive. Ctrl-C stops
 * the children (the servers keep running; `npm run infra -- down` stops them).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { loadConfig, REPO_ROOT } from '../core/config.ts';
import { runChatter } from '../gateway/demo/chatter.ts';
import { registerRoomEvents } from '../schemas/registry.ts';
import { logClient } from '../topics/client.ts';
import { applyTopics, declaredTopics } from '../topics/topics.ts';
import { createSigner } from 'fast-jwt';
import { up } from './stack.ts';

const cfg = loadConfig();
const log = (m: string) => console.log(`[start] ${m}`);

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

const children: ChildProcess[] = [];
function child(name: string, script: string, args: string[] = []): Promise<void> {
  const c = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(c);
  return new Promise((resolve, reject) => {
    let ready = false;
    const onLine = (line: string) => {
      if (!line.trim()) return;
      console.log(`[${name}] ${line}`);
      if (!ready && /ready|listening on/.test(line)) {
        ready = true;
        resolve();
      }
    };
    for (const s of [c.stdout!, c.stderr!]) {
      let buf = '';
      s.on('data', (b: Buffer) => {
        buf += b.toString('utf8');
        const lines = buf.split('\n');
        buf = lines.pop() ?? '';
        lines.forEach(onLine);
      });
    }
    c.once('exit', (code) => {
      if (!ready) reject(new Error(`${name} exited with ${code} before it was ready`));
      else if (!stopping) {
        log(`${name} exited with ${code}; stopping`);
        void stop(1);
      }
    });
  });
}

let stopping = false;
const ac = new AbortController();
async function stop(code = 0): Promise<never> {
  stopping = true;
  ac.abort();
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
  process.exit(code);
}
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());

await child('pipelines', 'pipelines/cli.ts', ['run']);
if (cfg.clickhouse.url) {
  // A ClickHouse server: the archiver and the gateway may run apart.
  await child('archiver', 'archive/cli.ts', ['run']);
  await child('gateway', 'gateway/main.ts');
} else {
  // Embedded ClickHouse: one process per data directory, so the archiver and the
  // gateway (whose replay and stats routes read the archive) share one process.
  await child('gateway+archiver', 'archive/cli.ts', ['run', '--gateway']);
}
const base = cfg.gateway.publicUrl ?? `http://${cfg.gateway.host}:${cfg.gateway.port}`;
const sign = createSigner({ key: cfg.auth.jwtSecret, algorithm: 'HS256', expiresIn: cfg.auth.devTokenTtlSec * 1000 });
void runChatter({ baseUrl: base, room: 'demo', rate: 3, signal: ac.signal, token: (user) => sign({ sub: user, role: 'viewer' }) }).catch((err) => log(`chatter stopped: ${(err as Error).message}`));

log('');
log(`the demo room is live: open ${base}/?room=demo`);
log(`API docs: ${base}/docs   metrics: ${base}/metrics`);
log(`replay: ${base}/v1/rooms/demo/replay?view=live&format=ndjson   stats: ${base}/v1/rooms/demo/stats`);
log('Ctrl-C stops the gateway and processors (servers keep running: npm run infra -- down)');
