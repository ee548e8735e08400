/**
 * Consumer lag, a Kafka fact every long-running reader reports (processors,
 * moderation, the archiver) and tests and benchmarks wait on: the partition's
 * end offset minus the group's committed offset. Lives beside the log so
 * readers need not import a processor to measure it.
 */
import type { LogAdmin } from './kafka.ts';

/** Lag of a group on a topic: high watermark minus committed offset, per partition. */
export async function measureLag(admin: LogAdmin, groupId: string, topic: string): Promise<Map<number, number>> {
  const [ends, committed] = await Promise.all([admin.endOffsets(topic), admin.committedOffsets(groupId, topic)]);
  const lag = new Map<number, number>();
  for (const [p, end] of ends) {
    const c = Number(committed.get(p) ?? '-1');
    lag.set(p, Number(end) - (c < 0 ? 0 : c));
  }
  return lag;
}
