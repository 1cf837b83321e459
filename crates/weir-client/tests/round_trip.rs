//! weir-client against an in-process weir broker on 127.0.0.1:0.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use weir_broker::{Broker, BrokerConfig};
use weir_client::{
    Acks, ApiKey, Client, ClientError, Compression, Connection, ConnectionConfig, Consumer,
    ConsumerConfig, ConsumerRecord, NewTopic, Offset, Producer, ProducerConfig, ProducerRecord,
    ResponseError, partition_for_key,
};
use weir_log::{Durability, Log, LogOptions};

struct TestBroker {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    async fn start(auto_create: bool) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open_with(
            dir.path(),
            LogOptions {
                durability: Durability::None,
                ..LogOptions::default()
            },
        )
        .unwrap();
        let config = BrokerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            auto_create_topics: auto_create,
            ..BrokerConfig::default()
        };
        let broker = Broker::bind(log, config).await.unwrap();
        let addr = broker.local_addr().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            broker
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        TestBroker {
            addr,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("broker stops")
                .unwrap();
        }
    }
}

/// A client on `broker`, a new topic, and a producer with `config`.
async fn topic_and_producer(
    broker: &TestBroker,
    topic: &str,
    partitions: i32,
    config: ProducerConfig,
) -> (Client, Producer) {
    let client = Client::connect(&broker.addr).await.unwrap();
    client
        .create_topic(NewTopic::new(topic, partitions))
        .await
        .unwrap();
    let producer = Producer::new(client.clone(), config).unwrap();
    (client, producer)
}

async fn read_all(consumer: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "read {} of {n}",
            out.len()
        );
        out.extend(consumer.poll().await.unwrap());
    }
    out
}

