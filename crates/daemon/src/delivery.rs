//! The delivery agents' server (smtp-client, local-delivery), like
//! Postfix's deliver_request(3): on each qmgr connection the hello, then
//! requests one after another, each a [`DeliveryMessage::Request`], its
//! body and one [`DeliveryReply`]. An agent supplies only its delivery
//! hook ([`DeliveryAgent`]).
//!
//! The body arrives as [`DeliveryMessage::Body`] chunks, or the queue's
//! segment files passed as descriptors ([`DeliveryMessage::Segments`]), up
//! to [`DeliveryMessage::End`]; the hook reads it through [`BodySource`]
//! only as far as it needs (smtp-client when the SMTP server is ready for
//! it), so a message is never held whole in memory, and the server reads
//! and drops the rest.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use postern_ipc::delivery::{DeliveryMessage, DeliveryReply, DeliveryRequest, SegmentBody};
use postern_ipc::{Connection, IpcError, Protocol, TakeFds};

use crate::ipc::IpcSession;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::server::{Context, Shutdown, Stream, serve_sessions};

/// qmgr connections per process; each carries one delivery at a time.
const MAX_SESSIONS: usize = 4096;

/// What a delivery agent does with one request.
pub trait DeliveryAgent: Send + Sync + 'static {
    /// Delivers `req`, reading its body from `body`. Err only when qmgr's
    /// connection broke (then no reply can be sent anyway).
    fn deliver(
        &self,
        req: &DeliveryRequest,
        body: &mut BodySource<'_, Stream>,
    ) -> impl Future<Output = Result<DeliveryReply, BodyError>> + Send;
}

/// Serves qmgr's delivery requests with `agent` until shutdown, letting
/// deliveries in progress finish within drain_timeout. qmgr may take up to
/// ipc_timeout to send the next chunk of a body.
pub async fn serve_delivery<A: DeliveryAgent>(ctx: &mut Context, agent: A) {
    let drain = ctx.params().time("drain_timeout");
    let timeout =
        Arc::new(ctx.configured(|p, _| p.time("ipc_timeout").max(Duration::from_secs(1))));
    let agent = Arc::new(agent);
    serve_sessions(ctx, MAX_SESSIONS, drain, move |stream, _peer, shutdown| {
        let (agent, timeout) = (agent.clone(), timeout.clone());
        async move { serve_qmgr(stream, shutdown, &*agent, || timeout.get()).await }
    })
    .await;
}

/// One qmgr connection: the hello, then requests one after another.
async fn serve_qmgr<A: DeliveryAgent>(
    stream: Stream,
    shutdown: Shutdown,
    agent: &A,
    timeout: impl Fn() -> Duration,
) {
    let Some(mut session) = IpcSession::accept(stream, Protocol::Delivery, shutdown).await else {
        return;
    };
    // Between requests a stop is immediate; a delivery in progress runs to
    // its end (within drain_timeout).
    while let Some(frame) = session.next::<DeliveryMessage>(true).await {
        let DeliveryMessage::Request(req) = frame else {
            tracing::warn!(
                "{}: expected a request, got {}",
                Protocol::Delivery,
                kind(&frame)
            );
            return;
        };
        let mut body = BodySource::new(&mut session.conn, timeout());
        let reply = match agent.deliver(&req, &mut body).await {
            Ok(reply) => body.drain().await.map(|()| reply),
            Err(e) => Err(e),
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!("{}: {e}", req.queue_id);
                return;
            }
        };
        if !session.reply(&reply).await {
            return;
        }
    }
}

fn kind(m: &DeliveryMessage) -> &'static str {
    match m {
        DeliveryMessage::Request(_) => "Request",
        DeliveryMessage::Body { .. } => "Body",
        DeliveryMessage::Segments { .. } => "Segments",
        DeliveryMessage::End => "End",
    }
}

/// qmgr stopped sending the body properly: the connection to qmgr is
/// unusable (smtp-client abandons the SMTP transaction without its final
/// dot, so the remote server discards what it got).
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
    /// How long qmgr may take to send the next chunk.
    timeout: Duration,
    /// The body's segment files, while there is some of it left in them.
    segments: Option<SegmentBody>,
    /// The first chunk has been taken: the message cannot be offered to
    /// another server any more.
    started: bool,
    ended: bool,
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin + TakeFds> BodySource<'a, S> {
    pub fn new(conn: &'a mut Connection<S>, timeout: Duration) -> Self {
        BodySource {
            conn,
            timeout,
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
            match self.conn.recv_timeout(self.timeout).await? {
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
