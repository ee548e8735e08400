/**
 * Writes over the viewer's WebSocket: comment, reaction, gift and delete frames
 * (protocol.ts `WriteFrame`), answered with an ack once the write is durable
 * in Kafka or a nack with the code HTTP would give. The work itself is
 * ingest.ts, the same code the HTTP routes call.
 *
 * Per socket, not per frame: the token was verified once at the upgrade (and
 * its `exp` kept: writes after it are refused with ERR_AUTH_INVALID); the
 * ban/revocation check is repeated at most every BLOCK_RECHECK_MS, beside a
 * write's own Redis round trip — between checks memory answers, since a ban
 * or a revocation also closes the user's sockets on every gateway (4403 /
 * 4401), and the recheck covers a socket that registry missed.
 *
 * Bounded: at most WS_MAX_INFLIGHT_WRITES writes of a socket wait for their
 * answer (a reaction waits up to REACTIONS_FLUSH_MS); a frame beyond that is
 * nacked at once with ERR_RATE_LIMITED (retryAfterSec 1) and not processed.
 * A socket that does not read its answers meets the push slow-consumer
 * bound: past PUSH_CLOSE_ABOVE_BYTES buffered it is closed with 4008.
 *
 * Frames are text JSON objects (ws refuses invalid UTF-8 in text frames and
 * frames above 64 KiB); anything else is nacked — ERR_BAD_JSON when it does
 * not parse, ERR_INVALID_UTF8 for a lone surrogate escape, ERR_VALIDATION for
 * a binary frame, an unknown `type` or a schema mismatch — with `id` null
 * when no valid id could be read. Nothing a client sends can crash the socket.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { FastifyBaseLogger } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import { AppError } from '../core/errors.ts';
import { illFormedPath } from '../core/unicode.ts';
import { asAppError } from './input.ts';
import type { User } from './auth.ts';
import { blockOf } from './blocks.ts';
import type { GatewayDeps } from './deps.ts';
import { CommentFrameSchema, DeleteFrameSchema, GiftFrameSchema, ReactionFrameSchema, type Accepted, type Ingest, type ReactionResult, type Writer } from './ingest.ts';
import { CLOSE, type CommentFrame, type DeleteFrame, type GiftFrame, type NackMessage, type ReactionFrame } from './protocol.ts';
import { pushMetrics } from './push/metrics.ts';
import { decodeMsgpack, encode, wireOf, type Wire } from './push/wire.ts';

/** How often a socket's writes re-check the user's ban and revocation (memory answers in between). */
export const BLOCK_RECHECK_MS = 2000;

// The same Ajv options as the HTTP bodies (app.ts): no coercion, unknown fields refused.
const ajv = new Ajv({ coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false, strict: false });
const validators: Record<string, ValidateFunction> = {
  comment: ajv.compile(CommentFrameSchema),
  reaction: ajv.compile(ReactionFrameSchema),
  delete: ajv.compile(DeleteFrameSchema),
  gift: ajv.compile(GiftFrameSchema),
};

// As input.ts: without a \u escape of a surrogate, strictly decoded text holds no lone surrogate.
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
const REPLACEMENT_UTF8 = Buffer.from('\uFFFD', 'utf8');

/** Whether a decoded MessagePack value is made of what JSON has: plain objects, arrays and primitives. */
function plainTree(v: unknown): boolean {
  const stack: unknown[] = [v];
  while (stack.length > 0) {
    const x = stack.pop();
    if (typeof x !== 'object' || x === null) {
      if (typeof x === 'bigint' || typeof x === 'symbol' || typeof x === 'function') return false;
      continue;
    }
    const proto = Object.getPrototypeOf(x) as unknown;
    if (proto !== Object.prototype && proto !== Array.prototype && proto !== null) return false;
    for (const k in x) stack.push((x as Record<string, unknown>)[k]);
  }
  return true;
}

/** Whether any string (key or value) in a decoded frame holds U+FFFD. */
function hasReplacementChar(v: unknown): boolean {
  const stack: unknown[] = [v];
  while (stack.length > 0) {
    const x = stack.pop();
    if (typeof x === 'string') {
      if (x.includes('\uFFFD')) return true;
    } else if (typeof x === 'object' && x !== null) {
      for (const k in x) {
        if (k.includes('\uFFFD')) return true;
        stack.push((x as Record<string, unknown>)[k]);
      }
    }
  }
  return false;
}

