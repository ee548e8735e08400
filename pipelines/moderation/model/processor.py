#!/usr/bin/env python3
"""The moderation model as a pipeline stage: a stateless processor that reads
the event log with Confluent's Python client, scores every viewer's
CommentPosted with the trained classifier (model.py), and writes its decisions
back to the log as events, in the project's wire format (Confluent's: magic
byte, schema id from the registry, Avro body).

- Its own consumer group (--group, e.g. `danmaku.moderation-model.v1`): it
  scales out by adding members, and it never holds up anything else. Comments
  are shown first anyway; this stage only adds removals.
- A fetched batch is scored in one model call.
- Decisions: a score >= --threshold writes ModerationDecided (verdict delete,
  or hold with --action hold; labels ["model"], the score, rule
  "model:<name>") and, for delete, CommentDeleted (reason "moderation:model");
  a score >= --record-above writes ModerationDecided with verdict allow (for
  review); lower scores write nothing.
- Exactly-once in effect: event ids are derived from (comment id, decision
  kind) the way pipelines/moderation/processor.ts derivedEventId does, and
  offsets are committed only after every produce of the batch is acknowledged
  (acks=all). A crash in between re-processes the batch and writes the same
  events with the same ids, which every projection treats as no-ops.
- Records that cannot be decoded go to the dead-letter topic with the same
  headers as the project's consumers (topics/consumer.ts), then the offset moves on.

The parent (pipelines/moderation/model/service.ts) learns about the process
from JSON lines on --status-fd, never from its logs:
  {"type": "ready", ...}   model loaded, consumer joined its group
  {"type": "health", "status": "ok" | "degraded", "detail": ...}
  {"type": "batch", "records": n, "scored": n, "decided": n, "deleted": n, "scoreMs": ms, "totalMs": ms}
  {"type": "stopped"}
With --watch-stdin it stops when stdin closes (the parent went away).
"""
import argparse
import datetime
import hashlib
import io
import json
import os
import random
import signal
import sys
import threading
import time

import fastavro
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from model import Model

NAMESPACE = "danmaku.events."
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
ACTOR = {"userId": "moderation-model", "role": "system"}
EXEMPT_ROLES = {"moderator", "broadcaster", "admin", "system"}
DLQ_HEADERS = {
    "sourceTopic": "dlq.source.topic",
    "sourcePartition": "dlq.source.partition",
    "sourceOffset": "dlq.source.offset",
    "errorCode": "dlq.error.code",
    "errorMessage": "dlq.error.message",
    "consumerGroup": "dlq.consumer.group",
    "failedAt": "dlq.failed.at",
}


def log(msg):
    try:
        print(f"[moderation-model] {datetime.datetime.now(datetime.timezone.utc).isoformat()} {msg}", file=sys.stderr, flush=True)
    except OSError:
        pass  # stderr's reader (the parent) is gone: we are stopping anyway


def derived_event_id(target_event_id, kind, occurred_at):
    """A UUIDv7-shaped id derived from the judged comment: its time prefix (so
    ids still sort by time) and a hash of (comment, decision kind) for the
    rest. Byte for byte what derivedEventId in processor.ts computes."""
    h = hashlib.sha256(f"{target_event_id}|{kind}".encode("utf-8")).hexdigest()
    ts = format(max(0, int(occurred_at)), "x").rjust(12, "0")[-12:]
    variant = format((int(h[15], 16) & 0x3) | 0x8, "x")
    return f"{ts[:8]}-{ts[8:12]}-7{h[:3]}-{variant}{h[3:6]}-{h[6:18]}"


def millis(v):
    return (v - EPOCH) // datetime.timedelta(milliseconds=1) if isinstance(v, datetime.datetime) else int(v)


