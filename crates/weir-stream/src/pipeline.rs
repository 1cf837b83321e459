//! The DSL: pipelines, typed streams, keyed streams and windowed streams.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aggregate::{
    Aggregator, Avg, Count, Fold, FoldMerge, Max, MergeAggregator, Min, Number, Sum,
};
use crate::graph::{
    EncodeFn, Forward, OpNode, Push, SharedOutlet, SharedSink, SinkBuffer, SinkNode, lock,
    new_outlet,
};
use crate::metrics::Metrics;
use crate::operator::{Filter, FilterMap, FlatMap, Inspect, Map, Operator};
use crate::source::{RawInput, SourceNode};
use crate::topic::{Topic, duration_ms};
use crate::window::{
    Key, LateSink, SessionWindowOp, SessionWindows, TimeWindowOp, TimeWindows, Windowed,
};

/// What a stream may carry: values are cloned only when a stream feeds several consumers.
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// How a pipeline checkpoints and treats idle inputs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub checkpoint_interval_ms: i64,
    pub checkpoint_records: u64,
    pub idle_timeout_ms: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            checkpoint_interval_ms: 500,
            checkpoint_records: 200_000,
            idle_timeout_ms: 10_000,
        }
    }
}

/// A pipeline's definition as it is built.
pub(crate) struct Graph {
    pub name: String,
    pub sources: Vec<Box<dyn RawInput>>,
    pub sinks: Vec<SharedSink>,
    pub dead_letters: SharedSink,
    pub next_id: usize,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// Mistakes found while building; the pipeline refuses to run with any.
    pub errors: Vec<String>,
    /// Which of a parallel pipeline's tasks this graph is; `None` runs one task over all
    /// input partitions.
    pub task: Option<TaskSlot>,
    /// Repartition sinks: each task's source watermark goes into them at checkpoints.
    pub repartitions: Vec<SharedSink>,
}

/// One task of a parallel pipeline: it reads partition `index` of every input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskSlot {
    pub index: i32,
    pub parallelism: i32,
}

pub(crate) type SharedGraph = Arc<Mutex<Graph>>;

impl Graph {
    /// Takes the definition out to run it, leaving an empty one behind (the handles that
    /// built it may still be alive).
    pub(crate) fn take(&mut self) -> Graph {
        let empty = Graph {
            name: self.name.clone(),
            sources: Vec::new(),
            sinks: Vec::new(),
            dead_letters: self.dead_letters.clone(),
            next_id: self.next_id,
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            errors: vec!["it is already running".into()],
            task: self.task,
            repartitions: Vec::new(),
        };
        std::mem::replace(self, empty)
    }

    /// The prefix of this graph's state tables: a parallel pipeline's tasks keep apart.
    pub(crate) fn state_prefix(&self) -> String {
        match self.task {
            Some(t) => format!("{}/{}", self.name, t.index),
            None => self.name.clone(),
        }
    }

    /// The number of tasks the pipeline runs as, if more than one.
    pub(crate) fn parallelism(&self) -> Option<TaskSlot> {
        self.task.filter(|t| t.parallelism > 1)
    }
}

/// The default dead-letter topic of a pipeline.
pub fn dead_letter_topic(pipeline: &str) -> String {
    format!("{pipeline}.dead-letters")
}