fn fast_consumer(client: Client) -> Consumer {
    Consumer::new(
        client,
        ConsumerConfig {
            max_wait: Duration::from_millis(50),
            ..ConsumerConfig::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_negotiated_per_api() {
    let broker = TestBroker::start(true).await;
    // weir serves ApiVersions v0-v3 and this client asks v4 first, so connecting at all
    // proves the KIP-511 fallback (a v0-format UNSUPPORTED_VERSION answer, then v3).
    let conn = Connection::connect(broker.addr.parse().unwrap(), ConnectionConfig::default())
        .await
        .unwrap();
    for key in [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::Metadata,
        ApiKey::ListOffsets,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
    ] {
        let broker_range = conn.versions().broker_range(key).expect("broker serves it");
        let ours = weir_client::client_range(key);
        let picked = conn.version_for(key).unwrap();
        assert_eq!(picked, broker_range.max.min(ours.max), "{key:?}");
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_round_trips_byte_identical() {
    let broker = TestBroker::start(true).await;
    let client = Client::connect(&broker.addr).await.unwrap();
    for (i, compression) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let topic = format!("rt-{i}");
        client.create_topic(NewTopic::new(&topic, 2)).await.unwrap();
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                compression,
                batch_size: 4096,
                linger: Duration::from_millis(2),
                ..ProducerConfig::default()
            },
        )
        .unwrap();
        let mut sent = Vec::new();
        let mut deliveries = Vec::new();
        for n in 0..300u32 {
            let value: Vec<u8> = (0..(n % 97) * 3).map(|b| (b * 31 + n) as u8).collect();
            let mut record = ProducerRecord::new(&topic, value.clone())
                .with_header("n", n.to_string())
                .with_timestamp(1_700_000_000_000 + i64::from(n));
            if n % 3 != 0 {
                record = record.with_key(format!("key-{}", n % 11));
            }
            sent.push(record.clone());
            deliveries.push(producer.send(record).await.unwrap());
        }
        producer.flush().await;
        let mut by_position = BTreeMap::new();
        for (record, d) in sent.into_iter().zip(deliveries) {
            let meta = d.await.unwrap();
            if let Some(k) = &record.key {
                assert_eq!(
                    meta.partition,
                    partition_for_key(k, 2),
                    "keyed records follow murmur2"
                );
            }
            assert!(
                by_position
                    .insert((meta.partition, meta.offset), record)
                    .is_none(),
                "offsets are unique"
            );
        }
        let mut consumer = fast_consumer(client.clone());
        consumer.assign_all(&topic, Offset::Earliest).await.unwrap();
        let got = read_all(&mut consumer, 300).await;
        assert_eq!(got.len(), 300, "{compression:?}");
        for r in got {
            let want = by_position
                .get(&(r.partition, r.offset))
                .unwrap_or_else(|| panic!("unexpected record {}-{}", r.partition, r.offset));
            assert_eq!(r.value, want.value, "{compression:?}");
            assert_eq!(r.key, want.key);
            assert_eq!(Some(r.timestamp), want.timestamp);
            assert_eq!(r.headers, want.headers);
        }
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_by_timestamp_earliest_and_latest() {
    let broker = TestBroker::start(true).await;
    let (client, producer) = topic_and_producer(&broker, "ts", 1, ProducerConfig::default()).await;
    // Separate sends so that each record is its own batch with its own max timestamp.
    for n in 0..10i64 {
        let d = producer
            .send(ProducerRecord::new("ts", format!("v{n}")).with_timestamp(1_000 * (n + 1)))
            .await
            .unwrap();
        producer.flush().await;
        assert_eq!(d.await.unwrap().offset, n);
    }
    let mut consumer = fast_consumer(client.clone());
    consumer.assign("ts", &[0], Offset::Latest).await.unwrap();
    assert_eq!(consumer.position("ts", 0), Some(10));
    assert_eq!(
        consumer
            .seek("ts", 0, Offset::Timestamp(4_500))
            .await
            .unwrap(),
        4
    );
    let got = read_all(&mut consumer, 6).await;
    assert_eq!(got[0].value.as_deref(), Some(&b"v4"[..]));
    assert_eq!(got.last().unwrap().offset, 9);
    assert_eq!(consumer.seek("ts", 0, Offset::Earliest).await.unwrap(), 0);
    assert_eq!(
        consumer
            .seek("ts", 0, Offset::Timestamp(99_999))
            .await
            .unwrap(),
        10,
        "a timestamp after every record seeks to the end"
    );
    assert_eq!(consumer.seek("ts", 0, Offset::At(3)).await.unwrap(), 3);
    let got = read_all(&mut consumer, 7).await;
    assert_eq!(
        got[0].offset, 3,
        "a fetch inside a batch drops the records before it"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_list_describe_delete() {
    let broker = TestBroker::start(false).await;
    let client = Client::connect(&broker.addr).await.unwrap();
    client
        .create_topics(&[NewTopic::new("a", 3), NewTopic::new("b", 1)])
        .await
        .unwrap();
    assert_eq!(client.list_topics().await.unwrap(), ["a", "b"]);
    let described = client.describe_topics(&["a"]).await.unwrap();
    assert_eq!(described[0].partitions.len(), 3);
    assert!(described[0].partitions.iter().all(|p| p.leader == 0));
    let e = client
        .create_topic(NewTopic::new("a", 1))
        .await
        .unwrap_err();
    assert_eq!(e.kafka_code(), Some(ResponseError::TopicAlreadyExists));
    client.delete_topics(&["a"]).await.unwrap();
    assert_eq!(client.list_topics().await.unwrap(), ["b"]);
    let e = client.delete_topics(&["a"]).await.unwrap_err();
    assert_eq!(e.kafka_code(), Some(ResponseError::UnknownTopicOrPartition));
    assert!(matches!(
        client.describe_topics(&["a"]).await,
        Err(ClientError::UnknownTopic(_))
    ));
    // With auto-create off, producing to an unknown topic says so.
    let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
    let e = producer
        .send(ProducerRecord::new("nope", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::UnknownTopic(ref t) if t == "nope"),
        "{e}"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_created_topic_and_acks_zero() {
    let broker = TestBroker::start(true).await;
    let client = Client::connect(&broker.addr).await.unwrap();
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            acks: Acks::None,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let d = producer
        .send(ProducerRecord::new("auto", Bytes::from_static(b"fire")))
        .await
        .unwrap();
    producer.flush().await;
    assert_eq!(d.await.unwrap().offset, -1, "acks=0 learns no offset");
    let mut consumer = fast_consumer(client);
    consumer.assign_all("auto", Offset::Earliest).await.unwrap();
    let got = read_all(&mut consumer, 1).await;
    assert_eq!(got[0].value.as_deref(), Some(&b"fire"[..]));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_broker_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let e = Client::connect(&addr).await.unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    assert!(e.to_string().contains(&addr), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_is_sent_without_waiting_for_linger() {
    let broker = TestBroker::start(true).await;
    let (_client, producer) = topic_and_producer(
        &broker,
        "full",
        1,
        ProducerConfig {
            linger: Duration::from_secs(3600),
            batch_size: 1000,
            ..ProducerConfig::default()
        },
    )
    .await;
    // 20 records of ~116 bytes fill a 1000-byte batch; the record after them opens another.
    let mut deliveries = Vec::new();
    for n in 0..20 {
        let d = producer
            .send(ProducerRecord::new("full", vec![n as u8; 100]))
            .await
            .unwrap();
        deliveries.push(d);
    }
    let first = deliveries.remove(0);
    let meta = tokio::time::timeout(Duration::from_secs(20), first)
        .await
        .expect("a full batch goes out long before its linger")
        .unwrap();
    assert_eq!(meta.offset, 0);
    // The tail batch waits for linger; flush sends it at once.
    let last = deliveries.pop().unwrap();
    tokio::time::timeout(Duration::from_secs(20), producer.flush())
        .await
        .expect("flush sends lingering batches");
    assert_eq!(last.await.unwrap().offset, 19);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_records_evenly() {
    let broker = TestBroker::start(true).await;
    let (_client, producer) = topic_and_producer(
        &broker,
        "rr",
        3,
        ProducerConfig {
            partitioner: weir_client::Partitioner::RoundRobin,
            ..ProducerConfig::default()
        },
    )
    .await;
    let mut deliveries = Vec::new();
    for n in 0..30 {
        deliveries.push(
            producer
                .send(ProducerRecord::new("rr", format!("{n}")).with_key("same-key"))
                .await
                .unwrap(),
        );
    }
    producer.flush().await;
    let mut per_partition = [0; 3];
    for d in deliveries {
        per_partition[d.await.unwrap().partition as usize] += 1;
    }
    assert_eq!(per_partition, [10, 10, 10]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retriable_produce_error_is_retried_with_fresh_metadata() {
    let broker = TestBroker::start(false).await;
    let (_client, producer) = topic_and_producer(
        &broker,
        "gone",
        1,
        ProducerConfig {
            retry_backoff: Duration::from_millis(10),
            ..ProducerConfig::default()
        },
    )
    .await;
    let d = producer
        .send(ProducerRecord::new("gone", "a"))
        .await
        .unwrap();
    assert_eq!(d.await.unwrap().offset, 0);
    // Delete behind the producer's back (another client), so its metadata is stale.
    let other = Client::connect(&broker.addr).await.unwrap();
    other.delete_topics(&["gone"]).await.unwrap();
    let d = producer
        .send(ProducerRecord::new("gone", "b"))
        .await
        .unwrap();
    let e = d.await.unwrap_err();
    // The broker's UNKNOWN_TOPIC_OR_PARTITION is retriable; the retry looked the topic
    // up again and found it gone, which is what the caller hears.
    match e {
        ClientError::Delivery { ref source, .. } => {
            assert!(
                matches!(**source, ClientError::UnknownTopic(ref t) if t == "gone"),
                "{e}"
            )
        }
        other => panic!("expected a delivery error, got {other}"),
    }
    broker.stop().await;
}
