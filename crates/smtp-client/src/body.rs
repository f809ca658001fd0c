//! The message body as it arrives from qmgr: [`DeliveryMessage::Body`]
//! chunks, or the queue's segment files passed as descriptors
//! ([`DeliveryMessage::Segments`]), up to [`DeliveryMessage::End`]; read
//! only when the SMTP server is ready for them, so a message is never held
//! whole in memory.

use std::time::Duration;

use postern_ipc::delivery::{DeliveryMessage, SegmentBody};
use postern_ipc::{Connection, IpcError, TakeFds};
use tokio::io::{AsyncRead, AsyncWrite};

/// How long qmgr may take to send the next chunk.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);

/// qmgr stopped sending the body properly; the connection to qmgr is
/// unusable and the SMTP transaction must be abandoned without its final
/// dot, so the remote server discards what it got.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("reading the message body from qmgr: {0}")]
    Ipc(#[from] IpcError),
    #[error("qmgr closed the connection inside a message body")]
    Closed,
    #[error("qmgr sent a new request inside a message body")]
    Unexpected,
    #[error("reading the message body from the queue's segment: {0}")]
    Segment(#[from] std::io::Error),
}

/// The body frames of one request.
#[derive(Debug)]
pub struct BodySource<'a, S> {
    conn: &'a mut Connection<S>,
    /// The body's segment files, while there is some of it left in them.
    segments: Option<SegmentBody>,
    /// The first chunk has been taken: the message cannot be offered to
    /// another server any more.
    started: bool,
    ended: bool,
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin + TakeFds> BodySource<'a, S> {
    pub fn new(conn: &'a mut Connection<S>) -> Self {
        BodySource {
            conn,
            segments: None,
            started: false,
            ended: false,
        }
    }

    pub fn started(&self) -> bool {
        self.started
    }

    /// The next chunk, or None after End.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, BodyError> {
        self.started = true;
        if self.ended {
            return Ok(None);
        }
        loop {
            if let Some(segments) = &mut self.segments {
                match segments.next_piece()? {
                    Some(piece) => return Ok(Some(piece)),
                    None => self.segments = None,
                }
            }
            match self.conn.recv_timeout(CHUNK_TIMEOUT).await? {
                Some(DeliveryMessage::Body { data }) => return Ok(Some(data)),
                Some(DeliveryMessage::Segments { extents }) => {
                    self.segments = Some(SegmentBody::take(extents, self.conn)?);
                }
                Some(DeliveryMessage::End) => {
                    self.ended = true;
                    return Ok(None);
                }
                Some(DeliveryMessage::Request(_)) => return Err(BodyError::Unexpected),
                None => return Err(BodyError::Closed),
            }
        }
    }

    /// Reads and drops what is left, so the connection is ready for the
    /// next request.
    pub async fn drain(&mut self) -> Result<(), BodyError> {
        // The rest of a body in segments needs no reading.
        self.segments = None;
        while !self.ended {
            let started = self.started;
            self.next().await?;
            self.started = started;
        }
        Ok(())
    }
}
