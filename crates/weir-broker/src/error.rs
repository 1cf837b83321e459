//! The broker's error type, and how log errors become Kafka error codes on the wire.

use kafka_protocol::ResponseError;
use weir_log::{BatchError, LogError};

/// Errors of starting or running a broker (request errors go to the client as error codes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another broker or Kafka using the port?)")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Accepting connections failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The log failed underneath.
    #[error("log error: {0}")]
    Log(#[from] LogError),
}

/// The Kafka error code for a log error: the client's fault (bad name, bad batch), the log's
/// state (unknown topic, offset out of range) or storage trouble (retriable).
pub(crate) fn log_error_code(e: &LogError) -> ResponseError {
    match e {
        LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        LogError::InvalidBatch(BatchError::TooLarge { .. }) => ResponseError::MessageTooLarge,
        LogError::InvalidBatch(_) => ResponseError::CorruptMessage,
        LogError::InvalidTopicName { .. } => ResponseError::InvalidTopicException,
        LogError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        LogError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        LogError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        LogError::InvalidGroup(_) => ResponseError::InvalidGroupId,
        LogError::Closed | LogError::Storage(_) | LogError::Io(_) => {
            ResponseError::KafkaStorageError
        }
        _ => ResponseError::UnknownServerError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_errors_map_to_corrupt_or_too_large() {
        let crc = LogError::InvalidBatch(BatchError::CrcMismatch {
            expected: 1,
            actual: 2,
        });
        assert_eq!(log_error_code(&crc), ResponseError::CorruptMessage);
        let big = LogError::InvalidBatch(BatchError::TooLarge { size: 2, max: 1 });
        assert_eq!(log_error_code(&big), ResponseError::MessageTooLarge);
        let unknown = LogError::UnknownTopic("t".into());
        assert_eq!(
            log_error_code(&unknown),
            ResponseError::UnknownTopicOrPartition
        );
        assert!(log_error_code(&LogError::Closed).is_retriable());
        let gap = LogError::OutOfOrderSequence {
            topic: "t".into(),
            partition: 0,
            producer_id: 1,
            expected: 5,
            got: 7,
        };
        assert_eq!(
            log_error_code(&gap),
            ResponseError::OutOfOrderSequenceNumber
        );
        let zombie = LogError::InvalidProducerEpoch {
            producer_id: 1,
            epoch: 0,
            current: 1,
        };
        assert_eq!(log_error_code(&zombie), ResponseError::InvalidProducerEpoch);
    }
}
