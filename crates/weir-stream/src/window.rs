//! Event-time windows on keyed streams: tumbling, hopping and session.
//!
//! Semantics, which the property tests check against a brute-force reference:
//! - A window `[start, end)` closes when the watermark reaches `end + grace`; its result is
//!   emitted then, once, at event time `end - 1` (or on every change with `emit_updates`).
//! - Tumbling and hopping: a record is dropped from each of its windows that has closed by
//!   the watermark it arrives under; if it is dropped from any, it is late.
//! - Session: a record is late when its time is below `watermark - grace` (the session it
//!   would join may have closed); otherwise it opens `[t, t + gap)` and merges with every
//!   session of its key that overlaps.
//! - Late records are counted, and go to the late topic if one is named.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregator, MergeAggregator};
use crate::error::Result;
use crate::graph::Push;
use crate::metrics::StateGauges;
use crate::operator::{Context, Event, Operator, RestoredState, StateWriter};
use crate::topic::duration_ms;

/// `d` seconds.
pub fn secs(d: u64) -> Duration {
    Duration::from_secs(d)
}

/// `d` milliseconds.
pub fn millis(d: u64) -> Duration {
    Duration::from_millis(d)
}

/// Fixed-size windows that advance by a slide: tumbling when the slide is the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    pub(crate) size_ms: i64,
    pub(crate) slide_ms: i64,
    pub(crate) grace_ms: i64,
    pub(crate) updates: bool,
}

/// Windows that touch end to start: every record is in exactly one.
#[derive(Debug, Clone, Copy)]
pub struct Tumbling;

impl Tumbling {
    /// Tumbling windows of `size` (at least 1 ms), aligned to the epoch.
    pub fn every(size: Duration) -> TimeWindows {
        Hopping::of(size, size)
    }
}

/// Windows of `size` starting every `slide`: a record is in `size / slide` of them.
#[derive(Debug, Clone, Copy)]
pub struct Hopping;

impl Hopping {
    /// Hopping windows of `size` every `slide` (both at least 1 ms), aligned to the epoch.
    pub fn of(size: Duration, slide: Duration) -> TimeWindows {
        TimeWindows {
            size_ms: duration_ms(size).max(1),
            slide_ms: duration_ms(slide).max(1),
            grace_ms: 0,
            updates: false,
        }
    }
}

impl TimeWindows {
    /// How long after its end a window still takes late records (0 by default).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace_ms = duration_ms(grace);
        self
    }

    /// Emits a window's current result after every batch that changed it, instead of
    /// once when it closes.
    pub fn emit_updates(mut self) -> Self {
        self.updates = true;
        self
    }
}

/// Per-key windows that stay open while records keep coming within a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    pub(crate) gap_ms: i64,
    pub(crate) grace_ms: i64,
}

/// Session windows.
#[derive(Debug, Clone, Copy)]
pub struct Session;

impl Session {
    /// Sessions that close after `gap` (at least 1 ms) without a record of their key.
    pub fn gap(gap: Duration) -> SessionWindows {
        SessionWindows {
            gap_ms: duration_ms(gap).max(1),
            grace_ms: 0,
        }
    }
}

impl SessionWindows {
    /// How long after its end a session still takes late records (0 by default).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace_ms = duration_ms(grace);
        self
    }
}

/// The result of one window for one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Windowed<K, A> {
    /// The key.
    pub key: K,
    /// Window start (inclusive), ms.
    pub start: i64,
    /// Window end (exclusive), ms.
    pub end: i64,
    /// The aggregate.
    pub value: A,
}

/// What a window key must be: hashed for state, ordered so output order is deterministic,
/// serialized for checkpoints.
pub trait Key: Clone + Hash + Eq + Ord + Serialize + DeserializeOwned + Send + 'static {}
impl<T: Clone + Hash + Eq + Ord + Serialize + DeserializeOwned + Send + 'static> Key for T {}

pub(crate) type LateSink<K, V> = Option<Box<dyn Push<(K, V)>>>;

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Accumulators and keys are plain data; a failure here is a bug in their Serialize.
    serde_json::to_vec(v).unwrap_or_default()
}

