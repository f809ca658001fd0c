//! The milter wire format: packets, the protocol's constants, and the
//! filter's replies decoded into [`Response`] values. Pure: no I/O.
//!
//! A packet is a 4-byte big-endian length that counts the command byte
//! and the data, then the command byte, then the data. Strings are
//! NUL-terminated; numbers are 32-bit big-endian ("network long"), the
//! client port a 16-bit big-endian "network short".
//!
//! The constants are Sendmail's `libmilter/mfdef.h` names (SMFIC_, SMFIR_,
//! SMFIP_, SMFIF_, SMFIM_), as Postfix's `milter8.c` defines its own copy.

use std::fmt;

/// The protocol version Postern speaks at most (Sendmail 8.14's).
pub const PROTOCOL_VERSION: u32 = 6;

/// Largest reply packet accepted, length field included. libmilter sends
/// at most 65535 data bytes per packet (body replacement comes in chunks
/// of that size); one MiB leaves room for a filter built with a larger
/// `MILTER_MAX_DATA_SIZE`, and bounds what one read may allocate.
pub const MAX_REPLY_PACKET: usize = 1 << 20;

/// Body content goes to the filter in chunks of at most this many bytes
/// (Postfix's and libmilter's `MILTER_CHUNK_SIZE`).
pub const BODY_CHUNK: usize = 65535;

/// Commands from the MTA to the filter (`SMFIC_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    Abort,
    Body,
    Connect,
    Macro,
    BodyEob,
    Helo,
    Header,
    Mail,
    Eoh,
    OptNeg,
    Quit,
    Rcpt,
    Data,
    Unknown,
}

impl Command {
    /// The command byte.
    pub fn code(self) -> u8 {
        match self {
            Command::Abort => b'A',
            Command::Body => b'B',
            Command::Connect => b'C',
            Command::Macro => b'D',
            Command::BodyEob => b'E',
            Command::Helo => b'H',
            Command::Header => b'L',
            Command::Mail => b'M',
            Command::Eoh => b'N',
            Command::OptNeg => b'O',
            Command::Quit => b'Q',
            Command::Rcpt => b'R',
            Command::Data => b'T',
            Command::Unknown => b'U',
        }
    }

