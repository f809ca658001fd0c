//! Content inspection: Postfix's header_checks(5) and body_checks, run
//! over each message as it streams in. Postern has no cleanup daemon, so
//! smtpd runs this where Postfix's cleanup(8) would.
//!
//! Each logical header (a folded header joined with `\n`, as Postfix
//! looks it up) goes to one table list, as cleanup_header_callback
//! decides:
//!
//! * `mime_header_checks` (default `$header_checks`): MIME headers
//!   (Content-Type, Content-Transfer-Encoding, Content-Disposition,
//!   Content-Description, Content-ID, MIME-Version) wherever they are, and
//!   every header of a body part after a `--boundary`;
//! * `nested_header_checks` (default `$header_checks`): the other headers
//!   of an attached message/rfc822 (or message/global);
//! * `header_checks`: the other headers of the message itself.
//!
//! Everything else — body lines, boundary lines, the empty lines that end
//! header blocks — goes to `body_checks`, one line at a time, and only the
//! first `body_checks_size_limit` bytes of each body part. Lines longer
//! than `line_length_limit` are looked at in pieces of that length, a
//! header keeps at most about `header_size_limit` bytes (the excess is
//! dropped from the message, as Postfix does), and
//! `disable_mime_input_processing` makes everything after the message's
//! own headers body. Boundaries are cut at `mime_boundary_length_limit`;
//! multiparts nested deeper than `mime_nesting_limit` refuse the message
//! (`5.6.0 MIME nesting exceeds safety limit`) when header checks are set.
//!
//! The actions are header_checks(5)'s for Postfix 3.7 ([`Action`]); PASS
//! and STRIP are cleanup's as well. Each is logged in cleanup's format
//! (`ID: reject: header Subject: x from name[addr]; from=<s> to=<r>
//! proto=ESMTP helo=<h>: text`). After REJECT or DISCARD nothing more is
//! examined or written; after PASS or REDIRECT nothing more is examined.
//!
//! Where Postern differs: a non-UTF-8 line is looked up with the bytes
//! that are not UTF-8 replaced by U+FFFD (Postern's tables take text).
//!
//! ```no_run
//! # use postern_content::{ContentChecks, Inspector, LogContext};
//! # fn f(params: &postern_config::Params) -> Result<(), postern_content::ChecksError> {
//! if let Some(checks) = ContentChecks::from_params(params)? {
//!     let mut inspector = Inspector::new(&checks, LogContext::default());
//!     let mut out = Vec::new();
//!     inspector.push(b"Subject: hi\r\n\r\nbody\r\n", &mut out);
//!     let outcome = inspector.finish(&mut out);
//!     if let Some(reply) = outcome.verdict.reply() {
//!         println!("{reply}");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! * `lib.rs` — [`ContentChecks`]: the tables and limits, from the
//!   configuration.
//! * [`action`] — [`Action`]: a table result, parsed.
//! * `inspect` — [`Inspector`]: records, the MIME state machine, the
//!   actions; [`Outcome`] and [`Verdict`].
//! * `mime` — header names, MIME header names, Content-Type parsing.
//! * `log` — [`LogContext`] and the log lines.

pub mod action;
mod inspect;
mod log;
mod mime;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use postern_config::{Config, ConfigError, Maps, Params, TableError};

pub use action::Action;
pub use inspect::{Inspector, Outcome, Verdict};
pub use log::LogContext;
pub use mime::header_name_len;

/// A table list that could not be opened (a file with a syntax error
/// names its file and line).
#[derive(Debug, thiserror::Error)]
#[error("{param}: {source}")]
pub struct ChecksError {
    pub param: &'static str,
    #[source]
    pub source: TableError,
}

/// Opens the checks tables of `[main]` and of every service as smtpd
/// will, so that a broken pattern stops the master at start (or refuses a
/// reload) naming master.toml's line and the table's file and line,
/// rather than refusing mail later.
pub fn check_config(config: &Config) -> Result<(), ConfigError> {
    config.check_each_service(|params| {
        ContentChecks::from_params(params)
            .map(drop)
            .map_err(|e| (e.param.to_string(), e.source.to_string()))
    })
}

/// The opened tables and limits of content inspection; cloning shares
/// them.
#[derive(Clone, Debug)]
pub struct ContentChecks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    header: Option<Maps>,
    mime_header: Option<Maps>,
    nested_header: Option<Maps>,
    body: Option<Maps>,
    /// body_checks_size_limit; 0 is none.
    body_size_limit: u64,
    /// header_size_limit: a header stops growing past it.
    header_limit: usize,
    /// line_length_limit: the longest record.
    line_limit: usize,
    disable_mime: bool,
    /// mime_boundary_length_limit.
    boundary_limit: usize,
    /// mime_nesting_limit.
    nesting_limit: usize,
}

impl ContentChecks {
    /// Opens header_checks, mime_header_checks, nested_header_checks and
    /// body_checks. None when all four are empty: there is nothing to
    /// inspect, and the caller can pass content through untouched.
    pub fn from_params(params: &Params) -> Result<Option<ContentChecks>, ChecksError> {
        let mut opened: Vec<(String, Maps)> = Vec::new();
        let mut open = |param: &'static str| -> Result<Option<Maps>, ChecksError> {
            let spec = params.get(param);
            if spec.trim().is_empty() {
                return Ok(None);
            }
            // The same list (mime_header_checks = $header_checks, the
            // default) shares one set of tables.
            if let Some((_, maps)) = opened.iter().find(|(s, _)| *s == spec) {
                return Ok(Some(maps.clone()));
            }
            let maps = params
                .maps(param)
                .map_err(|source| ChecksError { param, source })?;
            opened.push((spec, maps.clone()));
            Ok(Some(maps))
        };
        let header = open("header_checks")?;
        let mime_header = open("mime_header_checks")?;
        let nested_header = open("nested_header_checks")?;
        let body = open("body_checks")?;
        if header.is_none() && mime_header.is_none() && nested_header.is_none() && body.is_none() {
            return Ok(None);
        }
        let size = |name: &str| usize::try_from(params.int(name).max(0)).unwrap_or(usize::MAX);
        Ok(Some(ContentChecks {
            inner: Arc::new(Inner {
                header,
                mime_header,
                nested_header,
                body,
                body_size_limit: params.int("body_checks_size_limit").max(0) as u64,
                header_limit: size("header_size_limit"),
                line_limit: size("line_length_limit").max(1),
                disable_mime: params.bool("disable_mime_input_processing"),
                boundary_limit: size("mime_boundary_length_limit"),
                nesting_limit: size("mime_nesting_limit"),
            }),
        }))
    }
}
