#!/usr/bin/env python3
"""Interop probe: Confluent's own Python client against our topics.

Proves the wire format is the standard one (magic byte 0, 4-byte big-endian
schema id, Avro body) by letting a client nobody here wrote read what the
project produced, and produce what the project must read. Run from the venv
that topics/interop/venv.ts builds (confluent-kafka, fastavro, ...).

  consume --bootstrap B --registry URL --topic T --count N [--timeout S]
      prints N records, one JSON line each: key, partition, offset, schemaId
      and the decoded value (payload as {"type": "CommentPosted", ...fields},
      the shape the project's codec gives), then exits.
  produce --bootstrap B --registry URL --topic T --room R --event-id E --text X
      produces one CommentPosted keyed by room, prints its partition/offset.
"""
import argparse
import datetime
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

NAMESPACE = "danmaku.events."
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def plain(v):
    """fastavro's decoded values as JSON: timestamp-millis comes back as datetime,
    and (with return_record_name) a union of records as a (full name, fields) tuple."""
    if isinstance(v, datetime.datetime):
        return (v - EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], dict):
        return {"type": v[0].removeprefix(NAMESPACE), **plain(v[1])}
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def consume(a):
    registry = SchemaRegistryClient({"url": a.registry})
    # return_record_name: the payload union holds only records, so without the
    # name the branch could only be guessed from its fields.
    deserialize = AvroDeserializer(registry, return_record_name=True)
    consumer = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": f"interop-{uuid.uuid4()}",  # required by the client; never committed
        "enable.auto.commit": False,
    })
    # Assign every partition from the start instead of subscribing: no group
    # rebalance to wait for, and nothing is left behind in the broker.
    partitions = consumer.list_topics(a.topic, timeout=10).topics[a.topic].partitions
    consumer.assign([TopicPartition(a.topic, p, OFFSET_BEGINNING) for p in partitions])
    deadline = time.monotonic() + a.timeout
    got = 0
    try:
        while got < a.count:
            if time.monotonic() > deadline:
                sys.exit(f"timed out: {got} of {a.count} records after {a.timeout}s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            raw = msg.value()
            value = deserialize(raw, SerializationContext(a.topic, MessageField.VALUE))
            print(json.dumps({
                "key": msg.key().decode("utf-8") if msg.key() is not None else None,
                "partition": msg.partition(),
                "offset": msg.offset(),
                "magic": raw[0],
                "schemaId": int.from_bytes(raw[1:5], "big"),
                "value": plain(value),
            }), flush=True)
            got += 1
    finally:
        consumer.close()


def produce(a):
    registry = SchemaRegistryClient({"url": a.registry})
    # The project owns the schema: never register one from here, write with the
    # latest version of <topic>-value (the default TopicNameStrategy subject).
    serialize = AvroSerializer(registry, conf={"auto.register.schemas": False, "use.latest.version": True})
    producer = Producer({
        "bootstrap.servers": a.bootstrap,
        "enable.idempotence": True,  # implies acks=all, like the project's producer
        # librdkafka's default partitioner (consistent_random, CRC32) would put a
        # room in another partition than kafkajs/Java's murmur2 does, breaking
        # per-room order; murmur2_random matches them for non-empty keys.
        "partitioner": "murmur2_random",
    })
    now_ms = (datetime.datetime.now(datetime.timezone.utc) - EPOCH) // datetime.timedelta(milliseconds=1)
    event = {
        "eventId": a.event_id,
        "roomId": a.room,
        "actor": {"userId": "py-user", "role": "moderator"},
        "occurredAt": now_ms,  # fastavro takes timestamp-millis as an int (or a datetime)
        "videoOffsetMs": 4242,
        "clientMsgId": f"py-{a.event_id}",
        # A (full name, fields) tuple picks the union branch explicitly instead
        # of letting fastavro guess it from the fields.
        "payload": (NAMESPACE + "CommentPosted", {
            "text": a.text, "mode": "top", "color": 0xFF8800, "size": "large", "replyTo": None,
        }),
    }
    acks = []
    producer.produce(
        a.topic,
        key=a.room.encode("utf-8"),
        value=serialize(event, SerializationContext(a.topic, MessageField.VALUE)),
        on_delivery=lambda err, msg: acks.append((err, msg)),
    )
    left = producer.flush(30)
    if left or not acks:
        sys.exit(f"not delivered within 30s ({left} left in queue)")
    err, msg = acks[0]
    if err is not None:
        sys.exit(f"delivery failed: {err}")
    print(json.dumps({"partition": msg.partition(), "offset": msg.offset(), "schemaId": int.from_bytes(msg.value()[1:5], "big")}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("consume", "produce"):
        s = sub.add_parser(name)
        s.add_argument("--bootstrap", required=True)
        s.add_argument("--registry", required=True)
        s.add_argument("--topic", required=True)
    c = sub.choices["consume"]
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--timeout", type=float, default=30.0)
    pr = sub.choices["produce"]
    pr.add_argument("--room", required=True)
    pr.add_argument("--event-id", required=True)
    pr.add_argument("--text", required=True)
    a = p.parse_args()
    consume(a) if a.cmd == "consume" else produce(a)


if __name__ == "__main__":
    main()
