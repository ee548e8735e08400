/**
 * The one lifecycle every long-running part implements (after Centrifugo's
 * `Service{Run}`): processors, moderation, the archiver, the gateway and the
 * demo chatter. The composition root (`services/`) starts them, learns that
 * they are ready from `start()` resolving — never from a log line — and asks
 * each for its health.
 */

export type HealthStatus = 'starting' | 'ok' | 'degraded' | 'down' | 'stopped';

export interface Health {
  status: HealthStatus;
  /** One line on what is wrong (or what it is doing), for operators. */
  detail?: string;
}

export interface Service {
  /** Stable name: what the root, the CLIs and the health report call it. */
  readonly name: string;
  /**
   * Starts and resolves once the service does its job (consumers joined,
   * socket listening). Rejects when it cannot start. `signal` aborting asks
   * for a graceful stop, as `stop()` does.
   */
  start(signal: AbortSignal): Promise<void>;
  /** Stops gracefully; safe to call twice or before `start`. */
  stop(): Promise<void>;
  health(): Health;
  /**
   * Settles with the error when the service dies on its own after it was
   * ready (a consumer that crashed for good): the process holding it should
   * stop rather than run on half-dead. Absent: it never dies alone.
   */
  readonly failed?: Promise<Error>;
}

/** A small state holder most services use for `health()` and `failed`. */
export class Liveness {
  private state: Health = { status: 'starting' };
  readonly failed: Promise<Error>;
  private fail!: (err: Error) => void;

  constructor() {
    this.failed = new Promise((resolve) => (this.fail = resolve));
  }

  get health(): Health {
    return this.state;
  }

  set(status: HealthStatus, detail?: string): void {
    this.state = detail === undefined ? { status } : { status, detail };
  }

  /** Marks the service down for good and settles `failed`. */
  died(err: Error): void {
    if (this.state.status === 'stopped') return;
    this.set('down', err.message.split('\n')[0]);
    this.fail(err);
  }
}
