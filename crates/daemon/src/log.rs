//! Logging in Postfix's mail log format, through `tracing`.
//!
//! Each event becomes one line,
//! `Nov 23 16:11:27 mail.example.local postern/smtpd[4242]: text`,
//! so pflogsumm and grep-based habits keep working. Warnings and errors get
//! Postfix's `warning: ` and `error: ` prefixes; [`fatal`] logs `fatal: `
//! and exits. Lines go to `maillog_file` when set (opened for append, one
//! write per line, so several processes can share it), else to stderr.
//! `POSTERN_LOG` takes a tracing filter (default `info`).

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Events with this target are printed with the `fatal: ` prefix.
pub const FATAL_TARGET: &str = "postern::fatal";

/// Formats an event as one mail log line.
struct MailLogFormat {
    host: String,
    /// `syslog_name/program`, e.g. `postern/smtpd`.
    ident: String,
    pid: u32,
}

impl<S, N> FormatEvent<S, N> for MailLogFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let prefix = if meta.target() == FATAL_TARGET {
            "fatal: "
        } else {
            match *meta.level() {
                Level::ERROR => "error: ",
                Level::WARN => "warning: ",
                _ => "",
            }
        };
        let mut fields = LineFields::default();
        event.record(&mut fields);
        writeln!(
            w,
            "{} {} {}[{}]: {}{}{}",
            timestamp(),
            self.host,
            self.ident,
            self.pid,
            prefix,
            fields.message,
            fields.rest
        )
    }
}

/// The `message` field, then any others as ` key=value`.
#[derive(Default)]
struct LineFields {
    message: String,
    rest: String,
}

impl Visit for LineFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={:?}", field.name(), value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.rest.push_str(&format!(" {}={}", field.name(), value));
        }
    }
}

/// Local time as syslog and Postfix's `maillog_file` write it
/// (`Nov  3 16:11:27`), the form log tools such as pflogsumm parse.
fn timestamp() -> String {
    crate::date::Tm::local(crate::date::unix_now()).syslog()
}

/// Installs the global logger. `maillog_file` empty means stderr.
pub fn init(
    host: &str,
    syslog_name: &str,
    program: &str,
    maillog_file: Option<&Path>,
) -> std::io::Result<()> {
    let format = MailLogFormat {
        host: host.to_string(),
        ident: format!("{syslog_name}/{program}"),
        pid: std::process::id(),
    };
    let filter = EnvFilter::try_from_env("POSTERN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .event_format(format)
        .with_env_filter(filter);
    let result = match maillog_file {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            builder.with_writer(Mutex::new(file)).try_init()
        }
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    // A second init (tests) keeps the first logger.
    let _ = result;
    Ok(())
}

/// Logs `fatal: text` and exits with status 1, as Postfix's msg_fatal does.
pub fn fatal(text: impl fmt::Display) -> ! {
    tracing::error!(target: FATAL_TARGET, "{text}");
    std::process::exit(1)
}

/// For failures before logging is set up: the same shape on stderr.
pub fn early_fatal(program: &str, text: impl fmt::Display) -> ! {
    let _ = writeln!(
        std::io::stderr(),
        "postern/{program}[{}]: fatal: {text}",
        std::process::id()
    );
    std::process::exit(1)
}
