"""confluent-kafka (librdkafka) against a weir broker: produce with acks=all, read back with
an assigned consumer from the beginning, byte-identical, once per compression codec.

Usage: python roundtrip_confluent.py HOST:PORT TOPIC_PREFIX RECORDS
Exits non-zero with a message on the first mismatch.
"""
import hashlib
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 3


def record(i):
    key = f"key-{i}".encode()
    value = hashlib.sha256(key).digest() * (1 + i % 5)
    headers = [("idx", str(i).encode()), ("empty", b"")]
    return key, value, headers


def main():
    brokers, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": brokers})
    codecs = ["none", "gzip", "snappy", "lz4", "zstd"]
    topics = [f"{prefix}-{c}" for c in codecs]
    futures = admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics], request_timeout=15)
    for t, f in futures.items():
        f.result()  # raises on error
    md = admin.list_topics(timeout=10)
    for t in topics:
        assert t in md.topics and len(md.topics[t].partitions) == PARTITIONS, f"metadata for {t}: {md.topics.get(t)}"

    for codec, topic in zip(codecs, topics):
        p = Producer({"bootstrap.servers": brokers, "acks": "all", "compression.type": codec,
                      "linger.ms": 5, "enable.idempotence": False})
        delivered, errors = [], []

        def on_delivery(err, msg):
            (errors if err else delivered).append(err or (msg.partition(), msg.offset()))

        for i in range(n):
            k, v, h = record(i)
            p.produce(topic, key=k, value=v, headers=h, on_delivery=on_delivery)
            if i % 1000 == 0:
                p.poll(0)
        left = p.flush(30)
        if left or errors or len(delivered) != n:
            sys.exit(f"{codec}: {left} unflushed, errors {errors[:3]}, {len(delivered)}/{n} delivered")

        c = Consumer({"bootstrap.servers": brokers, "group.id": f"{prefix}-reader",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        c.assign([TopicPartition(topic, part, 0) for part in range(PARTITIONS)])
        seen = {}
        deadline = time.time() + 60
        while len(seen) < n and time.time() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                sys.exit(f"{codec}: consume error {m.error()}")
            i = int(dict(m.headers())["idx"])
            if i in seen:
                sys.exit(f"{codec}: record {i} read twice")
            k, v, h = record(i)
            got = (m.key(), m.value(), [(a, b or b"") for a, b in m.headers()])
            if got != (k, v, h):
                sys.exit(f"{codec}: record {i} differs: {got!r} != {(k, v, h)!r}")
            seen[i] = m.offset()
        c.close()
        if len(seen) != n:
            sys.exit(f"{codec}: read {len(seen)} of {n} records")
        print(f"confluent-kafka {codec}: {n} records produced (acks=all) and read back identical")


if __name__ == "__main__":
    main()
