//! Consumer groups and the idempotent producer over TCP: raw kafka-protocol requests against
//! a broker served in-process on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{batch, decode_response, wire_frame};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir_broker::{Broker, BrokerConfig};
use weir_log::Log;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn group(x: &str) -> GroupId {
    GroupId(s(x))
}

fn topic(x: &str) -> TopicName {
    TopicName(s(x))
}

fn error(code: i16) -> Option<ResponseError> {
    ResponseError::try_from_code(code)
}

/// A broker on a free port of 127.0.0.1 over the log in `dir`, until [`Running::stop`].
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    async fn start(dir: &Path) -> Self {
        let log = Log::open(dir).unwrap();
        let config = BrokerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            shutdown_grace: Duration::from_secs(2),
            ..BrokerConfig::default()
        };
        let broker = Broker::bind(log, config).await.unwrap();
        let addr = broker.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            broker
                .run_until(async { drop(stopped.await) })
                .await
                .unwrap();
        });
        Self { addr, stop, task }
    }

    /// Stops serving and waits until the log is closed.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }

    async fn connect(&self) -> Conn {
        Conn {
            sock: TcpStream::connect(self.addr).await.unwrap(),
            corr: 0,
        }
    }
}

/// One client connection speaking raw kafka-protocol.
struct Conn {
    sock: TcpStream,
    corr: i32,
}

impl Conn {
    async fn send<R: Request>(&mut self, version: i16, req: &R) {
        self.corr += 1;
        self.sock
            .write_all(&wire_frame(version, self.corr, req))
            .await
            .unwrap();
    }

    async fn receive<R: Request>(&mut self, version: i16) -> R::Response {
        let len = self.sock.read_i32().await.unwrap();
        let mut frame = BytesMut::zeroed(4 + len as usize);
        frame[..4].copy_from_slice(&len.to_be_bytes());
        self.sock.read_exact(&mut frame[4..]).await.unwrap();
        let (corr, r) = decode_response::<R>(version, frame.freeze());
        assert_eq!(corr, self.corr, "answers come in request order");
        r
    }

    async fn call<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        self.send(version, req).await;
        tokio::time::timeout(Duration::from_secs(20), self.receive::<R>(version))
            .await
            .expect("the broker answers within 20 s")
    }
}

async fn create_topic(c: &mut Conn, name: &str, partitions: i32) {
    let req = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1),
    ]);
    let r = c.call(7, &req).await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

const SESSION_MS: i32 = 1500;

fn join_req(member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group("g"))
        .with_session_timeout_ms(SESSION_MS)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"subscription")),
        ])
}

const JOIN_V: i16 = 9;

/// Joins group "g" on a fresh connection: the MEMBER_ID_REQUIRED round, then the join,
/// answered when the rebalance completes.
async fn join(broker: &Running, member: Option<String>) -> (Conn, JoinGroupResponse) {
    let mut c = broker.connect().await;
    let member = match member {
        Some(m) => m,
        None => {
            let r = c.call(JOIN_V, &join_req("")).await;
            assert_eq!(error(r.error_code), Some(ResponseError::MemberIdRequired));
            assert!(!r.member_id.is_empty(), "a member id to rejoin with");
            r.member_id.to_string()
        }
    };
    let r = c.call(JOIN_V, &join_req(&member)).await;
    assert_eq!(r.error_code, 0, "join of {member}");
    (c, r)
}

async fn sync(
    c: &mut Conn,
    member: &str,
    generation: i32,
    assignments: &[(&str, &'static [u8])],
) -> SyncGroupResponse {
    let req = SyncGroupRequest::default()
        .with_group_id(group("g"))
        .with_member_id(s(member))
        .with_generation_id(generation)
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from_static(a))
                })
                .collect(),
        );
    c.call(5, &req).await
}

async fn heartbeat(c: &mut Conn, member: &str, generation: i32) -> Option<ResponseError> {
    let req = HeartbeatRequest::default()
        .with_group_id(group("g"))
        .with_member_id(s(member))
        .with_generation_id(generation);
    error(c.call(4, &req).await.error_code)
}

