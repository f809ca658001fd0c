//! The daemon skeleton every Postern process stands on, like Postfix's
//! `single_server`/`multi_server` skeletons in `src/master`.
//!
//! A daemon's `main` names itself and hands the skeleton one async function;
//! the skeleton owns the process life around it: the command line
//! (`--config`, `-o name=value`), the configuration and its reload on
//! SIGHUP, the listening sockets inherited from the master, the drop of
//! privileges to `mail_owner`, logging in Postfix's line format, readiness
//! and heartbeats to the master, and a graceful drain on SIGTERM.
//!
//! # Layout
//!
//! - [`args`]: the command line shared by every binary.
//! - [`configured`]: state built once per configuration, again on reload.
//! - [`date`]: dates and times as Postfix writes them, in local time.
//! - [`delivery`]: the delivery agents' server loop and body reader
//!   (smtp-client and local-delivery supply only their delivery hook).
//! - [`dns`]: the resolver built from `dns_servers`.
//! - [`enqueue`]: one message into the queue through qmgr, for daemons
//!   that make mail (forwarding, pickup).
//! - [`inherit`]: the file-descriptor contract between master and children
//!   (which fd is the status socket, which are the listeners, the environment).
//! - [`ipc`]: the hello and the request loop of an internal service's
//!   connections.
//! - [`privs`]: dropping root to `mail_owner`.
//! - [`log`]: tracing set up to write `postern/smtpd[pid]: text` lines.
//! - [`server`]: [`run`], the [`Context`] handed to a daemon, the one
//!   accept loop for many sessions per process ([`serve_sessions`], or
//!   [`accept_sessions`] for a daemon with work of its own, with
//!   [`Sessions::accept_on`] for another protocol on some of its sockets)
//!   and the drain on shutdown.
//! - [`status`]: readiness, heartbeats and wakeups over the status socket.
//!
//! # Differences from Postfix
//!
//! Postfix's master spawns one process per session up to `process_limit`;
//! a Postern daemon serves many sessions in one async process, so the master
//! starts exactly `process_limit` processes per service and keeps them running.

pub mod args;
pub mod configured;
pub mod date;
pub mod delivery;
pub mod dns;
pub mod dnsbl;
pub mod enqueue;
pub mod inherit;
pub mod ipc;
pub mod log;
pub mod privs;
pub mod server;
pub mod status;

pub use args::CommonArgs;
pub use configured::Configured;
pub use server::{
    Context, Listener, Peer, Sessions, Shutdown, Stream, accept_sessions, run, serve_sessions,
};
