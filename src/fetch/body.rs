//! Answers of the small HTTP APIs distfs is a client of (block upload in [`super::push`],
//! the pinning service in [`super::pinning`]): a body read that stops once it passes a size
//! limit, and a transport error told with its whole cause chain on one line.

use bytes::{Bytes, BytesMut};

/// Why a bounded body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The connection failed part way (the error's cause chain).
    Transport(String),
    /// The body passed the limit (in bytes).
    TooLarge(usize),
}

/// `e` and each of its causes, joined by `": "`.
pub(crate) fn error_chain(e: &reqwest::Error) -> String {
    let mut reason = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        reason.push_str(": ");
        reason.push_str(&c.to_string());
        cur = c.source();
    }
    reason
}

/// Reads a body, failing once it passes `limit` bytes.
pub(crate) async fn read_bounded(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BodyError::Transport(error_chain(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
