/**
 * `up` / `down` / `status` over the services. Used by the CLI, by the run
 * command and by the test suite's global setup, so all three bring the stack
 * up the same way.
 */
import type { Config } from '../core/config.ts';
import { InfraError } from '../core/errors.ts';
import { delay, isAlive, lastLines, portOpen, readPid, spawnDetached, stopProcess } from './proc.ts';
import { allServices, type Service, type ServiceName } from './services.ts';

export type Progress = (msg: string) => void;

export interface ServiceStatus {
  name: ServiceName;
  port?: number;
  pid?: number;
  /** ours: started by `infra up`; external: healthy on its port but not ours; embedded: in-process. */
  owner: 'ours' | 'external' | 'embedded' | 'none';
  health: string;
  logFile: string;
}

export async function statusOf(s: Service): Promise<ServiceStatus> {
  const rec = readPid(s.pidFile);
  const alive = isAlive(rec);
  const health = s.runsProcess && !alive && s.port !== undefined && !(await portOpen(s.port)) ? 'down' : await s.health();
  // A group (the Redis Cluster) is ours when all its members are.
  const ours = s.members ? s.members.every((m) => isAlive(readPid(m.pidFile))) : alive;
  return {
    name: s.name,
    port: s.port,
    pid: alive ? rec.pid : undefined,
    owner: !s.runsProcess && !s.members ? 'embedded' : ours ? 'ours' : health === 'ok' ? 'external' : 'none',
    health,
    logFile: s.logFile,
  };
}

/**
 * The services `up` works on: the named ones (a group's members with it), or
 * with no names all but the opt-in ones (the Redis Cluster unless REDIS_MODE=cluster).
 */
export function selectServices(cfg: Config, only?: ServiceName[]): Service[] {
  const all = allServices(cfg);
  if (!only) return all.filter((s) => !s.onlyWhenNamed);
  const names = new Set<ServiceName>(only);
  for (const s of all) if (names.has(s.name)) for (const m of s.members ?? []) names.add(m.name);
  return all.filter((s) => names.has(s.name));
}

/** An opt-in service is listed while any process of it (or of its group) runs. */
function running(all: Service[], s: Service): boolean {
  const group = s.members ? s : all.find((g) => g.members?.includes(s));
  return (group?.members ?? [s]).some((m) => isAlive(readPid(m.pidFile)));
}

export async function status(cfg: Config): Promise<ServiceStatus[]> {
  const all = allServices(cfg);
  return Promise.all(all.filter((s) => !s.onlyWhenNamed || running(all, s)).map(statusOf));
}

async function waitHealthy(s: Service, timeoutSec: number, pid: number | undefined): Promise<void> {
  const deadline = Date.now() + timeoutSec * 1000;
  let last = '';
  while (Date.now() < deadline) {
    last = await s.health();
    if (last === 'ok') return;
    // A process that died will not become healthy: fail now, not at the deadline.
    if (pid !== undefined && !isAlive(readPid(s.pidFile))) {
      throw new InfraError('ERR_INFRA_START_FAILED', `${s.name} exited while starting (last check: ${last}). Log: ${s.logFile}\n--- last lines of ${s.logFile}\n${lastLines(s.logFile, 25)}`);
    }
    await delay(500);
  }
  throw new InfraError(
    'ERR_INFRA_START_TIMEOUT',
    `${s.name} did not become healthy within ${timeoutSec}s (last check: ${last}). Log: ${s.logFile}\n--- last lines of ${s.logFile}\n${lastLines(s.logFile, 25)}`,
  );
}

export interface UpResult {
  /** Services this call started (the test suite stops exactly these at the end). */
  started: ServiceName[];
  statuses: ServiceStatus[];
}

/**
 * Installs what is missing and starts what is not running, in dependency
 * order. Running-and-healthy services are left alone, so `up` twice is a
 * no-op and `up` after one crashed restarts that one only.
 */
export async function up(cfg: Config, progress: Progress = () => {}, only?: ServiceName[]): Promise<UpResult> {
  const services = selectServices(cfg, only);
  const started: ServiceName[] = [];
  const done = new Map<ServiceName, Promise<void>>();

  const bring = (s: Service): Promise<void> => {
    const existing = done.get(s.name);
    if (existing) return existing;
    const task = (async () => {
      const deps = services.filter((d) => s.dependsOn.includes(d.name));
      await s.install(progress);
      await Promise.all(deps.map(bring));
      const st = await statusOf(s);
      if (st.health === 'ok') {
        progress(`${s.name}: already up${st.owner === 'external' ? ' (not started by infra: left alone)' : ''}`);
        return;
      }
      if (!s.runsProcess) {
        if (!s.converge) throw new InfraError('ERR_INFRA_UNHEALTHY', `${s.name}: ${st.health}`);
        // A group whose members are up: form it (the Redis Cluster) or wait for it.
        const t0 = Date.now();
        await s.converge(progress);
        await waitHealthy(s, cfg.infra.startTimeoutSec, undefined);
        progress(`${s.name}: healthy after ${((Date.now() - t0) / 1000).toFixed(1)}s`);
        return;
      }
      if (st.owner === 'ours') {
        progress(`${s.name}: running (pid ${st.pid}), waiting until healthy`);
        return waitHealthy(s, cfg.infra.startTimeoutSec, st.pid);
      }
      if (s.port !== undefined && (await portOpen(s.port))) {
        throw new InfraError('ERR_INFRA_PORT_BUSY', `${s.name}: port ${s.port} is taken by a process that is not a healthy ${s.name} (${st.health}); free it or set another port`);
      }
      const cmd = await s.command();
      progress(`${s.name}: starting (log ${s.logFile})`);
      const rec = spawnDetached({ ...cmd, logFile: s.logFile, pidFile: s.pidFile });
      started.push(s.name);
      const t0 = Date.now();
      await waitHealthy(s, cfg.infra.startTimeoutSec, rec.pid);
      progress(`${s.name}: healthy on port ${s.port} after ${((Date.now() - t0) / 1000).toFixed(1)}s (pid ${rec.pid})`);
    })();
    done.set(s.name, task);
    return task;
  };

  const results = await Promise.allSettled(services.map(bring));
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length > 0) {
    const err = failed[0]!.reason as Error;
    if (failed.length > 1) err.message += `\n(and ${failed.length - 1} more failures: ${failed.slice(1).map((f) => (f.reason as Error).message.split('\n')[0]).join('; ')})`;
    throw err;
  }
  return { started, statuses: await Promise.all(services.map(statusOf)) };
}

/** Stops only processes this project started (pid files), dependents first. */
export async function down(cfg: Config, progress: Progress = () => {}, only?: ServiceName[]): Promise<void> {
  const services = (only ? selectServices(cfg, only) : allServices(cfg))
    .filter((s) => s.runsProcess)
    .reverse(); // registry before kafka: it journals into Kafka
  for (const s of services) {
    const rec = readPid(s.pidFile);
    if (!isAlive(rec)) {
      // With no names, opt-in services that never ran stay out of the report.
      if (only || !s.onlyWhenNamed) progress(`${s.name}: not running (nothing of ours to stop)`);
      continue;
    }
    const how = await stopProcess(rec);
    progress(`${s.name}: ${how} (pid ${rec.pid})`);
  }
}
