//! NAME
//!   tlsmgr - Postern TLS session manager
//!
//! SYNOPSIS
//!   tlsmgr [--config PATH] [-o name=value ...]   (started by the master)
//!
//! DESCRIPTION
//!   tlsmgr holds the TLS session-ticket keys shared by every smtpd process
//!   and the smtp-client's session cache.
//!
//!   This version speaks the IPC hello on its socket and stays connected;
//!   the requests it serves arrive with the work that needs them.
//!
//! CONFIGURATION PARAMETERS
//!   drain_timeout   how long open connections may finish after SIGTERM
//!
//! SEE ALSO
//!   master(8)

use std::process::ExitCode;

fn main() -> ExitCode {
    postern_daemon::run("tlsmgr", |mut ctx| async move {
        postern_daemon::ipc_service::serve(&mut ctx, postern_ipc::Protocol::Tlsmgr).await;
        Ok(())
    })
}
