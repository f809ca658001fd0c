//! postern-auth's inbound checks against the test DNS server on loopback:
//! each SPF result from a TXT record, DKIM of a message signed by Python's
//! `dkim` package (python3-dkim, which nobody here wrote) and of a modified
//! copy, a message with 50 signatures, and DMARC pass, fail under p=reject,
//! and relaxed against strict alignment.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use postern_auth::verify::{DmarcPolicy, SpfIdentity, Verdict, Verifier};
use postern_tests::dkim::{dkim_key, python_arc_sign, python_dkim_sign};
use postern_tests::dns::{DnsServer, Record};

/// The client every message comes from.
const CLIENT: &str = "192.0.2.1";
/// The bound on each method; DNS queries get half.
const TIMEOUT: Duration = Duration::from_secs(2);

fn client() -> IpAddr {
    CLIENT.parse().unwrap()
}

fn verifier(dns: &DnsServer) -> Verifier {
    Verifier::new(&[dns.addr], TIMEOUT)
        .unwrap()
        .with_hostname("mx.postern.test")
}

fn message(from: &str, body: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <rcpt@postern.test>\r\nSubject: auth\r\n\
         Message-ID: <1@example.test>\r\n\r\n{body}"
    )
    .into_bytes()
}

#[tokio::test]
async fn spf_results_from_txt_records() {
    let dns = DnsServer::start(vec![
        Record::txt("pass.test", &format!("v=spf1 ip4:{CLIENT} -all")),
        Record::txt("fail.test", "v=spf1 ip4:192.0.2.99 -all"),
        Record::txt("softfail.test", "v=spf1 ip4:192.0.2.99 ~all"),
        Record::txt("neutral.test", "v=spf1 ?all"),
        // Not an SPF record: none, as for a domain with no TXT at all.
        Record::txt("none.test", "google-site-verification=abc"),
        Record::a("bare.test", "192.0.2.7".parse().unwrap()),
        // Over the UDP limit: truncated, then asked again over TCP.
        Record::txt(
            "huge.test",
            &format!(
                "v=spf1 {} ip4:{CLIENT} -all",
                "ip4:198.51.100.199 ".repeat(80)
            ),
        ),
        // Errors in the record.
        Record::txt("redirect.test", "v=spf1 redirect=nowhere.test"),
        Record::txt("syntax.test", "v=spf1 include: -all"),
        Record::txt("loop.test", "v=spf1 include:loop.test -all"),
        // RFC 7208 4.6.4: a third lookup that finds nothing is a
        // permerror, unless a match ended the evaluation before it.
        Record::txt(
            "void.test",
            &format!("v=spf1 a:v1.void.test a:v2.void.test a:v3.void.test ip4:{CLIENT} -all"),
        ),
        Record::txt(
            "twovoid.test",
            &format!("v=spf1 a:v1.void.test mx:v2.void.test ip4:{CLIENT} -all"),
        ),
        Record::txt(
            "early.test",
            &format!("v=spf1 ip4:{CLIENT} a:v1.void.test a:v2.void.test a:v3.void.test -all"),
        ),
        // Macros: the client's address and the sender's local part.
        Record::txt("macro.test", "v=spf1 exists:%{i}.%{l}.allow.test -all"),
        Record::a(
            &format!("{CLIENT}.alice.allow.test"),
            "127.0.0.1".parse().unwrap(),
        ),
        Record::txt("unknown.test", "v=spf1 frobnicate -all"),
        Record::txt("badip.test", "v=spf1 ip4:192.0.2.300 -all"),
        Record::servfail("servfail.test"),
        Record::unanswered("silent.test"),
        Record::txt("mx.pass.test", &format!("v=spf1 ip4:{CLIENT} -all")),
        // A long record, sent as several strings and joined back.
        Record::txt(
            "long.test",
            &format!(
                "v=spf1 {} ip4:{CLIENT} -all",
                "ip4:198.51.100.1 ".repeat(20)
            ),
        ),
    ]);
    let v = verifier(&dns);
    let cases = [
        ("pass.test", Verdict::Pass),
        ("fail.test", Verdict::Fail),
        ("softfail.test", Verdict::SoftFail),
        ("neutral.test", Verdict::Neutral),
        ("none.test", Verdict::None),
        ("bare.test", Verdict::None),
        ("nowhere.test", Verdict::None),
        ("redirect.test", Verdict::PermError),
        ("syntax.test", Verdict::PermError),
        ("loop.test", Verdict::PermError),
        ("void.test", Verdict::PermError),
        ("twovoid.test", Verdict::Pass),
        ("early.test", Verdict::Pass),
        ("macro.test", Verdict::Pass),
        ("unknown.test", Verdict::PermError),
        ("badip.test", Verdict::PermError),
        ("servfail.test", Verdict::TempError),
        ("silent.test", Verdict::TempError),
        ("long.test", Verdict::Pass),
        ("huge.test", Verdict::Pass),
    ];
    for (domain, want) in cases {
        let from = format!("alice@{domain}");
        let started = Instant::now();
        let r = v
            .check(&message(&from, "hi\r\n"), client(), "mx.pass.test", &from)
            .await;
        assert_eq!(r.spf_mail_from.result, want, "{domain}: {}", r.log_line());
        assert_eq!(r.spf_mail_from.subject, from);
        assert_eq!(r.spf_mail_from.domain, domain);
        assert_eq!(r.spf_helo.result, Verdict::Pass, "{domain}");
        assert!(
            started.elapsed() < 2 * TIMEOUT + Duration::from_millis(500),
            "{domain} took {:?}",
            started.elapsed()
        );
        let header = r.header("mx.postern.test");
        assert!(
            header.contains(&format!("spf={} smtp.mailfrom={from};", want.as_str())),
            "{header}"
        );
    }

    // HELO identity alone, and the null sender checked as postmaster@helo.
    let r = v
        .check(&message("a@x.test", "hi\r\n"), client(), "fail.test", "")
        .await;
    assert_eq!(r.spf_helo.identity, SpfIdentity::Helo);
    assert_eq!(r.spf_helo.result, Verdict::Fail);
    assert_eq!(r.spf_mail_from.result, Verdict::Fail);
    assert_eq!(r.spf_mail_from.subject, "fail.test");

    // An address literal is no HELO name to look up.
    let r = v
        .check(
            &message("a@x.test", "hi\r\n"),
            client(),
            &format!("[{CLIENT}]"),
            "a@pass.test",
        )
        .await;
    assert_eq!(r.spf_helo.result, Verdict::None, "{}", r.log_line());
    assert_eq!(r.spf_mail_from.result, Verdict::Pass);
    assert!(
        r.header("mx")
            .contains(&format!("spf=none smtp.helo=\"[{CLIENT}]\";"))
    );
}

