//! Log lines in cleanup(8)'s format: `ID: reject: header Subject: x from
//! client[192.0.2.1]; from=<a@b> to=<c@d> proto=ESMTP helo=<h>: text`.

/// Who and what a message is, for the log lines of its actions; the caller
/// fills what it knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogContext {
    pub queue_id: String,
    /// Postfix's log origin: `name[addr]` of the SMTP client (`local` for
    /// mail submitted on this host); empty logs `unknown`.
    pub client: String,
    /// The envelope sender (`Some("")` is the null sender, `from=<>`).
    pub sender: Option<String>,
    /// The last recipient, as cleanup(8) logs it.
    pub recipient: Option<String>,
    /// `SMTP`, `ESMTP`, ...
    pub protocol: Option<String>,
    pub helo: Option<String>,
}

impl LogContext {
    fn origin(&self) -> &str {
        if self.client.is_empty() {
            "unknown"
        } else {
            &self.client
        }
    }
}

/// How much of the inspected line an action's log line shows.
const CONTENT_LOG_LIMIT: usize = 200;

impl LogContext {
    /// `ID: action: where content from origin; from=<> ...: text`, as
    /// cleanup_act_log writes it. `content` is cut at 200 bytes.
    pub(crate) fn action_line(
        &self,
        action: &str,
        place: &str,
        content: &[u8],
        text: &str,
    ) -> String {
        let origin = self.origin();
        let shown = &content[..content.len().min(CONTENT_LOG_LIMIT)];
        let mut line = format!(
            "{}: {action}: {place} {} from {origin};",
            self.queue_id,
            String::from_utf8_lossy(shown)
        );
        if let Some(s) = &self.sender {
            line.push_str(&format!(" from=<{s}>"));
        }
        if let Some(r) = &self.recipient {
            line.push_str(&format!(" to=<{r}>"));
        }
        if let Some(p) = &self.protocol {
            line.push_str(&format!(" proto={p}"));
        }
        if let Some(h) = &self.helo {
            line.push_str(&format!(" helo=<{h}>"));
        }
        if !text.is_empty() {
            line.push_str(": ");
            line.push_str(text);
        }
        printable(&line)
    }

    /// cleanup's MIME error line: `ID: reject: mime-error TEXT: content
    /// from origin; from=<s> to=<r>` (content cut at 100 bytes).
    pub(crate) fn mime_error_line(&self, error: &str, content: &[u8]) -> String {
        let origin = self.origin();
        let shown = &content[..content.len().min(100)];
        printable(&format!(
            "{}: reject: mime-error {error}: {} from {origin}; from=<{}> to=<{}>",
            self.queue_id,
            String::from_utf8_lossy(shown),
            self.sender.as_deref().unwrap_or(""),
            self.recipient.as_deref().unwrap_or("unknown"),
        ))
    }
}

/// Postfix's logger replaces what is not printable with `?`: control
/// characters (so a folded header logs its line break as `??`) and, from
/// the lossy conversion, bytes that are not UTF-8.
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() || c == char::REPLACEMENT_CHARACTER {
                '?'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_line_layout() {
        let mut ctx = LogContext {
            queue_id: "4Q1".into(),
            client: "client.example[192.0.2.1]".into(),
            sender: Some("a@b".into()),
            recipient: Some("c@d".into()),
            protocol: Some("ESMTP".into()),
            helo: Some("x".into()),
        };
        assert_eq!(
            ctx.action_line("warning", "header", b"Subject: hello", "optional text"),
            "4Q1: warning: header Subject: hello from client.example[192.0.2.1]; \
             from=<a@b> to=<c@d> proto=ESMTP helo=<x>: optional text"
        );
        ctx.sender = Some(String::new());
        ctx.recipient = None;
        ctx.helo = None;
        ctx.client = String::new();
        assert_eq!(
            ctx.action_line("info", "body", b"a\r\n\tb\xff", ""),
            "4Q1: info: body a???b? from unknown; from=<> proto=ESMTP"
        );
        let long = vec![b'x'; 300];
        let line = ctx.action_line("hold", "body", &long, "");
        assert!(
            line.contains(&format!(" {} from", "x".repeat(200))),
            "{line}"
        );
    }
}
