/**
 * The driver of `npm run fuzz`: starts a private world (processors +
 * moderation, an archiver with a gateway in one process over a private
 * embedded ClickHouse, and a DEV_MODE gateway for the dev token route), then
 * throws the generated cases of fuzz/arbitraries.ts at it from outside, as an
 * attacker would, and judges every answer against the case's classification:
 *
 * - `5xx`: any HTTP answer of 500 or more (a replay stream that ends in an
 *   error line counts), or a WebSocket closed with 1011;
 * - `crashes`: a service process that exited (health of every process after
 *   each batch of cases and at the end; a crashed one is restarted so the run
 *   goes on);
 * - `accepted-invalid`: an invalid case answered 2xx (a WebSocket that got
 *   its snapshot), a mutated cursor accepted, a poison record that was not
 *   dead-lettered; and, where the answer itself is the promise, an `odd`
 *   one: a mutated cursor refused with a code other than the cursor's own
 *   (or the schema's), a poison record dead-lettered with a reason it should
 *   not have (the verdict stays `odd` in the report, but the run fails).
 * Valid cases that were refused are reported too, but counted apart.
 *
 * Each case is generated and run through fast-check (`fc.check` with one run
 * and a seed derived from the run's seed, the family and the case's index),
 * so the first counterexamples of each kind are shrunk against the live
 * system and can be replayed alone: `npm run fuzz -- --seed S --replay
 * family:index`. Requests run with modest concurrency; waits are conditions
 * with deadlines, never sleeps.
 */
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { SchemaType } from '@kafkajs/confluent-schema-registry';
import fc from 'fast-check';
import WebSocket from 'ws';
import { decodeCursor, encodeCursor, type ReplayCursor } from '../archive/replay.ts';
import { REPO_ROOT } from '../core/config.ts';
import { PROJECTION_NAMES } from '../pipelines/catalog.ts';
import { archiverGroup, groupOf, liveGroupOf, moderatorGroupOf } from '../pipelines/naming.ts';
import { createRegistry, EventCodec } from '../schemas/codec.ts';
import { comment, makeEvent } from '../schemas/events.ts';
import { SCHEMA_FILE } from '../schemas/gen-types.ts';
import { subjectFor } from '../schemas/registry.ts';
import { replayCursorKey } from '../services/root.ts';
import { freePort, startWorld, type World } from '../services/world.ts';
import { ServiceProcess } from '../services/spawn.ts';
import { waitFor } from '../test/helpers.ts';
import { logClient } from '../topics/client.ts';
import { DLQ_HEADERS } from '../topics/consumer.ts';
import type { LogAdmin, LogClient, LogConsumer, LogProducer } from '../topics/kafka.ts';
import {
  ARBITRARIES,
  AUTHOR_REF,
  FAMILIES,
  FOREIGN_SCHEMAS,
  PAYLOADS,
  ROOM_REF,
  SEED_PLACEHOLDER,
  SEEDS,
  SHARES,
  eventBytes,
  poisonRoom,
  sampleEvent,
  seedAuthor,
  seedRoom,
  type AuthSpec,
  type BodySpec,
  type Case,
  type CursorCase,
  type Family,
  type Grant,
  type HttpCase,
  type PoisonCase,
  type TokenSpec,
  type WsCase,
} from './arbitraries.ts';

export interface FuzzOptions {
  /** Cases across every family (default 100,000), spread by SHARES. */
  cases: number;
  seed: number;
  /** HTTP requests in flight (default 16); WebSocket and cursor cases run at half that. */
  concurrency?: number;
  /** Only these families (the others are not run). */
  only?: Family[];
  /** Run one case alone (and shrink it when it fails). */
  replay?: { family: Family; index: number };
  /** Where progress and the report go (default: stdout). */
  log?: (line: string) => void;
  /** Echo the service processes' output. */
  echo?: boolean;
}

export type Verdict = 'ok' | '5xx' | 'accepted-invalid' | 'valid-refused' | 'no-answer' | 'odd';

export interface Outcome {
  status?: number;
  code?: string;
  message?: string;
  /** No HTTP answer (connection refused or reset, timeout). */
  error?: string;
  ms: number;
  /** WebSocket: the first message's type, how it closed. */
  first?: string;
  close?: number;
  closeReason?: string;
  /** WebSocket: what happened after the frames were sent. */
  afterFrames?: string;
  /** Poison: where the record went. */
  poison?: string;
  /** Anything else worth printing (an ndjson error line, server log lines). */
  note?: string;
}

export interface FamilyStats {
  cases: number;
  valid: number;
  invalid: number;
  verdicts: Record<Verdict, number>;
  /** `<status> <code>` → count (for WebSockets `ws <first or close>`; poison `dlq <code>`). */
  answers: Record<string, number>;
  ms: number;
}

export interface Finding {
  verdict: Verdict | 'crash';
  family: Family;
  index: number;
  seed: number;
  route: string;
  case: Case | undefined;
  outcome: Outcome | undefined;
  shrunk?: { case: Case; outcome: Outcome; numShrinks: number };
  detail?: string;
  /** Why the case is invalid, generalised (every distinct one gets a counterexample printed). */
  reasons?: string;
}

export interface FuzzResult {
  cases: number;
  fiveXx: number;
  crashes: number;
  acceptedInvalid: number;
  families: Partial<Record<Family, FamilyStats>>;
  /** The first few findings of each (family, verdict, route). */
  findings: Finding[];
  /** Every finding counted by (family, verdict, route, answer). */
  tally: Record<string, number>;
  /** Findings of invalid cases counted under each reason they are invalid (numbers and quoted values generalised). */
  reasons: Record<string, number>;
  /** Families that could not run all their cases, and why. */
  aborted: string[];
  ms: number;
  seed: number;
}

/** The exact last line of a run. */
export const summaryLine = (r: Pick<FuzzResult, 'cases' | 'fiveXx' | 'crashes' | 'acceptedInvalid'>) => `fuzz: ${r.cases} cases, 5xx ${r.fiveXx}, crashes ${r.crashes}, accepted-invalid ${r.acceptedInvalid}`;

/** How many cases each family gets out of `total`. */
export function planCases(total: number, only?: Family[]): Record<Family, number> {
  const fams = FAMILIES.filter((f) => !only || only.includes(f));
  const share = fams.reduce((s, f) => s + SHARES[f], 0);
  const plan = Object.fromEntries(FAMILIES.map((f) => [f, 0])) as Record<Family, number>;
  let left = total;
  fams.forEach((f, i) => {
    const n = i === fams.length - 1 ? left : Math.round((total * SHARES[f]) / share);
    plan[f] = Math.min(n, left);
    left -= plan[f];
  });
  return plan;
}

/** A 32-bit seed per (run seed, family, case): splitmix32 over the three. */
export function caseSeed(seed: number, family: Family, index: number): number {
  let z = (seed ^ Math.imul(FAMILIES.indexOf(family) + 1, 0x9e3779b9) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x21f0aafd) >>> 0;
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97) >>> 0;
  return (z ^ (z >>> 15)) | 0;
}

/** Cases are drawn biased (edges, small values) and unbiased in turn. */
const arbitraryFor = (family: Family, index: number): fc.Arbitrary<Case> => (index % 2 === 0 ? ARBITRARIES[family] : fc.noBias(ARBITRARIES[family]));

const FUZZ_ENV: Record<string, string> = {
  // Budgets large enough that no valid case is refused for being one too many.
  LIMIT_COMMENTS: '100000',
  LIMIT_COMMENTS_WINDOW_SEC: '1',
  LIMIT_REACTIONS: '100000',
  LIMIT_REACTIONS_WINDOW_SEC: '1',
  LIMIT_READS: '10000000',
  LIMIT_READS_WINDOW_SEC: '1',
  // A valid long poll holds its request at most a second.
  LONG_POLL_MAX_SEC: '1',
  // Moderation judges every comment but mutes nobody (a visible mute would refuse valid comments).
  MODERATION_OFFENSES_TO_MUTE: '0',
  MODERATION_FLOOD_MAX: '1000',
  MODERATION_REPEAT_MAX: '1000',
  ARCHIVER_BATCH_MS: '200',
};

const SHRINK_BUDGET = 120;
const SHRINK_MS = 60_000;
const SHRINK_PER_KIND = 3;
const FINDINGS_PER_KIND = 5;
const HEALTH_EVERY = 1000;

// ---------------------------------------------------------------------------
// The system under test
// ---------------------------------------------------------------------------

interface Proc {
  name: string;
  proc: ServiceProcess;
  make: () => ServiceProcess;
  url?: string;
  crashes?: number;
  /** The process instance whose exit was counted already. */
  counted?: ServiceProcess;
}

interface Seeded {
  eventId: string;
  room: string;
  author: string;
}

