//! `qctl show ID` (postcat -q).

use std::path::Path;

use anyhow::{Context as _, bail};
use postern_daemon::date::Tm;
use postern_envelope::QueueId;
use postern_ipc::qmgr_admin::{AdminReply, AdminRequest, MessageInfo};

use crate::client::{IO_TIMEOUT, connect_qmgr, refuse};

/// `qctl show`: the envelope, then the message streamed in chunks.
pub(crate) async fn show(socket: &Path, id: QueueId, json: bool) -> anyhow::Result<()> {
    let mut conn = connect_qmgr(socket).await?;
    let info = match conn
        .request(&AdminRequest::Show { id }, IO_TIMEOUT)
        .await
        .context("qmgr request")?
    {
        AdminReply::Message { message } => message,
        other => return refuse(other),
    };
    let mut body = Vec::new();
    loop {
        let reply: Option<AdminReply> =
            conn.recv_timeout(IO_TIMEOUT).await.context("qmgr reply")?;
        match reply {
            Some(AdminReply::Body { data }) => body.extend_from_slice(&data),
            Some(AdminReply::End) => break,
            Some(other) => return refuse(other),
            None => bail!("qmgr closed the connection in the middle of the message"),
        }
    }
    if json {
        print_message_json(&info, &body)
    } else {
        print_message(&info, &body)
    }
}

/// The envelope and content in postcat's layout, lines ending in LF.
pub(crate) fn print_message(m: &MessageInfo, body: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let place = format!("{}/{}", m.summary.state, m.summary.id);
    let mut out = String::new();
    out.push_str(&format!("*** ENVELOPE RECORDS {place} ***\n"));
    out.push_str(&format!("queue_state: {}\n", m.summary.state));
    out.push_str(&format!("message_size: {}\n", m.summary.size));
    out.push_str(&format!(
        "message_arrival_time: {}\n",
        Tm::local(m.summary.arrival_unix).asctime()
    ));
    out.push_str(&format!("delivery_attempts: {}\n", m.attempts));
    if let Some(t) = m.last_attempt_unix {
        out.push_str(&format!("last_attempt_time: {}\n", Tm::local(t).asctime()));
    }
    if let Some(t) = m.summary.next_try_unix {
        out.push_str(&format!("next_attempt_time: {}\n", Tm::local(t).asctime()));
    }
    if let Some(reason) = &m.summary.reason {
        out.push_str(&format!("delay_reason: {reason}\n"));
    }
    if let Some(c) = &m.client {
        out.push_str(&format!("client_name: {}\n", c.name));
        out.push_str(&format!("client_address: {}\n", c.addr));
        out.push_str(&format!("helo_name: {}\n", c.helo));
        out.push_str(&format!("protocol_name: {}\n", c.protocol));
        if let Some(u) = &c.sasl_username {
            out.push_str(&format!("sasl_username: {u}\n"));
        }
    }
    if let Some(envid) = &m.envid {
        out.push_str(&format!("dsn_envid: {envid}\n"));
    }
    if let Some(ret) = m.ret {
        out.push_str(&format!("dsn_ret: {}\n", ret.keyword()));
    }
    out.push_str(&format!("sender: {}\n", m.summary.sender));
    for r in &m.recipients {
        if let Some(orcpt) = &r.orcpt {
            out.push_str(&format!("original_recipient: {orcpt}\n"));
        }
        out.push_str(&format!("recipient: {}\n", r.address));
        let mut state = r.state.to_string();
        if let Some(dsn) = &r.dsn {
            state.push_str(&format!(" dsn={dsn}"));
        }
        if let Some(reason) = &r.reason {
            state.push_str(&format!(" ({reason})"));
        }
        out.push_str(&format!("recipient_state: {state}\n"));
    }
    out.push_str(&format!("*** MESSAGE CONTENTS {place} ***\n"));
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    let mut text = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\r' && body.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        text.push(body[i]);
        i += 1;
    }
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    stdout.write_all(&text)?;
    stdout.write_all(format!("*** MESSAGE FILE END {place} ***\n").as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// The shown message as one JSON object, with postqueue -j's field names
/// where it has them.
pub(crate) fn print_message_json(m: &MessageInfo, body: &[u8]) -> anyhow::Result<()> {
    let recipients: Vec<serde_json::Value> = m
        .recipients
        .iter()
        .map(|r| {
            serde_json::json!({
                "address": r.address,
                "orig_rcpt": r.orcpt.as_ref().map(ToString::to_string),
                "state": r.state.name(),
                "reason": r.reason,
                "dsn": r.dsn.map(|d| d.to_string()),
            })
        })
        .collect();
    let client = m.client.as_ref().map(|c| {
        serde_json::json!({
            "name": c.name,
            "address": c.addr,
            "helo": c.helo,
            "protocol": c.protocol.name(),
            "sasl_username": c.sasl_username,
        })
    });
    let mut obj = crate::list::postqueue_fields(&m.summary, recipients);
    for (key, value) in [
        ("delay_reason", serde_json::json!(m.summary.reason)),
        ("attempts", m.attempts.into()),
        ("last_attempt_time", m.last_attempt_unix.into()),
        ("client", client.into()),
        ("envid", m.envid.clone().into()),
        ("ret", m.ret.map(|r| r.keyword()).into()),
        ("message", String::from_utf8_lossy(body).into()),
    ] {
        obj[key] = value;
    }
    println!("{}", serde_json::to_string(&obj)?);
    Ok(())
}
