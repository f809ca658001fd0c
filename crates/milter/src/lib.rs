//! The Sendmail milter protocol, MTA side: how smtpd (and later the path
//! of non-SMTP mail) lets content filters such as OpenDKIM, ClamAV's or
//! SpamAssassin's milters judge and change each message, as Postfix's
//! `src/milter/` does (MILTER_README).
//!
//! # The protocol
//!
//! One socket per filter per SMTP session. Packets are a 4-byte
//! big-endian length, a command byte and data. The MTA opens with
//! `SMFIC_OPTNEG` (version 6, the actions it can carry out, the protocol
//! flags it offers) and the filter answers with its own: the events it
//! does not want (`SMFIP_NO*`), the events it will not answer
//! (`SMFIP_NR_*`), the actions it may take (`SMFIF_*`) and, in version
//! 6, macro lists of its own (`SMFIR_SETSYMLIST`). Then each SMTP event
//! goes to the filter, preceded by `SMFIC_MACRO` with that stage's
//! macros: connect, HELO, MAIL, RCPT, DATA, each header, end of headers,
//! body chunks, end of message; ABORT between messages and QUIT at the
//! end. The filter answers continue, accept, reject, tempfail, discard,
//! a reply code, or at end of message first any number of modifications
//! (headers, body, sender, recipients, quarantine). `SMFIR_PROGRESS`
//! asks for more time, `SMFIR_SKIP` skips the rest of the body.
//!
//! Everything read is checked before it is used: a packet longer than
//! [`wire::MAX_REPLY_PACKET`] or of length zero, a string without its
//! NUL, a reply not allowed at that stage or by the negotiated actions,
//! a malformed reply code, a timeout or a closed socket mark the filter
//! failed, never panic. A failed filter is logged once (the
//! [`MilterError`] of the event where it failed, in Postfix's words) and
//! stands for `milter_default_action` for the rest of the session.
//!
//! # Use
//!
//! ```no_run
//! # async fn session(params: &postern_config::Params) -> Result<(), Box<dyn std::error::Error>> {
//! use postern_milter::{ClientAddr, ClientInfo, Header, MilterList, MilterSettings, Milters};
//!
//! let settings = MilterSettings::from_params(params, MilterList::Smtpd)?; // at start
//! let mut milters = Milters::new(&settings); // per session
//! let macros = |name: &str| (name == "j").then(|| "mx.example.com".to_string());
//! let client = ClientInfo { name: "unknown".into(), addr: ClientAddr::Unknown };
//! let outcome = milters.connect(&client, &macros).await;
//! for e in &outcome.errors {
//!     tracing::warn!("{e}");
//! }
//! if let Some(reply) = outcome.verdict.reply() {
//!     // answer every command with `reply`
//! }
//! let done = milters
//!     .message(&[Header::new("Subject", " hi")], &[b"body\r\n"], &macros)
//!     .await;
//! milters.abort().await;
//! milters.quit().await;
//! # Ok(()) }
//! ```
//!
//! # Differences from Postfix
//!
//! * A modification the filter did not negotiate (say `SMFIR_ADDHEADER`
//!   without `SMFIF_ADDHDRS`) is a protocol error; Postfix applies it.
//! * The chain returns modifications instead of editing a queue file, so
//!   every filter sees the message as received, and a filter that fails
//!   in the middle of a message has its modifications dropped.
//! * `SMFIR_QUARANTINE` is taken at end of message only (where libmilter
//!   allows it); a quarantine lasts for its message, not the session.
//! * `milter_macro_defaults`, `milter_header_checks` and `smtpd_milter_maps`
//!   are not implemented; `milter_default_action = shutdown` (Postfix
//!   3.11) is not offered.
//!
//! # Layout
//!
//! - [`wire`]: packets and constants (`SMFIC_*`, `SMFIR_*`, `SMFIP_*`,
//!   `SMFIF_*`), [`wire::parse_response`]; pure.
//! - [`negotiate`]: [`Offer`] (what a `milter_protocol` offers) and
//!   [`Negotiated`] (what holds after the filter's answer); pure.
//! - [`macros`]: [`MacroLists`] per [`Stage`], the [`MacroSource`] trait
//!   the caller implements.
//! - [`verdict`]: [`Verdict`], [`Modification`], [`DefaultAction`],
//!   [`MilterError`], [`Outcome`], [`MessageOutcome`].
//! - [`settings`]: [`MilterSettings::from_params`], [`MilterSpec`] and
//!   the per-filter `{ ... }` syntax, [`Endpoint`].
//! - [`client`]: [`Milter`], one filter's connection and states.
//! - [`chain`]: [`Milters`], the filters of one session in order.
//! - [`message`]: [`Split`], a message as filters see it with their
//!   header and body changes made, and [`EnvelopeChanges`]; pure.
//! - [`nonsmtp`]: [`nonsmtp::judge`], mail that does not arrive over
//!   SMTP through `non_smtpd_milters` in an emulated local session.
//!
//! Tests: unit tests in each module; `tests/` runs the client against
//! real libmilter filters (`tests/milters/testmilter.py` at the top of
//! the repository, on Debian's python3-milter) and against fake ones
//! that speak garbage or hang up.

pub mod chain;
pub mod client;
pub mod macros;
pub mod message;
pub mod negotiate;
pub mod nonsmtp;
pub mod settings;
pub mod verdict;
pub mod wire;

pub use chain::Milters;
pub use client::{ClientAddr, ClientInfo, Header, Milter, parse_reply_code};
pub use macros::{MacroLists, MacroSource, MacroValues, NoMacros, Stage};
pub use message::{EnvelopeChanges, Split};
pub use negotiate::{MTA_ACTIONS, Negotiated, Offer};
pub use settings::{Endpoint, MilterList, MilterSettings, MilterSpec, SettingsError, check_config};
pub use verdict::{
    DefaultAction, ErrorKind, MessageOutcome, MilterError, Modification, Outcome, Verdict,
};