/** A cursor the API issued, with the request it came from. */
interface Issued {
  cursor: string;
  room: string;
  view: string;
  fromMs?: number;
  toMs?: number;
  limit: number;
}

class System {
  w!: World;
  procs: Proc[] = [];
  seeded: Seeded[] = [];
  cursors: Issued[] = [];
  /**
   * The secret the API seals cursors with, when the world's config gives the one it uses
   * (checked on an issued cursor): the fuzzer then plays an attacker who knows what a
   * cursor holds and edits it in place, without the key (see cursorRequest).
   */
  cursorKey: Buffer | undefined;
  crashes: Finding[] = [];
  private chDir = '';
  readonly agent: http.Agent;

  constructor(
    private readonly o: { echo?: boolean; concurrency: number },
    private readonly log: (l: string) => void,
  ) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency * 2 });
  }

  get secret(): string {
    return this.w.env.JWT_SECRET!;
  }
  get main(): string {
    return this.procs.find((p) => p.name === 'archiver+gateway')!.url!;
  }
  get dev(): string {
    return this.procs.find((p) => p.name === 'dev-gateway')!.url!;
  }

  async start(): Promise<void> {
    this.w = await startWorld({ processor: false, gateways: 0, env: FUZZ_ENV, prefix: 'fuzz', cleanup: true });
    this.chDir = fs.mkdtempSync(path.join(os.tmpdir(), `danmaku-fuzz-ch-`));
    const echo = (n: string) => (this.o.echo ? `  [${n}] ` : undefined);
    const env = this.w.env;
    const [mainPort, devPort] = [await freePort(), await freePort()];
    this.procs = [
      { name: 'processors+moderation', make: () => new ServiceProcess(['processors', 'moderation'], { env, echo: echo('processors') }) },
      {
        name: 'archiver+gateway',
        url: `http://127.0.0.1:${mainPort}`,
        make: () => new ServiceProcess(['archiver', 'gateway'], { env: { ...env, CLICKHOUSE_DATA_DIR: this.chDir, GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: String(mainPort), GATEWAY_ID: `fuzz-${mainPort}` }, echo: echo('archiver+gateway') }),
      },
      {
        name: 'dev-gateway',
        url: `http://127.0.0.1:${devPort}`,
        make: () => new ServiceProcess(['gateway'], { env: { ...env, DEV_MODE: 'true', GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: String(devPort), GATEWAY_ID: `fuzz-dev-${devPort}` }, echo: echo('dev-gateway') }),
      },
    ].map((p) => ({ ...p, proc: p.make() }));
    await Promise.all(this.procs.map((p) => p.proc.start()));
  }

  /** Seeded comments (targets of deletions and pins) and the replay room, through the API. */
  async seed(): Promise<void> {
    const post = async (room: string, user: string, body: Record<string, unknown>) => {
      const a = await request(this.agent, this.main, { method: 'POST', path: `/v1/rooms/${room}/comments`, headers: [['authorization', `Bearer ${this.token({ kind: 'valid', grant: { sub: user } }, {})}`], ['content-type', 'application/json']], body: Buffer.from(JSON.stringify(body)) });
      if (a.status !== 202) throw new Error(`seeding ${room}: ${a.status} ${a.body}`);
      return (JSON.parse(a.body!) as { eventId: string }).eventId;
    };
    for (let i = 0; i < SEEDS; i++) this.seeded.push({ eventId: await post(seedRoom(i), seedAuthor(i), { text: `seed ${i}` }), room: seedRoom(i), author: seedAuthor(i) });
    // The replay room: a minute of comments on the video timeline, in two rooms.
    for (let i = 0; i < 40; i++) await post('cursor-room', `u${i % 3}`, { text: `replay ${i}`, videoOffsetMs: 1000 * i, color: i * 1000 });
    for (let i = 0; i < 10; i++) await post('cursor-room-2', 'u1', { text: `other ${i}`, videoOffsetMs: 500 * i });
    const feedHas = async (room: string, ids: string[]) => {
      const a = await request(this.agent, this.main, { method: 'GET', path: `/v1/rooms/${room}/feed?limit=500` });
      const got = new Set(((JSON.parse(a.body ?? '{}') as { events?: { eventId: string }[] }).events ?? []).map((e) => e.eventId));
      return ids.every((id) => got.has(id));
    };
    await waitFor(async () => {
      for (let r = 0; r < 4; r++) if (!(await feedHas(seedRoom(r), this.seeded.filter((s) => s.room === seedRoom(r)).map((s) => s.eventId)))) return false;
      return true;
    }, { what: 'the seeded comments in the feed', timeoutMs: 60_000, intervalMs: 200 });
  }

  /** Waits for the replay room in the archive, then collects cursors of every view and a few ranges, following pages. */
  async collectCursors(refused: (what: string, o: Outcome) => void): Promise<void> {
    await waitFor(async () => {
      const a = await request(this.agent, this.main, { method: 'GET', path: '/v1/rooms/cursor-room/replay?limit=1000' });
      return a.status === 200 && (JSON.parse(a.body!) as { items: unknown[] }).items.length >= 40;
    }, { what: 'the replay room in the archive', timeoutMs: 120_000, intervalMs: 500 });
    const ranges: { fromMs?: number; toMs?: number }[] = [{}, { fromMs: 5000 }, { fromMs: 2000, toMs: 30_000 }];
    for (const view of ['live', 'moderated', 'sampled']) {
      for (const range of ranges) {
        for (const limit of [3, 7]) {
          let cursor: string | undefined;
          for (let page = 0; page < 4; page++) {
            const q = replayQuery({ room: 'cursor-room', view, ...range, limit, cursor: cursor === undefined ? undefined : encodeURIComponent(cursor) });
            const t0 = Date.now();
            const a = await request(this.agent, this.main, { method: 'GET', path: `/v1/rooms/cursor-room/replay?${q}` });
            if (a.status !== 200) {
              refused(`GET /v1/rooms/cursor-room/replay?${q}`, { ...answerOf(a), ms: Date.now() - t0 });
              break;
            }
            const next = (JSON.parse(a.body!) as { nextCursor: string | null }).nextCursor;
            if (!next) break;
            this.cursors.push({ cursor: next, room: 'cursor-room', view, ...range, limit });
            cursor = next;
          }
        }
      }
    }
    if (this.cursors.length === 0) throw new Error('the replay API issued no cursor');
    try {
      const key = replayCursorKey(this.w.cfg);
      decodeCursor(this.cursors[0]!.cursor, key);
      this.cursorKey = key;
    } catch (err) {
      this.log(`fuzz: cursor: the world's config does not open the API's cursors (${(err as Error).message}); edits are blind byte changes`);
    }
  }

  /** A token as the spec says, signed with the world's secret (or deliberately not). */
  token(t: TokenSpec, ctx: HttpCase['ctx']): string {
    const now = Math.floor(Date.now() / 1000);
    const claimsOf = (g: Grant): Record<string, unknown> => {
      const c: Record<string, unknown> = { sub: g.sub === AUTHOR_REF ? (ctx.author ?? 'nobody') : g.sub };
      if (g.role) c.role = g.role;
      if (g.rooms) c.rooms = Object.fromEntries(Object.entries(g.rooms).map(([r, role]) => [r === ROOM_REF ? (ctx.room ?? 'no-room') : r, role]));
      return c;
    };
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const sign = (payload: Record<string, unknown>, o: { alg?: string; key?: string; hash?: string } = {}) => {
      const head = `${b64({ alg: o.alg ?? 'HS256', typ: 'JWT' })}.${b64(payload)}`;
      return `${head}.${createHmac(o.hash ?? 'sha256', o.key ?? this.secret).update(head).digest('base64url')}`;
    };
    const fresh = { iat: now, exp: now + 3600 };
    switch (t.kind) {
      case 'valid':
        return sign({ ...claimsOf(t.grant), ...fresh });
      case 'expired':
        return sign({ ...claimsOf(t.grant), iat: now - 7200, exp: now - 3600 });
      case 'wrong-key':
        return sign({ ...claimsOf(t.grant), ...fresh }, { key: 'not-the-secret-of-this-deployment-at-all' });
      case 'no-exp':
        return sign({ ...claimsOf(t.grant), iat: now });
      case 'too-long':
        return sign({ ...claimsOf(t.grant), iat: now, exp: now + 8 * 24 * 3600 });
      case 'not-yet':
        return sign({ ...claimsOf(t.grant), iat: now, nbf: now + 3600, exp: now + 7200 });
      case 'alg-none':
        return `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claimsOf(t.grant), ...fresh })}.`;
      case 'alg-hs512':
        return sign({ ...claimsOf(t.grant), ...fresh }, { alg: 'HS512', hash: 'sha512' });
      case 'alg-rs256':
        return sign({ ...claimsOf(t.grant), ...fresh }, { alg: 'RS256' });
      case 'tampered': {
        const [h, , s] = sign({ ...claimsOf(t.grant), ...fresh }).split('.');
        const c = claimsOf(t.grant);
        return `${h}.${b64({ ...c, ...fresh, sub: `${String(c.sub)}x`, role: 'admin' })}.${s}`;
      }
      case 'cut-signature':
        return sign({ ...claimsOf(t.grant), ...fresh }).slice(0, -3);
      case 'bad-claims':
        return sign({ ...fresh, ...t.claims });
      case 'garbage':
        return t.text;
    }
  }

  /** Every process's health: one that exited is a crash, recorded and restarted so the run goes on. */
  async checkHealth(context: string, restart = true): Promise<number> {
    let crashed = 0;
    for (const p of this.procs) {
      // Each exit counts once (a process not restarted stays down).
      if (p.proc.health().status !== 'down' || p.counted === p.proc) continue;
      p.counted = p.proc;
      crashed++;
      const detail = `${p.name} (pid ${p.proc.pid}) exited with ${p.proc.exitCode} ${context}; its last output:\n${p.proc.output.slice(-25).map((l) => `    ${l}`).join('\n')}`;
      this.log(`fuzz: CRASH ${detail}`);
      this.crashes.push({ verdict: 'crash', family: 'http-body', index: -1, seed: 0, route: p.name, case: undefined, outcome: undefined, detail });
      p.crashes = (p.crashes ?? 0) + 1;
      // A crash loop (a record it dies on, redelivered) is counted once per crash, not restarted again;
      // during the poison family a restart would only read the same record again.
      if (p.crashes > 2 || !restart) continue;
      p.proc = p.make();
      await p.proc.start().catch((err: unknown) => this.log(`fuzz: restarting ${p.name} failed: ${(err as Error).message}`));
    }
    return crashed;
  }

  /** Recent error lines of a process (shown beside a 5xx). */
  errorLines(url: string): string[] {
    const p = this.procs.find((x) => x.url === url);
    return (p?.proc.output ?? []).filter((l) => /"level":(50|60)|Error|error/.test(l)).slice(-4);
  }

  async stop(): Promise<void> {
    this.agent.destroy();
    // A process whose event loop is stuck ignores SIGTERM: a short grace, then SIGKILL.
    await Promise.all(this.procs.map((p) => p.proc.stop(10_000)));
    await this.w?.stop();
    if (this.chDir) fs.rmSync(this.chDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

interface RawRequest {
  method: string;
  /** Path and query, exactly as sent. */
  path: string;
  headers?: [string, string][];
  body?: Buffer;
  chunked?: boolean;
  timeoutMs?: number;
}

interface RawAnswer {
  status?: number;
  body?: string;
  contentType?: string;
  error?: string;
}

/** One request on a kept-alive socket; a reused socket reset before any answer is tried once more (Node's advice). */
function request(agent: http.Agent, base: string, r: RawRequest, retried = false): Promise<RawAnswer> {
  const url = new URL(base);
  const headers: Record<string, string | string[]> = {};
  // Framing said explicitly: Node sends a DELETE's body with neither Content-Length nor chunked (the body then reads as the next request).
  if (r.body && r.body.length > 0) {
    if (r.chunked) headers['transfer-encoding'] = 'chunked';
    else headers['content-length'] = String(r.body.length);
  }
  for (const [k, v] of r.headers ?? []) {
    const key = k.toLowerCase();
    const prev = headers[key];
    headers[key] = prev === undefined ? v : [...[prev].flat(), v];
  }
  return new Promise((resolve) => {
    let settled = false;
    const done = (a: RawAnswer) => {
      if (settled) return;
      settled = true;
      resolve(a);
    };
    let req: http.ClientRequest;
    // Headers past the server's limit get a connection of their own: the server answers 431 and
    // drops the connection, and Node's client then misreads the answer on a kept-alive one.
    const big = (r.headers ?? []).reduce((n, [k, v]) => n + k.length + v.length + 4, 0) > 15_000;
    try {
      req = http.request({ host: url.hostname, port: url.port, method: r.method, path: r.path, headers, agent: big ? false : agent, setHost: true });
    } catch (err) {
      done({ error: `client refused to send: ${(err as Error).message}` });
      return;
    }
    req.setTimeout(r.timeoutMs ?? 20_000, () => req.destroy(new Error('timeout')));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= 4 * 1024 * 1024) chunks.push(c);
      });
      res.on('end', () => done({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8'), contentType: String(res.headers['content-type'] ?? '') }));
      res.on('error', (err) => done({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8'), error: err.message }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (settled) return;
      if (!retried && req.reusedSocket && err.code === 'ECONNRESET') {
        settled = true;
        void request(agent, base, r, true).then(resolve);
        return;
      }
      done({ error: `${err.code ?? ''} ${err.message}`.trim() });
    });
    if (r.body && r.body.length > 0) {
      if (r.chunked) {
        const mid = Math.floor(r.body.length / 2);
        req.write(r.body.subarray(0, mid));
        req.end(r.body.subarray(mid));
      } else req.end(r.body);
    } else req.end();
  });
}

function answerOf(a: RawAnswer): Omit<Outcome, 'ms'> {
  let code: string | undefined;
  let message: string | undefined;
  try {
    const j = JSON.parse(a.body ?? '') as { code?: unknown; message?: unknown };
    if (typeof j.code === 'string') code = j.code;
    if (typeof j.message === 'string') message = j.message.slice(0, 300);
  } catch {
    // not JSON (a HEAD, an ndjson stream, Node's own refusals)
  }
  const out: Omit<Outcome, 'ms'> = {};
  if (a.status !== undefined) out.status = a.status;
  if (code) out.code = code;
  if (message) out.message = message;
  if (a.error) out.error = a.error;
  // A stream that started with 200 and failed later says so in its last line.
  if (a.status === 200 && a.contentType?.includes('ndjson')) {
    const err = (a.body ?? '').split('\n').find((l) => l.startsWith('{"kind":"error"'));
    if (err) out.note = `ndjson ${err.slice(0, 300)}`;
  }
  return out;
}

const resolveSeeds = (s: string, sys: System) => s.replace(SEED_PLACEHOLDER, (_m, i: string) => sys.seeded[Number(i)]!.eventId);

function authHeaders(a: AuthSpec, ctx: HttpCase['ctx'], sys: System): [string, string][] {
  return a.lines.map((l) => ['authorization', `${l.scheme}${l.sep}${sys.token(l.token, ctx)}${l.tail}`]);
}

function bodyBytes(b: BodySpec, sys: System): Buffer {
  const text = resolveSeeds(b.text, sys);
  if (!text.isWellFormed()) throw new Error(`fuzz bug: a body text with a lone surrogate would be sent as U+FFFD: ${JSON.stringify(text).slice(0, 100)}`);
  let buf = Buffer.from(text, 'utf8');
  if (b.inject) {
    const at = Buffer.byteLength(text.slice(0, b.inject.at));
    buf = Buffer.concat([buf.subarray(0, at), Buffer.from(b.inject.bytes), buf.subarray(at)]);
  }
  if (b.pad) buf = Buffer.concat([buf, Buffer.alloc(b.pad, 0x20)]);
  if (b.compress === 'gzip') buf = zlib.gzipSync(buf);
  if (b.compress === 'deflate') buf = zlib.deflateSync(buf);
  if (b.compress === 'br') buf = zlib.brotliCompressSync(buf);
  return buf;
}

async function runHttp(c: HttpCase, sys: System): Promise<Outcome> {
  const headers: [string, string][] = [...authHeaders(c.auth, c.ctx, sys), ...c.headers];
  let body: Buffer | undefined;
  if (c.body) {
    body = bodyBytes(c.body, sys);
    if (c.body.contentType !== null) headers.unshift(['content-type', c.body.contentType]);
    if (c.body.secondContentType !== undefined) headers.push(['content-type', c.body.secondContentType]);
    if (c.body.encoding !== null) headers.push(['content-encoding', c.body.encoding]);
  }
  const base = c.gateway === 'dev' ? sys.dev : sys.main;
  const t0 = Date.now();
  const a = await request(sys.agent, base, { method: c.method, path: resolveSeeds(c.path, sys) + (c.query ? `?${c.query}` : ''), headers, body, chunked: c.body?.chunked });
  const out: Outcome = { ...answerOf(a), ms: Date.now() - t0 };
  if (out.status !== undefined && out.status >= 500) out.note = [out.note, ...sys.errorLines(base)].filter(Boolean).join('\n');
  return out;
}

function judgeHttp(c: { valid: boolean; allow?: string[] }, o: Outcome): Verdict {
  // An answer our client could not parse (e.g. a 431 with a body, sent to a HEAD request).
  if (o.status === undefined && /^HPE_/.test(o.error ?? '')) return 'odd';
  if (o.status === undefined) return 'no-answer';
  if (o.status >= 500 || o.note?.startsWith('ndjson')) return '5xx';
  const accepted = o.status < 400;
  if (c.valid) return accepted || (o.code !== undefined && c.allow?.includes(o.code)) ? 'ok' : 'valid-refused';
  return accepted ? 'accepted-invalid' : 'ok';
}

// ---------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------

/** Close codes a server may end a session with after odd frames (protocol error, bad data, too big, policy, going away). */
const CLEAN_CLOSES = new Set([1000, 1001, 1002, 1003, 1007, 1008, 1009]);

async function runWs(c: WsCase, sys: System): Promise<Outcome> {
  const t0 = Date.now();
  const token = c.auth.query ? sys.token(c.auth.query, {}) : '';
  const query = c.query.replace('@@token@@', encodeURIComponent(token));
  const url = `${sys.main.replace(/^http/, 'ws')}${c.path}${query ? `?${query}` : ''}`;
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of authHeaders(c.auth, {}, sys)) headers[k] = headers[k] === undefined ? v : [...[headers[k]!].flat(), v];
  const out: Outcome = { ms: 0 };
  let ws: WebSocket;
  try {
    ws = new WebSocket(url, { headers, handshakeTimeout: 10_000, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  } catch (err) {
    return { error: `client refused to connect: ${(err as Error).message}`, ms: Date.now() - t0 };
  }
  let closed = false;
  let pong = false;
  const closedP = new Promise<void>((resolve) => {
    ws.on('close', (code, reason) => {
      closed = true;
      out.close = code;
      out.closeReason = reason.toString('utf8').slice(0, 200);
      resolve();
    });
  });
  ws.on('error', (err) => {
    out.error ??= err.message;
  });
  ws.on('pong', () => (pong = true));
  const firstP = new Promise<void>((resolve) => {
    ws.once('message', (data: Buffer) => {
      try {
        out.first = String((JSON.parse(data.toString('utf8')) as { type?: unknown }).type);
      } catch {
        out.first = 'not JSON';
      }
      resolve();
    });
    ws.once('unexpected-response', (_req, res) => {
      out.status = res.statusCode;
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString('utf8')));
      res.on('end', () => {
        out.code = (/"code":"(\w+)"/.exec(body) ?? [])[1];
        resolve();
      });
      res.on('error', () => resolve());
    });
    void closedP.then(resolve);
  });
  const within = (p: Promise<unknown>, ms: number) => Promise.race([p, new Promise((r) => setTimeout(r, ms).unref())]);
  await within(firstP, 15_000);
  if (out.first === undefined && out.status === undefined && out.close === undefined) out.error ??= 'no message, close or answer within 15 s';

  if (out.first !== undefined && !closed && c.frames.length > 0) {
    for (const f of c.frames) {
      if (closed) break;
      try {
        if (f.kind === 'text') ws.send(f.text);
        else if (f.kind === 'binary') ws.send(Buffer.from(f.bytes), { binary: true });
        else if (f.kind === 'huge') ws.send(Buffer.alloc(f.size, 0x61), { binary: f.binary });
        // Sent as a text frame as they are: ws does not check what it sends.
        else if (f.kind === 'bad-utf8') ws.send(Buffer.from(f.bytes), { binary: false });
        else if (f.kind === 'ping') ws.ping(Buffer.from(f.bytes));
        else f.parts.forEach((p, i) => ws.send(p, { fin: i === f.parts.length - 1 }));
      } catch (err) {
        out.afterFrames = `send failed: ${(err as Error).message}`;
      }
    }
    // Still there? A ping must come back; else the server closed it (cleanly, one hopes).
    if (!closed) {
      pong = false;
      try {
        ws.ping(Buffer.from('fuzz'));
      } catch {
        // closing already
      }
      await within(waitFor(() => pong || closed, { timeoutMs: 10_000, intervalMs: 20 }).catch(() => undefined), 10_500);
    }
    out.afterFrames ??= closed ? `closed ${out.close}` : pong ? 'open, answers pings' : 'open, no pong within 10 s';
  }
  if (!closed) {
    ws.close(1000);
    await within(closedP, 5_000);
    if (!closed) ws.terminate();
  }
  out.ms = Date.now() - t0;
  return out;
}

function judgeWs(c: WsCase, o: Outcome): Verdict {
  if (o.status !== undefined && o.status >= 500) return '5xx';
  if (o.close === 1011) return '5xx';
  if (c.valid) {
    if (o.first !== 'snapshot') return o.error && o.status === undefined && o.close === undefined ? 'no-answer' : 'valid-refused';
  } else if (o.first !== undefined) return 'accepted-invalid'; // served at all: a snapshot, or anything else
  // After the frames: still answering pings, or closed cleanly. A frame the server must
  // refuse (over the size limit: 1009; text that is not UTF-8: 1007) ends the session
  // while our client may still be writing: the server then drops a connection with
  // unread data, the reset overtakes its close frame, and the client sees 1006.
  const refusable = c.frames.some((f) => f.kind === 'huge' || f.kind === 'bad-utf8');
  const closedWith = o.afterFrames?.startsWith('closed ') ? Number(o.afterFrames.slice(7)) : undefined;
  if (o.afterFrames && !(o.afterFrames === 'open, answers pings' || (closedWith !== undefined && (CLEAN_CLOSES.has(closedWith) || (refusable && closedWith === 1006))))) return 'odd';
  return 'ok';
}

// ---------------------------------------------------------------------------
// Cursors
// ---------------------------------------------------------------------------

/** A replay query; `cursor` (already encoded) is sent whenever given, even empty. */
function replayQuery(r: { room: string; view: string; fromMs?: number; toMs?: number; limit: number; cursor?: string; format?: string }): string {
  const q = [`view=${r.view}`, `limit=${r.limit}`];
  if (r.fromMs !== undefined) q.push(`fromMs=${r.fromMs}`);
  if (r.toMs !== undefined) q.push(`toMs=${r.toMs}`);
  if (r.format) q.push(`format=${r.format}`);
  if (r.cursor !== undefined) q.push(`cursor=${r.cursor}`);
  return q.join('&');
}

const VIEWS = ['live', 'moderated', 'sampled'];

/**
 * The request a cursor case sends: the issued cursor, changed as the mutation says, in its own
 * request or another. A cursor is base64url(version ‖ IV ‖ AES-GCM ciphertext ‖ 16-byte tag)
 * (archive/replay.ts). With `key` (the deployment's secret, which only the fuzzer knows) the
 * plaintext is known, so `edit` is the classic attack on a stream cipher: the ciphertext XORed
 * so that it decrypts to the cursor with one field changed, the tag kept; `legacy` is the old
 * format (plain JSON and an HMAC under the very same secret). Each must be refused.
 */
export function cursorRequest(c: CursorCase, cursors: Issued[], key?: Buffer): { path: string; mutated: string } {
  const base = cursors[c.base % cursors.length]!;
  const other = cursors[c.other % cursors.length]!;
  const m = c.mutation;
  const s = base.cursor;
  const sealed = Buffer.from(s, 'base64url');
  const TAG = 16;
  const HEAD = 13; // version byte and IV
  const at = (n: number) => n % Math.max(1, s.length);
  const req: Omit<Issued, 'cursor'> & { format?: string } = { room: base.room, view: base.view, limit: base.limit, ...(base.fromMs !== undefined ? { fromMs: base.fromMs } : {}), ...(base.toMs !== undefined ? { toMs: base.toMs } : {}) };
  let cursor = s;
  let raw: string | undefined;
  /** What the cursor holds: opened with the key, else the request it came from with a made-up position. */
  const plain = (): Record<string, any> => {
    if (key) {
      try {
        return decodeCursor(s, key) as unknown as Record<string, any>;
      } catch {
        // not one of ours after all: made up below
      }
    }
    return { v: 1, room: base.room, view: base.view, fromMs: base.fromMs ?? null, toMs: base.toMs ?? null, key: [1000, 3, 0, 0], resume: null };
  };
  const editField = (field: string, delta: number) => (j: Record<string, any>) => {
    if (field.startsWith('key')) {
      const k = Number(field.slice(3));
      if (Array.isArray(j.key)) j.key[k] = (Number(j.key[k]) || 0) + delta;
      else j.key = [delta, 0, 0, 0];
    } else if (field === 'offset' || field === 'partition') {
      j.resume ??= { partition: 0, offset: 0, state: {} };
      j.resume[field] = (Number(j.resume[field]) || 0) + delta;
    } else if (field === 'state') {
      j.resume ??= { partition: 0, offset: 0, state: {} };
      j.resume.state = { ...j.resume.state, shadow: [] }; // forget every shadow mute: their comments would show to all
    } else if (field === 'view') j.view = VIEWS[(VIEWS.indexOf(j.view) + 1) % VIEWS.length];
    else j[field] = (Number(j[field]) || 0) + delta;
  };
  const edited = (field: string, delta: number): Record<string, any> => {
    const j = plain();
    editField(field, delta)(j);
    return j;
  };
  switch (m.kind) {
    case 'none':
      break;
    case 'percent-encoded': {
      const set = new Set(m.mask.map(at));
      raw = [...s].map((ch, i) => (set.has(i) ? `%${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}` : encodeURIComponent(ch))).join('');
      break;
    }
    case 'other-limit':
      req.limit = m.limit;
      break;
    case 'ndjson':
      req.format = 'ndjson';
      break;
    case 'flip': {
      const i = at(m.at);
      cursor = s.slice(0, i) + String.fromCharCode(s.charCodeAt(i) ^ (1 << m.bit)) + s.slice(i + 1);
      break;
    }
    case 'truncate':
      cursor = s.slice(0, at(m.at));
      break;
    case 'append':
      cursor = s + m.text;
      break;
    case 'delete': {
      const i = at(m.at);
      cursor = s.slice(0, i) + s.slice(i + 1);
      break;
    }
    case 'case': {
      const cs = [...s];
      const i = cs.findIndex((ch, k) => k >= at(m.at) && /[A-Za-z]/.test(ch));
      const j = i >= 0 ? i : cs.findIndex((ch) => /[A-Za-z]/.test(ch));
      if (j >= 0) cs[j] = cs[j] === cs[j]!.toUpperCase() ? cs[j]!.toLowerCase() : cs[j]!.toUpperCase();
      else cs.push('A');
      cursor = cs.join('');
      break;
    }
    case 'swap-parts': {
      // The tag first, then the rest: every byte kept, in another order.
      cursor = sealed.length > TAG ? Buffer.concat([sealed.subarray(sealed.length - TAG), sealed.subarray(0, sealed.length - TAG)]).toString('base64url') : [...s].reverse().join('');
      break;
    }
    case 'cross-mac': {
      // Another issued cursor's tag on this one's ciphertext.
      const tagOf = (x: string) => Buffer.from(x, 'base64url').subarray(-TAG);
      const o = cursors.find((x) => !tagOf(x.cursor).equals(tagOf(s))) ?? other;
      const otag = tagOf(o.cursor);
      const tag = otag.equals(tagOf(s)) ? Buffer.from(otag.map((b) => b ^ 0xff)) : otag;
      cursor = Buffer.concat([sealed.subarray(0, Math.max(0, sealed.length - TAG)), tag]).toString('base64url');
      break;
    }
    case 'std-base64': {
      const std = sealed.toString('base64');
      cursor = std === s ? `${std}=` : std;
      break;
    }
    case 'edit': {
      const out = Buffer.from(sealed);
      const ct = out.subarray(HEAD, Math.max(HEAD, out.length - TAG));
      const j = key ? plain() : undefined;
      if (j && ct.length > 0) {
        // Bit-flipping: plaintext ⊕ keystream = ciphertext, so ciphertext ⊕ old ⊕ new decrypts to new.
        const before = Buffer.from(JSON.stringify(j));
        editField(m.field, m.delta)(j);
        const after = Buffer.from(JSON.stringify(j));
        for (let i = 0; i < Math.min(ct.length, before.length, after.length); i++) ct[i] = ct[i]! ^ before[i]! ^ after[i]!;
        if (out.equals(sealed)) ct[0] = ct[0]! ^ 1; // an edit that changed nothing (a field already so)
        // A shorter cursor: its ciphertext cut to length, so it decrypts to exactly the edited JSON.
        cursor = (after.length < ct.length ? Buffer.concat([out.subarray(0, HEAD + after.length), out.subarray(out.length - TAG)]) : out).toString('base64url');
      } else {
        const i = HEAD + (Math.abs(m.delta) % Math.max(1, ct.length));
        if (i < out.length) out[i] = out[i]! ^ (Math.abs(m.delta) % 255 || 1);
        cursor = out.toString('base64url');
      }
      break;
    }
    case 'forged':
      // Sealed as the API does, under a key that is not the deployment's.
      cursor = encodeCursor(edited(m.field, 7) as ReplayCursor, randomBytes(32));
      break;
    case 'legacy': {
      // The old format: readable JSON and a truncated HMAC-SHA256 under the deployment's own secret (or any).
      const body = Buffer.from(JSON.stringify(plain())).toString('base64url');
      cursor = `${body}.${createHmac('sha256', key ?? randomBytes(32)).update(body).digest().subarray(0, 18).toString('base64url')}`;
      break;
    }
    case 'other-view':
      req.view = VIEWS[(VIEWS.indexOf(base.view) + 1) % VIEWS.length]!;
      break;
    case 'other-range':
      if (m.fromMs === base.fromMs && (m.toMs ?? undefined) === base.toMs) req.fromMs = m.fromMs + 1;
      else {
        req.fromMs = m.fromMs;
        if (m.toMs === null) delete req.toMs;
        else req.toMs = m.toMs;
      }
      break;
    case 'other-room':
      req.room = m.room === base.room ? `${m.room}-x` : m.room;
      break;
    case 'repeated':
      raw = `${encodeURIComponent(s)}&cursor=${encodeURIComponent(s)}`;
      break;
  }
  if (!c.valid && cursor === s && raw === undefined && !['other-limit', 'ndjson', 'other-view', 'other-range', 'other-room'].includes(m.kind)) cursor = `${s}A`; // every mutation changes something
  return { path: `/v1/rooms/${req.room}/replay?${replayQuery({ ...req, cursor: raw ?? encodeURIComponent(cursor) })}`, mutated: cursor };
}

async function runCursor(c: CursorCase, sys: System): Promise<Outcome> {
  const { path: p } = cursorRequest(c, sys.cursors, sys.cursorKey);
  const t0 = Date.now();
  const a = await request(sys.agent, sys.main, { method: 'GET', path: p });
  const out: Outcome = { ...answerOf(a), ms: Date.now() - t0, note: `GET ${p.slice(0, 400)}` };
  if (out.status !== undefined && out.status >= 500) out.note += `\n${sys.errorLines(sys.main).join('\n')}`;
  return out;
}

function judgeCursor(c: CursorCase, o: Outcome): Verdict {
  const v = judgeHttp(c, { ...o, note: o.note?.startsWith('GET') ? undefined : o.note });
  if (v !== 'ok' || c.valid) return v;
  // Refused, as it must be: with the cursor's own codes, or the schema's when the text left the cursor alphabet.
  return ['ERR_CURSOR_INVALID', 'ERR_CURSOR_MISMATCH', 'ERR_VALIDATION'].includes(o.code ?? '') ? 'ok' : 'odd';
}

// ---------------------------------------------------------------------------
// Poison records
// ---------------------------------------------------------------------------

interface DeadLetter {
  code: string;
  group: string;
}

class PoisonRig {
  client!: LogClient;
  admin!: LogAdmin;
  producer!: LogProducer;
  dlq!: LogConsumer;
  codec!: EventCodec;
  foreignIds: number[] = [];
  /** `<partition>/<offset>` of the room events topic → its dead letters. */
  readonly dead = new Map<string, DeadLetter[]>();
  dlqRead = 0n;
  groups: string[] = [];

  constructor(private readonly sys: System) {}

  async start(): Promise<void> {
    const { w } = this.sys;
    const topic = w.env.TOPIC_ROOM_EVENTS!;
    this.client = logClient(w.cfg, 'fuzz-poison');
    this.admin = this.client.admin();
    await this.admin.connect();
    this.producer = this.client.producer({ lingerMs: 2 });
    await this.producer.connect();
    const registry = createRegistry(w.cfg.registry.url);
    this.codec = new EventCodec({ registry, subject: subjectFor(topic) });
    await this.codec.init();
    for (const [i, s] of FOREIGN_SCHEMAS.entries()) {
      const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(s) }, { subject: `${w.id}-foreign-${i}-value` });
      this.foreignIds.push(id);
    }
    // The hand-written Avro of the generators must be what the codec reads, or every verdict below means nothing.
    for (const t of PAYLOADS) {
      const wire = this.wire({ magic: 0, schema: { kind: 'writer' } }, eventBytes(sampleEvent('poison-0', t)));
      await this.codec.decode(wire).catch((err: unknown) => {
        throw new Error(`fuzz bug: the generators' Avro for ${t} does not decode: ${(err as Error).message}`);
      });
    }
    // Every consumer group of the topic: the live projections (one shared group; per projection
    // version before it), moderation and the archiver — those with committed offsets by now
    // (the seeded comments went through every one of them).
    const prefix = w.cfg.pipelines.groupPrefix;
    const naming = { keyPrefix: w.cfg.redis.keyPrefix, groupPrefix: prefix };
    const candidates = [liveGroupOf(naming), ...PROJECTION_NAMES.map((p) => groupOf(naming, p, 1)), moderatorGroupOf(naming), archiverGroup(prefix)];
    this.groups = [];
    for (const g of candidates) {
      const offsets = await this.admin.committedOffsets(g, topic);
      if ([...offsets.values()].some((o) => BigInt(o) >= 0n)) this.groups.push(g);
    }
    if (!this.groups.includes(archiverGroup(prefix)) || this.groups.length < 2) throw new Error(`the topic's consumer groups are not all found (found ${this.groups.join(', ') || 'none'})`);
    this.dlq = this.client.consumer(`${w.id}.fuzz-dlq`);
    await this.dlq.connect();
    await this.dlq.subscribe([w.env.TOPIC_DEAD_LETTER!], true);
    await this.dlq.run({
      eachBatch: async (records, ctx) => {
        for (const r of records) {
          if (r.headers[DLQ_HEADERS.sourceTopic] === topic) {
            const key = `${r.headers[DLQ_HEADERS.sourcePartition]}/${r.headers[DLQ_HEADERS.sourceOffset]}`;
            const list = this.dead.get(key) ?? [];
            list.push({ code: r.headers[DLQ_HEADERS.errorCode] ?? '?', group: r.headers[DLQ_HEADERS.consumerGroup] ?? '?' });
            this.dead.set(key, list);
          }
          this.dlqRead = BigInt(r.offset) + 1n;
        }
        if (records.length) await ctx.commit((BigInt(records[records.length - 1]!.offset) + 1n).toString());
      },
    });
  }

  wire(header: PoisonCase['header'], body: number[]): Buffer {
    if (!header) return Buffer.from(body);
    const id = header.schema.kind === 'writer' ? this.codec.schemaId : header.schema.kind === 'foreign' ? this.foreignIds[header.schema.index % this.foreignIds.length]! : header.schema.id;
    const b = Buffer.alloc(5);
    b[0] = header.magic;
    b.writeUInt32BE(id >>> 0, 1);
    return Buffer.concat([b, Buffer.from(body)]);
  }

  /** Committed offsets of every group on the room events topic. */
  async committed(): Promise<Map<string, Map<number, bigint>>> {
    const topic = this.sys.w.env.TOPIC_ROOM_EVENTS!;
    const out = new Map<string, Map<number, bigint>>();
    for (const g of this.groups) {
      const m = await this.admin.committedOffsets(g, topic);
      out.set(g, new Map([...m].map(([p, o]) => [p, BigInt(o)])));
    }
    return out;
  }

  async dlqEnd(): Promise<bigint> {
    const ends = await this.admin.endOffsets(this.sys.w.env.TOPIC_DEAD_LETTER!);
    return BigInt(ends.get(0) ?? '0');
  }

  async stop(): Promise<void> {
    await this.dlq?.disconnect();
    await this.producer?.disconnect();
    await this.admin?.disconnect();
    await this.client?.close();
  }
}

