/**
 * Push metrics, on a registry of their own so the ops endpoint can merge it
 * with others (`Registry.merge([...])`) and tests can read it in process.
 * Counters are per process: several gateways built in one process (tests)
 * add up.
 */
import { Counter, Gauge, Registry } from 'prom-client';

export const pushRegistry = new Registry();

export const pushMetrics = {
  socketsOpen: new Gauge({ name: 'danmaku_push_sockets_open', help: 'WebSockets currently registered with the push hub.', registers: [pushRegistry] }),
  roomsSubscribed: new Gauge({ name: 'danmaku_push_rooms_subscribed', help: 'Rooms with at least one socket (one sharded subscription each).', registers: [pushRegistry] }),
  batchesSent: new Counter({
    name: 'danmaku_push_batches_total',
    help: 'Batch messages serialized (once per room, view and interval; written to every socket of that room and view).',
    labelNames: ['mode'] as const,
    registers: [pushRegistry],
  }),
  framesSent: new Counter({ name: 'danmaku_push_frames_sent_total', help: 'WebSocket messages written, per message type.', labelNames: ['type'] as const, registers: [pushRegistry] }),
  bytesSent: new Counter({ name: 'danmaku_push_bytes_sent_total', help: 'Payload bytes written to WebSockets (before permessage-deflate).', registers: [pushRegistry] }),
  degradations: new Counter({
    name: 'danmaku_push_slow_degradations_total',
    help: 'Sockets switched to a lighter stream because their send buffer stayed above a threshold.',
    labelNames: ['mode'] as const,
    registers: [pushRegistry],
  }),
  upgrades: new Counter({ name: 'danmaku_push_slow_upgrades_total', help: 'Degraded sockets upgraded back to their view after their send buffer stayed low (with a fresh snapshot).', labelNames: ['mode'] as const, registers: [pushRegistry] }),
  slowCloses: new Counter({ name: 'danmaku_push_slow_closes_total', help: 'Sockets closed with 4008 because their send buffer grew past the close threshold.', registers: [pushRegistry] }),
  forcedCloses: new Counter({
    name: 'danmaku_push_forced_closes_total',
    help: 'Sockets of a user closed on purpose: visible mute (4403), ban (4403), revoked token (4401), operator disconnect (4410).',
    labelNames: ['code'] as const,
    registers: [pushRegistry],
  }),
  reaped: new Counter({ name: 'danmaku_push_reaped_total', help: 'Sockets terminated because they missed a heartbeat pong.', registers: [pushRegistry] }),
  resyncs: new Counter({ name: 'danmaku_push_resyncs_total', help: 'Fresh snapshots sent to live sockets (epoch change, rebuilt projection, overflow).', labelNames: ['reason'] as const, registers: [pushRegistry] }),
  writeAnswers: new Counter({ name: 'danmaku_ws_write_answers_total', help: 'Answers to WebSocket write frames, ack or nack.', labelNames: ['kind'] as const, registers: [pushRegistry] }),
  capRefusals: new Counter({ name: 'danmaku_push_cap_refusals_total', help: 'WebSocket upgrades refused with 503 ERR_TOO_MANY_CONNECTIONS: the gateway was at its socket cap.', registers: [pushRegistry] }),
  socketCap: new Gauge({ name: 'danmaku_push_socket_cap', help: 'Most WebSockets this gateway process accepts (WS_MAX_CONNECTIONS, or the open-file limit minus GATEWAY_FD_RESERVE).', registers: [pushRegistry] }),
  snapshotReads: new Counter({ name: 'danmaku_push_snapshot_reads_total', help: 'Snapshots given to sockets (on connect and resync), by where they came from: redis (a read) or memory (the room\'s window).', labelNames: ['source'] as const, registers: [pushRegistry] }),
  pollReads: new Counter({ name: 'danmaku_poll_reads_total', help: 'Feed reads made for polls (one per look; a long poll looks again only when the room has news), by source: redis, or memory (the room\'s window).', labelNames: ['source'] as const, registers: [pushRegistry] }),
  catchUps: new Counter({ name: 'danmaku_push_catchups_total', help: 'Resumes served with a catch-up, by source.', labelNames: ['source'] as const, registers: [pushRegistry] }),
};
