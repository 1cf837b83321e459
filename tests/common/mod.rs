//! What the interop tests share: a live broker on 127.0.0.1, the skip/fail rule for missing
//! clients, and the Python that runs the client scripts.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use weir_broker::{Broker, BrokerConfig};
use weir_log::Log;

/// A broker served from a background runtime for as long as the value lives.
pub struct LiveBroker {
    pub addr: SocketAddr,
    config: BrokerConfig,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl LiveBroker {
    /// A broker with the default settings on a free port.
    pub fn start() -> Self {
        Self::start_with(BrokerConfig::default())
    }

    /// A broker with `config` on a free port of 127.0.0.1.
    pub fn start_with(config: BrokerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            shutdown_grace: Duration::from_secs(1),
            ..config
        };
        let mut broker = Self {
            addr: config.listen,
            config,
            stop: None,
            thread: None,
            dir,
        };
        broker.serve();
        broker
    }

    fn serve(&mut self) {
        let log = Log::open(self.dir.path()).unwrap();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = self.config.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let broker = Broker::bind(log, config).await.unwrap();
                addr_tx.send(broker.local_addr()).unwrap();
                broker
                    .run_until(async { drop(stopped.await) })
                    .await
                    .unwrap();
            });
        });
        self.addr = addr_rx.recv().unwrap();
        self.stop = Some(stop);
        self.thread = Some(thread);
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops the broker, closing its log, and starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.shut_down();
        self.config.listen = self.addr;
        self.serve();
    }
}

impl Drop for LiveBroker {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn required() -> bool {
    std::env::var("WEIR_INTEROP_REQUIRED").is_ok_and(|v| v == "1")
}

/// Fails in CI, skips loudly elsewhere.
pub fn missing(what: &str) {
    assert!(
        !required(),
        "{what} is missing and WEIR_INTEROP_REQUIRED=1: run .ci/run's install steps"
    );
    eprintln!("\n*** SKIPPED: {what} is not installed (CI installs it; see .ci/run) ***\n");
}

/// The Python of `target/venv` (or `WEIR_PYTHON`), if it can import `module`.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/python");
    let py = std::env::var_os("WEIR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or(venv);
    let ok = Command::new(&py)
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(py)
}

/// A client script under tests/interop.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// Whether kcat runs.
pub fn has_kcat() -> bool {
    Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
