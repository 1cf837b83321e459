//! `weir`: run a broker, manage topics, produce, consume and measure.

mod broker;
mod connect;
mod consume;
mod group;
mod perf;
mod produce;
mod properties;
mod topic;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// weir: stream processing on its own Kafka-compatible log.
#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "weir: stream processing on its own Kafka-compatible log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker that speaks the Kafka protocol over a weir log.
    Broker(broker::BrokerArgs),
    /// Create, list, describe or delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Produce lines from stdin or a file, one record per line.
    Produce(produce::ProduceArgs),
    /// Print records of a topic.
    Consume(consume::ConsumeArgs),
    /// List, describe, reset or delete consumer groups.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Measure producer or consumer throughput and latency.
    #[command(subcommand)]
    Perf(perf::PerfCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Broker(args) => broker::run(args).await,
            Command::Topic(cmd) => topic::run(cmd).await,
            Command::Produce(args) => produce::run(args).await,
            Command::Consume(args) => consume::run(args).await,
            Command::Group(cmd) => group::run(cmd).await,
            Command::Perf(cmd) => perf::run(cmd).await,
        }
    });
    // Do not wait for lingering tasks (e.g. a consumer's open long poll).
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
