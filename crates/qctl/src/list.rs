//! `qctl list` (mailq, postqueue -j).

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, bail};
use postern_daemon::date::Tm;
use postern_envelope::{QueueId, QueueName};
use postern_ipc::qmgr_admin::{AdminReply, AdminRequest, QueueEntry};

use crate::client::{IO_TIMEOUT, connect_qmgr, qmgr_refuse};

/// `qctl list`: each frame printed as it arrives, so a long queue starts
/// printing at once and qctl holds one frame at a time.
pub(crate) async fn list(socket: &Path, json: bool) -> anyhow::Result<()> {
    let mut conn = connect_qmgr(socket).await?;
    conn.send(&AdminRequest::List)
        .await
        .context("qmgr request")?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut mailq = Mailq::default();
    loop {
        let reply: Option<AdminReply> =
            conn.recv_timeout(IO_TIMEOUT).await.context("qmgr reply")?;
        match reply {
            Some(AdminReply::Queue { messages }) => {
                for m in &messages {
                    if json {
                        print_entry_json(&mut out, m)?;
                    } else {
                        mailq.entry(&mut out, m)?;
                    }
                }
                out.flush()?;
            }
            Some(AdminReply::End) => break,
            Some(other) => return qmgr_refuse(other),
            None => bail!("qmgr closed the connection in the middle of the listing"),
        }
    }
    if !json {
        mailq.end(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// The listing in mailq's layout, one message at a time.
#[derive(Default)]
pub(crate) struct Mailq {
    messages: u64,
    bytes: u64,
}

impl Mailq {
    fn entry(&mut self, out: &mut impl Write, m: &QueueEntry) -> std::io::Result<()> {
        if self.messages == 0 {
            writeln!(
                out,
                "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"
            )?;
        }
        self.messages += 1;
        self.bytes += m.size;
        let flag = match m.state {
            QueueName::Active => "*",
            QueueName::Hold => "!",
            QueueName::Corrupt => "#",
            QueueName::Deferred => "",
        };
        let sender = if m.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &m.sender
        };
        // The ID (with its flag) and the size share the 20 columns of
        // `-Queue ID-  --Size--`, so the columns stay aligned with our
        // 12-digit IDs.
        let head = format!("{}{flag}", m.id);
        let size = m.size.to_string();
        let pad = 20usize.saturating_sub(head.len() + size.len()).max(1);
        writeln!(
            out,
            "{head}{:pad$}{size} {:<20.20} {sender}",
            "",
            Tm::local(m.arrival_unix).mailq()
        )?;
        // Recipients under the reason of their last failure, as mailq
        // groups them.
        let mut shown: Option<&str> = None;
        for (rcpt, reason) in &m.recipients {
            let reason = reason
                .as_deref()
                .or(m.reason.as_deref())
                .filter(|r| !r.is_empty());
            if reason.is_some() && reason != shown {
                writeln!(out, "({})", reason.unwrap_or_default())?;
                shown = reason;
            }
            writeln!(out, "{:42}{rcpt}", "")?;
        }
        writeln!(out)
    }

    fn end(&self, out: &mut impl Write) -> std::io::Result<()> {
        if self.messages == 0 {
            return writeln!(out, "Mail queue is empty");
        }
        let n = self.messages;
        writeln!(
            out,
            "-- {} Kbytes in {} Request{}.",
            self.bytes.div_ceil(1024),
            n,
            if n == 1 { "" } else { "s" }
        )
    }
}

/// One JSON object per message and line, as `postqueue -j` prints them.
pub(crate) fn print_entry_json(out: &mut impl Write, m: &QueueEntry) -> anyhow::Result<()> {
    let recipients: Vec<serde_json::Value> = m
        .recipients
        .iter()
        .map(|(address, reason)| {
            let mut r = serde_json::json!({ "address": address });
            if let Some(reason) = reason.as_ref().or(m.reason.as_ref()) {
                r["delay_reason"] = reason.clone().into();
            }
            r
        })
        .collect();
    let obj = postqueue_fields(
        m.state,
        m.id,
        m.arrival_unix,
        m.size,
        &m.sender,
        recipients,
        m.next_try_unix,
    );
    writeln!(out, "{}", serde_json::to_string(&obj)?)?;
    Ok(())
}

/// The fields `postqueue -j` gives every message (`qctl show --json`
/// adds its own).
pub(crate) fn postqueue_fields(
    state: QueueName,
    id: QueueId,
    arrival_unix: i64,
    size: u64,
    sender: &str,
    recipients: Vec<serde_json::Value>,
    next_try_unix: Option<i64>,
) -> serde_json::Value {
    serde_json::json!({
        "queue_name": state.name(),
        "queue_id": id.to_string(),
        "arrival_time": arrival_unix,
        "message_size": size,
        "sender": sender,
        "recipients": recipients,
        "next_try_time": next_try_unix,
    })
}
