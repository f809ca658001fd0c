//! Real handshakes over an in-memory duplex between configs built by this
//! crate, with certificates made by rcgen: versions, key types, chains,
//! verification, shared-ticket resumption, and the load errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use postern_ipc::tlsmgr::TicketKey;
use postern_tls::tickets::generate_key;
use postern_tls::{CaLocations, CertKeyFiles, SecurityLevel, TicketKeys, TlsError};
use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair, SignatureAlgorithm};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind, ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const HOST: &str = "mail.example.org";
const BOTH: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];
const TLS12_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
/// A 2048-bit RSA key made with openssl for these tests only (ring cannot
/// generate RSA keys, so rcgen cannot either).
const RSA_KEY: &str = include_str!("data/rsa-test-key.pem");

fn params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(vec![cn.to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_after = rcgen::date_time_ymd(2099, 1, 1);
    p
}

fn key(alg: &'static SignatureAlgorithm) -> KeyPair {
    if alg == &rcgen::PKCS_RSA_SHA256 {
        KeyPair::from_pem(RSA_KEY).unwrap()
    } else {
        KeyPair::generate_for(alg).unwrap()
    }
}

/// A self-signed certificate for HOST: (cert PEM, key PEM).
fn self_signed(alg: &'static SignatureAlgorithm) -> (String, String) {
    let k = key(alg);
    let cert = params(HOST).self_signed(&k).unwrap();
    (cert.pem(), k.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn pair(dir: &Path, tag: &str, cert: &str, key: &str) -> CertKeyFiles {
    CertKeyFiles {
        cert: write(dir, &format!("{tag}.crt"), cert),
        key: write(dir, &format!("{tag}.key"), key),
    }
}

/// Handshakes, has the server send a line and close, and reads it all
/// (which is when a TLS 1.3 client takes in its tickets). Returns the
/// client's view: handshake kind, and the server's summary.
async fn exchange(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> Result<(HandshakeKind, String), std::io::Error> {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let server_task = tokio::spawn(async move {
        let mut tls = TlsAcceptor::from(server).accept(s).await?;
        let summary = postern_tls::summary(tls.get_ref().1).unwrap().to_string();
        tls.write_all(b"220 ok\r\n").await?;
        tls.shutdown().await?;
        Ok::<_, std::io::Error>(summary)
    });
    let name = ServerName::try_from(HOST).unwrap();
    let result = async {
        let mut tls = TlsConnector::from(client).connect(name, c).await?;
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await?;
        assert_eq!(got, b"220 ok\r\n");
        Ok::<_, std::io::Error>(tls.get_ref().1.handshake_kind().unwrap())
    }
    .await;
    let server_result = server_task.await.unwrap();
    let kind = result?;
    Ok((kind, server_result?))
}

fn verify_client(ca_file: &Path) -> Arc<ClientConfig> {
    postern_tls::client_config(SecurityLevel::Verify, &CaLocations::file(ca_file), &BOTH)
        .unwrap()
        .unwrap()
}

fn may_client(versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
    postern_tls::client_config(SecurityLevel::May, &CaLocations::default(), versions)
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn tls13_and_tls12_with_each_key_type() {
    let dir = tempfile::tempdir().unwrap();
    for (tag, alg) in [
        ("ecdsa", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("ed25519", &rcgen::PKCS_ED25519),
        ("rsa", &rcgen::PKCS_RSA_SHA256),
    ] {
        let (cert, key) = self_signed(alg);
        let files = pair(dir.path(), tag, &cert, &key);
        let tls = postern_tls::server_config(std::slice::from_ref(&files), &BOTH, None).unwrap();
        assert_eq!(tls.certificates.len(), 1);
        assert_eq!(tls.certificates[0].subject, format!("CN={HOST}"));
        assert!(tls.warnings.is_empty(), "{:?}", tls.warnings);

        let (kind, summary) = exchange(tls.config.clone(), verify_client(&files.cert))
            .await
            .unwrap();
        assert_eq!(kind, HandshakeKind::Full);
        assert!(
            summary.starts_with("TLSv1.3 with cipher TLS_"),
            "{tag}: {summary}"
        );

        let (_, summary) = exchange(tls.config.clone(), may_client(&TLS12_ONLY))
            .await
            .unwrap();
        assert!(
            summary.starts_with("TLSv1.2 with cipher ECDHE-"),
            "{tag}: {summary}"
        );
    }
}

#[tokio::test]
async fn chain_verify_and_several_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let mut ca_params = params("Postern Test CA");
    ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let ca_file = write(dir.path(), "ca.pem", &ca_cert.pem());

    let leaf_key = key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let leaf = params(HOST).signed_by(&leaf_key, &issuer).unwrap();
    // Postfix style: one file with the key, then the certificate and chain.
    let combined = format!(
        "{}{}{}",
        leaf_key.serialize_pem(),
        leaf.pem(),
        ca_cert.pem()
    );
    let chain_file = write(dir.path(), "chain.pem", &combined);
    let one_file = CertKeyFiles {
        cert: chain_file.clone(),
        key: chain_file,
    };
    let rsa_leaf_key = key(&rcgen::PKCS_RSA_SHA256);
    let rsa_leaf = params(HOST).signed_by(&rsa_leaf_key, &issuer).unwrap();
    let rsa_files = pair(
        dir.path(),
        "rsa",
        &format!("{}{}", rsa_leaf.pem(), ca_cert.pem()),
        &rsa_leaf_key.serialize_pem(),
    );

    let tls = postern_tls::server_config(&[one_file, rsa_files], &BOTH, None).unwrap();
    assert_eq!(tls.certificates.len(), 2);
    exchange(tls.config.clone(), verify_client(&ca_file))
        .await
        .unwrap();

    // Another CA does not vouch for this server: verify fails, may does not.
    let (other, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
    let other_ca = write(dir.path(), "other-ca.pem", &other);
    let err = exchange(tls.config.clone(), verify_client(&other_ca))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    exchange(tls.config.clone(), may_client(&BOTH))
        .await
        .unwrap();
    let encrypt =
        postern_tls::client_config(SecurityLevel::Encrypt, &CaLocations::default(), &BOTH)
            .unwrap()
            .unwrap();
    exchange(tls.config, encrypt).await.unwrap();
}

/// Two "smtpd processes": separate ServerConfigs and TicketKeys, installed
/// with the same keys from "tlsmgr".
#[tokio::test]
async fn resumption_across_processes_sharing_ticket_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
    let files = [pair(dir.path(), "s", &cert, &key)];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let shared: Vec<TicketKey> = vec![generate_key(now, now + 7200).unwrap()];
    let process = |keys: &[TicketKey]| {
        let t = Arc::new(TicketKeys::new(3600));
        t.install(keys).unwrap();
        postern_tls::server_config(&files, &BOTH, Some(t))
            .unwrap()
            .config
    };
    let a = process(&shared);
    let b = process(&shared);
    let stranger = process(&[generate_key(now, now + 7200).unwrap()]);

    for versions in [&BOTH[..], &TLS12_ONLY[..]] {
        let client = may_client(versions);
        let (kind, _) = exchange(a.clone(), client.clone()).await.unwrap();
        assert_eq!(kind, HandshakeKind::Full);
        let (kind, summary) = exchange(b.clone(), client.clone()).await.unwrap();
        assert_eq!(kind, HandshakeKind::Resumed, "{summary}");
        // A server without the keys falls back to a full handshake.
        let (kind, _) = exchange(stranger.clone(), client.clone()).await.unwrap();
        assert_eq!(kind, HandshakeKind::Full);
    }

    // After a rotation the previous key still opens the client's ticket.
    let client = may_client(&BOTH);
    exchange(a.clone(), client.clone()).await.unwrap();
    let rotated = process(&[
        generate_key(now + 1, now + 7201).unwrap(),
        shared[0].clone(),
    ]);
    let (kind, _) = exchange(rotated, client).await.unwrap();
    assert_eq!(kind, HandshakeKind::Resumed);
}

#[test]
fn mismatched_key_is_refused_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (_, other_key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
    let files = pair(dir.path(), "m", &cert, &other_key);
    let err = postern_tls::server_config(&[files], &BOTH, None).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("m.crt") && text.contains("m.key"), "{text}");
}

#[test]
fn unreadable_and_incomplete_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
    let missing = CertKeyFiles {
        cert: dir.path().join("nope.crt"),
        key: dir.path().join("nope.key"),
    };
    let err = postern_tls::server_config(&[missing], &BOTH, None).unwrap_err();
    assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.crt"), "{err}");

    // Certificate file holding only a key; key file holding only a certificate.
    let no_cert = pair(dir.path(), "a", &key, &key);
    let err = postern_tls::server_config(&[no_cert], &BOTH, None).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    let no_key = pair(dir.path(), "b", &cert, &cert);
    let err = postern_tls::server_config(&[no_key], &BOTH, None).unwrap_err();
    assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");
    assert!(err.to_string().contains("b.key"), "{err}");

    let garbled = pair(dir.path(), "c", "-----BEGIN CERTIFICATE-----\n@@@\n", &key);
    let err = postern_tls::server_config(&[garbled], &BOTH, None).unwrap_err();
    assert!(err.to_string().contains("c.crt"), "{err}");

    let err = postern_tls::server_config(&[], &BOTH, None).unwrap_err();
    assert!(matches!(err, TlsError::NoServerCertificate), "{err:?}");
}

#[test]
fn expired_certificate_loads_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let mut p = params(HOST);
    p.not_before = rcgen::date_time_ymd(2019, 1, 1);
    p.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let cert = p.self_signed(&k).unwrap();
    let files = pair(dir.path(), "old", &cert.pem(), &k.serialize_pem());
    let tls = postern_tls::server_config(&[files], &BOTH, None).unwrap();
    assert_eq!(tls.certificates[0].not_after_unix, 1_577_836_800);
    assert_eq!(tls.warnings.len(), 1);
    assert!(
        tls.warnings[0].contains("expired on 2020-01-01"),
        "{:?}",
        tls.warnings
    );
    assert!(tls.warnings[0].contains("old.crt"), "{:?}", tls.warnings);
}

fn params_from(dir: &Path, main: &str) -> postern_config::Params {
    let file = dir.join("master.toml");
    let text = format!("[main]\n{main}\n");
    postern_config::Config::from_str(&text, &file, &[])
        .unwrap()
        .main()
        .clone()
}

#[tokio::test]
async fn configs_from_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
    // One file with both: smtpd_tls_key_file defaults to the cert file.
    write(dir.path(), "both.pem", &format!("{key}{cert}"));
    write(dir.path(), "ca.pem", &cert);
    let server = params_from(dir.path(), "smtpd_tls_cert_file = \"both.pem\"");
    let tls = postern_tls::server_config_from_params(&server, None).unwrap();
    assert!(tls.certificates[0].file.ends_with("both.pem"));

    let chain = params_from(
        dir.path(),
        "smtpd_tls_chain_files = \"both.pem\"\nsmtpd_tls_security_level = \"encrypt\"\nsmtpd_tls_mandatory_protocols = \">=TLSv1.3\"",
    );
    let tls13 = postern_tls::server_config_from_params(&chain, None).unwrap();
    let (_, summary) = exchange(tls13.config.clone(), may_client(&BOTH))
        .await
        .unwrap();
    assert!(summary.starts_with("TLSv1.3"), "{summary}");
    assert!(
        exchange(tls13.config, may_client(&TLS12_ONLY))
            .await
            .is_err()
    );

    let none = params_from(dir.path(), "");
    let err = postern_tls::server_config_from_params(&none, None).unwrap_err();
    assert!(matches!(err, TlsError::NoServerCertificate), "{err:?}");

    let client = params_from(
        dir.path(),
        "smtp_tls_security_level = \"verify\"\nsmtp_tls_CAfile = \"ca.pem\"",
    );
    let c = postern_tls::client_config_from_params(&client).unwrap();
    assert_eq!(c.level, SecurityLevel::Verify);
    let (kind, _) = exchange(tls.config.clone(), c.config.unwrap())
        .await
        .unwrap();
    assert_eq!(kind, HandshakeKind::Full);

    // smtp_tls_CApath as Debian's /etc/ssl/certs is: c_rehash links to
    // PEM files, and files with no certificate in them.
    let ca_dir = dir.path().join("certs");
    std::fs::create_dir(&ca_dir).unwrap();
    std::os::unix::fs::symlink("../ca.pem", ca_dir.join("0123abcd.0")).unwrap();
    write(&ca_dir, "postern-test.pem", &cert);
    write(&ca_dir, "README", "not a certificate\n");
    let client = params_from(
        dir.path(),
        "smtp_tls_security_level = \"verify\"\nsmtp_tls_CApath = \"certs\"",
    );
    let c = postern_tls::client_config_from_params(&client).unwrap();
    let (kind, _) = exchange(tls.config.clone(), c.config.unwrap())
        .await
        .unwrap();
    assert_eq!(kind, HandshakeKind::Full);
    // A directory without the server's CA does not vouch for it.
    let (other, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
    let other_dir = dir.path().join("other-certs");
    std::fs::create_dir(&other_dir).unwrap();
    write(&other_dir, "other.pem", &other);
    let client = params_from(
        dir.path(),
        "smtp_tls_security_level = \"verify\"\nsmtp_tls_CApath = \"other-certs\"",
    );
    let c = postern_tls::client_config_from_params(&client).unwrap();
    assert!(
        exchange(tls.config.clone(), c.config.unwrap())
            .await
            .is_err()
    );
    // A directory with no certificate at all is an error, not an empty trust.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    write(&empty, "README", "nothing\n");
    let client = params_from(
        dir.path(),
        "smtp_tls_security_level = \"verify\"\nsmtp_tls_CApath = \"empty\"",
    );
    let err = postern_tls::client_config_from_params(&client).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");

    let no_ca = params_from(dir.path(), "smtp_tls_security_level = \"verify\"");
    let err = postern_tls::client_config_from_params(&no_ca).unwrap_err();
    assert!(err.to_string().contains("smtp_tls_CAfile"), "{err}");
    let default = postern_tls::client_config_from_params(&none).unwrap();
    assert_eq!(default.level, SecurityLevel::None);
    assert!(default.config.is_none());
}
