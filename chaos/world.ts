/**
 * The chaos run's world: the product's own processes, started through the
 * composition root (services/spawn.ts) on the private servers, with a private
 * topic, key prefix and groups (services/world.ts): two processor processes
 * (so one can take over when the other is killed or frozen), two gateways on
 * fixed ports (so a killed one comes back where its clients look for it) and
 * the archiver on a private embedded ClickHouse folder.
 */
import path from 'node:path';
import { createSigner } from 'fast-jwt';
import type { Config } from '../core/config.ts';
import { prepareLog, worldEnv, worldId } from '../services/world.ts';
import { ServiceProcess } from '../services/spawn.ts';
import { freePort } from '../services/world.ts';

export type Part = 'processor' | 'gateway' | 'archiver';

export interface ChaosWorldOptions {
  prefix: string;
  /** Environment of the servers (PrivateServers.worldEnv). */
  servers: Record<string, string>;
  /** Folder of the archiver's embedded ClickHouse. */
  clickhouseDir: string;
  partitions?: number;
  processors?: number;
  gateways?: number;
  archiver?: boolean;
  /** Echo the children's output (stderr, prefixed with the part): for a post-mortem of a failed fault. */
  verbose?: boolean;
  log(m: string): void;
}

export class ChaosWorld {
  readonly id: string;
  readonly env: Record<string, string>;
  cfg!: Config;
  readonly processors: ServiceProcess[] = [];
  readonly gateways: ServiceProcess[] = [];
  readonly ports: number[] = [];
  archiver: ServiceProcess | undefined;
  /** Lines of processes that exited (kept for a post-mortem). */
  readonly graveyard: string[] = [];

  constructor(private readonly o: ChaosWorldOptions) {
    this.id = worldId(o.prefix);
    this.env = worldEnv(this.id, o.partitions ?? 3, {
      ...o.servers,
      // The processors' moderation would delete and mute the load's comments
      // (floods, repeats): the load is checked against the log, so it stays out.
      MODERATION_ENABLED: 'false',
      // The load's writers are few users writing a lot: budgets raised, not switched off.
      LIMIT_COMMENTS: '100000',
      LIMIT_COMMENTS_WINDOW_SEC: '1',
      LIMIT_REACTIONS: '100000',
      LIMIT_REACTIONS_WINDOW_SEC: '1',
      LIMIT_READS: '1000000',
      // The feed keeps every comment of a phase's room, so it can be checked whole.
      FEED_MAX_ITEMS: '30000',
      // Slow readers are not what this measures: the load's viewers share a busy process, so they are never degraded.
      PUSH_SAMPLED_ABOVE_BYTES: String(256 << 20),
      PUSH_TALLIES_ONLY_ABOVE_BYTES: String(512 << 20),
      PUSH_CLOSE_ABOVE_BYTES: String(1 << 30),
      CLICKHOUSE_DATA_DIR: o.clickhouseDir,
      ARCHIVER_BATCH_MS: '200',
      LOG_LEVEL: 'warn',
    });
  }

  get urls(): string[] {
    return this.ports.map((p) => `http://127.0.0.1:${p}`);
  }

  get topic(): string {
    return this.env.TOPIC_ROOM_EVENTS!;
  }

  token(user: string): string {
    return createSigner({ key: this.env.JWT_SECRET!, algorithm: 'HS256', expiresIn: 6 * 3600_000 })({ sub: user });
  }

  async start(): Promise<void> {
    this.cfg = await prepareLog(this.env);
    const n = this.o.processors ?? 2;
    const g = this.o.gateways ?? 2;
    for (let i = 0; i < g; i++) this.ports.push(await freePort());
    // All at once: most of a start is waiting (group joins, connections), not CPU.
    const [processors, gateways, archiver] = await Promise.all([
      Promise.all(Array.from({ length: n }, (_, i) => this.spawn('processor', i))),
      Promise.all(Array.from({ length: g }, (_, i) => this.spawn('gateway', i))),
      this.o.archiver !== false ? this.spawn('archiver', 0) : Promise.resolve(undefined),
    ]);
    this.processors.push(...processors);
    this.gateways.push(...gateways);
    this.archiver = archiver;
  }

  private async spawn(part: Part, i: number): Promise<ServiceProcess> {
    const names = part === 'processor' ? (['processors'] as const) : part === 'gateway' ? (['gateway'] as const) : (['archiver'] as const);
    const env = part === 'gateway' ? { ...this.env, GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: String(this.ports[i]), GATEWAY_ID: `gw-${i}` } : this.env;
    const p = new ServiceProcess([...names], { env, readyTimeoutMs: 180_000, ...(this.o.verbose ? { echo: `[${part} ${i}] ` } : {}) });
    await p.start();
    return p;
  }

  proc(part: Part, i: number): ServiceProcess {
    const p = part === 'processor' ? this.processors[i] : part === 'gateway' ? this.gateways[i] : this.archiver;
    if (!p) throw new Error(`no ${part} ${i}`);
    return p;
  }

  /** Starts the part again (after a kill), in the same place (the same port for a gateway). */
  async restart(part: Part, i: number): Promise<void> {
    const old = this.proc(part, i);
    if (old.exitCode === undefined) await old.stop(10_000);
    this.graveyard.push(...old.output.slice(-50).map((l) => `[${part} ${i}] ${l}`));
    const p = await this.spawn(part, i);
    if (part === 'processor') this.processors[i] = p;
    else if (part === 'gateway') this.gateways[i] = p;
    else this.archiver = p;
  }

  /** Parts whose process has exited (and was not restarted). */
  dead(): string[] {
    const out: string[] = [];
    this.processors.forEach((p, i) => p.exitCode !== undefined && out.push(`processor ${i} (${p.exitCode})`));
    this.gateways.forEach((p, i) => p.exitCode !== undefined && out.push(`gateway ${i} (${p.exitCode})`));
    if (this.archiver && this.archiver.exitCode !== undefined) out.push(`archiver (${this.archiver.exitCode})`);
    return out;
  }

  /** Restarts whatever process of the world is not running (between phases, after a failed one). */
  async heal(): Promise<string[]> {
    const restarted: string[] = [];
    const parts: [Part, ServiceProcess[]][] = [['processor', this.processors], ['gateway', this.gateways], ['archiver', this.archiver ? [this.archiver] : []]];
    for (const [part, list] of parts) {
      for (let i = 0; i < list.length; i++) {
        if (list[i]!.exitCode === undefined) continue;
        this.o.log(`${part} ${i} had exited (${list[i]!.exitCode}); its last lines:\n    ${list[i]!.output.slice(-15).join('\n    ')}`);
        await this.restart(part, i);
        restarted.push(`${part} ${i}`);
      }
    }
    return restarted;
  }

  /** Every process of the world, for SIGCONT safety on the way out. */
  all(): ServiceProcess[] {
    return [...this.processors, ...this.gateways, ...(this.archiver ? [this.archiver] : [])];
  }

  async stopArchiver(): Promise<void> {
    await this.archiver?.stop(60_000);
  }

  async stop(): Promise<void> {
    for (const p of this.all()) if (p.child?.pid && p.exitCode === undefined) p.child.kill('SIGCONT');
    await Promise.all(this.all().map((p) => p.stop(15_000)));
  }

  static clickhouseDir(serversDir: string, name: string): string {
    return path.join(serversDir, `chdb-${name}`);
  }
}
