"""confluent-kafka (librdkafka) consumer groups against a weir broker.

Usage:
  python group_confluent.py create HOST:PORT TOPIC PARTITIONS
  python group_confluent.py produce HOST:PORT TOPIC PARTITIONS RECORDS
      writes RECORDS records (values "0".."RECORDS-1") with an idempotent producer, round
      robin over the partitions.
  python group_confluent.py consume HOST:PORT TOPIC GROUP
      joins GROUP and reads; after each batch it prints "record I P O" per record, then
      commits synchronously. Prints "assigned P,P,..." on each assignment. Closes (leaving
      the group) when its stdin closes or says anything.
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


def produce(brokers, topic, partitions, n):
    p = Producer({"bootstrap.servers": brokers, "acks": "all", "linger.ms": 5, "enable.idempotence": True})
    errors = []
    for i in range(n):
        p.produce(topic, key=str(i).encode(), value=str(i).encode(), partition=i % partitions,
                  on_delivery=lambda err, msg: err and errors.append(err))
        if i % 500 == 0:
            p.poll(0)
    left = p.flush(30)
    if left or errors:
        sys.exit(f"produce: {left} unflushed, errors {errors[:3]}")
    print(f"produced {n}", flush=True)


def told_to_stop():
    return bool(select.select([sys.stdin], [], [], 0)[0])


def consume(brokers, topic, group):
    config = {
        "bootstrap.servers": brokers,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 300,
        "partition.assignment.strategy": "range",
    }
    if "WEIR_RDKAFKA_DEBUG" in os.environ:
        config["debug"] = os.environ["WEIR_RDKAFKA_DEBUG"]
    c = Consumer(config)

    def on_assign(consumer, parts):
        print("assigned " + ",".join(str(p.partition) for p in sorted(parts, key=lambda p: p.partition)),
              flush=True)

    c.subscribe([topic], on_assign=on_assign)
    deadline = time.time() + DEADLINE_S
    while time.time() < deadline:
        if told_to_stop():
            c.close()
            print("closed", flush=True)
            return
        msgs = c.consume(num_messages=200, timeout=0.3)
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
    sys.exit("never told to stop")


def main():
    role, brokers, topic = sys.argv[1:4]
    if role == "create":
        create(brokers, topic, int(sys.argv[4]))
    elif role == "produce":
        produce(brokers, topic, int(sys.argv[4]), int(sys.argv[5]))
    else:
        consume(brokers, topic, sys.argv[4])


if __name__ == "__main__":
    main()
