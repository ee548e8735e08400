/**
 * Topics declared as code. `npm run topics -- apply` creates what is missing
 * and reports drift without destroying data: Kafka can add partitions but
 * never remove them, and adding them would move rooms between partitions
 * (breaking per-room order for in-flight consumers), so drift is reported
 * for an operator to decide, never "fixed" automatically. The event log grows
 * by a new generation instead: `npm run topics -- repartition` (repartition.ts).
 */
import type { Config } from '../core/config.ts';
import type { LogAdmin, TopicSpec } from './kafka.ts';

export interface TopicNames {
  roomEvents: string;
  deadLetter: string;
  /** The routing rules' audit log (gateway/routing.ts); declared only when named (tests that build their own names leave it out). */
  routingAudit?: string;
}

export function topicNames(cfg: Config, prefix = ''): TopicNames {
  return { roomEvents: prefix + cfg.topics.roomEvents, deadLetter: prefix + cfg.topics.deadLetter, routingAudit: prefix + cfg.topics.routingAudit };
}

/**
 * The audit log of routing rule changes: a handful of records a day, read by
 * people and by `npm run routing -- history`. One partition, so the changes
 * are totally ordered and an offset can serve as the rules' version; kept
 * forever, like the event log.
 */
export function routingAuditTopic(cfg: Config, name: string = cfg.topics.routingAudit): TopicSpec {
  return {
    name,
    partitions: 1,
    replicationFactor: cfg.topics.replicationFactor,
    configs: {
      'retention.ms': '-1',
      'retention.bytes': '-1',
      'cleanup.policy': 'delete',
      'min.insync.replicas': String(cfg.topics.minInsyncReplicas),
    },
  };
}

export function declaredTopics(cfg: Config, names: TopicNames = topicNames(cfg)): TopicSpec[] {
  const common = {
    replicationFactor: cfg.topics.replicationFactor,
  };
  return [
    {
      name: names.roomEvents,
      partitions: cfg.topics.partitions,
      ...common,
      configs: {
        // The event log is the source of truth: keep everything, forever.
        'retention.ms': '-1',
        'retention.bytes': '-1',
        'cleanup.policy': 'delete',
        'min.insync.replicas': String(cfg.topics.minInsyncReplicas),
        // Event time is the producer's; log-append time would hide client clock skew.
        'message.timestamp.type': 'CreateTime',
        'compression.type': 'producer',
        'max.message.bytes': String(1024 * 1024),
      },
    },
    {
      name: names.deadLetter,
      // Few records, read by people: one partition keeps them in arrival order.
      partitions: 1,
      ...common,
      configs: {
        'retention.ms': String(30 * 24 * 3600 * 1000),
        'cleanup.policy': 'delete',
        'min.insync.replicas': String(cfg.topics.minInsyncReplicas),
        'max.message.bytes': String(2 * 1024 * 1024),
      },
    },
    ...(names.routingAudit ? [routingAuditTopic(cfg, names.routingAudit)] : []),
  ];
}

export interface Drift {
  topic: string;
  what: string;
  declared: string;
  actual: string;
}

export interface ApplyResult {
  created: string[];
  unchanged: string[];
  drift: Drift[];
}

/** Pure: compares declared specs with what the broker has. */
export function diffTopics(declared: TopicSpec[], existing: { name: string; partitions: number; configs: Record<string, string> }[]): Drift[] {
  const drift: Drift[] = [];
  for (const spec of declared) {
    const have = existing.find((e) => e.name === spec.name);
    if (!have) continue;
    if (have.partitions !== spec.partitions) {
      drift.push({ topic: spec.name, what: 'partitions', declared: String(spec.partitions), actual: String(have.partitions) });
    }
    for (const [k, v] of Object.entries(spec.configs)) {
      if (have.configs[k] !== undefined && have.configs[k] !== v) drift.push({ topic: spec.name, what: k, declared: v, actual: have.configs[k]! });
    }
  }
  return drift;
}

export async function applyTopics(admin: LogAdmin, declared: TopicSpec[]): Promise<ApplyResult> {
  const existing = new Set(await admin.listTopics());
  const missing = declared.filter((t) => !existing.has(t.name));
  await admin.createTopics(missing);
  const present = declared.filter((t) => existing.has(t.name));
  const states = await admin.describeTopics(present.map((t) => t.name));
  return { created: missing.map((t) => t.name), unchanged: present.map((t) => t.name), drift: diffTopics(present, states) };
}
