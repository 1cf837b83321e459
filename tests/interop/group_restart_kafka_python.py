"""kafka-python 3 across a weir broker restart: the same idempotent producer keeps producing
(its sequence numbers survive in the log), and the same group consumer resumes from its
committed offsets, reading every record exactly once.

Usage: python group_restart_kafka_python.py HOST:PORT TOPIC RECORDS
Prints "half" once it has read and committed the first half, then waits for a line on
stdin (the broker restarts meanwhile) before producing and reading the second half.
"""
import sys

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

PARTITIONS = 4


def send(p, topic, ids):
    futures = [p.send(topic, key=str(i).encode(), value=str(i).encode()) for i in ids]
    p.flush(30)
    for f in futures:
        f.get(timeout=30)


def read(c, want, seen):
    """Reads until `want` more records, committing after each processed batch."""
    goal = len(seen) + want
    while len(seen) < goal:
        batches = c.poll(timeout_ms=1000, max_records=100)
        if not batches:
            continue
        for records in batches.values():
            for m in records:
                i = int(m.value)
                if i in seen:
                    sys.exit(f"record {i} read twice")
                seen.add(i)
        c.commit()


def main():
    brokers, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = KafkaAdminClient(bootstrap_servers=brokers)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    admin.close()
    half = n // 2
    p = KafkaProducer(bootstrap_servers=brokers, acks="all", retries=10)
    c = KafkaConsumer(topic, bootstrap_servers=brokers, group_id="restarted",
                      enable_auto_commit=False, auto_offset_reset="earliest",
                      session_timeout_ms=6000, heartbeat_interval_ms=500,
                      max_poll_records=100)
    seen = set()
    send(p, topic, range(half))
    read(c, half, seen)
    print("half", flush=True)
    sys.stdin.readline()

    send(p, topic, range(half, n))
    read(c, n - half, seen)
    c.close()
    p.close()
    if seen != set(range(n)):
        sys.exit(f"read {len(seen)} distinct records of {n}")
    print(f"resumed: {n} records read exactly once across the restart", flush=True)


if __name__ == "__main__":
    main()