const isId = (x: unknown): x is string => typeof x === 'string' && x.length >= 1 && x.length <= 64 && x.isWellFormed();

/** secure-json-parse's refusals (what fastify's body parser answers ERR_BAD_JSON to): `__proto__`, `constructor.prototype`. */
function forbiddenKey(v: unknown): boolean {
  const stack: unknown[] = [v];
  while (stack.length > 0) {
    const x = stack.pop();
    if (typeof x !== 'object' || x === null) continue;
    if (Object.hasOwn(x, '__proto__')) return true;
    const c = (x as Record<string, unknown>).constructor;
    if (Object.hasOwn(x, 'constructor') && typeof c === 'object' && c !== null && Object.hasOwn(c, 'prototype')) return true;
    for (const k in x) stack.push((x as Record<string, unknown>)[k]);
  }
  return false;
}

function validationError(errors: ErrorObject[] | null | undefined): AppError {
  const issues = (errors ?? []).map((e) => ({ path: e.instancePath, message: e.message ?? 'is invalid' }));
  const first = issues[0];
  return new AppError('ERR_VALIDATION', first ? `frame${first.path} ${first.message}` : 'frame is invalid', { details: { issues } });
}

export function nackFrame(id: string | null, err: AppError): string {
  const msg: NackMessage = { type: 'nack', id, code: err.code, message: err.message };
  const retry = err.details?.retryAfterSec;
  if (typeof retry === 'number') msg.retryAfterSec = retry;
  else if (err.retriable) msg.retryAfterSec = 1;
  if (err.details) msg.details = err.details;
  return JSON.stringify(msg);
}

/** An ack frame, serialized by hand: the event id is a UUID and the position two integers. */
export function ackFrame(id: string, r: Accepted): string {
  return `{"type":"ack","id":${JSON.stringify(id)},"eventId":${JSON.stringify(r.eventId)},"position":{"offset":${r.position.offset},"epoch":${r.position.epoch}}${r.duplicate ? ',"duplicate":true' : ''}}`;
}

export interface SocketWritesOptions {
  room: string;
  ingest: Ingest;
  deps: GatewayDeps;
  log: FastifyBaseLogger;
  traceId: string;
}

/** The write side of one socket. Attach `onFrame` to 'message' synchronously at the upgrade; call `authenticated` once the token is known. */
export class SocketWrites {
  private user: User | null | undefined = undefined;
  private expMs = Number.POSITIVE_INFINITY;
  /** Frames that arrived before the upgrade's token check finished. */
  private early: { data: RawData; isBinary: boolean }[] = [];
  private inflight = 0;
  private block: Promise<AppError | null> | null = null;
  private blockAt = 0;
  private closed = false;
  private corked = false;
  private acks = 0;
  private nacks = 0;
  private readonly max: number;
  /** The socket's wire format: answers are encoded so, and binary frames are MessagePack on a MessagePack socket. */
  private readonly wire: Wire;

  constructor(
    private readonly ws: WebSocket,
    private readonly o: SocketWritesOptions,
  ) {
    this.max = o.deps.cfg.gateway.wsMaxInflightWrites;
    this.wire = wireOf(ws.protocol);
  }

  /** The token was checked at the upgrade (ban included): `user` is null for an anonymous socket. */
  authenticated(user: User | null): void {
    this.user = user;
    this.blockAt = this.o.deps.now();
    if (user?.exp !== undefined) this.expMs = user.exp * 1000;
    const early = this.early;
    this.early = [];
    for (const f of early) this.onFrame(f.data, f.isBinary);
  }

  close(): void {
    this.closed = true;
    this.early = [];
  }

