//! local-delivery's delivery hook: the body is spooled to an unlinked
//! file (any size costs no memory), then each recipient is delivered from
//! it.

use std::sync::Arc;

use postern_config::Params;
use postern_daemon::delivery::{BodyError, BodySource, DeliveryAgent};
use postern_daemon::{Configured, Stream};
use postern_envelope::{EnhancedStatus, Relay};
use postern_ipc::delivery::{DeliveryReply, DeliveryRequest, DeliveryStatus, RecipientResult};
use tokio::io::AsyncWriteExt;

use crate::deliver::{Agent, Spooled};

/// The hook and what its deliveries share.
pub struct Local {
    pub agent: Agent,
    /// Read per request, so a reload applies to the next message.
    pub params: Configured<Arc<Params>>,
}

impl DeliveryAgent for Local {
    async fn deliver(
        &self,
        req: &DeliveryRequest,
        body: &mut BodySource<'_, Stream>,
    ) -> Result<DeliveryReply, BodyError> {
        let params = self.params.get();
        let spooled = match receive_body(body, &params).await? {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("{}: cannot spool message: {e}", req.queue_id);
                return Ok(all(req, &format!("cannot spool message: {e}")));
            }
        };
        let results = self.agent.deliver(&params, req, &spooled).await;
        Ok(DeliveryReply { results })
    }
}

/// Reads the body into an unlinked file under `$queue_directory/tmp-local/`.
/// The outer error is a broken connection to qmgr; the inner one a body
/// that could not be kept (the request is deferred; the server reads what
/// is left of the body).
async fn receive_body(
    body: &mut BodySource<'_, Stream>,
    params: &Params,
) -> Result<Result<Spooled, std::io::Error>, BodyError> {
    let dir = params.path("queue_directory").join("tmp-local");
    let mut file = match open_spool(&dir).await {
        Ok(f) => tokio::fs::File::from_std(f),
        Err(e) => {
            tracing::warn!("{}: {e}", dir.display());
            return Ok(Err(std::io::Error::other(format!(
                "cannot create a file in {}",
                dir.display()
            ))));
        }
    };
    loop {
        let data = match body.next().await {
            Ok(Some(data)) => data,
            Ok(None) => break,
            Err(BodyError::Segment(e)) => return Ok(Err(e)),
            Err(e) => return Err(e),
        };
        if let Err(e) = file.write_all(&data).await {
            return Ok(Err(e));
        }
    }
    let spooled = async {
        file.flush().await?;
        let mut spooled = Spooled {
            file: file.into_std().await,
            delivered_to: Vec::new(),
        };
        let limit = params.int("header_size_limit").max(1024) as usize;
        spooled.scan_headers(limit)?;
        Ok(spooled)
    };
    Ok(spooled.await)
}

async fn open_spool(dir: &std::path::Path) -> std::io::Result<std::fs::File> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        tempfile::tempfile_in(&dir)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Every recipient deferred with 4.3.0 (the agent's own failure).
fn all(req: &DeliveryRequest, text: &str) -> DeliveryReply {
    DeliveryReply {
        results: req
            .recipients
            .iter()
            .map(|r| RecipientResult {
                index: r.index,
                status: DeliveryStatus::Deferred,
                dsn: EnhancedStatus::TEMP_SYSTEM,
                relay: Relay::Local,
                detail: text.into(),
                remote_reply: None,
                connect_secs: 0.0,
                transmit_secs: 0.0,
            })
            .collect(),
    }
}
