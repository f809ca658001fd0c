//! Unit tests that reach into the tree to fake crashes and corruption.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;

use crate::keys::{self, BODY, ENVELOPE, EXTENT, INCOMING, STATE};
use crate::*;
use common::pattern;

const CAP: u64 = 16 << 20;

/// Opens as qmgr does: sled's own I/O threads may hold the directory lock
/// for a moment after the previous store was dropped.
fn open(dir: &Path) -> QueueStore {
    QueueStore::open_with_retry(dir, CAP, Duration::from_secs(5)).expect("open queue")
}

fn env(sender: &str, rcpts: &[&str]) -> Envelope {
    Envelope {
        sender: sender.into(),
        recipients: rcpts.iter().map(|r| Recipient::new(*r)).collect(),
        arrival_unix: 1_700_000_000,
        ..Envelope::default()
    }
}

fn commit(store: &QueueStore, body: &[u8], e: Envelope) -> QueueId {
    let mut inc = store.begin_message().unwrap();
    for c in body.chunks(64 * 1024) {
        inc.append_body(c).unwrap();
    }
    inc.commit(e).unwrap()
}

/// All keys that mention `id` (any record kind, including the due index).
fn keys_of(store: &QueueStore, id: QueueId) -> usize {
    store
        .inner
        .tree
        .iter()
        .keys()
        .map(|k| k.unwrap())
        .filter(|k| {
            keys::id_of_key(k) == Some(id)
                && [INCOMING, BODY, EXTENT, ENVELOPE, STATE].contains(&k[0])
                || keys::id_of_due_key(k) == Some(id)
        })
        .count()
}

/// How many records of one kind (`B`, `X`, `E`...) a message has.
fn records(store: &QueueStore, kind: u8, id: QueueId) -> usize {
    store.inner.tree.scan_prefix(keys::id_key(kind, id)).count()
}

fn blob_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("blobs")).unwrap().count()
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("bodies")).unwrap().count()
}

/// Waits until `want` segments are in use: the committer retires freed
/// ones after the sync that follows their release, keeping up to two
/// files as spares.
fn wait_segments(store: &QueueStore, want: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let segments = &store.inner.segments;
    while segments.in_use() != want && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(segments.in_use(), want, "body segments in use");
    assert!(
        segment_count(store.dir()) <= want + 2,
        "at most two spare files"
    );
}

#[test]
fn commit_reopen_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let body = pattern(1, 100_000);
    let mut e = env(
        "alice@example.org",
        &["bob@example.net", "carol@example.net"],
    );
    e.client = Some(ClientInfo {
        name: "mx.example.org".into(),
        addr: "192.0.2.1".into(),
        helo: "mx".into(),
        protocol: postern_envelope::ClientProtocol::Esmtp,
        sasl_username: None,
    });
    e.envid = Some("abc".into());
    e.ret = Some(Ret::Hdrs);
    e.recipients[0].notify = Some(Notify {
        success: true,
        failure: true,
        delay: false,
    });
    e.recipients[0].orcpt = Some(Orcpt::rfc822("bob@example.net"));
    let id = {
        let store = open(tmp.path());
        let id = commit(&store, &body, e.clone());
        assert_eq!(store.read_body(id).unwrap(), body);
        id
    };
    let store = open(tmp.path());
    let m = store.get(id).unwrap().expect("message survives reopen");
    let mut want = e;
    want.size = body.len() as u64;
    assert_eq!(m.envelope, want);
    assert_eq!(m.state, QueueState::Active);
    assert_eq!(m.attempts, 0);
    assert_eq!(store.read_body(id).unwrap(), body);
    assert_eq!(store.recovery_report().scheduled, 1);
    let next = store.begin_message().unwrap();
    assert!(next.id() > id, "ids keep increasing across reopen");
    next.abort().unwrap();
}

