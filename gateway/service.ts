/**
 * The gateway as a service: builds the app on its shared clients, listens,
 * and on stop flushes the reactions it holds (so each is answered), closes
 * the app (sockets get 1001, presence is withdrawn) and then the clients.
 * Health is the readiness check's: Redis answers and Kafka takes writes.
 *
 * With GATEWAY_WORKERS > 1 (and a `worker` command from the composition
 * root) this process only supervises N worker processes on the same port
 * (workers.ts): ready when every worker listens, `degraded` while one is
 * being restarted, `down` when one keeps dying.
 */
import type { FastifyInstance } from 'fastify';
import type { Config } from '../core/config.ts';
import { Liveness, type Health, type Service } from '../core/service.ts';
import { buildGateway } from './app.ts';
import { createGatewayDeps, type ArchiveReader, type GatewayDeps } from './deps.ts';
import { raiseOpenFileLimit } from './fdlimit.ts';
import { GatewayWorkers } from './workers.ts';

export interface GatewayServiceOptions {
  cfg: Config;
  archive?: ArchiveReader;
  log?: (m: string) => void;
  /** What a worker process runs when GATEWAY_WORKERS > 1 (the root's CLI with `gateway`). */
  worker?: { exec: string; args: string[] };
}

export class GatewayService implements Service {
  readonly name = 'gateway';
  private readonly live = new Liveness();
  readonly failed = this.live.failed;
  private app: FastifyInstance | undefined;
  private deps: GatewayDeps | undefined;
  private stopped = false;
  private workers: GatewayWorkers | undefined;
  /** Where it listens, once started. */
  address = '';

  constructor(private readonly o: GatewayServiceOptions) {
    const { cfg, worker } = o;
    if (cfg.gateway.workers > 1 && worker) {
      this.workers = new GatewayWorkers({ count: cfg.gateway.workers, baseId: cfg.gateway.id, exec: worker.exec, args: worker.args, log: (m) => o.log?.(m) });
      void this.workers.failed.then((err) => this.live.died(err));
    }
  }

  async start(signal: AbortSignal): Promise<void> {
    const { cfg } = this.o;
    signal.addEventListener('abort', () => void this.stop(), { once: true });
    if (this.workers) {
      await this.workers.start();
      this.address = `http://${cfg.gateway.host}:${cfg.gateway.port}`;
      this.o.log?.(`${cfg.gateway.id}: ${cfg.gateway.workers} workers listening on ${this.address}`);
      return;
    }
    // Every socket is a descriptor: up to the hard limit, as Go does by itself (fdlimit.ts).
    const fd = raiseOpenFileLimit();
    if (fd.error) this.o.log?.(`${cfg.gateway.id}: ${fd.error}`);
    else if (fd.before && fd.after && fd.after.soft !== fd.before.soft) this.o.log?.(`${cfg.gateway.id}: open-file limit raised from ${fd.before.soft} to ${fd.after.soft}`);
    this.deps = await createGatewayDeps(cfg, { archive: this.o.archive });
    this.app = await buildGateway(this.deps, { logger: cfg.logLevel !== 'silent' });
    this.address = await this.app.listen({ host: cfg.gateway.host, port: cfg.gateway.port });
    this.live.set('ok', `listening on ${this.address}`);
    this.o.log?.(`${cfg.gateway.id} listening on ${this.address}${this.o.archive ? ' (replay and analytics on)' : ''}`);
  }

  health(): Health {
    if (this.workers && this.live.health.status !== 'down') return this.workers.health();
    return this.live.health;
  }

  /** The readiness checks (Redis, Kafka), for an operator's view of the root. */
  async check(): Promise<Record<string, string>> {
    if (this.workers) return { gateway: this.workers.health().detail ?? this.workers.health().status };
    if (!this.deps) return { gateway: 'not started' };
    const checks: Record<string, string> = {};
    await Promise.all([
      this.deps.redis.ping().then(() => (checks.redis = 'ok'), (e: Error) => (checks.redis = e.message)),
      this.deps.log.partitionCount(this.deps.topics.roomEvents).then(() => (checks.kafka = 'ok'), (e: Error) => (checks.kafka = e.message)),
    ]);
    this.live.set(Object.values(checks).every((v) => v === 'ok') ? 'ok' : 'degraded', `listening on ${this.address}`);
    return checks;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.workers) {
      await this.workers.stop();
      this.live.set('stopped');
      return;
    }
    // Reactions held in memory are flushed and answered while their sockets are still open.
    await this.app?.ingest.drain();
    await this.app?.close();
    await this.deps?.close();
    this.live.set('stopped');
  }
}
