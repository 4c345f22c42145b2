//! The log file is ours, or we do not touch it; and one writer per log.
//!
//! Each test here failed before: a second writer opened the same log and forked
//! the chain; torn-tail recovery truncated any file not ending in a newline (a
//! worker secret of 32 raw bytes among them) and followed symlinks; devices
//! were written to; an empty log verified as intact.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used
)]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use vram_audit::{
    verify_chain, AuditError, AuditKey, AuditLog, AuditSink, FindingKind, LogOptions,
};

fn options(lock_wait: Duration) -> LogOptions {
    LogOptions {
        lock_wait,
        ..fast_options()
    }
}

fn open(path: &Path) -> Result<AuditLog, AuditError> {
    AuditLog::open_file(path, key(), "w", options(Duration::ZERO))
}

fn verify(path: &Path) -> vram_audit::VerifyReport {
    verify_chain(&[path.to_path_buf()], &key(), None).unwrap()
}

/// A file of `bytes` in `dir`, as a worker secret would be.
fn write_secret(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn a_second_writer_on_the_same_log_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let first = open(&path).unwrap();
    first.record(event(1)).unwrap();

    let t0 = Instant::now();
    let err =
        AuditLog::open_file(&path, key(), "w2", options(Duration::from_millis(200))).unwrap_err();
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "it waited first"
    );
    match &err {
        AuditError::Locked { path: p, lock, .. } => {
            assert_eq!(p, &path);
            assert_eq!(lock, &dir.path().join("audit.jsonl.lock"));
        }
        other => panic!("expected Locked, got {other}"),
    }
    assert!(
        err.to_string().contains("give each worker its own log"),
        "{err}"
    );

    // The refused writer wrote nothing: the first one's chain goes on.
    first.record(event(2)).unwrap();
    drop(first);
    let r = verify(&path);
    assert!(r.is_intact(), "{:?}", r.findings);
    assert_eq!(r.records, 3, "log_created and two events");

    // Once the first is closed, the next one continues the chain.
    let second = open(&path).unwrap();
    second.record(event(3)).unwrap();
    drop(second);
    assert!(verify(&path).is_intact());
}

#[test]
fn a_second_writer_waits_for_the_first_to_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let first = open(&path).unwrap();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        first.record(event(1)).unwrap();
        drop(first);
    });
    let t0 = Instant::now();
    let second = AuditLog::open_file(&path, key(), "w2", options(Duration::from_secs(20))).unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    closer.join().unwrap();
    second.record(event(2)).unwrap();
    drop(second);
    let r = verify(&path);
    assert!(r.is_intact(), "{:?}", r.findings);
    assert_eq!(r.records, 4, "log_created, event, log_opened, event");
}

