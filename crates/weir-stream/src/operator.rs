//! Operators: what a pipeline runs between its sources and its sinks.
//!
//! Every step of a pipeline, built-in or yours, is an [`Operator`]: one required method,
//! [`Operator::process`], that turns a batch of input events into output events, and hooks
//! with defaults for time, checkpoints and shutdown. Records travel in batches so that the
//! per-record cost is the user's closure and little else.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::{Result, StreamError};
use crate::metrics::{Counter, Metrics};

/// A value with its event time in milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<T> {
    /// Event time.
    pub time: i64,
    /// The value.
    pub value: T,
}

impl<T> Event<T> {
    /// An event at `time`.
    pub fn new(time: i64, value: T) -> Self {
        Self { time, value }
    }
}

/// What an operator may know of the running pipeline.
#[derive(Debug)]
pub struct Context {
    pub(crate) watermark: i64,
    pub(crate) now_ms: i64,
    pub(crate) metrics: Arc<Metrics>,
}

impl Context {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            watermark: i64::MIN,
            now_ms: 0,
            metrics,
        }
    }

    /// The pipeline's current watermark: no event at or before it is expected any more
    /// (`i64::MIN` before the first).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Wall-clock time in milliseconds since the epoch (the test driver's clock in tests).
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Counts records that arrived too late to be used.
    pub fn count_late(&self, n: u64) {
        self.metrics.add(Counter::LateRecords, n);
    }
}

/// Where state changes go at a checkpoint: a redb table of the log, one per operator.
pub(crate) trait StateStore {
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]);
    fn delete(&mut self, table: &str, key: &[u8]);
}

impl StateStore for weir_log::Unit {
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) {
        self.state_put(table, key, value);
    }

    fn delete(&mut self, table: &str, key: &[u8]) {
        self.state_delete(table, key);
    }
}

/// An operator's state table during a checkpoint: what it puts and deletes commits in the
/// same unit as the checkpoint's outputs and input offsets.
pub struct StateWriter<'a> {
    pub(crate) table: &'a str,
    pub(crate) store: &'a mut dyn StateStore,
}

impl std::fmt::Debug for StateWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateWriter")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl StateWriter<'_> {
    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.store.put(self.table, key, value);
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &[u8]) {
        self.store.delete(self.table, key);
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        self.table
    }
}

/// An operator's state as of the last checkpoint, handed over on restart.
#[derive(Debug)]
pub struct RestoredState {
    pub(crate) table: String,
    pub(crate) entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RestoredState {
    /// The (key, value) entries, in key order.
    pub fn entries(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.entries
    }

    /// The error to return for an entry that cannot be read.
    pub fn error(&self, reason: impl std::fmt::Display) -> StreamError {
        StreamError::State {
            table: self.table.clone(),
            reason: reason.to_string(),
        }
    }
}

/// One step of a pipeline.
///
/// The runtime calls the hooks from one task, never concurrently, in this order: once
/// [`on_restore`](Operator::on_restore) before anything else, then any interleaving of
/// [`process`](Operator::process), [`on_watermark`](Operator::on_watermark) and
/// [`on_checkpoint`](Operator::on_checkpoint), and [`on_close`](Operator::on_close) once
/// at the end.
pub trait Operator: Send + 'static {
    /// The input values.
    type In: Send + 'static;
    /// The output values.
    type Out: Send + 'static;

    /// Handles a batch of input events, pushing results onto `out`. Required.
    ///
    /// `cx.watermark()` is the watermark as it stood before this batch.
    fn process(
        &mut self,
        input: Vec<Event<Self::In>>,
        out: &mut Vec<Event<Self::Out>>,
        cx: &mut Context,
    );

    /// The watermark advanced to `cx.watermark()`: emit what it completes (window results,
    /// expired timers). Called only when the watermark grows. Default: nothing.
    fn on_watermark(&mut self, out: &mut Vec<Event<Self::Out>>, cx: &mut Context) {
        let _ = (out, cx);
    }

    /// A checkpoint is being taken: write the state changed since the last one. What is
    /// written commits atomically with the checkpoint's outputs and input offsets, so after
    /// a crash the restored state matches exactly the inputs that will not be read again.
    /// Default: the operator is stateless.
    fn on_checkpoint(&mut self, state: &mut StateWriter<'_>) {
        let _ = state;
    }

