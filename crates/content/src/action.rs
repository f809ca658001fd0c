//! The actions of header_checks(5), parsed once from a table's result.

/// What a header_checks or body_checks rule asks for. Action names are
/// case-insensitive; the text is what follows the name and its blanks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reject the whole message with the text (default
    /// `5.7.1 message content rejected`) and stop inspecting.
    Reject(String),
    /// Log `warning:` with the text.
    Warn(String),
    /// Log `info:` with the text.
    Info(String),
    /// Put the message on hold (once; not after DISCARD).
    Hold(String),
    /// Accept and silently drop the message, and stop inspecting.
    Discard(String),
    /// Turn off inspection for the rest of the message.
    Pass(String),
    /// Send the message through `transport:destination` (the last wins).
    Filter(String),
    /// Send the message to this address instead of its recipients, and
    /// stop inspecting (Postfix's cleanup turns inspection off here too).
    Redirect(String),
    /// Add a recipient (with NOTIFY=NONE).
    Bcc(String),
    /// Insert a line before the one inspected.
    Prepend(String),
    /// Replace the line inspected.
    Replace(String),
    /// Delete the line and log `strip:`.
    Strip(String),
    /// Delete the line silently.
    Ignore,
    /// As if nothing matched (`OK` is an old name for it).
    Dunno,
    /// A result that names no action (DELAY too: Postfix compiles it out);
    /// logged as a warning and ignored.
    Unknown(String),
}

impl Action {
    /// Parses a table result: the first word is the action, the rest
    /// (blanks skipped) its text.
    pub fn parse(result: &str) -> Action {
        let result = result.trim_start();
        let (word, text) = match result.find([' ', '\t']) {
            Some(i) => (&result[..i], result[i..].trim_start_matches([' ', '\t'])),
            None => (result, ""),
        };
        let text = text.to_string();
        match word.to_ascii_uppercase().as_str() {
            "REJECT" => Action::Reject(text),
            "WARN" => Action::Warn(text),
            "INFO" => Action::Info(text),
            "HOLD" => Action::Hold(text),
            "DISCARD" => Action::Discard(text),
            "PASS" => Action::Pass(text),
            "FILTER" => Action::Filter(text),
            "REDIRECT" => Action::Redirect(text),
            "BCC" => Action::Bcc(text),
            "PREPEND" => Action::Prepend(text),
            "REPLACE" => Action::Replace(text),
            "STRIP" => Action::Strip(text),
            "IGNORE" => Action::Ignore,
            "DUNNO" | "OK" => Action::Dunno,
            _ => Action::Unknown(result.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_text_follows_blanks() {
        assert_eq!(
            Action::parse("reject \t 5.7.0 go away"),
            Action::Reject("5.7.0 go away".into())
        );
        assert_eq!(Action::parse("REJECT"), Action::Reject(String::new()));
        assert_eq!(Action::parse("Ignore trailing words"), Action::Ignore);
        assert_eq!(Action::parse("OK"), Action::Dunno);
        assert_eq!(
            Action::parse("FILTER smtp:[127.0.0.1]:10025"),
            Action::Filter("smtp:[127.0.0.1]:10025".into())
        );
        assert_eq!(
            Action::parse("DELAY 1h"),
            Action::Unknown("DELAY 1h".into())
        );
        assert_eq!(
            Action::parse("PREPEND X-Seen: yes"),
            Action::Prepend("X-Seen: yes".into())
        );
    }
}