/// A pipeline being defined: its sources, and settings for checkpoints and time.
#[derive(Clone)]
pub struct Pipeline {
    graph: SharedGraph,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &lock(&self.graph).name)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    pub(crate) fn new(name: &str) -> (Self, SharedGraph) {
        let mut errors = Vec::new();
        if name.is_empty() || name.len() > 100 || name.contains('/') {
            errors.push(format!(
                "the name {name:?} is not a valid pipeline name: use 1 to 100 characters, no '/'"
            ));
        }
        let graph = Arc::new(Mutex::new(Graph {
            name: name.to_string(),
            sources: Vec::new(),
            sinks: Vec::new(),
            dead_letters: SinkBuffer::new(dead_letter_topic(name), 1),
            next_id: 0,
            settings: Settings::default(),
            metrics: Arc::new(Metrics::new(name)),
            errors,
            task: None,
            repartitions: Vec::new(),
        }));
        (
            Self {
                graph: graph.clone(),
            },
            graph,
        )
    }

    fn set(self, f: impl FnOnce(&mut Graph)) -> Self {
        f(&mut lock(&self.graph));
        self
    }

    /// Takes a checkpoint at least this often while records flow (500 ms by default).
    pub fn checkpoint_interval(self, every: Duration) -> Self {
        self.set(|g| g.settings.checkpoint_interval_ms = duration_ms(every).max(1))
    }

    /// Takes a checkpoint after this many input records at the latest (200,000 by default).
    pub fn checkpoint_records(self, n: u64) -> Self {
        self.set(|g| g.settings.checkpoint_records = n.max(1))
    }

    /// An input partition without new records for this long stops holding the watermark
    /// back (10 s by default).
    pub fn idle_timeout(self, after: Duration) -> Self {
        self.set(|g| g.settings.idle_timeout_ms = duration_ms(after))
    }

    /// Sends records that fail to decode to `topic` instead of `<pipeline>.dead-letters`.
    pub fn dead_letters(self, topic: &str) -> Self {
        self.set(|g| lock(&g.dead_letters).topic = topic.to_string())
    }

    /// Marks the definition as unable to run, for `reason`.
    pub(crate) fn invalid(&self, reason: String) {
        lock(&self.graph).errors.push(reason);
    }

    /// The pipeline's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        lock(&self.graph).metrics.clone()
    }

    /// Reads a topic. Records that fail to decode go to the dead-letter topic.
    pub fn source<T: Data>(&self, topic: Topic<T>) -> Stream<T> {
        let outlet = new_outlet();
        let mut g = lock(&self.graph);
        if g.sources.iter().any(|s| s.topic() == topic.name) {
            let reason = format!(
                "topic {:?} is read twice; read it once and branch the stream",
                topic.name
            );
            g.errors.push(reason);
        }
        let node = SourceNode {
            topic,
            out: outlet.clone(),
            dead_letters: g.dead_letters.clone(),
        };
        g.sources.push(Box::new(node));
        Stream {
            graph: self.graph.clone(),
            outlet,
        }
    }
}

/// A stream of `T` values with event times.
pub struct Stream<T> {
    graph: SharedGraph,
    outlet: SharedOutlet<T>,
}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").finish_non_exhaustive()
    }
}

impl<T: Data> Stream<T> {
    fn attach(&self, node: Box<dyn Push<T>>) {
        lock(&self.outlet).add(node);
    }

    /// Adds your own operator.
    pub fn operator<O>(self, op: O) -> Stream<O::Out>
    where
        O: Operator<In = T>,
        O::Out: Data,
    {
        let out = new_outlet();
        let table = {
            let mut g = lock(&self.graph);
            g.next_id += 1;
            format!("{}/{}-{}", g.state_prefix(), g.next_id, op.name())
        };
        self.attach(Box::new(OpNode::new(op, out.clone(), table)));
        Stream {
            graph: self.graph,
            outlet: out,
        }
    }

    /// One output per value.
    pub fn map<U: Data>(self, f: impl FnMut(T) -> U + Send + 'static) -> Stream<U> {
        self.operator(Map { f, _t: PhantomData })
    }

    /// The values `f` keeps.
    pub fn filter(self, f: impl FnMut(&T) -> bool + Send + 'static) -> Stream<T> {
        self.operator(Filter { f, _t: PhantomData })
    }

    /// Maps and drops `None`s in one step.
    pub fn filter_map<U: Data>(self, f: impl FnMut(T) -> Option<U> + Send + 'static) -> Stream<U> {
        self.operator(FilterMap { f, _t: PhantomData })
    }

