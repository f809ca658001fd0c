//! What `qctl status` shows about a certificate: its file, subject and
//! expiry, parsed with x509-parser.

use std::path::Path;

pub use postern_ipc::status::CertificateInfo;
use rustls::pki_types::CertificateDer;

use crate::TlsError;

/// Subject (`CN=mail.example.org`, the whole distinguished name) and
/// notAfter of `der`, read from `file`.
pub fn certificate_info(
    file: &Path,
    der: &CertificateDer<'_>,
) -> Result<CertificateInfo, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| {
        TlsError::BadCertificate {
            path: file.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    Ok(CertificateInfo {
        file: file.display().to_string(),
        subject: cert.subject().to_string(),
        not_after_unix: cert.validity().not_after.timestamp(),
    })
}

/// A warning if the certificate has expired or expires within `soon`
/// seconds; `None` when it is fine. Postfix serves an expired certificate
/// too (clients decide), so this warns rather than refuses.
pub fn expiry_warning(info: &CertificateInfo, now_unix: i64, soon: i64) -> Option<String> {
    let when = format_unix(info.not_after_unix);
    if info.not_after_unix < now_unix {
        Some(format!(
            "{}: certificate {} expired on {when}",
            info.file, info.subject
        ))
    } else if info.not_after_unix < now_unix.saturating_add(soon) {
        Some(format!(
            "{}: certificate {} expires on {when}",
            info.file, info.subject
        ))
    } else {
        None
    }
}

/// `2026-11-23 16:55:52 UTC`, without pulling in a date crate.
pub fn format_unix(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_unix(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(format_unix(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn warnings() {
        let info = CertificateInfo {
            file: "c.pem".into(),
            subject: "CN=x".into(),
            not_after_unix: 1000,
        };
        assert!(expiry_warning(&info, 2000, 0).unwrap().contains("expired"));
        assert!(
            expiry_warning(&info, 500, 600)
                .unwrap()
                .contains("expires on")
        );
        assert!(expiry_warning(&info, 100, 600).is_none());
    }
}
