//! Postern's inter-process protocol: every message exchanged between Postern
//! processes is a serde type defined here, and this crate is the only code
//! that turns them into bytes.
//!
//! A frame is a u32 big-endian body length followed by the body, encoded
//! with bincode (kept inside the private `wire` module so it can be swapped).
//! Frames larger than [`MAX_FRAME`] are refused before anything is
//! allocated for them; mail bodies travel as a series of chunks of at most
//! [`BODY_CHUNK`] bytes, except that qmgr hands a delivery agent a body the
//! queue keeps in segment files as read-only descriptors of those files
//! (module `fds`, [`delivery::DeliveryMessage::Segments`]). Each connection opens with a [`Hello`] naming the
//! [`Protocol`] and [`PROTOCOL_VERSION`], answered by a [`HelloReply`].
//!
//! Oversized, truncated or garbled input produces an [`IpcError`], never a
//! panic; reads that may stall take a deadline from the caller.
//!
//! Envelope values (queue IDs, DSN parameters, client information and
//! protocol, enhanced status codes, delivery statuses, queue and recipient
//! states) are postern-envelope's types,
//! the same ones the queue stores: they cross every hop typed, never as
//! text to be parsed again.
//!
//! # Layout
//! - `error` — [`IpcError`].
//! - `wire` — bincode configuration, encode/decode of bodies (private).
//! - `frame` — length-prefixed frames: [`encode`]/[`decode`],
//!   [`write_frame`]/[`read_frame`] (tokio) and their `_sync` (std) twins.
//! - `connection` — [`Connection`]: buffered, cancel-safe receive, request/
//!   reply, and the hello exchange.
//! - `hello` — [`Protocol`], [`Hello`], [`HelloReply`].
//! - `fds` — descriptors passed with a frame: [`FdStream`], [`TakeFds`],
//!   [`Connection::send_with_fds`].
//! - [`status`] — child ↔ master status socketpair messages.
//! - [`control`] — qctl ↔ master messages.
//! - [`qmgr`] — submitters ↔ the queue manager (enqueueing).
//! - [`qmgr_admin`] — qctl ↔ the queue manager (listing, hold, delete, ...).
//! - [`delivery`] — qmgr ↔ delivery agents, with chunked message bodies.
//! - [`maildrop`] — the files sendmail leaves for pickup.
//! - [`tlsmgr`] — smtpd/smtp-client ↔ tlsmgr (session-ticket keys, client session cache).

mod bytes;
mod connection;
mod error;
mod fds;
mod frame;
mod hello;
mod idle;
mod wire;

pub mod control;
pub mod delivery;
pub mod maildrop;
pub mod qmgr;
pub mod qmgr_admin;
pub mod status;
pub mod tlsmgr;

pub use connection::Connection;
pub use error::IpcError;
pub use fds::{FdStream, MAX_FDS, TakeFds};
pub use frame::{decode, encode, read_frame, read_frame_sync, write_frame, write_frame_sync};
pub use hello::{Hello, HelloReply, Protocol};
pub use idle::IdleConnections;

/// Largest frame body accepted or produced (1 MiB); message bodies travel in
/// chunks (see [`BODY_CHUNK`]).
pub const MAX_FRAME: usize = 1 << 20;

/// Size of one message-body chunk in the delivery/qmgr protocols; well under
/// [`MAX_FRAME`] so a chunk plus its envelope always fits in one frame.
pub const BODY_CHUNK: usize = 64 * 1024;

/// Version carried in [`Hello`]; bump it on any incompatible message change.
pub const PROTOCOL_VERSION: u32 = 11;
