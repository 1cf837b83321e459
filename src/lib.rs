//! weir: stream processing on its own Kafka-compatible log.
//!
//! This facade re-exports weir's crates; see the README for the map. A pipeline in 20 lines
//! (the README's copy of it is checked against this one by `tests/examples.rs`):
//!
//! ```
//! use weir::stream::{Tumbling, Windowed, secs};
//! use weir::{App, Topic, log::Record};
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Click { user: u32, page: String, at: i64 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let app = App::open(dir.path())?; // the embedded log: nothing to install or start
//! app.log().create_topic("clicks", 1, Default::default()).await?;
//! for (user, page, at) in [(1, "/", 1_000), (2, "/cart", 2_000), (1, "/", 61_000), (3, "/", 125_000)] {
//!     let click = serde_json::to_vec(&Click { user, page: page.into(), at })?;
//!     app.log().append_records("clicks", 0, &[Record::value(at, click)]).await?;
//! }
//! app.pipeline("views-per-page")
//!     .source::<Click>(Topic::json("clicks").event_time(|c: &Click| c.at))
//!     .key_by(|c| c.page.clone())
//!     .window(Tumbling::every(secs(60)))
//!     .count()
//!     .sink(Topic::json("views-per-page"));
//! app.run_to_end().await?; // a batch job: stops at the end of its input, checkpointed
//! let out = app.log().read("views-per-page", 0, 0, 1 << 20)?.decode_from(0)?;
//! let views: Vec<Windowed<String, u64>> =
//!     out.iter().map(|r| serde_json::from_slice(r.value.as_deref().unwrap())).collect::<Result<_, _>>()?;
//! assert_eq!(views.iter().map(|w| (w.start, w.key.as_str(), w.value)).collect::<Vec<_>>(),
//!            [(0, "/", 1), (0, "/cart", 1), (60_000, "/", 1)]);
//! # Ok(()) }
//! ```

pub use weir_broker as broker;
pub use weir_client as client;
pub use weir_log as log;
pub use weir_metrics as metrics;
pub use weir_stream as stream;
pub use weir_stream::{App, Topic};
