/**
 * Private server instances for the chaos run: a Kafka broker (or a three-node
 * KRaft cluster), an Apicurio registry journaling into it, and a Redis with
 * its AOF, each on its own ports and under its own data folder — started the
 * way `npm run infra -- up` starts the shared ones (infra/stack.ts), so what is
 * killed here is the real server, and the suite's shared servers on the
 * default ports are never touched.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../core/config.ts';
import { isAlive, readPid } from '../infra/proc.ts';
import { allServices, type ServiceName } from '../infra/services.ts';
import { down, up } from '../infra/stack.ts';

export interface PrivateServersOptions {
  /** 1: one broker (default); 3: a KRaft cluster of three (KAFKA_BROKERS=3). */
  brokers?: number;
  /** Start the registry (journaling into this Kafka). */
  registry?: boolean;
  /** Start a Redis (AOF on, appendfsync everysec: the project's config). */
  redis?: boolean;
  /** Use these servers' registry and Redis (a cluster beside the main private servers). */
  share?: PrivateServers;
  log(m: string): void;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A base port with `span` free ports above it, away from the defaults and the suite's random ranges. */
async function freeBase(span: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 40000 + Math.floor(Math.random() * 2000) * 10;
    const checks = await Promise.all(Array.from({ length: span }, (_, i) => portFree(base + i)));
    if (checks.every(Boolean)) return base;
  }
  throw new Error('no free port range for the private servers');
}

export class PrivateServers {
  private constructor(
    readonly dir: string,
    /** The environment naming these servers (for loadConfig and for the world's processes). */
    readonly env: Record<string, string>,
    readonly cfg: Config,
    readonly names: ServiceName[],
    private readonly log: (m: string) => void,
  ) {}

  static async start(o: PrivateServersOptions): Promise<PrivateServers> {
    const brokers = o.brokers ?? 1;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `danmaku-chaos-${brokers}b-`));
    const base = await freeBase(2 * brokers + 4);
    const env: Record<string, string> = {
      DANMAKU_DATA_DIR: dir,
      KAFKA_PORT: String(base),
      KAFKA_CONTROLLER_PORT: String(base + 1),
      SCHEMA_REGISTRY_PORT: String(base + 2 * brokers),
      REDIS_PORT: String(base + 2 * brokers + 1),
    };
    if (o.share) {
      env.SCHEMA_REGISTRY_PORT = o.share.env.SCHEMA_REGISTRY_PORT!;
      env.REDIS_PORT = o.share.env.REDIS_PORT!;
    }
    if (brokers > 1) env.KAFKA_BROKERS = String(brokers);
    else env.KAFKA_BROKERS = `127.0.0.1:${base}`;
    const cfg = loadConfig({ ...process.env, ...env });
    const names: ServiceName[] = ['kafka'];
    if (o.registry) names.push('registry');
    if (o.redis) names.push('redis');
    const s = new PrivateServers(dir, env, cfg, names, o.log);
    const t0 = Date.now();
    o.log(`private servers: ${names.join(', ')} on ports ${base}..${base + 2 * brokers + 1} (data ${dir})`);
    await s.up(names);
    o.log(`private servers up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return s;
  }

  /** What a world's processes need to reach these servers (the Kafka bootstrap list, the registry, Redis). */
  get worldEnv(): Record<string, string> {
    // The registry and Redis are these servers' own, or the ones they share.
    const out: Record<string, string> = { KAFKA_BROKERS: this.cfg.kafka.brokers, SCHEMA_REGISTRY_URL: this.cfg.registry.url, REDIS_URL: this.cfg.redis.url };
    // Topic settings follow the local cluster's size (three replicas, two in sync, with three brokers).
    out.TOPIC_REPLICATION_FACTOR = String(this.cfg.topics.replicationFactor);
    out.TOPIC_MIN_INSYNC_REPLICAS = String(this.cfg.topics.minInsyncReplicas);
    return out;
  }

  /** Starts (or restarts) the named services; running and healthy ones are left alone. */
  async up(names: ServiceName[] = this.names): Promise<void> {
    await up(this.cfg, (m) => this.log(`  [infra] ${m}`), names);
  }

  pidOf(name: ServiceName): number | undefined {
    const s = allServices(this.cfg).find((x) => x.name === name);
    const rec = s ? readPid(s.pidFile) : undefined;
    return isAlive(rec) ? rec.pid : undefined;
  }

  /** kill -9, then wait until the process is gone. */
  async kill9(name: ServiceName): Promise<number> {
    const s = allServices(this.cfg).find((x) => x.name === name);
    const rec = s ? readPid(s.pidFile) : undefined;
    if (!s || !isAlive(rec)) throw new Error(`${name} is not running`);
    const pid = rec.pid;
    process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 30_000;
    while (isAlive(rec)) {
      if (Date.now() > deadline) throw new Error(`${name} (pid ${pid}) did not die`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return pid;
  }

  /** A client of the private Redis (for FLUSHALL and for reading projections). */
  redis(): Redis {
    const r = new Redis(this.cfg.redis.url, { lazyConnect: false, maxRetriesPerRequest: 3, enableOfflineQueue: true });
    r.on('error', () => {});
    return r;
  }

  async stop(): Promise<void> {
    await down(this.cfg, () => {}).catch((err: unknown) => this.log(`private servers: down failed: ${(err as Error).message}`));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
