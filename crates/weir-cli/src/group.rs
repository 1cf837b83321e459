//! `weir group list|describe|reset-offsets|delete`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Subcommand};
use weir_client::{Client, GroupDescription, Offset};

use crate::connect::{BrokerAddr, connect};

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups, one per line.
    List {
        #[command(flatten)]
        addr: BrokerAddr,
    },
    /// Show a group's members and, per partition, committed offset, end offset and lag.
    Describe {
        /// Group id.
        group: String,
        #[command(flatten)]
        addr: BrokerAddr,
    },
    /// Move a group's committed offsets of a topic (only while the group has no members).
    #[command(group(ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset"])))]
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose partitions to reset (all of them).
        #[arg(long)]
        topic: String,
        /// To the first record still in each partition.
        #[arg(long)]
        to_earliest: bool,
        /// To the end of each partition (skip everything there is).
        #[arg(long)]
        to_latest: bool,
        /// To this offset in every partition (clamped to what each partition holds).
        #[arg(long, value_name = "N")]
        to_offset: Option<i64>,
        #[command(flatten)]
        addr: BrokerAddr,
    },
    /// Delete groups that have no members, with their committed offsets.
    Delete {
        /// Group ids.
        #[arg(required = true)]
        groups: Vec<String>,
        #[command(flatten)]
        addr: BrokerAddr,
    },
}

pub async fn run(cmd: GroupCommand) -> Result<()> {
    match cmd {
        GroupCommand::List { addr } => {
            let client = connect(&addr).await?;
            for g in client.list_groups().await.context("cannot list groups")? {
                println!("{}", g.group_id);
            }
            Ok(())
        }
        GroupCommand::Describe { group, addr } => {
            let client = connect(&addr).await?;
            describe(&client, &group).await
        }
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            addr,
        } => {
            let client = connect(&addr).await?;
            let target = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => Offset::Earliest,
                (_, true, _) => Offset::Latest,
                (_, _, Some(n)) if n >= 0 => Offset::At(n),
                (_, _, Some(n)) => bail!("--to-offset must be 0 or more, got {n}"),
                _ => bail!("say where to: --to-earliest, --to-latest or --to-offset N"),
            };
            reset(&client, &group, &topic, target).await
        }
        GroupCommand::Delete { groups, addr } => {
            let client = connect(&addr).await?;
            for g in &groups {
                client
                    .delete_groups(&[g])
                    .await
                    .with_context(|| format!("cannot delete group {g}"))?;
                println!("deleted group {g}");
            }
            Ok(())
        }
    }
}

async fn describe_or_explain(client: &Client, group: &str) -> Result<GroupDescription> {
    client
        .describe_group(group)
        .await
        .with_context(|| format!("cannot describe group {group}"))
}

async fn describe(client: &Client, group: &str) -> Result<()> {
    let d = describe_or_explain(client, group).await?;
    let committed = client
        .committed_offsets(group, None)
        .await
        .with_context(|| format!("cannot read the committed offsets of group {group}"))?;
    if d.state == "Dead" && committed.is_empty() {
        bail!("group {group} does not exist; `weir group list` shows the groups there are");
    }
    println!(
        "group {group}: state {}, protocol {}, {} member(s)",
        d.state,
        if d.protocol.is_empty() {
            "-"
        } else {
            &d.protocol
        },
        d.members.len()
    );
    let mut owner: BTreeMap<(String, i32), &str> = BTreeMap::new();
    if !d.members.is_empty() {
        println!();
        println!(
            "{:<44} {:<20} {:<16} PARTITIONS",
            "MEMBER", "CLIENT-ID", "HOST"
        );
        for m in &d.members {
            let parts: Vec<String> = m
                .assignment
                .iter()
                .map(|(t, p)| format!("{t}-{p}"))
                .collect();
            println!(
                "{:<44} {:<20} {:<16} {}",
                m.member_id,
                m.client_id,
                m.client_host,
                if parts.is_empty() {
                    "-".to_string()
                } else {
                    parts.join(",")
                }
            );
            for tp in &m.assignment {
                owner.insert(tp.clone(), &m.member_id);
            }
        }
    }
    let partitions: BTreeSet<(String, i32)> = committed
        .keys()
        .cloned()
        .chain(owner.keys().cloned())
        .collect();
    if partitions.is_empty() {
        return Ok(());
    }
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    println!();
    println!(
        "{:<24} {:>9} {:>12} {:>12} {:>10}  MEMBER",
        "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
    );
    let mut total_lag = 0i64;
    for (topic, parts) in by_topic {
        let ends = bounds(client, topic, &parts, Offset::Latest).await?;
        for p in parts {
            let key = (topic.to_string(), p);
            let end = ends.get(&p).copied();
            let done = committed.get(&key).copied();
            let lag = match (done, end) {
                (Some(c), Some(e)) => Some((e - c).max(0)),
                _ => None,
            };
            total_lag += lag.unwrap_or(0);
            let show = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            println!(
                "{:<24} {:>9} {:>12} {:>12} {:>10}  {}",
                topic,
                p,
                show(done),
                show(end),
                show(lag),
                owner.get(&key).copied().unwrap_or("-")
            );
        }
    }
    println!();
    println!("total lag {total_lag}");
    Ok(())
}

async fn reset(client: &Client, group: &str, topic: &str, target: Offset) -> Result<()> {
    let d = describe_or_explain(client, group).await?;
    if !d.members.is_empty() {
        let who: Vec<String> = d
            .members
            .iter()
            .map(|m| format!("{} on {}", m.client_id, m.client_host))
            .collect();
        bail!(
            "group {group} has {} active member(s) ({}); offsets can only be reset while the \
             group is empty. Stop its consumers (they leave the group when they exit) or wait \
             for their session to time out, then run this again",
            d.members.len(),
            who.join(", ")
        );
    }
    let info = client
        .topic(topic, false)
        .await
        .with_context(|| format!("cannot reset offsets of topic {topic}"))?;
    let parts: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
    let earliest = bounds(client, topic, &parts, Offset::Earliest).await?;
    let latest = bounds(client, topic, &parts, Offset::Latest).await?;
    let mut offsets = BTreeMap::new();
    for &p in &parts {
        let (lo, hi) = (earliest[&p], latest[&p]);
        let to = match target {
            Offset::Earliest => lo,
            Offset::Latest => hi,
            Offset::At(n) => n.clamp(lo, hi),
            Offset::Timestamp(_) => bail!("resetting to a timestamp is not supported"),
        };
        offsets.insert((topic.to_string(), p), to);
    }
    client
        .alter_group_offsets(group, &offsets)
        .await
        .with_context(|| format!("cannot reset the offsets of group {group}"))?;
    println!("{:<24} {:>9} {:>12}", "TOPIC", "PARTITION", "NEW-OFFSET");
    for ((t, p), o) in &offsets {
        println!("{t:<24} {p:>9} {o:>12}");
    }
    Ok(())
}

async fn bounds(
    client: &Client,
    topic: &str,
    parts: &[i32],
    which: Offset,
) -> Result<BTreeMap<i32, i64>> {
    let spec: Vec<(i32, Offset)> = parts.iter().map(|&p| (p, which)).collect();
    Ok(client
        .list_offsets(topic, &spec)
        .await
        .with_context(|| format!("cannot read the offsets of {topic}"))?
        .into_iter()
        .collect())
}