    /// Any number of outputs per value, all at the value's event time.
    pub fn flat_map<U: Data, I: IntoIterator<Item = U> + 'static>(
        self,
        f: impl FnMut(T) -> I + Send + 'static,
    ) -> Stream<U> {
        self.operator(FlatMap { f, _t: PhantomData })
    }

    /// Sees each value (with its event time) and passes it on.
    pub fn inspect(self, f: impl FnMut(&crate::Event<T>) + Send + 'static) -> Stream<T> {
        self.operator(Inspect { f, _t: PhantomData })
    }

    /// Keys the stream for windows and keyed sinks.
    pub fn key_by<K: Key>(self, mut f: impl FnMut(&T) -> K + Send + 'static) -> KeyedStream<K, T> {
        KeyedStream {
            inner: self.map(move |v| (f(&v), v)),
            partitioned: false,
        }
    }

    /// Both streams' values in one stream (of the same pipeline).
    pub fn merge(self, other: Stream<T>) -> Stream<T> {
        if !Arc::ptr_eq(&self.graph, &other.graph) {
            lock(&self.graph)
                .errors
                .push("merge of streams from two pipelines; merge within one pipeline".into());
            return self;
        }
        let out = new_outlet();
        self.attach(Box::new(Forward(out.clone())));
        other.attach(Box::new(Forward(out.clone())));
        Stream {
            graph: self.graph,
            outlet: out,
        }
    }

    /// Splits the stream: the values `f` holds for, and the rest.
    pub fn branch(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> (Stream<T>, Stream<T>) {
        let f = Arc::new(f);
        let g = f.clone();
        let other = Stream {
            graph: self.graph.clone(),
            outlet: self.outlet.clone(),
        };
        (self.filter(move |v| f(v)), other.filter(move |v| !g(v)))
    }

    /// Writes the values to a topic (keyless; spread over its partitions a batch at a time).
    pub fn sink(self, topic: Topic<T>) {
        let codec = topic.codec.clone();
        let encode: EncodeFn<T> = Box::new(move |v, _k, out| codec.encode(v, out).map(|()| false));
        add_sink(
            &self.graph,
            &self.outlet,
            &topic.name,
            topic.partitions,
            encode,
        );
    }
}

fn add_sink<T: Data>(
    graph: &SharedGraph,
    outlet: &SharedOutlet<T>,
    topic: &str,
    partitions: i32,
    encode: EncodeFn<T>,
) -> SharedSink {
    let buffer = {
        let mut g = lock(graph);
        match g.sinks.iter().find(|s| lock(s).topic == topic) {
            Some(s) => s.clone(),
            None => {
                let s = SinkBuffer::new(topic.to_string(), partitions);
                g.sinks.push(s.clone());
                s
            }
        }
    };
    lock(outlet).add(Box::new(SinkNode {
        encode,
        buffer: buffer.clone(),
        key: Vec::new(),
        value: Vec::new(),
    }));
    buffer
}

fn keyed_encode<K: Key, V: 'static>(topic: &Topic<V>) -> EncodeFn<(K, V)> {
    let codec = topic.codec.clone();
    Box::new(move |(k, v), key, out| {
        serde_json::to_writer(&mut *key, k)
            .map_err(|e| crate::codec::CodecError(format!("key to JSON: {e}")))?;
        codec.encode(v, out).map(|()| true)
    })
}

/// A stream of values with keys: the input of windows, written with the key as record key
/// (JSON-encoded) so that equal keys land in the same partition.
pub struct KeyedStream<K, V> {
    inner: Stream<(K, V)>,
    /// Whether each key's values meet in one task (always so in a single-task pipeline).
    partitioned: bool,
}

impl<K, V> std::fmt::Debug for KeyedStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStream").finish_non_exhaustive()
    }
}