#[tokio::test]
async fn dkim_of_a_python3_dkim_signature_and_a_modified_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (key, record) = dkim_key(dir.path());
    let dns = DnsServer::start(vec![
        Record::txt("sel._domainkey.signed.test", &record),
        Record::txt("signed.test", "v=spf1 -all"),
        Record::txt("_dmarc.signed.test", "v=DMARC1; p=reject"),
    ]);
    let v = verifier(&dns);
    let signed = python_dkim_sign(
        &message("alice@signed.test", "Hello.\r\n"),
        &key,
        "sel",
        "signed.test",
    );

    // SPF fails (-all), DKIM passes and aligns: DMARC passes.
    let r = v
        .check(&signed, client(), "relay.other.test", "alice@signed.test")
        .await;
    assert_eq!(r.dkim.len(), 1, "{}", r.log_line());
    assert_eq!(r.dkim[0].result, Verdict::Pass, "{}", r.log_line());
    assert_eq!(
        (r.dkim[0].domain.as_str(), r.dkim[0].selector.as_str()),
        ("signed.test", "sel")
    );
    assert_eq!(r.spf_mail_from.result, Verdict::Fail);
    assert_eq!(r.dmarc.result, Verdict::Pass);
    assert!(r.dmarc.dkim_aligned && !r.dmarc.spf_aligned);
    let header = r.header("mx.postern.test");
    assert!(
        header.starts_with("Authentication-Results: mx.postern.test;\r\n"),
        "{header}"
    );
    assert!(
        header.contains("\tdkim=pass header.d=signed.test header.s=sel header.b="),
        "{header}"
    );
    assert!(
        header.contains("\tdmarc=pass (p=reject) header.from=signed.test;"),
        "{header}"
    );

    // The body changed after signing: the body hash does not match.
    let mut modified = signed.clone();
    let at = modified.len() - b"Hello.\r\n".len();
    modified.splice(at.., b"Hello, changed.\r\n".iter().copied());
    let r = v
        .check(&modified, client(), "relay.other.test", "alice@signed.test")
        .await;
    assert_eq!(r.dkim[0].result, Verdict::Fail, "{}", r.log_line());
    assert_eq!(r.dmarc.result, Verdict::Fail);
    assert_eq!(r.dmarc.policy, Some(DmarcPolicy::Reject));
    assert!(
        r.header("mx").contains("\tdkim=fail ("),
        "{}",
        r.header("mx")
    );

    // A header signed, then changed: the signature itself fails.
    let text = String::from_utf8(signed.clone()).unwrap();
    let r = v
        .check(
            text.replace("Subject: auth", "Subject: forged").as_bytes(),
            client(),
            "relay.other.test",
            "alice@signed.test",
        )
        .await;
    assert_eq!(r.dkim[0].result, Verdict::Fail, "{}", r.log_line());

    // No key published for the selector: permerror (RFC 6376 6.1.2).
    let unpublished = text.replace(" s=sel;", " s=gone;");
    let r = v
        .check(unpublished.as_bytes(), client(), "relay.other.test", "")
        .await;
    assert_eq!(r.dkim[0].result, Verdict::PermError, "{}", r.log_line());
    assert_eq!(r.dkim[0].selector, "gone");

    // A signature that does not parse, and a key record that does not:
    // permerror, the good signature beside them still passing.
    dns.add(Record::txt(
        "bad._domainkey.signed.test",
        "v=DKIM1; k=rsa; p=!!notbase64",
    ));
    let garbled = format!(
        "DKIM-Signature: v=1; a=rsa-sha256; d=signed.test; garbage\r\n{}",
        text.replace(" s=sel;", " s=bad;")
    );
    let r = v
        .check(garbled.as_bytes(), client(), "relay.other.test", "")
        .await;
    let results: Vec<Verdict> = r.dkim.iter().map(|d| d.result).collect();
    assert_eq!(
        results,
        [Verdict::PermError, Verdict::PermError],
        "{}",
        r.log_line()
    );
    let garbled = format!("DKIM-Signature: v=1; d=\r\n{text}");
    let r = v
        .check(garbled.as_bytes(), client(), "relay.other.test", "")
        .await;
    assert!(
        r.dkim.iter().any(|d| d.result == Verdict::Pass),
        "{}",
        r.log_line()
    );
    assert!(
        r.dkim.iter().any(|d| d.result == Verdict::PermError),
        "{}",
        r.log_line()
    );

    // 50 copies of the signature: 10 verified, 40 counted, in bounded time.
    let end = text.find("\r\nFrom:").unwrap() + 2;
    let many = format!("{}{}", text[..end].repeat(50), &text[end..]);
    let started = Instant::now();
    let r = v
        .check(many.as_bytes(), client(), "relay.other.test", "")
        .await;
    assert!(started.elapsed() < 2 * TIMEOUT, "{:?}", started.elapsed());
    assert_eq!(
        (r.dkim.len(), r.dkim_unverified),
        (10, 40),
        "{}",
        r.log_line()
    );
    assert!(r.dkim.iter().all(|d| d.result == Verdict::Pass));
    assert!(r.log_line().ends_with(", dkim_unverified=40"));
}

