/**
 * The one error hierarchy (after kafkajs's KafkaJSError): every error the
 * product raises carries a stable `code` that clients, logs and dead-letter
 * headers can match on, whether retrying can help (`retriable`), an HTTP
 * `status` for the gateway, and the underlying `cause`.
 *
 * Codes are part of the public contract: never rename one, add a new one.
 */
export interface AppErrorOptions {
  cause?: unknown;
  retriable?: boolean;
  status?: number;
  details?: Record<string, unknown>;
}

export class AppError extends Error {
  readonly code: string;
  readonly retriable: boolean;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, opts: AppErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.retriable = opts.retriable ?? false;
    this.status = opts.status ?? 500;
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
  constructor(code: `ERR_INFRA_${string}`, message: string, opts: AppErrorOptions = {}) {
    super(code, message, opts);
  }
}

/** A dependency is unreachable right now; callers back off and retry. */
export class UnavailableError extends AppError {
  constructor(code: `ERR_${string}_UNAVAILABLE`, message: string, opts: AppErrorOptions = {}) {
    super(code, message, { status: 503, retriable: true, ...opts });
  }
}

export function isRetriable(err: unknown): boolean {
  return err instanceof AppError ? err.retriable : false;
}
