/**
 * The four servers the product depends on, installed from the registries this
 * machine reaches and run as local background processes:
 *   kafka     Apache Kafka (KRaft, one combined broker+controller) from Maven Central jars
 *   registry  Apicurio Registry, kafkasql storage (schemas journaled in Kafka, so ids survive restarts)
 *   redis     Debian's redis-server with the project's own config
 *   redis-cluster  three of Debian's redis-server in cluster mode (one service per
 *             node, `redis-cluster-<port>`, plus the group that forms the cluster)
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

export type ServiceName = 'kafka' | `kafka-${number}` | 'registry' | 'redis' | 'clickhouse' | 'redis-cluster' | `redis-cluster-${number}`;

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
  /**
   * True: a plain `up` leaves it alone (it starts when named) and `status`
   * lists it only while one of its processes runs. Default false.
   */
  onlyWhenNamed?: boolean;
  /** A group made of other services (the cluster of its nodes): naming it names them too. */
  members?: Service[];
  /** For a service with no process of its own: brings it to health once its dependencies are up. */
  converge?(progress: (msg: string) => void): Promise<void>;
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

/** Broker and controller ports of local node `i` (0-based): KAFKA_PORT + 2i and KAFKA_CONTROLLER_PORT + 2i. */
export function kafkaNodePorts(cfg: Config, i: number): { broker: number; controller: number } {
  return { broker: cfg.kafka.port + 2 * i, controller: cfg.kafka.controllerPort + 2 * i };
}

async function installKafka(cfg: Config, home: string, progress: (m: string) => void): Promise<void> {
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
}

