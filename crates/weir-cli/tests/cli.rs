//! The built `weir` binary against a `weir broker` it started.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

struct BrokerProcess {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl BrokerProcess {
    fn start() -> BrokerProcess {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("broker.properties");
        std::fs::write(
            &config,
            "# test broker\nlog.durability=none\nnum.partitions=2\n",
        )
        .unwrap();
        let mut child = Command::new(WEIR)
            .args(["broker", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|a| a.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("broker printed {line:?}"))
            .to_string();
        BrokerProcess {
            child,
            addr,
            _dir: dir,
        }
    }

    fn terminate(mut self) -> ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        wait_bounded(&mut self.child, Duration::from_secs(30))
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < limit,
            "process did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `weir args...` with `stdin`, returning (success, stdout, stderr).
fn weir(args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(WEIR)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    (status.success(), out, err)
}

#[test]
fn produce_lines_and_consume_them_back() {
    let broker = BrokerProcess::start();
    let b = ["--brokers", broker.addr.as_str()];
    let (ok, out, err) = weir(
        &[&["topic", "create", "lines", "--partitions", "1"][..], &b].concat(),
        b"",
    );
    assert!(ok, "{err}");
    assert!(out.contains("created topic lines"), "{out}");
    let (ok, out, _) = weir(&[&["topic", "list"][..], &b].concat(), b"");
    assert!(ok);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["lines"]);

    let input: String = (0..500)
        .map(|i| format!("k{i}:value number {i}\n"))
        .collect();
    let (ok, _, err) = weir(
        &[
            &["produce", "lines", "--key-sep", ":", "--compression", "lz4"][..],
            &b,
        ]
        .concat(),
        input.as_bytes(),
    );
    assert!(ok, "{err}");
    assert!(err.contains("produced 500 record(s)"), "{err}");

    let (ok, out, err) = weir(
        &[
            &["consume", "lines", "--from-beginning", "--max", "500"][..],
            &b,
        ]
        .concat(),
        b"",
    );
    assert!(ok, "{err}");
    let want: Vec<String> = (0..500).map(|i| format!("value number {i}")).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);

    let (ok, out, err) = weir(
        &[
            &[
                "consume",
                "lines",
                "--from-beginning",
                "--max",
                "2",
                "--format",
                "json",
            ][..],
            &b,
        ]
        .concat(),
        b"",
    );
    assert!(ok, "{err}");
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["key"], "k0");
    assert_eq!(first["value"], "value number 0");
    assert_eq!(first["offset"], 0);

    let (ok, out, err) = weir(&[&["topic", "describe", "lines"][..], &b].concat(), b"");
    assert!(ok, "{err}");
    assert!(out.contains("PartitionCount: 1"), "{out}");
    let (ok, _, err) = weir(&[&["topic", "delete", "lines"][..], &b].concat(), b"");
    assert!(ok, "{err}");
    let (_, out, _) = weir(&[&["topic", "list"][..], &b].concat(), b"");
    assert_eq!(out, "");
    assert!(broker.terminate().success());
}

#[test]
fn perf_produce_and_consume_print_json_lines() {
    let broker = BrokerProcess::start();
    let b = ["--brokers", broker.addr.as_str()];
    let (ok, out, err) = weir(
        &[
            &[
                "perf",
                "produce",
                "--records",
                "5000",
                "--size",
                "64",
                "--json",
            ][..],
            &b,
        ]
        .concat(),
        b"",
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["records"], 5000);
    assert!(v["records_per_sec"].as_f64().unwrap() > 0.0);
    assert!(v["latency_ms"]["p999"].as_f64().unwrap() <= v["latency_ms"]["max"].as_f64().unwrap());
    let (ok, out, err) = weir(
        &[&["perf", "consume", "--records", "5000", "--json"][..], &b].concat(),
        b"",
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["records"], 5000);
    assert_eq!(v["bytes"], 5000 * 64);
    assert!(broker.terminate().success());
}

#[test]
fn no_broker_gives_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let (ok, _, err) = weir(&["topic", "list", "--brokers", &addr], b"");
    assert!(!ok);
    assert!(
        err.contains(&format!("no broker at {addr}")) && err.contains("is `weir broker` running?"),
        "{err}"
    );
}

#[test]
fn sigterm_stops_the_broker_with_exit_code_0() {
    let broker = BrokerProcess::start();
    let b = ["--brokers", broker.addr.as_str()];
    // Some acknowledged data, so shutdown has a log to close.
    let (ok, _, err) = weir(&[&["produce", "auto-created"][..], &b].concat(), b"x\ny\n");
    assert!(ok, "{err}");
    let status = broker.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn bad_broker_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.properties");
    std::fs::write(&config, "num.partitions=zero\n").unwrap();
    let out = Command::new(WEIR)
        .args(["broker", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("num.partitions"), "{err}");
}

/// `weir args... --brokers ADDR`, asserting success; returns stdout.
fn weir_ok(broker: &BrokerProcess, args: &[&str], stdin: &[u8]) -> String {
    let (ok, out, err) = weir(
        &[args, &["--brokers", broker.addr.as_str()]].concat(),
        stdin,
    );
    assert!(ok, "weir {args:?} failed: {err}");
    out
}

/// `weir group reset-offsets GROUP --topic TOPIC HOW`, asserting success.
fn reset_offsets(broker: &BrokerProcess, group: &str, topic: &str, how: &str) -> String {
    weir_ok(
        broker,
        &["group", "reset-offsets", group, "--topic", topic, how],
        b"",
    )
}

/// The line of `describe` output for partition `p` of `topic`, split into columns.
fn partition_row(describe: &str, topic: &str, p: i32) -> Vec<String> {
    describe
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.len() >= 5 && cols[0] == topic && cols[1] == p.to_string())
        .unwrap_or_else(|| panic!("no row for {topic}-{p} in:\n{describe}"))
}

