/**
 * Reads cost the gateway something whoever asks (an anonymous poll, a
 * WebSocket connect with a resume position): each client — its user id, or
 * its address (the socket's peer unless it came through a trusted proxy) —
 * gets a budget of reads per window, in this gateway's memory. Beyond it,
 * 429 ERR_RATE_LIMITED with Retry-After; no Redis round trip is spent on it,
 * since the point is to keep a flood of reads cheap.
 *
 * rate-limiter-flexible's in-memory limiter: a fixed window per key with
 * expiry, well kept, and the same library can move to Redis if a deployment
 * ever wants budgets shared across gateways.
 */
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../core/config.ts';
import { AppError } from '../core/errors.ts';
import type { User } from './auth.ts';

export class ReadLimits {
  private readonly limiter: RateLimiterMemory;

  constructor(cfg: Config) {
    this.limiter = new RateLimiterMemory({ points: cfg.limits.readsPerWindow, duration: cfg.limits.readsWindowSec });
  }

  /** Spends one read of the caller's budget, or throws 429 with the wait. */
  async take(req: FastifyRequest, user: User | null): Promise<void> {
    const key = user ? `u:${user.id}` : `ip:${req.ip}`;
    try {
      await this.limiter.consume(key, 1);
    } catch (res) {
      if (!(res instanceof RateLimiterRes)) throw res;
      const retryAfterSec = Math.max(1, Math.ceil(res.msBeforeNext / 1000));
      throw new AppError('ERR_RATE_LIMITED', `too many reads from this client; retry in ${retryAfterSec} s`, { details: { retryAfterSec } });
    }
  }
}
