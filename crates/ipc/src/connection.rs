//! A framed, buffered connection, and the hello exchange on top of it.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{HEADER, append_frame, parse_header};
use crate::{Hello, HelloReply, IpcError, PROTOCOL_VERSION, Protocol, wire};

/// Largest single read; also the capacity we shrink back to after a big frame.
const READ_CHUNK: usize = 64 * 1024;
/// Smallest read, so a 4-byte header does not cost a syscall of its own.
const MIN_READ: usize = 4 * 1024;
/// Fed frames are written once this many bytes wait.
const FEED_LIMIT: usize = 64 * 1024;

/// A framed, buffered connection over any stream (UnixStream in practice).
///
/// `recv` is cancel-safe: bytes read before a timeout or a losing
/// `select!` branch stay buffered, so after [`IpcError::Timeout`] the
/// connection may be used again. `send` is not cancel-safe (a frame may be
/// half written); after any error other than `Timeout` drop the connection.
pub struct Connection<S> {
    stream: S,
    /// Bytes received but not yet returned as a frame; never more than one
    /// maximal frame plus one read's worth.
    buf: Vec<u8>,
    /// Frames fed but not yet written (see [`Connection::feed`]).
    out: Vec<u8>,
}

impl<S: fmt::Debug> fmt::Debug for Connection<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("stream", &self.stream)
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S) -> Self {
        Connection {
            stream,
            buf: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Writes one frame, after any fed ones, and flushes.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), IpcError> {
        append_frame(msg, &mut self.out)?;
        self.write_out().await
    }

    /// Queues one frame to go out with the next [`send`](Self::send) (or
    /// once [`FEED_LIMIT`] bytes wait): frames that follow each other, as a
    /// request and its small body, then cost one write instead of several.
    pub async fn feed<T: Serialize>(&mut self, msg: &T) -> Result<(), IpcError> {
        append_frame(msg, &mut self.out)?;
        if self.out.len() >= FEED_LIMIT {
            self.write_out().await?;
        }
        Ok(())
    }

    async fn write_out(&mut self) -> Result<(), IpcError> {
        let result = self.stream.write_all(&self.out).await;
        self.out.clear();
        if self.out.capacity() > 2 * FEED_LIMIT {
            self.out.shrink_to(FEED_LIMIT);
        }
        result?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Receives one frame: Ok(None) on clean EOF between frames,
    /// [`IpcError::Truncated`] on EOF inside one. Waits as long as it takes;
    /// use [`recv_timeout`](Self::recv_timeout) when the peer may stall.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, IpcError> {
        loop {
            if let Some(body_len) = self.buffered_frame()? {
                let end = HEADER + body_len;
                let msg = wire::decode(&self.buf[HEADER..end]);
                self.buf.drain(..end);
                // Do not keep a megabyte around because of one big frame.
                if self.buf.capacity() > 2 * READ_CHUNK && self.buf.len() <= READ_CHUNK {
                    self.buf.shrink_to(READ_CHUNK);
                }
                return msg.map(Some);
            }
            // Only reached with an incomplete frame buffered, whose length
            // has been checked, so the buffer stays bounded by MAX_FRAME.
            let want = self.bytes_missing().clamp(MIN_READ, READ_CHUNK);
            self.buf.reserve(want);
            // read_buf is cancel-safe: a read either lands in buf or not at all.
            let n = self.stream.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(IpcError::Truncated)
                };
            }
        }
    }

    /// [`recv`](Self::recv) with a deadline for the whole frame.
    pub async fn recv_timeout<T: DeserializeOwned>(
        &mut self,
        d: Duration,
    ) -> Result<Option<T>, IpcError> {
        tokio::time::timeout(d, self.recv())
            .await
            .map_err(|_| IpcError::Timeout)?
    }

    /// Sends `q` and waits for one answer, all within `d`; EOF is
    /// [`IpcError::Closed`] since an answer was owed.
    pub async fn request<Q: Serialize, A: DeserializeOwned>(
        &mut self,
        q: &Q,
        d: Duration,
    ) -> Result<A, IpcError> {
        tokio::time::timeout(d, async {
            self.send(q).await?;
            self.recv().await?.ok_or(IpcError::Closed)
        })
        .await
        .map_err(|_| IpcError::Timeout)?
    }

    /// Client side of the hello: sends Hello{protocol, version}, expects HelloReply::Ok.
    pub async fn client_hello(&mut self, protocol: Protocol, d: Duration) -> Result<(), IpcError> {
        let hello = Hello {
            protocol: protocol.name().to_string(),
            version: PROTOCOL_VERSION,
        };
        match self.request::<_, HelloReply>(&hello, d).await? {
            HelloReply::Ok { version } if version == PROTOCOL_VERSION => Ok(()),
            HelloReply::Ok { version } => Err(IpcError::Protocol(format!(
                "{protocol}: server accepted with version {version}, we speak {PROTOCOL_VERSION}"
            ))),
            HelloReply::Refused { reason } => Err(IpcError::Protocol(format!(
                "{protocol}: server refused hello: {reason}"
            ))),
        }
    }

    /// Server side: reads Hello, checks protocol name and version, answers Ok or Refused{reason} and then errors.
    pub async fn server_hello(&mut self, protocol: Protocol, d: Duration) -> Result<(), IpcError> {
        tokio::time::timeout(d, self.server_hello_inner(protocol))
            .await
            .map_err(|_| IpcError::Timeout)?
    }

    async fn server_hello_inner(&mut self, protocol: Protocol) -> Result<(), IpcError> {
        let hello: Hello = match self.recv().await {
            Ok(Some(hello)) => hello,
            Ok(None) => return Err(IpcError::Closed),
            Err(IpcError::Decode(e)) => {
                // A whole frame arrived, just not a Hello: say so before
                // hanging up, so the client reports something useful.
                let reason = format!("expected a {protocol} hello: {e}");
                self.refuse(&reason).await;
                return Err(IpcError::Protocol(reason));
            }
            Err(e) => return Err(e),
        };
        let reason = if hello.protocol != protocol.name() {
            format!(
                "wrong protocol: this socket speaks {protocol}, client asked for {}",
                hello.protocol
            )
        } else if hello.version != PROTOCOL_VERSION {
            format!(
                "unsupported {protocol} version {}: server speaks {PROTOCOL_VERSION}",
                hello.version
            )
        } else {
            return self
                .send(&HelloReply::Ok {
                    version: PROTOCOL_VERSION,
                })
                .await;
        };
        self.refuse(&reason).await;
        Err(IpcError::Protocol(reason))
    }

    /// Best effort: the connection is being abandoned anyway, and the error
    /// that matters is the refusal reason, not a failure to deliver it.
    async fn refuse(&mut self, reason: &str) {
        tracing::debug!(reason, "refusing IPC hello");
        let reply = HelloReply::Refused {
            reason: reason.to_string(),
        };
        if let Err(e) = self.send(&reply).await {
            tracing::debug!(error = %e, "could not send hello refusal");
        }
    }

    /// The stream back; any bytes already buffered but not received are lost.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// The underlying stream, e.g. for peer credentials.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The underlying stream, e.g. to take passed descriptors.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The fed frames not yet written (for a write of their own).
    pub(crate) fn take_out(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Gives back the (empty) output buffer, keeping its allocation.
    pub(crate) fn restore_out(&mut self, out: Vec<u8>) {
        debug_assert!(out.is_empty());
        if out.capacity() <= 2 * FEED_LIMIT {
            self.out = out;
        }
    }

    /// Writes bytes already framed, and flushes.
    pub(crate) async fn write_raw(&mut self, data: &[u8]) -> Result<(), IpcError> {
        self.stream.write_all(data).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Bytes received and not yet returned as a frame.
    pub(crate) fn has_buffered_input(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The body length of a complete buffered frame, if there is one.
    fn buffered_frame(&self) -> Result<Option<usize>, IpcError> {
        let Some(header) = self.buf.first_chunk::<HEADER>() else {
            return Ok(None);
        };
        let len = parse_header(*header)?;
        Ok((self.buf.len() >= HEADER + len).then_some(len))
    }

    /// How many more bytes complete the frame being buffered (at least 1).
    fn bytes_missing(&self) -> usize {
        match self.buf.first_chunk::<HEADER>() {
            // Length already validated by buffered_frame.
            Some(header) => (HEADER + u32::from_be_bytes(*header) as usize)
                .saturating_sub(self.buf.len())
                .max(1),
            None => HEADER - self.buf.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One near-maximal frame must not pin a megabyte for the connection's life.
    #[tokio::test]
    async fn buffer_shrinks_after_a_big_frame() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let big = vec![7u8; crate::MAX_FRAME - 16];
        let writer = tokio::spawn(async move {
            let mut c = Connection::new(a);
            c.send(&big).await.unwrap();
            c.send(&1u8).await.unwrap();
        });
        let mut c = Connection::new(b);
        let got: Vec<u8> = c.recv().await.unwrap().unwrap();
        assert_eq!(got.len(), crate::MAX_FRAME - 16);
        assert!(c.buf.capacity() <= 2 * READ_CHUNK, "{}", c.buf.capacity());
        assert_eq!(c.recv::<u8>().await.unwrap(), Some(1));
        writer.await.unwrap();
    }

    /// Fed frames wait for the next send and then go out before it, in
    /// order; a frame too big to encode leaves the fed ones intact.
    #[tokio::test]
    async fn fed_frames_go_out_with_the_next_send() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let mut writer = Connection::new(a);
        let mut reader = Connection::new(b);
        writer.feed(&1u32).await.unwrap();
        writer.feed(&2u32).await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), reader.recv::<u32>())
                .await
                .is_err(),
            "nothing is written before the send"
        );
        let too_big = vec![0u8; crate::MAX_FRAME + 1];
        assert!(matches!(
            writer.feed(&too_big).await,
            Err(IpcError::FrameTooLarge { .. })
        ));
        writer.send(&3u32).await.unwrap();
        for want in 1..=3u32 {
            assert_eq!(reader.recv::<u32>().await.unwrap(), Some(want));
        }
    }
}
