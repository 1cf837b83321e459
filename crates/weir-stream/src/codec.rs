//! Codecs: how a topic's record values turn into typed values and back.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a value could not be decoded or encoded; the text goes into the dead-letter header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

/// Turns record values into `T` and back. Implement it for formats weir does not carry.
pub trait Codec<T>: Send + Sync + 'static {
    /// Decodes one record value. An error sends the record to the dead-letter topic.
    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError>;
    /// Appends the encoding of `value` to `out`.
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;
}

/// JSON through serde_json.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<T: Serialize + DeserializeOwned> Codec<T> for Json {
    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError(format!("invalid JSON: {e}")))
    }

    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serde_json::to_writer(out, value).map_err(|e| CodecError(format!("JSON encoding: {e}")))
    }
}

/// The record value's bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Codec<Bytes> for Raw {
    fn decode(&self, bytes: &[u8]) -> Result<Bytes, CodecError> {
        Ok(Bytes::copy_from_slice(bytes))
    }

    fn encode(&self, value: &Bytes, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(value);
        Ok(())
    }
}

impl Codec<Vec<u8>> for Raw {
    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
        Ok(bytes.to_vec())
    }

    fn encode(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_reports_bad_input() {
        let mut out = Vec::new();
        Codec::<(u32, String)>::encode(&Json, &(7, "x".into()), &mut out).unwrap();
        let back: (u32, String) = Json.decode(&out).unwrap();
        assert_eq!(back, (7, "x".into()));
        let err = Codec::<(u32, String)>::decode(&Json, b"{oops").unwrap_err();
        assert!(err.0.starts_with("invalid JSON"), "{err}");
    }
}
