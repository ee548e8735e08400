/**
 * The only way code turns events into bytes and back: the Confluent wire
 * format (magic byte 0, 4-byte big-endian schema id, Avro body), schemas held
 * by the registry through @kafkajs/confluent-schema-registry, Avro by avsc.
 *
 * Decoding always resolves the writer's schema (whatever version produced the
 * record) into the current local schema, so events written under any earlier
 * version come out in today's shape; then the untyped result is checked once,
 * here, and anything that does not fit throws an EventError with a stable code
 * (the consumer routes those to the dead-letter topic).
 */
import { COMPATIBILITY, SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import avsc from 'avsc';
import fs from 'node:fs';
import { AppError, UnavailableError } from '../core/errors.ts';
import { illFormedPath } from '../core/unicode.ts';
import { checkAvroBody } from './bounded.ts';
import { PAYLOAD_TYPES, type RoomEvent, type RoomEventPayload } from './events.ts';
import { SCHEMA_FILE } from './gen-types.ts';

export class EventError extends AppError {
  constructor(
    code: 'ERR_EVENT_NOT_WIRE_FORMAT' | 'ERR_EVENT_SCHEMA_UNKNOWN' | 'ERR_EVENT_WRONG_SCHEMA' | 'ERR_EVENT_UNDECODABLE' | 'ERR_EVENT_INVALID',
    message: string,
    cause?: unknown,
  ) {
    super(code, message, { cause });
  }
}

const NAMESPACE = 'danmaku.events';
const WIRE_HEADER = 5;
// 'auto' keeps ["null", X] unions as plain values; the payload union of
// records is ambiguous, so avsc wraps it as { "<full name>": {...} }.
// (A fresh options object per parse: avsc records named types into it.)
const avroOpts = () => ({ wrapUnions: 'auto' as const });

export function loadRoomEventSchema(file = SCHEMA_FILE): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
}

type Wire = Omit<RoomEvent, 'payload'> & { payload: Record<string, Record<string, unknown>> };

export function toWire(e: RoomEvent): Wire {
  const { type, ...fields } = e.payload;
  return { ...e, payload: { [`${NAMESPACE}.${type}`]: fields } };
}

/** Checks what avsc cannot: invariants a valid event must satisfy beyond its types. */
export function validateEvent(e: RoomEvent): string | undefined {
  if (!e.eventId) return 'eventId is empty';
  if (!e.roomId) return 'roomId is empty';
  if (!e.actor.userId) return 'actor.userId is empty';
  if (!Number.isFinite(e.occurredAt) || e.occurredAt < 0) return 'occurredAt is not a time';
  const p = e.payload;
  switch (p.type) {
    case 'CommentPosted':
      if (p.color < 0 || p.color > 0xffffff) return `color ${p.color} is outside 0..0xFFFFFF`;
      return undefined;
    case 'ReactionAdded':
      if (!p.emoji) return 'emoji is empty';
      if (p.count < 1) return `count ${p.count} < 1`;
      return undefined;
    case 'CommentDeleted':
    case 'CommentPinned':
    case 'CommentUnpinned':
    case 'ModerationDecided':
      return p.targetEventId ? undefined : 'targetEventId is empty';
    case 'CommentReleased':
      if (!p.targetEventId) return 'targetEventId is empty';
      if (!p.authorId) return 'authorId is empty';
      return p.color < 0 || p.color > 0xffffff ? `color ${p.color} is outside 0..0xFFFFFF` : undefined;
    case 'UserMuted':
      return p.userId ? undefined : 'userId is empty';
    case 'RoomSettingsChanged':
      return p.slowModeSec !== null && p.slowModeSec < 0 ? `slowModeSec ${p.slowModeSec} < 0` : undefined;
    case 'StreamStarted':
    case 'StreamEnded':
      return undefined;
    case 'GiftSent':
      if (!p.giftId) return 'giftId is empty';
      if (p.count < 1) return `count ${p.count} < 1`;
      if (p.unitValue < 0 || p.value < 0) return 'a gift value is negative';
      return p.value === p.count * p.unitValue ? undefined : `value ${p.value} is not count × unitValue (${p.count} × ${p.unitValue})`;
    default: {
      const never: never = p;
      return `unknown payload ${JSON.stringify(never)}`;
    }
  }
}