#[test]
fn five_mib_body_goes_to_a_segment_and_streams() {
    let tmp = tempfile::tempdir().unwrap();
    let body = pattern(5, 5 << 20);
    let id = {
        let store = open(tmp.path());
        let id = commit(&store, &body, env("a@x", &["b@y"]));
        let extents = records(&store, EXTENT, id);
        assert_eq!(extents, (5 << 20) / (128 << 10), "128 KiB extents");
        assert_eq!(store.inner.tree.scan_prefix([BODY]).count(), 0);
        assert_eq!(segment_count(tmp.path()), 1);
        for kv in store.inner.tree.iter() {
            let (_, v) = kv.unwrap();
            assert!(v.len() <= CHUNK, "every stored value is within CHUNK");
        }
        id
    };
    assert_eq!(blob_count(tmp.path()), 0, "sled wrote no blob files");
    let store = open(tmp.path());
    let mut r = store.body_reader(id).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 10_000]; // deliberately not a multiple of CHUNK
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got.len(), body.len());
    assert!(got == body);
    assert_eq!(store.get(id).unwrap().unwrap().envelope.size, 5 << 20);
    assert_eq!(store.stats().blob_files_synced, 0);
}

#[test]
fn odd_sized_appends_reassemble() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let body = pattern(9, 3 * CHUNK + 17);
    let mut inc = store.begin_message().unwrap();
    for c in body.chunks(1000) {
        inc.append_body(c).unwrap();
    }
    let id = inc.commit(env("a@x", &["b@y"])).unwrap();
    assert_eq!(store.read_body(id).unwrap(), body);
    let empty = store
        .begin_message()
        .unwrap()
        .commit(env("", &["b@y"]))
        .unwrap();
    assert_eq!(store.read_body(empty).unwrap(), Vec::<u8>::new());
}

#[test]
fn concurrent_commits_are_durable_distinct_and_grouped() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..200u64)
                    .map(|i| {
                        let body = pattern(t * 1000 + i, 1024);
                        let id = commit(&store, &body, env(&format!("t{t}@x"), &["r@y"]));
                        (id, body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<(QueueId, Vec<u8>)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let ids: HashSet<QueueId> = all.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 1600, "ids are distinct");
    let stats = store.stats();
    eprintln!("8x200 commits: {stats:?}");
    assert!(
        stats.syncs < stats.requests,
        "concurrent commits share syncs: {stats:?}"
    );
    drop(store);
    let store = open(tmp.path());
    assert_eq!(store.recovery_report().scheduled, 1600);
    for (id, body) in &all {
        assert_eq!(&store.read_body(*id).unwrap(), body);
    }
    assert_eq!(store.list().unwrap().len(), 1600);
    assert_eq!(blob_count(tmp.path()), 0);
}

#[test]
fn serial_mode_syncs_every_request() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store.set_serial_commits(true);
    let before = store.stats();
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let s = store.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    commit(&s, b"x", env("a@x", &["b@y"]));
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let after = store.stats();
    assert_eq!(after.requests - before.requests, 80);
    assert_eq!(after.syncs - before.syncs, 80);
}

#[test]
fn incomplete_incoming_removed_on_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let (kept, lost) = {
        let store = open(tmp.path());
        let kept = commit(&store, b"kept", env("a@x", &["b@y"]));
        let mut inc = store.begin_message().unwrap();
        inc.append_body(&pattern(3, 200_000)).unwrap();
        let lost = inc.id();
        // Simulate a crash mid-receive: skip the cleanup Drop would do.
        inc.finished = true;
        drop(inc);
        // Orphan body chunks without a marker (marker lost, chunks not).
        let orphan = store.inner.ids.next();
        store
            .inner
            .tree
            .insert(keys::body_key(keys::BODY, orphan, 0), &b"orphan"[..])
            .unwrap();
        assert!(keys_of(&store, lost) >= 1);
        (kept, lost)
    };
    let store = open(tmp.path());
    let r = store.recovery_report();
    assert_eq!(r.removed_incomplete, 2, "{r:?}");
    assert_eq!(r.scheduled, 1);
    assert_eq!(keys_of(&store, lost), 0);
    assert!(store.get(lost).unwrap().is_none());
    assert_eq!(store.read_body(kept).unwrap(), b"kept");
    assert_eq!(store.inner.tree.scan_prefix([BODY]).count(), 1);
    assert_eq!(
        segment_count(tmp.path()),
        0,
        "the lost body's segment is deleted"
    );
}

