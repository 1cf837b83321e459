//! The sans-io service, request frame in, response frame out: no sockets.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{batch, call, decode_response, reply, request_frame, service};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_broker::{BrokerConfig, Reply, SERVED, Service};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn produce_req(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ])
}

fn fetch_req(topic: &str, offset: i64, max_wait_ms: i32, min_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}

async fn create(svc: &Service, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let req = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            ),
    ]);
    let r = call(svc, 7, &req).await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

fn error(code: i16) -> Option<ResponseError> {
    ResponseError::try_from_code(code)
}

#[tokio::test]
async fn api_versions_lists_served_ranges_at_v0_to_v3() {
    let (_d, svc) = service(BrokerConfig::default());
    for v in 0..=3 {
        let r = call(&svc, v, &ApiVersionsRequest::default()).await;
        assert_eq!(r.error_code, 0);
        assert_eq!(r.api_keys.len(), SERVED.len());
        let produce = r.api_keys.iter().find(|k| k.api_key == 0).unwrap();
        assert_eq!((produce.min_version, produce.max_version), (3, 13));
    }
}

#[tokio::test]
async fn api_versions_above_v3_gets_a_v0_answer_with_unsupported_version() {
    let (_d, svc) = service(BrokerConfig::default());
    // A v4 request; the answer is v0-encoded (KIP-511).
    let frame = request_frame(4, 9, &ApiVersionsRequest::default());
    let Reply::Frame(f) = reply(svc.handle(frame)).await else {
        panic!("expected a response")
    };
    let (corr, r) = decode_response::<ApiVersionsRequest>(0, f);
    assert_eq!(corr, 9);
    assert_eq!(error(r.error_code), Some(ResponseError::UnsupportedVersion));
    let av = r.api_keys.iter().find(|k| k.api_key == 18).unwrap();
    assert_eq!((av.min_version, av.max_version), (0, 3));
}

#[tokio::test]
async fn metadata_auto_creates_and_names_the_one_broker() {
    let (_d, svc) = service(BrokerConfig {
        num_partitions: 3,
        ..BrokerConfig::default()
    });
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("clicks"))),
        ]))
        .with_allow_auto_topic_creation(true);
    let r = call(&svc, 12, &req).await;
    assert_eq!(r.brokers.len(), 1);
    assert_eq!(r.brokers[0].node_id.0, 0);
    assert_eq!(
        (&*r.brokers[0].host, r.brokers[0].port),
        ("127.0.0.1", 9092)
    );
    let t = &r.topics[0];
    assert_eq!(t.error_code, 0);
    assert_eq!(t.partitions.len(), 3);
    assert!(!t.topic_id.is_nil(), "topic id filled in");
    assert!(
        t.partitions
            .iter()
            .all(|p| p.leader_id.0 == 0 && p.leader_epoch == -1)
    );
    assert!(svc.log().topic("clicks").is_some());
    // v0: an empty list means every topic.
    let all = call(
        &svc,
        0,
        &MetadataRequest::default().with_topics(Some(vec![])),
    )
    .await;
    assert_eq!(all.topics.len(), 1);
}

#[tokio::test]
async fn metadata_without_auto_create_reports_unknown_topic() {
    let (_d, svc) = service(BrokerConfig {
        auto_create_topics: false,
        ..BrokerConfig::default()
    });
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("nope"))),
        ]))
        .with_allow_auto_topic_creation(true);
    let r = call(&svc, 9, &req).await;
    assert_eq!(
        error(r.topics[0].error_code),
        Some(ResponseError::UnknownTopicOrPartition)
    );
    assert!(svc.log().topic("nope").is_none());
}