/** Is the cluster at these brokers up, with `expected` brokers registered? 'ok' or why not. */
async function kafkaHealth(brokers: string[], expected: number): Promise<string> {
  // Each broker is asked on its own: right after a node registers, the others'
  // metadata can lag a moment, and "ok" must mean every node sees the cluster.
  const views = await Promise.all(brokers.map(async (b) => {
    const kafka = new Kafka({ brokers: [b], clientId: 'infra-health', logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 1500 });
    const admin = kafka.admin();
    try {
      await withTimeout(admin.connect(), 3000, 'connect');
      const c = await withTimeout(admin.describeCluster(), 3000, 'describeCluster');
      return c.brokers.length >= expected ? 'ok' : `${c.brokers.length} of ${expected} brokers (as ${b} sees it)`;
    } catch (err) {
      return (err as Error).message;
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }));
  return views.find((v) => v !== 'ok') ?? 'ok';
}

/**
 * One KRaft node (combined broker + controller). With one node it is the
 * service `kafka` (data in .data/kafka); in a local cluster of n nodes it is
 * `kafka-<i+1>` (data in .data/kafka-cluster/node-<i+1>), the nodes share a
 * cluster id formatted once, every node votes, and internal topics get three
 * replicas so losing one broker loses nothing (min.insync.replicas=2).
 */
export function kafkaNodeService(cfg: Config, p: Paths, i: number, n: number): Service {
  const home = path.join(p.cache, `kafka-${cfg.kafka.version}`);
  const single = n === 1;
  const clusterDir = path.join(p.data, 'kafka-cluster');
  const dataDir = single ? path.join(p.data, 'kafka') : path.join(clusterDir, `node-${i + 1}`);
  const propsFile = path.join(dataDir, 'server.properties');
  const { broker, controller } = kafkaNodePorts(cfg, i);
  const name: ServiceName = single ? 'kafka' : `kafka-${i + 1}`;
  const voters = Array.from({ length: n }, (_, j) => `${j + 1}@127.0.0.1:${kafkaNodePorts(cfg, j).controller}`).join(',');
  const rf = Math.min(3, n);
  return {
    name,
    port: broker,
    runsProcess: true,
    dependsOn: [],
    logFile: path.join(p.logs, `${name}.log`),
    pidFile: path.join(p.run, `${name}.pid`),
    install: (progress) => installKafka(cfg, home, progress),
    async command() {
      const logDirs = path.join(dataDir, 'log');
      fs.mkdirSync(logDirs, { recursive: true });
      fs.mkdirSync(p.logs, { recursive: true }); // the format step below logs there before the broker starts
      // Written on every start so port changes take effect; the data stays.
      fs.writeFileSync(
        propsFile,
        [
          'process.roles=broker,controller',
          `node.id=${i + 1}`,
          `controller.quorum.voters=${voters}`,
          `listeners=PLAINTEXT://127.0.0.1:${broker},CONTROLLER://127.0.0.1:${controller}`,
          `advertised.listeners=PLAINTEXT://127.0.0.1:${broker}`,
          'controller.listener.names=CONTROLLER',
          'inter.broker.listener.name=PLAINTEXT',
          'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
          `log.dirs=${logDirs}`,
          // One node: every internal topic has one replica; three or more: three, two in sync.
          `offsets.topic.replication.factor=${rf}`,
          'offsets.topic.num.partitions=10',
          `transaction.state.log.replication.factor=${rf}`,
          `transaction.state.log.min.isr=${rf >= 3 ? 2 : 1}`,
          `share.coordinator.state.topic.replication.factor=${rf}`,
          `default.replication.factor=${rf}`,
          `min.insync.replicas=${rf >= 3 ? 2 : 1}`,
          // A replica that lost its leader never becomes leader with fewer records (no unclean elections).
          'unclean.leader.election.enable=false',
          // A broker killed with -9 is fenced (and its partitions led elsewhere) after this
          // long without heartbeats: the time writes to its partitions wait (default 9 s).
          'broker.session.timeout.ms=4000',
          'broker.heartbeat.interval.ms=1000',
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
      // Format the KRaft storage exactly once; a formatted dir keeps its cluster id,
      // and every node of a local cluster is formatted with the same one.
      if (!fs.existsSync(path.join(logDirs, 'meta.properties'))) {
        // Kafka's own Uuid.randomUuid() never hands out an id that starts with '-', because
        // the storage tool's argument parser takes such a value for an option (`-t -ew9…`
        // failed a CI run on a fresh machine, 1 in 64 formats). Same rule here.
        let clusterId = randomBytes(16).toString('base64url');
        while (clusterId.startsWith('-')) clusterId = randomBytes(16).toString('base64url');
        if (!single) {
          fs.mkdirSync(clusterDir, { recursive: true });
          const idFile = path.join(clusterDir, 'cluster.id');
          try {
            fs.writeFileSync(idFile, clusterId, { flag: 'wx' });
          } catch {
            clusterId = fs.readFileSync(idFile, 'utf8').trim();
          }
        }
        await run(java, [...jvm, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', propsFile, '--ignore-formatted'], {
          logFile: path.join(p.logs, `${name}.log`),
        });
      }
      return { cmd: java, args: [...jvm, 'kafka.Kafka', propsFile], marker: propsFile };
    },
    // A node of a cluster is healthy when it answers; the cluster is healthy when all are registered.
    health: () => kafkaHealth([`127.0.0.1:${broker}`], 1),
  };
}

/** The local cluster as a whole: no process of its own; healthy when every broker is registered. */
export function kafkaClusterService(cfg: Config, p: Paths, nodes: Service[]): Service {
  return {
    name: 'kafka',
    port: cfg.kafka.port,
    runsProcess: false,
    dependsOn: nodes.map((n) => n.name),
    members: nodes,
    logFile: path.join(p.logs, 'kafka-cluster.log'),
    pidFile: path.join(p.run, 'kafka-cluster.pid'), // never written: the nodes have theirs
    async install(progress) {
      await installKafka(cfg, path.join(p.cache, `kafka-${cfg.kafka.version}`), progress);
    },
    async command() {
      throw new InfraError('ERR_INFRA_NOT_A_PROCESS', 'a local Kafka cluster runs no process itself; its nodes are the services kafka-<n>');
    },
    health: () => kafkaHealth(nodes.map((n) => `127.0.0.1:${n.port}`), nodes.length),
    async converge(progress) {
      progress(`kafka: ${nodes.length} brokers up, waiting until each is registered with the controllers`);
    },
  };
}

/** Kafka as `up` sees it: one node named `kafka`, or the group `kafka` of nodes `kafka-1..n`. */
export function kafkaServices(cfg: Config, p: Paths): Service[] {
  const n = cfg.kafka.localBrokers;
  if (n === 1) return [kafkaNodeService(cfg, p, 0, 1)];
  const nodes = Array.from({ length: n }, (_, i) => kafkaNodeService(cfg, p, i, n));
  return [...nodes, kafkaClusterService(cfg, p, nodes)];
}

/** The first node (the one service with KAFKA_PORT), kept for callers that want one. */
export function kafkaService(cfg: Config, p: Paths): Service {
  return kafkaServices(cfg, p)[0]!;
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
          `-Dapicurio.kafkasql.bootstrap.servers=${cfg.kafka.brokers}`,
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

let redisInstall: Promise<void> | undefined;

/** apt-get installs redis-server (and redis-cli with it) once, however many services ask at the same time. */
function installRedisServer(cfg: Config, progress: (msg: string) => void): Promise<void> {
  if (which(cfg.infra.redisServer)) return Promise.resolve();
  redisInstall ??= (async () => {
    const apt = which('apt-get');
    if (!apt) throw new InfraError('ERR_INFRA_TOOL_MISSING', `\`${cfg.infra.redisServer}\` is missing and there is no apt-get to install it. Install Redis 7 (Debian: apt-get install -y redis-server).`);
    if (process.getuid?.() !== 0) throw new InfraError('ERR_INFRA_TOOL_MISSING', '`redis-server` is missing; installing it needs root: sudo apt-get install -y redis-server');
    progress('installing redis-server with apt-get');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    await run(apt, ['update', '-q'], { env });
    await run(apt, ['install', '-y', '-q', 'redis-server'], { env });
  })().finally(() => {
    redisInstall = undefined;
  });
  return redisInstall;
}

/** A short-lived connection that fails fast instead of retrying. */
function probeRedis(port: number): Redis {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1500, commandTimeout: 1500 });
  r.on('error', () => {});
  return r;
}

async function redisPing(port: number): Promise<string> {
  const r = probeRedis(port);
  try {
    await r.connect();
    const pong = await r.ping();
    return pong === 'PONG' ? 'ok' : `ping answered ${pong}`;
  } catch (err) {
    return (err as Error).message;
  } finally {
    r.disconnect();
  }
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
    install: (progress) => installRedisServer(cfg, progress),
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
    health: () => redisPing(cfg.redis.port),
  };
}

/** The ports of the local Redis Cluster's nodes (REDIS_CLUSTER_PORTS); entries that are not ports are dropped here and reported by the cluster's install. */
export function clusterPortsOf(cfg: Config): number[] {
  return cfg.redis.clusterPorts
    .split(',')
    .map((x) => Number(x.trim()))
    .filter((n) => Number.isInteger(n) && n > 0 && n <= 55535);
}

/** Every node checks the list before it starts, so a bad list starts none of them. */
function checkClusterPorts(cfg: Config): void {
  const ports = clusterPortsOf(cfg);
  if (ports.length < 3 || new Set(ports).size !== ports.length || ports.length !== cfg.redis.clusterPorts.split(',').length) {
    throw new InfraError('ERR_INFRA_CLUSTER_CONFIG', `a Redis Cluster needs at least three distinct node ports (each at most 55535: the cluster bus listens on port + 10000); REDIS_CLUSTER_PORTS is "${cfg.redis.clusterPorts}"`);
  }
}

/** One node of the local Redis Cluster: Debian's redis-server with `cluster-enabled yes`. */
export function redisClusterNodeService(cfg: Config, p: Paths, port: number): Service {
  const dir = path.join(p.data, 'redis-cluster', String(port));
  const conf = path.join(dir, 'redis.conf');
  return {
    name: `redis-cluster-${port}`,
    port,
    runsProcess: true,
    dependsOn: [],
    onlyWhenNamed: cfg.redis.mode !== 'cluster',
    logFile: path.join(p.logs, `redis-cluster-${port}.log`),
    pidFile: path.join(p.run, `redis-cluster-${port}.pid`),
    async install(progress) {
      checkClusterPorts(cfg);
      await installRedisServer(cfg, progress);
    },
    async command() {
      fs.mkdirSync(dir, { recursive: true });
      // Written on every start; nodes.conf (the node's id, its peers and its
      // slots) is the node's own and survives, so a restarted node rejoins.
      fs.writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          'protected-mode yes',
          `dir ${dir}`,
          'daemonize no',
          'logfile ""',
          'cluster-enabled yes',
          'cluster-config-file nodes.conf',
          'cluster-node-timeout 5000',
          'appendonly yes',
          'appendfsync everysec',
          'save ""',
          'maxmemory-policy noeviction',
          'tcp-keepalive 60',
          '',
        ].join('\n'),
      );
      // As for the single redis: the title is rewritten, the program name stays.
      return { cmd: which(cfg.infra.redisServer)!, args: [conf], marker: 'redis-server' };
    },
    health: () => redisPing(port),
  };
}

