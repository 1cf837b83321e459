//! An application: pipelines over one embedded log, run together.

use std::future::Future;
use std::path::Path;
use std::sync::Mutex;

use tokio::sync::watch;
use weir_log::Log;

use crate::error::{Result, StreamError};
use crate::graph::lock;
use crate::parallel::ParallelPipeline;
use crate::pipeline::{Pipeline, SharedGraph};
use crate::runtime::Runner;

/// Pipelines over one embedded log.
///
/// ```no_run
/// use weir_stream::{App, Topic, Tumbling, secs};
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Click { page: String, kind: String }
///
/// # async fn run() -> Result<(), weir_stream::StreamError> {
/// let app = App::open("weir-data")?;
/// app.pipeline("views-per-page")
///     .source::<Click>(Topic::json("clicks"))
///     .filter(|c| c.kind == "view")
///     .key_by(|c| c.page.clone())
///     .window(Tumbling::every(secs(60)).grace(secs(5)))
///     .count()
///     .sink(Topic::json("views-per-page"));
/// app.run().await?;
/// # Ok(()) }
/// ```
pub struct App {
    log: Log,
    pipelines: Mutex<Vec<SharedGraph>>,
    parallel: Mutex<Vec<ParallelPipeline>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::with_log(Log::open(dir)?))
    }

    /// An app over a log already open (e.g. shared with a broker in the same process).
    pub fn with_log(log: Log) -> Self {
        Self {
            log,
            pipelines: Mutex::new(Vec::new()),
            parallel: Mutex::new(Vec::new()),
        }
    }

    /// The log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Starts defining a pipeline. Its name is its consumer group and its state's prefix:
    /// keep it stable across restarts.
    pub fn pipeline(&self, name: &str) -> Pipeline {
        let (p, graph) = Pipeline::new(name);
        let mut all = lock(&self.pipelines);
        if all.iter().any(|g| lock(g).name == name)
            || lock(&self.parallel).iter().any(|d| d.name == name)
        {
            lock(&graph).errors.push(format!(
                "a pipeline named {name:?} is already defined; names must differ"
            ));
        }
        all.push(graph);
        p
    }

    /// Defines a pipeline that runs as one task per input partition, in parallel on tokio.
    ///
    /// `build` defines the pipeline on the [`Pipeline`] it is given, as you would on the
    /// one [`App::pipeline`] returns; it is called once per task (and once more to find the
    /// inputs), so it must define the same pipeline each time. Task `i` reads partition `i`
    /// of every source; the number of tasks is the largest partition count among them.
    /// Between `key_by` and a window, call [`crate::KeyedStream::repartition`]: it routes
    /// each key to the task that owns it through the internal topic
    /// `<name>.repartition-<n>`, so results equal a one-task run's. Each task commits its
    /// own checkpoints (outputs, state, offsets) as one unit: exactly-once holds per task.
    /// Keep the input partition count across runs: state is split by it. A parallel
    /// pipeline repartitions once (a task has one watermark, and the second stage's writers
    /// would need their own): chain two parallel pipelines through a topic for two.
    ///
    /// ```no_run
    /// use weir_stream::{App, Topic, Tumbling, secs};
    ///
    /// #[derive(Clone, serde::Serialize, serde::Deserialize)]
    /// struct Click { page: String }
    ///
    /// # async fn run() -> Result<(), weir_stream::StreamError> {
    /// let app = App::open("weir-data")?;
    /// app.parallel("views-per-page", |p| {
    ///     p.source::<Click>(Topic::json("clicks"))
    ///         .key_by(|c| c.page.clone())
    ///         .repartition()
    ///         .window(Tumbling::every(secs(60)))
    ///         .count()
    ///         .sink(Topic::json("views-per-page"));
    /// });
    /// app.run().await?;
    /// # Ok(()) }
    /// ```
    pub fn parallel(&self, name: &str, build: impl Fn(&Pipeline) + Send + Sync + 'static) {
        let mut all = lock(&self.parallel);
        let taken = all.iter().any(|d| d.name == name)
            || lock(&self.pipelines).iter().any(|g| lock(g).name == name);
        let build: crate::parallel::Build = if taken {
            let reason = format!("a pipeline named {name:?} is already defined; names must differ");
            std::sync::Arc::new(move |p: &Pipeline| p.invalid(reason.clone()))
        } else {
            std::sync::Arc::new(build)
        };
        all.push(ParallelPipeline {
            name: name.to_string(),
            build,
        });
    }

    /// Runs every pipeline until Ctrl-C or SIGTERM, then finishes each one's checkpoint.
    pub async fn run(&self) -> Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs every pipeline until `stop` resolves, then finishes each one's checkpoint.
    ///
    /// The pipelines defined so far are taken; a second call runs only pipelines defined
    /// after the first.
    pub async fn run_until(&self, stop: impl Future<Output = ()> + Send) -> Result<()> {
        self.run_pipelines(stop, false).await
    }

    /// Runs every pipeline until it has read all of its inputs, then finishes with a
    /// checkpoint: a batch job. Windows still open stay in state for the next run.
    ///
    /// Each pipeline stops when it has caught up with its inputs: one that reads another's
    /// output may stop before that other one has written everything.
    pub async fn run_to_end(&self) -> Result<()> {
        self.run_pipelines(std::future::pending(), true).await
    }

    async fn run_pipelines(
        &self,
        stop: impl Future<Output = ()> + Send,
        to_end: bool,
    ) -> Result<()> {
        let graphs: Vec<SharedGraph> = std::mem::take(&mut *lock(&self.pipelines));
        let parallel: Vec<ParallelPipeline> = std::mem::take(&mut *lock(&self.parallel));
        let (tx, rx) = watch::channel(false);
        let (done_tx, mut done_rx) =
            tokio::sync::mpsc::channel::<()>((graphs.len() + parallel.len()).max(1));
        let mut handles = Vec::new();
        for p in parallel {
            let (rx, done, log) = (rx.clone(), done_tx.clone(), self.log.clone());
            let name = p.name.clone();
            handles.push((
                name,
                tokio::spawn(async move {
                    let r = p.run(log, rx, to_end).await;
                    let _ = done.send(()).await;
                    r
                }),
            ));
        }
        for g in graphs {
            let graph = lock(&g).take();
            let name = graph.name.clone();
            let runner = match Runner::start(self.log.clone(), graph).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(true);
                    for (_, h) in handles {
                        let _ = h.await;
                    }
                    return Err(e);
                }
            };
            let rx = rx.clone();
            let done = done_tx.clone();
            handles.push((
                name,
                tokio::spawn(async move {
                    let r = runner.run(rx, to_end).await;
                    let _ = done.send(()).await;
                    r
                }),
            ));
        }
        let mut result = Ok(());
        // Wait for the stop signal, or for the first pipeline to end (an error ends it
        // early; with `to_end`, for all of them).
        let wait_all = async {
            for _ in 0..handles.len() {
                done_rx.recv().await;
                if !to_end {
                    break;
                }
            }
        };
        tokio::select! {
            () = stop => {}
            () = wait_all => {}
        }
        let _ = tx.send(true);
        for (name, h) in handles {
            let r = match h.await {
                Ok(r) => r,
                Err(e) => Err(StreamError::InvalidPipeline {
                    pipeline: name,
                    reason: format!("it panicked (a bug in an operator): {e}"),
                }),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