async fn describe(c: &mut Conn) -> describe_groups_response::DescribedGroup {
    let req = DescribeGroupsRequest::default().with_groups(vec![group("g")]);
    c.call(5, &req).await.groups.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_sync_rebalance_leave_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Running::start(dir.path()).await;
    let mut admin = broker.connect().await;
    let r = admin
        .call(
            4,
            &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g"), s("h")]),
        )
        .await;
    assert_eq!(r.coordinators.len(), 2);
    for c in &r.coordinators {
        assert_eq!(
            (c.error_code, c.node_id.0, c.port),
            (0, 0, broker.addr.port() as i32)
        );
    }
    let r = admin
        .call(0, &FindCoordinatorRequest::default().with_key(s("g")))
        .await;
    assert_eq!((r.error_code, &*r.host), (0, "127.0.0.1"));

    // a alone: generation 1, a leads.
    let (mut ca, ja) = join(&broker, None).await;
    let a = ja.member_id.to_string();
    assert_eq!((ja.generation_id, &*ja.leader), (1, a.as_str()));
    assert_eq!(ja.protocol_name.as_deref(), Some("range"));
    assert_eq!(
        sync(&mut ca, &a, 1, &[(&a, b"A-all")]).await.assignment,
        &b"A-all"[..]
    );

    // b joins: its join waits until a, told by its heartbeat, rejoins.
    let b_task = {
        let mut c = broker.connect().await;
        let r = c.call(JOIN_V, &join_req("")).await;
        let b = r.member_id.to_string();
        c.send(JOIN_V, &join_req(&b)).await;
        (c, b)
    };
    let (mut cb, b) = b_task;
    let deadline = Instant::now() + Duration::from_secs(5);
    while heartbeat(&mut ca, &a, 1).await != Some(ResponseError::RebalanceInProgress) {
        assert!(Instant::now() < deadline, "no rebalance signalled to a");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ja2 = ca.call(JOIN_V, &join_req(&a)).await;
    let jb = cb.receive::<JoinGroupRequest>(JOIN_V).await;
    assert_eq!((ja2.error_code, jb.error_code), (0, 0));
    assert_eq!((ja2.generation_id, jb.generation_id), (2, 2));
    assert_eq!(ja2.members.len(), 2, "the leader learns every member");
    assert!(jb.members.is_empty());
    // The follower's sync waits for the leader's.
    cb.send(5, &sync_req_for(&b, 2)).await;
    let sa = sync(&mut ca, &a, 2, &[(&a, b"A-half"), (&b, b"B-half")]).await;
    let sb = cb.receive::<SyncGroupRequest>(5).await;
    assert_eq!(
        (&sa.assignment[..], &sb.assignment[..]),
        (&b"A-half"[..], &b"B-half"[..])
    );
    assert_eq!(heartbeat(&mut cb, &b, 2).await, None);
    assert_eq!(
        heartbeat(&mut cb, &b, 1).await,
        Some(ResponseError::IllegalGeneration)
    );
    let d = describe(&mut admin).await;
    assert_eq!((&*d.group_state, d.members.len()), ("Stable", 2));
    assert!(
        d.members
            .iter()
            .all(|m| m.client_host.starts_with("/127.0.0.1"))
    );

    // A third member joins, everyone rejoins, generation 3 has three members.
    let (mut cc, c) = {
        let mut conn = broker.connect().await;
        let r = conn.call(JOIN_V, &join_req("")).await;
        let c = r.member_id.to_string();
        conn.send(JOIN_V, &join_req(&c)).await;
        (conn, c)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while heartbeat(&mut ca, &a, 2).await != Some(ResponseError::RebalanceInProgress) {
        assert!(
            Instant::now() < deadline,
            "no rebalance signalled for the third member"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        heartbeat(&mut cb, &b, 2).await,
        Some(ResponseError::RebalanceInProgress)
    );
    cb.send(JOIN_V, &join_req(&b)).await;
    let ja3 = ca.call(JOIN_V, &join_req(&a)).await;
    let jb3 = cb.receive::<JoinGroupRequest>(JOIN_V).await;
    let jc3 = cc.receive::<JoinGroupRequest>(JOIN_V).await;
    assert_eq!(
        [ja3.generation_id, jb3.generation_id, jc3.generation_id],
        [3, 3, 3]
    );
    assert_eq!((&*ja3.leader, ja3.members.len()), (a.as_str(), 3));
    cb.send(5, &sync_req_for(&b, 3)).await;
    cc.send(5, &sync_req_for(&c, 3)).await;
    sync(&mut ca, &a, 3, &[(&a, b"A3"), (&b, b"B3"), (&c, b"C3")]).await;
    assert_eq!(
        &cb.receive::<SyncGroupRequest>(5).await.assignment[..],
        b"B3"
    );
    assert_eq!(
        &cc.receive::<SyncGroupRequest>(5).await.assignment[..],
        b"C3"
    );

    // c leaves (LeaveGroup v3+ names members in a batch): a and b rebalance without it.
    let leave = LeaveGroupRequest::default()
        .with_group_id(group("g"))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s(&c)),
            MemberIdentity::default().with_member_id(s("nobody")),
        ]);
    let r = cc.call(5, &leave).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.members[0].error_code, 0);
    assert_eq!(
        error(r.members[1].error_code),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        heartbeat(&mut cb, &b, 3).await,
        Some(ResponseError::RebalanceInProgress)
    );
    cb.send(JOIN_V, &join_req(&b)).await;
    let ja4 = ca.call(JOIN_V, &join_req(&a)).await;
    let jb4 = cb.receive::<JoinGroupRequest>(JOIN_V).await;
    assert_eq!(
        (ja4.generation_id, jb4.generation_id, ja4.members.len()),
        (4, 4, 2)
    );
    cb.send(5, &sync_req_for(&b, 4)).await;
    sync(&mut ca, &a, 4, &[(&a, b"A4"), (&b, b"B4")]).await;
    assert_eq!(
        &cb.receive::<SyncGroupRequest>(5).await.assignment[..],
        b"B4"
    );

    // b goes silent: after its session timeout a is told to rejoin, and is alone.
    let silent_since = Instant::now();
    let deadline = silent_since + Duration::from_secs(10);
    loop {
        match heartbeat(&mut ca, &a, 4).await {
            Some(ResponseError::RebalanceInProgress) => break,
            None => {}
            other => panic!("heartbeat of a: {other:?}"),
        }
        assert!(Instant::now() < deadline, "b never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        silent_since.elapsed() >= Duration::from_millis(SESSION_MS as u64 - 100),
        "b expired after {:?}, before its session timeout",
        silent_since.elapsed()
    );
    let ja5 = ca.call(JOIN_V, &join_req(&a)).await;
    assert_eq!((ja5.generation_id, ja5.members.len()), (5, 1));
    assert_eq!(
        heartbeat(&mut cb, &b, 4).await,
        Some(ResponseError::UnknownMemberId)
    );

    // A group with members cannot be deleted.
    let del = DeleteGroupsRequest::default().with_groups_names(vec![group("g")]);
    let r = admin.call(2, &del).await;
    assert_eq!(
        error(r.results[0].error_code),
        Some(ResponseError::NonEmptyGroup)
    );
    drop((ca, cb, cc, admin));
    broker.stop().await;
}

