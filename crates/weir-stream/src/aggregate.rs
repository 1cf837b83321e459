//! Aggregations over the values of a window.

use std::marker::PhantomData;
use std::ops::Add;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Folds the values of one window and key into an accumulator.
pub trait Aggregator<V>: Send + 'static {
    /// What is kept per window and key; checkpointed as JSON.
    type Acc: Clone + Send + Serialize + DeserializeOwned + 'static;
    /// What is emitted when the window closes.
    type Out: Clone + Send + 'static;
    /// The accumulator of an empty window.
    fn init(&self) -> Self::Acc;
    /// Adds one value.
    fn fold(&self, acc: &mut Self::Acc, value: &V);
    /// The result of a window.
    fn finish(&self, acc: &Self::Acc) -> Self::Out;
}

/// An aggregator whose accumulators combine, as session windows need when two sessions
/// grow into one.
pub trait MergeAggregator<V>: Aggregator<V> {
    /// Adds `other`'s values to `into`.
    fn merge(&self, into: &mut Self::Acc, other: Self::Acc);
}

/// A number that windows can sum, average and compare.
pub trait Number:
    Copy
    + PartialOrd
    + Default
    + Add<Output = Self>
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// As a float, for averages.
    fn to_f64(self) -> f64;
}

macro_rules! number {
    ($($t:ty),*) => {$(
        impl Number for $t {
            #[allow(clippy::cast_lossless, clippy::cast_precision_loss)]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
number!(i32, i64, u32, u64, f32, f64, usize, isize);

/// Counts values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

impl<V> Aggregator<V> for Count {
    type Acc = u64;
    type Out = u64;
    fn init(&self) -> u64 {
        0
    }
    fn fold(&self, acc: &mut u64, _value: &V) {
        *acc += 1;
    }
    fn finish(&self, acc: &u64) -> u64 {
        *acc
    }
}

impl<V> MergeAggregator<V> for Count {
    fn merge(&self, into: &mut u64, other: u64) {
        *into += other;
    }
}

/// Sums a number taken from each value.
pub struct Sum<F, N>(pub(crate) F, pub(crate) PhantomData<fn() -> N>);
/// The smallest of a number taken from each value.
pub struct Min<F, N>(pub(crate) F, pub(crate) PhantomData<fn() -> N>);
/// The largest of a number taken from each value.
pub struct Max<F, N>(pub(crate) F, pub(crate) PhantomData<fn() -> N>);
/// The mean of a number taken from each value.
pub struct Avg<F, N>(pub(crate) F, pub(crate) PhantomData<fn() -> N>);

impl<V, N: Number, F: Fn(&V) -> N + Send + 'static> Aggregator<V> for Sum<F, N> {
    type Acc = N;
    type Out = N;
    fn init(&self) -> N {
        N::default()
    }
    fn fold(&self, acc: &mut N, value: &V) {
        *acc = *acc + (self.0)(value);
    }
    fn finish(&self, acc: &N) -> N {
        *acc
    }
}

impl<V, N: Number, F: Fn(&V) -> N + Send + 'static> MergeAggregator<V> for Sum<F, N> {
    fn merge(&self, into: &mut N, other: N) {
        *into = *into + other;
    }
}

fn keep<N: Number>(acc: &mut Option<N>, x: N, better: fn(&N, &N) -> bool) {
    match acc {
        Some(a) if !better(&x, a) => {}
        _ => *acc = Some(x),
    }
}

impl<V, N: Number, F: Fn(&V) -> N + Send + 'static> Aggregator<V> for Min<F, N> {
    type Acc = Option<N>;
    type Out = N;
    fn init(&self) -> Option<N> {
        None
    }
    fn fold(&self, acc: &mut Option<N>, value: &V) {
        keep(acc, (self.0)(value), |x, a| x < a);
    }
    fn finish(&self, acc: &Option<N>) -> N {
        acc.unwrap_or_default()
    }
}

impl<V, N: Number, F: Fn(&V) -> N + Send + 'static> MergeAggregator<V> for Min<F, N> {
    fn merge(&self, into: &mut Option<N>, other: Option<N>) {
        if let Some(x) = other {
            keep(into, x, |x, a| x < a);
        }
    }
}