#[tokio::test]
async fn dmarc_policy_and_alignment() {
    let dns = DnsServer::start(vec![
        Record::txt("_dmarc.victim.test", "v=DMARC1; p=reject"),
        Record::txt("victim.test", "v=spf1 -all"),
        Record::txt("forger.test", &format!("v=spf1 ip4:{CLIENT} -all")),
        // Relaxed (the default): a subdomain's SPF pass aligns.
        Record::txt("_dmarc.relaxed.test", "v=DMARC1; p=quarantine; sp=reject"),
        Record::txt("bounce.relaxed.test", &format!("v=spf1 ip4:{CLIENT} -all")),
        // Strict: only the From: domain itself aligns.
        Record::txt("_dmarc.strict.test", "v=DMARC1; p=quarantine; aspf=s"),
        Record::txt("bounce.strict.test", &format!("v=spf1 ip4:{CLIENT} -all")),
        Record::txt("strict.test", &format!("v=spf1 ip4:{CLIENT} -all")),
    ]);
    let v = verifier(&dns);

    // A forged From: with its own domain's SPF passing: fail, p=reject.
    let r = v
        .check(
            &message("ceo@victim.test", "pay\r\n"),
            client(),
            "forger.test",
            "x@forger.test",
        )
        .await;
    assert_eq!(r.spf_mail_from.result, Verdict::Pass);
    assert_eq!(r.dmarc.result, Verdict::Fail, "{}", r.log_line());
    assert_eq!(r.dmarc.policy, Some(DmarcPolicy::Reject));
    assert_eq!(r.dmarc.header_from, "victim.test");
    assert!(
        r.header("mx")
            .contains("\tdmarc=fail (p=reject) header.from=victim.test;")
    );

    // Relaxed alignment: bounce.relaxed.test aligns with relaxed.test.
    let r = v
        .check(
            &message("a@relaxed.test", "hi\r\n"),
            client(),
            "h.test",
            "b@bounce.relaxed.test",
        )
        .await;
    assert_eq!(r.dmarc.result, Verdict::Pass, "{}", r.log_line());
    assert!(r.dmarc.spf_aligned);
    assert_eq!(r.dmarc.policy, Some(DmarcPolicy::Quarantine));

    // sp= applies to a From: subdomain without its own record.
    let r = v
        .check(
            &message("a@news.relaxed.test", "hi\r\n"),
            client(),
            "h.test",
            "b@forger.test",
        )
        .await;
    assert_eq!(r.dmarc.result, Verdict::Fail, "{}", r.log_line());
    assert_eq!(r.dmarc.policy, Some(DmarcPolicy::Reject));

    // Strict alignment: the same arrangement fails, the exact domain passes.
    let r = v
        .check(
            &message("a@strict.test", "hi\r\n"),
            client(),
            "h.test",
            "b@bounce.strict.test",
        )
        .await;
    assert_eq!(r.spf_mail_from.result, Verdict::Pass);
    assert_eq!(r.dmarc.result, Verdict::Fail, "{}", r.log_line());
    let r = v
        .check(
            &message("a@strict.test", "hi\r\n"),
            client(),
            "h.test",
            "b@strict.test",
        )
        .await;
    assert_eq!(r.dmarc.result, Verdict::Pass, "{}", r.log_line());

    // No record: none, and no policy.
    let r = v
        .check(
            &message("a@forger.test", "hi\r\n"),
            client(),
            "h.test",
            "b@forger.test",
        )
        .await;
    assert_eq!((r.dmarc.result, r.dmarc.policy), (Verdict::None, None));
    assert_eq!(r.arc.result, Verdict::None);
}

