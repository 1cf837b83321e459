//! The group coordinator's state machine, sans-io: members, generations and rebalances,
//! driven by requests and by `tick(now)`. Delayed answers (a JoinGroup waits for the other
//! members; a follower's SyncGroup waits for the leader) are oneshot receivers the caller
//! awaits outside the lock.
//!
//! States as in Kafka: Empty -> PreparingRebalance -> CompletingRebalance -> Stable, and
//! back to PreparingRebalance on a join, a leave or a session timeout.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::snapshot::{GroupSnapshot, MemberSnapshot};

/// Kafka error codes the coordinator answers with.
pub mod code {
    /// No error.
    pub const NONE: i16 = 0;
    /// The generation is not the group's current one.
    pub const ILLEGAL_GENERATION: i16 = 22;
    /// The member's protocols share nothing with the group's.
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    /// The group id is empty.
    pub const INVALID_GROUP_ID: i16 = 24;
    /// The member is not (or no longer) in the group.
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    /// The session timeout is outside what the broker allows.
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    /// The group is rebalancing: rejoin.
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    /// The group still has members.
    pub const NON_EMPTY_GROUP: i16 = 68;
    /// The group does not exist.
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    /// Rejoin with the member id given in this answer (JoinGroup v4+).
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    /// Another member joined with this static instance id and replaced this one.
    pub const FENCED_INSTANCE_ID: i16 = 82;
}

/// Limits and delays of consumer groups, as Kafka's `group.*` broker settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    /// Smallest session timeout a member may ask for (`group.min.session.timeout.ms`).
    pub min_session_timeout: Duration,
    /// Largest session timeout a member may ask for (`group.max.session.timeout.ms`).
    pub max_session_timeout: Duration,
    /// How long a group starting from empty waits for more members before its first
    /// generation (`group.initial.rebalance.delay.ms`; Kafka's default is 3 s, weir's 0 so
    /// a lone consumer starts at once).
    pub initial_rebalance_delay: Duration,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            min_session_timeout: Duration::from_millis(1000),
            max_session_timeout: Duration::from_secs(1800),
            initial_rebalance_delay: Duration::from_millis(0),
        }
    }
}

/// A group's state, as DescribeGroups names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

impl GroupState {
    /// The name Kafka tools print.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// A JoinGroup, decoded.
#[derive(Debug, Clone)]
pub struct Join {
    /// The group.
    pub group: String,
    /// Empty on a first join.
    pub member_id: String,
    /// Static membership id, if the client set one.
    pub instance_id: Option<String>,
    /// The client's id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// How long without a heartbeat before the member is dropped.
    pub session_timeout: Duration,
    /// How long the group waits for the member to rejoin in a rebalance.
    pub rebalance_timeout: Duration,
    /// "consumer" for consumers.
    pub protocol_type: String,
    /// Assignors the member supports, in preference order, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a first join gets MEMBER_ID_REQUIRED and a member id to rejoin with.
    pub require_known_member_id: bool,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Error code.
    pub error: i16,
    /// The new generation.
    pub generation: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen assignor.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// For the leader: every member with its metadata for the chosen assignor.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl Joined {
    /// An answer carrying only an error.
    pub fn error(error: i16, member_id: String) -> Self {
        Self {
            error,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id,
            members: Vec::new(),
        }
    }
}

/// An answer now, or one to wait for.
#[derive(Debug)]
pub enum Answer<T> {
    /// Ready.
    Now(T),
    /// Comes when the rebalance gets there.
    Wait(oneshot::Receiver<T>),
}

impl<T> Answer<T> {
    /// Waits for the answer; `closed` if the coordinator went away meanwhile.
    pub async fn get(self, closed: T) -> T {
        match self {
            Self::Now(t) => t,
            Self::Wait(rx) => rx.await.unwrap_or(closed),
        }
    }
}

/// A SyncGroup answer: error code and this member's assignment.
pub type Synced = (i16, Bytes);

#[derive(Debug)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Instant,
    join_reply: Option<oneshot::Sender<Joined>>,
    sync_reply: Option<oneshot::Sender<Synced>>,
}

#[derive(Debug)]
struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined, and when.
    pending: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    /// The rebalance started from Empty: it waits out the initial delay for more members
    /// even when everyone known has joined.
    initial: bool,
}

