/**
 * The four servers the product depends on, installed from the registries this
 * machine reaches and run as local background processes:
 *   kafka     Apache Kafka (KRaft, one combined broker+controller) from Maven Central jars
 *   registry  Apicurio Registry, kafkasql storage (schemas journaled in Kafka, so ids survive restarts)
 *   redis     Debian's redis-server with the project's own config
 *   clickhouse embedded chdb (nothing to run) or the server at CLICKHOUSE_URL
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { Redis } from 'ioredis';
import type { Config } from '../core/config.ts';
import { REPO_ROOT } from '../core/config.ts';
import { InfraError } from '../core/errors.ts';
import { run, which } from './proc.ts';

export type ServiceName = 'kafka' | 'registry' | 'redis' | 'clickhouse';

export interface Service {
  name: ServiceName;
  /** Port shown by `status`; undefined for the embedded engine. */
  port?: number;
  /** False for in-process ClickHouse: nothing to spawn or stop. */
  runsProcess: boolean;
  dependsOn: ServiceName[];
  logFile: string;
  pidFile: string;
  /** Installs what is missing (idempotent, cached outside the clone). */
  install(progress: (msg: string) => void): Promise<void>;
  /** Prepares state and returns the command to spawn. */
  command(): Promise<{ cmd: string; args: string[]; cwd?: string; marker: string }>;
  /** Resolves 'ok' or the reason it is not healthy (never throws). */
  health(): Promise<string>;
}

export interface Paths {
  data: string;
  logs: string;
  run: string;
  cache: string;
}

export function pathsOf(cfg: Config): Paths {
  return {
    data: cfg.dataDir,
    logs: path.join(cfg.dataDir, 'logs'),
    run: path.join(cfg.dataDir, 'run'),
    cache: cfg.cacheDir,
  };
}

function requireTool(bin: string, what: string, install: string): string {
  const found = which(bin);
  if (!found) throw new InfraError('ERR_INFRA_TOOL_MISSING', `${what} needs \`${bin}\`, which is not on PATH. Install it: ${install}`);
  return found;
}

const markerFile = (dir: string) => path.join(dir, '.complete');

/** Downloads into a temp folder then renames, so an interrupted install never looks complete. */
async function installOnce(dir: string, fill: (tmp: string) => Promise<void>): Promise<void> {
  if (fs.existsSync(markerFile(dir))) return;
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  await fill(tmp);
  fs.writeFileSync(markerFile(tmp), new Date().toISOString());
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms).unref())]);
}