#[tokio::test]
async fn produce_then_fetch_serves_the_stored_bytes() {
    let (_d, svc) = service(BrokerConfig::default());
    create(&svc, "t", 1, &[]).await;
    let b1 = batch(3, 1_000);
    let b2 = batch(2, 2_000);
    for (b, want) in [(&b1, 0), (&b2, 3)] {
        let r = call(&svc, 9, &produce_req("t", 0, b.clone(), -1)).await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, want));
    }
    let r = call(&svc, 12, &fetch_req("t", 0, 0, 0)).await;
    let p = &r.responses[0].partitions[0];
    assert_eq!(
        (p.error_code, p.high_watermark, p.log_start_offset),
        (0, 5, 0)
    );
    assert_eq!(p.last_stable_offset, 5);
    let got = p.records.clone().unwrap();
    // Stored as sent, except the base offset the broker assigned (not covered by the CRC).
    let mut want = b1.to_vec();
    let mut second = b2.to_vec();
    second[..8].copy_from_slice(&3i64.to_be_bytes());
    want.extend_from_slice(&second);
    assert_eq!(got.as_ref(), &want[..]);
    // From an offset inside the second batch: the whole batch.
    let r = call(&svc, 4, &fetch_req("t", 4, 0, 0)).await;
    assert_eq!(
        r.responses[0].partitions[0].records.as_deref(),
        Some(&second[..])
    );
}

#[tokio::test]
async fn produce_errors_are_per_partition() {
    let (_d, svc) = service(BrokerConfig {
        auto_create_topics: false,
        ..BrokerConfig::default()
    });
    create(&svc, "small", 1, &[("max.message.bytes", "100")]).await;
    let mut bad = batch(1, 1).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let cases = [
        ("small", 0, Bytes::from(bad), ResponseError::CorruptMessage),
        ("small", 0, batch(20, 1), ResponseError::MessageTooLarge),
        (
            "small",
            5,
            batch(1, 1),
            ResponseError::UnknownTopicOrPartition,
        ),
        (
            "absent",
            0,
            batch(1, 1),
            ResponseError::UnknownTopicOrPartition,
        ),
        (
            "small",
            0,
            Bytes::from_static(b"junk"),
            ResponseError::CorruptMessage,
        ),
    ];
    for (topic, part, records, want) in cases {
        let r = call(&svc, 3, &produce_req(topic, part, records, 1)).await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(error(p.error_code), Some(want), "{topic}-{part}");
        assert_eq!(p.base_offset, -1);
    }
    let r = call(&svc, 9, &produce_req("small", 0, batch(1, 1), 2)).await;
    assert_eq!(
        error(r.responses[0].partition_responses[0].error_code),
        Some(ResponseError::InvalidRequiredAcks)
    );
    assert_eq!(svc.log().bounds("small", 0).unwrap().high_watermark, 0);
}

