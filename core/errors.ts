/**
 * The one error hierarchy (after kafkajs's KafkaJSError) and the one catalogue
 * of error codes. Every error the product raises carries a stable `code` that
 * clients, logs and dead-letter headers can match on; the catalogue below
 * gives each code, once, its HTTP `status` for the gateway, whether retrying
 * can help (`retriable`) and a line of doc. A call site chooses the code, the
 * message, `details` and `cause`; never the status or retriability, so one
 * code always means the same thing (and a misspelt code does not compile).
 *
 * Codes are part of the public contract: never rename one, add a new one.
 * `npm run errors` rewrites docs/errors.md and the README's table from here
 * (a unit test fails when they drift).
 */

export interface ErrorSpec {
  /** HTTP status the gateway answers with (0: no HTTP answer at all). */
  status: number;
  /** Whether the same request may succeed later: consumers back off and retry, the gateway sends Retry-After. */
  retriable: boolean;
  doc: string;
  /** Raised by the TypeScript client (gateway/client/) on its side; the gateway never answers it. */
  client?: true;
}

export const ERRORS = {
  // Gateway: who is asking
  ERR_AUTH_REQUIRED: { status: 401, retriable: false, doc: 'The route needs `Authorization: Bearer <JWT>` (or anonymous reads are disabled); on a WebSocket, a write frame on a socket opened without `?token=`.' },
  ERR_AUTH_INVALID: { status: 401, retriable: false, doc: 'The bearer token is malformed, expired, wrongly signed or lacks `sub`/`role`; on a WebSocket, a write frame after the token of the socket expired (reconnect with a new one).' },
  ERR_FORBIDDEN: { status: 403, retriable: false, doc: 'The caller’s role may not do this (e.g. delete another user’s comment, pin without being a moderator).' },
  ERR_MUTED: { status: 403, retriable: false, doc: 'The user is muted in this room (visible mutes); `details` has `untilMs` and `reason`.' },
  ERR_BANNED: { status: 403, retriable: false, doc: 'The user is banned (POST /v1/admin/users/:user/ban): every token of theirs is refused until the ban ends; `details` has `untilMs` (null: no end) and `reason`.' },
  ERR_TOKEN_REVOKED: { status: 401, retriable: false, doc: 'The user’s tokens issued before a revocation (POST /v1/admin/users/:user/revoke; a token without `iat` counts as older) are refused: get a new token.' },
  ERR_EMOTE_ONLY: { status: 403, retriable: false, doc: 'The room is in emote-only mode and the comment has other text.' },

  // Gateway: the request itself
  ERR_VALIDATION: { status: 400, retriable: false, doc: 'Body, query or path does not match the route’s schema, or a WebSocket frame its type’s (an unknown `type`, a binary frame); `details.issues` lists where.' },
  ERR_BAD_JSON: { status: 400, retriable: false, doc: 'The body (or a WebSocket text frame) is not valid JSON, is empty where JSON is expected, or holds `__proto__` / `constructor.prototype`.' },
  ERR_INVALID_UTF8: { status: 400, retriable: false, doc: 'The body is not valid UTF-8, a string in it is not well-formed Unicode (a lone surrogate such as `"\\ud800"`), or the path has percent-escapes that do not decode as UTF-8: refused, never rewritten.' },
  ERR_BODY_TOO_LARGE: { status: 400, retriable: false, doc: 'The body is larger than GATEWAY_BODY_LIMIT_BYTES.' },
  ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, retriable: false, doc: 'The Content-Type (or Content-Encoding) of the body is not one the route accepts.' },
  ERR_BAD_REQUEST: { status: 400, retriable: false, doc: 'Any other request fastify or one of its plugins refuses (bad Content-Length, undecompressable body, …).' },
  ERR_NOT_FOUND: { status: 404, retriable: false, doc: 'No route for this method and path.' },
  ERR_TEXT_LENGTH: { status: 400, retriable: false, doc: 'The comment is empty or too long once normalised (1–200 characters).' },
  ERR_TEXT_INVISIBLE: { status: 400, retriable: false, doc: 'The comment would show nothing once normalised: only whitespace, combining marks, variation selectors, format or other invisible characters.' },
  ERR_UNKNOWN_EMOJI: { status: 400, retriable: false, doc: 'The reaction emoji is not one of GATEWAY_EMOJIS.' },
  ERR_UNKNOWN_GIFT: { status: 400, retriable: false, doc: 'The gift is not in the catalogue (GIFTS); `details.gifts` lists the ids that are.' },
  ERR_COMMENT_NOT_FOUND: { status: 404, retriable: false, doc: 'No such comment in this room: a pin or a deletion must name one that Redis’s feed or the archive holds (without an archive, only recent ones).' },
  ERR_NOT_PINNED: { status: 404, retriable: false, doc: 'Nothing is pinned in this room, so there is nothing to unpin.' },
  ERR_HELD_NOT_FOUND: { status: 404, retriable: false, doc: 'No held comment with this id in this room’s review queue: never held, released or deleted already, or past HELD_MAX_ITEMS. (A decision just made leaves the queue once the processors applied it.)' },
  ERR_IN_PROGRESS: { status: 409, retriable: true, doc: 'A write with the same `clientMsgId` is still in flight; retry after Retry-After to get its result.' },
  ERR_RATE_LIMITED: { status: 429, retriable: false, doc: 'The user’s comment, reaction or gift budget is spent (Retry-After says when it refills), or a WebSocket has WS_MAX_INFLIGHT_WRITES writes waiting for their ack (wait for acks).' },
  ERR_SLOW_MODE: { status: 429, retriable: false, doc: 'Slow mode: one comment per `slowModeSec` per user; Retry-After says when the next is allowed.' },

  ERR_TOO_MANY_CONNECTIONS: { status: 503, retriable: true, doc: 'The gateway holds as many WebSockets as it may (WS_MAX_CONNECTIONS, or its open-file limit minus GATEWAY_FD_RESERVE): connect to another gateway, or again after Retry-After. Writes and polls on this one still answer.' },

  // Gateway: replay and analytics
  ERR_RANGE_INVALID: { status: 400, retriable: false, doc: '`toMs` is not greater than `fromMs` (a feed window\'s `to` than its `from`), or a tally timeline or feed window is longer than 24 h.' },
  ERR_LIMIT_TOO_LARGE: { status: 400, retriable: false, doc: 'A JSON replay page may hold at most REPLAY_MAX_PAGE_ITEMS items (stream with format=ndjson instead).' },
  ERR_CURSOR_INVALID: { status: 400, retriable: false, doc: 'The replay (or feed window) cursor is not one this API issued.' },
  ERR_CURSOR_MISMATCH: { status: 400, retriable: false, doc: 'The replay (or feed window) cursor belongs to another room, view, order or range; repeat the request it came from.' },

  // Gateway: our side
  ERR_INTERNAL: { status: 500, retriable: false, doc: 'An unexpected failure inside the gateway (logged with its cause).' },
  ERR_SHUTTING_DOWN: { status: 503, retriable: true, doc: 'This gateway is stopping (its push hub closed): the request was not served; send it again, to another gateway or after Retry-After.' },
  ERR_DEMO_BUILD: { status: 500, retriable: false, doc: 'The demo page’s script did not bundle (retried on the next request).' },

  // Dependencies that do not answer: callers back off and retry
  ERR_KAFKA_UNAVAILABLE: { status: 503, retriable: true, doc: 'Kafka did not acknowledge (brokers unreachable, no leader, timeout); the write was not accepted.' },
  ERR_REGISTRY_UNAVAILABLE: { status: 503, retriable: true, doc: 'The schema registry is unreachable or answered 5xx.' },
  ERR_ARCHIVE_UNAVAILABLE: { status: 503, retriable: true, doc: 'The ClickHouse archive is not configured in this process or does not answer.' },
  ERR_REDIS_UNAVAILABLE: { status: 503, retriable: true, doc: 'Redis (the projections, limits, idempotency claims) does not answer; nothing was written. Retry after Retry-After.' },

  // The event log and its contract
  ERR_KAFKA_REJECTED: { status: 500, retriable: false, doc: 'Kafka refused the request for good (record too large, unknown topic or partition).' },
  ERR_KAFKA_ACK_MISMATCH: { status: 500, retriable: false, doc: 'A produce acknowledgement did not cover a record that was sent. No longer raised: such records are re-sent (idempotently) until PRODUCER send timeout, then ERR_KAFKA_UNAVAILABLE.' },
  ERR_LOG_POSITION: { status: 500, retriable: false, doc: 'An offset or a log generation is outside what a position can hold (offsets below 2^40 per generation, generations 0..8191).' },
  ERR_LOG_GENERATIONS: { status: 500, retriable: false, doc: 'The record of the event log\'s generations in Redis (`<prefix>{log:<topic>}:generations`) is not one the product wrote; fix or restore it by hand, nothing guesses a topic.' },
  ERR_REPARTITION: { status: 500, retriable: false, doc: '`npm run topics -- repartition` cannot go on: partitions that would not grow the log, a generation left unsealed, another repartition at the same time, or writers that did not switch in time (run it again: it resumes).' },
  ERR_LOG_OFFSET_GONE: { status: 500, retriable: false, doc: 'The partition no longer holds the requested offset (deleted by retention).' },
  ERR_SCHEMA_REJECTED: { status: 500, retriable: false, doc: 'The schema registry refused a request (incompatible or invalid schema, other 4xx).' },
  ERR_CODEC_NOT_INITIALISED: { status: 500, retriable: false, doc: 'The event codec was used before `init()` registered the schema (a bug).' },
  ERR_EVENT_NOT_WIRE_FORMAT: { status: 400, retriable: false, doc: 'A record is not in the Confluent wire format (dead-lettered).' },
  ERR_EVENT_SCHEMA_UNKNOWN: { status: 400, retriable: false, doc: 'A record names a schema id the registry does not know (dead-lettered).' },
  ERR_EVENT_WRONG_SCHEMA: { status: 400, retriable: false, doc: 'A record’s schema cannot be read as a RoomEvent (dead-lettered).' },
  ERR_EVENT_UNDECODABLE: { status: 400, retriable: false, doc: 'A record’s Avro body does not decode with its schema (dead-lettered).' },
  ERR_EVENT_INVALID: { status: 400, retriable: false, doc: 'An event breaks an invariant its types cannot express (dead-lettered, or refused when encoding).' },

  // Archive, import and migrations
  ERR_MIGRATION_DRIFT: { status: 500, retriable: false, doc: 'An applied ClickHouse migration was edited afterwards; add a new migration instead.' },
  ERR_REBUILD_RACED: { status: 500, retriable: false, doc: '`npm run archive -- rebuild-views`: events were archived while it ran (stop the archiver first); the rebuilt tables were dropped and the old ones kept.' },
  ERR_IMPORT_BAD_LINE: { status: 400, retriable: false, doc: '`npm run import`: a line of the file is not JSON or lacks room, offset_ms or text.' },
  ERR_IMPORT_NO_ROOM: { status: 400, retriable: false, doc: '`npm run import`: the file has no lines for the requested source room.' },
  ERR_IMPORT_ROOM_ID: { status: 400, retriable: false, doc: '`npm run import`: the target room id is not a valid room id.' },

  // Configuration and command lines
  ERR_CONFIG_INVALID: { status: 500, retriable: false, doc: 'Settings are invalid; `details.problems` lists every one (raised once, at start).' },
  ERR_USAGE: { status: 500, retriable: false, doc: 'A command line was called with wrong arguments.' },
  ERR_ROUTING_RULES: { status: 500, retriable: false, doc: 'Routing rules (`npm run routing -- set`, or the record in Redis `<prefix>routing:rules`) are not valid: a percentage outside 0..100, a gateway URL that is not http(s), a list entry that is not an id or a version pattern; `details.problems` lists every one. A gateway keeps serving the last valid rules.' },

  // The local servers (`npm run infra`)
  ERR_INFRA_USAGE: { status: 500, retriable: false, doc: '`npm run infra` was called with an unknown service or missing arguments.' },
  ERR_INFRA_TOOL_MISSING: { status: 500, retriable: false, doc: 'A tool a server needs (java, mvn, redis-server, apt-get, root) is missing; the message says how to install it.' },
  ERR_INFRA_INSTALL: { status: 500, retriable: false, doc: 'A server’s download did not contain what was expected.' },
  ERR_INFRA_START_FAILED: { status: 500, retriable: false, doc: 'A server exited while starting; the message has the last lines of its log.' },
  ERR_INFRA_START_TIMEOUT: { status: 500, retriable: false, doc: 'A server did not become healthy within INFRA_START_TIMEOUT_SEC.' },
  ERR_INFRA_UNHEALTHY: { status: 500, retriable: false, doc: 'A running server reports itself unhealthy.' },
  ERR_INFRA_PORT_BUSY: { status: 500, retriable: false, doc: 'A server’s port is taken by a process that is not a healthy instance of it.' },
  ERR_INFRA_NOT_A_PROCESS: { status: 500, retriable: false, doc: 'The service runs no process of its own (redis-cluster, embedded ClickHouse).' },
  ERR_INFRA_CLUSTER_CONFIG: { status: 500, retriable: false, doc: 'REDIS_CLUSTER_PORTS does not describe three usable node ports.' },
  ERR_INFRA_CLUSTER_BROKEN: { status: 500, retriable: false, doc: 'Some Redis Cluster nodes lost their cluster state while others kept it.' },

  // The TypeScript client (gateway/client/), on its side of the wire
  ERR_NETWORK: { status: 0, retriable: true, client: true, doc: 'The gateway could not be reached or the connection broke (no HTTP answer).' },
  ERR_NOT_MODIFIED: { status: 304, retriable: false, client: true, doc: 'The gateway answered 304 to a request that sent no validator.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;
export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];
/** Codes the gateway can answer with (the client's own are left out). */
export const GATEWAY_ERROR_CODES = ERROR_CODES.filter((c) => !(ERRORS[c] as ErrorSpec).client);
/** JSON Schema of an error answer's `code`, for the OpenAPI of the gateway's routes (`Type.Unsafe<ErrorCode>(errorCodeSchema)`). */
export const errorCodeSchema = { type: 'string', enum: GATEWAY_ERROR_CODES, description: 'A stable error code (docs/errors.md).' } as const;

