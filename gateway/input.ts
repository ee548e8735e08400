/**
 * The request as the gateway takes it, before any route sees it: text that
 * is not valid UTF-8 (or not well-formed Unicode) is refused, never rewritten
 * into U+FFFD or passed on as a lone surrogate; integers in query strings are
 * written in decimal digits; and fastify's own early refusals (a path that
 * does not decode) leave with a catalogue code like every other error.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, UnavailableError } from '../core/errors.ts';
import { isRedisUnavailable } from '../core/redis.ts';
import { illFormedPath } from '../core/unicode.ts';

// fatal: invalid bytes throw instead of becoming U+FFFD. (Without `stream`,
// each decode() stands alone, so one decoder serves every request.)
const utf8 = new TextDecoder('utf-8', { fatal: true });

// In text decoded strictly a lone surrogate can only come from a JSON escape
// (\uD800–\uDFFF): without one, no string in the body needs walking.
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

// What Ajv's coercion would otherwise take as a number: "1e3", "0x10", " 12", "1e400" (Infinity).
const DECIMAL = /^-?\d{1,16}$/;

/** As a schema's refusal reads (app.ts): `details.issues` says where. */
const invalid = (part: string, path: string, message: string) => new AppError('ERR_VALIDATION', `${part}${path} ${message}`, { details: { issues: [{ path, message }] } });

/** Installs the strict JSON body parser and the query check on the app (before its routes are registered). */
export function strictInput(app: FastifyInstance): void {
  // fastify's own parser (secure-json-parse: `__proto__` and `constructor.prototype`
  // refused, empty and malformed bodies as before), fed text decoded strictly.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    let text: string;
    try {
      text = utf8.decode(body as Buffer);
    } catch {
      done(new AppError('ERR_INVALID_UTF8', 'the body is not valid UTF-8'), undefined);
      return;
    }
    parseJson(req, text, (err, value) => {
      if (err) return done(err, undefined);
      const bad = SURROGATE_ESCAPE.test(text) ? illFormedPath(value) : undefined;
      if (bad) return done(new AppError('ERR_INVALID_UTF8', `body${bad} is not well-formed Unicode (a lone surrogate escape such as \\ud800)`, { details: { path: bad } }), undefined);
      done(null, value);
    });
  });
  app.addHook('preValidation', async (req) => integerQuery(req));
  app.addHook('onRequest', async (req) => singleHeaders(req));
}

/**
 * Headers that may appear once (RFC 9110 §5.3): Node keeps the first of a
 * repeated Authorization or Content-Type and drops the rest silently, while a
 * proxy in front may act on another one — two readers of one request must
 * never disagree about who sent it or what it holds, so a repeat is refused.
 */
const SINGLE = new Set(['authorization', 'content-type', 'content-length', 'content-encoding', 'transfer-encoding', 'host', 'x-forwarded-for', 'sec-websocket-key', 'sec-websocket-protocol']);

function singleHeaders(req: FastifyRequest): void {
  const raw = req.raw.rawHeaders;
  let seen: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (!SINGLE.has(name)) continue;
    seen ??= new Set();
    if (seen.has(name)) throw new AppError('ERR_BAD_REQUEST', `the ${name} header appears more than once`);
    seen.add(name);
  }
}

/** Answers malformed HTTP at the socket level without a body (a HEAD request must not get one; the code is in a header). */
export function onClientError(err: NodeJS.ErrnoException, socket: import('node:net').Socket): void {
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
  const text = status === 431 ? 'Request Header Fields Too Large' : 'Bad Request';
  if (socket.writable) socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\nX-Error-Code: ERR_BAD_REQUEST\r\n\r\n`);
  else socket.destroy();
}

/**
 * Every integer of a route's querystring schema, as sent: decimal digits, so
 * that only the schema's bounds decide (Ajv alone would coerce "1e400" to
 * Infinity and let it through as an integer).
 */
function integerQuery(req: FastifyRequest): void {
  const props = (req.routeOptions.schema?.querystring as { properties?: Record<string, { type?: unknown }> } | undefined)?.properties;
  if (!props) return;
  const q = (req.query ?? {}) as Record<string, unknown>;
  for (const [name, schema] of Object.entries(props)) {
    if (schema.type !== 'integer') continue;
    for (const v of [q[name]].flat()) {
      if (typeof v === 'string' && !DECIMAL.test(v)) throw invalid('querystring', `/${name}`, 'must be an integer in decimal digits');
    }
  }
}

/** fastify's `frameworkErrors`: its refusals before routing answered like every other error, `{code, message}`. */
export function onFrameworkError(err: FastifyError, req: { url: string }, reply: unknown): void {
  const e = frameworkError(err, req.url);
  void (reply as FastifyReply).status(e.status).send(e.toJSON());
}

/** fastify's refusals before routing, as catalogue errors. */
export function frameworkError(err: FastifyError, url: string): AppError {
  switch (err.code) {
    case 'FST_ERR_BAD_URL':
      // Every % escape well formed: then the bytes they spell are not UTF-8 (%ED%A0%80, a surrogate; %FF).
      return /%(?![0-9A-Fa-f]{2})/.test(url)
        ? new AppError('ERR_BAD_REQUEST', 'the path has a malformed percent-escape')
        : new AppError('ERR_INVALID_UTF8', 'the path has percent-escapes that do not decode as UTF-8');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return invalid('params', '', 'a path parameter is too long');
    default:
      return err.statusCode !== undefined && err.statusCode < 500 ? new AppError('ERR_BAD_REQUEST', err.message, { cause: err }) : new AppError('ERR_INTERNAL', 'internal error', { cause: err });
  }
}

/**
 * Any failure as a catalogue error: ours as they are; Redis out of reach as
 * ERR_REDIS_UNAVAILABLE (503, retriable: a dependency down, not our bug);
 * anything else as ERR_INTERNAL, with the cause kept for the log.
 */
export function asAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (isRedisUnavailable(err)) return new UnavailableError('ERR_REDIS_UNAVAILABLE', 'Redis does not answer', { cause: err });
  return new AppError('ERR_INTERNAL', 'internal error', { cause: err });
}