async fn describe_group(c: &mut Conn, id: &str) -> String {
    let req = DescribeGroupsRequest::default().with_groups(vec![group(id)]);
    c.call(5, &req).await.groups[0].group_state.to_string()
}

fn sync_req_for(member: &str, generation: i32) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(group("g"))
        .with_member_id(s(member))
        .with_generation_id(generation)
}

fn commit_req(
    group_id: &str,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(
            offsets
                .iter()
                .map(|(t, p, o)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic(t))
                        .with_partitions(vec![
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                                .with_committed_metadata(Some(s("meta"))),
                        ])
                })
                .collect(),
        )
}

/// Offsets committed by group "g" as OffsetFetch v8 reports them, for all its topics.
async fn fetch_all(c: &mut Conn, group_id: &str) -> Vec<(String, i32, i64)> {
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(group(group_id))
            .with_topics(None),
    ]);
    let r = c.call(8, &req).await;
    assert_eq!(r.groups[0].error_code, 0);
    r.groups[0]
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index, p.committed_offset))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_round_trip_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Running::start(dir.path()).await;
    let mut c = broker.connect().await;
    create_topic(&mut c, "t", 2).await;

    // A simple consumer (generation -1, no member) commits to a group nobody joined.
    let r = c
        .call(
            8,
            &commit_req(
                "simple",
                "",
                -1,
                &[("t", 0, 5), ("t", 1, 7), ("t", 9, 1), ("nope", 0, 1)],
            ),
        )
        .await;
    let codes: Vec<i16> = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect();
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(codes, [0, 0, unknown, unknown]);
    // OffsetFetch v1..v7 by partition, v8 by group.
    for v in 1..=7 {
        let req = OffsetFetchRequest::default()
            .with_group_id(group("simple"))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic("t"))
                    .with_partition_indexes(vec![0, 1]),
            ]));
        let r = c.call(v, &req).await;
        let got: Vec<(i64, Option<&str>)> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.committed_offset, p.metadata.as_deref()))
            .collect();
        assert_eq!(
            got,
            [(5, Some("meta")), (7, Some("meta"))],
            "OffsetFetch v{v}"
        );
    }
    assert_eq!(
        fetch_all(&mut c, "simple").await,
        [("t".into(), 0, 5), ("t".into(), 1, 7)]
    );
    assert!(fetch_all(&mut c, "other").await.is_empty());

    // A member commits with its generation; a stale generation is refused.
    let (mut cm, j) = join(&broker, None).await;
    let m = j.member_id.to_string();
    sync(&mut cm, &m, 1, &[]).await;
    let r = cm.call(8, &commit_req("g", &m, 1, &[("t", 0, 42)])).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let r = cm.call(8, &commit_req("g", &m, 0, &[("t", 0, 1)])).await;
    assert_eq!(
        error(r.topics[0].partitions[0].error_code),
        Some(ResponseError::IllegalGeneration)
    );
    let r = cm.call(8, &commit_req("g", "", -1, &[("t", 0, 1)])).await;
    assert_eq!(
        error(r.topics[0].partitions[0].error_code),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(fetch_all(&mut c, "g").await, [("t".into(), 0, 42)]);
    drop((c, cm));
    broker.stop().await;

    // After a restart the log still has the offsets, and the stable group: its member
    // carries on in its generation without a rebalance.
    let broker = Running::start(dir.path()).await;
    let mut c = broker.connect().await;
    assert_eq!(fetch_all(&mut c, "g").await, [("t".into(), 0, 42)]);
    assert_eq!(
        fetch_all(&mut c, "simple").await,
        [("t".into(), 0, 5), ("t".into(), 1, 7)]
    );
    let listed = |r: ListGroupsResponse| -> Vec<(String, String)> {
        r.groups
            .iter()
            .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
            .collect()
    };
    let r = c.call(4, &ListGroupsRequest::default()).await;
    assert_eq!(
        listed(r),
        [
            ("g".into(), "Stable".into()),
            ("simple".into(), "Empty".into())
        ]
    );
    let hb = HeartbeatRequest::default()
        .with_group_id(group("g"))
        .with_member_id(s(&m))
        .with_generation_id(1);
    assert_eq!(c.call(4, &hb).await.error_code, 0);
    let r = c.call(8, &commit_req("g", &m, 1, &[("t", 0, 43)])).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let r = c
        .call(
            5,
            &DescribeGroupsRequest::default().with_groups(vec![group("g"), group("none")]),
        )
        .await;
    assert_eq!(
        (&*r.groups[0].group_state, r.groups[0].members.len()),
        ("Stable", 1)
    );
    assert_eq!(&*r.groups[1].group_state, "Dead");

    // Silent past its session timeout, the member is gone, and so is the stored group.
    let deadline = Instant::now() + Duration::from_secs(5);
    while describe_group(&mut c, "g").await != "Empty" {
        assert!(
            Instant::now() < deadline,
            "the restored member never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        error(c.call(4, &hb).await.error_code),
        Some(ResponseError::UnknownMemberId)
    );
    drop(c);
    broker.stop().await;
    let broker = Running::start(dir.path()).await;
    let mut c = broker.connect().await;
    let r = c.call(4, &ListGroupsRequest::default()).await;
    assert_eq!(
        listed(r),
        [
            ("g".into(), "Empty".into()),
            ("simple".into(), "Empty".into())
        ]
    );
    assert_eq!(fetch_all(&mut c, "g").await, [("t".into(), 0, 43)]);

    // DeleteGroups drops a group's offsets; an unknown group is GROUP_ID_NOT_FOUND.
    let del =
        DeleteGroupsRequest::default().with_groups_names(vec![group("simple"), group("none")]);
    let r = c.call(2, &del).await;
    assert_eq!(r.results[0].error_code, 0);
    assert_eq!(
        error(r.results[1].error_code),
        Some(ResponseError::GroupIdNotFound)
    );
    assert!(fetch_all(&mut c, "simple").await.is_empty());
    let r = c.call(3, &ListGroupsRequest::default()).await;
    assert_eq!(r.groups.len(), 1);
    drop(c);
    broker.stop().await;
}

fn idempotent_produce(pid: i64, seq: i32, records: usize) -> ProduceRequest {
    let mut b = batch(records, 1_700_000_000_000).to_vec();
    weir_log::batch::set_producer(&mut b, pid, 0, seq);
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic("idem"))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(b))),
                ]),
        ])
}

