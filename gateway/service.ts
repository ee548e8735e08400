/**
 * The gateway as a service: builds the app on its shared clients, listens,
 * and on stop closes the app (sockets get 1001, presence is withdrawn) and
 * then the clients. Health is the readiness check's: Redis answers and Kafka
 * takes writes.
 */
import type { FastifyInstance } from 'fastify';
import type { Config } from '../core/config.ts';
import { Liveness, type Health, type Service } from '../core/service.ts';
import { buildGateway } from './app.ts';
import { createGatewayDeps, type ArchiveReader, type GatewayDeps } from './deps.ts';

export interface GatewayServiceOptions {
  cfg: Config;
  archive?: ArchiveReader;
  log?: (m: string) => void;
}

export class GatewayService implements Service {
  readonly name = 'gateway';
  private readonly live = new Liveness();
  readonly failed = this.live.failed;
  private app: FastifyInstance | undefined;
  private deps: GatewayDeps | undefined;
  private stopped = false;
  /** Where it listens, once started. */
  address = '';

  constructor(private readonly o: GatewayServiceOptions) {}

  async start(signal: AbortSignal): Promise<void> {
    const { cfg } = this.o;
    signal.addEventListener('abort', () => void this.stop(), { once: true });
    this.deps = await createGatewayDeps(cfg, { archive: this.o.archive });
    this.app = await buildGateway(this.deps, { logger: cfg.logLevel !== 'silent' });
    this.address = await this.app.listen({ host: cfg.gateway.host, port: cfg.gateway.port });
    this.live.set('ok', `listening on ${this.address}`);
    this.o.log?.(`${cfg.gateway.id} listening on ${this.address}${this.o.archive ? ' (replay and analytics on)' : ''}`);
  }

  health(): Health {
    return this.live.health;
  }

  /** The readiness checks (Redis, Kafka), for an operator's view of the root. */
  async check(): Promise<Record<string, string>> {
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
    await this.app?.close();
    await this.deps?.close();
    this.live.set('stopped');
  }
}
