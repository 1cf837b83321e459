//! A consumer-group member: joins (with the MEMBER_ID_REQUIRED round), leads the
//! assignment when chosen, heartbeats in the background, rejoins when the coordinator asks,
//! starts each partition at the group's committed offset, and commits.

mod admin;
mod heartbeat;
mod protocol;

pub use admin::{GroupDescription, GroupListing, MemberDescription};
pub use protocol::{
    Assignor, PROTOCOL_TYPE, decode_assignment, decode_subscription, encode_assignment,
    encode_subscription,
};

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinHandle;

use self::admin::{commit_request, commit_result, fetch_committed, is_coordinator_error};
use self::heartbeat::MemberLink;
use crate::client::Client;
use crate::consumer::{Consumer, ConsumerConfig, Offset};
use crate::error::{ClientError, Result};
use crate::records::ConsumerRecord;

/// Where a partition without a committed offset starts (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    /// The first record still in the log.
    Earliest,
    /// The end of the log: only records produced from now on.
    #[default]
    Latest,
}

/// Settings of a [`GroupConsumer`]; the defaults are Kafka's consumer defaults where weir
/// has no reason to differ.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The group to join (`group.id`).
    pub group_id: String,
    /// Static membership id (`group.instance.id`); a static member does not leave on close.
    pub group_instance_id: Option<String>,
    /// Without a heartbeat for this long the coordinator drops the member (`session.timeout.ms`).
    pub session_timeout: Duration,
    /// How long the coordinator waits for members to rejoin during a rebalance
    /// (`max.poll.interval.ms`).
    pub rebalance_timeout: Duration,
    /// Time between heartbeats (`heartbeat.interval.ms`).
    pub heartbeat_interval: Duration,
    /// Assignors offered, preferred first (`partition.assignment.strategy`).
    pub assignors: Vec<Assignor>,
    /// Start of partitions without a committed offset (`auto.offset.reset`).
    pub auto_offset_reset: AutoOffsetReset,
    /// Fetch settings.
    pub fetch: ConsumerConfig,
    /// Wait after a retriable error before trying again (`retry.backoff.ms`).
    pub retry_backoff: Duration,
}

impl GroupConfig {
    /// Defaults for `group_id`.
    pub fn new(group_id: impl Into<String>) -> Self {
        GroupConfig {
            group_id: group_id.into(),
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            assignors: vec![Assignor::Range, Assignor::RoundRobin],
            auto_offset_reset: AutoOffsetReset::Latest,
            fetch: ConsumerConfig::default(),
            retry_backoff: Duration::from_millis(100),
        }
    }
}

