/**
 * Runs services together: starts them in order (each one ready before the
 * next starts), reports their health as one, stops them in reverse order,
 * and stops everything when one of them dies on its own — a process that is
 * half dead is worse than one that is gone, since its peers (other
 * processors in the group, other gateways behind the balancer) take over.
 */
import type { Health, Service } from '../core/service.ts';

export interface HealthReport {
  /** The worst status of its services. */
  status: Health['status'];
  services: Record<string, Health>;
}

const RANK: Record<Health['status'], number> = { ok: 0, starting: 1, degraded: 2, stopped: 3, down: 4 };

export function worstOf(services: Record<string, Health>): Health['status'] {
  let worst: Health['status'] = 'ok';
  for (const h of Object.values(services)) if (RANK[h.status] > RANK[worst]) worst = h.status;
  return worst;
}

export class Supervisor {
  private readonly ac = new AbortController();
  private started: Service[] = [];
  private stopping: Promise<void> | undefined;
  /** Settles with the first service error after start (the caller stops and exits non-zero). */
  readonly failed: Promise<{ service: string; error: Error }>;
  private fail!: (f: { service: string; error: Error }) => void;

  constructor(
    readonly services: Service[],
    private readonly log: (m: string) => void = () => {},
  ) {
    this.failed = new Promise((resolve) => (this.fail = resolve));
  }

  /** Starts every service in order; if one cannot start, stops those already started and rethrows. */
  async start(signal?: AbortSignal): Promise<void> {
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    for (const s of this.services) {
      if (this.ac.signal.aborted) break;
      try {
        await s.start(this.ac.signal);
      } catch (err) {
        this.log(`${s.name} failed to start: ${(err as Error).message}`);
        await this.stop();
        throw err;
      }
      this.started.push(s);
      void s.failed?.then((error) => {
        if (this.stopping) return;
        this.log(`${s.name} died: ${error.message}`);
        this.fail({ service: s.name, error });
      });
    }
  }

  health(): HealthReport {
    const services: Record<string, Health> = {};
    for (const s of this.services) services[s.name] = s.health();
    return { status: worstOf(services), services };
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      // In reverse order (the gateway before the consumers it reads from); the
      // signal is aborted after, for whatever still waits on it.
      for (const s of [...this.started].reverse()) {
        await s.stop().catch((err: unknown) => this.log(`${s.name}: stopping failed: ${(err as Error).message}`));
      }
      this.ac.abort();
    })();
    return this.stopping;
  }
}