fn send_late<K, V>(late: &mut LateSink<K, V>, buf: &mut Vec<Event<(K, V)>>, cx: &mut Context) {
    if buf.is_empty() {
        return;
    }
    cx.count_late(buf.len() as u64);
    let batch = std::mem::take(buf);
    if let Some(s) = late {
        s.push(batch, cx);
    }
}

/// One key's open windows by start, oldest first. The oldest sits inline, so a key with
/// one open window (tumbling, in order) costs no memory access beyond its hash bucket.
struct WindowList<A> {
    head: Option<(i64, A)>,
    tail: VecDeque<(i64, A)>,
}

impl<A> WindowList<A> {
    fn new() -> Self {
        Self {
            head: None,
            tail: VecDeque::new(),
        }
    }

    /// The accumulator of window `start`, created with `init` if missing (then `true`).
    fn slot(&mut self, start: i64, init: impl FnOnce() -> A) -> (&mut A, bool) {
        match &self.head {
            None => {
                let (_, a) = self.head.insert((start, init()));
                return (a, true);
            }
            Some((h, _)) if *h > start => {
                let old = self.head.replace((start, init()));
                self.tail.extend(old);
                self.tail.rotate_right(1);
                let (_, a) = self.head.as_mut().expect("just set");
                return (a, true);
            }
            _ => {}
        }
        let (h, a) = self.head.as_mut().expect("checked above");
        if *h == start {
            return (a, false);
        }
        let at = self.tail.partition_point(|(s, _)| *s < start);
        let created = self.tail.get(at).is_none_or(|(s, _)| *s != start);
        if created {
            self.tail.insert(at, (start, init()));
        }
        (&mut self.tail[at].1, created)
    }

    fn get(&self, start: i64) -> Option<&A> {
        self.iter().find(|(s, _)| *s == start).map(|(_, a)| a)
    }

    /// Removes window `start`, which closes first among the key's windows.
    fn remove(&mut self, start: i64) -> Option<A> {
        if self.head.as_ref().is_some_and(|(s, _)| *s == start) {
            let (_, a) = self.head.take()?;
            self.head = self.tail.pop_front();
            return Some(a);
        }
        let at = self.tail.iter().position(|(s, _)| *s == start)?;
        self.tail.remove(at).map(|(_, a)| a)
    }

    fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    fn iter(&self) -> impl Iterator<Item = &(i64, A)> {
        self.head.iter().chain(self.tail.iter())
    }
}

/// One key's open windows and whether they changed since the last checkpoint.
struct KeyWindows<A> {
    windows: WindowList<A>,
    dirty: bool,
    persisted: bool,
    /// Bytes of its state entry as last written.
    stored: usize,
}

/// Tumbling and hopping windows.
///
/// State is key-major: a record costs one hash lookup for its key and a short scan of that
/// key's open windows; an index from window start to the keys it holds finds what closes.
pub(crate) struct TimeWindowOp<K, V, G: Aggregator<V>> {
    spec: TimeWindows,
    agg: G,
    keys: HashMap<K, KeyWindows<G::Acc>>,
    closing: BTreeMap<i64, Vec<K>>,
    deletes: Vec<Vec<u8>>,
    changed: Vec<(i64, K)>,
    late: LateSink<K, V>,
    late_buf: Vec<Event<(K, V)>>,
    /// Open windows over all keys, and bytes of the state as checkpointed, for the gauges.
    open: usize,
    state_bytes: i64,
    gauges: StateGauges,
}

impl<K, V, G: Aggregator<V>> TimeWindowOp<K, V, G> {
    pub(crate) fn new(
        spec: TimeWindows,
        agg: G,
        late: LateSink<K, V>,
        gauges: StateGauges,
    ) -> Self {
        Self {
            spec,
            agg,
            keys: HashMap::new(),
            closing: BTreeMap::new(),
            deletes: Vec::new(),
            changed: Vec::new(),
            late,
            late_buf: Vec::new(),
            open: 0,
            state_bytes: 0,
            gauges,
        }
    }
}

