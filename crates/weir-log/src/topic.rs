//! Topic names and topic configuration, validated as Kafka validates them.

use serde::{Deserialize, Serialize};

use crate::error::{LogError, Result};

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// Most partitions one topic may have.
pub const MAX_PARTITIONS: i32 = 100_000;

/// Checks a topic name: `[a-zA-Z0-9._-]`, 1 to 249 characters, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(LogError::InvalidTopicName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("a topic name cannot be empty");
    }
    if name == "." || name == ".." {
        return bad("a topic name cannot be \".\" or \"..\"");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return bad("a topic name can be at most 249 characters long");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    {
        return bad("a topic name may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// What happens to old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CleanupPolicy {
    /// Whole batches are deleted by age and size (`retention.ms`, `retention.bytes`).
    Delete,
}

/// A topic's configuration. Defaults are Kafka's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Delete batches whose newest record is older than this; -1 keeps them forever.
    pub retention_ms: i64,
    /// Delete the oldest batches while a partition holds more than this; -1 for no limit.
    pub retention_bytes: i64,
    /// What retention does.
    pub cleanup_policy: CleanupPolicy,
    /// Largest record batch accepted, in bytes.
    pub max_message_bytes: i32,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::Delete,
            max_message_bytes: 1_048_588,
        }
    }
}

/// The config keys weir understands.
pub const CONFIG_KEYS: [&str; 4] = [
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "max.message.bytes",
];

impl TopicConfig {
    /// Applies one `key=value` setting, refusing unknown keys and bad values.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let invalid = |reason: String| LogError::InvalidConfig {
            key: key.to_string(),
            value: value.to_string(),
            reason,
        };
        let int = |min: i64| -> Result<i64> {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| invalid("expected a whole number".to_string()))?;
            if v < min {
                return Err(invalid(format!("must be at least {min}")));
            }
            Ok(v)
        };
        match key {
            "retention.ms" => self.retention_ms = int(-1)?,
            "retention.bytes" => self.retention_bytes = int(-1)?,
            "max.message.bytes" => {
                let v = int(0)?;
                self.max_message_bytes = i32::try_from(v)
                    .map_err(|_| invalid(format!("must be at most {}", i32::MAX)))?;
            }
            "cleanup.policy" => match value.trim() {
                "delete" => self.cleanup_policy = CleanupPolicy::Delete,
                "compact" | "compact,delete" | "delete,compact" => {
                    return Err(invalid(
                        "log compaction is not supported yet; use cleanup.policy=delete".into(),
                    ));
                }
                _ => return Err(invalid("expected \"delete\"".into())),
            },
            _ => {
                return Err(invalid(format!(
                    "unknown topic config; weir supports {}",
                    CONFIG_KEYS.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Builds a config from `key=value` pairs over Kafka's defaults.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut c = Self::default();
        for (k, v) in pairs {
            c.set(k, v)?;
        }
        Ok(c)
    }

    /// The settings as `key=value` pairs, in `CONFIG_KEYS` order.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("retention.ms", self.retention_ms.to_string()),
            ("retention.bytes", self.retention_bytes.to_string()),
            ("cleanup.policy", "delete".to_string()),
            ("max.message.bytes", self.max_message_bytes.to_string()),
        ]
    }
}

/// A topic as stored: its name, ids, partition count and config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// The topic's name.
    pub name: String,
    /// Kafka topic id (a UUID), as Metadata v10+ reports it.
    pub uuid: [u8; 16],
    /// The compact id in storage keys.
    pub id: u32,
    /// Number of partitions.
    pub partitions: i32,
    /// The topic's config.
    pub config: TopicConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        for ok in ["a", "clicks", "my.topic_1-x", &"x".repeat(249)] {
            validate_topic_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a b", "é", "a/b", &"x".repeat(250)] {
            assert!(
                validate_topic_name(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn config_refuses_compact_and_unknown_keys() {
        let mut c = TopicConfig::default();
        c.set("retention.ms", "1000").unwrap();
        assert_eq!(c.retention_ms, 1000);
        let e = c.set("cleanup.policy", "compact").unwrap_err().to_string();
        assert!(e.contains("compaction is not supported"), "{e}");
        assert!(c.set("segment.bytes", "1").is_err());
        assert!(c.set("retention.bytes", "-2").is_err());
        assert!(c.set("max.message.bytes", "abc").is_err());
    }
}
