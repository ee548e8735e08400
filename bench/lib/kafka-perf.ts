/**
 * Kafka's own perf tools as a ceiling for the write path:
 * `kafka-producer-perf-test` and `kafka-consumer-perf-test`, i.e. the classes
 * org.apache.kafka.tools.ProducerPerformance and ConsumerPerformance from
 * org.apache.kafka:kafka-tools, run with `java -cp <the tools' jars + the
 * broker's libs>` against the local broker.
 *
 * The jars: infra/kafka/pom.xml lists kafka-tools and argparse4j, so a fresh
 * `npm run infra -- up` copies them with the broker's jars. A broker installed
 * before they were listed lacks them; then the same pom's
 * `dependency:copy-dependencies`, restricted to those two artifacts, fills
 * `<cache>/kafka-<version>-tools/` once (Maven Central, like the broker).
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, type Config } from '../../core/config.ts';
import { run, which } from '../../infra/proc.ts';
import { cpuSeconds, startCommand } from './proc.ts';
import { round } from './stats.ts';

export interface ProducerPerf {
  records: number;
  recordsPerSec: number;
  mbPerSec: number;
  avgMs: number;
  maxMs: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  p999Ms: number;
  /** CPU seconds of the tool's JVM, and of the broker while it ran. */
  cpuSec: { tool: number; kafka: number };
  wallSec: number;
}

export interface ConsumerPerf {
  messages: number;
  /** Over the whole run, group join included. */
  msgPerSec: number;
  /** Over the fetching time only (the tool's fetch.nMsg.sec). */
  fetchMsgPerSec: number;
  mbPerSec: number;
  rebalanceMs: number;
  fetchMs: number;
  cpuSec: { tool: number; kafka: number };
  wallSec: number;
}

export interface KafkaPerfResult {
  topic: string;
  recordSize: number;
  producerProps: Record<string, string>;
  producer?: ProducerPerf;
  consumer?: ConsumerPerf;
  /** min(producer records/s, consumer fetch records/s): what a produce → consume path could carry. */
  ceiling: number;
  error?: string;
}

const TOOLS_JAR = (v: string) => `kafka-tools-${v}.jar`;