async fn high_watermark(c: &mut Conn) -> i64 {
    let req = ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic("idem"))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1),
            ]),
    ]);
    c.call(5, &req).await.topics[0].partitions[0].offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_retried_after_a_dropped_connection_is_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Running::start(dir.path()).await;
    let mut c = broker.connect().await;
    create_topic(&mut c, "idem", 1).await;
    let r = c
        .call(
            4,
            &InitProducerIdRequest::default().with_transactional_id(None),
        )
        .await;
    assert_eq!((r.error_code, r.producer_epoch), (0, 0));
    let pid = r.producer_id.0;
    assert_eq!(
        c.call(9, &idempotent_produce(pid, 0, 10)).await.responses[0].partition_responses[0]
            .base_offset,
        0
    );

    // The next batch is sent and the connection drops before its answer is read.
    let retried = idempotent_produce(pid, 10, 5);
    let mut lost = broker.connect().await;
    lost.send(9, &retried).await;
    lost.sock.shutdown().await.unwrap();
    drop(lost);
    let deadline = Instant::now() + Duration::from_secs(5);
    while high_watermark(&mut c).await < 15 {
        assert!(Instant::now() < deadline, "the first attempt never landed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The producer retries the same bytes on a new connection: answered with the first
    // write's offset, written once.
    let mut again = broker.connect().await;
    let r = again.call(9, &retried).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 10));
    assert_eq!(
        high_watermark(&mut again).await,
        15,
        "the retry was not appended again"
    );

    // A gap in the sequence is OUT_OF_ORDER_SEQUENCE_NUMBER; the next one in order lands.
    let r = again.call(9, &idempotent_produce(pid, 99, 1)).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(
        error(p.error_code),
        Some(ResponseError::OutOfOrderSequenceNumber)
    );
    let r = again.call(9, &idempotent_produce(pid, 15, 1)).await;
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 15);
    drop((c, again));
    broker.stop().await;

    // Producer ids are never handed out twice, not even across a restart.
    let broker = Running::start(dir.path()).await;
    let mut c = broker.connect().await;
    let r = c
        .call(
            4,
            &InitProducerIdRequest::default().with_transactional_id(None),
        )
        .await;
    assert!(
        r.producer_id.0 > pid,
        "id {} after restart, {pid} before",
        r.producer_id.0
    );
    // The producer's state survived too: its retry is still recognised.
    let r = c.call(9, &retried).await;
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 10);
    assert_eq!(high_watermark(&mut c).await, 16);
    drop(c);
    broker.stop().await;
}

