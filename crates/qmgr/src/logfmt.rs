//! The delay fields of the mail log as Postfix writes them (`delay=0.12,
//! delays=0.01/0.01/0/0.1`); dates are postern_daemon::date's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Significant digits of a logged delay (Postfix's fixed `SIG_DIGS`).
const SIG_DIGITS: u32 = 2;
/// Most decimals shown (Postfix's `delay_logging_resolution_limit` default).
const MAX_DECIMALS: u32 = 2;

/// Formats a delay as Postfix's log does: two significant digits, at most
/// two decimals, no trailing zeros, whole seconds once it reaches 10.
pub fn delay(d: Duration) -> String {
    let mut sec = d.as_secs();
    let mut usec = u64::from(d.subsec_micros());
    const MILLION: u64 = 1_000_000;
    let width = 10u64.pow(SIG_DIGITS);
    // The resolution: the smallest microsecond step worth printing.
    let mut res = MILLION / 10u64.pow(MAX_DECIMALS);
    if sec > 0 {
        let mut n = 1;
        while sec >= n && n <= width / 10 {
            n *= 10;
        }
        res = (MILLION / width) * n;
    } else {
        while usec >= width * res {
            res *= 10;
        }
    }
    if res > 1 {
        usec += res / 2;
        if usec >= MILLION {
            sec += 1;
            usec -= MILLION;
        }
    }
    let mut out = sec.to_string();
    if usec >= res {
        out.push('.');
        let mut rem = usec;
        let mut n = MILLION / 10;
        while rem >= res && n > 0 {
            out.push(char::from(b'0' + (rem / n) as u8));
            rem %= n;
            n /= 10;
        }
    }
    out
}

/// Seconds since the epoch as a Duration (zero before 1970).
pub fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// The later minus the earlier, zero if the clock went back.
pub fn between(earlier: SystemTime, later: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(secs: f64) -> String {
        delay(Duration::from_secs_f64(secs))
    }

    #[test]
    fn delays_look_like_postfix() {
        assert_eq!(d(0.0), "0");
        assert_eq!(d(0.001), "0");
        assert_eq!(d(0.005), "0.01");
        assert_eq!(d(0.01), "0.01");
        assert_eq!(d(0.1), "0.1");
        assert_eq!(d(0.123), "0.12");
        assert_eq!(d(1.234), "1.2");
        assert_eq!(d(1.0), "1");
        assert_eq!(d(12.34), "12");
        assert_eq!(d(342.6), "343");
        assert_eq!(d(9.96), "10");
    }
}
