//! NAME
//!   smtp-client - Postern SMTP client
//!
//! SYNOPSIS
//!   smtp-client [--config PATH] [-o name=value ...]   (started by the master)
//!
//! DESCRIPTION
//!   smtp-client delivers mail from qmgr to remote SMTP servers: routing by
//!   MX, connection reuse, TLS and AUTH where configured.
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
    postern_daemon::run("smtp-client", |mut ctx| async move {
        postern_daemon::ipc_service::serve(&mut ctx, postern_ipc::Protocol::Delivery).await;
        Ok(())
    })
}