#[test]
fn many_threads_opening_one_log_at_once_form_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let log = AuditLog::open_file(&path, key(), "w", options(Duration::from_secs(30)))
                    .unwrap();
                for j in 0..5 {
                    log.record(event(i * 10 + j)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let r = verify(&path);
    assert!(r.is_intact(), "{:?}", r.findings);
    assert_eq!(r.records, 8 * 6);
}

#[test]
fn a_new_log_begins_with_its_genesis_record() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    drop(open(&a).unwrap());
    drop(open(&b).unwrap());
    let ra = verify(&a);
    let rb = verify(&b);
    assert!(ra.is_intact() && rb.is_intact());
    let (ga, gb) = (ra.genesis.clone().unwrap(), rb.genesis.unwrap());
    let first = &read_lines(&a)[0];
    // Format 2: the record itself is bound to the log id its event announces.
    assert!(
        first.starts_with(&format!(r#"{{"v":2,"log":"{}","seq":1,"#, ga.log_id))
            && first.contains(&format!(
                r#""event":{{"type":"log_created","format":2,"key_id":"{}","log_id":"{}""#,
                key().key_id(),
                ga.log_id
            )),
        "{first}"
    );
    assert_eq!(
        (ga.format, ga.key_id.as_str()),
        (2, key().key_id().as_str())
    );
    assert_eq!(ga.log_id.len(), 32);
    assert!(ga.log_id.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(ga.log_id, gb.log_id, "random log ids");
    assert_eq!(
        (ra.format, ra.log_id.as_deref()),
        (Some(2), Some(ga.log_id.as_str()))
    );
    // Every later record is bound to it too, and so is the head.
    assert!(read_lines(&a)[1..]
        .iter()
        .all(|l| l.starts_with(&format!(r#"{{"v":2,"log":"{}","#, ga.log_id))));
    assert_eq!(ra.head.unwrap().log_id, Some(ga.log_id));

    // In memory too.
    let mem = AuditLog::in_memory(key(), "w").unwrap();
    assert!(mem.lines()[0].contains(r#""type":"log_created""#));
}

#[test]
fn a_worker_secret_given_as_the_log_is_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    // 32 raw bytes without a newline (the torn-tail case), with one inside,
    // and a text secret ending in a newline.
    let mut raw: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    raw.retain(|b| *b != b'\n');
    let mut with_newline = raw.clone();
    with_newline[7] = b'\n';
    for (name, bytes) in [
        ("raw.secret", raw.clone()),
        ("nl.secret", with_newline),
        (
            "text.secret",
            b"0123456789abcdef0123456789abcdef\n".to_vec(),
        ),
        ("one-byte", b"{".to_vec()),
    ] {
        let p = write_secret(dir.path(), name, &bytes);
        let err = open(&p).unwrap_err();
        assert!(matches!(err, AuditError::NotALog { .. }), "{name}: {err}");
        assert!(err.to_string().contains("left unchanged"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), bytes, "{name} was modified");
    }
}

#[test]
fn a_log_of_another_key_is_not_ours() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 3);
    let before = std::fs::read(&path).unwrap();
    let mut torn = before.clone();
    torn.extend_from_slice(b"{\"v\":1,\"seq\":4");
    std::fs::write(&path, &torn).unwrap();
    let err =
        AuditLog::open_file(&path, AuditKey::from_bytes([9; 32]), "w", fast_options()).unwrap_err();
    assert!(matches!(err, AuditError::NotALog { .. }), "{err}");
    assert!(err.to_string().contains("another key"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        torn,
        "torn tail left in place"
    );
}

#[test]
fn an_interrupted_first_write_is_repaired() {
    // A crash while the genesis record was being written leaves the start of
    // a record and nothing else: that is ours, and is cut off.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, b"{\"v\":1,\"seq\":1,\"ts\":\"2026-01-01T00:").unwrap();
    drop(open(&path).unwrap());
    let lines = read_lines(&path);
    assert!(lines[0].contains(r#""type":"log_created""#), "{}", lines[0]);
    assert!(
        lines[1].contains(r#""type":"torn_tail_recovered""#),
        "{}",
        lines[1]
    );
    assert!(verify(&path).is_intact());
}

#[test]
fn the_same_file_as_the_secret_is_refused_even_under_another_name() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write_secret(dir.path(), "worker.secret", &[0x41; 40]);
    let link = dir.path().join("audit.jsonl");
    std::fs::hard_link(&secret, &link).unwrap();
    for path in [&secret, &link] {
        let err = AuditLog::open_file_protecting(path, key(), "w", fast_options(), &[&secret])
            .unwrap_err();
        assert!(matches!(err, AuditError::ProtectedFile { .. }), "{err}");
    }
    assert_eq!(std::fs::read(&secret).unwrap(), [0x41; 40]);
    assert!(
        !dir.path().join("audit.jsonl.lock").exists(),
        "refused before anything was created"
    );
    // A log elsewhere is fine.
    let ok = dir.path().join("other.jsonl");
    drop(AuditLog::open_file_protecting(&ok, key(), "w", fast_options(), &[&secret]).unwrap());
}

#[cfg(unix)]
#[test]
fn symlinks_and_special_files_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let target = write_secret(dir.path(), "target", b"precious");
    let link = dir.path().join("audit.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = open(&link).unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::NotRegularFile {
                found: "symlink",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");

    // A dangling symlink is not followed to create its target either.
    let dangling = dir.path().join("dangling.jsonl");
    let nowhere = dir.path().join("nowhere");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    assert!(matches!(
        open(&dangling).unwrap_err(),
        AuditError::NotRegularFile { .. }
    ));
    assert!(!nowhere.exists());

    // A symlinked lock file is not followed.
    let base = dir.path().join("locked.jsonl");
    std::os::unix::fs::symlink(&target, dir.path().join("locked.jsonl.lock")).unwrap();
    assert!(matches!(
        open(&base).unwrap_err(),
        AuditError::NotRegularFile {
            found: "symlink",
            ..
        }
    ));
    assert!(!base.exists());

    // A directory, and a character device.
    assert!(matches!(
        open(dir.path()).unwrap_err(),
        AuditError::NotRegularFile { .. } | AuditError::InvalidPath { .. }
    ));
    let full = Path::new("/dev/full");
    if full.exists() {
        let err = open(full).unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::NotRegularFile {
                    found: "character device",
                    ..
                }
            ),
            "{err}"
        );
        assert!(!Path::new("/dev/full.lock").exists());
    }
}

#[test]
fn an_empty_log_is_not_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, b"").unwrap();
    let r = verify(&path);
    assert!(!r.is_intact());
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].kind, FindingKind::Empty);
    assert!(
        r.findings[0].to_string().contains("empty log"),
        "{}",
        r.findings[0]
    );
    let r = vram_audit::verify_lines(&[], &key(), None);
    assert_eq!(r.findings[0].kind, FindingKind::Empty);

    // Opening an empty file starts a new log in it (nothing to lose).
    drop(open(&path).unwrap());
    let r = verify(&path);
    assert!(r.is_intact(), "{:?}", r.findings);
    assert!(r.genesis.is_some());
}

#[test]
fn best_effort_losses_are_counted() {
    let log = AuditLog::in_memory(key(), "w").unwrap();
    log.set_failing(true);
    for i in 0..5 {
        assert!(!log.record(event(i)).unwrap().is_written());
    }
    log.set_failing(false);
    log.record(event(9)).unwrap();
    let stats = log.stats();
    assert_eq!((stats.lost, stats.failures), (5, 5));
}

/// Reading a log named by the operator (`vram audit verify`, `show`, `head`)
/// opens it as writing does: a symbolic link is refused, and a FIFO is
/// refused at once instead of being waited on.
#[test]
fn logs_are_read_only_as_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.jsonl");
    std::fs::write(&target, b"").unwrap();
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let fifo = dir.path().join("fifo.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .output()
        .unwrap();
    assert!(made.status.success(), "mkfifo: {made:?}");

    // Each read runs on a thread: a blocking open would fail the test at the
    // bound instead of holding it.
    type Read = fn(PathBuf, &AuditKey) -> Result<(), AuditError>;
    let refused = |path: PathBuf, read: Read| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read(path, &AuditKey::from_bytes([7; 32])));
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("refused at once, not waited on")
    };
    let readers: [Read; 3] = [
        |p, _| vram_audit::is_log_file(&p).map(drop),
        |p, k| verify_chain(&[p], k, None).map(drop),
        |p, k| {
            vram_audit::read_records(&[p], Some(k), &vram_audit::VerifyOptions::default(), drop)
                .map(drop)
        },
    ];
    for read in readers {
        for (path, found) in [(&link, "symlink"), (&fifo, "FIFO")] {
            let answer = refused(path.clone(), read);
            assert!(
                matches!(&answer, Err(AuditError::NotRegularFile { found: f, .. }) if *f == found),
                "{}: {answer:?}",
                path.display()
            );
        }
    }
}