#[test]
fn small_bodies_stay_in_sled_and_big_ones_use_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    for len in [0, 1, CHUNK - 1, CHUNK] {
        let body = pattern(len as u64, len);
        let id = commit(&store, &body, env("a@x", &["b@y"]));
        assert_eq!(records(&store, EXTENT, id), 0);
        assert_eq!(store.read_body(id).unwrap(), body, "{len} bytes");
    }
    assert_eq!(segment_count(tmp.path()), 0);
    // Over one chunk, in awkward pieces: extents in order.
    for len in [CHUNK + 1, 128 << 10, (128 << 10) + 1, 300_001] {
        let body = pattern(len as u64, len);
        let mut inc = store.begin_message().unwrap();
        for piece in body.chunks(7_001) {
            inc.append_body(piece).unwrap();
        }
        let id = inc.commit(env("a@x", &["b@y"])).unwrap();
        assert_eq!(records(&store, BODY, id), 0);
        assert_eq!(store.read_body(id).unwrap(), body, "{len} bytes");
        let chunks: Vec<usize> = store
            .body_reader(id)
            .unwrap()
            .map(|c| c.unwrap().len())
            .collect();
        assert_eq!(chunks.iter().sum::<usize>(), len);
        assert!(chunks.iter().all(|&c| c <= 128 << 10), "{chunks:?}");
    }
}

#[test]
fn delivered_bodies_free_their_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let ids: Vec<QueueId> = (0..3)
        .map(|i| commit(&store, &pattern(i, 100_000), env("a@x", &["b@y"])))
        .collect();
    assert_eq!(segment_count(tmp.path()), 1, "one active segment");
    let sent = RcptState::Sent {
        at: 1,
        reply: "250 ok".into(),
    };
    for (n, id) in ids.iter().enumerate() {
        let removed = store
            .finish_attempt(&AttemptEnd {
                id: *id,
                outcomes: &[(0, sent.clone())],
                next: &QueueState::Active,
                now_unix: 1,
            })
            .unwrap();
        assert!(removed);
        // Still referenced by the others.
        if n < 2 {
            assert_eq!(segment_count(tmp.path()), 1);
        }
    }
    wait_segments(&store, 0);
    assert_eq!(segment_count(tmp.path()), 1, "kept as a spare");
    // The next big message writes over the spare.
    let id = commit(&store, &pattern(9, 50_000), env("a@x", &["b@y"]));
    assert_eq!(store.read_body(id).unwrap(), pattern(9, 50_000));
    assert_eq!(segment_count(tmp.path()), 1);
    // A reader keeps its segment from reuse after the message is gone.
    let mut reader = store.body_reader(id).unwrap();
    assert!(store.remove(id).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(store.inner.segments.in_use(), 1);
    let next = commit(&store, &pattern(10, 50_000), env("a@x", &["b@y"]));
    let mut got = Vec::new();
    reader.read_to_end(&mut got).unwrap();
    assert!(
        got == pattern(9, 50_000),
        "the reader's bytes were not written over"
    );
    drop(reader);
    assert!(store.remove(next).unwrap());
    wait_segments(&store, 0);
    drop(store);
    let store = open(tmp.path());
    assert_eq!(segment_count(tmp.path()), 0, "recovery deletes spares");
    drop(store);
}

#[test]
fn deferred_and_held_bodies_move_into_sled() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let deferred = commit(&store, &pattern(1, 200_000), env("a@x", &["b@y"]));
    let held = commit(&store, &pattern(2, 70_000), env("a@x", &["b@y"]));
    // A reader made before the move still reads the segment.
    let early = store.body_reader(deferred).unwrap();
    let next = QueueState::Deferred {
        next_try_unix: 5,
        reason: "try later".into(),
    };
    let end = AttemptEnd {
        id: deferred,
        outcomes: &[],
        next: &next,
        now_unix: 1,
    };
    assert!(!store.finish_attempt(&end).unwrap());
    store.hold(held).unwrap();
    for (id, seed, len) in [(deferred, 1, 200_000), (held, 2, 70_000)] {
        assert_eq!(records(&store, EXTENT, id), 0);
        assert!(records(&store, BODY, id) > 1);
        assert_eq!(store.read_body(id).unwrap(), pattern(seed, len));
    }
    let mut got = Vec::new();
    for c in early {
        got.extend_from_slice(&c.unwrap());
    }
    assert!(got == pattern(1, 200_000));
    wait_segments(&store, 0);
    drop(store);
    let store = open(tmp.path());
    assert_eq!(store.read_body(deferred).unwrap(), pattern(1, 200_000));
}