impl<V, N: Number, F: Fn(&V) -> N + Send + 'static> Aggregator<V> for Max<F, N> {
    type Acc = Option<N>;
    type Out = N;
    fn init(&self) -> Option<N> {
        None
    }
    fn fold(&self, acc: &mut Option<N>, value: &V) {
        keep(acc, (self.0)(value), |x, a| x > a);
    }
    fn finish(&self, acc: &Option<N>) -> N {
        acc.unwrap_or_default()
    }
}

impl<V, N: Number, F: Fn(&V) -> N + Send + 'static> MergeAggregator<V> for Max<F, N> {
    fn merge(&self, into: &mut Option<N>, other: Option<N>) {
        if let Some(x) = other {
            keep(into, x, |x, a| x > a);
        }
    }
}

impl<V, N: Number, F: Fn(&V) -> N + Send + 'static> Aggregator<V> for Avg<F, N> {
    type Acc = (f64, u64);
    type Out = f64;
    fn init(&self) -> (f64, u64) {
        (0.0, 0)
    }
    fn fold(&self, acc: &mut (f64, u64), value: &V) {
        acc.0 += (self.0)(value).to_f64();
        acc.1 += 1;
    }
    #[allow(clippy::cast_precision_loss)]
    fn finish(&self, acc: &(f64, u64)) -> f64 {
        if acc.1 == 0 {
            0.0
        } else {
            acc.0 / acc.1 as f64
        }
    }
}

impl<V, N: Number, F: Fn(&V) -> N + Send + 'static> MergeAggregator<V> for Avg<F, N> {
    fn merge(&self, into: &mut (f64, u64), other: (f64, u64)) {
        into.0 += other.0;
        into.1 += other.1;
    }
}

macro_rules! opaque_debug {
    ($($t:ident<$($g:ident),*>),*) => {$(
        impl<$($g),*> std::fmt::Debug for $t<$($g),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($t))
            }
        }
    )*};
}
opaque_debug!(Sum<F, N>, Min<F, N>, Max<F, N>, Avg<F, N>, Fold<A, F>, FoldMerge<A, F, M>);

/// `aggregate(init, fold)`: your own accumulator.
pub struct Fold<A, F> {
    pub(crate) init: A,
    pub(crate) fold: F,
}

impl<V, A, F> Aggregator<V> for Fold<A, F>
where
    A: Clone + Send + Serialize + DeserializeOwned + 'static,
    F: Fn(&mut A, &V) + Send + 'static,
{
    type Acc = A;
    type Out = A;
    fn init(&self) -> A {
        self.init.clone()
    }
    fn fold(&self, acc: &mut A, value: &V) {
        (self.fold)(acc, value);
    }
    fn finish(&self, acc: &A) -> A {
        acc.clone()
    }
}

/// `aggregate(init, fold, merge)`: your own accumulator that also merges (for sessions).
pub struct FoldMerge<A, F, M> {
    pub(crate) fold: Fold<A, F>,
    pub(crate) merge: M,
}

impl<V, A, F, M> Aggregator<V> for FoldMerge<A, F, M>
where
    A: Clone + Send + Serialize + DeserializeOwned + 'static,
    F: Fn(&mut A, &V) + Send + 'static,
    M: Fn(&mut A, A) + Send + 'static,
{
    type Acc = A;
    type Out = A;
    fn init(&self) -> A {
        self.fold.init.clone()
    }
    fn fold(&self, acc: &mut A, value: &V) {
        (self.fold.fold)(acc, value);
    }
    fn finish(&self, acc: &A) -> A {
        acc.clone()
    }
}

impl<V, A, F, M> MergeAggregator<V> for FoldMerge<A, F, M>
where
    A: Clone + Send + Serialize + DeserializeOwned + 'static,
    F: Fn(&mut A, &V) + Send + 'static,
    M: Fn(&mut A, A) + Send + 'static,
{
    fn merge(&self, into: &mut A, other: A) {
        (self.merge)(into, other);
    }
}