/**
 * Whether the Avro decoder alone (avsc, the schema file) gets through a
 * record's body within `ms`, in a child process, so a decoder that loops
 * cannot stall the driver. Tells the record a consumer is stuck on from the
 * ones merely waiting behind it in the same stalled process.
 */
function decodesAlone(value: Buffer, ms = 5000): Promise<'decodes' | 'refused' | 'does not finish'> {
  const script = `const avsc=require('avsc');const fs=require('fs');const t=avsc.Type.forSchema(JSON.parse(fs.readFileSync(process.argv[1],'utf8')),{wrapUnions:'auto'});const b=Buffer.from(process.argv[2],'hex');try{t.fromBuffer(b.subarray(5));process.stdout.write('decodes')}catch(e){process.stdout.write('refused')}`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', script, SCHEMA_FILE, value.toString('hex')], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', () => {
      clearTimeout(timer);
      resolve(out === 'decodes' || out === 'refused' ? out : 'does not finish');
    });
  });
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

function emptyStats(): FamilyStats {
  return { cases: 0, valid: 0, invalid: 0, verdicts: { ok: 0, '5xx': 0, 'accepted-invalid': 0, 'valid-refused': 0, 'no-answer': 0, odd: 0 }, answers: {}, ms: 0 };
}

/** A reason with its particulars generalised, so one cause counts once. */
const generalise = (why: string) => why.replace(/"(?:[^"\\]|\\.)*"/g, '"…"').replace(/\b\d+\b/g, 'N').slice(0, 160);