#[test]
fn recovery_checks_segments_and_deletes_unreferenced_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, short) = {
        let store = open(tmp.path());
        let good = commit(&store, &pattern(1, 100_000), env("a@x", &["b@y"]));
        let short = commit(&store, &pattern(2, 100_000), env("a@x", &["b@y"]));
        (good, short)
    };
    // The second body never reached the disk; a stray file lies about.
    let seg = std::fs::read_dir(tmp.path().join("bodies"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(150_000)
        .unwrap();
    std::fs::write(tmp.path().join("bodies").join(format!("{:016x}", 99)), b"x").unwrap();
    let store = open(tmp.path());
    let r = store.recovery_report();
    assert_eq!((r.scheduled, r.corrupt), (1, 1), "{r:?}");
    assert_eq!(
        store.get(short).unwrap().unwrap().state,
        QueueState::Corrupt
    );
    assert_eq!(store.read_body(good).unwrap(), pattern(1, 100_000));
    assert_eq!(segment_count(tmp.path()), 1, "the stray segment is deleted");
}

#[test]
fn abort_and_drop_remove_partial_data() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let mut inc = store.begin_message().unwrap();
    inc.append_body(&pattern(1, 100_000)).unwrap();
    let id = inc.id();
    inc.abort().unwrap();
    assert_eq!(keys_of(&store, id), 0);
    let mut inc = store.begin_message().unwrap();
    inc.append_body(&pattern(1, 100_000)).unwrap();
    let id = inc.id();
    drop(inc);
    assert_eq!(keys_of(&store, id), 0);
}

#[test]
fn corrupt_records_move_to_corrupt_and_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let (bad_env, bad_state, good) = {
        let store = open(tmp.path());
        let bad_env = commit(&store, b"one", env("a@x", &["b@y"]));
        let bad_state = commit(&store, b"two", env("a@x", &["b@y"]));
        let good = commit(&store, b"three", env("a@x", &["b@y"]));
        let t = &store.inner.tree;
        t.insert(keys::envelope_key(bad_env, 0), &[1u8, 0xFF, 0xFF, 0xFF][..])
            .unwrap();
        // Garbage in every key space, including keys of the wrong length.
        for (i, k) in [
            vec![STATE],
            vec![STATE, 1, 2],
            vec![BODY, 9],
            vec![ENVELOPE, 0xFF, 0xFF, 0xFF],
            vec![keys::DUE, 1],
            vec![INCOMING],
            vec![0xEE; 40],
        ]
        .into_iter()
        .enumerate()
        {
            t.insert(k, pattern(i as u64, 50)).unwrap();
        }
        // get: fails cleanly and moves the message to corrupt.
        match store.get(bad_env) {
            Err(QueueError::Corrupt { id, .. }) => assert_eq!(id, bad_env),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let due = store.due(i64::MAX).unwrap();
        assert!(!due.contains(&bad_env));
        assert!(due.contains(&good));
        // A garbage state record, found by recovery at the next open.
        t.insert(keys::id_key(STATE, bad_state), &b"\x01garbage"[..])
            .unwrap();
        store.inner.durable().unwrap();
        (bad_env, bad_state, good)
    };
    let store = open(tmp.path());
    let r = store.recovery_report();
    assert_eq!(r.corrupt, 2, "{r:?}");
    assert_eq!(r.scheduled, 1, "{r:?}");
    let list = store.list().unwrap();
    let state_of = |id| list.iter().find(|s| s.id == id).map(|s| s.state.clone());
    assert_eq!(state_of(bad_env), Some(QueueState::Corrupt));
    assert_eq!(state_of(bad_state), Some(QueueState::Corrupt));
    assert_eq!(state_of(good), Some(QueueState::Active));
    assert_eq!(store.due(i64::MAX).unwrap(), vec![good]);
    // The readable one can still be fetched; the administrator may remove
    // corrupt ones.
    assert_eq!(
        store.get(bad_state).unwrap().unwrap().state,
        QueueState::Corrupt
    );
    assert!(store.remove(bad_env).unwrap());
    assert_eq!(keys_of(&store, bad_env), 0);
}

#[test]
fn second_open_is_locked_and_retry_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let t0 = std::time::Instant::now();
    match QueueStore::open(tmp.path(), CAP) {
        Err(e @ QueueError::Locked { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(2), "fails at once");
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(store);
    });
    let again = QueueStore::open_with_retry(tmp.path(), CAP, Duration::from_secs(10))
        .expect("open after the holder exits");
    holder.join().unwrap();
    drop(again);
}

