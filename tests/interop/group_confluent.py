"""confluent-kafka (librdkafka) consumer groups against a weir broker.

Usage:
  python group_confluent.py create HOST:PORT TOPIC PARTITIONS
  python group_confluent.py produce HOST:PORT TOPIC PARTITIONS FROM TO
      writes records valued FROM..TO-1 with an idempotent producer, round robin over the
      partitions.
  python group_confluent.py consume HOST:PORT TOPIC GROUP ASSIGNOR
      joins GROUP with ASSIGNOR (range, roundrobin, cooperative-sticky) and reads; after
      each batch it prints "record I P O" per record, then commits synchronously. Prints
      "assigned P,P,..." whenever its assignment changes. Closes (leaving the group) when
      its stdin closes or says anything.
  python group_confluent.py static HOST:PORT TOPIC GROUP INSTANCE RECORDS
      joins GROUP as static member INSTANCE (group.instance.id), reads and commits batch
      by batch until it has read at least RECORDS records, prints "record I P O" for
      each, and closes: a static member does not leave the group when it closes.
"""
import os
import select
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

DEADLINE_S = 50


def create(brokers, topic, partitions):
    admin = AdminClient({"bootstrap.servers": brokers})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)], request_timeout=15).values():
        f.result()


def produce(brokers, topic, partitions, first, end):
    p = Producer({"bootstrap.servers": brokers, "acks": "all", "linger.ms": 5, "enable.idempotence": True})
    errors = []
    for i in range(first, end):
        p.produce(topic, key=str(i).encode(), value=str(i).encode(), partition=i % partitions,
                  on_delivery=lambda err, msg: err and errors.append(err))
        if i % 500 == 0:
            p.poll(0)
    left = p.flush(30)
    if left or errors:
        sys.exit(f"produce: {left} unflushed, errors {errors[:3]}")
    print(f"produced {end - first}", flush=True)


def process(c, msgs):
    """Prints each record ("record I P O"), then commits them synchronously; returns how
    many there were."""
    batch = []
    for m in msgs:
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            sys.exit(f"consume error: {m.error()}")
        batch.append(f"record {int(m.value())} {m.partition()} {m.offset()}")
    if batch:
        # Processed, then committed before anything else is read.
        print("\n".join(batch), flush=True)
        c.commit(asynchronous=False)
    return len(batch)


def told_to_stop():
    return bool(select.select([sys.stdin], [], [], 0)[0])


def consume(brokers, topic, group, assignor):
    config = {
        "bootstrap.servers": brokers,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 300,
        "partition.assignment.strategy": assignor,
    }
    if "WEIR_RDKAFKA_DEBUG" in os.environ:
        config["debug"] = os.environ["WEIR_RDKAFKA_DEBUG"]
    c = Consumer(config)

    c.subscribe([topic])
    deadline = time.time() + DEADLINE_S
    assigned = None
    while time.time() < deadline:
        if told_to_stop():
            c.close()
            print("closed", flush=True)
            return
        msgs = c.consume(num_messages=200, timeout=0.3)
        now = sorted(tp.partition for tp in c.assignment())
        if now != assigned:
            assigned = now
            print("assigned " + ",".join(map(str, now)), flush=True)
        process(c, msgs)
    sys.exit("never told to stop")


def static(brokers, topic, group, instance, n):
    c = Consumer({
        "bootstrap.servers": brokers,
        "group.id": group,
        "group.instance.id": instance,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 300,
    })
    c.subscribe([topic])
    read = 0
    deadline = time.time() + DEADLINE_S
    while read < n and time.time() < deadline:
        read += process(c, c.consume(num_messages=100, timeout=0.3))
    c.close()
    if read < n:
        sys.exit(f"read {read} of {n} records")


def main():
    role, brokers, topic = sys.argv[1:4]
    if role == "create":
        create(brokers, topic, int(sys.argv[4]))
    elif role == "produce":
        produce(brokers, topic, int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    elif role == "static":
        static(brokers, topic, sys.argv[4], sys.argv[5], int(sys.argv[6]))
    else:
        consume(brokers, topic, sys.argv[4], sys.argv[5])


if __name__ == "__main__":
    main()
