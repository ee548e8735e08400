import fs from 'node:fs';
import avsc from 'avsc';
import type { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { describe, expect, it } from 'vitest';
import { EventCodec, loadRoomEventSchema, validateEvent } from './codec.ts';
import { comment, makeEvent, PAYLOAD_TYPES } from './events.ts';
import { readFixtures, sampleEvents, schemaVersions } from './fixtures.ts';
import { expectedTypesFile, TYPES_FILE } from './gen-types.ts';

/** An in-memory stand-in for the registry client: unit tests only (int tests use the real one). */
function memoryRegistry(): SchemaRegistry {
  const byId = new Map<number, avsc.Type>();
  return {
    register: async ({ schema }: { schema: string }) => {
      byId.set(1, avsc.Type.forSchema(JSON.parse(schema)));
      return { id: 1 };
    },
    getSchema: async (id: number) => {
      const t = byId.get(id);
      if (!t) throw Object.assign(new Error('Schema not found'), { status: 404 });
      return t;
    },
  } as unknown as SchemaRegistry;
}

describe('the contract', () => {
  it('TypeScript types are exactly what the .avsc generates (run `npm run schemas -- gen` after changing it)', () => {
    expect(fs.readFileSync(TYPES_FILE, 'utf8')).toBe(expectedTypesFile());
  });

  it('the newest history entry is the current schema (snapshot it when the schema changes)', () => {
    const newest = schemaVersions().at(-1)!;
    expect(JSON.parse(fs.readFileSync(newest.file, 'utf8'))).toEqual(loadRoomEventSchema());
  });

  it('every historical schema version is readable by the current one (BACKWARD_TRANSITIVE, checked locally)', () => {
    const reader = avsc.Type.forSchema(loadRoomEventSchema() as avsc.Schema, { wrapUnions: 'auto' });
    for (const v of schemaVersions()) {
      const writer = avsc.Type.forSchema(JSON.parse(fs.readFileSync(v.file, 'utf8')), { wrapUnions: 'auto' });
      expect(() => reader.createResolver(writer), `v${v.version}`).not.toThrow();
    }
  });

  it('has a sample for every payload kind, and every fixture of every version decodes to its expected event', () => {
    const kinds = new Set(Object.values(sampleEvents()).map((e) => e.payload.type));
    expect([...kinds].sort()).toEqual([...PAYLOAD_TYPES].sort());
    const fixtures = readFixtures();
    expect(fixtures.length).toBeGreaterThanOrEqual(PAYLOAD_TYPES.length);
    const reader = avsc.Type.forSchema(loadRoomEventSchema() as avsc.Schema, { wrapUnions: 'auto' });
    for (const f of fixtures) {
      const writer = avsc.Type.forSchema(f.writerSchema as avsc.Schema, { wrapUnions: 'auto' });
      const wire = reader.fromBuffer(f.body, reader.createResolver(writer)) as { payload: Record<string, object> };
      const [fullName, fields] = Object.entries(wire.payload)[0]!;
      expect({ ...wire, payload: { type: fullName!.split('.').pop(), ...fields } }, `v${f.version}/${f.name}`).toEqual(f.expected);
    }
  });
});

describe('EventCodec (pure, with an in-memory registry)', () => {
  it('given every sample event, when encoded and decoded, then it comes back equal, in the Confluent wire format', async () => {
    const codec = new EventCodec({ registry: memoryRegistry(), subject: 's-value' });
    expect(await codec.init()).toBe(1);
    for (const ev of Object.values(sampleEvents())) {
      const buf = codec.encode(ev);
      expect(buf[0]).toBe(0);
      expect(buf.readUInt32BE(1)).toBe(1);
      expect(await codec.decode(buf)).toEqual(ev);
    }
  });

  it('rejects bytes that are not the wire format, unknown schema ids and corrupt bodies with stable codes', async () => {
    const codec = new EventCodec({ registry: memoryRegistry(), subject: 's-value' });
    await codec.init();
    await expect(codec.decode(Buffer.from('hello'))).rejects.toMatchObject({ code: 'ERR_EVENT_NOT_WIRE_FORMAT' });
    await expect(codec.decode(null)).rejects.toMatchObject({ code: 'ERR_EVENT_NOT_WIRE_FORMAT' });
    const good = codec.encode(makeEvent({ roomId: 'r', actor: { userId: 'u', role: 'viewer' }, payload: comment('hi') }));
    const unknownId = Buffer.from(good);
    unknownId.writeUInt32BE(99, 1);
    await expect(codec.decode(unknownId)).rejects.toMatchObject({ code: 'ERR_EVENT_SCHEMA_UNKNOWN' });
    await expect(codec.decode(good.subarray(0, 12))).rejects.toMatchObject({ code: 'ERR_EVENT_UNDECODABLE' });
  });

  it('refuses to encode events that break invariants', () => {
    const actor = { userId: 'u', role: 'viewer' as const };
    expect(validateEvent(makeEvent({ roomId: 'r', actor, payload: { type: 'ReactionAdded', emoji: 'heart', count: 0 } }))).toMatch(/count/);
    expect(validateEvent(makeEvent({ roomId: 'r', actor, payload: comment('x', { color: 0x1000000 }) }))).toMatch(/color/);
    expect(validateEvent(makeEvent({ roomId: '', actor, payload: comment('x') }))).toMatch(/roomId/);
    expect(validateEvent(makeEvent({ roomId: 'r', actor, payload: comment('x') }))).toBeUndefined();
  });

  it('refuses to encode a string that is not well-formed Unicode (Avro would write a lone surrogate as ED A0 80)', async () => {
    const codec = new EventCodec({ registry: memoryRegistry(), subject: 's-value' });
    await codec.init();
    const actor = { userId: 'u', role: 'viewer' as const };
    for (const e of [
      makeEvent({ roomId: 'r', actor, payload: comment('a\ud800b') }),
      makeEvent({ roomId: 'r', actor: { userId: '\udfff', role: 'viewer' }, payload: comment('x') }),
      makeEvent({ roomId: 'r', actor, payload: { type: 'RoomSettingsChanged', slowModeSec: null, emoteOnly: null, extra: { k: 'v\ud83d' } } }),
    ]) {
      expect(() => codec.encode(e)).toThrow(expect.objectContaining({ code: 'ERR_EVENT_INVALID', message: expect.stringMatching(/well-formed/) }));
    }
    // Paired surrogates (astral characters) are fine, and come back as they went.
    const ok = makeEvent({ roomId: 'r', actor, payload: comment('🏴󠁧󠁢󠁥󠁮󠁧󠁿 👨‍👩‍👧 😀') });
    expect(await codec.decode(codec.encode(ok))).toEqual(ok);
  });
});

describe('registry failures', () => {
  /** The code and retriability of decoding a record whose schema id the registry fails to serve with `err`. */
  async function decodeFailingWith(err: Error): Promise<[string, boolean]> {
    const registry = memoryRegistry();
    registry.getSchema = async () => {
      throw err;
    };
    const codec = new EventCodec({ registry, subject: 's-value' });
    await codec.init();
    const buf = Buffer.from(codec.encode(makeEvent({ roomId: 'r', actor: { userId: 'u', role: 'viewer' }, payload: comment('hi') })));
    buf.writeUInt32BE(7, 1); // an id the codec has not cached: it asks the registry
    const e = (await codec.decode(buf).catch((x: unknown) => x)) as { code: string; retriable: boolean };
    return [e.code, e.retriable];
  }
  // What @kafkajs/confluent-schema-registry throws, as seen against the real registry.
  const responseError = (status: number, message: string) => Object.assign(new Error(message), { name: 'ResponseError', status });

  it('not found is the record’s fault (dead-lettered); no answer is retried; a refusal is not', async () => {
    expect(await decodeFailingWith(responseError(404, "danmaku - No content with ID '7' was found."))).toEqual(['ERR_EVENT_SCHEMA_UNKNOWN', false]);
    // The client reports a connection that failed as status 400, with the system error only in its message.
    expect(await decodeFailingWith(responseError(400, 'danmaku - Error, status 400: connect ECONNREFUSED 127.0.0.1:8081'))).toEqual(['ERR_REGISTRY_UNAVAILABLE', true]);
    expect(await decodeFailingWith(responseError(503, 'danmaku - Service Unavailable'))).toEqual(['ERR_REGISTRY_UNAVAILABLE', true]);
    expect(await decodeFailingWith(responseError(422, 'danmaku - Invalid schema'))).toEqual(['ERR_SCHEMA_REJECTED', false]);
  });
});
