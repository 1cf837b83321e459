//! Group consumers and the idempotent producer of weir-client against an in-process weir
//! broker on 127.0.0.1.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weir_broker::{Broker, BrokerConfig};
use weir_client::{
    Acks, Assignor, AutoOffsetReset, Client, Consumer, ConsumerConfig, GroupConfig, GroupConsumer,
    NewTopic, Offset, Producer, ProducerConfig, ProducerRecord, Rebalance,
};
use weir_log::{Durability, Log, LogOptions};

/// A broker over the log in a directory, on a given address, until [`Running::stop`].
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    async fn start(dir: &Path, listen: SocketAddr, advertise: Option<SocketAddr>) -> Running {
        // A restart may find the previous broker's file lock for a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        let log = loop {
            match Log::open_with(
                dir,
                LogOptions {
                    durability: Durability::None,
                    ..LogOptions::default()
                },
            ) {
                Ok(log) => break log,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("reopening the log: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot reopen the log: {e}"),
            }
        };
        let config = BrokerConfig {
            listen,
            advertise: advertise.map(|a| (a.ip().to_string(), a.port())),
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
        Running { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("broker stops")
            .unwrap();
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A member configured for tests: fast heartbeats, short fetch waits, earliest start.
fn member_config(group: &str, assignor: Assignor) -> GroupConfig {
    GroupConfig {
        session_timeout: Duration::from_secs(6),
        rebalance_timeout: Duration::from_secs(20),
        heartbeat_interval: Duration::from_millis(100),
        assignors: vec![assignor],
        auto_offset_reset: AutoOffsetReset::Earliest,
        fetch: ConsumerConfig {
            max_wait: Duration::from_millis(100),
            ..ConsumerConfig::default()
        },
        ..GroupConfig::new(group)
    }
}

/// What a member task publishes after every poll: its generation and partitions.
type View = (i32, Vec<(String, i32)>);

/// A group member polling in its own task until told to stop (then it leaves).
struct Member {
    view: watch::Receiver<View>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Member {
    /// `process` sees every polled batch and then decides about the commit.
    fn spawn(
        client: Client,
        config: GroupConfig,
        topic: &str,
        mut process: impl FnMut(&mut Vec<weir_client::ConsumerRecord>, i32) + Send + 'static,
        mut after: impl AsyncCommit,
    ) -> Member {
        let (tx, view) = watch::channel((-1, Vec::new()));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let topic = topic.to_string();
        let task = tokio::spawn(async move {
            let mut consumer = GroupConsumer::new(client, config, &[&topic]).unwrap();
            loop {
                if !matches!(stopped.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
                    consumer.close().await.unwrap();
                    return;
                }
                after.before_poll(&consumer).await;
                let mut records = consumer.poll().await.unwrap();
                process(&mut records, consumer.generation());
                after.after_poll(&mut consumer).await;
                let _ = tx.send((consumer.generation(), consumer.assignment().to_vec()));
            }
        });
        Member { view, stop, task }
    }

    async fn leave(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("member leaves")
            .unwrap();
    }
}

/// What a member does after processing a poll.
trait AsyncCommit: Send + 'static {
    fn before_poll(
        &mut self,
        _consumer: &GroupConsumer,
    ) -> impl std::future::Future<Output = ()> + Send {
        async {}
    }

    fn after_poll(
        &mut self,
        consumer: &mut GroupConsumer,
    ) -> impl std::future::Future<Output = ()> + Send;
}

struct NoCommit;

impl AsyncCommit for NoCommit {
    async fn after_poll(&mut self, _: &mut GroupConsumer) {}
}

/// Waits until `members` agree on one generation and split all of `topic`'s `partitions`
/// with no overlap, each with at least one; fails on any moment where two members of the
/// same generation own the same partition. Returns each member's partitions.
async fn settled(members: &[&Member], topic: &str, partitions: i32) -> Vec<Vec<i32>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let views: Vec<View> = members.iter().map(|m| m.view.borrow().clone()).collect();
        let mut owners: BTreeMap<(i32, i32), usize> = BTreeMap::new();
        for (i, (generation, parts)) in views.iter().enumerate() {
            for (t, p) in parts {
                assert_eq!(t, topic);
                if let Some(other) = owners.insert((*generation, *p), i) {
                    panic!(
                        "members {other} and {i} both own partition {p} in generation {generation}"
                    );
                }
            }
        }
        let same_generation = views.windows(2).all(|w| w[0].0 == w[1].0) && views[0].0 >= 0;
        let all: BTreeSet<i32> = views
            .iter()
            .flat_map(|(_, ps)| ps.iter().map(|(_, p)| *p))
            .collect();
        let total: usize = views.iter().map(|(_, ps)| ps.len()).sum();
        if same_generation
            && total == partitions as usize
            && all == (0..partitions).collect()
            && views.iter().all(|(_, ps)| !ps.is_empty())
        {
            return views
                .into_iter()
                .map(|(_, ps)| ps.into_iter().map(|(_, p)| p).collect())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "members did not settle on a split of {partitions} partitions: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn membership_changes_rebalance_partitions(assignor: Assignor) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Running::start(dir.path(), any_port(), None).await;
    let client = Client::connect(&broker.addr.to_string()).await.unwrap();
    client
        .create_topic(NewTopic::new("split", 8))
        .await
        .unwrap();
    let config = member_config("splitters", assignor);
    let spawn = || Member::spawn(client.clone(), config.clone(), "split", |_, _| {}, NoCommit);

    let a = spawn();
    let b = spawn();
    let two = settled(&[&a, &b], "split", 8).await;
    assert_eq!(two.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4]);

    let c = spawn();
    let three = settled(&[&a, &b, &c], "split", 8).await;
    let mut sizes: Vec<usize> = three.iter().map(Vec::len).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [2, 3, 3], "8 partitions over 3 members");

    // The group as the coordinator describes it matches what the members see.
    let described = client.describe_group("splitters").await.unwrap();
    assert_eq!(described.state, "Stable");
    assert_eq!(described.members.len(), 3);
    assert_eq!(described.protocol, assignor.name());

    let left = three[1].clone();
    b.leave().await;
    let after = settled(&[&a, &c], "split", 8).await;
    for p in left {
        assert!(
            after.iter().any(|ps| ps.contains(&p)),
            "partition {p} of the member that left moved to another"
        );
    }
    a.leave().await;
    c.leave().await;
    // Every member left on close. A group with no members and no committed offsets is
    // forgotten by the coordinator, so it describes as Dead (Kafka's word for a removed
    // group); one that keeps offsets stays Empty.
    let described = client.describe_group("splitters").await.unwrap();
    assert!(described.members.is_empty(), "every member left on close");
    assert!(
        ["Empty", "Dead"].contains(&described.state.as_str()),
        "no members: Empty or Dead, got {}",
        described.state
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_members_split_rebalance_and_take_over_partitions() {
    membership_changes_rebalance_partitions(Assignor::Range).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_members_split_rebalance_and_take_over_partitions() {
    membership_changes_rebalance_partitions(Assignor::RoundRobin).await;
}

/// Counts a record as processed only when the commit covering it succeeded; work whose
/// commit was refused (the partitions moved) is thrown away, work whose commit failed in
/// transit is committed again with the next one.
struct CommitAfterProcessing {
    pending: Vec<u32>,
    pending_generation: i32,
    incoming: Arc<std::sync::Mutex<Vec<u32>>>,
    counts: Arc<Vec<AtomicU32>>,
    done: Arc<AtomicUsize>,
    /// Members hold back (except to rebalance) once this many records are done, so the
    /// test decides in which phase the group is when it changes something.
    allowed: Arc<AtomicUsize>,
}

impl AsyncCommit for CommitAfterProcessing {
    async fn before_poll(&mut self, consumer: &GroupConsumer) {
        while self.done.load(Ordering::Relaxed) >= self.allowed.load(Ordering::Relaxed)
            && !consumer.rebalance_pending()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn after_poll(&mut self, consumer: &mut GroupConsumer) {
        let fresh = std::mem::take(&mut *self.incoming.lock().unwrap());
        if consumer.generation() != self.pending_generation {
            // A rebalance: uncommitted work on partitions we may no longer own is redone by
            // whoever owns them now, from the committed offset.
            self.pending.clear();
            self.pending_generation = consumer.generation();
        }
        self.pending.extend(fresh);
        if consumer.assignment().is_empty() {
            return;
        }
        match consumer.commit().await {
            Ok(()) => {
                for id in self.pending.drain(..) {
                    self.counts[id as usize].fetch_add(1, Ordering::Relaxed);
                    self.done.fetch_add(1, Ordering::Relaxed);
                }
            }
            // REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID:
            // refused, and the member rejoins on the next poll.
            Err(e)
                if e.kafka_code()
                    .is_some_and(|c| [22, 25, 27, 82].contains(&c.code())) =>
            {
                self.pending.clear()
            }
            // Lost in transit or a coordinator moving: committed again with the next commit.
            Err(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_processed_once_across_rebalances_and_a_broker_restart() {
    const RECORDS: u32 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = Running::start(dir.path(), any_port(), None).await;
    let addr = broker.addr;
    let client = Client::connect(&addr.to_string()).await.unwrap();
    client.create_topic(NewTopic::new("work", 8)).await.unwrap();
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            partitioner: weir_client::Partitioner::RoundRobin,
            // Small batches and fetches, so the members advance in small steps.
            batch_size: 4 << 10,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    for id in 0..RECORDS {
        producer
            .send(ProducerRecord::new("work", id.to_string()))
            .await
            .unwrap();
    }
    producer.flush().await;
    drop(producer);

    let counts: Arc<Vec<AtomicU32>> = Arc::new((0..RECORDS).map(|_| AtomicU32::new(0)).collect());
    let done = Arc::new(AtomicUsize::new(0));
    let allowed = Arc::new(AtomicUsize::new(20_000));
    let mut config = member_config("workers", Assignor::Range);
    config.fetch.partition_max_bytes = 4 << 10;
    config.fetch.max_bytes = 16 << 10;
    let spawn = || {
        let incoming = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = incoming.clone();
        Member::spawn(
            client.clone(),
            config.clone(),
            "work",
            move |records, _| {
                let ids = records.drain(..).map(|r| {
                    std::str::from_utf8(r.value.as_deref().unwrap())
                        .unwrap()
                        .parse::<u32>()
                        .unwrap()
                });
                sink.lock().unwrap().extend(ids);
            },
            CommitAfterProcessing {
                pending: Vec::new(),
                pending_generation: -1,
                incoming,
                counts: counts.clone(),
                done: done.clone(),
                allowed: allowed.clone(),
            },
        )
    };
    let wait_for = |n: usize| {
        let done = done.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(40);
            while done.load(Ordering::Relaxed) < n {
                assert!(
                    Instant::now() < deadline,
                    "processed {} of the {n} awaited",
                    done.load(Ordering::Relaxed)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };

    let a = spawn();
    let b = spawn();
    wait_for(20_000).await;
    allowed.store(45_000, Ordering::Relaxed);
    let c = spawn(); // a rebalance while work is under way
    wait_for(45_000).await;

    let before = client.committed_offsets("workers", None).await.unwrap();
    // The broker stops while the members work on (up to 70k), and they do the rest after
    // it came back.
    allowed.store(70_000, Ordering::Relaxed);
    broker.stop().await;
    let at_restart = done.load(Ordering::Relaxed);
    eprintln!("broker stopped after {at_restart} records");
    assert!(
        at_restart < RECORDS as usize,
        "the broker restarted with work left"
    );
    let broker = Running::start(dir.path(), addr, None).await;
    allowed.store(RECORDS as usize, Ordering::Relaxed);
    let after = client.committed_offsets("workers", None).await.unwrap();
    assert_eq!(after.len(), 8, "every partition has a committed offset");
    for (tp, offset) in &before {
        assert!(
            after[tp] >= *offset,
            "{tp:?}: committed {offset} before the restart, {} after",
            after[tp]
        );
    }

    wait_for(RECORDS as usize).await;
    allowed.store(usize::MAX, Ordering::Relaxed);
    for m in [a, b, c] {
        m.leave().await;
    }
    let twice: Vec<usize> = (0..RECORDS as usize)
        .filter(|&i| counts[i].load(Ordering::Relaxed) != 1)
        .collect();
    assert!(
        twice.is_empty(),
        "{} records not processed exactly once, e.g. id {} {} times",
        twice.len(),
        twice[0],
        counts[twice[0]].load(Ordering::Relaxed)
    );
    assert_eq!(done.load(Ordering::Relaxed), RECORDS as usize);
    let committed = client.committed_offsets("workers", None).await.unwrap();
    assert_eq!(
        committed.values().sum::<i64>(),
        i64::from(RECORDS),
        "the group committed the end of every partition"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_resumes_from_the_committed_offset_and_the_callback_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Running::start(dir.path(), any_port(), None).await;
    let client = Client::connect(&broker.addr.to_string()).await.unwrap();
    client
        .create_topic(NewTopic::new("resume", 1))
        .await
        .unwrap();
    let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
    for i in 0..10 {
        producer
            .send(ProducerRecord::new("resume", format!("v{i}")))
            .await
            .unwrap();
    }
    producer.flush().await;

    let mut config = member_config("resumers", Assignor::Range);
    // With no commit, a member configured for `latest` would see nothing.
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    let mut first = GroupConsumer::new(client.clone(), config.clone(), &["resume"]).unwrap();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    first.on_rebalance(move |r| {
        seen.lock().unwrap().push(match r {
            Rebalance::Revoked(ps) => format!("revoked {ps:?}"),
            Rebalance::Assigned(ps) => format!("assigned {ps:?}"),
        })
    });
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 4 {
        assert!(Instant::now() < deadline);
        got.extend(first.poll().await.unwrap());
    }
    assert_eq!(
        got[0].offset, 0,
        "auto.offset.reset=earliest without a commit"
    );
    // Commit after the first 4 only, asynchronously.
    let offsets = BTreeMap::from([(("resume".to_string(), 0), 4)]);
    first
        .commit_offsets_async(&offsets)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    first.close().await.unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        [
            r#"assigned [("resume", 0)]"#.to_string(),
            r#"revoked [("resume", 0)]"#.to_string()
        ]
    );

    config.auto_offset_reset = AutoOffsetReset::Latest;
    let mut second = GroupConsumer::new(client.clone(), config, &["resume"]).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 6 {
        assert!(Instant::now() < deadline, "read {} of 6", got.len());
        got.extend(second.poll().await.unwrap());
    }
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [4, 5, 6, 7, 8, 9],
        "the committed offset wins over auto.offset.reset"
    );
    second.commit().await.unwrap();
    let committed = client.committed_offsets("resumers", None).await.unwrap();
    assert_eq!(committed[&("resume".to_string(), 0)], 10);
    second.close().await.unwrap();
    client.delete_groups(&["resumers"]).await.unwrap();
    assert!(
        client
            .list_groups()
            .await
            .unwrap()
            .iter()
            .all(|g| g.group_id != "resumers")
    );
    broker.stop().await;
}

/// A TCP proxy in front of the broker that, once armed, lets one Produce request through
/// and closes the client's connection instead of relaying its answer: the batch is stored
/// but the producer never hears so.
struct LossyProxy {
    addr: SocketAddr,
    armed: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl LossyProxy {
    async fn bind() -> (LossyProxy, TcpListener) {
        let listener = TcpListener::bind(any_port()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        (
            LossyProxy {
                addr,
                armed: Arc::new(AtomicBool::new(false)),
                task: tokio::spawn(async {}),
            },
            listener,
        )
    }

    fn run(&mut self, listener: TcpListener, broker: SocketAddr) {
        let armed = self.armed.clone();
        self.task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = TcpStream::connect(broker).await.unwrap();
                tokio::spawn(relay(client, upstream, armed.clone()));
            }
        });
    }
}

async fn read_frame(sock: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let len = sock.read_i32().await.ok()?;
    let mut frame = vec![0; len.max(0) as usize];
    sock.read_exact(&mut frame).await.ok()?;
    Some(frame)
}

async fn relay(client: TcpStream, upstream: TcpStream, armed: Arc<AtomicBool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut up_read, mut up_write) = upstream.into_split();
    let doomed = Arc::new(std::sync::Mutex::new(None::<i32>));
    let marked = doomed.clone();
    let requests = tokio::spawn(async move {
        while let Some(frame) = read_frame(&mut client_read).await {
            let api_key = i16::from_be_bytes([frame[0], frame[1]]);
            let correlation = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            if api_key == 0 && armed.swap(false, Ordering::AcqRel) {
                *marked.lock().unwrap() = Some(correlation);
            }
            let mut out = (frame.len() as i32).to_be_bytes().to_vec();
            out.extend_from_slice(&frame);
            if up_write.write_all(&out).await.is_err() {
                return;
            }
        }
    });
    while let Some(frame) = read_frame(&mut up_read).await {
        let correlation = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        if *doomed.lock().unwrap() == Some(correlation) {
            break; // the answer is lost with the connection
        }
        let mut out = (frame.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&frame);
        if client_write.write_all(&out).await.is_err() {
            break;
        }
    }
    requests.abort();
    let _ = client_write.shutdown().await;
}

/// Produces "a" with the answer lost and "b" after it; returns the topic's values.
async fn produce_through_a_lost_answer(
    proxy: &LossyProxy,
    client: &Client,
    topic: &str,
    idempotent: bool,
) -> Vec<String> {
    client.create_topic(NewTopic::new(topic, 1)).await.unwrap();
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            acks: Acks::All,
            idempotent,
            linger: Duration::from_millis(0),
            retries: 5,
            retry_backoff: Duration::from_millis(20),
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    // Warm up: the producer id (for an idempotent producer) and the connection.
    producer
        .send(ProducerRecord::new(topic, "warm"))
        .await
        .unwrap()
        .await
        .unwrap();
    proxy.armed.store(true, Ordering::Release);
    let a = producer
        .send(ProducerRecord::new(topic, "a"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        !proxy.armed.load(Ordering::Acquire),
        "the answer to the produce was dropped"
    );
    let b = producer
        .send(ProducerRecord::new(topic, "b"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(b.offset > a.offset);
    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            max_wait: Duration::from_millis(50),
            ..ConsumerConfig::default()
        },
    );
    consumer.assign_all(topic, Offset::Earliest).await.unwrap();
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while values.last().is_none_or(|v| v != "b") {
        assert!(Instant::now() < deadline, "read {values:?}");
        for r in consumer.poll().await.unwrap() {
            values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retry_after_a_dropped_connection_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut proxy, listener) = LossyProxy::bind().await;
    // The broker tells clients to come back through the proxy.
    let broker = Running::start(dir.path(), any_port(), Some(proxy.addr)).await;
    proxy.run(listener, broker.addr);
    let client = Client::connect(&proxy.addr.to_string()).await.unwrap();

    let plain = produce_through_a_lost_answer(&proxy, &client, "plain", false).await;
    assert_eq!(
        plain,
        ["warm", "a", "a", "b"],
        "without idempotence the retry stores the batch again (the proxy really lost an answer)"
    );
    let idempotent = produce_through_a_lost_answer(&proxy, &client, "idem", true).await;
    assert_eq!(idempotent, ["warm", "a", "b"], "the retry was recognised");
    proxy.task.abort();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_keeps_order_and_counts_with_many_batches_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Running::start(dir.path(), any_port(), None).await;
    let client = Client::connect(&broker.addr.to_string()).await.unwrap();
    client.create_topic(NewTopic::new("seq", 3)).await.unwrap();
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            idempotent: true,
            batch_size: 512,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..3000u32 {
        let record = ProducerRecord::new("seq", i.to_string()).with_partition((i % 3) as i32);
        deliveries.push(producer.send(record).await.unwrap());
    }
    producer.flush().await;
    let mut last = [-1i64; 3];
    for (i, d) in deliveries.into_iter().enumerate() {
        let meta = d.await.unwrap();
        let p = meta.partition as usize;
        assert_eq!(
            meta.offset,
            last[p] + 1,
            "record {i}: offsets follow send order"
        );
        last[p] = meta.offset;
    }
    assert_eq!(last, [999, 999, 999]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_offset_outside_the_log_is_reset_as_auto_offset_reset_says() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Running::start(dir.path(), any_port(), None).await;
    let client = Client::connect(&broker.addr.to_string()).await.unwrap();
    client.create_topic(NewTopic::new("gone", 1)).await.unwrap();
    let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
    for i in 0..3 {
        producer
            .send(ProducerRecord::new("gone", format!("v{i}")))
            .await
            .unwrap();
    }
    producer.flush().await;
    // An offset past the end, as after the topic was deleted and created again.
    let offsets = BTreeMap::from([(("gone".to_string(), 0), 100)]);
    client.alter_group_offsets("lost", &offsets).await.unwrap();

    let config = member_config("lost", Assignor::Range);
    let mut member = GroupConsumer::new(client.clone(), config, &["gone"]).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 3 {
        assert!(Instant::now() < deadline, "read {got:?}");
        got.extend(member.poll().await.unwrap().into_iter().map(|r| r.offset));
    }
    assert_eq!(got, [0, 1, 2], "reset to earliest");
    member.close().await.unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_the_coordinator_dropped_learns_it_and_rejoins() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Running::start(dir.path(), any_port(), None).await;
    let client = Client::connect(&broker.addr.to_string()).await.unwrap();
    client
        .create_topic(NewTopic::new("expiry", 2))
        .await
        .unwrap();
    // Heartbeats far apart compared with the session: the coordinator drops the member
    // between two of them.
    let config = GroupConfig {
        session_timeout: Duration::from_secs(1),
        heartbeat_interval: Duration::from_secs(60),
        ..member_config("expiring", Assignor::Range)
    };
    let mut member = GroupConsumer::new(client.clone(), config, &["expiry"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while member.assignment().len() < 2 {
        assert!(Instant::now() < deadline, "never joined");
        member.poll().await.unwrap();
    }
    let (first_id, first_generation) = (member.member_id().to_string(), member.generation());
    loop {
        let d = client.describe_group("expiring").await.unwrap();
        if d.members.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session never expired: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = member.commit().await.unwrap_err();
    let code = refused.kafka_code().map(|c| c.code());
    assert!(
        matches!(code, Some(22 | 25)),
        "a dropped member's commit is refused with ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID: {refused}"
    );
    assert!(member.rebalance_pending(), "the refusal asks for a rejoin");
    member.poll().await.unwrap();
    assert_eq!(member.assignment().len(), 2, "rejoined with the partitions");
    assert!(
        member.member_id() != first_id || member.generation() > first_generation,
        "a new membership: {} gen {} after {first_id} gen {first_generation}",
        member.member_id(),
        member.generation()
    );
    member.commit().await.unwrap();
    member.close().await.unwrap();
    broker.stop().await;
}