const routeOf = (c: Case): string => {
  switch (c.family) {
    case 'http-body':
    case 'http-query':
      return c.route;
    case 'ws':
      return 'GET /v1/rooms/:room/ws';
    case 'cursor':
      return `cursor ${c.mutation.kind}`;
    case 'poison':
      return `poison ${c.kind}`;
  }
};

const answerKey = (c: Case, o: Outcome): string => {
  if (c.family === 'ws') return o.first ? `ws ${o.first}` : o.status !== undefined ? `ws http ${o.status}${o.code ? ` ${o.code}` : ''}` : o.close !== undefined ? `ws close ${o.close}` : `ws ${o.error ?? '?'}`;
  if (c.family === 'poison') return o.poison ?? '?';
  return o.status !== undefined ? `${o.status}${o.code ? ` ${o.code}` : ''}` : `no answer (${(o.error ?? '').slice(0, 40)})`;
};

async function pool<T>(items: T[], concurrency: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** Families whose `odd` verdict fails the run: for them the code or reason of a refusal is part of the promise. */
const ODD_FAILS: ReadonlySet<Family> = new Set<Family>(['cursor', 'poison']);

export async function runFuzz(o: FuzzOptions): Promise<FuzzResult> {
  const log = o.log ?? ((l: string) => console.log(l));
  const t0 = Date.now();
  const concurrency = o.concurrency ?? 16;
  const plan = o.replay ? ({ ...Object.fromEntries(FAMILIES.map((f) => [f, 0])), [o.replay.family]: 1 } as Record<Family, number>) : planCases(o.cases, o.only);
  const result: FuzzResult = { cases: 0, fiveXx: 0, crashes: 0, acceptedInvalid: 0, families: {}, findings: [], tally: {}, reasons: {}, aborted: [], ms: 0, seed: o.seed };
  const shrinkSlots = new Map<string, number>();
  const findingSlots = new Map<string, number>();

  log(`fuzz: seed ${o.seed}; ${FAMILIES.filter((f) => plan[f] > 0).map((f) => `${f} ${plan[f]}`).join(', ')}; starting a private world…`);
  const sys = new System({ echo: o.echo, concurrency }, log);
  let lastProgress = 0;
  const total = FAMILIES.reduce((s, f) => s + plan[f], 0);
  const progressEvery = Math.max(1000, Math.min(5000, Math.round(total / 20)));
  const progress = (force = false) => {
    if (!force && result.cases - lastProgress < progressEvery) return;
    lastProgress = result.cases;
    log(`fuzz: ${result.cases}/${total} cases, 5xx ${result.fiveXx}, crashes ${result.crashes}, accepted-invalid ${result.acceptedInvalid} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  };

  const record = (family: Family, index: number, seed: number, c: Case, out: Outcome, v: Verdict, stats: FamilyStats) => {
    result.cases++;
    stats.cases++;
    if (c.valid) stats.valid++;
    else stats.invalid++;
    stats.verdicts[v]++;
    const key = answerKey(c, out);
    stats.answers[key] = (stats.answers[key] ?? 0) + 1;
    if (v === '5xx') result.fiveXx++;
    // A cursor or poison record refused for the wrong reason passed by luck: it counts as accepted.
    if (v === 'accepted-invalid' || (v === 'odd' && ODD_FAILS.has(family))) result.acceptedInvalid++;
    if (v === 'ok') return;
    const route = routeOf(c);
    const tallyKey = `${family} | ${v} | ${route} | ${key}`;
    result.tally[tallyKey] = (result.tally[tallyKey] ?? 0) + 1;
    for (const why of new Set(c.why.map(generalise))) {
      const reason = `${family} | ${v} | ${why}`;
      result.reasons[reason] = (result.reasons[reason] ?? 0) + 1;
    }
    const reasons = c.why.map(generalise).join('; ');
    const slot = `${family}|${v}|${route}|${key}|${reasons}`;
    const n = findingSlots.get(slot) ?? 0;
    if (n < FINDINGS_PER_KIND || o.replay) {
      findingSlots.set(slot, n + 1);
      const f: Finding = { verdict: v, family, index, seed, route, case: c, outcome: out, reasons };
      result.findings.push(f);
      return f;
    }
    return undefined;
  };

  /** Runs one case through fast-check: executed once; when it fails in a way still worth a counterexample, shrunk against the live system. */
  async function runCase(family: Family, index: number, stats: FamilyStats, exec: (c: Case) => Promise<{ out: Outcome; v: Verdict }>): Promise<void> {
    const seed = caseSeed(o.seed, family, index);
    let first: { c: Case; out: Outcome; v: Verdict; finding?: Finding } | undefined;
    let last: { c: Case; out: Outcome } | undefined;
    let shrinks = 0;
    let shrinkUntil = 0;
    const details = await fc.check(
      fc.asyncProperty(arbitraryFor(family, index), async (c) => {
        if (!first) {
          const { out, v } = await exec(c);
          first = { c, out, v };
          const f = record(family, index, seed, c, out, v, stats);
          if (f) first.finding = f;
          if (v === 'ok' || !f) return true;
          const slot = `${family}|${v}|${routeOf(c)}`;
          const used = shrinkSlots.get(slot) ?? 0;
          if (used >= SHRINK_PER_KIND && !o.replay) return true;
          shrinkSlots.set(slot, used + 1);
          shrinkUntil = Date.now() + SHRINK_MS;
          return false;
        }
        // Shrinking runs against the live system: bounded in steps and in time.
        if (++shrinks > SHRINK_BUDGET || Date.now() > shrinkUntil) return true;
        const { out, v } = await exec(c);
        if (v !== first.v) return true;
        last = { c, out };
        return false;
      }),
      { seed, numRuns: 1 },
    );
    if (details.failed && first?.finding && last) first.finding.shrunk = { case: last.c, outcome: last.out, numShrinks: details.numShrinks };
  }

  /** The case at `index` as it was generated (for families run in batches). */
  const generated = async (family: Family, index: number): Promise<Case> => {
    let value: Case | undefined;
    await fc.check(fc.asyncProperty(arbitraryFor(family, index), async (c) => void (value = c)), { seed: caseSeed(o.seed, family, index), numRuns: 1 });
    return value!;
  };

  try {
    await sys.start();
    log(`fuzz: world ${sys.w.id} up in ${((Date.now() - t0) / 1000).toFixed(0)} s (main gateway ${sys.main}, dev gateway ${sys.dev}); seeding…`);
    await sys.seed();

    const indices = (family: Family) => (o.replay ? [o.replay.index] : Array.from({ length: plan[family] }, (_, i) => i));
    for (const family of FAMILIES) {
      if (plan[family] === 0) continue;
      const stats = emptyStats();
      result.families[family] = stats;
      const f0 = Date.now();
      log(`fuzz: ${family}: ${plan[family]} cases`);
      try {
        if (family === 'cursor') {
          await sys.collectCursors((what, out) => {
            log(`fuzz: VALID-REFUSED a real cursor's next page: ${what} → ${out.status} ${out.code ?? ''} ${out.message ?? ''}`);
            result.tally[`cursor | valid-refused | next page of an issued cursor | ${out.status} ${out.code ?? ''}`] = (result.tally[`cursor | valid-refused | next page of an issued cursor | ${out.status} ${out.code ?? ''}`] ?? 0) + 1;
          });
          log(`fuzz: cursor: ${sys.cursors.length} cursors issued by the API`);
        }
        if (family === 'poison') {
          await runPoison(sys, indices(family), stats, generated, record, log, result);
        } else {
          const exec = async (c: Case): Promise<{ out: Outcome; v: Verdict }> => {
            if (c.family === 'http-body' || c.family === 'http-query') {
              const out = await runHttp(c, sys);
              return { out, v: judgeHttp(c, out) };
            }
            if (c.family === 'ws') {
              const out = await runWs(c, sys);
              return { out, v: judgeWs(c, out) };
            }
            if (c.family === 'cursor') {
              const out = await runCursor(c, sys);
              return { out, v: judgeCursor(c, out) };
            }
            throw new Error(`no executor for ${c.family}`);
          };
          const all = indices(family);
          const conc = family.startsWith('http') ? concurrency : Math.max(2, concurrency / 2);
          for (let i = 0; i < all.length; i += HEALTH_EVERY) {
            await pool(all.slice(i, i + HEALTH_EVERY), conc, (index) => runCase(family, index, stats, exec));
            result.crashes += await sys.checkHealth(`during ${family} cases ${all[i]}–${all[Math.min(all.length, i + HEALTH_EVERY) - 1]}`);
            progress();
          }
        }
      } catch (err) {
        // A family that cannot run (the archive never answering, say) is reported, and the others still run.
        result.aborted.push(`${family}: ${(err as Error).message.split('\n')[0]}`);
        log(`fuzz: ${family}: could not run to the end: ${(err as Error).message.split('\n')[0]}`);
        result.crashes += await sys.checkHealth(`during ${family}`);
      }
      stats.ms = Date.now() - f0;
      log(`fuzz: ${family}: ${stats.cases} cases (${stats.valid} valid, ${stats.invalid} invalid) in ${(stats.ms / 1000).toFixed(0)} s; ${Object.entries(stats.verdicts).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ')}`);
    }
    result.crashes += await sys.checkHealth('at the end', false);
  } finally {
    result.findings.push(...sys.crashes);
    await sys.stop().catch((err: unknown) => log(`fuzz: stopping the world: ${(err as Error).message}`));
  }
  result.ms = Date.now() - t0;
  report(result, log);
  return result;
}

