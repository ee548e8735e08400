/**
 * Retry backoff, in a module of its own so that what only waits (opening the
 * archive, restarting the model stage) need not pull in a Kafka consumer.
 */

/** Capped exponential backoff with full jitter (kafkajs's retrier does the same). */
export function backoffMs(attempt: number, capMs: number, baseMs = 100): number {
  return Math.random() * Math.min(capMs, baseMs * 2 ** attempt);
}
