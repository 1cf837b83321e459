"""kafka-python 3 against a weir broker: its default (idempotent) producer, and a group
consumer that commits, leaves, and is succeeded by one that resumes from the commit.

Usage: python group_kafka_python.py HOST:PORT TOPIC RECORDS
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

PARTITIONS = 4
GROUP = "kp-group"


def produce(brokers, topic, ids):
    p = KafkaProducer(bootstrap_servers=brokers, acks="all")
    futures = [p.send(topic, key=str(i).encode(), value=str(i).encode()) for i in ids]
    p.flush(30)
    for f in futures:
        f.get(timeout=30)
    p.close()


def consume(brokers, topic, want):
    c = KafkaConsumer(topic, bootstrap_servers=brokers, group_id=GROUP,
                      enable_auto_commit=False, auto_offset_reset="earliest",
                      session_timeout_ms=6000, heartbeat_interval_ms=500,
                      consumer_timeout_ms=20000)
    seen = []
    for m in c:
        seen.append(int(m.value))
        if len(seen) % 100 == 0 or len(seen) == want:
            c.commit()
        if len(seen) >= want:
            break
    c.commit()
    committed = sum(c.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS))
    c.close()
    return seen, committed


def main():
    brokers, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = KafkaAdminClient(bootstrap_servers=brokers)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])

    produce(brokers, topic, range(n))
    seen, committed = consume(brokers, topic, n)
    if sorted(seen) != list(range(n)):
        sys.exit(f"first consumer read {len(seen)} records, {len(set(seen))} distinct, of {n}")
    if committed != n:
        sys.exit(f"first consumer committed {committed} of {n}")
    print(f"kafka-python group consumer: read and committed {n} records from the idempotent producer")

    produce(brokers, topic, range(n, 2 * n))
    seen, committed = consume(brokers, topic, n)
    if sorted(seen) != list(range(n, 2 * n)):
        sys.exit(f"second consumer did not resume at the commit: read {sorted(seen)[:5]}... ({len(seen)})")
    print(f"kafka-python group consumer: a successor resumed at the committed offsets ({n} new records)")

    listed = admin.list_groups()
    groups = [g["group_id"] if isinstance(g, dict) else g[0] for g in listed]
    if GROUP not in groups:
        sys.exit(f"{GROUP} not in list_groups(): {listed}")
    offsets = admin.list_group_offsets({GROUP: None})[GROUP]
    total = sum(o.offset for o in offsets.values())
    if total != 2 * n:
        sys.exit(f"admin sees committed offsets summing to {total}, not {2 * n}")
    admin.close()
    print(f"kafka-python admin: {GROUP} listed, committed offsets sum to {2 * n}")


if __name__ == "__main__":
    main()
