/**
 * The one typed config tree (after Centrifugo): every setting has its
 * environment name, its default and a line of doc, and is validated once at
 * start. Nothing else in the product reads `process.env`; code receives the
 * resulting `Config` object (or the part of it it needs).
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './errors.ts';

/** Repository root, so defaults work from any working directory. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

type Env = Record<string, string | undefined>;

interface Leaf<T> {
  readonly env: string;
  readonly doc: string;
  /** Shown in the docs; a function when the default depends on other settings. */
  readonly defaultText: string;
  parse(raw: string | undefined, env: Env): T;
}

class Invalid extends Error {}

function leaf<T>(env: string, doc: string, defaultText: string, parse: (raw: string | undefined, env: Env) => T): Leaf<T> {
  return { env, doc, defaultText, parse };
}

const str = (env: string, def: string, doc: string) => leaf<string>(env, doc, def, (raw) => (raw === undefined || raw === '' ? def : raw));

const optStr = (env: string, doc: string) => leaf<string | undefined>(env, doc, '(unset)', (raw) => (raw === undefined || raw === '' ? undefined : raw));

const int = (env: string, def: number, doc: string, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  leaf<number>(env, doc, String(def), (raw) => {
    if (raw === undefined || raw === '') return def;
    if (!/^-?\d+$/.test(raw.trim())) throw new Invalid(`expected an integer, got "${raw}"`);
    const n = Number(raw);
    if (n < min || n > max) throw new Invalid(`expected ${min}..${max}, got ${n}`);
    return n;
  });

const port = (env: string, def: number, doc: string) => int(env, def, doc, 1, 65535);

/** An integer setting whose default depends on others (parsed like `int`). */
function intIn(raw: string | undefined, def: number, min: number, max: number): number {
  if (raw === undefined || raw === '') return def;
  if (!/^-?\d+$/.test(raw.trim())) throw new Invalid(`expected an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new Invalid(`expected ${min}..${max}, got ${n}`);
  return n;
}

const bool = (env: string, def: boolean, doc: string) =>
  leaf<boolean>(env, doc, String(def), (raw) => {
    if (raw === undefined || raw === '') return def;
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new Invalid(`expected true/false, got "${raw}"`);
  });

const ratio = (env: string, def: number, doc: string) =>
  leaf<number>(env, doc, String(def), (raw) => {
    if (raw === undefined || raw === '') return def;
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) throw new Invalid(`expected a number in 0..1, got "${raw}"`);
    return n;
  });

const oneOf = <T extends string>(env: string, values: readonly T[], def: T, doc: string) =>
  leaf<T>(env, `${doc} One of: ${values.join(', ')}.`, def, (raw) => {
    if (raw === undefined || raw === '') return def;
    if (!(values as readonly string[]).includes(raw)) throw new Invalid(`expected one of ${values.join('|')}, got "${raw}"`);
    return raw as T;
  });

/** One gift of the catalogue (GIFTS): what a viewer may send, its display name and the value of one. */
export interface Gift {
  id: string;
  name: string;
  value: number;
}

/** `id:name:value` entries, comma-separated: ids unique ([a-z0-9_-], 1–32), names 1–32 characters without `:` or `,`, values 1..1,000,000. */
export function parseGifts(raw: string): Gift[] {
  const out: Gift[] = [];
  for (const entry of raw.split(',').map((x) => x.trim()).filter(Boolean)) {
    const parts = entry.split(':');
    if (parts.length !== 3) throw new Invalid(`gift "${entry}" is not id:name:value`);
    const [id, name, value] = parts.map((x) => x.trim()) as [string, string, string];
    if (!/^[a-z0-9_-]{1,32}$/.test(id)) throw new Invalid(`gift id "${id}" must be 1–32 of a-z, 0-9, _ and -`);
    if (name.length < 1 || [...name].length > 32) throw new Invalid(`gift "${id}": name must be 1–32 characters`);
    if (!/^\d{1,7}$/.test(value) || Number(value) < 1 || Number(value) > 1_000_000) throw new Invalid(`gift "${id}": value must be an integer in 1..1000000, got "${value}"`);
    if (out.some((g) => g.id === id)) throw new Invalid(`gift id "${id}" appears twice`);
    out.push({ id, name, value: Number(value) });
  }
  if (out.length === 0) throw new Invalid('the gift catalogue is empty');
  return out;
}

const DEFAULT_GIFTS = 'glowstick:Glow stick:1,rose:Rose:10,cake:Cake:50,rocket:Rocket:200,castle:Castle:1000';

/** One reaction of the set (GATEWAY_EMOJIS): its short name (what events and tallies carry) and the emoji itself. */
export interface Emoji {
  name: string;
  char: string | null;
}

/** An emoji as clients may type it: without variation selectors (U+FE0E/U+FE0F), so "❤" and "❤️" are one. */
export const emojiKey = (s: string) => s.replace(/[\uFE0E\uFE0F]/g, '');

/**
 * `name=emoji` entries (or a bare `name`), comma-separated: names unique
 * ([a-z0-9_+-], 1–32), each emoji one grapheme of at most 16 UTF-16 units
 * that is pictographic (an emoji, a flag, a keycap), unique.
 */
export function parseEmojis(raw: string): Emoji[] {
  const out: Emoji[] = [];
  const seg = new Intl.Segmenter('en', { granularity: 'grapheme' });
  for (const entry of raw.split(',').map((x) => x.trim()).filter(Boolean)) {
    const eq = entry.indexOf('=');
    const name = (eq < 0 ? entry : entry.slice(0, eq)).trim();
    const char = eq < 0 ? null : entry.slice(eq + 1).trim();
    if (!/^[a-z0-9_+-]{1,32}$/.test(name)) throw new Invalid(`emoji name "${name}" must be 1–32 of a-z, 0-9, _, + and -`);
    if (char !== null) {
      const pictographic = /\p{Extended_Pictographic}|\p{Regional_Indicator}|\u20E3/u.test(char); // keycaps: 1️⃣
      if (char.length > 16 || [...seg.segment(char)].length !== 1 || !pictographic) {
        throw new Invalid(`emoji "${name}": "${char}" is not one emoji`);
      }
    }
    if (out.some((e) => e.name === name)) throw new Invalid(`emoji name "${name}" appears twice`);
    if (char !== null && out.some((e) => e.char !== null && emojiKey(e.char) === emojiKey(char))) throw new Invalid(`emoji "${char}" appears twice`);
    out.push({ name, char });
  }
  if (out.length === 0) throw new Invalid('the emoji set is empty');
  return out;
}

const DEFAULT_EMOJIS = 'heart=❤️,fire=🔥,laugh=😂,clap=👏,wow=😮,sad=😢';

/** A default computed from other settings' raw values (e.g. a URL from a port). */
const derived = (env: string, defaultText: string, doc: string, compute: (env: Env) => string) =>
  leaf<string>(env, doc, defaultText, (raw, e) => (raw === undefined || raw === '' ? compute(e) : raw));

const dataDirOf = (e: Env) => path.resolve(e.DANMAKU_DATA_DIR || path.join(REPO_ROOT, '.data'));
const cacheDirOf = (e: Env) => path.resolve(e.DANMAKU_CACHE_DIR || path.join(e.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'danmaku-live'));
/** KAFKA_BROKERS=<N> asks for a local cluster of N brokers (else one). */
const localBrokersOf = (e: Env): number => {
  const raw = e.KAFKA_LOCAL_BROKERS || e.KAFKA_BROKERS;
  return raw && /^\d+$/.test(raw.trim()) ? Math.max(1, Number(raw.trim())) : 1;
};
const portOf = (e: Env, name: string, def: number) => (e[name] && /^\d+$/.test(e[name]!) ? e[name]! : String(def));

export const schema = {
  dataDir: derived('DANMAKU_DATA_DIR', '<repo>/.data', 'Data and logs of the local servers (git-ignored).', dataDirOf),
  cacheDir: derived(
    'DANMAKU_CACHE_DIR',
    '~/.cache/danmaku-live',
    'Downloads (Maven artifacts, unpacked registry) kept outside the clone so a second install is fast.',
    cacheDirOf,
  ),
  logLevel: oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info', 'Log level of every process.'),
  kafka: {
    brokers: leaf<string>(
      'KAFKA_BROKERS',
      'Comma-separated bootstrap brokers the product connects to; or a number N: a local KRaft cluster of N brokers (infra; broker i on KAFKA_PORT + 2i, its controller on KAFKA_CONTROLLER_PORT + 2i), and the bootstrap list is theirs.',
      '127.0.0.1:${KAFKA_PORT}',
      (raw, e) => {
        if (raw !== undefined && raw !== '' && !/^\d+$/.test(raw.trim())) return raw;
        const n = localBrokersOf(e);
        const port = Number(portOf(e, 'KAFKA_PORT', 9092));
        return Array.from({ length: n }, (_, i) => `127.0.0.1:${port + 2 * i}`).join(',');
      },
    ),
    localBrokers: leaf<number>(
      'KAFKA_LOCAL_BROKERS',
      'Brokers of the local KRaft cluster infra starts (1, or 3 for a replicated log). Default: KAFKA_BROKERS when it is a number, else 1.',
      '${KAFKA_BROKERS} or 1',
      (raw, e) => {
        const v = raw === undefined || raw === '' ? String(localBrokersOf(e)) : raw;
        if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 9) throw new Invalid(`expected 1..9, got "${v}"`);
        return Number(v);
      },
    ),
    port: port('KAFKA_PORT', 9092, 'Port of the local Kafka broker listener (infra).'),
    controllerPort: port('KAFKA_CONTROLLER_PORT', 9093, 'Port of the local KRaft controller listener (infra).'),
    heap: str('KAFKA_HEAP', '512m', 'JVM heap (-Xms/-Xmx) of the local Kafka broker; sized to fit beside the registry on 2 cores.'),
    clientId: str('KAFKA_CLIENT_ID', 'danmaku', 'Client id prefix used by producers and consumers.'),
    version: str('KAFKA_VERSION', '3.9.1', 'Apache Kafka version fetched from Maven Central (infra).'),
  },
  registry: {
    url: derived(
      'SCHEMA_REGISTRY_URL',
      'http://127.0.0.1:${SCHEMA_REGISTRY_PORT}/apis/ccompat/v7',
      'Confluent-compatible schema registry base URL.',
      (e) => `http://127.0.0.1:${portOf(e, 'SCHEMA_REGISTRY_PORT', 8081)}/apis/ccompat/v7`,
    ),
    port: port('SCHEMA_REGISTRY_PORT', 8081, 'HTTP port of the local Apicurio Registry (infra).'),
    version: str(
      'APICURIO_VERSION',
      '3.0.9',
      'Apicurio Registry version from Maven Central (infra). 3.1.7 is not on Maven Central; 3.2+ needs Java 21; 3.0.9 is the newest that runs on Java 17.',
    ),
    heap: str('APICURIO_HEAP', '384m', 'JVM max heap of the local registry.'),
    journalTopic: str('APICURIO_KAFKASQL_TOPIC', 'kafkasql-journal', 'Kafka topic where the registry journals its schemas (kafkasql storage).'),
  },
  topics: {
    roomEvents: str('TOPIC_ROOM_EVENTS', 'room-events', 'The event log: every room action, key = room id, kept forever.'),
    deadLetter: str('TOPIC_DEAD_LETTER', 'room-events.dlq', 'Records that could not be decoded or validated, with the reason in headers.'),
    partitions: int('TOPIC_PARTITIONS', 6, 'Partitions of the event log (rooms spread over them; a room stays in one).', 1, 10_000),
    replicationFactor: leaf<number>(
      'TOPIC_REPLICATION_FACTOR',
      'Replicas per partition of the declared topics. Default: 3 when the local cluster has three brokers or more (KAFKA_BROKERS=3), else 1.',
      'min(3, local brokers)',
      (raw, e) => intIn(raw, Math.min(3, localBrokersOf(e)), 1, 10),
    ),
    minInsyncReplicas: leaf<number>(
      'TOPIC_MIN_INSYNC_REPLICAS',
      'min.insync.replicas of the declared topics: with acks=all a write is acknowledged only once this many replicas hold it. Default: 2 with three replicas or more, else 1.',
      '2 with 3+ replicas, else 1',
      (raw, e) => intIn(raw, intIn(e.TOPIC_REPLICATION_FACTOR, Math.min(3, localBrokersOf(e)), 1, 10) >= 3 ? 2 : 1, 1, 10),
    ),
    writerLeaseMs: int(
      'TOPIC_WRITER_LEASE_MS',
      3000,
      'How long a writer of the event log (gateway, moderation) may go on writing the log generation it last confirmed; it re-confirms every third of it (one Redis script) and refuses writes (503) once it could not for this long. A repartition waits for every writer to confirm the new generation.',
      300,
      600_000,
    ),
    routingAudit: str(
      'TOPIC_ROUTING_AUDIT',
      'routing-audit',
      'Audit log of the routing rules (`npm run routing -- set`): one RoutingRulesChanged event per change (its own small Avro schema), one partition, kept forever; the rules in Redis carry the offset of the event that set them.',
    ),
    repartitionTimeoutSec: int('TOPIC_REPARTITION_TIMEOUT_SEC', 120, '`npm run topics -- repartition`: how long it waits for writers to switch and for readers to finish the old generation.', 1, 86_400),
  },
  producer: {
    lingerMs: int('PRODUCER_LINGER_MS', 5, 'How long the producer gathers records into one batch before sending (throughput vs latency).', 0, 1000),
    maxBatch: int('PRODUCER_MAX_BATCH', 500, 'Most records in one produce request.', 1, 100_000),
    compression: oneOf('PRODUCER_COMPRESSION', ['none', 'gzip'] as const, 'gzip', 'Compression of produced batches (kafkajs ships gzip only).'),
  },
  pipelines: {
    groupPrefix: str(
      'PIPELINES_GROUP_PREFIX',
      'danmaku.',
      'Prefix of the Kafka consumer groups of the processors: `<prefix>processors` (the live projections, one group), `<prefix>projector.<name>.v<N>` (a rebuild), `<prefix>moderator.v1`.',
    ),
    partitionsConcurrently: int(
      'PIPELINES_PARTITIONS_CONCURRENTLY',
      16,
      'Partitions whose batches a processor handles at once (a partition\'s own batches stay in order, one at a time).',
      1,
      1000,
    ),
    sessionTimeoutMs: int(
      'PIPELINES_SESSION_TIMEOUT_MS',
      6000,
      'Kafka session timeout of the processors\' consumer groups: how long a dead processor (kill -9, a lost host) keeps its partitions before the group gives them to the others. The broker\'s floor is 6,000 (group.min.session.timeout.ms); heartbeats go every second, also during a long batch.',
      6000,
      1_800_000,
    ),
    roomIdleTtlSec: int(
      'ROOM_IDLE_TTL_SEC',
      86_400,
      'A room\'s projection keys expire after this many seconds without an event (a finished or idle room leaves Redis); when the room gets an event again, the processors restore its state from the log first. Only a small record per room and projection (where its history starts and ends in the log) stays. 0 = never expire.',
      0,
      365 * 86_400,
    ),
    feedMaxItems: int('FEED_MAX_ITEMS', 500, 'Comments (and tombstones) the ordered feed keeps per room in Redis; older positions are served from the log.', 10, 100_000),
    sampledPerSecond: int('SAMPLED_PER_SECOND', 5, 'Target density of the sampled feed: at most this many comments per second per room.', 1, 1000),
    heldMaxItems: int('HELD_MAX_ITEMS', 1000, 'Held comments the review queue (`held` projection) keeps per room; beyond it the oldest hold leaves the queue and its comment stays hidden, as if deleted.', 10, 100_000),
    leaderboardSize: int('LEADERBOARD_SIZE', 10, 'Top senders the `gifts` projection keeps, pushes and serves per room (by total value sent; every sender\'s own total is kept too).', 1, 100),
    heldLookbackRecords: int(
      'HELD_LOOKBACK_RECORDS',
      50_000,
      'How far back, in records of the room\'s partition, the `held` projection remembers comments so a hold lists its comment\'s text (moderation decides a few records after the comment). A hold further behind is listed with `text: null` and released from the archive. Bounds the remembered comments per room.',
      100,
      10_000_000,
    ),
    metricsPort: int('PIPELINES_METRICS_PORT', 9464, 'Port of the processors\' Prometheus /metrics endpoint (0 = off).', 0, 65535),
    lagIntervalMs: int('PIPELINES_LAG_INTERVAL_MS', 5000, 'How often consumer lag is measured for the metrics.', 100, 600_000),
  },
  moderation: {
    enabled: bool('MODERATION_ENABLED', true, 'Run the moderation processor with `npm run pipelines -- run`.'),
    wordlist: derived('MODERATION_WORDLIST', '<repo>/pipelines/moderation/wordlist.txt', 'Word list file: one entry per line, # comments, `-word` removes, `=word` whole words only, `%include` another list (the shipped one includes the curated maintained lists of wordlist.base.txt); it and what it includes are re-read when they change, no restart needed.', () =>
      path.join(REPO_ROOT, 'pipelines', 'moderation', 'wordlist.txt'),
    ),
    maxCharRun: int('MODERATION_MAX_CHAR_RUN', 20, 'A run of one character longer than this is removed (danmaku often repeats 哈 or w, so not too low).', 2, 1000),
    repeatMax: int('MODERATION_REPEAT_MAX', 2, 'Times one user may post the same text within a minute.', 1, 1000),
    floodMax: int('MODERATION_FLOOD_MAX', 8, 'Comments one user may post within 10 s.', 1, 1000),
    offensesToMute: int('MODERATION_OFFENSES_TO_MUTE', 3, 'Removals within 10 min that mute the user (0 = never).', 0, 1000),
    muteSec: int('MODERATION_MUTE_SEC', 600, 'How long an automatic mute lasts.', 1, 31 * 24 * 3600),
    muteKind: oneOf('MODERATION_MUTE_KIND', ['shadow', 'visible'] as const, 'shadow', 'shadow: the muted user alone still sees their comments; visible: their comments are rejected with a reason.'),
    holdLinks: bool('MODERATION_HOLD_LINKS', false, 'Hold comments with links for a moderator instead of removing them.'),
    reputation: {
      holdAt: int('MODERATION_REPUTATION_HOLD_AT', 5, 'A user whose reputation score (removals, summed over rooms, decaying) is at least this has every comment held for a moderator by default (0 = never).', 0, 1_000_000),
      shadowAt: int('MODERATION_REPUTATION_SHADOW_AT', 10, 'A reputation score at least this shadow-mutes the user (UserMuted, kind shadow, reason `reputation …`; 0 = never).', 0, 1_000_000),
      halfLifeHours: int('MODERATION_REPUTATION_HALF_LIFE_HOURS', 24, 'Hours of event time in which a reputation score halves.', 1, 24 * 365),
      goodCredit: ratio('MODERATION_REPUTATION_GOOD_CREDIT', 0.1, 'Taken off the score in a room by each comment allowed there (good behaviour).'),
      muteHours: int('MODERATION_REPUTATION_MUTE_HOURS', 24, 'How long a shadow mute for reputation lasts.', 1, 24 * 365),
    },
    metricsPort: int('MODERATION_METRICS_PORT', 9467, 'Port of the moderation processor\'s Prometheus /metrics endpoint (0 = off). Its own: `npm start` runs moderation in a process of its own, so its rules never take CPU from the feed at a burst.', 0, 65535),
    model: {
      enabled: bool(
        'MODERATION_MODEL_ENABLED',
        false,
        'Run the trained classifier (alt-profanity-check, English) as the `moderation-model` stage with `npm start`: a Python process in its own consumer group that only adds removals. Off by default: cheap once running (2–3 s to start, ~10 ms per batch, ~130 MB), but its first start builds a 360 MB venv from PyPI, and it scores no Chinese or Japanese, most of the real traffic (see `npm run moderation -- eval`).',
      ),
      threshold: ratio('MODERATION_MODEL_THRESHOLD', 0.95, 'A comment the model scores at or above this is removed (or held: MODERATION_MODEL_ACTION).'),
      recordAbove: ratio('MODERATION_MODEL_RECORD_ABOVE', 0.5, 'Scores at or above this (and below the threshold) are written as a ModerationDecided with verdict allow, for moderators to review; lower ones write nothing.'),
      action: oneOf('MODERATION_MODEL_ACTION', ['delete', 'hold'] as const, 'delete', 'What a score at or above the threshold does: delete (ModerationDecided + CommentDeleted, reason moderation:model) or hold for a moderator (ModerationDecided with verdict hold).'),
      batchMax: int('MODERATION_MODEL_BATCH_MAX', 500, 'Most records the model stage fetches, scores in one model call and commits at once.', 1, 100_000),
      batchMs: int('MODERATION_MODEL_BATCH_MS', 50, 'How long the model stage waits to fill a batch.', 1, 10_000),
      venv: derived('MODERATION_MODEL_VENV', '${DANMAKU_CACHE_DIR}/pyvenv-moderation-model', 'Python virtualenv holding the model and Confluent\'s client; built on first use (pip, from PyPI), reused after.', (e) =>
        path.join(cacheDirOf(e), 'pyvenv-moderation-model'),
      ),
      python: str('MODERATION_MODEL_PYTHON', 'python3', 'Python 3.11+ that creates the model\'s virtualenv.'),
      metricsPort: int('MODERATION_MODEL_METRICS_PORT', 9466, 'Port of the model stage\'s Prometheus /metrics endpoint (batch latency, decisions, restarts; 0 = off). Its own: `npm start` runs the stage in a process of its own.', 0, 65535),
    },
  },
  gateway: {
    host: str('GATEWAY_HOST', '127.0.0.1', 'Interface the gateway listens on.'),
    port: port('GATEWAY_PORT', 8080, 'HTTP and WebSocket port of the gateway.'),
    id: derived('GATEWAY_ID', '<hostname>-<pid>', 'This gateway instance\'s id (presence is counted per instance).', () => `${os.hostname()}-${process.pid}`),
    bodyLimitBytes: int('GATEWAY_BODY_LIMIT_BYTES', 16 * 1024, 'Largest request body accepted (413/400 beyond).', 256, 10 * 1024 * 1024),
    emojis: leaf<Emoji[]>(
      'GATEWAY_EMOJIS',
      'The reactions of this deployment: `name=emoji` entries (or a bare `name`), comma-separated. Clients send either the name or the emoji itself (with or without a variation selector); events and tallies carry the name. `GET /v1/emojis` lists them.',
      DEFAULT_EMOJIS,
      (raw) => parseEmojis(raw === undefined || raw === '' ? DEFAULT_EMOJIS : raw),
    ),
    gifts: leaf<Gift[]>(
      'GIFTS',
      'The gift catalogue viewers may send from (POST /v1/rooms/:room/gifts): `id:name:value` entries, comma-separated (value: of one gift, in coins). A GiftSent event carries the name and value of its time, so changing the catalogue never rewrites a leaderboard.',
      DEFAULT_GIFTS,
      (raw) => parseGifts(raw === undefined || raw === '' ? DEFAULT_GIFTS : raw),
    ),
    giftMaxCount: int('GIFT_MAX_COUNT', 99, 'Most gifts of one kind one request may send at once (`count`).', 1, 10_000),
    workers: int(
      'GATEWAY_WORKERS',
      1,
      'Worker processes of one gateway on one port (Node\'s cluster module): each its own GATEWAY_ID (`<id>-w<n>`), sharing nothing but Redis and Kafka; a worker that dies is restarted. 1: a single process.',
      1,
      64,
    ),
    reactionsFlushMs: int(
      'REACTIONS_FLUSH_MS',
      500,
      'Reactions are summed in memory per room and emoji and written as one ReactionAdded{count} event per this interval; each is acknowledged once the event holding it is durable in Kafka.',
      10,
      10_000,
    ),
    wsMaxInflightWrites: int(
      'WS_MAX_INFLIGHT_WRITES',
      1000,
      'Writes one WebSocket may have waiting for their ack (a reaction waits up to REACTIONS_FLUSH_MS); frames beyond it are nacked with ERR_RATE_LIMITED at once.',
      1,
      1_000_000,
    ),
    wsMaxConnections: int(
      'WS_MAX_CONNECTIONS',
      0,
      'Most WebSockets one gateway process holds; beyond it an upgrade gets 503 ERR_TOO_MANY_CONNECTIONS (with Retry-After) while writes, polls and health go on answering. 0: the open-file limit (raised to the hard limit on start) minus GATEWAY_FD_RESERVE.',
      0,
      10_000_000,
    ),
    fdReserve: int(
      'GATEWAY_FD_RESERVE',
      1024,
      'Open files kept free of WebSockets: HTTP writes and polls, Redis, Kafka and log files need them at the socket cap.',
      16,
      1_000_000,
    ),
    publicUrl: optStr('GATEWAY_PUBLIC_URL', 'URL the demo page and OpenAPI advertise (default http://<host>:<port>).'),
    trustedProxies: str(
      'GATEWAY_TRUSTED_PROXIES',
      '',
      'Addresses or CIDRs of reverse proxies (comma-separated) whose X-Forwarded-For is believed; empty: the socket\'s peer address is the client, whatever the headers say.',
    ),
  },
  auth: {
    devMode: bool(
      'DEV_MODE',
      false,
      'Development conveniences: the `GET /v1/dev/token` route (viewer tokens only) and the documented development JWT secret. `npm start`\'s demo sets it; nothing else does.',
    ),
    jwtSecret: optStr(
      'JWT_SECRET',
      'HS256 secret for bearer tokens, at least 32 characters. Required unless JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE is set (the gateway refuses to start otherwise); only DEV_MODE falls back to the documented development secret.',
    ),
    jwtPublicKeyFile: optStr('JWT_PUBLIC_KEY_FILE', 'PEM public key file: when set, tokens are verified with it (RS256/ES256) instead of the HS256 secret.'),
    jwksFile: optStr('JWT_JWKS_FILE', 'JWKS file (`{"keys": [...]}`): tokens are verified (RS256/ES256) with the key named by their `kid` header.'),
    maxTokenTtlSec: int('AUTH_MAX_TOKEN_TTL_SEC', 7 * 24 * 3600, 'Longest lifetime a token may have (`exp` − `iat`, or `exp` − now without `iat`); tokens without `exp` are always refused.', 60, 365 * 24 * 3600),
    anonymousReads: bool('AUTH_ANONYMOUS_READS', true, 'Allow feed, state and WebSocket reads without a token.'),
    devTokenTtlSec: int('AUTH_DEV_TOKEN_TTL_SEC', 24 * 3600, 'Lifetime of tokens printed by `npm run token` and signed by the dev route.', 60, 365 * 24 * 3600),
  },
  limits: {
    commentsPerWindow: int('LIMIT_COMMENTS', 20, 'Comments a viewer may post per window (token bucket).', 1, 100_000),
    commentsWindowSec: int('LIMIT_COMMENTS_WINDOW_SEC', 30, 'Window of the comment bucket.', 1, 86_400),
    moderatorFactor: int('LIMIT_MODERATOR_FACTOR', 5, 'Moderators, broadcasters and admins get this many times the viewer budget.', 1, 1000),
    reactionsPerWindow: int('LIMIT_REACTIONS', 60, 'Reaction requests a user may send per window.', 1, 100_000),
    reactionsWindowSec: int('LIMIT_REACTIONS_WINDOW_SEC', 10, 'Window of the reaction bucket.', 1, 86_400),
    giftsPerWindow: int('LIMIT_GIFTS', 20, 'Gift requests a user may send per window in one room (token bucket in Redis, checked with the clientMsgId claim in one script, as comments are).', 1, 100_000),
    giftsWindowSec: int('LIMIT_GIFTS_WINDOW_SEC', 10, 'Window of the gift bucket.', 1, 86_400),
    readsPerWindow: int('LIMIT_READS', 600, 'Reads (polls, state, WebSocket connects) one client — user, or address — may make per window on one gateway.', 1, 10_000_000),
    readsWindowSec: int('LIMIT_READS_WINDOW_SEC', 10, 'Window of the read budget.', 1, 86_400),
    idempotencyTtlSec: int('IDEMPOTENCY_TTL_SEC', 24 * 3600, 'How long a clientMsgId is remembered, so a retried write returns the first result.', 60, 30 * 86_400),
  },
  push: {
    batchMs: int('PUSH_BATCH_MS', 10, 'Deltas of a room are gathered at least this long, serialized once, and written to every socket of the room.', 1, 1000),
    batchMaxMs: int(
      'PUSH_BATCH_MAX_MS',
      50,
      'The batch interval adapts to the room\'s rate: PUSH_BATCH_MS while it is quiet, stretching (rate ÷ 10 ms, e.g. 30 ms at 300 deltas/s) up to this in a busy room, so a socket gets at most 1000 ÷ this frames/s however hot the room.',
      1,
      5000,
    ),
    memorySnapshots: bool(
      'PUSH_MEMORY_SNAPSHOTS',
      false,
      'Answer a socket\'s snapshot (and a resume within it) and short polls of the ordered view from the room\'s snapshot kept in the gateway\'s memory, current with the room\'s notifications, once one was read from Redis: a connect storm costs one read, not one per socket. Off by default: after a Redis wipe the window keeps serving the pre-wipe state until the rebuild reaches the room (`npm run chaos -- redis-wipe` fails with it on: viewers shown comments twice, some never resynced).',
    ),
    deflate: bool('PUSH_DEFLATE', false, 'permessage-deflate on WebSockets (saves bandwidth, costs CPU per socket).'),
    heartbeatSec: int('PUSH_HEARTBEAT_SEC', 30, 'Ping interval; a socket that missed a pong by the next ping is closed.', 1, 3600),
    sampledAboveBytes: int('PUSH_SAMPLED_ABOVE_BYTES', 256 * 1024, 'A socket whose send buffer stays above this is switched to the sampled view.', 1024, 1 << 30),
    talliesOnlyAboveBytes: int('PUSH_TALLIES_ONLY_ABOVE_BYTES', 1024 * 1024, '... above this, to tallies only.', 1024, 1 << 30),
    closeAboveBytes: int('PUSH_CLOSE_ABOVE_BYTES', 4 * 1024 * 1024, '... above this, closed with code 4008 (too slow).', 1024, 1 << 30),
    slowForMs: int('PUSH_SLOW_FOR_MS', 2000, 'How long a buffer must stay above a threshold before the socket is degraded.', 0, 600_000),
    recoverBelowBytes: int('PUSH_RECOVER_BELOW_BYTES', 16 * 1024, 'A degraded socket whose send buffer stays below this has caught up ...', 0, 1 << 30),
    recoverForMs: int(
      'PUSH_RECOVER_FOR_MS',
      5000,
      '... for this long (doubled after each further degradation of the socket, up to 32 times): it is upgraded back to its view with a fresh snapshot (reason `recovered`).',
      0,
      600_000,
    ),
    presenceIntervalMs: int('PRESENCE_INTERVAL_MS', 3000, 'How often viewer counts are refreshed and pushed.', 200, 600_000),
    uniqueViewersTtlSec: int(
      'PRESENCE_UNIQUE_TTL_SEC',
      7 * 86_400,
      'A room\'s unique-viewer HyperLogLog (`{room}:viewers:hll`: PFADD of each viewer identity on connect and poll) is kept this long after a viewer was last added to it.',
      60,
      365 * 86_400,
    ),
    connRefreshSec: int(
      'CONN_REFRESH_SEC',
      60,
      'The connection registry (which gateway holds which users\' sockets): each gateway rewrites its entries this often (and at once when a user\'s sockets change); entries untouched for 3× this expire. A gateway\'s liveness is refreshed every PRESENCE_INTERVAL_MS.',
      1,
      86_400,
    ),
    pollMinMs: int('POLL_MIN_MS', 1000, 'Shortest nextPollMs told to polling clients (busy room).', 100, 600_000),
    pollMaxMs: int('POLL_MAX_MS', 10_000, 'Longest nextPollMs (quiet room or overloaded gateway).', 100, 600_000),
    longPollMaxSec: int('LONG_POLL_MAX_SEC', 25, 'Longest `wait` a long poll may ask for.', 1, 300),
    catchUpMaxRecords: int(
      'CATCHUP_LOG_MAX_RECORDS',
      10_000,
      'Longest gap (records of the room\'s partition) a resume or poll may fill from the log; an older position gets a fresh snapshot instead.',
      0,
      10_000_000,
    ),
    catchUpConcurrency: int('CATCHUP_LOG_CONCURRENCY', 2, 'Log reads for gaps a gateway runs at once (a few more wait; beyond that, clients get a fresh snapshot).', 1, 100),
  },
  routing: {
    refreshMs: int('ROUTING_REFRESH_MS', 1000, 'How often a gateway re-reads the routing rules from Redis: a change made with `npm run routing -- set` reaches GET /v1/connect within this.', 100, 600_000),
    recheckSec: int(
      'ROUTING_RECHECK_SEC',
      60,
      'A client that GET /v1/connect sent to polling asks again this often (`recheckMs`), so a rule change moves it without a reconnect; a WebSocket client asks at each reconnect.',
      1,
      86_400,
    ),
  },
  redis: {
    url: derived('REDIS_URL', 'redis://127.0.0.1:${REDIS_PORT}', 'Redis the product connects to.', (e) => `redis://127.0.0.1:${portOf(e, 'REDIS_PORT', 6379)}`),
    port: port('REDIS_PORT', 6379, 'Port of the local redis-server (infra).'),
    keyPrefix: str('REDIS_KEY_PREFIX', 'dm:', 'Prefix of every key the product writes, so several deployments (or tests) can share one Redis.'),
    mode: oneOf('REDIS_MODE', ['single', 'cluster'] as const, 'single', 'One redis-server, or a Redis Cluster (keys of a room share a hash tag; notifications use sharded pub/sub).'),
    clusterPorts: str('REDIS_CLUSTER_PORTS', '7000,7001,7002', 'Ports of the local three-node Redis Cluster (infra starts it when REDIS_MODE=cluster or for the tests).'),
    clusterNodes: derived('REDIS_CLUSTER_NODES', '127.0.0.1:${REDIS_CLUSTER_PORTS}', 'Seed nodes (host:port, comma-separated) of the Redis Cluster the product connects to in cluster mode.', (e) =>
      (e.REDIS_CLUSTER_PORTS || '7000,7001,7002').split(',').map((p) => `127.0.0.1:${p.trim()}`).join(','),
    ),
  },
  clickhouse: {
    url: optStr('CLICKHOUSE_URL', 'ClickHouse server URL (http://host:8123). Unset: the embedded engine (chdb) under the data folder.'),
    username: optStr('CLICKHOUSE_USER', 'ClickHouse user (server mode).'),
    password: optStr('CLICKHOUSE_PASSWORD', 'ClickHouse password (server mode).'),
    database: str('CLICKHOUSE_DATABASE', 'danmaku', 'Database holding the event log and analytics views.'),
    dataDir: derived('CLICKHOUSE_DATA_DIR', '${DANMAKU_DATA_DIR}/chdb', 'Data directory of the embedded engine (one process at a time).', (e) =>
      path.join(dataDirOf(e), 'chdb'),
    ),
  },
  archive: {
    batchRows: int('ARCHIVER_BATCH_ROWS', 5000, 'Most events in one ClickHouse insert; a larger fetched batch is split into several inserts.', 1, 1_000_000),
    batchMs: int(
      'ARCHIVER_BATCH_MS',
      1000,
      'Inserts of one partition are at least this far apart unless the batch is full (Kafka buffers meanwhile), so parts stay few at low traffic; an event waits about this long plus one fetch.',
      0,
      600_000,
    ),
    maxBackoffMs: int('ARCHIVER_MAX_BACKOFF_MS', 30_000, 'Cap of the jittered exponential backoff while ClickHouse (or the registry) is unavailable; nothing is committed meanwhile.', 100, 3_600_000),
    metricsPort: int('ARCHIVER_METRICS_PORT', 9465, 'Port of the archiver\'s Prometheus /metrics endpoint (0 = off).', 0, 65535),
    replayPageItems: int('REPLAY_PAGE_ITEMS', 500, 'Items per JSON page of the replay API when the request sets no limit.', 1, 100_000),
    replayMaxPageItems: int('REPLAY_MAX_PAGE_ITEMS', 5000, 'Largest `limit` a replay page may ask for (ndjson streams the whole range instead).', 1, 1_000_000),
    cursorSecret: optStr(
      'REPLAY_CURSOR_SECRET',
      'Secret that replay cursors are encrypted and authenticated with (AES-256-GCM under a key derived by HKDF), so a client can neither read nor forge the fold state they carry; at least 32 characters outside DEV_MODE. Default: derived from JWT_SECRET; required with public-key auth when the gateway serves replay.',
    ),
    replayChunkRows: int('REPLAY_CHUNK_ROWS', 5000, 'Rows the replay reads from ClickHouse per query: what bounds the memory of a streamed replay.', 100, 1_000_000),
  },
  demo: {
    devMode: bool('DEMO_DEV_MODE', true, '`npm start` runs its demo with DEV_MODE on (its children only); false runs it as a deployment would (JWT_SECRET required, no dev token route).'),
  },
  infra: {
    startTimeoutSec: int('INFRA_START_TIMEOUT_SEC', 180, 'How long `infra up` waits for each service to become healthy.', 5, 3600),
    java: str('JAVA_BIN', 'java', 'Java 17+ executable used for Kafka and the registry.'),
    mvn: str('MVN_BIN', 'mvn', 'Maven executable used to fetch Kafka and the registry from Maven Central.'),
    redisServer: str('REDIS_SERVER_BIN', 'redis-server', 'redis-server executable (installed with apt when absent).'),
  },
  test: {
    containers: oneOf('TEST_CONTAINERS', ['never', 'auto', 'always'] as const, 'auto', 'Start Kafka, the registry and Redis with testcontainers instead of local processes (auto: when a Docker engine is reachable).'),
    externalServices: bool('TEST_EXTERNAL_SERVICES', false, 'Tests use the endpoints above as they are and start nothing (e.g. servers run elsewhere).'),
    redisModes: str('TEST_REDIS_MODES', 'single,cluster', 'Which Redis topologies the projection int tests run against (comma-separated: single, cluster).'),
    keepServices: bool('TEST_KEEP_SERVICES', false, 'Tests leave running the servers they started (faster reruns while developing).'),
  },
} as const;