#[tokio::test]
async fn produce_with_acks_zero_has_no_response_but_lands() {
    let (_d, svc) = service(BrokerConfig::default());
    create(&svc, "t", 1, &[]).await;
    let frame = request_frame(9, 1, &produce_req("t", 0, batch(2, 5), 0));
    assert!(matches!(reply(svc.handle(frame)).await, Reply::Silent));
    // A long poll sees it arrive.
    let r = call(&svc, 12, &fetch_req("t", 0, 5_000, 1)).await;
    assert_eq!(r.responses[0].partitions[0].high_watermark, 2);
    // A failed acks=0 produce closes the connection (as Kafka does), so the producer notices.
    let frame = request_frame(9, 2, &produce_req("t", 0, Bytes::from_static(b"bad"), 0));
    let r = reply(svc.handle(frame)).await;
    assert!(
        matches!(r, Reply::Close(ref why) if why.contains("CorruptMessage")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_long_polls_until_data_arrives() {
    let (_d, svc) = service(BrokerConfig::default());
    create(&svc, "t", 1, &[]).await;
    let started = Instant::now();
    let waiting = {
        let svc = svc.clone();
        tokio::spawn(async move { call(&svc, 11, &fetch_req("t", 0, 10_000, 1)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "fetch waits while the partition is empty"
    );
    call(&svc, 9, &produce_req("t", 0, batch(1, 1), 1)).await;
    let r = waiting.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken by the commit"
    );
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 1);
    assert!(!p.records.as_ref().unwrap().is_empty());
}

#[tokio::test]
async fn fetch_times_out_with_an_empty_not_null_record_set() {
    let (_d, svc) = service(BrokerConfig::default());
    create(&svc, "t", 1, &[]).await;
    let started = Instant::now();
    let r = call(&svc, 4, &fetch_req("t", 0, 150, 1)).await;
    assert!(started.elapsed() >= Duration::from_millis(140));
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(p.records.as_deref(), Some(&[][..]), "empty, never null");
}

#[tokio::test]
async fn fetch_out_of_range_reports_bounds() {
    let (_d, svc) = service(BrokerConfig::default());
    create(&svc, "t", 1, &[]).await;
    call(&svc, 9, &produce_req("t", 0, batch(2, 1), 1)).await;
    let r = call(&svc, 12, &fetch_req("t", 9, 1_000, 1)).await;
    let p = &r.responses[0].partitions[0];
    assert_eq!(error(p.error_code), Some(ResponseError::OffsetOutOfRange));
    assert_eq!((p.high_watermark, p.log_start_offset), (2, 0));
    let r = call(&svc, 12, &fetch_req("missing", 0, 1_000, 1)).await;
    assert_eq!(
        error(r.responses[0].partitions[0].error_code),
        Some(ResponseError::UnknownTopicOrPartition)
    );
}

#[tokio::test]
async fn list_offsets_earliest_latest_and_by_timestamp() {
    let (_d, svc) = service(BrokerConfig::default());
    create(&svc, "t", 1, &[]).await;
    call(&svc, 9, &produce_req("t", 0, batch(2, 1_000), 1)).await;
    call(&svc, 9, &produce_req("t", 0, batch(2, 2_000), 1)).await;
    let ask = |ts: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(ts)]),
            ])
    };
    let spread: Vec<_> = (0..3)
        .map(|i| weir_log::Record::value(3_000 + i, "v"))
        .collect();
    let spread = Bytes::from(weir_log::batch::encode(&spread));
    call(&svc, 9, &produce_req("t", 0, spread, 1)).await;
    for (ts, want) in [
        (-2, 0),
        (-1, 7),
        (1_500, 2),
        (500, 0),
        (3_001, 5),
        (9_999, -1),
    ] {
        let r = call(&svc, 6, &ask(ts)).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.offset), (0, want), "timestamp {ts}");
    }
    let r = call(&svc, 1, &ask(1_500)).await;
    assert_eq!(r.topics[0].partitions[0].timestamp, 2_000);
    let r = call(&svc, 1, &ask(3_002)).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(
        (p.offset, p.timestamp),
        (6, 3_002),
        "exact record inside a batch"
    );
}

#[tokio::test]
async fn create_delete_and_describe_topics() {
    let (_d, svc) = service(BrokerConfig::default());
    create(&svc, "a", 2, &[("retention.ms", "1000")]).await;
    let again = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(name("a"))
            .with_num_partitions(1)
            .with_replication_factor(1),
        CreatableTopic::default()
            .with_name(name("bad name"))
            .with_num_partitions(1)
            .with_replication_factor(1),
        CreatableTopic::default()
            .with_name(name("b"))
            .with_num_partitions(1)
            .with_replication_factor(3),
        CreatableTopic::default()
            .with_name(name("c"))
            .with_num_partitions(-1)
            .with_replication_factor(-1),
    ]);
    let r = call(&svc, 5, &again).await;
    let codes: Vec<_> = r.topics.iter().map(|t| error(t.error_code)).collect();
    assert_eq!(
        codes,
        [
            Some(ResponseError::TopicAlreadyExists),
            Some(ResponseError::InvalidTopicException),
            Some(ResponseError::InvalidReplicationFactor),
            None
        ]
    );
    assert_eq!(r.topics[3].num_partitions, 1);

    let describe = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("a"))
            .with_configuration_keys(None),
    ]);
    let r = call(&svc, 4, &describe).await;
    let cfg: Vec<_> = r.results[0]
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_deref().unwrap_or("").to_string(),
                c.config_source,
            )
        })
        .collect();
    assert!(
        cfg.contains(&("retention.ms".into(), "1000".into(), 1)),
        "{cfg:?}"
    );
    assert!(
        cfg.contains(&("cleanup.policy".into(), "delete".into(), 5)),
        "{cfg:?}"
    );
    assert_eq!(cfg.len(), 4);

    let del = DeleteTopicsRequest::default().with_topic_names(vec![name("a"), name("zzz")]);
    let r = call(&svc, 5, &del).await;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(
        error(r.responses[1].error_code),
        Some(ResponseError::UnknownTopicOrPartition)
    );
    assert!(svc.log().topic("a").is_none());
}