impl Group {
    fn new() -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial: false,
        }
    }
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Metadata for the chosen assignor.
    pub metadata: Bytes,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// State name.
    pub state: GroupState,
    /// Generation.
    pub generation: i32,
    /// Protocol type ("consumer").
    pub protocol_type: String,
    /// Chosen assignor.
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// Every group of one broker.
#[derive(Debug, Default)]
pub struct Coordinator {
    settings: GroupSettings,
    groups: HashMap<String, Group>,
    next_member: u64,
    /// The generation of each group as last handed out by [`Coordinator::take_changes`].
    persisted: HashMap<String, i32>,
}

impl Coordinator {
    /// A coordinator with these settings.
    pub fn new(settings: GroupSettings) -> Self {
        Self {
            settings,
            groups: HashMap::new(),
            next_member: 0,
            persisted: HashMap::new(),
        }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let client = if client_id.is_empty() {
            "member"
        } else {
            client_id
        };
        format!("{client}-{}-{}", self.next_member, &nonce[..12])
    }

    /// Handles a JoinGroup.
    pub fn join(&mut self, req: Join, now: Instant) -> Answer<Joined> {
        if req.group.is_empty() {
            return Answer::Now(Joined::error(code::INVALID_GROUP_ID, req.member_id));
        }
        if req.session_timeout < self.settings.min_session_timeout
            || req.session_timeout > self.settings.max_session_timeout
        {
            return Answer::Now(Joined::error(code::INVALID_SESSION_TIMEOUT, req.member_id));
        }
        if let Some(instance) = req.instance_id.as_deref() {
            match self.member_of_instance(&req.group, instance) {
                // A restarted static member: it takes the old member's place (the old one,
                // if still waiting, is told it was fenced).
                Some(old) if req.member_id.is_empty() => {
                    if let Some(g) = self.groups.get_mut(&req.group)
                        && let Some(m) = g.members.remove(&old)
                        && let Some(r) = m.join_reply
                    {
                        let _ = r.send(Joined::error(code::FENCED_INSTANCE_ID, old.clone()));
                    }
                }
                Some(current) if current != req.member_id => {
                    return Answer::Now(Joined::error(code::FENCED_INSTANCE_ID, req.member_id));
                }
                _ => {}
            }
        }
        let member_id = if req.member_id.is_empty() {
            let id = self.new_member_id(&req.client_id);
            // Static members skip the member-id round trip, as in Kafka.
            if req.require_known_member_id && req.instance_id.is_none() {
                let g = self
                    .groups
                    .entry(req.group.clone())
                    .or_insert_with(Group::new);
                g.pending.insert(id.clone(), now);
                return Answer::Now(Joined::error(code::MEMBER_ID_REQUIRED, id));
            }
            id
        } else {
            req.member_id.clone()
        };
        let initial_delay = self.settings.initial_rebalance_delay;
        let g = self
            .groups
            .entry(req.group.clone())
            .or_insert_with(Group::new);
        let known = g.members.contains_key(&member_id) || g.pending.remove(&member_id).is_some();
        if !known && !req.member_id.is_empty() {
            return Answer::Now(Joined::error(code::UNKNOWN_MEMBER_ID, member_id));
        }
        let others: Vec<&Member> = g
            .members
            .iter()
            .filter(|(id, _)| **id != member_id)
            .map(|(_, m)| m)
            .collect();
        if !others.is_empty() {
            // The member must support an assignor that every other member supports too.
            let same_type = g.protocol_type.as_deref() == Some(req.protocol_type.as_str());
            let shares = req.protocols.iter().any(|(p, _)| {
                others
                    .iter()
                    .all(|m| m.protocols.iter().any(|(q, _)| p == q))
            });
            if !same_type || !shares || req.protocols.is_empty() {
                return Answer::Now(Joined::error(code::INCONSISTENT_GROUP_PROTOCOL, member_id));
            }
        }
        g.protocol_type = Some(req.protocol_type.clone());
        let (tx, rx) = oneshot::channel();
        let m = g
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                instance_id: None,
                client_id: String::new(),
                client_host: String::new(),
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_heartbeat: now,
                join_reply: None,
                sync_reply: None,
            });
        m.instance_id = req.instance_id;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.session_timeout = req.session_timeout;
        m.rebalance_timeout = req.rebalance_timeout;
        m.protocols = req.protocols;
        m.last_heartbeat = now;
        if let Some(old) = m.join_reply.replace(tx) {
            // The same member joined twice; the older request is answered as superseded.
            let _ = old.send(Joined::error(
                code::REBALANCE_IN_PROGRESS,
                member_id.clone(),
            ));
        }
        if g.state != GroupState::PreparingRebalance {
            let delay = if g.state == GroupState::Empty {
                Some(initial_delay)
            } else {
                None
            };
            prepare_rebalance(g, now, delay);
        }
        maybe_complete_join(g, now);
        Answer::Wait(rx)
    }

    /// Handles a SyncGroup; the leader's call carries every member's assignment.
    pub fn sync(
        &mut self,
        group: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Answer<Synced> {
        let Some(g) = self.groups.get_mut(group) else {
            return Answer::Now((code::UNKNOWN_MEMBER_ID, Bytes::new()));
        };
        let Some(m) = g.members.get_mut(member_id) else {
            return Answer::Now((code::UNKNOWN_MEMBER_ID, Bytes::new()));
        };
        if generation != g.generation {
            return Answer::Now((code::ILLEGAL_GENERATION, Bytes::new()));
        }
        m.last_heartbeat = now;
        match g.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                Answer::Now((code::REBALANCE_IN_PROGRESS, Bytes::new()))
            }
            GroupState::Stable => Answer::Now((code::NONE, m.assignment.clone())),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                m.sync_reply = Some(tx);
                if g.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for (id, m) in g.members.iter_mut() {
                        m.assignment = given.remove(id).unwrap_or_default();
                        if let Some(r) = m.sync_reply.take() {
                            let _ = r.send((code::NONE, m.assignment.clone()));
                        }
                    }
                    g.state = GroupState::Stable;
                }
                Answer::Wait(rx)
            }
        }
    }

    /// Handles a Heartbeat; returns its error code.
    pub fn heartbeat(
        &mut self,
        group: &str,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> i16 {
        let Some(g) = self.groups.get_mut(group) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        let Some(m) = g.members.get_mut(member_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        m.last_heartbeat = now;
        // Kafka's order: the generation first, then the state.
        if generation != g.generation {
            return code::ILLEGAL_GENERATION;
        }
        if g.state == GroupState::PreparingRebalance {
            return code::REBALANCE_IN_PROGRESS;
        }
        code::NONE
    }

    /// Handles a LeaveGroup for one member; returns its error code.
    pub fn leave(&mut self, group: &str, member_id: &str, now: Instant) -> i16 {
        let Some(g) = self.groups.get_mut(group) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        let Some(m) = g.members.remove(member_id) else {
            // A member id handed out with MEMBER_ID_REQUIRED that never joined.
            return if g.pending.remove(member_id).is_some() {
                code::NONE
            } else {
                code::UNKNOWN_MEMBER_ID
            };
        };
        if let Some(r) = m.join_reply {
            let _ = r.send(Joined::error(
                code::UNKNOWN_MEMBER_ID,
                member_id.to_string(),
            ));
        }
        member_gone(g, now);
        code::NONE
    }

    /// The member id of a static member, if one with this instance id is in the group.
    pub fn member_of_instance(&self, group: &str, instance_id: &str) -> Option<String> {
        let g = self.groups.get(group)?;
        g.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance_id))
            .map(|(id, _)| id.clone())
    }

    /// Whether an OffsetCommit of (generation, member) may store offsets; its error code.
    ///
    /// A commit with generation -1 and no member is a "simple" consumer's: accepted while
    /// the group has no members.
    /// The checks and their order are Kafka's: commits are allowed while the group prepares
    /// a rebalance (members commit before they rejoin), refused while it waits for the
    /// leader's assignment.
    pub fn check_commit(&self, group: &str, member_id: &str, generation: i32) -> i16 {
        let Some(g) = self.groups.get(group) else {
            // No group: a simple consumer's commit, or one from a generation long gone.
            return if generation < 0 {
                code::NONE
            } else {
                code::ILLEGAL_GENERATION
            };
        };
        if generation < 0 && g.state == GroupState::Empty {
            return code::NONE;
        }
        if g.state == GroupState::CompletingRebalance {
            return code::REBALANCE_IN_PROGRESS;
        }
        if !g.members.contains_key(member_id) {
            return code::UNKNOWN_MEMBER_ID;
        }
        if generation != g.generation {
            return code::ILLEGAL_GENERATION;
        }
        code::NONE
    }

    /// Expires silent members and overdue rebalances. Call it a few times a second.
    pub fn tick(&mut self, now: Instant) {
        for g in self.groups.values_mut() {
            g.pending
                .retain(|_, since| now.duration_since(*since) < Duration::from_secs(300));
            if g.state == GroupState::PreparingRebalance
                && g.rebalance_deadline.is_some_and(|d| now >= d)
            {
                // Members that did not rejoin in time are out.
                g.members.retain(|_, m| m.join_reply.is_some());
                complete_join(g, now);
            }
            // A member waiting for a join or sync answer is alive; any other member that
            // has not been heard of within its session timeout is gone, whatever the state
            // (a dead member must not hold a rebalance up for its whole rebalance timeout).
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_reply.is_none()
                        && m.sync_reply.is_none()
                        && now.duration_since(m.last_heartbeat) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            if !expired.is_empty() {
                for id in &expired {
                    g.members.remove(id);
                }
                tracing::info!(members = ?expired, "group members expired: no heartbeat within their session timeout");
                member_gone(g, now);
            }
        }
    }

    /// One group's description, or None if unknown.
    pub fn describe(&self, group: &str) -> Option<GroupDescription> {
        let g = self.groups.get(group)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(GroupDescription {
            state: g.state,
            generation: g.generation,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m
                        .protocols
                        .iter()
                        .find(|(p, _)| *p == protocol)
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Every group the coordinator knows: (id, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let mut v: Vec<_> = self
            .groups
            .iter()
            .map(|(id, g)| {
                (
                    id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state,
                )
            })
            .collect();
        v.sort();
        v
    }

    /// Forgets an empty group; its error code (NON_EMPTY_GROUP while it has members).
    pub fn delete(&mut self, group: &str) -> i16 {
        match self.groups.get(group) {
            Some(g) if !g.members.is_empty() => code::NON_EMPTY_GROUP,
            Some(_) => {
                self.groups.remove(group);
                code::NONE
            }
            None => code::GROUP_ID_NOT_FOUND,
        }
    }

    /// Groups whose stable membership changed since the last call: a snapshot to store
    /// for a group that became Stable in a new generation, `None` for one that emptied or
    /// was deleted. Mid-rebalance states are not stored; a restart falls back to the last
    /// stable generation and members that rejoined simply rejoin again.
    pub(crate) fn take_changes(&mut self) -> Vec<(String, Option<GroupSnapshot>)> {
        let mut out = Vec::new();
        for (id, g) in &self.groups {
            match g.state {
                GroupState::Stable if self.persisted.get(id) != Some(&g.generation) => {
                    self.persisted.insert(id.clone(), g.generation);
                    out.push((id.clone(), Some(snapshot(g))));
                }
                GroupState::Empty if self.persisted.remove(id).is_some() => {
                    out.push((id.clone(), None));
                }
                _ => {}
            }
        }
        let gone: Vec<String> = self
            .persisted
            .keys()
            .filter(|id| !self.groups.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.persisted.remove(&id);
            out.push((id, None));
        }
        out
    }

    /// Brings back a group stored by [`Coordinator::take_changes`], as Stable; its members
    /// count as heard of `now`, so those that are gone expire after their session timeout.
    pub(crate) fn restore(&mut self, id: String, s: GroupSnapshot, now: Instant) {
        let members = s
            .members
            .into_iter()
            .map(|m| {
                (
                    m.id,
                    Member {
                        instance_id: m.instance_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                        session_timeout: m.session_timeout,
                        rebalance_timeout: m.rebalance_timeout,
                        protocols: m.protocols,
                        assignment: m.assignment,
                        last_heartbeat: now,
                        join_reply: None,
                        sync_reply: None,
                    },
                )
            })
            .collect();
        let mut g = Group::new();
        g.state = GroupState::Stable;
        g.generation = s.generation;
        g.protocol_type = Some(s.protocol_type);
        g.protocol = Some(s.protocol);
        g.leader = Some(s.leader);
        g.members = members;
        self.persisted.insert(id.clone(), s.generation);
        self.groups.insert(id, g);
    }

    /// Whether a group has members (offset resets are refused then).
    pub fn has_members(&self, group: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| !g.members.is_empty())
    }
}

impl Ord for GroupState {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl PartialOrd for GroupState {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn snapshot(g: &Group) -> GroupSnapshot {
    GroupSnapshot {
        generation: g.generation,
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol: g.protocol.clone().unwrap_or_default(),
        leader: g.leader.clone().unwrap_or_default(),
        members: g
            .members
            .iter()
            .map(|(id, m)| MemberSnapshot {
                id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout: m.session_timeout,
                rebalance_timeout: m.rebalance_timeout,
                protocols: m.protocols.clone(),
                assignment: m.assignment.clone(),
            })
            .collect(),
    }
}

fn prepare_rebalance(g: &mut Group, now: Instant, initial_delay: Option<Duration>) {
    // Followers waiting for an assignment of the old generation must rejoin.
    for m in g.members.values_mut() {
        if let Some(r) = m.sync_reply.take() {
            let _ = r.send((code::REBALANCE_IN_PROGRESS, Bytes::new()));
        }
    }
    let longest = g
        .members
        .values()
        .map(|m| m.rebalance_timeout)
        .max()
        .unwrap_or_default();
    g.rebalance_deadline = Some(now + initial_delay.unwrap_or(longest));
    g.initial = initial_delay.is_some();
    g.state = GroupState::PreparingRebalance;
}

fn maybe_complete_join(g: &mut Group, now: Instant) {
    let all_joined = g.members.values().all(|m| m.join_reply.is_some());
    let delay_over = !g.initial || g.rebalance_deadline.is_none_or(|d| now >= d);
    if g.state == GroupState::PreparingRebalance && all_joined && delay_over {
        complete_join(g, now);
    }
}

fn member_gone(g: &mut Group, now: Instant) {
    if g.members.is_empty() {
        g.state = GroupState::Empty;
        g.leader = None;
        g.protocol = None;
        g.rebalance_deadline = None;
        return;
    }
    if g.state != GroupState::PreparingRebalance {
        prepare_rebalance(g, now, None);
    }
    maybe_complete_join(g, now);
}

fn complete_join(g: &mut Group, now: Instant) {
    g.rebalance_deadline = None;
    if g.members.is_empty() {
        g.state = GroupState::Empty;
        g.leader = None;
        g.protocol = None;
        return;
    }
    g.generation += 1;
    // The assignor every member supports that most members prefer.
    let mut common: Option<HashSet<&str>> = None;
    for m in g.members.values() {
        let mine: HashSet<&str> = m.protocols.iter().map(|(p, _)| p.as_str()).collect();
        common = Some(match common {
            None => mine,
            Some(c) => c.intersection(&mine).copied().collect(),
        });
    }
    let common = common.unwrap_or_default();
    let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
    for m in g.members.values() {
        if let Some((p, _)) = m
            .protocols
            .iter()
            .find(|(p, _)| common.contains(p.as_str()))
        {
            *votes.entry(p.as_str()).or_default() += 1;
        }
    }
    let protocol = votes
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(p, _)| p.to_string());
    g.protocol = protocol.clone();
    if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
        g.leader = g.members.keys().next().cloned();
    }
    let leader = g.leader.clone().unwrap_or_default();
    let chosen = protocol.clone().unwrap_or_default();
    let roster: Vec<(String, Option<String>, Bytes)> = g
        .members
        .iter()
        .map(|(id, m)| {
            let md = m
                .protocols
                .iter()
                .find(|(p, _)| *p == chosen)
                .map(|(_, b)| b.clone());
            (id.clone(), m.instance_id.clone(), md.unwrap_or_default())
        })
        .collect();
    g.state = GroupState::CompletingRebalance;
    for (id, m) in g.members.iter_mut() {
        m.last_heartbeat = now;
        m.assignment = Bytes::new();
        if let Some(r) = m.join_reply.take() {
            let _ = r.send(Joined {
                error: code::NONE,
                generation: g.generation,
                protocol_type: g.protocol_type.clone(),
                protocol_name: protocol.clone(),
                leader: leader.clone(),
                member_id: id.clone(),
                members: if *id == leader {
                    roster.clone()
                } else {
                    Vec::new()
                },
            });
        }
    }
}

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;