#[test]
fn group_consume_commits_what_it_printed_and_describe_shows_lag() {
    let broker = BrokerProcess::start();
    weir_ok(
        &broker,
        &["topic", "create", "gt", "--partitions", "1"],
        b"",
    );
    let lines: String = (0..10).map(|i| format!("l{i}\n")).collect();
    weir_ok(&broker, &["produce", "gt"], lines.as_bytes());

    let out = weir_ok(
        &broker,
        &[
            "consume",
            "gt",
            "--group",
            "g1",
            "--from-beginning",
            "--max",
            "4",
        ],
        b"",
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), ["l0", "l1", "l2", "l3"]);
    let listed = weir_ok(&broker, &["group", "list"], b"");
    assert!(listed.lines().any(|l| l == "g1"), "{listed}");

    let described = weir_ok(&broker, &["group", "describe", "g1"], b"");
    assert!(described.contains("state Empty"), "{described}");
    // TOPIC PARTITION COMMITTED END LAG MEMBER
    assert_eq!(partition_row(&described, "gt", 0)[2..5], ["4", "10", "6"]);
    assert!(described.contains("total lag 6"), "{described}");

    // The next member of the group goes on where the first stopped.
    let out = weir_ok(
        &broker,
        &["consume", "gt", "--group", "g1", "--max", "2"],
        b"",
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), ["l4", "l5"]);
    let described = weir_ok(&broker, &["group", "describe", "g1"], b"");
    assert_eq!(partition_row(&described, "gt", 0)[2..5], ["6", "10", "4"]);
    assert!(broker.terminate().success());
}

#[test]
fn reset_offsets_is_refused_while_the_group_has_members_and_works_when_empty() {
    let broker = BrokerProcess::start();
    weir_ok(
        &broker,
        &["topic", "create", "rt", "--partitions", "2"],
        b"",
    );
    let lines: String = (0..10).map(|i| format!("r{i}\n")).collect();
    weir_ok(
        &broker,
        &["produce", "rt", "--partition", "0"],
        lines.as_bytes(),
    );

    let out = reset_offsets(&broker, "g2", "rt", "--to-offset=7");
    assert!(out.contains("NEW-OFFSET"), "{out}");
    let described = weir_ok(&broker, &["group", "describe", "g2"], b"");
    assert_eq!(partition_row(&described, "rt", 0)[2..5], ["7", "10", "3"]);
    assert_eq!(
        partition_row(&described, "rt", 1)[2..5],
        ["0", "0", "0"],
        "--to-offset is clamped to what a partition holds"
    );

    // A member that reads 5 records: r7, r8, r9 now, two more later.
    let mut member = Command::new(WEIR)
        .args(["consume", "rt", "--group", "g2", "--max", "5", "--brokers"])
        .arg(&broker.addr)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let described = weir_ok(&broker, &["group", "describe", "g2"], b"");
        if described.contains("1 member(s)") && described.contains("rt-0,rt-1") {
            assert!(described.contains("weir-client"), "client id: {described}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the member never showed up:\n{described}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, _, err) = weir(
        &[
            "group",
            "reset-offsets",
            "g2",
            "--topic",
            "rt",
            "--to-earliest",
            "--brokers",
            &broker.addr,
        ],
        b"",
    );
    assert!(!ok, "reset must be refused while a member is in the group");
    assert!(err.contains("1 active member(s)"), "{err}");
    assert!(err.contains("Stop its consumers"), "{err}");
    let (ok, _, err) = weir(&["group", "delete", "g2", "--brokers", &broker.addr], b"");
    assert!(!ok, "a group with members cannot be deleted");
    assert!(err.contains("stop its consumers"), "{err}");

    weir_ok(
        &broker,
        &["produce", "rt", "--partition", "0", "--idempotent"],
        b"r10\nr11\n",
    );
    let status = wait_bounded(&mut member, Duration::from_secs(30));
    let mut out = String::new();
    member
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "member failed; printed {out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["r7", "r8", "r9", "r10", "r11"]
    );

    // The member left on exit: the group is empty and can be reset.
    reset_offsets(&broker, "g2", "rt", "--to-earliest");
    let described = weir_ok(&broker, &["group", "describe", "g2"], b"");
    assert!(described.contains("state Empty"), "{described}");
    assert_eq!(partition_row(&described, "rt", 0)[2..5], ["0", "12", "12"]);
    reset_offsets(&broker, "g2", "rt", "--to-latest");
    let described = weir_ok(&broker, &["group", "describe", "g2"], b"");
    assert!(described.contains("total lag 0"), "{described}");

    let out = weir_ok(&broker, &["group", "delete", "g2"], b"");
    assert!(out.contains("deleted group g2"), "{out}");
    let listed = weir_ok(&broker, &["group", "list"], b"");
    assert!(!listed.lines().any(|l| l == "g2"), "{listed}");
    assert!(broker.terminate().success());
}