export interface AppErrorOptions {
  cause?: unknown;
  details?: Record<string, unknown>;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, opts: AppErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    const spec: ErrorSpec = ERRORS[code];
    this.name = new.target.name;
    this.code = code;
    this.retriable = spec.retriable;
    this.status = spec.status;
    this.details = opts.details;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

/** Invalid or inconsistent settings; raised once, at start, listing every problem. */
export class ConfigError extends AppError {
  constructor(message: string, problems: string[]) {
    super('ERR_CONFIG_INVALID', message, { details: { problems } });
  }
}

/** A local server (Kafka, registry, Redis, ClickHouse) could not be installed or started. */
export class InfraError extends AppError {
  constructor(code: Extract<ErrorCode, `ERR_INFRA_${string}`>, message: string, opts: AppErrorOptions = {}) {
    super(code, message, opts);
  }
}

/** A dependency is unreachable right now; callers back off and retry (503, retriable, in the catalogue). */
export class UnavailableError extends AppError {
  constructor(code: Extract<ErrorCode, `ERR_${string}_UNAVAILABLE`>, message: string, opts: AppErrorOptions = {}) {
    super(code, message, opts);
  }
}

/** The error, what caused it, and the members of an AggregateError, outermost first (bounded: causes may loop). */
export function errorChain(err: unknown): object[] {
  const out: object[] = [];
  const queue: unknown[] = [err];
  while (queue.length > 0 && out.length < 16) {
    const e = queue.shift();
    if (typeof e !== 'object' || e === null || out.includes(e)) continue;
    out.push(e);
    queue.push((e as { cause?: unknown }).cause);
    if (e instanceof AggregateError) queue.push(...(e.errors as unknown[]));
  }
  return out;
}

/**
 * Node's system error codes (and undici's, for fetch) meaning the peer could
 * not be reached or dropped the connection: nothing is wrong with the request.
 */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT']);

/** Whether the error (or one of its causes) is a network failure to reach a peer, judged by its system error `code`. */
export function isUnreachable(err: unknown): boolean {
  return errorChain(err).some((e) => {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' && UNREACHABLE.has(code);
  });
}

/**
 * Whether retrying may help: an AppError says so itself (from the catalogue);
 * anything else only when it is a network failure. Adapters classify their
 * client library's own errors beside the client (`isRedisUnavailable` in
 * core/redis.ts, `isClickHouseUnavailable` in core/clickhouse.ts, the
 * registry's in schemas/codec.ts, Kafka's in topics/kafka.ts).
 */
export function isRetriable(err: unknown): boolean {
  if (err instanceof AppError) return err.retriable;
  return isUnreachable(err);
}

/** Every code as a Markdown table (docs/errors.md and the README). */
export function errorsMarkdown(): string {
  const rows = ERROR_CODES.map((code) => {
    const s: ErrorSpec = ERRORS[code];
    const status = s.client ? `${s.status === 0 ? '–' : s.status} (client)` : String(s.status);
    return `| \`${code}\` | ${status} | ${s.retriable ? 'yes' : 'no'} | ${s.doc} |`;
  });
  return ['| code | HTTP status | retriable | what it means |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

/** The whole of docs/errors.md. */
export function errorsDoc(): string {
  return `<!-- generated by \`npm run errors\` from core/errors.ts: edit the catalogue there, not this file -->
# Error codes

Every error the product raises carries a stable \`code\`: the gateway answers \`{code, message, details?}\`
with the HTTP status below, dead-letter records carry it in \`dlq.error.code\`, and the command lines print
\`<code>: <message>\`. Codes are a public contract: one is never renamed or given another meaning, only added.

**Retriable** errors may succeed later: the processors and the archiver back off (capped, jittered) and
try again without committing; the gateway adds \`Retry-After\` (from \`details.retryAfterSec\`, else 1 s).
\`ERR_RATE_LIMITED\` and \`ERR_SLOW_MODE\` are not retriable as such, but carry \`Retry-After\` too.

Codes marked *(client)* are raised by the TypeScript client (\`gateway/client/\`) on its side; an error
answer that is not \`{code, message}\` (a proxy's 502, say) reaches its users as \`ERR_HTTP_<status>\`.

${errorsMarkdown()}
`;
}

// The README's copy of the table sits between these markers, like the config table.
const README_BLOCK = /(<!-- errors:start[^\n]*-->\n)[\s\S]*?(<!-- errors:end -->)/;

/** The README with its error table regenerated (the text between the errors markers). */
export function readmeWithErrorTable(readme: string): string {
  if (!README_BLOCK.test(readme)) throw new AppError('ERR_USAGE', 'README.md has no <!-- errors:start --> … <!-- errors:end --> markers');
  return readme.replace(README_BLOCK, (_m, start: string, end: string) => `${start}${errorsMarkdown()}\n${end}`);
}
