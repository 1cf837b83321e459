//! `weir topic create|list|describe|delete`.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use weir_client::{NewTopic, ResponseError};

use crate::connect::{BrokerAddr, connect};

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Topic config KEY=VALUE (repeatable), e.g. retention.ms=3600000.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Succeed quietly if the topic exists.
        #[arg(long)]
        if_not_exists: bool,
        #[command(flatten)]
        addr: BrokerAddr,
    },
    /// List topics, one per line.
    List {
        #[command(flatten)]
        addr: BrokerAddr,
    },
    /// Show partitions and leaders of topics.
    Describe {
        /// Topic names.
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        addr: BrokerAddr,
    },
    /// Delete topics and all their records.
    Delete {
        /// Topic names.
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        addr: BrokerAddr,
    },
}

pub async fn run(cmd: TopicCommand) -> Result<()> {
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            configs,
            if_not_exists,
            addr,
        } => {
            if partitions < 1 {
                bail!("--partitions must be at least 1, got {partitions}");
            }
            let mut topic = NewTopic::new(&name, partitions);
            for c in &configs {
                let Some((k, v)) = c.split_once('=') else {
                    bail!("--config {c:?} is not KEY=VALUE");
                };
                topic = topic.with_config(k.trim(), v.trim());
            }
            let client = connect(&addr).await?;
            match client.create_topic(topic).await {
                Ok(()) => println!("created topic {name} with {partitions} partition(s)"),
                Err(e)
                    if if_not_exists
                        && e.kafka_code() == Some(ResponseError::TopicAlreadyExists) =>
                {
                    println!("topic {name} already exists")
                }
                Err(e) if e.kafka_code() == Some(ResponseError::TopicAlreadyExists) => {
                    bail!("topic {name} already exists; pass --if-not-exists to accept that")
                }
                Err(e) => return Err(e).context(format!("cannot create topic {name}")),
            }
        }
        TopicCommand::List { addr } => {
            let client = connect(&addr).await?;
            for t in client.list_topics().await.context("cannot list topics")? {
                println!("{t}");
            }
        }
        TopicCommand::Describe { names, addr } => {
            let client = connect(&addr).await?;
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            for t in client
                .describe_topics(&refs)
                .await
                .context("cannot describe topics")?
            {
                println!(
                    "Topic: {}\tTopicId: {}\tPartitionCount: {}",
                    t.name,
                    t.id,
                    t.partitions.len()
                );
                for p in &t.partitions {
                    println!(
                        "\tPartition: {}\tLeader: {}\tReplicas: {:?}\tIsr: {:?}",
                        p.partition, p.leader, p.replicas, p.isr
                    );
                }
            }
        }
        TopicCommand::Delete { names, addr } => {
            let client = connect(&addr).await?;
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            client
                .delete_topics(&refs)
                .await
                .context("cannot delete topics")?;
            for n in names {
                println!("deleted topic {n}");
            }
        }
    }
    Ok(())
}