    /// The libmilter name, as Postfix logs it (`SMFIC_DATA`).
    pub fn name(self) -> &'static str {
        match self {
            Command::Abort => "SMFIC_ABORT",
            Command::Body => "SMFIC_BODY",
            Command::Connect => "SMFIC_CONNECT",
            Command::Macro => "SMFIC_MACRO",
            Command::BodyEob => "SMFIC_BODYEOB",
            Command::Helo => "SMFIC_HELO",
            Command::Header => "SMFIC_HEADER",
            Command::Mail => "SMFIC_MAIL",
            Command::Eoh => "SMFIC_EOH",
            Command::OptNeg => "SMFIC_OPTNEG",
            Command::Quit => "SMFIC_QUIT",
            Command::Rcpt => "SMFIC_RCPT",
            Command::Data => "SMFIC_DATA",
            Command::Unknown => "SMFIC_UNKNOWN",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reply codes from the filter (`SMFIR_*`).
pub mod smfir {
    pub const ADDRCPT: u8 = b'+';
    pub const DELRCPT: u8 = b'-';
    pub const ACCEPT: u8 = b'a';
    pub const REPLBODY: u8 = b'b';
    pub const CONTINUE: u8 = b'c';
    pub const DISCARD: u8 = b'd';
    pub const CONN_FAIL: u8 = b'f';
    pub const CHGHEADER: u8 = b'm';
    pub const PROGRESS: u8 = b'p';
    pub const REJECT: u8 = b'r';
    pub const TEMPFAIL: u8 = b't';
    pub const SHUTDOWN: u8 = b'4';
    pub const ADDHEADER: u8 = b'h';
    pub const INSHEADER: u8 = b'i';
    pub const REPLYCODE: u8 = b'y';
    pub const QUARANTINE: u8 = b'q';
    pub const SKIP: u8 = b's';
    pub const CHGFROM: u8 = b'e';
    pub const ADDRCPT_PAR: u8 = b'2';
    pub const SETSYMLIST: u8 = b'l';
    /// The negotiation answer reuses the command byte.
    pub const OPTNEG: u8 = b'O';

    /// The libmilter name of a reply code, as Postfix logs it.
    pub fn name(code: u8) -> &'static str {
        match code {
            ADDRCPT => "SMFIR_ADDRCPT",
            DELRCPT => "SMFIR_DELRCPT",
            ACCEPT => "SMFIR_ACCEPT",
            REPLBODY => "SMFIR_REPLBODY",
            CONTINUE => "SMFIR_CONTINUE",
            DISCARD => "SMFIR_DISCARD",
            CONN_FAIL => "SMFIR_CONN_FAIL",
            CHGHEADER => "SMFIR_CHGHEADER",
            PROGRESS => "SMFIR_PROGRESS",
            REJECT => "SMFIR_REJECT",
            TEMPFAIL => "SMFIR_TEMPFAIL",
            SHUTDOWN => "SMFIR_SHUTDOWN",
            ADDHEADER => "SMFIR_ADDHEADER",
            INSHEADER => "SMFIR_INSHEADER",
            REPLYCODE => "SMFIR_REPLYCODE",
            QUARANTINE => "SMFIR_QUARANTINE",
            SKIP => "SMFIR_SKIP",
            CHGFROM => "SMFIR_CHGFROM",
            ADDRCPT_PAR => "SMFIR_ADDRCPT_PAR",
            SETSYMLIST => "SMFIR_SETSYMLIST",
            OPTNEG => "SMFIC_OPTNEG",
            _ => "(unknown filter reply)",
        }
    }
}

/// Protocol flags (`SMFIP_*`): events the filter does not want (`NO*`),
/// events it will not answer (`NR_*`), and protocol features.
pub mod smfip {
    pub const NOCONNECT: u32 = 1 << 0;
    pub const NOHELO: u32 = 1 << 1;
    pub const NOMAIL: u32 = 1 << 2;
    pub const NORCPT: u32 = 1 << 3;
    pub const NOBODY: u32 = 1 << 4;
    pub const NOHDRS: u32 = 1 << 5;
    pub const NOEOH: u32 = 1 << 6;
    /// Also known as `SMFIP_NOHREPL` (Postfix's `no_header_reply`).
    pub const NR_HDR: u32 = 1 << 7;
    pub const NOUNKNOWN: u32 = 1 << 8;
    pub const NODATA: u32 = 1 << 9;
    /// The MTA understands `SMFIR_SKIP`.
    pub const SKIP: u32 = 1 << 10;
    /// The filter wants rejected recipients too.
    pub const RCPT_REJ: u32 = 1 << 11;
    pub const NR_CONN: u32 = 1 << 12;
    pub const NR_HELO: u32 = 1 << 13;
    pub const NR_MAIL: u32 = 1 << 14;
    pub const NR_RCPT: u32 = 1 << 15;
    pub const NR_DATA: u32 = 1 << 16;
    pub const NR_UNKN: u32 = 1 << 17;
    pub const NR_EOH: u32 = 1 << 18;
    pub const NR_BODY: u32 = 1 << 19;
    /// Header values keep their leading space.
    pub const HDR_LEADSPC: u32 = 1 << 20;

    /// Every "do not send this event" flag.
    pub const NOSEND_MASK: u32 =
        NOCONNECT | NOHELO | NOMAIL | NORCPT | NOBODY | NOHDRS | NOEOH | NOUNKNOWN | NODATA;
    /// Every "no reply for this event" flag.
    pub const NOREPLY_MASK: u32 =
        NR_CONN | NR_HELO | NR_MAIL | NR_RCPT | NR_DATA | NR_UNKN | NR_HDR | NR_EOH | NR_BODY;
}

/// Actions the filter may take at end of message (`SMFIF_*`).
pub mod smfif {
    pub const ADDHDRS: u32 = 1 << 0;
    pub const CHGBODY: u32 = 1 << 1;
    pub const ADDRCPT: u32 = 1 << 2;
    pub const DELRCPT: u32 = 1 << 3;
    pub const CHGHDRS: u32 = 1 << 4;
    pub const QUARANTINE: u32 = 1 << 5;
    pub const CHGFROM: u32 = 1 << 6;
    pub const ADDRCPT_PAR: u32 = 1 << 7;
    pub const SETSYMLIST: u32 = 1 << 8;
}

/// Macro classes of `SMFIR_SETSYMLIST` lists (`SMFIM_*`).
pub mod smfim {
    pub const CONNECT: u32 = 0;
    pub const HELO: u32 = 1;
    pub const ENVFROM: u32 = 2;
    pub const ENVRCPT: u32 = 3;
    pub const DATA: u32 = 4;
    pub const EOM: u32 = 5;
    pub const EOH: u32 = 6;
}

/// Address families of `SMFIC_CONNECT` (`SMFIA_*`).
pub mod smfia {
    pub const UNKNOWN: u8 = b'U';
    pub const UNIX: u8 = b'L';
    pub const INET: u8 = b'4';
    pub const INET6: u8 = b'6';
}

/// Why a reply packet cannot be used. The texts are Postfix's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("bad packet length: {0}")]
    BadLength(u32),
    #[error("unreasonable packet length: {len} > {limit}")]
    TooLong { len: u32, limit: usize },
    #[error("reply {} was followed by {len} data bytes", smfir::name(*.code))]
    TrailingData { code: u8, len: usize },
    #[error("input packet too short for network long")]
    ShortLong,
    #[error("packet too short for string")]
    ShortString,
    #[error("missing string null terminator")]
    MissingNul,
    #[error("left-over data {0} bytes")]
    LeftOver(usize),
    #[error("unexpected filter response {} ({code:#04x})", smfir::name(*.code))]
    UnknownReply { code: u8 },
}

