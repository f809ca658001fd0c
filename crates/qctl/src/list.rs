//! `qctl list` (mailq, postqueue -j).

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, bail};
use postern_daemon::date::Tm;
use postern_envelope::QueueName;
use postern_ipc::qmgr_admin::{AdminReply, AdminRequest, MessageSummary, QueueEntry};

use crate::client::{IO_TIMEOUT, connect_qmgr, refuse};

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
            Some(other) => return refuse(other),
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
        self.bytes += m.summary.size;
        let flag = match m.summary.state {
            QueueName::Active => "*",
            QueueName::Hold => "!",
            QueueName::Corrupt => "#",
            QueueName::Deferred => "",
        };
        let sender = if m.summary.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &m.summary.sender
        };
        // The ID (with its flag) and the size share the 20 columns of
        // `-Queue ID-  --Size--`, so the columns stay aligned with our
        // 12-digit IDs.
        let head = format!("{}{flag}", m.summary.id);
        let size = m.summary.size.to_string();
        let pad = 20usize.saturating_sub(head.len() + size.len()).max(1);
        writeln!(
            out,
            "{head}{:pad$}{size} {:<20.20} {sender}",
            "",
            Tm::local(m.summary.arrival_unix).mailq()
        )?;
        // Recipients under the reason of their last failure, as mailq
        // groups them.
        let mut shown: Option<&str> = None;
        for (rcpt, reason) in &m.recipients {
            let reason = reason
                .as_deref()
                .or(m.summary.reason.as_deref())
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
            if let Some(reason) = reason.as_ref().or(m.summary.reason.as_ref()) {
                r["delay_reason"] = reason.clone().into();
            }
            r
        })
        .collect();
    let obj = postqueue_fields(&m.summary, recipients);
    writeln!(out, "{}", serde_json::to_string(&obj)?)?;
    Ok(())
}

/// The fields `postqueue -j` gives every message (`qctl show --json`
/// adds its own).
pub(crate) fn postqueue_fields(
    m: &MessageSummary,
    recipients: Vec<serde_json::Value>,
) -> serde_json::Value {
    serde_json::json!({
        "queue_name": m.state.name(),
        "queue_id": m.id.to_string(),
        "arrival_time": m.arrival_unix,
        "message_size": m.size,
        "sender": m.sender,
        "recipients": recipients,
        "next_try_time": m.next_try_unix,
    })
}