function fromWire(w: Wire): RoomEvent {
  const entries = Object.entries(w.payload ?? {});
  if (entries.length !== 1) throw new EventError('ERR_EVENT_WRONG_SCHEMA', 'payload is not a single union branch');
  const [fullName, fields] = entries[0]!;
  const type = fullName.slice(fullName.lastIndexOf('.') + 1);
  if (!(PAYLOAD_TYPES as readonly string[]).includes(type)) throw new EventError('ERR_EVENT_WRONG_SCHEMA', `unknown payload type ${fullName}`);
  return { ...w, payload: { type, ...fields } as RoomEventPayload };
}

export interface CodecOptions {
  registry: SchemaRegistry;
  subject: string;
  /** Defaults to schemas/room-event.avsc. */
  schema?: Record<string, unknown>;
}

export class EventCodec {
  readonly type: avsc.Type;
  readonly subject: string;
  private readonly registry: SchemaRegistry;
  private readonly schemaJson: string;
  private writerId: number | undefined;
  /** Resolvers per writer schema id: built once, the hot path only reads. */
  private readonly resolvers = new Map<number, avsc.Resolver | null>();
  /** Writer types per schema id, for the bounds check before decoding. */
  private readonly writers = new Map<number, avsc.Type>();

  constructor(opts: CodecOptions) {
    const schema = opts.schema ?? loadRoomEventSchema();
    this.schemaJson = JSON.stringify(schema);
    this.type = avsc.Type.forSchema(schema as avsc.Schema, avroOpts());
    this.registry = opts.registry;
    this.subject = opts.subject;
  }

  /** Registers the local schema (idempotent: the same schema keeps its id) and caches the id. */
  async init(): Promise<number> {
    try {
      const { id } = await this.registry.register({ type: SchemaType.AVRO, schema: this.schemaJson }, { subject: this.subject, compatibility: COMPATIBILITY.BACKWARD_TRANSITIVE });
      this.writerId = id;
      this.resolvers.set(id, null); // same schema: no resolution needed
      this.writers.set(id, this.type);
      return id;
    } catch (err) {
      throw registryError(err, `registering ${this.subject}`);
    }
  }

  get schemaId(): number {
    if (this.writerId === undefined) throw new AppError('ERR_CODEC_NOT_INITIALISED', 'call init() before encode()');
    return this.writerId;
  }

  encode(event: RoomEvent): Buffer {
    const problem = validateEvent(event);
    if (problem) throw new EventError('ERR_EVENT_INVALID', problem);
    // Avro would write a lone surrogate as its own bytes (ED A0 80), which is
    // not UTF-8: the log holds only text every consumer can decode.
    const illFormed = illFormedPath(event);
    if (illFormed) throw new EventError('ERR_EVENT_INVALID', `${illFormed} is not well-formed Unicode (a lone surrogate)`);
    let body: Buffer;
    try {
      body = this.type.toBuffer(toWire(event));
    } catch (err) {
      throw new EventError('ERR_EVENT_INVALID', (err as Error).message, err);
    }
    const out = Buffer.allocUnsafe(WIRE_HEADER + body.length);
    out[0] = 0;
    out.writeUInt32BE(this.schemaId, 1);
    body.copy(out, WIRE_HEADER);
    return out;
  }

  /** Reads the schema id of a wire-format record without decoding it. */
  static schemaIdOf(buf: Buffer): number | undefined {
    return buf.length >= WIRE_HEADER && buf[0] === 0 ? buf.readUInt32BE(1) : undefined;
  }