class Status:
    """JSON lines to the parent; a gone parent is not our error (--watch-stdin stops us)."""

    def __init__(self, fd):
        self._f = os.fdopen(fd, "w", buffering=1, encoding="utf-8") if fd is not None else None
        self._health = None
        self._lock = threading.Lock()

    def send(self, msg):
        if self._f is None:
            return
        with self._lock:
            try:
                self._f.write(json.dumps(msg) + "\n")
            except (BrokenPipeError, OSError, ValueError):
                self._f = None

    def health(self, status, detail=None):
        if (status, detail) == self._health:
            return
        self._health = (status, detail)
        self.send({"type": "health", "status": status, **({"detail": detail} if detail else {})})


class DecodeError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class Decoder:
    """Confluent wire format -> the event as a dict (payload as (full name, fields)).
    Writer schemas are fetched by id once. A registry that cannot be reached is
    not the record's fault: that raises, and the batch is retried."""

    def __init__(self, registry):
        self._registry = registry
        self._schemas = {}

    def decode(self, raw):
        if raw is None or len(raw) < 5 or raw[0] != 0:
            raise DecodeError("ERR_EVENT_NOT_WIRE_FORMAT", "not in the Confluent wire format (magic byte 0 + 4-byte schema id)")
        schema_id = int.from_bytes(raw[1:5], "big")
        schema = self._schemas.get(schema_id)
        if schema is None:
            try:
                s = self._registry.get_schema(schema_id)
            except SchemaRegistryError as err:
                if err.http_status_code == 404:
                    raise DecodeError("ERR_EVENT_SCHEMA_UNKNOWN", f"schema id {schema_id} is unknown to the registry") from err
                raise
            parsed = json.loads(s.schema_str)
            if parsed.get("name") not in ("RoomEvent", NAMESPACE + "RoomEvent"):
                raise DecodeError("ERR_EVENT_WRONG_SCHEMA", f"schema id {schema_id} is not a RoomEvent")
            schema = self._schemas[schema_id] = fastavro.parse_schema(parsed)
        try:
            return fastavro.schemaless_reader(io.BytesIO(raw[5:]), schema, None, return_record_name=True)
        except Exception as err:  # noqa: BLE001 - any failure of the body is the record's
            raise DecodeError("ERR_EVENT_UNDECODABLE", f"Avro body does not decode: {err}") from err