#[test]
fn state_transitions_and_due_order() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let a = commit(&store, b"a", env("a@x", &["1@y", "2@y"]));
    let b = commit(&store, b"b", env("b@x", &["1@y"]));
    let c = commit(&store, b"c", env("c@x", &["1@y"]));
    let d = commit(&store, b"d", env("d@x", &["1@y"]));
    assert_eq!(store.due(0).unwrap(), vec![a, b, c, d]);

    let deferred = |t: i64| QueueState::Deferred {
        next_try_unix: t,
        reason: format!("try at {t}"),
    };
    store.set_state(a, deferred(2000)).unwrap();
    store.set_state(b, deferred(1000)).unwrap();
    store.hold(c).unwrap();
    assert_eq!(store.due(999).unwrap(), vec![d]);
    assert_eq!(store.due(1000).unwrap(), vec![d, b]);
    assert_eq!(store.due(5000).unwrap(), vec![d, b, a]);
    assert!(!store.release(d).unwrap(), "d was not on hold");
    assert!(store.release(c).unwrap());
    assert_eq!(store.due(5000).unwrap(), vec![c, d, b, a]);

    // A partial attempt: one recipient sent, one deferred.
    let sent = RcptState::Sent {
        at: 10,
        reply: "250 ok".into(),
    };
    let removed = store
        .finish_attempt(&AttemptEnd {
            id: a,
            outcomes: &[
                (0, sent.clone()),
                (
                    1,
                    RcptState::Deferred {
                        reason: "451 later".into(),
                    },
                ),
            ],
            next: &deferred(3000),
            now_unix: 10,
        })
        .unwrap();
    assert!(!removed);
    let m = store.get(a).unwrap().unwrap();
    assert_eq!(m.attempts, 1);
    assert_eq!(m.last_attempt_unix, Some(10));
    assert_eq!(m.envelope.recipients[0].state, sent);
    let summary = store.list().unwrap();
    let sa = summary.iter().find(|s| s.id == a).unwrap();
    assert_eq!(sa.recipients, vec!["2@y".to_string()]);
    assert_eq!(sa.reason.as_deref(), Some("try at 3000"));
    assert_eq!(store.due(2999).unwrap(), vec![c, d, b]);

    // The last recipient bounces: the message leaves the queue.
    let bounced = RcptState::Bounced {
        at: 11,
        reply: "550 no".into(),
        dsn: "5.1.1".parse().unwrap(),
    };
    assert!(
        store
            .finish_attempt(&AttemptEnd {
                id: a,
                outcomes: &[(1, bounced)],
                next: &QueueState::Active,
                now_unix: 11,
            })
            .unwrap()
    );
    assert!(store.get(a).unwrap().is_none());
    assert_eq!(keys_of(&store, a), 0);

    assert!(matches!(
        store.record_outcomes(b, &[(5, sent.clone())]),
        Err(QueueError::BadRecipient { index: 5, .. })
    ));
    assert!(store.record_outcomes(b, &[(0, sent)]).unwrap());
    assert!(store.remove(b).unwrap());
    assert!(!store.remove(b).unwrap());
    assert!(matches!(
        store.set_state(b, QueueState::Active),
        Err(QueueError::NotFound(_))
    ));
    store.mark_corrupt(d).unwrap();
    assert_eq!(store.due(i64::MAX).unwrap(), vec![c]);
    // Extreme times do not break the index.
    store.set_state(c, deferred(i64::MAX)).unwrap();
    assert_eq!(store.due(i64::MAX - 1).unwrap(), Vec::<QueueId>::new());
    assert_eq!(store.due(i64::MAX).unwrap(), vec![c]);
    store.set_state(c, deferred(i64::MIN + 1)).unwrap();
    assert_eq!(store.due(i64::MIN + 1).unwrap(), vec![c]);
}

#[test]
fn failed_commit_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let failed = {
        let store = open(tmp.path());
        store.inject_commit_failure(true);
        let mut inc = store.begin_message().unwrap();
        inc.append_body(&pattern(2, 150_000)).unwrap();
        let id = inc.id();
        match inc.commit(env("a@x", &["b@y"])) {
            Err(QueueError::Commit(msg)) => assert!(msg.contains("injected"), "{msg}"),
            other => panic!("expected Commit error, got {other:?}"),
        }
        assert!(store.get(id).unwrap().is_none());
        assert_eq!(keys_of(&store, id), 0);
        assert!(store.due(i64::MAX).unwrap().is_empty());
        // The discard's freed segment asks for a sync of its own.
        assert!(store.stats().failed_syncs >= 1);
        store.inject_commit_failure(false);
        commit(&store, b"fine", env("a@x", &["b@y"]));
        wait_segments(&store, 0);
        id
    };
    let store = open(tmp.path());
    assert_eq!(store.recovery_report().scheduled, 1);
    assert_eq!(keys_of(&store, failed), 0);
    assert!(store.get(failed).unwrap().is_none());
}