  onFrame(data: RawData, isBinary: boolean): void {
    if (this.closed) return;
    if (this.user === undefined) {
      if (this.early.length < this.max) this.early.push({ data, isBinary });
      else this.reply(nackFrame(null, new AppError('ERR_RATE_LIMITED', 'too many frames before the connection was set up', { details: { retryAfterSec: 1 } })), 'nack');
      return;
    }
    if (this.ws.bufferedAmount > this.o.deps.cfg.push.closeAboveBytes) {
      // It writes but does not read: the push hub's slow-consumer bound holds for answers too.
      this.closed = true;
      pushMetrics.slowCloses.inc();
      this.ws.close(CLOSE.slowConsumer, 'slow consumer');
      return;
    }
    let id: string | null = null;
    try {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      let frame: unknown;
      let text: string;
      if (this.wire === 'msgpack') {
        // A MessagePack socket writes binary frames (a text frame is still read as JSON).
        if (isBinary) {
          try {
            frame = decodeMsgpack(bytes);
          } catch {
            throw new AppError('ERR_BAD_JSON', 'the frame is not one MessagePack value');
          }
          if (!plainTree(frame)) throw new AppError('ERR_BAD_JSON', 'the frame holds MessagePack a frame never has (bin, ext, the unused byte 0xC1): send maps, arrays, strings, numbers, booleans and nil');
          // msgpackr decodes bad UTF-8 as U+FFFD: refused, as HTTP refuses it, never rewritten.
          if (hasReplacementChar(frame) && !bytes.includes(REPLACEMENT_UTF8)) throw new AppError('ERR_INVALID_UTF8', 'a string in the frame is not valid UTF-8');
          if (typeof frame === 'object' && frame !== null && (forbiddenKey(frame) || illFormedPath(frame))) {
            const bad = illFormedPath(frame);
            if (bad) throw new AppError('ERR_INVALID_UTF8', `frame${bad} is not well-formed Unicode (a lone surrogate)`, { details: { path: bad } });
            throw new AppError('ERR_BAD_JSON', 'the frame holds a forbidden key');
          }
          text = '';
        } else text = bytes.toString('utf8');
      } else {
        if (isBinary) throw new AppError('ERR_VALIDATION', 'binary frames are not accepted: send JSON text frames (or connect with the danmaku.msgpack.v1 subprotocol)', { details: { issues: [{ path: '', message: 'must be a text frame' }] } });
        text = bytes.toString('utf8');
      }
      if (frame === undefined) {
        try {
          frame = JSON.parse(text);
        } catch {
          throw new AppError('ERR_BAD_JSON', 'the frame is not valid JSON');
        }
      }
      if (typeof frame !== 'object' || frame === null || Array.isArray(frame)) {
        throw new AppError('ERR_VALIDATION', 'a frame is a JSON object with `type` and `id`', { details: { issues: [{ path: '', message: 'must be object' }] } });
      }
      const f = frame as Record<string, unknown>;
      if (isId(f.id)) id = f.id;
      if ((text.includes('__proto__') || text.includes('constructor')) && forbiddenKey(f)) throw new AppError('ERR_BAD_JSON', 'the frame is not valid JSON');
      if (SURROGATE_ESCAPE.test(text)) {
        const bad = illFormedPath(f);
        if (bad) throw new AppError('ERR_INVALID_UTF8', `frame${bad} is not well-formed Unicode (a lone surrogate escape such as \\ud800)`, { details: { path: bad } });
      }
      const validate = typeof f.type === 'string' && Object.hasOwn(validators, f.type) ? validators[f.type]! : undefined;
      if (!validate) {
        throw new AppError('ERR_VALIDATION', 'frame/type must be comment, reaction, gift or delete', { details: { issues: [{ path: '/type', message: 'must be comment, reaction, gift or delete' }] } });
      }
      if (!validate(f)) throw validationError(validate.errors);
      const w = this.writer();
      if (this.inflight >= this.max) {
        throw new AppError('ERR_RATE_LIMITED', `too many writes in flight on this socket (${this.max}): wait for their acks`, { details: { retryAfterSec: 1 } });
      }
      this.dispatch(f as unknown as CommentFrame | ReactionFrame | DeleteFrame | GiftFrame, w);
    } catch (err) {
      this.refuse(id, err);
    }
  }

  /** The socket's user as a writer, or the refusal: anonymous, or the token expired. */
  private writer(): Writer {
    const user = this.user;
    if (!user) throw new AppError('ERR_AUTH_REQUIRED', 'this socket was opened without a token: writes need `?token=<JWT>` at connect');
    const now = this.o.deps.now();
    if (now >= this.expMs) throw new AppError('ERR_AUTH_INVALID', 'the token of this socket expired: reconnect with a new one');
    if (now - this.blockAt >= BLOCK_RECHECK_MS) {
      // Due: one check, shared by every write until it answers (so they stay in frame order).
      this.blockAt = now;
      const { redis, cfg } = this.o.deps;
      const check: Promise<AppError | null> = blockOf(redis, cfg.redis.keyPrefix, user.id, user.iat, now).then(
        (e) => {
          if (this.block === check) this.block = null;
          if (e) this.blocked(e);
          return e;
        },
        (err: unknown) => {
          if (this.block === check) this.block = null;
          throw err;
        },
      );
      check.catch(() => undefined);
      this.block = check;
    }
    return { user, block: this.block, traceId: this.o.traceId };
  }

