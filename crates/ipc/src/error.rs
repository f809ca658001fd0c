//! The one error type every IPC operation returns.

/// Why a frame could not be sent or received.
///
/// Every variant except [`IpcError::Timeout`] means the connection is no
/// longer trustworthy: the caller logs it and drops the connection.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// The underlying socket failed (including "broken pipe" on write).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A length prefix (received) or body (to be sent) exceeds the limit.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    /// The peer closed the stream in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// A complete frame whose body is not a valid message of the expected type.
    #[error("cannot decode message: {0}")]
    Decode(String),
    /// A message that cannot be serialized (should not happen with our types).
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// No complete frame arrived within the caller's deadline.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// The peer speaks the wrong protocol or version, or broke the exchange.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer closed the connection where an answer was required.
    #[error("connection closed by peer")]
    Closed,
}