/** Poison in batches: each record followed by a valid event of the same room; every consumer group must dead-letter the one and apply the other. */
async function runPoison(
  sys: System,
  indices: number[],
  stats: FamilyStats,
  generated: (f: Family, i: number) => Promise<Case>,
  record: (family: Family, index: number, seed: number, c: Case, out: Outcome, v: Verdict, stats: FamilyStats) => Finding | undefined,
  log: (l: string) => void,
  result: FuzzResult,
): Promise<void> {
  const rig = new PoisonRig(sys);
  await rig.start();
  const topic = sys.w.env.TOPIC_ROOM_EVENTS!;
  try {
    const BATCH = 50;
    // Records that may stall a consumer for good (block counts) go last, so every other kind is judged first.
    const all = await Promise.all(indices.map(async (i) => ({ index: i, c: (await generated('poison', i)) as PoisonCase })));
    const ordered = [...all.filter((x) => x.c.kind !== 'block-count'), ...all.filter((x) => x.c.kind === 'block-count')];
    for (let b = 0; b < ordered.length; b += BATCH) {
      const cases = ordered.slice(b, b + BATCH);
      const sent: { index: number; c: PoisonCase; partition: number; offset: bigint; bytes: Buffer; validId: string }[] = [];
      // In order, room by room: the poison record, then a valid comment right behind it.
      const sends = cases.flatMap(({ index, c }) => {
        const room = poisonRoom(c.room);
        const bytes = rig.wire(c.header, c.body);
        const valid = makeEvent({ roomId: room, actor: { userId: 'u-poison', role: 'viewer' }, payload: comment(`after poison ${index}`) });
        return [
          rig.producer.send({ topic, key: room, value: bytes, headers: { 'fuzz-case': String(index) } }).then((ack) => sent.push({ index, c, partition: ack.partition, offset: BigInt(ack.offset), bytes, validId: valid.eventId })),
          rig.producer.send({ topic, key: room, value: rig.codec.encode(valid) }),
        ];
      });
      await Promise.all(sends);
      sent.sort((x, y) => x.index - y.index);
      const lastOffset = new Map<number, bigint>();
      for (const s of sent) lastOffset.set(s.partition, (lastOffset.get(s.partition) ?? -1n) < s.offset + 1n ? s.offset + 1n : lastOffset.get(s.partition)!);

      // Done when every group committed past the batch and the dead letters are all read.
      let committed = new Map<string, Map<number, bigint>>();
      const settled = await waitFor(async () => {
        committed = await rig.committed();
        for (const g of rig.groups) for (const [p, o] of lastOffset) if ((committed.get(g)?.get(p) ?? -1n) <= o) return false;
        return rig.dlqRead >= (await rig.dlqEnd());
      }, { what: 'every group past the poison batch', timeoutMs: 60_000, intervalMs: 250 }).then(() => true, () => false);

      // Per group and partition, the committed offset is the next record it will apply: a
      // record below it that left no dead letter was applied; at or above it, the group
      // has not got past it, and the first such record not dead-lettered is what it is stuck on.
      const at = (g: string, p: number) => committed.get(g)?.get(p) ?? -1n;
      const deadBy = (s: (typeof sent)[number], g: string) => (rig.dead.get(`${s.partition}/${s.offset}`) ?? []).some((d) => d.group === g);
      const inOrder = [...sent].sort((x, y) => x.partition - y.partition || (x.offset < y.offset ? -1 : 1));
      const blocker = (g: string, p: number) => inOrder.find((s) => s.partition === p && s.offset >= at(g, p) && !deadBy(s, g));
      const stalled: string[] = [];
      let behind = 0;
      for (const s of inOrder) {
        const dead = rig.dead.get(`${s.partition}/${s.offset}`) ?? [];
        const missing = rig.groups.filter((g) => !deadBy(s, g));
        const applied = missing.filter((g) => at(g, s.partition) > s.offset);
        const stuckHere = missing.filter((g) => at(g, s.partition) <= s.offset && blocker(g, s.partition) === s);
        const short = (g: string) => g.slice(sys.w.cfg.pipelines.groupPrefix.length);
        let v: Verdict = 'ok';
        let where: string;
        if (applied.length > 0) {
          v = 'accepted-invalid';
          where = `not dead-lettered: applied by ${applied.map(short).join(', ')}${dead.length ? ` (dead-lettered by ${[...new Set(dead.map((d) => `${short(d.group)} ${d.code}`))].join(', ')})` : ''}`;
        } else if (stuckHere.length > 0) {
          // Groups of one process stall together: only a record the decoder cannot get through is to blame.
          const alone = s.c.header?.schema.kind === 'writer' && s.c.header.magic === 0 ? await decodesAlone(s.bytes) : 'refused';
          stalled.push(`${s.partition}/${s.offset}${alone === 'does not finish' ? ' (culprit)' : ''}`);
          if (alone !== 'does not finish') {
            behind++;
            continue;
          }
          v = 'accepted-invalid';
          where = `not dead-lettered: ${stuckHere.map(short).join(', ')} stuck on it (not past it within 60 s; avsc alone does not decode it within 5 s)`;
        } else if (missing.length > 0) {
          behind++; // waiting behind a stuck record: not judged
          continue;
        } else {
          const codes = [...new Set(dead.map((d) => d.code))];
          where = `dlq ${codes.join(',')}`;
          if (codes.some((c) => !s.c.expect.includes(c))) v = 'odd';
        }
        const out: Outcome = { ms: 0, poison: where, note: `partition ${s.partition} offset ${s.offset}; ${s.bytes.length} bytes: ${s.bytes.subarray(0, 80).toString('hex')}${s.bytes.length > 80 ? '…' : ''}` };
        record('poison', s.index, caseSeed(result.seed, 'poison', s.index), s.c, out, v, stats);
      }
      if (stalled.length > 0 && !stalled.some((x) => x.endsWith('(culprit)'))) log('fuzz: poison: consumers are stuck, yet every record they wait on decodes alone: see the processes\' output');

      // The valid comments behind the poison: applied (in the ordered feed of their room).
      if (settled && stalled.length === 0) {
        const want = new Map<string, string[]>();
        for (const s of sent) want.set(poisonRoom(s.c.room), [...(want.get(poisonRoom(s.c.room)) ?? []), s.validId]);
        const missing: string[] = [];
        await waitFor(async () => {
          missing.length = 0;
          for (const [room, ids] of want) {
            const a = await request(sys.agent, sys.main, { method: 'GET', path: `/v1/rooms/${room}/feed?limit=500` });
            const have = new Set(((JSON.parse(a.body ?? '{}') as { events?: { eventId: string }[] }).events ?? []).map((e) => e.eventId));
            missing.push(...ids.filter((id) => !have.has(id)));
          }
          return missing.length === 0;
        }, { timeoutMs: 30_000, intervalMs: 250 }).catch(() => undefined);
        if (missing.length > 0) {
          log(`fuzz: VALID-REFUSED ${missing.length} valid comments produced behind poison records never reached the feed (e.g. ${missing[0]})`);
          result.tally[`poison | valid-refused | valid record behind poison not applied | -`] = (result.tally[`poison | valid-refused | valid record behind poison not applied | -`] ?? 0) + missing.length;
        }
      }
      result.crashes += await sys.checkHealth(`during poison batch ${b / BATCH}`, false);
      log(`fuzz: poison batch ${b / BATCH + 1}/${Math.ceil(ordered.length / BATCH)}: ${sent.length} records, ${stalled.length ? `consumers STUCK on ${stalled.join(', ')} (${behind} records behind them not judged)` : 'consumers moved on'}`);
      if (stalled.length > 0) {
        log('fuzz: poison: the consumers are stuck; the remaining poison cases are not run');
        break;
      }
    }
  } finally {
    await rig.stop();
  }
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

/** A case as JSON, long strings cut in the middle (a 17,000-byte header stays readable). */
const show = (v: unknown, max = 3000) => {
  const s = JSON.stringify(v, (_k, x: unknown) => {
    if (typeof x === 'string' && x.length > 160) return `${x.slice(0, 60)}…(${x.length} chars)…${x.slice(-20)}`;
    // Bytes (a poison record's body) as hex.
    if (Array.isArray(x) && x.length > 16 && x.every((b) => typeof b === 'number')) return `hex ${Buffer.from(x as number[]).toString('hex')}`;
    return x;
  });
  return s.length > max ? `${s.slice(0, max)}… (${s.length} chars)` : s;
};

function describe(o: Outcome | undefined): string {
  if (!o) return '';
  const parts = [
    o.status !== undefined ? `HTTP ${o.status}` : '',
    o.code ?? '',
    o.message ? JSON.stringify(o.message) : '',
    o.first ? `first message ${o.first}` : '',
    o.close !== undefined ? `closed ${o.close} ${JSON.stringify(o.closeReason ?? '')}` : '',
    o.afterFrames ? `after frames: ${o.afterFrames}` : '',
    o.poison ?? '',
    o.error ? `error: ${o.error}` : '',
  ].filter(Boolean);
  return `${parts.join(' ')}${o.note ? `\n      ${o.note.split('\n').join('\n      ')}` : ''}`;
}

function report(r: FuzzResult, log: (l: string) => void): void {
  log('');
  log(`fuzz: done in ${(r.ms / 1000).toFixed(0)} s (seed ${r.seed})`);
  for (const a of r.aborted) log(`fuzz: INCOMPLETE ${a}`);
  for (const [f, s] of Object.entries(r.families)) {
    const top = Object.entries(s.answers)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8)
      .map(([k, n]) => `${k} ×${n}`)
      .join('; ');
    log(`  ${f.padEnd(10)} ${String(s.cases).padStart(6)} cases (${s.valid} valid / ${s.invalid} invalid), ${(s.ms / 1000).toFixed(0)} s — ${Object.entries(s.verdicts).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ')}`);
    log(`             answers: ${top}`);
  }
  const tally = Object.entries(r.tally).sort((a, b) => b[1] - a[1]);
  if (tally.length) {
    log('');
    log('fuzz: everything that was not fine (family | verdict | route | answer: count):');
    for (const [k, n] of tally) log(`  ${k}: ${n}`);
  }
  const reasons = Object.entries(r.reasons).sort((a, b) => b[1] - a[1]);
  if (reasons.length) {
    log('');
    log('fuzz: the same, by why the cases are invalid (family | verdict | reason: count; a case counts under each of its reasons):');
    for (const [k, n] of reasons) log(`  ${k}: ${n}`);
  }
  const order: (Verdict | 'crash')[] = ['crash', '5xx', 'accepted-invalid', 'valid-refused', 'no-answer', 'odd'];
  for (const kind of order) {
    const fs_ = r.findings.filter((f) => f.verdict === kind);
    if (fs_.length === 0) continue;
    log('');
    log(`fuzz: ${kind} — first counterexamples:`);
    // Two per route, and one for every distinct reason.
    const seen = new Map<string, number>();
    const reasonsShown = new Set<string>();
    for (const f of fs_) {
      const k = `${f.family}|${f.route}`;
      const why = `${f.family}|${f.reasons ?? ''}`;
      if ((seen.get(k) ?? 0) >= 2 && reasonsShown.has(why)) continue;
      seen.set(k, (seen.get(k) ?? 0) + 1);
      reasonsShown.add(why);
      if (f.verdict === 'crash') {
        log(`  ${f.detail}`);
        continue;
      }
      log(`  [${f.family} #${f.index}] ${f.route}${f.case?.valid ? '' : ` — invalid: ${(f.case?.why ?? []).join('; ')}`}`);
      log(`    case:   ${show(f.case)}`);
      log(`    answer: ${describe(f.outcome)}`);
      if (f.shrunk) {
        log(`    shrunk (${f.shrunk.numShrinks} steps): ${show(f.shrunk.case)}${f.shrunk.case.valid ? '' : `\n      invalid: ${f.shrunk.case.why.join('; ')}`}`);
        log(`    answer: ${describe(f.shrunk.outcome)}`);
      }
      log(`    replay: npm run fuzz -- --seed ${r.seed} --replay ${f.family}:${f.index}   (fast-check seed ${f.seed})`);
    }
  }
  log('');
}