  private dispatch(f: CommentFrame | ReactionFrame | DeleteFrame | GiftFrame, w: Writer): void {
    const { ingest, room } = this.o;
    const id = f.id;
    this.inflight++;
    switch (f.type) {
      case 'comment': {
        // The frame is the HTTP body plus `type` and `id`, which ingest ignores.
        ingest.comment(w, room, f).then(
          (r) => this.answered(ackFrame(id, r), 'ack'),
          (err: unknown) => this.answered(this.nackOf(id, err), 'nack'),
        );
        return;
      }
      case 'reaction':
        ingest.react(w, room, f, (err, r) => this.reacted(id, err, r));
        return;
      case 'gift':
        ingest.gift(w, room, f).then(
          (r) => this.answered(ackFrame(id, r), 'ack'),
          (err: unknown) => this.answered(this.nackOf(id, err), 'nack'),
        );
        return;
      case 'delete':
        ingest.deleteComment(w, room, f.eventId).then(
          (r) => this.answered(ackFrame(id, r), 'ack'),
          (err: unknown) => this.answered(this.nackOf(id, err), 'nack'),
        );
        return;
    }
  }

  private reacted(id: string, err: AppError | null, r: ReactionResult | null): void {
    if (err || !r) this.answered(this.nackOf(id, err), 'nack');
    else if (r.frameTail) this.answered(`{"type":"ack","id":${JSON.stringify(id)}${r.frameTail}`, 'ack');
    else this.answered(ackFrame(id, r), 'ack');
  }

  private answered(frame: string, kind: 'ack' | 'nack'): void {
    this.inflight--;
    this.reply(frame, kind);
  }

  private refuse(id: string | null, err: unknown): void {
    this.reply(this.nackOf(id, err), 'nack');
  }

  private nackOf(id: string | null, err: unknown): string {
    if (err instanceof AppError) return nackFrame(id, err);
    const e = asAppError(err);
    if (e.code === 'ERR_INTERNAL') this.o.log.error({ err, room: this.o.room }, 'socket write failed');
    return nackFrame(id, e);
  }

  private reply(frame: string, kind: 'ack' | 'nack'): void {
    if (kind === 'ack') this.acks++;
    else this.nacks++;
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (!this.corked) this.cork();
    if (this.wire === 'msgpack') this.ws.send(encode(JSON.parse(frame), 'msgpack'), { binary: true });
    else this.ws.send(frame);
  }

  /**
   * The answers written in one turn of the event loop (every reaction of a
   * flush, every comment of a produce batch) leave in one write: the TCP
   * socket is corked until the turn's ticks are done (ws corks around each
   * frame too; corks nest, so its inner uncork does not flush). Counted into
   * the metrics once per turn as well.
   */
  private cork(): void {
    const raw = (this.ws as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
    this.corked = true;
    raw?.cork();
    process.nextTick(() => {
      this.corked = false;
      raw?.uncork();
      if (this.acks > 0) pushMetrics.writeAnswers.inc({ kind: 'ack' }, this.acks);
      if (this.nacks > 0) pushMetrics.writeAnswers.inc({ kind: 'nack' }, this.nacks);
      this.acks = this.nacks = 0;
    });
  }

  /** A recheck found the user banned or their token revoked: the socket closes as every other socket of theirs does. */
  private blocked(e: AppError): void {
    if (this.closed) return;
    this.closed = true;
    const code = e.code === 'ERR_TOKEN_REVOKED' ? CLOSE.revoked : CLOSE.forbidden;
    setImmediate(() => {
      if (this.ws.readyState === this.ws.OPEN) this.ws.close(code, e.code === 'ERR_TOKEN_REVOKED' ? 'token revoked: sign in again' : 'banned');
    });
  }
}