    /// The pipeline starts from a checkpoint: load the state written by `on_checkpoint`.
    /// Default: nothing to load.
    fn on_restore(&mut self, state: &RestoredState) -> Result<()> {
        let _ = state;
        Ok(())
    }

    /// The pipeline is stopping; what is pushed onto `out` goes into the final checkpoint.
    /// Unfinished windows are not flushed here: their state is checkpointed and they finish
    /// after a restart. Default: nothing.
    fn on_close(&mut self, out: &mut Vec<Event<Self::Out>>, cx: &mut Context) {
        let _ = (out, cx);
    }

    /// A short name for state tables and logs (letters, digits, `-`).
    fn name(&self) -> &'static str {
        "operator"
    }
}

/// `map`: one output per input.
pub(crate) struct Map<F, I, O> {
    pub f: F,
    pub _t: PhantomData<fn(I) -> O>,
}

impl<F, I, O> Operator for Map<F, I, O>
where
    F: FnMut(I) -> O + Send + 'static,
    I: Send + 'static,
    O: Send + 'static,
{
    type In = I;
    type Out = O;

    fn process(&mut self, input: Vec<Event<I>>, out: &mut Vec<Event<O>>, _cx: &mut Context) {
        let f = &mut self.f;
        out.extend(input.into_iter().map(|e| Event {
            time: e.time,
            value: f(e.value),
        }));
    }

    fn name(&self) -> &'static str {
        "map"
    }
}

/// `filter`: the inputs the predicate keeps.
pub(crate) struct Filter<F, T> {
    pub f: F,
    pub _t: PhantomData<fn(T)>,
}

impl<F, T> Operator for Filter<F, T>
where
    F: FnMut(&T) -> bool + Send + 'static,
    T: Send + 'static,
{
    type In = T;
    type Out = T;

    fn process(&mut self, input: Vec<Event<T>>, out: &mut Vec<Event<T>>, _cx: &mut Context) {
        let f = &mut self.f;
        out.extend(input.into_iter().filter(|e| f(&e.value)));
    }

    fn name(&self) -> &'static str {
        "filter"
    }
}

/// `filter_map`: zero or one output per input.
pub(crate) struct FilterMap<F, I, O> {
    pub f: F,
    pub _t: PhantomData<fn(I) -> O>,
}

impl<F, I, O> Operator for FilterMap<F, I, O>
where
    F: FnMut(I) -> Option<O> + Send + 'static,
    I: Send + 'static,
    O: Send + 'static,
{
    type In = I;
    type Out = O;

    fn process(&mut self, input: Vec<Event<I>>, out: &mut Vec<Event<O>>, _cx: &mut Context) {
        let f = &mut self.f;
        out.extend(input.into_iter().filter_map(|e| {
            f(e.value).map(|value| Event {
                time: e.time,
                value,
            })
        }));
    }

    fn name(&self) -> &'static str {
        "filter-map"
    }
}

/// `flat_map`: any number of outputs per input, all at the input's event time.
pub(crate) struct FlatMap<F, I, O, It> {
    pub f: F,
    pub _t: PhantomData<fn(I) -> (O, It)>,
}

impl<F, I, O, It> Operator for FlatMap<F, I, O, It>
where
    F: FnMut(I) -> It + Send + 'static,
    It: IntoIterator<Item = O> + 'static,
    I: Send + 'static,
    O: Send + 'static,
{
    type In = I;
    type Out = O;

    fn process(&mut self, input: Vec<Event<I>>, out: &mut Vec<Event<O>>, _cx: &mut Context) {
        for e in input {
            let time = e.time;
            out.extend(
                (self.f)(e.value)
                    .into_iter()
                    .map(|value| Event { time, value }),
            );
        }
    }

    fn name(&self) -> &'static str {
        "flat-map"
    }
}

/// `inspect`: sees every input, passes it on unchanged.
pub(crate) struct Inspect<F, T> {
    pub f: F,
    pub _t: PhantomData<fn(T)>,
}

impl<F, T> Operator for Inspect<F, T>
where
    F: FnMut(&Event<T>) + Send + 'static,
    T: Send + 'static,
{
    type In = T;
    type Out = T;

    fn process(&mut self, input: Vec<Event<T>>, out: &mut Vec<Event<T>>, _cx: &mut Context) {
        for e in &input {
            (self.f)(e);
        }
        if out.is_empty() {
            *out = input;
        } else {
            out.extend(input);
        }
    }

    fn name(&self) -> &'static str {
        "inspect"
    }
}