impl<K: Key, V: Send + 'static, G: Aggregator<V>> TimeWindowOp<K, V, G> {
    fn result(&self, k: K, start: i64, acc: &G::Acc) -> Event<(K, Windowed<K, G::Out>)> {
        let end = start.saturating_add(self.spec.size_ms);
        let value = self.agg.finish(acc);
        Event {
            time: end - 1,
            value: (
                k.clone(),
                Windowed {
                    key: k,
                    start,
                    end,
                    value,
                },
            ),
        }
    }
}

impl<K: Key, V: Send + 'static, G: Aggregator<V>> Operator for TimeWindowOp<K, V, G> {
    type In = (K, V);
    type Out = (K, Windowed<K, G::Out>);

    fn process(
        &mut self,
        input: Vec<Event<(K, V)>>,
        out: &mut Vec<Event<Self::Out>>,
        cx: &mut Context,
    ) {
        let TimeWindows {
            size_ms: size,
            slide_ms: slide,
            grace_ms: grace,
            updates,
        } = self.spec;
        let wm = cx.watermark;
        for e in input {
            let t = e.time;
            let (k, v) = e.value;
            let kw = match self.keys.get_mut(&k) {
                Some(kw) => kw,
                None => self.keys.entry(k.clone()).or_insert(KeyWindows {
                    windows: WindowList::new(),
                    dirty: false,
                    persisted: false,
                    stored: 0,
                }),
            };
            let mut start = t - t.rem_euclid(slide);
            let mut late = false;
            while start.saturating_add(size) > t {
                if start.saturating_add(size).saturating_add(grace) <= wm {
                    late = true;
                } else {
                    let (acc, created) = kw.windows.slot(start, || self.agg.init());
                    self.agg.fold(acc, &v);
                    if created {
                        self.closing.entry(start).or_default().push(k.clone());
                        self.open += 1;
                    }
                    kw.dirty = true;
                    if updates {
                        self.changed.push((start, k.clone()));
                    }
                }
                match start.checked_sub(slide) {
                    Some(s) => start = s,
                    None => break,
                }
            }
            if late {
                self.late_buf.push(Event {
                    time: t,
                    value: (k, v),
                });
            }
        }
        if updates && !self.changed.is_empty() {
            let mut changed = std::mem::take(&mut self.changed);
            changed.sort_unstable();
            changed.dedup();
            for (start, k) in changed.drain(..) {
                let acc = self.keys.get(&k).and_then(|kw| kw.windows.get(start));
                if let Some(acc) = acc {
                    out.push(self.result(k, start, acc));
                }
            }
            self.changed = changed;
        }
        self.gauges.windows(self.open, self.keys.len());
        send_late(&mut self.late, &mut self.late_buf, cx);
    }

    fn on_watermark(&mut self, out: &mut Vec<Event<Self::Out>>, cx: &mut Context) {
        let TimeWindows {
            size_ms: size,
            grace_ms: grace,
            updates,
            ..
        } = self.spec;
        while let Some(first) = self.closing.first_entry() {
            let start = *first.key();
            if start.saturating_add(size).saturating_add(grace) > cx.watermark {
                break;
            }
            let mut keys = first.remove();
            keys.sort_unstable();
            for k in keys {
                let Some(kw) = self.keys.get_mut(&k) else {
                    continue;
                };
                let Some(acc) = kw.windows.remove(start) else {
                    continue;
                };
                self.open -= 1;
                kw.dirty = true;
                let empty = kw.windows.is_empty();
                if empty {
                    if kw.persisted {
                        self.deletes.push(to_json(&k));
                    }
                    self.state_bytes -= kw.stored as i64;
                    self.keys.remove(&k);
                }
                if !updates {
                    out.push(self.result(k, start, &acc));
                }
            }
        }
        self.gauges.windows(self.open, self.keys.len());
    }

    fn on_checkpoint(&mut self, state: &mut StateWriter<'_>) {
        for (k, kw) in self.keys.iter_mut().filter(|(_, kw)| kw.dirty) {
            let windows: Vec<&(i64, G::Acc)> = kw.windows.iter().collect();
            let (key, value) = (to_json(k), to_json(&windows));
            state.put(&key, &value);
            let stored = key.len() + value.len();
            self.state_bytes += stored as i64 - kw.stored as i64;
            kw.stored = stored;
            kw.dirty = false;
            kw.persisted = true;
        }
        for k in self.deletes.drain(..) {
            state.delete(&k);
        }
        self.gauges.bytes(self.state_bytes);
    }

    fn on_restore(&mut self, state: &RestoredState) -> Result<()> {
        for (k, v) in state.entries() {
            let key: K = serde_json::from_slice(k).map_err(|e| state.error(e))?;
            let list: Vec<(i64, G::Acc)> = serde_json::from_slice(v).map_err(|e| state.error(e))?;
            for (start, _) in &list {
                self.closing.entry(*start).or_default().push(key.clone());
            }
            self.open += list.len();
            self.state_bytes += (k.len() + v.len()) as i64;
            // Written oldest first by `on_checkpoint`.
            let mut list = list.into_iter();
            let windows = WindowList {
                head: list.next(),
                tail: list.collect(),
            };
            self.keys.insert(
                key,
                KeyWindows {
                    windows,
                    dirty: false,
                    persisted: true,
                    stored: k.len() + v.len(),
                },
            );
        }
        self.gauges.bytes(self.state_bytes);
        self.gauges.windows(self.open, self.keys.len());
        Ok(())
    }

    fn name(&self) -> &'static str {
        "time-window"
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct SessionState<A> {
    start: i64,
    end: i64,
    acc: A,
}