/// The data length announced by a packet header, checked against `limit`
/// (the largest packet, length field included) before anything is
/// allocated: zero and oversized lengths are errors.
pub fn data_length(header: [u8; 4], limit: usize) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(header);
    if len < 1 {
        return Err(WireError::BadLength(len));
    }
    if len as usize > limit.saturating_sub(4) {
        return Err(WireError::TooLong { len, limit });
    }
    Ok(len as usize - 1)
}

/// A command packet being built: append its arguments, then take the
/// bytes with [`Packet::finish`].
#[derive(Debug, Clone)]
pub struct Packet {
    bytes: Vec<u8>,
}

impl Packet {
    pub fn new(command: Command) -> Packet {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&[0, 0, 0, 0, command.code()]);
        Packet { bytes }
    }

    /// A NUL-terminated string. A NUL inside `s` ends it there, as the C
    /// string it becomes on the filter's side would.
    pub fn string(mut self, s: &str) -> Packet {
        let s = s.as_bytes();
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        self.bytes.extend_from_slice(&s[..end]);
        self.bytes.push(0);
        self
    }

    pub fn long(mut self, n: u32) -> Packet {
        self.bytes.extend_from_slice(&n.to_be_bytes());
        self
    }

    pub fn short(mut self, n: u16) -> Packet {
        self.bytes.extend_from_slice(&n.to_be_bytes());
        self
    }

    pub fn octet(mut self, b: u8) -> Packet {
        self.bytes.push(b);
        self
    }

    /// Raw bytes, no terminator (body chunks).
    pub fn raw(mut self, data: &[u8]) -> Packet {
        self.bytes.extend_from_slice(data);
        self
    }

    /// The packet on the wire, its length filled in.
    pub fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.bytes.len() - 4).unwrap_or(u32::MAX);
        self.bytes[..4].copy_from_slice(&len.to_be_bytes());
        self.bytes
    }
}

/// One reply from the filter, decoded but not yet judged: whether it is
/// allowed at this stage and by the negotiated actions is the client's
/// decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Accept,
    Continue,
    Discard,
    Reject,
    Tempfail,
    /// `SMFIR_SHUTDOWN`: 421 and the end of the session.
    Shutdown,
    Progress,
    Skip,
    /// `SMFIR_REPLYCODE` text, with its NUL, as sent; validated later.
    ReplyCode(Vec<u8>),
    Quarantine(String),
    AddHeader {
        name: String,
        value: String,
    },
    InsertHeader {
        index: u32,
        name: String,
        value: String,
    },
    ChangeHeader {
        index: u32,
        name: String,
        value: String,
    },
    ReplaceBody(Vec<u8>),
    ChangeFrom {
        sender: String,
        args: Option<String>,
    },
    AddRcpt(String),
    AddRcptPar {
        rcpt: String,
        args: Option<String>,
    },
    DelRcpt(String),
    /// The answer to `SMFIC_OPTNEG`.
    OptNeg(OptNegReply),
}

/// The filter's side of the negotiation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptNegReply {
    pub version: u32,
    /// `SMFIF_*` actions it wants.
    pub actions: u32,
    /// `SMFIP_*` flags it wants.
    pub protocol: u32,
    /// `SMFIR_SETSYMLIST` lists: macro class and space-separated names.
    pub macro_lists: Vec<(u32, String)>,
}

/// Reads the data of one reply packet.
struct Data<'a> {
    rest: &'a [u8],
}