export function kafkaService(cfg: Config, p: Paths): Service {
  const home = path.join(p.cache, `kafka-${cfg.kafka.version}`);
  const dataDir = path.join(p.data, 'kafka');
  const propsFile = path.join(dataDir, 'server.properties');
  return {
    name: 'kafka',
    port: cfg.kafka.port,
    runsProcess: true,
    dependsOn: [],
    logFile: path.join(p.logs, 'kafka.log'),
    pidFile: path.join(p.run, 'kafka.pid'),
    async install(progress) {
      requireTool(cfg.infra.java, 'Kafka', 'apt-get install -y openjdk-17-jre-headless');
      const mvn = requireTool(cfg.infra.mvn, 'Kafka', 'apt-get install -y maven');
      if (fs.existsSync(markerFile(home))) return;
      progress(`fetching Apache Kafka ${cfg.kafka.version} jars from Maven Central into ${home}`);
      await installOnce(home, async (tmp) => {
        await run(mvn, [
          '-B', '-q', '-f', path.join(REPO_ROOT, 'infra/kafka/pom.xml'),
          `-Dkafka.version=${cfg.kafka.version}`,
          'dependency:copy-dependencies', `-DoutputDirectory=${path.join(tmp, 'libs')}`,
        ]);
      });
    },
    async command() {
      const logDirs = path.join(dataDir, 'log');
      fs.mkdirSync(logDirs, { recursive: true });
      // Written on every start so port changes take effect; the data stays.
      fs.writeFileSync(
        propsFile,
        [
          'process.roles=broker,controller',
          'node.id=1',
          `controller.quorum.voters=1@127.0.0.1:${cfg.kafka.controllerPort}`,
          `listeners=PLAINTEXT://127.0.0.1:${cfg.kafka.port},CONTROLLER://127.0.0.1:${cfg.kafka.controllerPort}`,
          `advertised.listeners=PLAINTEXT://127.0.0.1:${cfg.kafka.port}`,
          'controller.listener.names=CONTROLLER',
          'inter.broker.listener.name=PLAINTEXT',
          'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
          `log.dirs=${logDirs}`,
          // One node: every internal topic has one replica.
          'offsets.topic.replication.factor=1',
          'offsets.topic.num.partitions=10',
          'transaction.state.log.replication.factor=1',
          'transaction.state.log.min.isr=1',
          'share.coordinator.state.topic.replication.factor=1',
          'default.replication.factor=1',
          'min.insync.replicas=1',
          // Tests and demos form groups constantly; the 3 s default delay would slow each one.
          'group.initial.rebalance.delay.ms=0',
          // Topics are declared as code (topics/); a typo must not create one silently.
          'auto.create.topics.enable=false',
          'num.network.threads=2',
          'num.io.threads=4',
          'num.partitions=1',
          'log.retention.hours=-1',
          'log.segment.bytes=268435456',
          '',
        ].join('\n'),
      );
      const java = requireTool(cfg.infra.java, 'Kafka', 'apt-get install -y openjdk-17-jre-headless');
      const classpath = path.join(home, 'libs', '*');
      const jvm = [
        `-Xms${cfg.kafka.heap}`, `-Xmx${cfg.kafka.heap}`,
        '-XX:+UseG1GC', '-XX:MaxGCPauseMillis=20', '-XX:+ExitOnOutOfMemoryError',
        '-Djava.awt.headless=true',
        `-Dlog4j.configuration=file:${path.join(REPO_ROOT, 'infra/kafka/log4j.properties')}`,
        `-Dkafka.logs.dir=${p.logs}`,
        '-cp', classpath,
      ];
      // Format the KRaft storage exactly once; a formatted dir keeps its cluster id.
      if (!fs.existsSync(path.join(logDirs, 'meta.properties'))) {
        const clusterId = randomBytes(16).toString('base64url');
        await run(java, [...jvm, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', propsFile, '--ignore-formatted'], {
          logFile: path.join(p.logs, 'kafka.log'),
        });
      }
      return { cmd: java, args: [...jvm, 'kafka.Kafka', propsFile], marker: propsFile };
    },
    async health() {
      const kafka = new Kafka({ brokers: [`127.0.0.1:${cfg.kafka.port}`], clientId: 'infra-health', logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 1500 });
      const admin = kafka.admin();
      try {
        await withTimeout(admin.connect(), 3000, 'connect');
        const c = await withTimeout(admin.describeCluster(), 3000, 'describeCluster');
        return c.brokers.length > 0 ? 'ok' : 'no brokers';
      } catch (err) {
        return (err as Error).message;
      } finally {
        await admin.disconnect().catch(() => {});
      }
    },
  };
}

export function registryService(cfg: Config, p: Paths): Service {
  const home = path.join(p.cache, `apicurio-registry-${cfg.registry.version}`);
  const base = `http://127.0.0.1:${cfg.registry.port}`;
  return {
    name: 'registry',
    port: cfg.registry.port,
    runsProcess: true,
    dependsOn: ['kafka'],
    logFile: path.join(p.logs, 'registry.log'),
    pidFile: path.join(p.run, 'registry.pid'),
    async install(progress) {
      requireTool(cfg.infra.java, 'The schema registry', 'apt-get install -y openjdk-17-jre-headless');
      const mvn = requireTool(cfg.infra.mvn, 'The schema registry', 'apt-get install -y maven');
      if (fs.existsSync(markerFile(home))) return;
      progress(`fetching Apicurio Registry ${cfg.registry.version} from Maven Central into ${home}`);
      await installOnce(home, async (tmp) => {
        const dl = path.join(tmp, 'dl');
        // -U: Maven caches a "not found" for a day; a retried install should ask again.
        await run(mvn, [
          '-B', '-q', '-U', '-f', path.join(REPO_ROOT, 'infra/kafka/pom.xml'),
          'dependency:copy', `-Dartifact=io.apicurio:apicurio-registry-app:${cfg.registry.version}:tar.gz:all`, `-DoutputDirectory=${dl}`,
        ]);
        const tarball = fs.readdirSync(dl).find((f) => f.endsWith('.tar.gz'));
        if (!tarball) throw new InfraError('ERR_INFRA_INSTALL', `no Apicurio tarball downloaded into ${dl}`);
        await run('tar', ['xzf', path.join(dl, tarball), '-C', tmp]);
        fs.rmSync(dl, { recursive: true, force: true });
      });
    },
    async command() {
      const java = requireTool(cfg.infra.java, 'The schema registry', 'apt-get install -y openjdk-17-jre-headless');
      const jar = fs.readdirSync(home).find((f) => f.endsWith('-runner.jar'));
      if (!jar) throw new InfraError('ERR_INFRA_INSTALL', `no *-runner.jar in ${home}; remove that folder and run \`infra up\` again`);
      const jarPath = path.join(home, jar);
      return {
        cmd: java,
        args: [
          `-Xmx${cfg.registry.heap}`, '-XX:+UseSerialGC', '-XX:+ExitOnOutOfMemoryError', '-Djava.awt.headless=true',
          `-Dquarkus.http.port=${cfg.registry.port}`,
          '-Dquarkus.http.host=127.0.0.1',
          '-Dapicurio.storage.kind=kafkasql',
          `-Dapicurio.kafkasql.bootstrap.servers=127.0.0.1:${cfg.kafka.port}`,
          `-Dapicurio.kafkasql.topic=${cfg.registry.journalTopic}`,
          '-Dquarkus.log.console.color=false',
          '-jar', jarPath,
        ],
        cwd: home,
        marker: jarPath,
      };
    },
    async health() {
      try {
        const ready = await fetch(`${base}/health/ready`, { signal: AbortSignal.timeout(3000) });
        if (!ready.ok) return `health/ready answered ${ready.status}`;
        const subjects = await fetch(`${base}/apis/ccompat/v7/subjects`, { signal: AbortSignal.timeout(3000) });
        if (!subjects.ok) return `ccompat subjects answered ${subjects.status}`;
        return 'ok';
      } catch (err) {
        return (err as Error).message;
      }
    },
  };
}

