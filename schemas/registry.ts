/**
 * Subjects and their rules in the registry. Subjects follow TopicNameStrategy
 * (`<topic>-value`), each set to BACKWARD_TRANSITIVE so a consumer on the
 * newest schema can read every event ever written, back to version 1.
 *
 * The Confluent-compatible API is used as documented by Confluent; the
 * registry client library has no call for compatibility checks or per-subject
 * config, so those two go over HTTP here.
 */
import { AppError, UnavailableError } from '../core/errors.ts';
import { createRegistry, EventCodec, loadRoomEventSchema } from './codec.ts';

export const COMPATIBILITY = 'BACKWARD_TRANSITIVE';

export const subjectFor = (topic: string) => `${topic}-value`;

async function call(url: string, init: RequestInit & { okStatuses?: number[] } = {}): Promise<{ status: number; body: unknown }> {
  let res: Response;
  try {
    res = await fetch(url, {
      ...init,
      headers: { 'Content-Type': 'application/vnd.schemaregistry.v1+json', Accept: 'application/json', ...(init.headers ?? {}) },
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    throw new UnavailableError('ERR_REGISTRY_UNAVAILABLE', `schema registry unreachable at ${url}: ${(err as Error).message}`, { cause: err });
  }
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* keep text */
  }
  if (!res.ok && !(init.okStatuses ?? []).includes(res.status)) {
    if (res.status >= 500) throw new UnavailableError('ERR_REGISTRY_UNAVAILABLE', `registry ${init.method ?? 'GET'} ${url} answered ${res.status}: ${text}`);
    throw new AppError('ERR_SCHEMA_REJECTED', `registry ${init.method ?? 'GET'} ${url} answered ${res.status}: ${text}`, { details: { status: res.status, body } });
  }
  return { status: res.status, body };
}

export async function setCompatibility(registryUrl: string, subject: string, level = COMPATIBILITY): Promise<void> {
  await call(`${registryUrl}/config/${encodeURIComponent(subject)}`, { method: 'PUT', body: JSON.stringify({ compatibility: level }) });
}

export async function getCompatibility(registryUrl: string, subject: string): Promise<string | undefined> {
  const r = await call(`${registryUrl}/config/${encodeURIComponent(subject)}`, { okStatuses: [404] });
  if (r.status === 404) return undefined;
  const b = r.body as { compatibilityLevel?: string; compatibility?: string };
  return b.compatibilityLevel ?? b.compatibility;
}

export interface RegisterResult {
  subject: string;
  id: number;
  version: number;
}

/**
 * Idempotent: the same schema keeps its id and version; a changed schema
 * becomes the next version only if the compatibility rule accepts it.
 */
export async function registerRoomEvents(registryUrl: string, topic: string, schema = loadRoomEventSchema()): Promise<RegisterResult> {
  const subject = subjectFor(topic);
  // The rule goes on first, so the registration itself is checked against every earlier version.
  await setCompatibility(registryUrl, subject);
  const codec = new EventCodec({ registry: createRegistry(registryUrl), subject, schema });
  const id = await codec.init();
  const v = await call(`${registryUrl}/subjects/${encodeURIComponent(subject)}`, {
    method: 'POST',
    body: JSON.stringify({ schema: JSON.stringify(schema) }),
  });
  return { subject, id, version: (v.body as { version: number }).version };
}

export interface CheckResult {
  subject: string;
  compatible: boolean;
  /** True when nothing is registered yet (anything is compatible with nothing). */
  newSubject: boolean;
  messages: string[];
}

export async function checkRoomEvents(registryUrl: string, topic: string, schema = loadRoomEventSchema()): Promise<CheckResult> {
  const subject = subjectFor(topic);
  const r = await call(`${registryUrl}/compatibility/subjects/${encodeURIComponent(subject)}/versions/latest?verbose=true`, {
    method: 'POST',
    body: JSON.stringify({ schema: JSON.stringify(schema) }),
    okStatuses: [404],
  });
  if (r.status === 404) return { subject, compatible: true, newSubject: true, messages: [] };
  const b = r.body as { is_compatible: boolean; messages?: string[] };
  return { subject, compatible: b.is_compatible, newSubject: false, messages: b.messages ?? [] };
}
