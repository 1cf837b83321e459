//! One module per API: decoded request (plus the log) in, typed response out.

pub(crate) mod admin;
pub(crate) mod api_versions;
pub(crate) mod delete_records;
pub(crate) mod fetch;
pub(crate) mod find_coordinator;
pub(crate) mod group_admin;
pub(crate) mod list_offsets;
pub(crate) mod membership;
pub(crate) mod metadata;
pub(crate) mod offsets;
pub(crate) mod produce;
pub(crate) mod producer_id;
pub(crate) mod unserved;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

/// A topic name for a response.
pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// An error message for a response.
pub(crate) fn message(e: impl std::fmt::Display) -> Option<StrBytes> {
    Some(StrBytes::from_string(e.to_string()))
}
