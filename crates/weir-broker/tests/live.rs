//! The broker on 127.0.0.1:0 in-process, reached over TCP: rskafka (an independent client)
//! round trips, pipelining, and bad input that closes only its own connection.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{batch, decode_response, wire_frame};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rskafka::chrono::{TimeZone, Utc};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::record::Record;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir_broker::{Broker, BrokerConfig, BrokerError};
use weir_log::Log;

const WAIT: Duration = Duration::from_secs(10);

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), BrokerError>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("broker stops")
            .unwrap()
            .unwrap();
    }
}

async fn start(config: BrokerConfig) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let broker = Broker::bind(log, config).await.unwrap();
    let addr = broker.local_addr();
    assert_ne!(addr.port(), 0, "the real port is reported");
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(broker.run_until(async {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop: Some(tx),
        task,
        _dir: dir,
    }
}

async fn send_recv(s: &mut TcpStream, frame: &[u8]) -> Bytes {
    s.write_all(frame).await.unwrap();
    read_frame(s).await.expect("a response")
}

async fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut len))
        .await
        .expect("no hang")
        .ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.ok()?;
    let mut out = len.to_vec();
    out.extend_from_slice(&body);
    Some(out.into())
}

/// Whether the broker closed the connection (EOF or reset) without answering.
async fn closed_by_broker(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("broker neither answered nor closed"),
    }
}

/// A healthy connection still gets answers.
async fn still_serves(s: &mut TcpStream) {
    let f = send_recv(s, &wire_frame(3, 5, &ApiVersionsRequest::default())).await;
    let (corr, r) = decode_response::<ApiVersionsRequest>(3, f);
    assert_eq!((corr, r.error_code), (5, 0));
}

fn produce(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rskafka_creates_produces_fetches_and_lists_offsets() {
    let b = start(BrokerConfig::default()).await;
    let client = ClientBuilder::new(vec![b.addr.to_string()])
        .build()
        .await
        .unwrap();
    client
        .controller_client()
        .unwrap()
        .create_topic("rs", 2, 1, 5_000)
        .await
        .unwrap();
    let topics = client.list_topics().await.unwrap();
    let t = topics
        .iter()
        .find(|t| t.name == "rs")
        .expect("topic listed");
    assert_eq!(t.partitions.len(), 2);

    let pc = client
        .partition_client("rs", 1, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let ts = |ms| Utc.timestamp_millis_opt(ms).unwrap();
    let records: Vec<Record> = (0..3)
        .map(|i| Record {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(vec![i as u8; 100]),
            headers: [("h".to_string(), b"x".to_vec())].into(),
            timestamp: ts(1_700_000_000_000 + i),
        })
        .collect();
    let offsets = pc
        .produce(records.clone(), Compression::NoCompression)
        .await
        .unwrap();
    assert_eq!(offsets, vec![0, 1, 2]);
    let more = pc
        .produce(records[..1].to_vec(), Compression::NoCompression)
        .await
        .unwrap();
    assert_eq!(more, vec![3]);

    let (got, hw) = pc.fetch_records(0, 1..1_000_000, 1_000).await.unwrap();
    assert_eq!(hw, 4);
    assert_eq!(got.len(), 4);
    for (i, r) in got.iter().take(3).enumerate() {
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.record, records[i], "record {i} read back as written");
    }
    // From inside a batch, records start at the offset asked for.
    let (got, _) = pc.fetch_records(2, 1..1_000_000, 1_000).await.unwrap();
    assert_eq!(got.first().map(|r| r.offset), Some(2));

    assert_eq!(pc.get_offset(OffsetAt::Earliest).await.unwrap(), 0);
    assert_eq!(pc.get_offset(OffsetAt::Latest).await.unwrap(), 4);
    assert_eq!(
        pc.get_offset(OffsetAt::Timestamp(ts(1_700_000_000_001)))
            .await
            .unwrap(),
        1,
        "the first record at or after the timestamp"
    );
    // DeleteRecords removes whole batches below the offset.
    pc.delete_records(3, 5_000).await.unwrap();
    assert_eq!(pc.get_offset(OffsetAt::Earliest).await.unwrap(), 3);
    client
        .controller_client()
        .unwrap()
        .delete_topic("rs", 5_000)
        .await
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn responses_come_back_in_request_order() {
    let b = start(BrokerConfig::default()).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    // Pipeline: produces (answered after a commit) between instant answers.
    let mut all = Vec::new();
    for i in 0..40 {
        if i % 2 == 0 {
            all.extend(wire_frame(7, i, &produce("order", batch(1, 1))));
        } else {
            all.extend(wire_frame(3, i, &ApiVersionsRequest::default()));
        }
    }
    s.write_all(&all).await.unwrap();
    for i in 0..40 {
        let f = read_frame(&mut s).await.unwrap();
        let corr = i32::from_be_bytes(f[4..8].try_into().unwrap());
        assert_eq!(corr, i, "response {i} in order");
        if i % 2 == 0 {
            let (_, r) = decode_response::<ProduceRequest>(7, f);
            assert_eq!(
                r.responses[0].partition_responses[0].base_offset,
                i64::from(i / 2)
            );
        }
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_produce_at_once() {
    let b = start(BrokerConfig::default()).await;
    let tasks: Vec<_> = (0..16)
        .map(|c| {
            let addr = b.addr;
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                for i in 0..10 {
                    let f = send_recv(
                        &mut s,
                        &wire_frame(9, c * 100 + i, &produce("many", batch(2, 1))),
                    )
                    .await;
                    let (_, r) = decode_response::<ProduceRequest>(9, f);
                    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let lo = ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("many")))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1),
            ]),
    ]);
    let (_, r) =
        decode_response::<ListOffsetsRequest>(6, send_recv(&mut s, &wire_frame(6, 1, &lo)).await);
    assert_eq!(r.topics[0].partitions[0].offset, 16 * 10 * 2);
    b.stop().await;
}

