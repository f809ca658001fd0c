//! Dates and times as Postfix writes them, all in local time as Postfix
//! does: the mail log's syslog stamp (`Nov  3 16:11:27`), RFC 5322 dates
//! with the local zone's offset and name (`Mon, 23 Nov 2026 16:39:03 +0100
//! (CET)`, Postfix's mail_date(3)), asctime(3) for mbox `From ` lines and
//! postcat (`Mon Nov 23 16:47:57 2026`), mailq's arrival time, and the
//! compact `YYYYMMDDhhmmss` of Message-IDs. The one place that asks the
//! C library for the local time zone.

use std::time::{SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Seconds since the epoch now (0 before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A moment broken down in local time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tm {
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 is Sunday.
    pub weekday: u32,
    /// East of UTC.
    pub offset_secs: i64,
    /// The zone's abbreviation (`CET`), empty when the system has none.
    pub zone: String,
}

impl Tm {
    /// `unix` in the local time zone (TZ, /etc/localtime).
    pub fn local(unix: i64) -> Tm {
        let t = unix as libc::time_t;
        // SAFETY: localtime_r only writes into the struct we own; tm_zone
        // then points to a static string of the C library (or is null).
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        unsafe { libc::localtime_r(&t, &mut tm) };
        let zone = if tm.tm_zone.is_null() {
            String::new()
        } else {
            unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }
                .to_string_lossy()
                .into_owned()
        };
        Tm {
            year: i64::from(tm.tm_year) + 1900,
            month: (tm.tm_mon.clamp(0, 11) + 1) as u32,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
            second: tm.tm_sec as u32,
            weekday: tm.tm_wday.clamp(0, 6) as u32,
            offset_secs: tm.tm_gmtoff,
            zone,
        }
    }

    fn day_name(&self) -> &'static str {
        DAYS[self.weekday as usize % 7]
    }

    fn month_name(&self) -> &'static str {
        MONTHS[(self.month as usize + 11) % 12]
    }

    /// `Nov  3 16:11:27`, syslog's stamp, which log tools such as
    /// pflogsumm parse.
    pub fn syslog(&self) -> String {
        format!(
            "{} {:2} {:02}:{:02}:{:02}",
            self.month_name(),
            self.day,
            self.hour,
            self.minute,
            self.second
        )
    }

    /// `Mon, 23 Nov 2026 16:39:03 +0100 (CET)` (RFC 5322 section 3.3).
    pub fn rfc5322(&self) -> String {
        let off = self.offset_secs / 60;
        let sign = if off < 0 { '-' } else { '+' };
        let off = off.abs();
        let mut out = format!(
            "{}, {} {} {} {:02}:{:02}:{:02} {sign}{:02}{:02}",
            self.day_name(),
            self.day,
            self.month_name(),
            self.year,
            self.hour,
            self.minute,
            self.second,
            off / 60,
            off % 60
        );
        if !self.zone.is_empty() {
            out.push_str(&format!(" ({})", self.zone));
        }
        out
    }

    /// `Mon Nov 23 16:47:57`, mailq's arrival time.
    pub fn mailq(&self) -> String {
        format!(
            "{} {} {:2} {:02}:{:02}:{:02}",
            self.day_name(),
            self.month_name(),
            self.day,
            self.hour,
            self.minute,
            self.second
        )
    }

    /// `Mon Nov 23 16:47:57 2026`, asctime(3) without its newline.
    pub fn asctime(&self) -> String {
        format!("{} {}", self.mailq(), self.year)
    }

    /// `20261123164757`, as Postfix puts it in the Message-IDs it makes.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `unix` broken down in UTC (Howard Hinnant's civil_from_days).
    fn utc(unix: i64) -> Tm {
        let z = unix.div_euclid(86_400) + 719_468;
        let secs = unix.rem_euclid(86_400);
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Tm {
            year: yoe + era * 400 + i64::from(month <= 2),
            month: month as u32,
            day: (doy - (153 * mp + 2) / 5 + 1) as u32,
            hour: (secs / 3600) as u32,
            minute: (secs / 60 % 60) as u32,
            second: (secs % 60) as u32,
            weekday: (unix.div_euclid(86_400) + 4).rem_euclid(7) as u32,
            offset_secs: 0,
            zone: "UTC".into(),
        }
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(utc(0).rfc5322(), "Thu, 1 Jan 1970 00:00:00 +0000 (UTC)");
        assert_eq!(
            utc(1_795_451_943).rfc5322(),
            "Mon, 23 Nov 2026 16:39:03 +0000 (UTC)"
        );
        assert_eq!(
            utc(951_782_400).rfc5322(),
            "Tue, 29 Feb 2000 00:00:00 +0000 (UTC)"
        );
        let newfoundland = Tm {
            offset_secs: -(3 * 3600 + 1800),
            zone: "NST".into(),
            ..utc(0)
        };
        assert_eq!(
            newfoundland.rfc5322(),
            "Thu, 1 Jan 1970 00:00:00 -0330 (NST)"
        );
        let no_name = Tm {
            offset_secs: 3600,
            zone: String::new(),
            ..utc(0)
        };
        assert_eq!(no_name.rfc5322(), "Thu, 1 Jan 1970 00:00:00 +0100");
    }

    #[test]
    fn asctime_formats_like_c() {
        assert_eq!(utc(0).asctime(), "Thu Jan  1 00:00:00 1970");
        assert_eq!(utc(1_795_970_580).asctime(), "Sun Nov 29 16:43:00 2026");
        assert_eq!(utc(1_795_970_580).mailq(), "Sun Nov 29 16:43:00");
    }

    #[test]
    fn syslog_and_compact_stamps() {
        assert_eq!(utc(1_793_722_287).syslog(), "Nov  3 16:11:27");
        assert_eq!(utc(1_795_451_943).compact(), "20261123163903");
    }

    #[test]
    fn local_time_is_utc_moved_by_the_zone_offset() {
        for t in [0, 951_782_400, 1_795_451_943, 1_700_000_000] {
            let local = Tm::local(t);
            let shifted = utc(t + local.offset_secs);
            assert_eq!(
                (local.year, local.month, local.day, local.weekday),
                (shifted.year, shifted.month, shifted.day, shifted.weekday),
                "{t}"
            );
            assert_eq!(
                (local.hour, local.minute, local.second),
                (shifted.hour, shifted.minute, shifted.second),
                "{t}"
            );
        }
    }
}