/// What a rebalance callback is told.
#[derive(Debug, Clone, Copy)]
pub enum Rebalance<'a> {
    /// These partitions are no longer this member's (before it rejoins); commit what was
    /// processed of them now or never.
    Revoked(&'a [(String, i32)]),
    /// These partitions are this member's from now on.
    Assigned(&'a [(String, i32)]),
}

/// Behind a mutex only so that the member is `Sync` (its `&self` methods run across awaits).
type Callback = std::sync::Mutex<Box<dyn FnMut(Rebalance<'_>) + Send>>;

/// A member of a consumer group reading the partitions the group gives it.
pub struct GroupConsumer {
    link: Arc<MemberLink>,
    config: GroupConfig,
    topics: Vec<String>,
    consumer: Consumer,
    member_id: String,
    generation: i32,
    assignment: Vec<(String, i32)>,
    heartbeat: Option<JoinHandle<()>>,
    callback: Option<Callback>,
    closed: bool,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group", &self.config.group_id)
            .field("member_id", &self.member_id)
            .field("generation", &self.generation)
            .field("assignment", &self.assignment)
            .finish_non_exhaustive()
    }
}

/// A commit sent without waiting; [`wait`](Self::wait) for its outcome or drop it.
#[derive(Debug)]
pub struct CommitHandle(JoinHandle<Result<()>>);

impl CommitHandle {
    /// Waits for the coordinator's answer.
    pub async fn wait(self) -> Result<()> {
        self.0
            .await
            .unwrap_or_else(|e| Err(ClientError::TaskFailed(e.to_string())))
    }
}

enum Attempt {
    Joined(Vec<(String, i32)>),
    Again,
}

impl GroupConsumer {
    /// A member of `config.group_id` subscribing to `topics`; it joins on the first
    /// [`poll`](Self::poll).
    pub fn new(client: Client, config: GroupConfig, topics: &[&str]) -> Result<GroupConsumer> {
        if config.group_id.is_empty() {
            return Err(ClientError::InvalidArgument(
                "a group consumer needs a non-empty group id".into(),
            ));
        }
        if topics.is_empty() || config.assignors.is_empty() {
            return Err(ClientError::InvalidArgument(
                "a group consumer needs at least one topic and one assignor".into(),
            ));
        }
        let mut topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        topics.sort();
        topics.dedup();
        Ok(GroupConsumer {
            link: Arc::new(MemberLink::new(client.clone(), config.group_id.clone())),
            consumer: Consumer::new(client, config.fetch.clone()),
            config,
            topics,
            member_id: String::new(),
            generation: -1,
            assignment: Vec::new(),
            heartbeat: None,
            callback: None,
            closed: false,
        })
    }

    /// Calls `f` when partitions are revoked (before a rejoin) and assigned (after one).
    pub fn on_rebalance(&mut self, f: impl FnMut(Rebalance<'_>) + Send + 'static) {
        self.callback = Some(std::sync::Mutex::new(Box::new(f)));
    }

    /// The partitions this member reads, sorted.
    pub fn assignment(&self) -> &[(String, i32)] {
        &self.assignment
    }

    /// The member id the coordinator gave (empty before the first join).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The generation of the group this member is in (-1 before the first join).
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Whether the coordinator asked for a rejoin that the next poll will do.
    pub fn rebalance_pending(&self) -> bool {
        self.link.rejoin.load(Ordering::Acquire)
    }

    /// The next offset to read of every assigned partition.
    pub fn positions(&self) -> BTreeMap<(String, i32), i64> {
        self.assignment
            .iter()
            .filter_map(|(t, p)| self.consumer.position(t, *p).map(|o| ((t.clone(), *p), o)))
            .collect()
    }

    /// Joins or rejoins when needed, then fetches once from the assigned partitions.
    /// Retriable trouble (a broker restarting, a coordinator moving) gives an empty batch
    /// after a short backoff; poll again.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>> {
        if self.closed {
            return Err(ClientError::InvalidArgument(
                "the group consumer was closed".into(),
            ));
        }
        if self.link.rejoin.load(Ordering::Acquire) {
            match self.join().await {
                Ok(()) => {}
                Err(e) if e.is_retriable() => {
                    tracing::debug!(group = %self.config.group_id, error = %e, "join failed; will retry");
                    tokio::time::sleep(self.config.retry_backoff).await;
                    return Ok(Vec::new());
                }
                Err(e) => return Err(e),
            }
        }
        if self.assignment.is_empty() {
            // More members than partitions: idle until a rebalance or the fetch wait passes.
            let mut woken = pin!(self.link.wake.notified());
            woken.as_mut().enable();
            if !self.link.rejoin.load(Ordering::Acquire) {
                let _ = tokio::time::timeout(self.config.fetch.max_wait, woken).await;
            }
            return Ok(Vec::new());
        }
        match self.consumer.poll().await {
            Ok(records) => Ok(records),
            Err(e) if e.kafka_code() == Some(kafka_protocol::ResponseError::OffsetOutOfRange) => {
                // A committed offset no longer in the log (retention, a recreated topic):
                // start over as auto.offset.reset says, as Kafka's consumers do.
                tracing::warn!(group = %self.config.group_id, error = %e, "position outside the log; resetting");
                self.reset_out_of_range().await?;
                Ok(Vec::new())
            }
            Err(e) if e.is_retriable() => {
                tracing::debug!(group = %self.config.group_id, error = %e, "fetch failed; will retry");
                tokio::time::sleep(self.config.retry_backoff).await;
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Commits the positions of every assigned partition and waits for the answer.
    pub async fn commit(&mut self) -> Result<()> {
        let offsets = self.positions();
        self.commit_offsets(&offsets).await
    }

    /// Commits `offsets` ((topic, partition) -> next offset to read) and waits for the answer.
    /// REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION and UNKNOWN_MEMBER_ID mean the partitions may
    /// be someone else's now: the member rejoins on the next poll.
    pub async fn commit_offsets(&mut self, offsets: &BTreeMap<(String, i32), i64>) -> Result<()> {
        self.commit_offsets_async(offsets).await?.wait().await
    }

    /// Sends a commit of every assigned partition's position without waiting for the answer.
    pub async fn commit_async(&mut self) -> Result<CommitHandle> {
        let offsets = self.positions();
        self.commit_offsets_async(&offsets).await
    }

    /// Sends a commit of `offsets` without waiting for the answer.
    pub async fn commit_offsets_async(
        &mut self,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<CommitHandle> {
        if self.generation < 0 || self.member_id.is_empty() {
            return Err(ClientError::InvalidArgument(format!(
                "not a member of group {} yet: poll first",
                self.config.group_id
            )));
        }
        if offsets.is_empty() {
            return Ok(CommitHandle(tokio::spawn(async { Ok(()) })));
        }
        let conn = self.link.coordinator().await?;
        let request = commit_request(
            &self.config.group_id,
            self.generation,
            &self.member_id,
            self.config.group_instance_id.as_deref(),
            offsets,
        );
        let in_flight = conn.start(&request)?;
        let link = self.link.clone();
        Ok(CommitHandle(tokio::spawn(async move {
            let result = match in_flight.response().await {
                Ok(response) => commit_result(&link.group, &response, false),
                Err(e) => {
                    link.lose_coordinator().await;
                    Err(e)
                }
            };
            if let Some(code) = result.as_ref().err().and_then(ClientError::kafka_code) {
                link.absorb_code(code.code()).await;
            }
            result
        })))
    }

    /// Leaves the group (its partitions move to the other members at once) and stops.
    pub async fn close(mut self) -> Result<()> {
        self.stop_heartbeat();
        self.closed = true;
        self.revoke_all();
        if self.member_id.is_empty() || self.config.group_instance_id.is_some() {
            return Ok(());
        }
        let conn = self.link.coordinator().await?;
        let (request, version) = self.leave_request(&conn)?;
        let response = conn.send_at(&request, version, None).await?;
        let group = &self.config.group_id;
        // UNKNOWN_MEMBER_ID: the coordinator had already dropped the member; it is out.
        let code = response
            .members
            .iter()
            .map(|m| m.error_code)
            .find(|&c| c != 0)
            .unwrap_or(response.error_code);
        self.member_id.clear();
        match code {
            0 | 25 => Ok(()),
            c => Err(ClientError::kafka(c, format!("leave group {group}"), None)),
        }
    }

    fn leave_request(
        &self,
        conn: &crate::connection::Connection,
    ) -> Result<(LeaveGroupRequest, i16)> {
        let version = conn.version_for(ApiKey::LeaveGroup)?;
        let mut request = LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())));
        if version >= 3 {
            request.members = vec![
                MemberIdentity::default()
                    .with_member_id(StrBytes::from_string(self.member_id.clone()))
                    .with_reason(Some(StrBytes::from_static_str("the consumer is closing"))),
            ];
        } else {
            request.member_id = StrBytes::from_string(self.member_id.clone());
        }
        Ok((request, version))
    }

    fn tell(&self, event: Rebalance<'_>) {
        if let Some(cb) = &self.callback {
            (cb.lock().unwrap_or_else(|e| e.into_inner()))(event);
        }
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    fn revoke_all(&mut self) {
        if self.assignment.is_empty() {
            return;
        }
        let revoked = std::mem::take(&mut self.assignment);
        self.consumer.unassign();
        self.tell(Rebalance::Revoked(&revoked));
    }

    async fn join(&mut self) -> Result<()> {
        self.stop_heartbeat();
        self.revoke_all();
        let deadline = Instant::now() + self.config.rebalance_timeout + self.config.session_timeout;
        let assignment = loop {
            if self.link.forget_member_id.swap(false, Ordering::AcqRel) {
                self.member_id.clear();
            }
            self.link.rejoin.store(false, Ordering::Release);
            match self.attempt().await {
                Ok(Attempt::Joined(assignment)) => break assignment,
                Ok(Attempt::Again) => {}
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    tracing::debug!(group = %self.config.group_id, error = %e, "join attempt failed; retrying");
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Err(e) => {
                    self.link.request_rejoin(false);
                    return Err(e);
                }
            }
        };
        if let Err(e) = self.start_positions(&assignment).await {
            self.link.request_rejoin(false);
            return Err(e);
        }
        self.assignment = assignment;
        self.heartbeat = Some(tokio::spawn(heartbeat::run(
            self.link.clone(),
            self.member_id.clone(),
            self.config.group_instance_id.clone(),
            self.generation,
            self.config.heartbeat_interval,
        )));
        self.tell(Rebalance::Assigned(&self.assignment));
        Ok(())
    }

    /// One JoinGroup and SyncGroup round.
    async fn attempt(&mut self) -> Result<Attempt> {
        let group = self.config.group_id.clone();
        let conn = self.link.coordinator().await?;
        let metadata = encode_subscription(&self.topics);
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.clone())))
            .with_session_timeout_ms(millis(self.config.session_timeout))
            .with_rebalance_timeout_ms(millis(self.config.rebalance_timeout))
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(self.instance_id())
            .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
            .with_protocols(
                self.config
                    .assignors
                    .iter()
                    .map(|a| {
                        JoinGroupRequestProtocol::default()
                            .with_name(StrBytes::from_static_str(a.name()))
                            .with_metadata(metadata.clone())
                    })
                    .collect(),
            );
        let joined = conn
            .send_with_extra_time(&request, self.config.rebalance_timeout)
            .await?;
        match joined.error_code {
            0 => {}
            // MEMBER_ID_REQUIRED (JoinGroup v4+): join again with the id the coordinator gave.
            79 => {
                self.member_id = joined.member_id.to_string();
                return Ok(Attempt::Again);
            }
            25 => {
                self.member_id.clear();
                return Ok(Attempt::Again);
            }
            27 => return Ok(Attempt::Again),
            c => return Err(self.coordinator_trouble(c, "join").await),
        }
        self.member_id = joined.member_id.to_string();
        self.generation = joined.generation_id;
        let protocol = joined
            .protocol_name
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let assignments = if joined.leader == joined.member_id {
            self.lead(&protocol, &joined.members).await?
        } else {
            Vec::new()
        };
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.clone())))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(self.instance_id())
            .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
            .with_protocol_name(Some(StrBytes::from_string(protocol)))
            .with_assignments(assignments);
        let synced = conn
            .send_with_extra_time(&request, self.config.rebalance_timeout)
            .await?;
        match synced.error_code {
            0 => {}
            27 | 22 => return Ok(Attempt::Again),
            25 => {
                self.member_id.clear();
                return Ok(Attempt::Again);
            }
            c => return Err(self.coordinator_trouble(c, "sync with").await),
        }
        let assignment =
            decode_assignment(&synced.assignment).ok_or_else(|| ClientError::Protocol {
                addr: conn.addr(),
                api: "SyncGroup",
                reason: format!(
                    "the assignment of group {group} is not a consumer protocol assignment"
                ),
            })?;
        Ok(Attempt::Joined(assignment))
    }

    fn instance_id(&self) -> Option<StrBytes> {
        self.config
            .group_instance_id
            .clone()
            .map(StrBytes::from_string)
    }

    async fn coordinator_trouble(&self, code: i16, what: &str) -> ClientError {
        if is_coordinator_error(code) {
            self.link.lose_coordinator().await;
        }
        ClientError::kafka(code, format!("{what} group {}", self.config.group_id), None)
    }

    /// The leader's part: split the partitions of every member's topics.
    async fn lead(
        &self,
        protocol: &str,
        members: &[JoinGroupResponseMember],
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let assignor = Assignor::from_name(protocol).ok_or_else(|| {
            ClientError::InvalidArgument(format!(
                "group {} chose assignor {protocol:?}, which weir-client does not have",
                self.config.group_id
            ))
        })?;
        let subscriptions: BTreeMap<String, Vec<String>> = members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    decode_subscription(&m.metadata).unwrap_or_default(),
                )
            })
            .collect();
        let mut counts = BTreeMap::new();
        for topic in subscriptions.values().flatten() {
            if counts.contains_key(topic) {
                continue;
            }
            // Fresh metadata: partitions may have been added since the last rebalance.
            self.link.client.invalidate(topic);
            match self.link.client.topic(topic, false).await {
                Ok(info) => {
                    counts.insert(topic.clone(), info.partitions.len() as i32);
                }
                Err(ClientError::UnknownTopic(_)) => {
                    tracing::warn!(group = %self.config.group_id, %topic, "a member subscribes to a topic that does not exist");
                }
                Err(e) => return Err(e),
            }
        }
        let plan = assignor.assign(&subscriptions, &counts);
        Ok(plan
            .into_iter()
            .map(|(member, partitions)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member))
                    .with_assignment(encode_assignment(&partitions))
            })
            .collect())
    }

    /// Moves every assigned partition whose position is outside its log to where
    /// auto.offset.reset says.
    async fn reset_out_of_range(&mut self) -> Result<()> {
        let client = self.link.client.clone();
        for (topic, partition) in self.assignment.clone() {
            let Some(position) = self.consumer.position(&topic, partition) else {
                continue;
            };
            let earliest = client
                .list_offsets(&topic, &[(partition, Offset::Earliest)])
                .await?;
            let latest = client
                .list_offsets(&topic, &[(partition, Offset::Latest)])
                .await?;
            let (Some(&(_, lo)), Some(&(_, hi))) = (earliest.first(), latest.first()) else {
                continue;
            };
            if position < lo || position > hi {
                let to = match self.config.auto_offset_reset {
                    AutoOffsetReset::Earliest => Offset::Earliest,
                    AutoOffsetReset::Latest => Offset::Latest,
                };
                self.consumer.seek(&topic, partition, to).await?;
            }
        }
        Ok(())
    }

    /// Positions every assigned partition at its committed offset, or per auto.offset.reset.
    async fn start_positions(&mut self, assignment: &[(String, i32)]) -> Result<()> {
        self.consumer.unassign();
        if assignment.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (t, p) in assignment {
            by_topic.entry(t.clone()).or_default().push(*p);
        }
        let wanted: Vec<(String, Vec<i32>)> = by_topic.into_iter().collect();
        let deadline = Instant::now() + self.config.session_timeout;
        let committed = loop {
            let attempt = async {
                let conn = self.link.coordinator().await?;
                fetch_committed(&conn, &self.config.group_id, Some(&wanted)).await
            };
            match attempt.await {
                Ok(c) => break c,
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    if e.kafka_code()
                        .is_none_or(|c| is_coordinator_error(c.code()))
                    {
                        self.link.lose_coordinator().await;
                    }
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Err(e) => return Err(e),
            }
        };
        let reset = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => Offset::Earliest,
            AutoOffsetReset::Latest => Offset::Latest,
        };
        for (topic, partitions) in &wanted {
            let spec: Vec<(i32, Offset)> = partitions
                .iter()
                .map(|&p| {
                    let at = committed.get(&(topic.clone(), p)).copied();
                    (p, at.map_or(reset, Offset::At))
                })
                .collect();
            self.consumer.assign_each(topic, &spec).await?;
        }
        Ok(())
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.stop_heartbeat();
        if self.closed || self.member_id.is_empty() || self.config.group_instance_id.is_some() {
            return;
        }
        // Best effort: queue a LeaveGroup on the coordinator connection; it is written even
        // though nobody waits for the answer, so the partitions move without a session timeout.
        if let Some(conn) = self.link.coordinator_now()
            && let Ok((request, _)) = self.leave_request(&conn)
        {
            let _ = conn.send_no_response(&request);
        }
    }
}

fn millis(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}