#[test]
fn recovery_report_counts() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = open(tmp.path());
        commit(&store, b"1", env("a@x", &["b@y"]));
        commit(&store, b"2", env("a@x", &["b@y"]));
        let d = commit(&store, b"3", env("a@x", &["b@y"]));
        store
            .set_state(
                d,
                QueueState::Deferred {
                    next_try_unix: 5,
                    reason: "x".into(),
                },
            )
            .unwrap();
        let h = commit(&store, b"4", env("a@x", &["b@y"]));
        store.hold(h).unwrap();
        let c = commit(&store, b"5", env("a@x", &["b@y"]));
        store.mark_corrupt(c).unwrap();
        // All recipients final but not yet removed (crash before remove).
        let f = commit(&store, b"6", env("a@x", &["b@y"]));
        let done = RcptState::Sent {
            at: 1,
            reply: "250".into(),
        };
        assert!(store.record_outcomes(f, &[(0, done)]).unwrap());
        let mut inc = store.begin_message().unwrap();
        // Big enough that part of it is written before the crash.
        inc.append_body(&pattern(4, 200_000)).unwrap();
        inc.finished = true;
        drop(inc);
        store.inner.durable().unwrap();
    }
    let store = open(tmp.path());
    assert_eq!(
        store.recovery_report(),
        RecoveryReport {
            scheduled: 3,
            held: 1,
            removed_incomplete: 1,
            removed_done: 1,
            corrupt: 1,
        }
    );
    assert_eq!(store.list().unwrap().len(), 5);
    assert_eq!(store.due(i64::MAX).unwrap().len(), 3);
    // Opening again finds the same, minus what was cleaned.
    drop(store);
    let r = open(tmp.path()).recovery_report();
    assert_eq!((r.scheduled, r.held, r.corrupt), (3, 1, 1));
    assert_eq!((r.removed_done, r.removed_incomplete), (0, 0));
}

#[test]
fn large_envelope_is_split_into_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let rcpts: Vec<String> = (0..3000)
        .map(|i| format!("recipient-number-{i}@some-long-domain.example"))
        .collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let id = {
        let store = open(tmp.path());
        let id = commit(&store, b"x", env("a@x", &refs));
        let parts = records(&store, ENVELOPE, id);
        assert!(parts > 1, "{parts}");
        // Rewriting a multi-part envelope keeps the parts consistent.
        let outcomes: Vec<_> = (0..2999)
            .map(|i| {
                (
                    i,
                    RcptState::Sent {
                        at: 1,
                        reply: "250".into(),
                    },
                )
            })
            .collect();
        assert!(!store.record_outcomes(id, &outcomes).unwrap());
        id
    };
    let store = open(tmp.path());
    let m = store.get(id).unwrap().unwrap();
    assert_eq!(m.envelope.recipients.len(), 3000);
    assert!(
        m.envelope.recipients[..2999]
            .iter()
            .all(|r| r.state.is_final())
    );
}

#[test]
fn concurrent_large_bodies_never_make_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let hs: Vec<_> = (0..8u64)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                for i in 0..3 {
                    let body = pattern(t * 10 + i, (1 << 20) + 12_345);
                    let id = commit(&s, &body, env("a@x", &["b@y"]));
                    assert!(s.read_body(id).unwrap() == body);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    drop(store);
    assert_eq!(blob_count(tmp.path()), 0, "sled wrote blob files");
    assert_eq!(open(tmp.path()).recovery_report().scheduled, 24);
}

#[test]
fn the_listing_is_read_in_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let ids: Vec<QueueId> = (0..5)
        .map(|_| commit(&store, b"x", env("a@x", &["b@y"])))
        .collect();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_page(after, 2).unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(page.iter().map(|s| s.id));
    }
    assert_eq!(seen, ids);
    assert_eq!(store.list().unwrap().len(), 5);
}
