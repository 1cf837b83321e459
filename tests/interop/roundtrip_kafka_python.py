"""kafka-python 3 against a weir broker: its default (idempotent) producer with acks=all,
and a consumer with assigned partitions reading from the beginning, once per codec.

Usage: python roundtrip_kafka_python.py HOST:PORT TOPIC_PREFIX RECORDS
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

PARTITIONS = 2


def record(i):
    key = f"k{i}".encode()
    return key, (b"v%d-" % i) * (1 + i % 7), [("idx", str(i).encode())]


def main():
    brokers, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    codecs = [None, "gzip", "snappy", "lz4", "zstd"]
    admin = KafkaAdminClient(bootstrap_servers=brokers)
    topics = [f"{prefix}-{c or 'none'}" for c in codecs]
    admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
    admin.close()
    for codec, topic in zip(codecs, topics):
        p = KafkaProducer(bootstrap_servers=brokers, acks="all", compression_type=codec)
        futures = [p.send(topic, key=k, value=v, headers=h) for k, v, h in map(record, range(n))]
        p.flush(30)
        offsets = [f.get(timeout=30) for f in futures]
        assert len(offsets) == n
        p.close()

        c = KafkaConsumer(bootstrap_servers=brokers, group_id=None, enable_auto_commit=False,
                          auto_offset_reset="earliest", consumer_timeout_ms=15000)
        c.assign([TopicPartition(topic, part) for part in range(PARTITIONS)])
        c.seek_to_beginning()
        seen = set()
        for m in c:
            i = int(dict(m.headers)["idx"])
            k, v, h = record(i)
            if (m.key, m.value, list(m.headers)) != (k, v, h) or i in seen:
                sys.exit(f"{codec}: record {i} differs or repeats: {m!r}")
            seen.add(i)
            if len(seen) == n:
                break
        c.close()
        if len(seen) != n:
            sys.exit(f"{codec}: read {len(seen)} of {n} records")
        print(f"kafka-python {codec or 'none'}: {n} records produced (idempotent, acks=all) and read back identical")


if __name__ == "__main__":
    main()