/// Every group API answers at every version it is served at, in success and in error: no
/// response field is set that a version lacks.
#[tokio::test]
async fn every_group_api_answers_at_every_served_version() {
    use common::{call, service};
    let (_d, svc) = service(BrokerConfig::default());
    let range = |api| {
        let (lo, hi) = weir_broker::served_versions(api).unwrap();
        lo..=hi
    };
    for v in range(ApiKey::FindCoordinator) {
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")])
        } else {
            FindCoordinatorRequest::default().with_key(s("g"))
        };
        let r = call(&svc, v, &req).await;
        let code = if v >= 4 {
            r.coordinators[0].error_code
        } else {
            r.error_code
        };
        assert_eq!(code, 0, "FindCoordinator v{v}");
        if v >= 1 {
            let r = call(&svc, v, &req.clone().with_key_type(2)).await;
            let code = if v >= 4 {
                r.coordinators[0].error_code
            } else {
                r.error_code
            };
            assert_eq!(
                error(code),
                Some(ResponseError::InvalidRequest),
                "v{v} key type 2"
            );
        }
    }
    for v in range(ApiKey::JoinGroup) {
        let mut req = join_req("");
        req.group_id = group(&format!("g{v}"));
        if v == 0 {
            req.rebalance_timeout_ms = -1;
        }
        let mut r = call(&svc, v, &req).await;
        if v >= 4 {
            assert_eq!(
                error(r.error_code),
                Some(ResponseError::MemberIdRequired),
                "v{v}"
            );
            let member = r.member_id.clone();
            r = call(&svc, v, &req.with_member_id(member)).await;
        }
        let member = r.member_id.to_string();
        assert_eq!((r.error_code, r.generation_id), (0, 1), "JoinGroup v{v}");
        assert_eq!(r.members.len(), 1, "JoinGroup v{v}: the leader sees itself");
        let mut sync = sync_req_for(&member, 1);
        sync.group_id = group(&format!("g{v}"));
        if let Some(sv) = [0, 0, 1, 2, 3, 3, 4, 5, 5, 5].get(v as usize).copied() {
            let r = call(&svc, sv, &sync).await;
            assert_eq!(r.error_code, 0, "SyncGroup v{sv}");
        }
    }
    for v in range(ApiKey::SyncGroup) {
        let r = call(&svc, v, &sync_req_for("nobody", 1)).await;
        assert_eq!(
            error(r.error_code),
            Some(ResponseError::UnknownMemberId),
            "SyncGroup v{v}"
        );
    }
    for v in range(ApiKey::Heartbeat) {
        let req = HeartbeatRequest::default().with_group_id(group("g0"));
        let r = call(&svc, v, &req).await;
        assert_eq!(
            error(r.error_code),
            Some(ResponseError::UnknownMemberId),
            "Heartbeat v{v}"
        );
    }
    for v in range(ApiKey::LeaveGroup) {
        let req = LeaveGroupRequest::default().with_group_id(group("g0"));
        let req = if v >= 3 {
            req.with_members(vec![MemberIdentity::default().with_member_id(s("nobody"))])
        } else {
            req.with_member_id(s("nobody"))
        };
        let r = call(&svc, v, &req).await;
        let code = if v >= 3 {
            r.members[0].error_code
        } else {
            r.error_code
        };
        assert_eq!(
            error(code),
            Some(ResponseError::UnknownMemberId),
            "LeaveGroup v{v}"
        );
    }
    svc.log()
        .create_topic("t", 1, weir_log::TopicConfig::default())
        .await
        .unwrap();
    for v in range(ApiKey::OffsetCommit) {
        let r = call(
            &svc,
            v,
            &commit_req("simple", "", -1, &[("t", 0, v as i64)]),
        )
        .await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetCommit v{v}");
    }
    for v in range(ApiKey::OffsetFetch) {
        let req = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(group("simple"))
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(group("simple"))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(topic("t"))
                        .with_partition_indexes(vec![0]),
                ]))
        };
        let r = call(&svc, v, &req).await;
        let offset = if v >= 8 {
            r.groups[0].topics[0].partitions[0].committed_offset
        } else {
            r.topics[0].partitions[0].committed_offset
        };
        assert_eq!(offset, 9, "OffsetFetch v{v}");
    }
    for v in range(ApiKey::DescribeGroups) {
        let req = DescribeGroupsRequest::default().with_groups(vec![group("g9"), group("simple")]);
        let r = call(&svc, v, &req).await;
        assert_eq!(&*r.groups[0].group_state, "Stable", "DescribeGroups v{v}");
        assert_eq!(r.groups[0].members.len(), 1);
        assert_eq!(&*r.groups[1].group_state, "Empty");
    }
    for v in range(ApiKey::ListGroups) {
        let r = call(&svc, v, &ListGroupsRequest::default()).await;
        assert!(
            r.groups.iter().any(|g| &*g.group_id.0 == "simple"),
            "ListGroups v{v}"
        );
        assert!(
            r.groups.len() >= 10,
            "ListGroups v{v}: {} groups",
            r.groups.len()
        );
    }
    let r = call(
        &svc,
        4,
        &ListGroupsRequest::default().with_states_filter(vec![s("stable")]),
    )
    .await;
    assert!(r.groups.iter().all(|g| &*g.group_state == "Stable") && !r.groups.is_empty());
    for v in range(ApiKey::DeleteGroups) {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![group("nobody")]);
        let r = call(&svc, v, &req).await;
        assert_eq!(
            error(r.results[0].error_code),
            Some(ResponseError::GroupIdNotFound),
            "DeleteGroups v{v}"
        );
    }
}