impl Data<'_> {
    fn long(&mut self) -> Result<u32, WireError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<4>()
            .ok_or(WireError::ShortLong)?;
        self.rest = rest;
        Ok(u32::from_be_bytes(*head))
    }

    fn string(&mut self) -> Result<String, WireError> {
        if self.rest.is_empty() {
            return Err(WireError::ShortString);
        }
        let nul = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(WireError::MissingNul)?;
        let s = String::from_utf8_lossy(&self.rest[..nul]).into_owned();
        self.rest = &self.rest[nul + 1..];
        Ok(s)
    }

    /// An optional trailing string (the ESMTP arguments of CHGFROM and
    /// ADDRCPT_PAR); an empty one counts as none.
    fn optional_string(&mut self) -> Result<Option<String>, WireError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let s = self.string()?;
        Ok(Some(s).filter(|s| !s.is_empty()))
    }

    fn end(self) -> Result<(), WireError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(WireError::LeftOver(n)),
        }
    }
}

/// Decodes one reply packet (its command byte and data).
pub fn parse_response(code: u8, data: &[u8]) -> Result<Response, WireError> {
    let mut d = Data { rest: data };
    let flag = |r: Response| {
        if data.is_empty() {
            Ok(r)
        } else {
            Err(WireError::TrailingData {
                code,
                len: data.len(),
            })
        }
    };
    let response = match code {
        smfir::ACCEPT => return flag(Response::Accept),
        smfir::CONTINUE => return flag(Response::Continue),
        smfir::DISCARD => return flag(Response::Discard),
        smfir::REJECT => return flag(Response::Reject),
        smfir::TEMPFAIL => return flag(Response::Tempfail),
        smfir::SHUTDOWN => return flag(Response::Shutdown),
        smfir::PROGRESS => return flag(Response::Progress),
        smfir::SKIP => return flag(Response::Skip),
        smfir::REPLYCODE => return Ok(Response::ReplyCode(data.to_vec())),
        smfir::REPLBODY => return Ok(Response::ReplaceBody(data.to_vec())),
        smfir::QUARANTINE => {
            // Taken as text up to its NUL, as Postfix's buffer read does.
            let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
            return Ok(Response::Quarantine(
                String::from_utf8_lossy(&data[..end]).into_owned(),
            ));
        }
        smfir::ADDHEADER => Response::AddHeader {
            name: d.string()?,
            value: d.string()?,
        },
        smfir::INSHEADER => Response::InsertHeader {
            index: d.long()?,
            name: d.string()?,
            value: d.string()?,
        },
        smfir::CHGHEADER => Response::ChangeHeader {
            index: d.long()?,
            name: d.string()?,
            value: d.string()?,
        },
        smfir::CHGFROM => Response::ChangeFrom {
            sender: d.string()?,
            args: d.optional_string()?,
        },
        smfir::ADDRCPT => Response::AddRcpt(d.string()?),
        smfir::ADDRCPT_PAR => Response::AddRcptPar {
            rcpt: d.string()?,
            args: d.optional_string()?,
        },
        smfir::DELRCPT => Response::DelRcpt(d.string()?),
        smfir::OPTNEG => {
            let version = d.long()?;
            let actions = d.long()?;
            let protocol = d.long()?;
            let mut macro_lists = Vec::new();
            while !d.rest.is_empty() {
                let class = d.long()?;
                macro_lists.push((class, d.string()?));
            }
            Response::OptNeg(OptNegReply {
                version,
                actions,
                protocol,
                macro_lists,
            })
        }
        _ => return Err(WireError::UnknownReply { code }),
    };
    d.end()?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_count_the_command_byte() {
        let p = Packet::new(Command::Helo).string("mx.example").finish();
        assert_eq!(&p[..5], &[0, 0, 0, 12, b'H']);
        assert_eq!(&p[5..], b"mx.example\0");
        let p = Packet::new(Command::Abort).finish();
        assert_eq!(p, [0, 0, 0, 1, b'A']);
        let p = Packet::new(Command::Connect)
            .string("h")
            .octet(smfia::INET)
            .short(25)
            .string("1.2.3.4")
            .finish();
        assert_eq!(&p[4..], b"Ch\x004\x00\x191.2.3.4\0");
    }

    #[test]
    fn a_nul_inside_a_string_ends_it() {
        let p = Packet::new(Command::Unknown).string("a\0b").finish();
        assert_eq!(&p[4..], b"Ua\0");
    }

    #[test]
    fn lengths_are_checked_before_allocation() {
        assert_eq!(data_length([0, 0, 0, 1], MAX_REPLY_PACKET), Ok(0));
        assert_eq!(data_length([0, 0, 1, 0], MAX_REPLY_PACKET), Ok(255));
        assert_eq!(
            data_length([0, 0, 0, 0], MAX_REPLY_PACKET),
            Err(WireError::BadLength(0))
        );
        let huge = data_length([0xff, 0xff, 0xff, 0xff], MAX_REPLY_PACKET).unwrap_err();
        assert_eq!(
            huge.to_string(),
            format!("unreasonable packet length: 4294967295 > {MAX_REPLY_PACKET}")
        );
        assert!(data_length([0, 0x10, 0, 0], MAX_REPLY_PACKET).is_err());
    }

    #[test]
    fn decodes_every_reply() {
        assert_eq!(parse_response(b'a', b""), Ok(Response::Accept));
        assert_eq!(parse_response(b'c', b""), Ok(Response::Continue));
        assert_eq!(parse_response(b's', b""), Ok(Response::Skip));
        assert_eq!(
            parse_response(b'h', b"X-Spam\0yes\0"),
            Ok(Response::AddHeader {
                name: "X-Spam".into(),
                value: "yes".into()
            })
        );
        assert_eq!(
            parse_response(b'i', b"\0\0\0\x02X\0v\0"),
            Ok(Response::InsertHeader {
                index: 2,
                name: "X".into(),
                value: "v".into()
            })
        );
        assert_eq!(
            parse_response(b'm', b"\0\0\0\x01Subject\0\0"),
            Ok(Response::ChangeHeader {
                index: 1,
                name: "Subject".into(),
                value: String::new()
            })
        );
        assert_eq!(
            parse_response(b'e', b"<a@b>\0"),
            Ok(Response::ChangeFrom {
                sender: "<a@b>".into(),
                args: None
            })
        );
        assert_eq!(
            parse_response(b'e', b"<a@b>\0SIZE=10\0"),
            Ok(Response::ChangeFrom {
                sender: "<a@b>".into(),
                args: Some("SIZE=10".into())
            })
        );
        assert_eq!(
            parse_response(b'2', b"<c@d>\0NOTIFY=NEVER\0"),
            Ok(Response::AddRcptPar {
                rcpt: "<c@d>".into(),
                args: Some("NOTIFY=NEVER".into())
            })
        );
        assert_eq!(
            parse_response(b'+', b"<c@d>\0"),
            Ok(Response::AddRcpt("<c@d>".into()))
        );
        assert_eq!(
            parse_response(b'-', b"<c@d>\0"),
            Ok(Response::DelRcpt("<c@d>".into()))
        );
        assert_eq!(
            parse_response(b'q', b"spam\0"),
            Ok(Response::Quarantine("spam".into()))
        );
        assert_eq!(
            parse_response(b'b', b"new\r\n"),
            Ok(Response::ReplaceBody(b"new\r\n".to_vec()))
        );
        assert_eq!(
            parse_response(
                b'O',
                b"\0\0\0\x06\0\0\0\x01\0\0\0\x10\0\0\0\x02i {mail_addr}\0"
            ),
            Ok(Response::OptNeg(OptNegReply {
                version: 6,
                actions: 1,
                protocol: 0x10,
                macro_lists: vec![(2, "i {mail_addr}".into())],
            }))
        );
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        assert_eq!(
            parse_response(b'c', b"x").unwrap_err().to_string(),
            "reply SMFIR_CONTINUE was followed by 1 data bytes"
        );
        assert_eq!(parse_response(b'h', b"X\0v"), Err(WireError::MissingNul));
        assert_eq!(parse_response(b'h', b"X\0"), Err(WireError::ShortString));
        assert_eq!(
            parse_response(b'h', b"X\0v\0z"),
            Err(WireError::LeftOver(1))
        );
        assert_eq!(parse_response(b'm', b"\0\0"), Err(WireError::ShortLong));
        assert_eq!(
            parse_response(b'O', b"\0\0\0\x06"),
            Err(WireError::ShortLong)
        );
        assert_eq!(
            parse_response(b'O', b"\0\0\0\x06\0\0\0\0\0\0\0\0\0\0"),
            Err(WireError::ShortLong)
        );
        assert!(matches!(
            parse_response(b'Z', b""),
            Err(WireError::UnknownReply { code: b'Z' })
        ));
        // Every code with every short prefix of a pseudo-random packet.
        let mut x: u32 = 0x1234_5678;
        let junk: Vec<u8> = (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for code in 0..=255u8 {
            for n in 0..junk.len() {
                let _ = parse_response(code, &junk[..n]);
            }
        }
    }
}
