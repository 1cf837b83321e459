//! Kafka framing: every request and response is a 4-byte big-endian length, then that many
//! bytes. Pure functions over buffers; the TCP loop only moves bytes.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Why a connection's byte stream cannot be framed; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix is negative.
    #[error("frame length {0} is negative: the peer does not speak the Kafka protocol")]
    Negative(i32),
    /// The length prefix exceeds the broker's limit.
    #[error("frame of {len} bytes exceeds the broker's limit of {max} bytes (max_frame_bytes)")]
    TooLarge {
        /// Length the prefix claims.
        len: usize,
        /// The configured limit.
        max: usize,
    },
}

/// The length a frame at the front of `buf` claims, once its prefix has arrived.
pub fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..PREFIX_LEN) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes(prefix.try_into().expect("4 bytes"));
    let len = usize::try_from(len).map_err(|_| FrameError::Negative(len))?;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(Some(len))
}

/// Takes one whole frame (without its prefix) off the front of `buf`, if it has arrived.
pub fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    match frame_len(buf, max)? {
        Some(len) if buf.len() >= PREFIX_LEN + len => {
            buf.advance(PREFIX_LEN);
            Ok(Some(buf.split_to(len).freeze()))
        }
        _ => Ok(None),
    }
}

/// Writes the length prefix into the first four bytes of `out`, a frame being built.
pub fn seal(out: &mut BytesMut) {
    let len = (out.len() - PREFIX_LEN) as i32;
    out[..PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_whole_frames_only() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 3, 1, 2]);
        assert_eq!(take_frame(&mut buf, 10).unwrap(), None);
        buf.extend_from_slice(&[3, 0, 0, 0, 0, 9]);
        assert_eq!(take_frame(&mut buf, 10).unwrap().unwrap(), &[1, 2, 3][..]);
        assert_eq!(take_frame(&mut buf, 10).unwrap().unwrap(), &[][..]);
        assert_eq!(buf.as_ref(), &[9]);
    }

    #[test]
    fn refuses_negative_and_oversized_lengths() {
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(take_frame(&mut buf, 10), Err(FrameError::Negative(-1)));
        let mut buf = BytesMut::from(&11i32.to_be_bytes()[..]);
        assert_eq!(
            take_frame(&mut buf, 10),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
    }

    #[test]
    fn seal_writes_the_length() {
        let mut out = BytesMut::from(&[0u8, 0, 0, 0, 7, 7][..]);
        seal(&mut out);
        assert_eq!(out.as_ref(), &[0, 0, 0, 2, 7, 7]);
    }
}
