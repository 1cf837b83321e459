//! Consumer groups: the coordinator's state machine and the broker task that drives its
//! timeouts.

pub(crate) mod coordinator;

pub(crate) use coordinator::{Answer, Coordinator, GroupSettings, GroupState, Join, Joined, code};

use std::sync::{Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How often member sessions and rebalance deadlines are checked.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// The coordinator behind its lock. The lock is never held across an await.
#[derive(Debug, Default)]
pub(crate) struct Groups(Mutex<Coordinator>);

impl Groups {
    /// A coordinator with these settings.
    pub(crate) fn new(settings: GroupSettings) -> Self {
        Self(Mutex::new(Coordinator::new(settings)))
    }

    /// The coordinator, brought up to date with the clock.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Coordinator> {
        // A panic under the lock cannot leave a half-applied request behind that matters
        // more than serving the rest of the groups.
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        c.tick(Instant::now());
        c
    }
}

/// Ticks the coordinator every [`TICK`] while its owner lives, so silent members expire and
/// overdue rebalances complete even when no request comes in.
pub(crate) async fn drive<T: AsRef<Groups>>(owner: Weak<T>) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(owner) = owner.upgrade() else { return };
        drop((*owner).as_ref().lock());
    }
}
