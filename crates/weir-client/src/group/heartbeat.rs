//! The background heartbeat of a group member, and the coordinator connection it shares
//! with its member.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kafka_protocol::messages::{GroupId, HeartbeatRequest};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Notify;

use super::admin::is_coordinator_error;
use crate::client::Client;
use crate::connection::Connection;
use crate::error::Result;

/// What the member and its heartbeat task share.
#[derive(Debug)]
pub(crate) struct MemberLink {
    pub client: Client,
    pub group: String,
    coordinator: tokio::sync::Mutex<Option<Arc<Connection>>>,
    /// Set when the coordinator said the member must join again.
    pub rejoin: AtomicBool,
    /// Set with `rejoin` when the coordinator no longer knows the member id.
    pub forget_member_id: AtomicBool,
    /// Woken when `rejoin` is set, so an idle member notices at once.
    pub wake: Notify,
}

impl MemberLink {
    pub fn new(client: Client, group: String) -> Self {
        MemberLink {
            client,
            group,
            coordinator: tokio::sync::Mutex::new(None),
            rejoin: AtomicBool::new(true),
            forget_member_id: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// The coordinator connection, found again if it was lost.
    pub async fn coordinator(&self) -> Result<Arc<Connection>> {
        let mut slot = self.coordinator.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let conn = self.client.coordinator_connection(&self.group).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// The coordinator connection if one is open and not in use right now (for `Drop`).
    pub fn coordinator_now(&self) -> Option<Arc<Connection>> {
        self.coordinator
            .try_lock()
            .ok()
            .and_then(|slot| slot.clone())
            .filter(|c| !c.is_closed())
    }

    /// Forgets the coordinator after it said it is not (or no longer) the coordinator.
    pub async fn lose_coordinator(&self) {
        *self.coordinator.lock().await = None;
    }

    /// Marks that the member must rejoin; `forget` when its member id is gone.
    pub fn request_rejoin(&self, forget: bool) {
        if forget {
            self.forget_member_id.store(true, Ordering::Release);
        }
        self.rejoin.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    /// Reacts to an error code of a heartbeat or commit; true when it asked for a rejoin.
    pub async fn absorb_code(&self, code: i16) -> bool {
        match code {
            // REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION
            27 | 22 => {
                self.request_rejoin(false);
                true
            }
            // UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID
            25 | 82 => {
                self.request_rejoin(true);
                true
            }
            c if is_coordinator_error(c) => {
                self.lose_coordinator().await;
                false
            }
            _ => false,
        }
    }
}

/// Sends heartbeats for (`member_id`, `generation`) every `interval` until the coordinator
/// asks for a rejoin; connection errors are retried on a freshly found coordinator until
/// the session runs out (then the coordinator answers UNKNOWN_MEMBER_ID and the member
/// rejoins).
pub(crate) async fn run(
    link: Arc<MemberLink>,
    member_id: String,
    instance_id: Option<String>,
    generation: i32,
    interval: Duration,
) {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(link.group.clone())))
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member_id))
        .with_group_instance_id(instance_id.map(StrBytes::from_string));
    loop {
        tokio::time::sleep(interval).await;
        let answer = match link.coordinator().await {
            Ok(conn) => conn.send(&request).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(r) if r.error_code == 0 => {}
            Ok(r) => {
                if link.absorb_code(r.error_code).await {
                    return;
                }
                tracing::debug!(group = %link.group, code = r.error_code, "heartbeat refused; retrying");
            }
            Err(e) => {
                tracing::debug!(group = %link.group, error = %e, "heartbeat failed; retrying");
                link.lose_coordinator().await;
            }
        }
    }
}
