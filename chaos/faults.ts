/**
 * The faults, one at a time: how each is injected, when the clock of
 * recovery starts, and how the part comes back.
 *
 * The clock starts at the injection for faults the system should ride
 * through (a processor or gateway killed or frozen, the registry or the
 * archiver killed, Redis wiped, one broker of three killed), and at the
 * restart for outages nothing can write through (the single broker, Redis):
 * there it measures how fast the system picks up once the server is back.
 */
import type { Redis } from 'ioredis';
import type { ServiceName } from '../infra/services.ts';
import type { Load } from './load.ts';
import type { ChaosWorld } from './world.ts';

/** The servers a fault acts on (chaos/servers.ts: private instances). */
export interface Servers {
  kill9(name: ServiceName): Promise<number>;
  up(names: ServiceName[]): Promise<void>;
  redis(): Redis;
}

export const FAULTS = ['processor-kill', 'processor-stop', 'gateway-kill', 'redis-kill', 'redis-wipe', 'broker-kill', 'registry-kill', 'archiver-kill', 'broker3-kill'] as const;
export type FaultName = (typeof FAULTS)[number];

export interface FaultContext {
  world: ChaosWorld;
  servers: Servers;
  load: Load;
  /** How long a held fault (a frozen processor, a server down) lasts. */
  holdMs: number;
  rep: number;
  log(m: string): void;
}

export interface Injected {
  /** What was done, for the progress line and the chart. */
  what: string;
  /** Run once recovery was measured (restart the killed part). */
  after?: () => Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const DESCRIPTIONS: Record<FaultName, string> = {
  'processor-kill': 'kill -9 one of two processor processes (the other takes its partitions); restarted after',
  'processor-stop': 'SIGSTOP one of two processors for the hold (the other takes over after the session timeout), then SIGCONT: the zombie must not write behind its successor',
  'gateway-kill': "kill -9 one of two gateways: its writers and viewers reconnect to the other and resume; restarted after on the same port",
  'redis-kill': 'kill -9 the private Redis, down for the hold, restarted from its AOF',
  'redis-wipe': 'FLUSHALL on the private Redis: projections must come back from the log without an operator, clients resync by epoch',
  'broker-kill': 'kill -9 the private single Kafka broker, down for the hold (writes get 503 + Retry-After), restarted',
  'registry-kill': 'kill -9 the private schema registry, down for the hold, restarted',
  'archiver-kill': 'kill -9 the archiver under load (in the middle of a batch), restarted',
  'broker3-kill': 'kill -9 one broker of a private three-node KRaft cluster (three replicas, min.insync.replicas=2), down for the hold, restarted',
};

/** Held faults last the hold; the others are instants. */
export const HELD: ReadonlySet<FaultName> = new Set(['processor-stop', 'redis-kill', 'broker-kill', 'registry-kill', 'broker3-kill']);

export async function inject(name: FaultName, c: FaultContext): Promise<Injected> {
  const { world, servers, load, holdMs, rep } = c;
  switch (name) {
    case 'processor-kill': {
      const i = rep % world.processors.length;
      const pid = world.proc('processor', i).pid;
      await world.proc('processor', i).kill9();
      load.mark();
      return { what: `kill -9 processor ${i} (pid ${pid})`, after: () => world.restart('processor', i) };
    }
    case 'processor-stop': {
      const i = rep % world.processors.length;
      const p = world.proc('processor', i);
      process.kill(p.pid, 'SIGSTOP');
      load.mark();
      c.log(`  processor ${i} (pid ${p.pid}) stopped for ${(holdMs / 1000).toFixed(0)} s`);
      await sleep(holdMs);
      process.kill(p.pid, 'SIGCONT');
      c.log(`  processor ${i} continued`);
      return { what: `SIGSTOP processor ${i} for ${(holdMs / 1000).toFixed(0)} s, SIGCONT` };
    }
    case 'gateway-kill': {
      const i = rep % world.gateways.length;
      const pid = world.proc('gateway', i).pid;
      await world.proc('gateway', i).kill9();
      load.mark();
      return { what: `kill -9 gateway ${i} (pid ${pid})`, after: () => world.restart('gateway', i) };
    }
    case 'redis-kill':
      return serverDown(c, 'redis', 'restart');
    case 'redis-wipe': {
      const r = servers.redis();
      try {
        await r.flushall();
      } finally {
        r.disconnect();
      }
      // Recovered once every viewer was resynced onto the rebuilt projections and then shown a new write.
      load.mark(Date.now(), true);
      return { what: 'FLUSHALL' };
    }
    case 'broker-kill':
      return serverDown(c, 'kafka', 'restart');
    case 'registry-kill':
      return serverDown(c, 'registry', 'kill');
    case 'archiver-kill': {
      const pid = world.proc('archiver', 0).pid;
      await world.proc('archiver', 0).kill9();
      load.mark();
      return { what: `kill -9 archiver (pid ${pid})`, after: () => world.restart('archiver', 0) };
    }
    case 'broker3-kill':
      return serverDown(c, `kafka-${(rep % 3) + 1}` as ServiceName, 'kill');
  }
}

/** kill -9 a server, keep it down for the hold, start it again (from its data folder). */
async function serverDown(c: FaultContext, name: ServiceName, clock: 'kill' | 'restart'): Promise<Injected> {
  const pid = await c.servers.kill9(name);
  if (clock === 'kill') c.load.mark();
  c.log(`  ${name} (pid ${pid}) killed, down for ${(c.holdMs / 1000).toFixed(0)} s`);
  await sleep(c.holdMs);
  const t0 = Date.now();
  await c.servers.up([name]);
  c.log(`  ${name} back after ${((Date.now() - t0) / 1000).toFixed(1)} s of start-up`);
  if (clock === 'restart') c.load.mark();
  return { what: `kill -9 ${name}, ${(c.holdMs / 1000).toFixed(0)} s down, restarted` };
}
