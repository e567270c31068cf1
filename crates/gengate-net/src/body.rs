//! Reading an answer's body with a size cap applied while it streams in, so
//! a peer that sends a gigabyte costs at most the cap in memory.

use bytes::{Bytes, BytesMut};

use crate::failure::Failure;

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The body is longer than the cap (said by `Content-Length`, or found
    /// while reading).
    #[error("the answer is larger than {max} bytes")]
    TooLarge { max: usize },
    /// The connection failed while reading.
    #[error("{0}")]
    Failed(Failure),
}

/// Reads `resp`'s body, at most `max` bytes.
///
/// # Errors
/// [`ReadError`]: over the cap, or the transfer failed.
pub async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(ReadError::TooLarge { max });
    }
    let mut buf = BytesMut::with_capacity(
        resp.content_length()
            .map_or(8 * 1024, |n| n as usize)
            .min(max),
    );
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ReadError::Failed(Failure::of(&e)))?
    {
        if buf.len() + chunk.len() > max {
            return Err(ReadError::TooLarge { max });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