struct KeySessions<A> {
    sessions: Vec<SessionState<A>>,
    dirty: bool,
    persisted: bool,
    /// Bytes of its state entry as last written.
    stored: usize,
}

/// Session windows.
pub(crate) struct SessionWindowOp<K, V, G: MergeAggregator<V>> {
    spec: SessionWindows,
    agg: G,
    keys: HashMap<K, KeySessions<G::Acc>>,
    /// No session ends before this: the watermark must pass it before a scan can fire one.
    min_end: i64,
    deletes: Vec<Vec<u8>>,
    late: LateSink<K, V>,
    late_buf: Vec<Event<(K, V)>>,
    /// Open sessions over all keys, and bytes of the state as checkpointed, for the gauges.
    open: usize,
    state_bytes: i64,
    gauges: StateGauges,
}

impl<K, V, G: MergeAggregator<V>> SessionWindowOp<K, V, G> {
    pub(crate) fn new(
        spec: SessionWindows,
        agg: G,
        late: LateSink<K, V>,
        gauges: StateGauges,
    ) -> Self {
        Self {
            spec,
            agg,
            keys: HashMap::new(),
            min_end: i64::MAX,
            deletes: Vec::new(),
            late,
            late_buf: Vec::new(),
            open: 0,
            state_bytes: 0,
            gauges,
        }
    }
}