class Stage:
    def __init__(self, a, status):
        self.a = a
        self.status = status
        self.stopping = threading.Event()
        self.ready_sent = False
        self.model = Model()
        self.rule = f"model:{self.model.name}"
        log(f"model {self.model.name} loaded in {self.model.load_ms:.0f} ms")
        registry = SchemaRegistryClient({"url": a.registry})
        self.decoder = Decoder(registry)
        # The project owns the schema: never register one from here; write with
        # the latest version of <topic>-value (TopicNameStrategy).
        self.serialize = AvroSerializer(registry, conf={"auto.register.schemas": False, "use.latest.version": True})
        self.consumer = Consumer({
            "bootstrap.servers": a.bootstrap,
            "group.id": a.group,
            "client.id": f"{a.client_id}-moderation-model",
            "enable.auto.commit": False,  # committed by hand, after the batch's produces are acknowledged
            "auto.offset.reset": "earliest",  # a new group judges the log from its start, like the project's processors
            # librdkafka heartbeats from its own thread, so a long model call never
            # misses one; a short session lets a restarted stage (after kill -9) get
            # its partitions back in seconds instead of the default 45.
            "session.timeout.ms": 10000,
            "error_cb": self._on_error,
        })
        self.producer = Producer({
            "bootstrap.servers": a.bootstrap,
            "client.id": f"{a.client_id}-moderation-model",
            "enable.idempotence": True,  # implies acks=all
            # librdkafka's default partitioner (CRC32) would put a room in another
            # partition than kafkajs/Java's murmur2 does, breaking per-room order.
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            # The project's consumers (kafkajs) read gzip and nothing else.
            "compression.type": a.compression,
            "error_cb": self._on_error,
        })

    def _on_error(self, err):
        # librdkafka retries transport errors by itself; they only make us degraded.
        self.status.health("degraded", f"kafka: {err.str()}")
        if err.fatal():
            log(f"fatal Kafka error: {err.str()}")
            self.stopping.set()

    def _on_assign(self, consumer, partitions):
        log(f"assigned partitions [{','.join(str(p.partition) for p in partitions)}]")
        if not self.ready_sent:
            self.ready_sent = True
            self.status.send({"type": "ready", "model": self.model.name, "loadMs": self.model.load_ms, "group": self.a.group})
            self.status.health("ok")

    def _on_revoke(self, consumer, partitions):
        # Batches are processed between polls, so nothing is in flight here;
        # what was not committed is redelivered to the next owner.
        log(f"revoked partitions [{','.join(str(p.partition) for p in partitions)}]")

    def run(self):
        self.consumer.subscribe([self.a.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self.stopping.is_set():
                msgs = self.consumer.consume(num_messages=self.a.batch_max, timeout=self.a.batch_ms / 1000)
                if msgs:
                    self._batch(msgs)
        finally:
            # Leaves the group at once, so a peer takes the partitions over without waiting for a session timeout.
            self.consumer.close()
            self.producer.flush(10)

    def _batch(self, msgs):
        t0 = time.perf_counter()
        records, offsets = [], {}
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    self.status.health("degraded", f"kafka: {m.error().str()}")
                continue
            records.append(m)
            key = (m.topic(), m.partition())
            offsets[key] = max(offsets.get(key, -1), m.offset())
        for attempt in range(1_000_000):
            if self.stopping.is_set():
                return  # uncommitted: redelivered to whoever owns the partitions next
            try:
                stats = self._process(records)
                break
            except Exception as err:  # noqa: BLE001 - registry down, produce failed: retried with backoff
                self.status.health("degraded", f"{type(err).__name__}: {err}"[:300])
                log(f"batch failed (attempt {attempt + 1}), retrying: {err}")
                time.sleep(random.random() * min(self.a.max_backoff_ms, 100 * 2**attempt) / 1000)
        if offsets:
            try:
                self.consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()], asynchronous=False)
            except KafkaException as err:
                # A rebalance took the partitions: the next owner re-processes the
                # batch and writes the same ids again, which changes nothing.
                log(f"commit failed ({err}); the batch will be redelivered")
        self.status.health("ok")
        self.status.send({"type": "batch", "records": len(msgs), **stats, "totalMs": (time.perf_counter() - t0) * 1000})

    def _process(self, records):
        """Decodes, scores and produces one batch; returns once every produce is acknowledged."""
        comments, dead = [], []
        for m in records:
            try:
                e = self.decoder.decode(m.value())
            except DecodeError as err:
                dead.append((m, err))
                continue
            name, fields = e["payload"]
            if name != NAMESPACE + "CommentPosted" or e["actor"]["role"] in EXEMPT_ROLES:
                continue
            comments.append((e, fields["text"]))
        t_score = time.perf_counter()
        scores = self.model.score([text for _, text in comments])
        score_ms = (time.perf_counter() - t_score) * 1000

        out = []  # (topic, key, value bytes, headers)
        decided = deleted = 0
        for (e, _), score in zip(comments, scores):
            for ev in self._decide(e, score):
                value = self.serialize(ev, SerializationContext(self.a.topic, MessageField.VALUE))
                out.append((self.a.topic, ev["roomId"].encode("utf-8"), value, None))
                decided += ev["payload"][0].endswith("ModerationDecided")
                deleted += ev["payload"][0].endswith("CommentDeleted")
        for m, err in dead:
            headers = list(m.headers() or []) + [
                (DLQ_HEADERS["sourceTopic"], m.topic()),
                (DLQ_HEADERS["sourcePartition"], str(m.partition())),
                (DLQ_HEADERS["sourceOffset"], str(m.offset())),
                (DLQ_HEADERS["errorCode"], err.code),
                (DLQ_HEADERS["errorMessage"], str(err)[:1000]),
                (DLQ_HEADERS["consumerGroup"], self.a.group),
                (DLQ_HEADERS["failedAt"], datetime.datetime.now(datetime.timezone.utc).isoformat()),
            ]
            out.append((self.a.dead_letter_topic, m.key() or b"", m.value() or b"", headers))
        self._produce_all(out)
        return {"scored": len(comments), "decided": decided, "deleted": deleted, "deadLettered": len(dead), "scoreMs": score_ms}

    def _decide(self, e, score):
        """The events one score writes (none below --record-above)."""
        if score < self.a.record_above and score < self.a.threshold:
            return []
        at = millis(e["occurredAt"])
        comment_id = e["eventId"]
        verdict = self.a.action if score >= self.a.threshold else "allow"
        base = {"roomId": e["roomId"], "actor": ACTOR, "occurredAt": at, "videoOffsetMs": e.get("videoOffsetMs"), "clientMsgId": None}
        # Decision kinds carry the model's name: the same model re-processing a
        # comment writes the same ids; another model's verdict is a new decision.
        events = [{
            **base,
            "eventId": derived_event_id(comment_id, f"{self.rule}:decided", at),
            "payload": (NAMESPACE + "ModerationDecided", {
                "targetEventId": comment_id,
                "targetUserId": e["actor"]["userId"],
                "verdict": verdict,
                "labels": ["model"],
                "score": round(score, 4),
                "rule": self.rule,
            }),
        }]
        if verdict == "delete":
            events.append({
                **base,
                "eventId": derived_event_id(comment_id, f"{self.rule}:deleted", at),
                "payload": (NAMESPACE + "CommentDeleted", {"targetEventId": comment_id, "deletedBy": ACTOR["userId"], "reason": "moderation:model"}),
            })
        return events

    def _produce_all(self, out):
        """Produces every record and waits for all acknowledgements; raises if any failed
        (the caller retries the whole batch: the ids make a second copy harmless)."""
        if not out:
            return
        failed = []

        def on_delivery(err, _msg):
            if err is not None:
                failed.append(err)

        for topic, key, value, headers in out:
            while True:
                try:
                    self.producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
                    break
                except BufferError:
                    self.producer.poll(0.1)  # local queue full: let deliveries drain
        left = self.producer.flush(30)
        if left or failed:
            raise RuntimeError(f"{len(failed)} produce(s) failed, {left} not acknowledged within 30 s: {failed[:1]}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--registry", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--dead-letter-topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--client-id", default="danmaku")
    p.add_argument("--threshold", type=float, default=0.95)
    p.add_argument("--record-above", type=float, default=0.5)
    p.add_argument("--action", choices=("delete", "hold"), default="delete")
    p.add_argument("--batch-max", type=int, default=500)
    p.add_argument("--batch-ms", type=int, default=50)
    p.add_argument("--max-backoff-ms", type=int, default=5000)
    p.add_argument("--compression", choices=("none", "gzip"), default="gzip")
    p.add_argument("--status-fd", type=int, default=None)
    p.add_argument("--watch-stdin", action="store_true")
    a = p.parse_args()

    status = Status(a.status_fd)
    stage = Stage(a, status)

    def stop(*_):
        stage.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if a.watch_stdin:
        def watch():
            # Raw reads of fd 0 (not sys.stdin, whose buffer lock would abort the
            # interpreter's shutdown while this daemon thread waits on it).
            while os.read(0, 4096):
                pass  # EOF: the parent is gone
            stop()
            log("parent went away: stopping")

        threading.Thread(target=watch, daemon=True).start()
    try:
        stage.run()
    finally:
        status.send({"type": "stopped"})
    log("stopped")


if __name__ == "__main__":
    main()
