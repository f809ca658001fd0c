//! Text formats qmgr shares with Postfix: the delay fields of the mail log
//! (`delay=0.12, delays=0.01/0.01/0/0.1`) and RFC 5322 dates for the
//! notifications it writes.

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

/// Local broken-down time of a Unix timestamp.
fn local_tm(unix: i64) -> libc::tm {
    let t = unix as libc::time_t;
    // SAFETY: localtime_r only writes into the struct we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&t, &mut tm) };
    tm
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An RFC 5322 date, `Mon, 23 Nov 2026 16:47:57 +0000 (UTC)` style without
/// the comment, in local time.
pub fn rfc5322_date(unix: i64) -> String {
    let tm = local_tm(unix);
    let off = tm.tm_gmtoff / 60;
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.abs();
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} {}{:02}{:02}",
        DAYS[tm.tm_wday.clamp(0, 6) as usize],
        tm.tm_mday,
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        sign,
        off / 60,
        off % 60
    )
}

/// `YYYYMMDDhhmmss` in local time, for Message-IDs as Postfix makes them.
pub fn compact_date(unix: i64) -> String {
    let tm = local_tm(unix);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
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

    #[test]
    fn dates_have_the_rfc5322_shape() {
        let s = rfc5322_date(1_700_000_000);
        assert!(s.contains(" 2023 "), "{s}");
        assert!(
            s.ends_with("00") || s.ends_with("30") || s.ends_with("45"),
            "{s}"
        );
        assert_eq!(compact_date(1_700_000_000).len(), 14);
    }
}
