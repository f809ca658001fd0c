//! sysexits(3) codes, which programs that run sendmail check, and the one
//! way sendmail stops with one: `sendmail: fatal: text` on standard error.

pub const EX_USAGE: u8 = 64;
pub const EX_DATAERR: u8 = 65;
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_SOFTWARE: u8 = 70;
pub const EX_OSERR: u8 = 71;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_NOPERM: u8 = 77;
pub const EX_CONFIG: u8 = 78;

/// Why sendmail gives up, and with which exit status.
#[derive(Debug)]
pub struct Fatal {
    pub status: u8,
    pub text: String,
}

impl Fatal {
    pub fn new(status: u8, text: impl Into<String>) -> Fatal {
        Fatal {
            status,
            text: text.into(),
        }
    }
}
