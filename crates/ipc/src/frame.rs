//! Framing: a u32 big-endian body length, then the body.
//!
//! The free functions here read straight from the stream with no buffer of
//! their own, so they suit one-shot tools; long-lived peers use
//! [`crate::Connection`], whose `recv` is also cancel-safe.

use std::io::{ErrorKind, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{IpcError, MAX_FRAME, wire};

/// Size of the length prefix.
pub(crate) const HEADER: usize = 4;

/// Encodes `msg` to a message body (no length prefix).
///
/// Fails with [`IpcError::FrameTooLarge`] if the body would not fit in one
/// frame, so nothing we produce is a frame the peer must refuse.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, IpcError> {
    let mut body = Vec::new();
    let len = wire::encode_into(msg, &mut body)?;
    check_len(len)?;
    Ok(body)
}

/// Decodes a message body (no length prefix). The body must hold exactly
/// one message: trailing bytes are a [`IpcError::Decode`] error.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, IpcError> {
    wire::decode(body)
}

/// Encodes `msg` as a complete frame, prefix included, in one buffer so it
/// goes out in a single write.
pub(crate) fn frame_bytes<T: Serialize>(msg: &T) -> Result<Vec<u8>, IpcError> {
    let mut frame = Vec::new();
    append_frame(msg, &mut frame)?;
    Ok(frame)
}

/// Appends `msg` as a complete frame to `out`; on error `out` is as before.
pub(crate) fn append_frame<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), IpcError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    let prefix = wire::encode_into(msg, out).and_then(check_len);
    match prefix {
        Ok(prefix) => {
            out[start..start + HEADER].copy_from_slice(&prefix.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Validates a body length against [`MAX_FRAME`], giving the prefix value.
fn check_len(len: usize) -> Result<u32, IpcError> {
    if len > MAX_FRAME {
        return Err(IpcError::FrameTooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    // MAX_FRAME < u32::MAX, so this cannot fail once the check above passed.
    u32::try_from(len).map_err(|_| IpcError::FrameTooLarge {
        len,
        max: MAX_FRAME,
    })
}

/// Parses a length prefix, refusing oversized frames before anything is
/// allocated for them.
pub(crate) fn parse_header(header: [u8; HEADER]) -> Result<usize, IpcError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(IpcError::FrameTooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    Ok(len)
}

/// Maps read errors: a socket timeout (set by a sync caller with
/// `set_read_timeout`) is our Timeout, EOF inside `read_exact` is Truncated.
fn read_error(e: std::io::Error) -> IpcError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => IpcError::Timeout,
        ErrorKind::UnexpectedEof => IpcError::Truncated,
        _ => IpcError::Io(e),
    }
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<(), IpcError> {
    let frame = frame_bytes(msg)?;
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame.
///
/// Ok(None) on clean EOF before any byte of a frame; Truncated on EOF inside a frame.
/// Not cancel-safe (a frame may be half consumed): wrap it in a timeout only
/// if the stream is dropped when the timeout fires.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
) -> Result<Option<T>, IpcError> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        let n = r.read(&mut header[got..]).await.map_err(read_error)?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(IpcError::Truncated)
            };
        }
        got += n;
    }
    let len = parse_header(header)?;
    // `take` + `read_to_end` grows the buffer as bytes arrive, so a peer that
    // announces a large frame and sends nothing costs us nothing.
    let mut body = Vec::new();
    r.take(len as u64)
        .read_to_end(&mut body)
        .await
        .map_err(read_error)?;
    if body.len() < len {
        return Err(IpcError::Truncated);
    }
    wire::decode(&body).map(Some)
}

/// Blocking [`write_frame`] over std I/O.
pub fn write_frame_sync<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), IpcError> {
    let frame = frame_bytes(msg)?;
    w.write_all(&frame)?;
    w.flush()?;
    Ok(())
}

/// Blocking [`read_frame`] over std I/O.
///
/// There is no timeout parameter: set one on the socket
/// (`set_read_timeout`); its expiry is reported as [`IpcError::Timeout`].
pub fn read_frame_sync<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<Option<T>, IpcError> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(IpcError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(e)),
        }
    }
    let len = parse_header(header)?;
    let mut body = Vec::new();
    r.take(len as u64)
        .read_to_end(&mut body)
        .map_err(read_error)?;
    if body.len() < len {
        return Err(IpcError::Truncated);
    }
    wire::decode(&body).map(Some)
}