/** The classpath of the perf tools (installs the two missing jars once when needed); throws with a readable reason. */
export async function perfToolsClasspath(cfg: Config, log: (m: string) => void): Promise<string> {
  const v = cfg.kafka.version;
  const libs = path.join(cfg.cacheDir, `kafka-${v}`, 'libs');
  if (!fs.existsSync(libs)) throw new Error(`no broker jars in ${libs}: run \`npm run infra -- up\` first`);
  if (fs.existsSync(path.join(libs, TOOLS_JAR(v)))) return `${libs}/*`;
  const extra = path.join(cfg.cacheDir, `kafka-${v}-tools`);
  if (!fs.existsSync(path.join(extra, TOOLS_JAR(v)))) {
    const mvn = which(cfg.infra.mvn);
    if (!mvn) throw new Error(`\`${cfg.infra.mvn}\` is not on PATH (apt-get install -y maven): the perf tools come from Maven Central`);
    log(`kafka-perf: fetching org.apache.kafka:kafka-tools:${v} and argparse4j (infra/kafka/pom.xml) into ${extra}`);
    const tmp = `${extra}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    await run(mvn, ['-B', '-q', '-f', path.join(REPO_ROOT, 'infra/kafka/pom.xml'), `-Dkafka.version=${v}`, 'dependency:copy-dependencies', '-DincludeArtifactIds=kafka-tools,argparse4j', `-DoutputDirectory=${tmp}`]);
    if (!fs.existsSync(path.join(tmp, TOOLS_JAR(v)))) throw new Error(`Maven copied no ${TOOLS_JAR(v)} into ${tmp}`);
    fs.rmSync(extra, { recursive: true, force: true });
    fs.renameSync(tmp, extra);
  }
  // The tools' jars first; the broker's libs bring kafka-clients, kafka-server-common, jopt-simple and the logging backend.
  return `${extra}/*:${libs}/*`;
}

/** The final line of ProducerPerformance: `N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency, a ms 50th, b ms 95th, c ms 99th, d ms 99.9th.` */
export function parseProducerPerf(lines: string[]): Omit<ProducerPerf, 'cpuSec' | 'wallSec'> | undefined {
  const re = /^(\d+) records sent, ([\d.]+) records\/sec \(([\d.]+) MB\/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99\.9th/;
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = re.exec(lines[i]!.trim());
    if (m) return { records: +m[1]!, recordsPerSec: +m[2]!, mbPerSec: +m[3]!, avgMs: +m[4]!, maxMs: +m[5]!, p50Ms: +m[6]!, p95Ms: +m[7]!, p99Ms: +m[8]!, p999Ms: +m[9]! };
  }
  return undefined;
}

/**
 * ConsumerPerformance prints a CSV header (start.time, end.time,
 * data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
 * rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec) and one row.
 */
export function parseConsumerPerf(lines: string[]): Omit<ConsumerPerf, 'cpuSec' | 'wallSec'> | undefined {
  const h = lines.findIndex((l) => l.includes('data.consumed.in.nMsg'));
  if (h < 0) return undefined;
  const names = lines[h]!.split(',').map((s) => s.trim());
  const row = lines.slice(h + 1).find((l) => l.split(',').length === names.length);
  if (!row) return undefined;
  const v = Object.fromEntries(row.split(',').map((s, i) => [names[i]!, s.trim()]));
  const n = (k: string) => Number(v[k]);
  return { messages: n('data.consumed.in.nMsg'), msgPerSec: round(n('nMsg.sec'), 0), fetchMsgPerSec: round(n('fetch.nMsg.sec'), 0), mbPerSec: round(n('MB.sec'), 2), rebalanceMs: n('rebalance.time.ms'), fetchMs: n('fetch.time.ms') };
}

async function runTool(name: string, cp: string, cls: string, args: string[], kafkaPid: number | undefined, maxMs: number, log: (m: string) => void): Promise<{ lines: string[]; code: number | null; cpu: { tool: number; kafka: number }; wallSec: number }> {
  const java = which('java') ?? 'java';
  const jvm = ['-Xmx512m', '-XX:+UseG1GC', '-Djava.awt.headless=true', `-Dlog4j.configuration=file:${path.join(REPO_ROOT, 'infra/kafka/tools-log4j.properties')}`, '-cp', cp];
  const k0 = kafkaPid ? cpuSeconds(kafkaPid) : 0;
  const t0 = performance.now();
  const c = startCommand(name, java, [...jvm, cls, ...args], { maxMs, echo: `  [${name}] ` });
  let tool = 0;
  // The JVM's CPU is read while it runs: once it has exited /proc no longer has it.
  const sampler = setInterval(() => {
    const s = cpuSeconds(c.pid);
    if (s > 0) tool = s;
  }, 100);
  const code = await c.exited;
  clearInterval(sampler);
  const cpu = { tool: round(tool), kafka: round(kafkaPid ? cpuSeconds(kafkaPid) - k0 : 0) };
  const wallSec = round((performance.now() - t0) / 1000);
  log(`kafka-perf: ${name} exited ${code} after ${wallSec} s`);
  return { lines: [...c.output], code, cpu, wallSec };
}

export interface KafkaPerfOptions {
  cfg: Config;
  /** An existing topic (created by the caller with the world's settings). */
  topic: string;
  records: number;
  recordSize: number;
  /** Producer settings beside acks=all and idempotence (compression, linger) — the product's own. */
  compression: string;
  lingerMs: number;
  kafkaPid?: number;
  log(m: string): void;
}

/** Produces `records` records unthrottled, then consumes them back; the ceiling is the slower of the two. */
export async function runKafkaPerf(o: KafkaPerfOptions): Promise<KafkaPerfResult> {
  const producerProps = {
    'bootstrap.servers': o.cfg.kafka.brokers,
    acks: 'all',
    'enable.idempotence': 'true',
    'compression.type': o.compression,
    'linger.ms': String(o.lingerMs),
  };
  const base: KafkaPerfResult = { topic: o.topic, recordSize: o.recordSize, producerProps, ceiling: 0 };
  let cp: string;
  try {
    cp = await perfToolsClasspath(o.cfg, o.log);
  } catch (err) {
    return { ...base, error: `perf tools unavailable: ${(err as Error).message.split('\n')[0]}` };
  }
  const maxMs = 300_000;
  o.log(`kafka-perf: ProducerPerformance, ${o.records} records of ${o.recordSize} bytes, unthrottled, acks=all, idempotent, ${o.compression}`);
  const p = await runTool(
    'producer-perf',
    cp,
    'org.apache.kafka.tools.ProducerPerformance',
    ['--topic', o.topic, '--num-records', String(o.records), '--record-size', String(o.recordSize), '--throughput', '-1', '--producer-props', ...Object.entries(producerProps).map(([k, v]) => `${k}=${v}`)],
    o.kafkaPid,
    maxMs,
    o.log,
  );
  const prod = parseProducerPerf(p.lines);
  if (!prod) return { ...base, error: `ProducerPerformance printed no summary (exit ${p.code}): ${p.lines.slice(-3).join(' | ')}` };
  const producer: ProducerPerf = { ...prod, cpuSec: p.cpu, wallSec: p.wallSec };
  o.log(`kafka-perf: ConsumerPerformance, ${prod.records} records`);
  const c = await runTool(
    'consumer-perf',
    cp,
    'org.apache.kafka.tools.ConsumerPerformance',
    ['--bootstrap-server', o.cfg.kafka.brokers, '--topic', o.topic, '--messages', String(prod.records), '--group', `${o.topic}.perf`, '--timeout', '30000'],
    o.kafkaPid,
    maxMs,
    o.log,
  );
  const cons = parseConsumerPerf(c.lines);
  if (!cons) return { ...base, producer, ceiling: 0, error: `ConsumerPerformance printed no summary (exit ${c.code}): ${c.lines.slice(-3).join(' | ')}` };
  const consumer: ConsumerPerf = { ...cons, cpuSec: c.cpu, wallSec: c.wallSec };
  const ceiling = Math.round(Math.min(producer.recordsPerSec, consumer.messages >= producer.records ? consumer.fetchMsgPerSec : 0));
  return { ...base, producer, consumer, ceiling, ...(consumer.messages < producer.records ? { error: `the consumer read ${consumer.messages} of ${producer.records} records` } : {}) };
}
