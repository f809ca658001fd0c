//! `qctl newaliases` (and qctl run as `newaliases`): check the aliases(5)
//! files `alias_database` names, as Postfix's newaliases rebuilds them.
//! Postern reads aliases files as they are, so nothing is rebuilt: this
//! only reports what local-delivery could not read, with file and line.

use std::process::ExitCode;

use postern_config::{Config, Table, TableError};

/// sysexits(3): a file that does not parse, one that cannot be read, and
/// a parameter that is not a table list.
const EX_DATAERR: u8 = 65;
const EX_NOINPUT: u8 = 66;
const EX_CONFIG: u8 = 78;

/// Opens each table of `alias_database` in aliases(5) syntax; prints
/// `newaliases: fatal: FILE:LINE: reason` for the first one that fails.
pub fn check(config: &Config) -> ExitCode {
    let params = config.main();
    let base = params.base_dir().to_path_buf();
    for spec in params.list("alias_database") {
        // A file missing at open is reported at the first lookup (as
        // local-delivery would meet it).
        let opened = Table::open_aliases(&spec, &base).and_then(|t| t.lookup("postmaster"));
        match opened {
            Ok(_) => {}
            Err(e) => {
                eprintln!("newaliases: fatal: {e}");
                return ExitCode::from(match e {
                    TableError::Syntax { .. } => EX_DATAERR,
                    TableError::Io { .. } | TableError::Unavailable { .. } => EX_NOINPUT,
                    _ => EX_CONFIG,
                });
            }
        }
    }
    ExitCode::SUCCESS
}
