//! weir-stream: typed pipelines over weir's embedded log, with event-time windows, state
//! and exactly-once checkpoints.
//!
//! ```
//! use weir_stream::{TestDriver, Topic, Tumbling, Windowed, secs};
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Click { page: String, kind: String, at: i64 }
//!
//! let mut t = TestDriver::new();
//! t.pipeline("views-per-page")
//!     .source::<Click>(Topic::json("clicks").event_time(|c: &Click| c.at))
//!     .filter(|c| c.kind == "view")
//!     .key_by(|c| c.page.clone())
//!     .window(Tumbling::every(secs(60)).grace(secs(5)))
//!     .count()
//!     .sink(Topic::json("views-per-page"));
//! for (page, at) in [("/", 1_000), ("/a", 2_000), ("/", 30_000), ("/", 70_000)] {
//!     t.pipe_json("clicks", 0, &Click { page: page.into(), kind: "view".into(), at })?;
//! }
//! // The watermark is 70 s: the first minute closed at 60 s + 5 s of grace.
//! let out: Vec<Windowed<String, u64>> = t.read_json("views-per-page");
//! assert_eq!(out, vec![
//!     Windowed { key: "/".into(), start: 0, end: 60_000, value: 2 },
//!     Windowed { key: "/a".into(), start: 0, end: 60_000, value: 1 },
//! ]);
//! # Ok::<(), weir_stream::StreamError>(())
//! ```

pub mod aggregate;
mod app;
pub mod codec;
mod driver;
mod error;
mod graph;
pub mod metrics;
mod operator;
mod parallel;
mod pipeline;
mod repartition;
mod runtime;
mod source;
mod task;
mod topic;
mod window;

pub use app::App;
pub use codec::{Codec, CodecError, Json, Raw};
pub use driver::TestDriver;
pub use error::{Result, StreamError};
pub use graph::OutputRecord;
pub use operator::{Context, Event, Operator, RestoredState, StateWriter};
pub use pipeline::{
    Data, KeyedStream, Pipeline, Stream, WindowResults, WindowedStream, dead_letter_topic,
};
pub use source::{ERROR_HEADER, OFFSET_HEADER, PARTITION_HEADER, TOPIC_HEADER, TRUNCATED_HEADER};
pub use topic::Topic;
pub use window::{
    Hopping, Key, Session, SessionWindows, TimeWindows, Tumbling, Windowed, millis, secs,
};