#[tokio::test]
async fn init_producer_id_hands_out_fresh_ids() {
    let (_d, svc) = service(BrokerConfig::default());
    let idempotent = InitProducerIdRequest::default().with_transactional_id(None);
    let a = call(&svc, 4, &idempotent).await;
    let b = call(&svc, 0, &idempotent).await;
    assert_eq!((a.error_code, b.error_code), (0, 0));
    assert!(a.producer_id.0 >= 0 && a.producer_id != b.producer_id);
    assert_eq!(a.producer_epoch, 0);
    let txn = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))));
    let r = call(&svc, 4, &txn).await;
    assert_eq!(
        error(r.error_code),
        Some(ResponseError::TransactionalIdAuthorizationFailed),
        "transactions are refused, not half-served"
    );
}

#[tokio::test]
async fn unserved_apis_get_an_error_response_or_a_closed_connection() {
    let (_d, svc) = service(BrokerConfig::default());
    let r = call(&svc, 0, &DescribeClusterRequest::default()).await;
    assert_eq!(error(r.error_code), Some(ResponseError::UnsupportedVersion));
    let r = call(&svc, 1, &SaslHandshakeRequest::default()).await;
    assert_eq!(
        error(r.error_code),
        Some(ResponseError::UnsupportedSaslMechanism)
    );
    assert!(r.mechanisms.is_empty());
    // An API with no error field to set: the connection is closed, nothing panics.
    let frame = request_frame(0, 1, &CreatePartitionsRequest::default());
    assert!(matches!(reply(svc.handle(frame)).await, Reply::Close(_)));
}

/// Every served API answers at every served version: no response field is set that a
/// version lacks (kafka-protocol refuses to encode those).
#[tokio::test]
async fn every_served_version_encodes() {
    let (_d, svc) = service(BrokerConfig::default());
    create(&svc, "t", 1, &[]).await;
    let topic = |v: i16| {
        MetadataRequestTopic::default()
            .with_name(Some(name("t")))
            .with_topic_id(if v >= 10 {
                uuid::Uuid::from_bytes(svc.log().topic("t").unwrap().uuid)
            } else {
                uuid::Uuid::nil()
            })
    };
    for v in 0..=13 {
        let r = call(
            &svc,
            v,
            &MetadataRequest::default().with_topics(Some(vec![topic(v)])),
        )
        .await;
        assert_eq!(r.topics[0].error_code, 0, "metadata v{v}");
    }
    for v in 3..=13 {
        let mut req = produce_req("t", 0, batch(1, 1), -1);
        if v >= 13 {
            req.topic_data[0].topic_id = uuid::Uuid::from_bytes(svc.log().topic("t").unwrap().uuid);
        }
        let r = call(&svc, v, &req).await;
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 0,
            "produce v{v}"
        );
    }
    for v in 4..=18 {
        let mut req = fetch_req("t", 0, 0, 0);
        if v >= 13 {
            req.topics[0].topic_id = uuid::Uuid::from_bytes(svc.log().topic("t").unwrap().uuid);
        }
        let r = call(&svc, v, &req).await;
        assert_eq!(r.responses[0].partitions[0].error_code, 0, "fetch v{v}");
        assert_eq!(r.responses[0].partitions[0].high_watermark, 11);
    }
    for v in 1..=6 {
        let req = ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)]),
        ]);
        assert_eq!(call(&svc, v, &req).await.topics[0].partitions[0].offset, 11);
    }
    for v in 2..=7 {
        let t = format!("c{v}");
        let req = CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(name(&t))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]);
        assert_eq!(
            call(&svc, v, &req).await.topics[0].error_code,
            0,
            "create v{v}"
        );
    }
    for v in 1..=6 {
        let t = name(&format!("c{}", v + 1));
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(t)),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![t])
        };
        assert_eq!(
            call(&svc, v, &req).await.responses[0].error_code,
            0,
            "delete v{v}"
        );
    }
    for v in 1..=4 {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configuration_keys(Some(vec![StrBytes::from_static_str("retention.ms")])),
        ]);
        assert_eq!(
            call(&svc, v, &req).await.results[0].configs.len(),
            1,
            "describe v{v}"
        );
    }
    for v in 0..=5 {
        assert_eq!(
            call(&svc, v, &InitProducerIdRequest::default())
                .await
                .error_code,
            0
        );
    }
}