/// Runs one kind of bad input on its own connection while another connection stays healthy.
async fn bad_input_closes_only_its_connection(
    config: BrokerConfig,
    bad: Vec<u8>,
    half_close: bool,
) {
    let b = start(config).await;
    let mut good = TcpStream::connect(b.addr).await.unwrap();
    still_serves(&mut good).await;
    let mut evil = TcpStream::connect(b.addr).await.unwrap();
    evil.write_all(&bad).await.unwrap();
    if half_close {
        evil.shutdown().await.unwrap();
    }
    assert!(
        closed_by_broker(&mut evil).await,
        "the bad connection is closed"
    );
    still_serves(&mut good).await;
    let mut fresh = TcpStream::connect(b.addr).await.unwrap();
    still_serves(&mut fresh).await;
    b.stop().await;
}

#[tokio::test]
async fn truncated_frame_closes_only_its_connection() {
    let mut bad = 100i32.to_be_bytes().to_vec();
    bad.extend_from_slice(&[0, 18, 0, 3, 0, 0, 0, 1]);
    bad_input_closes_only_its_connection(BrokerConfig::default(), bad, true).await;
}

#[tokio::test]
async fn frame_over_the_limit_closes_only_its_connection() {
    let config = BrokerConfig {
        max_frame_bytes: 1024,
        ..BrokerConfig::default()
    };
    let bad = 1_000_000i32.to_be_bytes().to_vec();
    bad_input_closes_only_its_connection(config.clone(), bad, false).await;
    bad_input_closes_only_its_connection(config, (-5i32).to_be_bytes().to_vec(), false).await;
}

