//! The one-line-per-record limit (1 MiB) on both sides: the writer refuses a
//! record over it and writes nothing, a record of exactly the limit is
//! written and verifies, and the verifier refuses anything longer.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use vram_audit::{verify_chain, AuditError, AuditEvent, AuditLog, AuditSink};

const MAX: usize = 1 << 20;

fn failed(reason_len: usize) -> AuditEvent {
    AuditEvent::SealFailed {
        shard_id: "shard-limit".into(),
        stage: "copy".into(),
        reason: "x".repeat(reason_len),
    }
}

/// The length of the line a fresh log writes for `failed(n)`, or the error.
fn line_len(n: usize) -> Result<usize, AuditError> {
    let log = AuditLog::in_memory(key(), "limit-test").unwrap();
    log.record(failed(n))?;
    Ok(log.lines().last().unwrap().len())
}

#[test]
fn a_record_over_the_limit_is_refused_and_nothing_is_written() {
    let log = AuditLog::in_memory(key(), "limit-test").unwrap();
    log.record(event(1)).unwrap();
    let before = log.lines();
    let e = log.record(failed(MAX)).unwrap_err();
    match e {
        AuditError::RecordTooLarge { bytes, max } => {
            assert_eq!(max, MAX);
            assert!(bytes > MAX, "{bytes}");
        }
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    assert_eq!(log.lines(), before, "a refused record leaves no trace");
    // The chain goes on from where it was: the next record links to the
    // last one written, and the whole log verifies.
    log.record(event(2)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    write_lines(&path, &log.lines());
    let report = verify_chain(&[path], &key(), None).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, before.len() as u64 + 1);
}

#[test]
fn the_limit_is_exactly_one_mib_on_both_sides() {
    // The largest reason that fits, by bisection (the line grows one byte
    // per byte of reason: `x` needs no escaping).
    let (mut lo, mut hi) = (0usize, MAX);
    assert!(line_len(lo).is_ok() && line_len(hi).is_err());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if line_len(mid).is_ok() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    assert_eq!(
        line_len(lo).unwrap(),
        MAX,
        "the largest record is exactly the limit"
    );
    match line_len(lo + 1) {
        Err(AuditError::RecordTooLarge { bytes, max }) => assert_eq!((bytes, max), (MAX + 1, MAX)),
        other => panic!("one byte over: {other:?}"),
    }

    // A log holding a record of exactly the limit verifies intact.
    let log = AuditLog::in_memory(key(), "limit-test").unwrap();
    log.record(failed(lo)).unwrap();
    let lines = log.lines();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("max.jsonl");
    write_lines(&path, &lines);
    let report = verify_chain(std::slice::from_ref(&path), &key(), None).unwrap();
    assert!(report.is_intact(), "{report:?}");

    // One byte more in that line (JSON whitespace, so only the length and
    // the MAC change) is refused as over the limit, not merely as a bad MAC.
    let mut long = lines.clone();
    let last = long.last_mut().unwrap();
    *last = last.replacen("{", "{ ", 1);
    assert_eq!(last.len(), MAX + 1);
    write_lines(&path, &long);
    let report = verify_chain(&[path], &key(), None).unwrap();
    assert!(!report.is_intact());
    let text = format!("{:?}", report.findings);
    assert!(text.contains("limit"), "{text}");
}
