//! The SMTP protocol as pure values: bytes in, values out.
//!
//! `postern-smtp` is the codec shared by `smtpd` (the server) and
//! `smtp-client`. It does no I/O and knows nothing of tokio, sockets or
//! timeouts, so every parser here can be fuzzed and tested with golden files.
//! What it accepts follows Postfix's defaults (see each module); where it
//! deliberately differs, the module says so.
//!
//! # Layout
//!
//! - [`reply`]: [`Reply`] (code, enhanced status code, lines), its wire form,
//!   and [`ReplyParser`], the client's incremental reply reader.
//! - [`address`]: [`Address`], mailbox parsing from `MAIL FROM`/`RCPT TO`
//!   paths, canonical printing, and the routing predicates the relay check
//!   needs.
//! - [`command`]: [`parse_command`], one command line (without CRLF) to a
//!   [`Command`] or a [`CommandError`] carrying Postfix's reply; also ESMTP
//!   parameters and xtext.
//! - [`ehlo`]: building the server's EHLO reply and reading a server's
//!   capabilities.
//! - [`data`]: the `DATA` body: [`DataDecoder`] (dot-unstuffing, end at
//!   `<CR><LF>.<CR><LF>` only, bare newline policy against SMTP smuggling)
//!   and [`DataEncoder`] / [`dot_stuff`] for the client.
//!
//! `BDAT` chunks (RFC 3030) need no decoding: after `BDAT n` the server reads
//! exactly `n` raw octets, so no codec is involved beyond [`Command::Bdat`].
//!
//! ```
//! use postern_smtp::{BareNewlinePolicy, Command, DataDecoder, parse_command};
//!
//! let cmd = parse_command(b"mail from: user1@hogehoge.local").unwrap();
//! let Command::Mail { from, .. } = cmd else { unreachable!() };
//! assert_eq!(from.to_path(), "<user1@hogehoge.local>");
//!
//! let err = parse_command(b"RCPT TO:<>").unwrap_err();
//! assert_eq!(err.reply().to_string(), "501 5.1.3 Bad recipient address syntax");
//!
//! let mut data = DataDecoder::new(BareNewlinePolicy::Normalize, 998);
//! let mut message = Vec::new();
//! let progress = data.feed(b"hi\n.\nstill content\r\n.\r\nQUIT\r\n", &mut message);
//! assert!(progress.done);
//! assert_eq!(message, b"hi\r\n.\r\nstill content\r\n");
//! ```
//!
//! Tests: unit tests in each module, golden files in `tests/golden/`
//! (rewrite the `.ref` files with `UPDATE_GOLDEN=1 cargo test`), and
//! cargo-fuzz targets in `fuzz/`.

pub mod address;
pub mod command;
pub mod data;
pub mod ehlo;
pub mod reply;

pub use address::{Address, AddressError};
pub use command::{
    Body, Command, CommandError, ErrorKind, ForwardPath, MailParams, Notify, Orcpt, RcptParams,
    Ret, ReversePath, parse_command, xtext_decode, xtext_encode,
};
pub use data::{
    BareNewlinePolicy, DataDecoder, DataEncoder, DataProgress, bare_newline_reply,
    data_start_reply, dot_stuff,
};
pub use ehlo::{Capabilities, Extension, ehlo_reply};
pub use reply::{Reply, ReplyError, ReplyParser};