#[tokio::test]
async fn compressed_batches_are_stored_and_served_as_sent() {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };
    let (_d, svc) = service(BrokerConfig::default());
    create(&svc, "z", 1, &[]).await;
    let records: Vec<Record> = (0..50)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            // kafka-protocol starts a new batch where offset - sequence changes.
            sequence: i as i32,
            timestamp: 1_000 + i,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![b'v'; 200])),
            headers: Default::default(),
        })
        .collect();
    let mut next = 0;
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut buf = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        let sent = buf.freeze();
        assert!(sent.len() < 50 * 200, "{compression:?} compresses");
        let r = call(&svc, 9, &produce_req("z", 0, sent.clone(), -1)).await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, next), "{compression:?}");
        let r = call(&svc, 12, &fetch_req("z", next, 0, 0)).await;
        let mut got = r.responses[0].partitions[0].records.clone().unwrap();
        let mut want = sent.to_vec();
        want[..8].copy_from_slice(&next.to_be_bytes());
        assert_eq!(
            got.as_ref(),
            &want[..],
            "{compression:?} batch served as stored"
        );
        let back = RecordBatchDecoder::decode(&mut got).unwrap();
        assert_eq!(back.records.len(), 50);
        assert_eq!(back.records[7].key, records[7].key);
        assert_eq!(back.records[7].offset, next + 7);
        next += 50;
    }
}

/// The error responses of unserved APIs encode at every version the protocol library knows.
#[tokio::test]
async fn unserved_error_responses_encode_at_every_version() {
    let (_d, svc) = service(BrokerConfig::default());
    for api in [ApiKey::DescribeCluster, ApiKey::SaslHandshake] {
        let range = api.valid_versions();
        for v in range.min..=range.max {
            let mut frame = (api as i16).to_be_bytes().to_vec();
            frame.extend_from_slice(&v.to_be_bytes());
            frame.extend_from_slice(&5i32.to_be_bytes());
            match reply(svc.handle(Bytes::from(frame))).await {
                Reply::Frame(f) => assert_eq!(&f[4..8], &5i32.to_be_bytes(), "{api:?} v{v}"),
                other => panic!("{api:?} v{v}: {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn topics_by_id_in_metadata_and_delete() {
    let (_d, svc) = service(BrokerConfig::default());
    create(&svc, "byid", 1, &[]).await;
    let id = uuid::Uuid::from_bytes(svc.log().topic("byid").unwrap().uuid);
    let by_id = |id| {
        MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_name(None)
                .with_topic_id(id),
        ]))
    };
    let r = call(&svc, 12, &by_id(id)).await;
    assert_eq!(r.topics[0].name.as_deref().map(|n| &**n), Some("byid"));
    let r = call(&svc, 12, &by_id(uuid::Uuid::from_u128(7))).await;
    assert_eq!(
        error(r.topics[0].error_code),
        Some(ResponseError::UnknownTopicId)
    );
    let del = DeleteTopicsRequest::default().with_topics(vec![
        delete_topics_request::DeleteTopicState::default()
            .with_name(None)
            .with_topic_id(id),
    ]);
    let r = call(&svc, 6, &del).await;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(r.responses[0].name.as_deref().map(|n| &**n), Some("byid"));
    assert!(svc.log().topic("byid").is_none());
}

#[tokio::test]
async fn delete_records_moves_the_log_start() {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    let (_d, svc) = service(BrokerConfig::default());
    create(&svc, "dr", 1, &[]).await;
    for _ in 0..3 {
        call(&svc, 9, &produce_req("dr", 0, batch(2, 1), 1)).await;
    }
    let req = |offset: i64| {
        DeleteRecordsRequest::default().with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(name("dr"))
                .with_partitions(vec![DeleteRecordsPartition::default().with_offset(offset)]),
        ])
    };
    for v in 0..=2 {
        let r = call(&svc, v, &req(2)).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.low_watermark), (0, 2), "v{v}");
    }
    let r = call(&svc, 2, &req(99)).await;
    assert_eq!(
        error(r.topics[0].partitions[0].error_code),
        Some(ResponseError::OffsetOutOfRange)
    );
    let r = call(&svc, 12, &fetch_req("dr", 0, 0, 0)).await;
    let p = &r.responses[0].partitions[0];
    assert_eq!(error(p.error_code), Some(ResponseError::OffsetOutOfRange));
    assert_eq!(
        p.log_start_offset, 2,
        "fetch below the new log start is out of range"
    );
}

