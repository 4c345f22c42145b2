//! Reopening a log after a crash, each case built on disk: what recovery
//! repairs (a partial first record, the only thing a crash during a first
//! write leaves) and what it must refuse rather than silently delete.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use vram_audit::{segment_files, verify_chain, AuditError, AuditLog, AuditSink, LogOptions};

fn rotating(max: u64) -> LogOptions {
    LogOptions {
        max_file_bytes: Some(max),
        ..fast_options()
    }
}

/// A log whose second segment holds at least one record.
fn two_segments(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    let log = AuditLog::open_file(path, key(), "w", rotating(1500)).unwrap();
    while segment_files(path).unwrap().len() < 2
        || read_lines(&segment_files(path).unwrap()[1]).is_empty()
    {
        log.record(event(1)).unwrap();
    }
    drop(log);
    let files = segment_files(path).unwrap();
    assert_eq!(files.len(), 2);
    files
}

#[test]
fn a_partial_first_record_of_a_new_log_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    // What a crash in the middle of writing the genesis record leaves.
    {
        let log = AuditLog::open_file(&path, key(), "w", fast_options()).unwrap();
        drop(log);
    }
    let genesis = read_lines(&path)[0].clone();
    std::fs::write(&path, &genesis.as_bytes()[..genesis.len() / 2]).unwrap();
    let log = AuditLog::open_file(&path, key(), "w", fast_options()).unwrap();
    log.record(event(1)).unwrap();
    drop(log);
    let r = verify_chain(std::slice::from_ref(&path), &key(), None).unwrap();
    assert!(r.is_intact(), "{:?}", r.findings);
    assert!(r.genesis.is_some());
}

#[test]
fn a_partial_first_record_of_a_new_segment_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let files = two_segments(&path);
    // Segment 1 holds only the first half of its first record: a crash
    // during the first write after the rotation.
    let first = read_lines(&files[1])[0].clone();
    std::fs::write(&files[1], &first.as_bytes()[..first.len() / 2]).unwrap();
    let log = AuditLog::open_file(&path, key(), "w", rotating(1500)).unwrap();
    log.record(event(2)).unwrap();
    drop(log);
    let files = segment_files(&path).unwrap();
    let r = verify_chain(&files, &key(), None).unwrap();
    assert!(r.is_intact(), "{:?}", r.findings);
}

#[test]
fn a_lone_torn_record_after_a_segment_that_does_not_rotate_to_it_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let files = two_segments(&path);
    // Segment 0 loses its `rotated` record (the tail was cut), and segment 1
    // holds only part of a record: nothing links segment 1 to the chain, and
    // it is not empty, so it is evidence, not leftover of a rotation.
    let mut lines = read_lines(&files[0]);
    let rotated = lines.pop().unwrap();
    assert!(rotated.contains(r#""type":"rotated""#), "{rotated}");
    write_lines(&files[0], &lines);
    let first = read_lines(&files[1])[0].clone();
    let torn = &first.as_bytes()[..first.len() / 2];
    std::fs::write(&files[1], torn).unwrap();

    let e = AuditLog::open_file(&path, key(), "w", rotating(1500)).unwrap_err();
    assert!(matches!(e, AuditError::Damaged { .. }), "{e}");
    assert!(e.to_string().contains("rotated"), "{e}");
    // Nothing was deleted or cut.
    assert_eq!(std::fs::read(&files[1]).unwrap(), torn);
    assert_eq!(read_lines(&files[0]), lines);
}

#[test]
fn an_empty_segment_after_a_segment_that_does_not_rotate_to_it_is_removed() {
    // The other side of the rule above: an *empty* segment with no rotation
    // pointing at it is what a crash between creating it and writing the
    // `rotated` record leaves. It holds nothing; it is removed and the chain
    // continues in the previous segment.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let files = two_segments(&path);
    let mut lines = read_lines(&files[0]);
    lines.pop().unwrap();
    write_lines(&files[0], &lines);
    std::fs::write(&files[1], b"").unwrap();
    let log = AuditLog::open_file(&path, key(), "w", rotating(1_000_000)).unwrap();
    log.record(event(3)).unwrap();
    drop(log);
    assert!(!files[1].exists());
    let r = verify_chain(&segment_files(&path).unwrap(), &key(), None).unwrap();
    assert!(r.is_intact(), "{:?}", r.findings);
}
