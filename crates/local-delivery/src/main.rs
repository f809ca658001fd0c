//! NAME
//!   local-delivery - Postern local delivery agent
//!
//! SYNOPSIS
//!   local-delivery [--config PATH] [-o name=value ...]   (started by the master)
//!
//! DESCRIPTION
//!   local-delivery writes mail for local recipients into mailboxes
//!   (Maildir or mbox), following aliases and .forward files.
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
    postern_daemon::run("local-delivery", |mut ctx| async move {
        postern_daemon::ipc_service::serve(&mut ctx, postern_ipc::Protocol::Delivery).await;
        Ok(())
    })
}