#[tokio::test]
async fn arc_chain_sealed_by_python3_dkim() {
    let dir = tempfile::tempdir().unwrap();
    let (key, record) = dkim_key(dir.path());
    let dns = DnsServer::start(vec![Record::txt("arc._domainkey.fwd.test", &record)]);
    let v = verifier(&dns);
    let mut received =
        b"Authentication-Results: fwd.test; spf=pass smtp.mailfrom=a@orig.test\r\n".to_vec();
    received.extend_from_slice(&message("a@orig.test", "Forwarded.\r\n"));
    let sealed = python_arc_sign(&received, &key, "arc", "fwd.test");

    let r = v.check(&sealed, client(), "fwd.test", "a@fwd.test").await;
    assert_eq!(
        (r.arc.result, r.arc.sets),
        (Verdict::Pass, 1),
        "{}",
        r.log_line()
    );
    assert!(r.header("mx").contains("\tarc=pass\r\n"));

    let text = String::from_utf8(sealed).unwrap();
    let r = v
        .check(
            text.replace("Forwarded.", "Changed.").as_bytes(),
            client(),
            "fwd.test",
            "a@fwd.test",
        )
        .await;
    assert_eq!(r.arc.result, Verdict::Fail, "{}", r.log_line());
}

/// An ArcSealer for `key` as `fwd.test`, selector `arc`.
fn sealer(dir: &Path, key: &Path) -> postern_auth::ArcSealer {
    std::fs::write(
        dir.join("master.toml"),
        format!(
            "[main]\ndkim_key_table = \"inline:{{ fwd=fwd.test:arc:{} }}\"\n\
             arc_sealing_key = \"fwd\"\n",
            key.display()
        ),
    )
    .unwrap();
    let config = postern_config::Config::load(&dir.join("master.toml"), &[]).unwrap();
    postern_auth::ArcSealer::from_params(config.main())
        .unwrap()
        .expect("a sealer")
}

