/**
 * npm run import -- <file> [--room <id>] [--from-room <name>] [--speed <x> | --as-fast-as-possible] [--limit <n>]
 *
 * Loads a recorded chat (JSON Lines, .gz or plain; ../shared/data/README.md)
 * into the event log. As fast as possible by default (a finished stream to
 * replay); `--speed 1` replays it at real speed as a live stream (2 = twice as
 * fast). Every source room is imported under a room id derived from its name,
 * or `--room` names the room (of `--from-room`, or of the file's first room).
 */
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { loadConfig } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { subjectFor } from '../schemas/registry.ts';
import { logClient } from '../topics/client.ts';
import { topicNames } from '../topics/topics.ts';
import { LogWriter } from '../topics/writer.ts';
import { openRedis, redisOptions } from '../core/redis.ts';
import { importChat } from './import.ts';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    room: { type: 'string' },
    'from-room': { type: 'string' },
    speed: { type: 'string' },
    'as-fast-as-possible': { type: 'boolean' },
    limit: { type: 'string' },
  },
});

async function main(): Promise<number> {
  const file = positionals[0];
  if (!file) {
    console.error('usage: npm run import -- <file> [--room <id>] [--from-room <name>] [--speed <x> | --as-fast-as-possible] [--limit <n>]');
    return 2;
  }
  if (values.speed !== undefined && values['as-fast-as-possible']) throw new AppError('ERR_USAGE', '--speed and --as-fast-as-possible exclude each other');
  const speed = values.speed === undefined ? undefined : Number(values.speed);
  if (speed !== undefined && !(speed > 0)) throw new AppError('ERR_USAGE', `--speed must be a positive number, got "${values.speed}"`);
  const limit = values.limit === undefined ? undefined : Number(values.limit);
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new AppError('ERR_USAGE', `--limit must be a positive integer, got "${values.limit}"`);

  const cfg = loadConfig();
  const topic = topicNames(cfg).roomEvents;
  const codec = new EventCodec({ registry: createRegistry(cfg.registry.url), subject: subjectFor(topic) });
  await codec.init();
  const client = logClient(cfg, 'import');
  const producer = client.producer();
  await producer.connect();
  // Through a writer, like the gateways: to the log's current generation, and a repartition waits for it.
  const redis = openRedis({ ...redisOptions(cfg), name: 'import' });
  const writer = new LogWriter({ producer, redis, keyPrefix: cfg.redis.keyPrefix, baseTopic: topic, partitions: cfg.topics.partitions, name: 'import', leaseMs: cfg.topics.writerLeaseMs });
  await writer.start();
  const bar = new cliProgress.SingleBar(
    { format: 'import [{bar}] {percentage}% | {value}/{total} events | {rate} events/s | {eta_formatted} left', noTTYOutput: true, notTTYSchedule: 1000, stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  const t0 = Date.now();
  try {
    const result = await importChat({
      file,
      room: values.room,
      fromRoom: values['from-room'],
      speed,
      limit,
      writer,
      codec,
      onStart: (total, plans) => {
        for (const p of plans) console.log(`[import] ${p.source} → room ${p.room}: ${p.lines.length} comments`);
        console.log(`[import] ${total} events to ${writer.generation?.topic ?? topic} ${speed === undefined ? 'as fast as possible' : `at ${speed}x real speed`}`);
        bar.start(total, 0, { rate: '0' });
      },
      onProgress: (acked) => bar.update(acked, { rate: String(Math.round(acked / Math.max(0.001, (Date.now() - t0) / 1000))) }),
    });
    bar.stop();
    console.log(`[import] done: ${result.events} events in ${result.seconds.toFixed(1)} s (${Math.round(result.events / Math.max(result.seconds, 0.001))} events/s)`);
    return 0;
  } finally {
    bar.stop();
    await writer.stop();
    await producer.disconnect();
    await client.close();
    redis.disconnect();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof AppError ? `[import] ${err.code}: ${err.message}` : err);
    process.exit(1);
  },
);
