use super::*;
use std::process::Command;

/// Runs openssl with `args` in `dir`, for keys as administrators make them.
pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// openssl's own idea of the public key, DER SubjectPublicKeyInfo.
fn openssl_public_der(dir: &Path, key: &str) -> Vec<u8> {
    openssl(
        dir,
        &[
            "pkey", "-in", key, "-pubout", "-outform", "DER", "-out", "pub.der",
        ],
    );
    std::fs::read(dir.join("pub.der")).unwrap()
}

#[test]
fn reads_rsa_pkcs8_from_genpkey() {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        &[
            "genpkey",
            "-algorithm",
            "rsa",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "k.pem",
        ],
    );
    let text = std::fs::read_to_string(dir.path().join("k.pem")).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
    let key = DkimKey::from_pem_file(&dir.path().join("k.pem")).unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::Rsa);
    assert_eq!(key.public, openssl_public_der(dir.path(), "k.pem"));
}

#[test]
fn reads_rsa_pkcs1_from_genrsa() {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        &["genrsa", "-traditional", "-out", "k.pem", "2048"],
    );
    let text = std::fs::read_to_string(dir.path().join("k.pem")).unwrap();
    assert!(text.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let key = DkimKey::from_pem_file(&dir.path().join("k.pem")).unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::Rsa);
    assert_eq!(key.public, openssl_public_der(dir.path(), "k.pem"));
}

#[test]
fn reads_ed25519_pkcs8_v1_from_genpkey() {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        &["genpkey", "-algorithm", "ed25519", "-out", "k.pem"],
    );
    let key = DkimKey::from_pem_file(&dir.path().join("k.pem")).unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::Ed25519);
    // The SubjectPublicKeyInfo ends with the 32 raw key bytes.
    let spki = openssl_public_der(dir.path(), "k.pem");
    assert_eq!(key.public, spki[spki.len() - 32..]);
    assert!(key.dns_record().starts_with("v=DKIM1; k=ed25519; p="));
}

#[test]
fn generated_ed25519_key_reads_back_and_openssl_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let (key, pem) = DkimKey::generate_ed25519().unwrap();
    std::fs::write(dir.path().join("k.pem"), &pem).unwrap();
    let spki = openssl_public_der(dir.path(), "k.pem");
    assert_eq!(key.public, spki[spki.len() - 32..]);
}

#[test]
fn refuses_what_is_not_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = DkimKey::from_pem_file(&dir.path().join("none.pem")).unwrap_err();
    assert!(matches!(missing, KeyError::Io(_)), "{missing}");
    let garbage = DkimKey::from_pem(b"not a pem file\n").unwrap_err();
    assert!(matches!(garbage, KeyError::Pem(_)), "{garbage}");
    let bad_body =
        DkimKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
    assert!(matches!(bad_body, KeyError::Key(_)), "{bad_body}");
    openssl(
        dir.path(),
        &[
            "genpkey",
            "-algorithm",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.pem",
        ],
    );
    assert!(DkimKey::from_pem_file(&dir.path().join("ec.pem")).is_err());
}

#[test]
fn zone_record_splits_into_255_byte_strings() {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        &[
            "genpkey",
            "-algorithm",
            "rsa",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "k.pem",
        ],
    );
    let key = DkimKey::from_pem_file(&dir.path().join("k.pem")).unwrap();
    let line = key.zone_record("example.org.", "sel");
    let rest = line
        .strip_prefix("sel._domainkey.example.org. IN TXT \"v=DKIM1; k=rsa; p=")
        .unwrap();
    let strings: Vec<&str> = rest.trim_end_matches('"').split("\" \"").collect();
    assert_eq!(strings.len(), 2, "{line}");
    assert_eq!(strings[0].len() + "v=DKIM1; k=rsa; p=".len(), 255);
}