#[tokio::test]
async fn postern_seals_a_chain_python3_dkim_and_postern_validate() {
    let dir = tempfile::tempdir().unwrap();
    let (key, record) = dkim_key(dir.path());
    let dns = DnsServer::start(vec![Record::txt("arc._domainkey.fwd.test", &record)]);
    let v = verifier(&dns);
    let seal = sealer(dir.path(), &key);

    // Without our Authentication-Results there is nothing to vouch for.
    let plain = message("a@orig.test", "Forwarded.\r\n");
    assert_eq!(seal.seal(&plain, "fwd.test").unwrap(), None);

    // The first hop: cv=none.
    let mut received = b"Authentication-Results: fwd.test;\r\n\tspf=pass smtp.mailfrom=a@orig.test;\r\n\tarc=none\r\n".to_vec();
    received.extend_from_slice(&plain);
    let set = seal.seal(&received, "fwd.test").unwrap().expect("sealed");
    assert!(
        set.contains("ARC-Seal: i=1;") && set.contains("cv=none"),
        "{set}"
    );
    assert!(
        set.contains("ARC-Authentication-Results: i=1; fwd.test;"),
        "{set}"
    );
    let once = [set.as_bytes(), &received].concat();
    assert_eq!(
        postern_tests::dkim::python_arc_verify(&once, &record, dir.path()),
        "pass"
    );
    let r = v.check(&once, client(), "fwd.test", "a@fwd.test").await;
    assert_eq!(
        (r.arc.result, r.arc.sets),
        (Verdict::Pass, 1),
        "{}",
        r.log_line()
    );

    // The second hop, after a check that passed: cv=pass, i=2.
    let mut again = r.header("fwd.test").into_bytes();
    again.extend_from_slice(&postern_auth::verify::remove_our_auth_results(
        &once, "fwd.test",
    ));
    let set = seal.seal(&again, "fwd.test").unwrap().expect("sealed");
    assert!(
        set.contains("ARC-Seal: i=2;") && set.contains("cv=pass"),
        "{set}"
    );
    let twice = [set.as_bytes(), &again].concat();
    assert_eq!(
        postern_tests::dkim::python_arc_verify(&twice, &record, dir.path()),
        "pass"
    );
    let r = v.check(&twice, client(), "fwd.test", "a@fwd.test").await;
    assert_eq!(
        (r.arc.result, r.arc.sets),
        (Verdict::Pass, 2),
        "{}",
        r.log_line()
    );

    // A changed body breaks the newest message signature.
    let changed = String::from_utf8(twice)
        .unwrap()
        .replace("Forwarded.", "Changed.");
    assert_eq!(
        postern_tests::dkim::python_arc_verify(&changed, &record, dir.path()),
        "fail"
    );

    // A chain whose last check failed gets one cv=fail set, then no more.
    let failed = format!(
        "Authentication-Results: fwd.test; arc=fail\r\n{}",
        String::from_utf8_lossy(&postern_auth::verify::remove_our_auth_results(
            changed.as_bytes(),
            "fwd.test"
        ))
    );
    let set = seal
        .seal(failed.as_bytes(), "fwd.test")
        .unwrap()
        .expect("sealed");
    assert!(set.contains("cv=fail"), "{set}");
    let sealed_failed = format!("{set}{failed}");
    assert_eq!(
        seal.seal(sealed_failed.as_bytes(), "fwd.test").unwrap(),
        None
    );
}