impl<K: Key, V: Data> KeyedStream<K, V> {
    /// Maps the values, keeping the keys.
    pub fn map_values<U: Data>(
        self,
        mut f: impl FnMut(V) -> U + Send + 'static,
    ) -> KeyedStream<K, U> {
        KeyedStream {
            inner: self.inner.map(move |(k, v)| (k, f(v))),
            partitioned: self.partitioned,
        }
    }

    /// The (key, value) pairs `f` keeps.
    pub fn filter(self, mut f: impl FnMut(&K, &V) -> bool + Send + 'static) -> Self {
        KeyedStream {
            inner: self.inner.filter(move |(k, v)| f(k, v)),
            partitioned: self.partitioned,
        }
    }

    /// Changes the key.
    pub fn key_by<K2: Key>(
        self,
        mut f: impl FnMut(&V) -> K2 + Send + 'static,
    ) -> KeyedStream<K2, V> {
        KeyedStream {
            inner: self.inner.map(move |(_, v)| (f(&v), v)),
            partitioned: false,
        }
    }

    /// Routes each (key, value) pair to the task that owns its key, through the internal
    /// topic `<pipeline>.repartition-<n>`, so that a window after it sees all of a key's
    /// values. Needed between `key_by` and `window` in a pipeline defined with
    /// [`crate::App::parallel`]; elsewhere (one task) it changes nothing.
    pub fn repartition(self) -> KeyedStream<K, V>
    where
        V: Serialize + DeserializeOwned,
    {
        let graph = self.inner.graph.clone();
        let Some(slot) = lock(&graph).parallelism() else {
            return KeyedStream {
                partitioned: true,
                ..self
            };
        };
        let out = crate::repartition::attach::<K, V>(&graph, &self.inner.outlet, slot);
        KeyedStream {
            inner: Stream { graph, outlet: out },
            partitioned: true,
        }
    }

    /// The (key, value) pairs as a plain stream.
    pub fn into_stream(self) -> Stream<(K, V)> {
        self.inner
    }

    /// Groups each key's values into event-time windows: [`crate::Tumbling`],
    /// [`crate::Hopping`] or [`crate::Session`].
    pub fn window<W>(self, windows: W) -> WindowedStream<K, V, W> {
        if !self.partitioned {
            let mut g = lock(&self.inner.graph);
            if let Some(t) = g.parallelism() {
                let reason = format!(
                    "it runs as {} tasks and a window follows key_by without .repartition(): \
                     call .repartition() after key_by so that each key's values meet in one task",
                    t.parallelism
                );
                g.errors.push(reason);
            }
        }
        WindowedStream {
            inner: self.inner,
            windows,
            late: None,
        }
    }

    /// Writes the pairs to a topic: the key as the record key (JSON), the value by the
    /// topic's codec.
    pub fn sink(self, topic: Topic<V>) {
        let encode = keyed_encode::<K, V>(&topic);
        add_sink(
            &self.inner.graph,
            &self.inner.outlet,
            &topic.name,
            topic.partitions,
            encode,
        );
    }
}

/// A keyed stream grouped into windows, waiting for its aggregation.
pub struct WindowedStream<K, V, W> {
    inner: Stream<(K, V)>,
    windows: W,
    late: Option<Topic<V>>,
}

impl<K, V, W: std::fmt::Debug> std::fmt::Debug for WindowedStream<K, V, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowedStream")
            .field("windows", &self.windows)
            .finish_non_exhaustive()
    }
}

/// The output of a windowed aggregation: each closed window's result, keyed.
pub type WindowResults<K, A> = KeyedStream<K, Windowed<K, A>>;

impl<K: Key, V: Data, W> WindowedStream<K, V, W> {
    /// Sends records later than their window's end + grace to `topic` (keyed). They are
    /// counted either way.
    pub fn late(mut self, topic: Topic<V>) -> Self {
        self.late = Some(topic);
        self
    }