impl<K: Key, V: Send + 'static, G: MergeAggregator<V>> Operator for SessionWindowOp<K, V, G> {
    type In = (K, V);
    type Out = (K, Windowed<K, G::Out>);

    fn process(
        &mut self,
        input: Vec<Event<(K, V)>>,
        _out: &mut Vec<Event<Self::Out>>,
        cx: &mut Context,
    ) {
        let SessionWindows { gap_ms, grace_ms } = self.spec;
        for e in input {
            let t = e.time;
            if t.saturating_add(grace_ms) < cx.watermark {
                self.late_buf.push(e);
                continue;
            }
            let (k, v) = e.value;
            let mut acc = self.agg.init();
            self.agg.fold(&mut acc, &v);
            let mut new = SessionState {
                start: t,
                end: t.saturating_add(gap_ms),
                acc,
            };
            let ks = match self.keys.get_mut(&k) {
                Some(ks) => ks,
                None => self.keys.entry(k).or_insert(KeySessions {
                    sessions: Vec::new(),
                    dirty: false,
                    persisted: false,
                    stored: 0,
                }),
            };
            let mut i = 0;
            while i < ks.sessions.len() {
                let s = &ks.sessions[i];
                if s.start < new.end && new.start < s.end {
                    let s = ks.sessions.remove(i);
                    self.open -= 1;
                    new.start = new.start.min(s.start);
                    new.end = new.end.max(s.end);
                    self.agg.merge(&mut new.acc, s.acc);
                } else {
                    i += 1;
                }
            }
            self.min_end = self.min_end.min(new.end);
            let at = ks.sessions.partition_point(|s| s.start < new.start);
            ks.sessions.insert(at, new);
            self.open += 1;
            ks.dirty = true;
        }
        self.gauges.windows(self.open, self.keys.len());
        send_late(&mut self.late, &mut self.late_buf, cx);
    }

    fn on_watermark(&mut self, out: &mut Vec<Event<Self::Out>>, cx: &mut Context) {
        let grace = self.spec.grace_ms;
        let wm = cx.watermark;
        if self.min_end.saturating_add(grace) > wm {
            return;
        }
        let mut fired: Vec<(i64, K, i64, G::Acc)> = Vec::new();
        let mut min_end = i64::MAX;
        let deletes = &mut self.deletes;
        let state_bytes = &mut self.state_bytes;
        self.keys.retain(|k, ks| {
            let before = ks.sessions.len();
            ks.sessions.retain_mut(|s| {
                if s.end.saturating_add(grace) <= wm {
                    fired.push((s.end, k.clone(), s.start, s.acc.clone()));
                    false
                } else {
                    min_end = min_end.min(s.end);
                    true
                }
            });
            if ks.sessions.len() != before {
                ks.dirty = true;
            }
            if ks.sessions.is_empty() {
                if ks.persisted {
                    deletes.push(to_json(k));
                }
                *state_bytes -= ks.stored as i64;
                return false;
            }
            true
        });
        self.min_end = min_end;
        self.open -= fired.len();
        self.gauges.windows(self.open, self.keys.len());
        fired.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (end, k, start, acc) in fired {
            let value = self.agg.finish(&acc);
            out.push(Event {
                time: end - 1,
                value: (
                    k.clone(),
                    Windowed {
                        key: k,
                        start,
                        end,
                        value,
                    },
                ),
            });
        }
    }

    fn on_checkpoint(&mut self, state: &mut StateWriter<'_>) {
        for (k, ks) in self.keys.iter_mut().filter(|(_, ks)| ks.dirty) {
            let (key, value) = (to_json(k), to_json(&ks.sessions));
            state.put(&key, &value);
            let stored = key.len() + value.len();
            self.state_bytes += stored as i64 - ks.stored as i64;
            ks.stored = stored;
            ks.dirty = false;
            ks.persisted = true;
        }
        for k in self.deletes.drain(..) {
            state.delete(&k);
        }
        self.gauges.bytes(self.state_bytes);
    }

    fn on_restore(&mut self, state: &RestoredState) -> Result<()> {
        for (k, v) in state.entries() {
            let key: K = serde_json::from_slice(k).map_err(|e| state.error(e))?;
            let sessions: Vec<SessionState<G::Acc>> =
                serde_json::from_slice(v).map_err(|e| state.error(e))?;
            for s in &sessions {
                self.min_end = self.min_end.min(s.end);
            }
            self.open += sessions.len();
            self.state_bytes += (k.len() + v.len()) as i64;
            self.keys.insert(
                key,
                KeySessions {
                    sessions,
                    dirty: false,
                    persisted: true,
                    stored: k.len() + v.len(),
                },
            );
        }
        self.gauges.bytes(self.state_bytes);
        self.gauges.windows(self.open, self.keys.len());
        Ok(())
    }

    fn name(&self) -> &'static str {
        "session-window"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::aggregate::Count;
    use crate::metrics::Metrics;
    use crate::operator::StateStore;

    /// One state table, as a checkpoint leaves it.
    #[derive(Default)]
    struct Table(BTreeMap<Vec<u8>, Vec<u8>>);

    impl StateStore for Table {
        fn put(&mut self, _table: &str, key: &[u8], value: &[u8]) {
            self.0.insert(key.to_vec(), value.to_vec());
        }
        fn delete(&mut self, _table: &str, key: &[u8]) {
            self.0.remove(key);
        }
    }

    impl Table {
        /// Checkpoints `op` into the table; returns the table's bytes (keys and values).
        fn checkpoint<O: Operator>(&mut self, op: &mut O) -> i64 {
            op.on_checkpoint(&mut StateWriter {
                table: "t",
                store: self,
            });
            self.0.iter().map(|(k, v)| (k.len() + v.len()) as i64).sum()
        }
    }

    #[test]
    fn session_gauges_follow_open_sessions_keys_and_checkpointed_bytes() {
        let m = Arc::new(Metrics::new("window-gauges-test"));
        let mut op = SessionWindowOp::<u32, u32, Count>::new(
            Session::gap(millis(10)),
            Count,
            None,
            StateGauges::new(m.clone()),
        );
        let mut cx = Context::new(m.clone());
        let mut out = Vec::new();
        let mut table = Table::default();
        // Key 1: two sessions, [0, 10) and [100, 110); key 2: [0, 10) and [5, 15) merge.
        let input = [(0, 1), (100, 1), (0, 2), (5, 2)];
        op.process(
            input.iter().map(|&(t, k)| Event::new(t, (k, 0))).collect(),
            &mut out,
            &mut cx,
        );
        assert_eq!(m.state_gauges(), (3, 2, 0), "nothing checkpointed yet");
        let bytes = table.checkpoint(&mut op);
        assert!(bytes > 0);
        assert_eq!(m.state_gauges(), (3, 2, bytes));
        cx.watermark = 50;
        op.on_watermark(&mut out, &mut cx);
        assert_eq!(out.len(), 2);
        let (open, entries, _) = m.state_gauges();
        assert_eq!((open, entries), (1, 1), "key 1's [100, 110) is open");
        let bytes = table.checkpoint(&mut op);
        assert_eq!(table.0.len(), 1, "key 2 is deleted");
        assert_eq!(m.state_gauges().2, bytes);
        drop(op);
        assert_eq!(
            m.state_gauges(),
            (0, 0, 0),
            "a dropped operator takes its share"
        );
    }

    #[test]
    fn time_window_gauges_follow_open_windows_and_restore() {
        let m = Arc::new(Metrics::new("time-window-gauges-test"));
        let spec = Hopping::of(millis(10), millis(5));
        let gauges = || StateGauges::new(m.clone());
        let mut op = TimeWindowOp::<u32, u32, Count>::new(spec, Count, None, gauges());
        let mut cx = Context::new(m.clone());
        let mut out = Vec::new();
        // t = 7 is in [0, 10) and [5, 15); t = 12 in [5, 15) and [10, 20).
        op.process(
            vec![Event::new(7, (1, 0)), Event::new(12, (2, 0))],
            &mut out,
            &mut cx,
        );
        assert_eq!(m.state_gauges(), (4, 2, 0));
        let mut table = Table::default();
        let bytes = table.checkpoint(&mut op);
        assert_eq!(m.state_gauges(), (4, 2, bytes));
        drop(op);
        assert_eq!(m.state_gauges(), (0, 0, 0));
        let mut restored = TimeWindowOp::<u32, u32, Count>::new(spec, Count, None, gauges());
        restored
            .on_restore(&RestoredState {
                table: "t".into(),
                entries: table.0.clone().into_iter().collect(),
            })
            .unwrap();
        assert_eq!(
            m.state_gauges(),
            (4, 2, bytes),
            "restored state counts again"
        );
        cx.watermark = 10;
        restored.on_watermark(&mut out, &mut cx);
        assert_eq!(m.state_gauges().0, 3, "[0, 10) closed");
        // Key 1 keeps [5, 15): its entry shrinks at the next checkpoint.
        let bytes = table.checkpoint(&mut restored);
        assert_eq!(m.state_gauges(), (3, 2, bytes));
    }
}