#[tokio::test]
async fn garbage_after_a_valid_header_closes_only_its_connection() {
    // A Metadata v1 header, then bytes that are no Metadata request.
    let mut body = vec![0, 3, 0, 1, 0, 0, 0, 7, 0, 4];
    body.extend_from_slice(b"test");
    body.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]);
    let mut bad = (body.len() as i32).to_be_bytes().to_vec();
    bad.extend_from_slice(&body);
    bad_input_closes_only_its_connection(BrokerConfig::default(), bad, false).await;
}

#[tokio::test]
async fn unknown_api_key_closes_only_its_connection() {
    let body = [0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
    let mut bad = (body.len() as i32).to_be_bytes().to_vec();
    bad.extend_from_slice(&body);
    bad_input_closes_only_its_connection(BrokerConfig::default(), bad, false).await;
}

#[tokio::test]
async fn unsupported_versions() {
    // Produce v2 is below what weir serves: closed.
    let mut body = vec![0, 0, 0, 2, 0, 0, 0, 1, 0xff, 0xff];
    body.extend_from_slice(&[0xff, 0xff, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut bad = (body.len() as i32).to_be_bytes().to_vec();
    bad.extend_from_slice(&body);
    bad_input_closes_only_its_connection(BrokerConfig::default(), bad, false).await;

    // ApiVersions v9: answered in v0 with UNSUPPORTED_VERSION and the ranges (KIP-511).
    let b = start(BrokerConfig::default()).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let body = [0, 18, 0, 9, 0, 0, 0, 3, 0xff, 0xff, 0];
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let (corr, r) = decode_response::<ApiVersionsRequest>(0, send_recv(&mut s, &frame).await);
    assert_eq!(corr, 3);
    assert_eq!(
        ResponseError::try_from_code(r.error_code),
        Some(ResponseError::UnsupportedVersion)
    );
    assert!(
        r.api_keys
            .iter()
            .any(|k| k.api_key == 1 && k.min_version == 4)
    );
    still_serves(&mut s).await;
    b.stop().await;
}

#[tokio::test]
async fn produce_with_a_bad_crc_is_corrupt_message() {
    let b = start(BrokerConfig::default()).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let mut bad = batch(2, 1).to_vec();
    bad[30] ^= 1;
    let f = send_recv(&mut s, &wire_frame(8, 1, &produce("crc", Bytes::from(bad)))).await;
    let (_, r) = decode_response::<ProduceRequest>(8, f);
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(
        ResponseError::try_from_code(p.error_code),
        Some(ResponseError::CorruptMessage)
    );
    assert!(
        p.error_message.as_deref().unwrap_or("").contains("CRC"),
        "{:?}",
        p.error_message
    );
    still_serves(&mut s).await;
    b.stop().await;
}

#[tokio::test]
async fn produce_to_unknown_topic_without_auto_create() {
    let b = start(BrokerConfig {
        auto_create_topics: false,
        ..BrokerConfig::default()
    })
    .await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let f = send_recv(&mut s, &wire_frame(9, 1, &produce("ghost", batch(1, 1)))).await;
    let (_, r) = decode_response::<ProduceRequest>(9, f);
    assert_eq!(
        ResponseError::try_from_code(r.responses[0].partition_responses[0].error_code),
        Some(ResponseError::UnknownTopicOrPartition)
    );
    still_serves(&mut s).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests() {
    let b = start(BrokerConfig::default()).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let f = send_recv(&mut s, &wire_frame(9, 1, &produce("sd", batch(1, 1)))).await;
    decode_response::<ProduceRequest>(9, f);
    // A long poll in flight when the broker is told to stop still gets its answer.
    let fetch = FetchRequest::default()
        .with_max_wait_ms(300)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("sd")))
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_fetch_offset(1)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    s.write_all(&wire_frame(11, 2, &fetch)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let addr = b.addr;
    b.stop().await;
    let (corr, r) = decode_response::<FetchRequest>(11, read_frame(&mut s).await.unwrap());
    assert_eq!((corr, r.responses[0].partitions[0].high_watermark), (2, 1));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