interface NodeClusterInfo {
  port: number;
  state: string;
  knownNodes: number;
  slotsAssigned: number;
}

async function clusterInfo(port: number): Promise<NodeClusterInfo> {
  const r = probeRedis(port);
  try {
    await r.connect();
    const text = (await r.call('CLUSTER', 'INFO')) as string;
    const field = (k: string) => new RegExp(`^${k}:(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
    return { port, state: field('cluster_state'), knownNodes: Number(field('cluster_known_nodes')), slotsAssigned: Number(field('cluster_slots_assigned')) };
  } finally {
    r.disconnect();
  }
}

/**
 * The local Redis Cluster as a whole: it runs no process itself (its nodes
 * do); `up` forms it once when all nodes are new, and is healthy when every
 * node answers PING and reports cluster_state:ok.
 */
export function redisClusterService(cfg: Config, p: Paths, nodes: Service[]): Service {
  const ports = nodes.map((n) => n.port!);
  const logFile = path.join(p.logs, 'redis-cluster.log');
  return {
    name: 'redis-cluster',
    runsProcess: false,
    dependsOn: nodes.map((n) => n.name),
    members: nodes,
    onlyWhenNamed: cfg.redis.mode !== 'cluster',
    logFile,
    pidFile: path.join(p.run, 'redis-cluster.pid'), // never written: the nodes have theirs
    async install(progress) {
      checkClusterPorts(cfg);
      await installRedisServer(cfg, progress);
      redisCli(cfg);
    },
    async command() {
      throw new InfraError('ERR_INFRA_NOT_A_PROCESS', 'redis-cluster runs no process itself; its nodes are the services redis-cluster-<port>');
    },
    async health() {
      const problems = await Promise.all(
        ports.map(async (port) => {
          const ping = await redisPing(port);
          if (ping !== 'ok') return `${port}: ${ping}`;
          try {
            const info = await clusterInfo(port);
            return info.state === 'ok' ? undefined : `${port}: cluster_state:${info.state} (known nodes ${info.knownNodes}, slots assigned ${info.slotsAssigned})`;
          } catch (err) {
            return `${port}: ${(err as Error).message}`;
          }
        }),
      );
      const bad = problems.filter((x) => x !== undefined);
      return bad.length === 0 ? 'ok' : bad.join('; ');
    },
    async converge(progress) {
      const infos = await Promise.all(ports.map(clusterInfo));
      const fresh = infos.filter((i) => i.knownNodes <= 1 && i.slotsAssigned === 0);
      if (fresh.length === infos.length) {
        progress(`redis-cluster: forming the cluster of ${ports.join(', ')} (redis-cli --cluster create; log ${logFile})`);
        fs.mkdirSync(path.dirname(logFile), { recursive: true });
        fs.appendFileSync(logFile, `\n==== ${new Date().toISOString()} redis-cli --cluster create\n`);
        await run(redisCli(cfg), ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'], { logFile });
        return;
      }
      if (fresh.length > 0) {
        throw new InfraError(
          'ERR_INFRA_CLUSTER_BROKEN',
          `redis-cluster: node(s) ${fresh.map((i) => i.port).join(', ')} know no cluster while the others do (was a node's folder removed?). ` +
            `Stop it (npm run infra -- down redis-cluster), remove ${path.join(p.data, 'redis-cluster')} and run up again.`,
        );
      }
      // Formed before: restarted nodes rejoin through their nodes.conf; waiting is enough.
      progress(`redis-cluster: formed already, waiting for cluster_state:ok on every node`);
    },
  };
}

function redisCli(cfg: Config): string {
  // redis-cli ships with redis-server (Debian's redis-tools); prefer the one next to it.
  const server = which(cfg.infra.redisServer);
  const beside = server ? path.join(path.dirname(server), 'redis-cli') : undefined;
  if (beside && fs.existsSync(beside)) return beside;
  return requireTool('redis-cli', 'The Redis Cluster', 'apt-get install -y redis-tools');
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
  const nodes = clusterPortsOf(cfg).map((port) => redisClusterNodeService(cfg, p, port));
  return [...kafkaServices(cfg, p), redisService(cfg, p), registryService(cfg, p), clickhouseService(cfg, p), ...nodes, redisClusterService(cfg, p, nodes)];
}