export function redisService(cfg: Config, p: Paths): Service {
  const dir = path.join(p.data, 'redis');
  const conf = path.join(dir, 'redis.conf');
  return {
    name: 'redis',
    port: cfg.redis.port,
    runsProcess: true,
    dependsOn: [],
    logFile: path.join(p.logs, 'redis.log'),
    pidFile: path.join(p.run, 'redis.pid'),
    async install(progress) {
      if (which(cfg.infra.redisServer)) return;
      const apt = which('apt-get');
      if (!apt) throw new InfraError('ERR_INFRA_TOOL_MISSING', `\`${cfg.infra.redisServer}\` is missing and there is no apt-get to install it. Install Redis 7 (Debian: apt-get install -y redis-server).`);
      if (process.getuid?.() !== 0) throw new InfraError('ERR_INFRA_TOOL_MISSING', '`redis-server` is missing; installing it needs root: sudo apt-get install -y redis-server');
      progress('installing redis-server with apt-get');
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      await run(apt, ['update', '-q'], { env });
      await run(apt, ['install', '-y', '-q', 'redis-server'], { env });
    },
    async command() {
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(
        conf,
        [
          `port ${cfg.redis.port}`,
          'bind 127.0.0.1',
          'protected-mode yes',
          `dir ${dir}`,
          'daemonize no',
          'logfile ""',
          // Projections are rebuildable from Kafka, but an fsync'd AOF makes a restart cheap.
          'appendonly yes',
          'appendfsync everysec',
          'save ""',
          'maxmemory-policy noeviction',
          'tcp-keepalive 60',
          '',
        ].join('\n'),
      );
            // redis-server rewrites its process title, so the config path does not
      // stay in /proc/<pid>/cmdline; the program name (with the pid) does.
      return { cmd: which(cfg.infra.redisServer)!, args: [conf], marker: 'redis-server' };
    },
    async health() {
      const r = new Redis({ port: cfg.redis.port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1500, commandTimeout: 1500 });
      r.on('error', () => {});
      try {
        await r.connect();
        const pong = await r.ping();
        return pong === 'PONG' ? 'ok' : `ping answered ${pong}`;
      } catch (err) {
        return (err as Error).message;
      } finally {
        r.disconnect();
      }
    },
  };
}

export function clickhouseService(cfg: Config, p: Paths): Service {
  return {
    name: 'clickhouse',
    runsProcess: false,
    dependsOn: [],
    logFile: path.join(p.logs, 'clickhouse.log'),
    pidFile: path.join(p.run, 'clickhouse.pid'),
    async install() {
      // Embedded: the engine ships inside the npm package (installed by npm ci).
    },
    async command() {
      throw new InfraError('ERR_INFRA_NOT_A_PROCESS', 'ClickHouse is embedded (chdb) or external; there is nothing to start');
    },
    async health() {
      if (cfg.clickhouse.url) {
        try {
          const res = await fetch(new URL('/ping', cfg.clickhouse.url), { signal: AbortSignal.timeout(3000) });
          return res.ok ? 'ok' : `ping answered ${res.status}`;
        } catch (err) {
          return (err as Error).message;
        }
      }
      try {
        // A stateless in-memory query proves the engine loads without opening
        // the data directory, which another process (the archiver) may hold.
        const chdb = (await import('chdb')) as unknown as { query(sql: string, format?: string): string };
        const v = chdb.query('SELECT version()', 'CSV').trim().replace(/"/g, '');
        return v ? 'ok' : 'no version';
      } catch (err) {
        return (err as Error).message;
      }
    },
  };
}

export function allServices(cfg: Config): Service[] {
  const p = pathsOf(cfg);
  return [kafkaService(cfg, p), redisService(cfg, p), registryService(cfg, p), clickhouseService(cfg, p)];
}
