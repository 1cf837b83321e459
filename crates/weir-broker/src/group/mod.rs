//! Consumer groups: the coordinator's state machine, the snapshots that carry stable groups
//! across restarts, and the broker task that drives timeouts.

pub(crate) mod coordinator;
mod snapshot;

pub use coordinator::GroupSettings;
pub(crate) use coordinator::{Answer, Coordinator, GroupState, Join, Joined, code};

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use weir_log::{Log, Unit};

use snapshot::GroupSnapshot;

/// How often member sessions and rebalance deadlines are checked.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// The weir-log state table holding stable groups' membership, by group id.
pub(crate) const GROUPS_TABLE: &str = "__consumer_groups";

/// The coordinator behind its lock, and the log its stable groups are stored in.
#[derive(Debug)]
pub(crate) struct Groups {
    coordinator: Mutex<Coordinator>,
    log: Log,
}

impl Groups {
    /// A coordinator with these settings, holding the groups stored in `log`.
    pub(crate) fn load(settings: GroupSettings, log: Log) -> Self {
        let mut c = Coordinator::new(settings);
        match log.state_entries(GROUPS_TABLE) {
            Ok(entries) => {
                let now = Instant::now();
                for (key, value) in entries {
                    let id = String::from_utf8_lossy(&key).into_owned();
                    match GroupSnapshot::decode(&value) {
                        Some(s) => c.restore(id, s, now),
                        None => {
                            tracing::warn!(group = %id, "ignoring a stored group this version cannot read; its members will rejoin")
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read stored groups; their members will rejoin")
            }
        }
        Self {
            coordinator: Mutex::new(c),
            log,
        }
    }

    /// The coordinator, brought up to date with the clock. When the guard goes, groups
    /// whose stable membership changed are written to the log.
    pub(crate) fn lock(&self) -> GroupsGuard<'_> {
        // A panic under the lock leaves at worst one group half-updated; the others must
        // still be served.
        let mut c = self.coordinator.lock().unwrap_or_else(|e| e.into_inner());
        c.tick(Instant::now());
        GroupsGuard {
            coordinator: c,
            log: &self.log,
        }
    }
}

/// The locked coordinator; see [`Groups::lock`].
#[derive(Debug)]
pub(crate) struct GroupsGuard<'a> {
    coordinator: MutexGuard<'a, Coordinator>,
    log: &'a Log,
}

impl Deref for GroupsGuard<'_> {
    type Target = Coordinator;

    fn deref(&self) -> &Coordinator {
        &self.coordinator
    }
}

impl DerefMut for GroupsGuard<'_> {
    fn deref_mut(&mut self) -> &mut Coordinator {
        &mut self.coordinator
    }
}

impl Drop for GroupsGuard<'_> {
    fn drop(&mut self) {
        let changes = self.coordinator.take_changes();
        if changes.is_empty() {
            return;
        }
        let mut unit = Unit::new();
        for (id, snapshot) in changes {
            match snapshot {
                Some(s) => unit.state_put(GROUPS_TABLE, id.as_bytes(), &s.encode()),
                None => unit.state_delete(GROUPS_TABLE, id.as_bytes()),
            };
        }
        // Queued while the lock is held, so stores land in the order of the changes; nobody
        // waits for them: a restart before the commit only costs the members a rejoin.
        drop(self.log.commit(unit));
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
