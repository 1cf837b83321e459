//! The one error type of weir-client.

use std::net::SocketAddr;

use kafka_protocol::error::ResponseError;

/// Result alias for weir-client operations.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a Kafka-protocol broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No TCP connection could be made; the broker is down or the address is wrong.
    #[error("no broker at {addr}: {source}")]
    Connect {
        /// The address that was tried.
        addr: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The bootstrap address did not resolve to any socket address.
    #[error("cannot resolve broker address {addr:?}: {reason}")]
    Resolve {
        /// The address as given.
        addr: String,
        /// Why resolution failed.
        reason: String,
    },
    /// The connection failed or was closed while a request was outstanding.
    #[error("connection to {addr} lost: {reason}")]
    Disconnected {
        /// The peer.
        addr: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// The broker did not answer within the request timeout.
    #[error("{api} request to {addr} timed out after {timeout_ms} ms")]
    Timeout {
        /// Name of the API.
        api: &'static str,
        /// The peer.
        addr: SocketAddr,
        /// The timeout that elapsed.
        timeout_ms: u64,
    },
    /// The broker sent bytes this client could not decode (a broker bug or not a Kafka broker).
    #[error("malformed response from {addr} to {api}: {reason}")]
    Protocol {
        /// The peer.
        addr: SocketAddr,
        /// Name of the API.
        api: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A request could not be encoded (a bug in the caller or this crate).
    #[error("cannot encode {api} request: {reason}")]
    Encode {
        /// Name of the API.
        api: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The broker and this client share no version of an API this operation needs.
    #[error(
        "broker at {addr} does not support {api} in any version this client speaks \
         (client {client_min}..={client_max}, broker {broker})"
    )]
    UnsupportedApi {
        /// The peer.
        addr: SocketAddr,
        /// Name of the API.
        api: &'static str,
        /// Lowest version the client speaks.
        client_min: i16,
        /// Highest version the client speaks.
        client_max: i16,
        /// What the broker advertised, or "none".
        broker: String,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {code}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        /// The Kafka error code.
        code: ResponseError,
        /// What the request was about, e.g. `produce to clicks-3`.
        context: String,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// A record batch in a fetch response could not be decoded.
    #[error("cannot decode record batch of {topic}-{partition} at offset {offset}: {reason}")]
    CorruptBatch {
        /// Topic of the batch.
        topic: String,
        /// Partition of the batch.
        partition: i32,
        /// The fetch offset.
        offset: i64,
        /// Why it failed.
        reason: String,
    },
    /// A topic the operation needs does not exist on the broker.
    #[error(
        "topic {0:?} does not exist; create it with `weir topic create {0}` or enable auto-creation"
    )]
    UnknownTopic(String),
    /// A partition index is outside the topic's partitions.
    #[error("topic {topic:?} has {count} partitions; partition {partition} does not exist")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        count: usize,
    },
    /// An argument given by the caller is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A produced record's batch failed; `source` says why.
    #[error("delivery to {topic}-{partition} failed: {source}")]
    Delivery {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Why the batch failed (shared by every record of the batch).
        source: std::sync::Arc<ClientError>,
    },
    /// A background task of this client ended abnormally (a bug in weir-client).
    #[error("background task failed: {0}; this is a bug in weir-client")]
    TaskFailed(String),
    /// The producer was closed before the record was sent.
    #[error("producer closed before the record was delivered")]
    ProducerClosed,
}

impl ClientError {
    /// Builds a [`ClientError::Kafka`] from a non-zero error code.
    pub fn kafka(code: i16, context: impl Into<String>, message: Option<&str>) -> Self {
        ClientError::Kafka {
            code: ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code)),
            context: context.into(),
            message: message.filter(|m| !m.is_empty()).map(str::to_owned),
        }
    }

    /// The Kafka error code, when the broker sent one.
    pub fn kafka_code(&self) -> Option<ResponseError> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            ClientError::Delivery { source, .. } => source.kafka_code(),
            _ => None,
        }
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Kafka { code, .. } => code.is_retriable(),
            ClientError::Delivery { source, .. } => source.is_retriable(),
            ClientError::Connect { .. }
            | ClientError::Disconnected { .. }
            | ClientError::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// Turns an error code into `Ok(())` or a [`ClientError::Kafka`].
pub(crate) fn check(
    code: i16,
    context: impl FnOnce() -> String,
    message: Option<&str>,
) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(ClientError::kafka(code, context(), message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_error_names_code_context_and_message() {
        let e = ClientError::kafka(3, "produce to t-0", Some("no such topic"));
        assert_eq!(e.kafka_code(), Some(ResponseError::UnknownTopicOrPartition));
        assert_eq!(
            e.to_string(),
            "produce to t-0: UnknownTopicOrPartition (no such topic)"
        );
        assert!(e.is_retriable());
        let e = ClientError::kafka(10, "produce to t-0", Some(""));
        assert_eq!(e.to_string(), "produce to t-0: MessageTooLarge");
        assert!(!e.is_retriable());
    }

    #[test]
    fn unknown_codes_are_kept() {
        let e = ClientError::kafka(9999, "x", None);
        assert_eq!(e.kafka_code(), Some(ResponseError::Unknown(9999)));
    }

    #[test]
    fn check_passes_zero_only() {
        assert!(check(0, || unreachable!(), None).is_ok());
        assert!(check(36, || "create t".into(), None).is_err());
    }
}
