//! Topics as a pipeline sees them: a name, a codec, and how to read event time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Codec, Json, Raw};

/// Extracts a value's event time in milliseconds since the epoch.
pub(crate) type TimeFn<T> = Arc<dyn Fn(&T) -> i64 + Send + Sync>;

/// A topic of `T` values: its name, codec and, when read, where event time comes from.
pub struct Topic<T> {
    pub(crate) name: String,
    pub(crate) codec: Arc<dyn Codec<T>>,
    pub(crate) event_time: Option<TimeFn<T>>,
    pub(crate) out_of_orderness_ms: i64,
    pub(crate) partitions: i32,
}

impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            codec: self.codec.clone(),
            event_time: self.event_time.clone(),
            out_of_orderness_ms: self.out_of_orderness_ms,
            partitions: self.partitions,
        }
    }
}

impl<T> std::fmt::Debug for Topic<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name)
            .field("out_of_orderness_ms", &self.out_of_orderness_ms)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Topic<T> {
    /// A topic of JSON values.
    pub fn json(name: impl Into<String>) -> Self {
        Self::with_codec(name, Json)
    }
}

impl Topic<Bytes> {
    /// A topic of raw bytes.
    pub fn raw(name: impl Into<String>) -> Self {
        Self::with_codec(name, Raw)
    }
}

impl<T: 'static> Topic<T> {
    /// A topic with your own codec.
    pub fn with_codec(name: impl Into<String>, codec: impl Codec<T>) -> Self {
        Self {
            name: name.into(),
            codec: Arc::new(codec),
            event_time: None,
            out_of_orderness_ms: 0,
            partitions: 1,
        }
    }

    /// Reads event time from the value instead of the record timestamp (the default).
    pub fn event_time(mut self, f: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
        self.event_time = Some(Arc::new(f));
        self
    }

    /// How far out of order records of one partition may arrive: each partition's watermark
    /// trails its largest event time by this much. Zero by default.
    pub fn out_of_orderness(mut self, bound: Duration) -> Self {
        self.out_of_orderness_ms = duration_ms(bound);
        self
    }

    /// Partitions to create the topic with if it does not exist yet (1 by default).
    pub fn partitions(mut self, n: i32) -> Self {
        self.partitions = n.max(1);
        self
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
