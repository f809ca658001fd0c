//! The maildrop file: what `sendmail` leaves in `$queue_directory/maildrop/`
//! for pickup, as Postfix's postdrop leaves a queue file for pickup(8).
//!
//! A file is one frame holding a [`Submission`] (the envelope as the command
//! line and `-t` gave it), followed by the message: CRLF lines, no
//! dot-stuffing, nothing more. Who submitted it is not in the file: pickup
//! takes that from the file's owner, which the kernel sets.
//!
//! A file is complete when its owner-execute bit is set ([`COMPLETE`]),
//! as in Postfix: sendmail sets it after the content is on disk, so a file
//! still being written, or left by a sendmail that died, is never picked
//! up.

use postern_envelope::Ret;
use serde::{Deserialize, Serialize};

use crate::IpcError;
use crate::frame::HEADER;
pub use crate::qmgr::EnvelopeRecipient;

/// The directory, under `queue_directory`.
pub const DIR: &str = "maildrop";

/// The trigger socket pickup listens on, under `queue_directory`; any
/// user may connect (public/), and a connection only says "look now".
pub const TRIGGER: &str = "public/pickup";

/// The mode bit that marks a complete file (owner execute).
pub const COMPLETE: u32 = 0o100;

/// The envelope of one submitted message.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Submission {
    /// `-f` / `-r`; `None` is the submitting user (pickup fills in the
    /// login name of the file's owner). `Some("")` is the null sender.
    pub sender: Option<String>,
    /// `-F` or the `NAME` environment variable: the full name in a `From:`
    /// header pickup adds when the message has none.
    pub full_name: Option<String>,
    /// From the command line, then those `-t` took from the headers
    /// (with `-N` as each one's NOTIFY), or from `-bs`'s RCPT commands.
    pub recipients: Vec<EnvelopeRecipient>,
    /// `-R`.
    pub ret: Option<Ret>,
    /// `-V`.
    pub envid: Option<String>,
    /// `-bv`: report on each recipient instead of delivering.
    pub verify: bool,
}

/// The file's bytes: the envelope frame, then `content`.
pub fn encode(sub: &Submission, content: &[u8]) -> Result<Vec<u8>, IpcError> {
    let mut out = Vec::with_capacity(content.len() + 256);
    crate::frame::append_frame(sub, &mut out)?;
    out.extend_from_slice(content);
    Ok(out)
}

/// Splits a file's bytes into its envelope and its message.
pub fn decode(file: &[u8]) -> Result<(Submission, &[u8]), IpcError> {
    let Some(prefix) = file.get(..HEADER) else {
        return Err(IpcError::Truncated);
    };
    let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
    if len > crate::MAX_FRAME {
        return Err(IpcError::FrameTooLarge {
            len,
            max: crate::MAX_FRAME,
        });
    }
    let body = file.get(HEADER..HEADER + len).ok_or(IpcError::Truncated)?;
    let drop = crate::decode(body)?;
    Ok((drop, &file[HEADER + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let drop = Submission {
            sender: Some("alice@example.org".into()),
            recipients: vec![EnvelopeRecipient {
                address: "bob".into(),
                notify: Some(postern_envelope::Notify::NEVER),
                orcpt: None,
            }],
            ..Submission::default()
        };
        let bytes = encode(&drop, b"Subject: x\r\n\r\nhi\r\n").unwrap();
        let (back, content) = decode(&bytes).unwrap();
        assert_eq!(back, drop);
        assert_eq!(content, b"Subject: x\r\n\r\nhi\r\n");
        assert!(matches!(decode(&bytes[..3]), Err(IpcError::Truncated)));
        assert!(matches!(decode(&bytes[..10]), Err(IpcError::Truncated)));
        assert!(matches!(
            decode(b"\xff\xff\xff\xffxxxx"),
            Err(IpcError::FrameTooLarge { .. })
        ));
        assert!(decode(b"\0\0\0\x02\xff\xff").is_err());
    }
}