mod damaged {
    //! Group requests damaged on the wire: the service answers or closes, never panics.

    use super::*;
    use common::{reply, request_frame, service};
    use proptest::prelude::*;
    use weir_broker::{Handled, Reply, Service};

    /// A representative request of each group API, encoded at `version` of its range
    /// (clamped), as a frame without its length prefix.
    fn valid_frame(api: usize, version: i16) -> Bytes {
        let clamp = |k| {
            let (lo, hi) = weir_broker::served_versions(k).unwrap();
            version.clamp(lo, hi)
        };
        match api {
            0 => {
                let v = clamp(ApiKey::JoinGroup);
                let mut r = join_req("m");
                if v == 0 {
                    r.rebalance_timeout_ms = -1;
                }
                request_frame(v, 1, &r)
            }
            1 => request_frame(
                clamp(ApiKey::SyncGroup),
                1,
                &sync_req_for("m", 1).with_assignments(vec![
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s("m"))
                        .with_assignment(Bytes::from_static(b"abc")),
                ]),
            ),
            2 => {
                let v = clamp(ApiKey::OffsetCommit);
                request_frame(v, 1, &commit_req("g", "m", 1, &[("t", 0, 1)]))
            }
            3 => {
                let v = clamp(ApiKey::OffsetFetch);
                let r = if v >= 8 {
                    OffsetFetchRequest::default().with_groups(vec![
                        OffsetFetchRequestGroup::default().with_group_id(group("g")),
                    ])
                } else {
                    OffsetFetchRequest::default().with_group_id(group("g"))
                };
                request_frame(v, 1, &r)
            }
            4 => {
                let v = clamp(ApiKey::LeaveGroup);
                let r = LeaveGroupRequest::default().with_group_id(group("g"));
                let r = if v >= 3 {
                    r.with_members(vec![MemberIdentity::default().with_member_id(s("m"))])
                } else {
                    r.with_member_id(s("m"))
                };
                request_frame(v, 1, &r)
            }
            5 => request_frame(
                clamp(ApiKey::DescribeGroups),
                1,
                &DescribeGroupsRequest::default().with_groups(vec![group("g")]),
            ),
            6 => request_frame(
                clamp(ApiKey::DeleteGroups),
                1,
                &DeleteGroupsRequest::default().with_groups_names(vec![group("x")]),
            ),
            _ => request_frame(
                clamp(ApiKey::Heartbeat),
                1,
                &HeartbeatRequest::default().with_group_id(group("g")),
            ),
        }
    }

    /// The reply, unless it waits (a join may wait for a rebalance; that it does not panic
    /// is what counts).
    fn answer(rt: &tokio::runtime::Runtime, svc: &Service, frame: Bytes) -> Option<Reply> {
        match svc.handle(frame) {
            Handled::Ready(r) => Some(r),
            h @ (Handled::Later(_) | Handled::Ordered(_)) => rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(20), reply(h))
                    .await
                    .ok()
            }),
        }
    }

    #[test]
    fn damaged_group_requests_never_panic() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // One service for every case: damaged requests meet the state earlier ones left.
        let (_d, svc) = rt.block_on(async { service(BrokerConfig::default()) });
        let damage = (
            0usize..8,
            0i16..10,
            proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            any::<Option<usize>>(),
        );
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 1000,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        runner
            .run(&damage, |(api, version, flips, cut)| {
                let valid = valid_frame(api, version);
                let undamaged = answer(&rt, &svc, valid.clone());
                prop_assert!(
                    matches!(undamaged, Some(Reply::Frame(_))),
                    "the undamaged request is answered: {undamaged:?}"
                );
                let mut frame = valid.to_vec();
                // Damage the body only: a damaged header is another test's business.
                let header = 8;
                for (at, byte) in flips {
                    let i = header + at % (frame.len() - header);
                    frame[i] = byte;
                }
                if let Some(c) = cut {
                    frame.truncate(header + c % (frame.len() - header + 1));
                }
                answer(&rt, &svc, Bytes::from(frame));
                Ok(())
            })
            .unwrap();
    }
}

#[tokio::test]
async fn group_settings_come_from_the_broker_config() {
    let config = BrokerConfig {
        groups: weir_broker::GroupSettings {
            min_session_timeout: Duration::from_secs(6),
            ..weir_broker::GroupSettings::default()
        },
        ..BrokerConfig::default()
    };
    let (_d, svc) = common::service(config);
    let r = common::call(&svc, 5, &join_req("")).await;
    assert_eq!(
        error(r.error_code),
        Some(ResponseError::InvalidSessionTimeout),
        "a {SESSION_MS} ms session is below the configured 6 s minimum"
    );
}