type ValueOf<T> = T extends Leaf<infer V> ? V : { [K in keyof T]: ValueOf<T[K]> };
export type Config = ValueOf<typeof schema>;

function isLeaf(x: unknown): x is Leaf<unknown> {
  return typeof x === 'object' && x !== null && 'parse' in x && 'env' in x;
}

function walk(node: Record<string, unknown>, env: Env, problems: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(node)) {
    if (isLeaf(child)) {
      try {
        out[key] = child.parse(env[child.env], env);
      } catch (err) {
        problems.push(`${child.env}: ${(err as Error).message}`);
      }
    } else {
      out[key] = walk(child as Record<string, unknown>, env, problems);
    }
  }
  return out;
}

/** Reads and validates every setting; throws one ConfigError listing all problems. */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const cfg = walk(schema as unknown as Record<string, unknown>, env, problems);
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`, problems);
  return cfg as Config;
}

export interface SettingDoc {
  path: string;
  env: string;
  default: string;
  doc: string;
}

/** Every setting, in declaration order, for `npm run config -- doc` and the README. */
export function describeConfig(): SettingDoc[] {
  const rows: SettingDoc[] = [];
  const visit = (node: Record<string, unknown>, prefix: string) => {
    for (const [key, child] of Object.entries(node)) {
      const p = prefix ? `${prefix}.${key}` : key;
      if (isLeaf(child)) rows.push({ path: p, env: child.env, default: child.defaultText, doc: child.doc });
      else visit(child as Record<string, unknown>, p);
    }
  };
  visit(schema as unknown as Record<string, unknown>, '');
  return rows;
}

export function configMarkdown(): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const lines = ['| env | default | setting | what it does |', '| --- | --- | --- | --- |'];
  for (const r of describeConfig()) lines.push(`| \`${r.env}\` | \`${esc(r.default)}\` | ${r.path} | ${esc(r.doc)} |`);
  return lines.join('\n');
}