    fn late_sink(&self) -> LateSink<K, V> {
        let topic = self.late.as_ref()?;
        let buffer = {
            let mut g = lock(&self.inner.graph);
            let s = SinkBuffer::new(topic.name.clone(), topic.partitions);
            g.sinks.push(s.clone());
            s
        };
        Some(Box::new(SinkNode {
            encode: keyed_encode::<K, V>(topic),
            buffer,
            key: Vec::new(),
            value: Vec::new(),
        }))
    }

    fn finish<O>(self, op: O) -> WindowResults<K, O::OutValue>
    where
        O: WindowOperator<K, V>,
    {
        KeyedStream {
            inner: self.inner.operator(op),
            partitioned: true,
        }
    }
}

/// A window operator: its output values are `Windowed<K, OutValue>`.
trait WindowOperator<K, V>: Operator<In = (K, V), Out = (K, Windowed<K, Self::OutValue>)> {
    type OutValue: Data;
}

impl<K: Key, V: Data, G: Aggregator<V>> WindowOperator<K, V> for TimeWindowOp<K, V, G>
where
    G::Out: Data,
{
    type OutValue = G::Out;
}

impl<K: Key, V: Data, G: MergeAggregator<V>> WindowOperator<K, V> for SessionWindowOp<K, V, G>
where
    G::Out: Data,
{
    type OutValue = G::Out;
}

macro_rules! aggregations {
    ($spec:ty, $op:ident, $bound:ident) => {
        impl<K: Key, V: Data> WindowedStream<K, V, $spec> {
            /// Aggregates each window with an [`Aggregator`] of your own.
            pub fn aggregate_with<G: $bound<V>>(self, agg: G) -> WindowResults<K, G::Out>
            where
                G::Out: Data,
            {
                let late = self.late_sink();
                let op = $op::new(self.windows, agg, late);
                self.finish(op)
            }

            /// Counts each window's values.
            pub fn count(self) -> WindowResults<K, u64> {
                self.aggregate_with(Count)
            }

            /// Sums a number taken from each value.
            pub fn sum<N: Number>(
                self,
                f: impl Fn(&V) -> N + Send + 'static,
            ) -> WindowResults<K, N> {
                self.aggregate_with(Sum(f, PhantomData))
            }

            /// The smallest of a number taken from each value.
            pub fn min<N: Number>(
                self,
                f: impl Fn(&V) -> N + Send + 'static,
            ) -> WindowResults<K, N> {
                self.aggregate_with(Min(f, PhantomData))
            }

            /// The largest of a number taken from each value.
            pub fn max<N: Number>(
                self,
                f: impl Fn(&V) -> N + Send + 'static,
            ) -> WindowResults<K, N> {
                self.aggregate_with(Max(f, PhantomData))
            }

            /// The mean of a number taken from each value.
            pub fn avg<N: Number>(
                self,
                f: impl Fn(&V) -> N + Send + 'static,
            ) -> WindowResults<K, f64> {
                self.aggregate_with(Avg(f, PhantomData))
            }

            /// Your own accumulator with a merge (two sessions that grow into one merge).
            pub fn aggregate_merge<A>(
                self,
                init: A,
                fold: impl Fn(&mut A, &V) + Send + 'static,
                merge: impl Fn(&mut A, A) + Send + 'static,
            ) -> WindowResults<K, A>
            where
                A: Data + Serialize + DeserializeOwned,
            {
                self.aggregate_with(FoldMerge {
                    fold: Fold { init, fold },
                    merge,
                })
            }
        }
    };
}

aggregations!(TimeWindows, TimeWindowOp, Aggregator);
aggregations!(SessionWindows, SessionWindowOp, MergeAggregator);

impl<K: Key, V: Data> WindowedStream<K, V, TimeWindows> {
    /// Your own accumulator: starts at `init`, `fold` adds each value.
    pub fn aggregate<A>(
        self,
        init: A,
        fold: impl Fn(&mut A, &V) + Send + 'static,
    ) -> WindowResults<K, A>
    where
        A: Data + Serialize + DeserializeOwned,
    {
        self.aggregate_with(Fold { init, fold })
    }
}
