//! NAME
//!   qmgr - Postern queue manager
//!
//! SYNOPSIS
//!   qmgr [--config PATH] [-o name=value ...]   (started by the master)
//!
//! DESCRIPTION
//!   qmgr owns the mail queue: it is the only process that opens it. It
//!   takes messages from smtpd, schedules deliveries to smtp-client and
//!   local-delivery, retries deferred mail and returns bounces. The master
//!   treats it as exclusive: a restart stops the old qmgr before the new
//!   one starts, since the queue has one owner.
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
    postern_daemon::run("qmgr", |mut ctx| async move {
        ctx.set_exclusive();
        postern_daemon::ipc_service::serve(&mut ctx, postern_ipc::Protocol::Qmgr).await;
        Ok(())
    })
}