#[tokio::test]
async fn fetch_respects_the_response_byte_budget() {
    let (_d, svc) = service(BrokerConfig::default());
    create(&svc, "two", 2, &[]).await;
    for p in 0..2 {
        for _ in 0..3 {
            let mut req = produce_req("two", p, batch(5, 1), 1);
            req.topic_data[0].partition_data[0].index = p;
            call(&svc, 9, &req).await;
        }
    }
    let one = batch(5, 1).len();
    let mut req = fetch_req("two", 0, 0, 0).with_max_bytes(one as i32 + 1);
    let second = req.topics[0].partitions[0].clone().with_partition(1);
    req.topics[0].partitions.push(second);
    let r = call(&svc, 12, &req).await;
    let parts = &r.responses[0].partitions;
    // Whole batches only: the first partition gets one (at least one always comes), the
    // budget is then spent and the second partition reports its bounds without records.
    assert_eq!(parts[0].records.as_ref().unwrap().len(), one);
    assert_eq!(parts[1].records.as_deref(), Some(&[][..]));
    assert_eq!((parts[1].error_code, parts[1].high_watermark), (0, 15));
}

#[tokio::test]
async fn fetch_below_min_bytes_waits_then_answers_with_what_there_is() {
    let (_d, svc) = service(BrokerConfig::default());
    create(&svc, "t", 1, &[]).await;
    call(&svc, 9, &produce_req("t", 0, batch(1, 1), 1)).await;
    let started = Instant::now();
    let r = call(&svc, 12, &fetch_req("t", 0, 200, 1 << 20)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "waited for more bytes"
    );
    assert_eq!(
        r.responses[0].partitions[0].records.as_ref().unwrap().len(),
        batch(1, 1).len()
    );
}

#[tokio::test]
async fn idempotent_retries_are_answered_with_the_first_offsets() {
    let (_d, svc) = service(BrokerConfig::default());
    create(&svc, "idem", 1, &[]).await;
    let init = call(
        &svc,
        4,
        &InitProducerIdRequest::default().with_transactional_id(None),
    )
    .await;
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    let idempotent = |seq: i32| {
        let mut b = batch(2, 1).to_vec();
        weir_log::batch::set_producer(&mut b, pid, epoch, seq);
        Bytes::from(b)
    };
    let first = call(&svc, 9, &produce_req("idem", 0, idempotent(0), -1)).await;
    let retry = call(&svc, 9, &produce_req("idem", 0, idempotent(0), -1)).await;
    let (a, b) = (
        &first.responses[0].partition_responses[0],
        &retry.responses[0].partition_responses[0],
    );
    assert_eq!((a.error_code, b.error_code), (0, 0));
    assert_eq!(
        a.base_offset, b.base_offset,
        "a retry lands where the first write did"
    );
    assert_eq!(svc.log().bounds("idem", 0).unwrap().high_watermark, 2);
    let gap = call(&svc, 9, &produce_req("idem", 0, idempotent(5), -1)).await;
    assert_eq!(
        error(gap.responses[0].partition_responses[0].error_code),
        Some(ResponseError::OutOfOrderSequenceNumber)
    );
}