  async decode(buf: Buffer | null): Promise<RoomEvent> {
    if (!buf || buf.length < WIRE_HEADER || buf[0] !== 0) {
      throw new EventError('ERR_EVENT_NOT_WIRE_FORMAT', `not Confluent wire format (${buf ? `${buf.length} bytes, first byte ${buf[0]}` : 'null value'})`);
    }
    const id = buf.readUInt32BE(1);
    const resolver = await this.resolverFor(id);
    // Counts, lengths, int widths and UTF-8 checked before avsc trusts them (bounded.ts).
    const bad = checkAvroBody(this.writers.get(id) ?? this.type, buf.subarray(WIRE_HEADER));
    if (bad) throw new EventError('ERR_EVENT_UNDECODABLE', `Avro body is not a well-formed record of schema ${id}: ${bad}`);
    let wire: Wire;
    try {
      wire = (resolver ? this.type.fromBuffer(buf.subarray(WIRE_HEADER), resolver) : this.type.fromBuffer(buf.subarray(WIRE_HEADER))) as Wire;
    } catch (err) {
      throw new EventError('ERR_EVENT_UNDECODABLE', `Avro body does not decode with schema ${id}: ${(err as Error).message}`, err);
    }
    const event = fromWire(wire);
    const problem = validateEvent(event);
    if (problem) throw new EventError('ERR_EVENT_INVALID', problem);
    return event;
  }

  private async resolverFor(id: number): Promise<avsc.Resolver | null> {
    const cached = this.resolvers.get(id);
    if (cached !== undefined) return cached;
    let writer: avsc.Type;
    try {
      writer = (await this.registry.getSchema(id)) as unknown as avsc.Type;
    } catch (err) {
      throw registryError(err, `schema id ${id}`);
    }
    let resolver: avsc.Resolver | null;
    try {
      resolver = writer.equals(this.type) ? null : this.type.createResolver(writer);
    } catch (err) {
      // The writer schema cannot be read as a RoomEvent (another record type, or incompatible).
      throw new EventError('ERR_EVENT_WRONG_SCHEMA', `schema ${id} is not a readable RoomEvent: ${(err as Error).message.split('\n')[0]}`, err);
    }
    this.resolvers.set(id, resolver);
    this.writers.set(id, writer);
    return resolver;
  }
}

/**
 * Classifies what the registry client threw. A registry that answered "not
 * found" is the record's fault; one that refused is ours; one that did not
 * answer is neither, and is retried.
 */
function registryError(err: unknown, what: string): AppError {
  const status = (err as { status?: unknown }).status;
  const message = (err as Error).message ?? String(err);
  if (status === 404) return new EventError('ERR_EVENT_SCHEMA_UNKNOWN', `${what}: not in the registry`, err);
  // The client library's own refusals carry no status; they are told apart by class name (not all are exported).
  const libRefusal = status === undefined && /^ConfluentSchemaRegistry/.test((err as Error).name ?? '');
  const refused = libRefusal || (typeof status === 'number' && status >= 400 && status < 500 && !registryUnreachable(err));
  if (refused) return new AppError('ERR_SCHEMA_REJECTED', `${what}: registry answered ${status}: ${message}`, { cause: err });
  return new UnavailableError('ERR_REGISTRY_UNAVAILABLE', `${what}: registry unreachable: ${message}`, { cause: err });
}

/**
 * The registry client's HTTP layer (mappersmith) reports a request that never
 * got an answer (connection refused or reset, DNS) as a ResponseError with
 * status 400 and drops the original error: the Node error code survives only
 * in the message ("Error, status 400: connect ECONNREFUSED …"). So this one
 * message check lives here, beside the client, and nowhere else.
 */
function registryUnreachable(err: unknown): boolean {
  const e = err as { name?: unknown; status?: unknown; message?: unknown };
  return e.name === 'ResponseError' && e.status === 400 && typeof e.message === 'string' && /\b(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|socket hang up)\b/.test(e.message);
}

export function createRegistry(url: string): SchemaRegistry {
  // Its parsed types serve only as writer schemas to resolve from, where
  // union wrapping does not matter; so no avsc options are shared with it.
  return new SchemaRegistry({ host: url, clientId: 'danmaku' });
}
