//! Tampering with a file log is found by the verifier at the right line.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used
)]
// Helper functions outside #[test] items are test code too.

mod common;

use std::path::PathBuf;

use common::*;
use vram_audit::{
    segment_files, verify_chain, AuditError, AuditEvent, AuditKey, AuditLog, AuditSink, Checkpoint,
    Finding, FindingKind, LogOptions, VerifyReport,
};

fn verify(path: &std::path::Path, cp: Option<&Checkpoint>) -> VerifyReport {
    verify_chain(std::slice::from_ref(&path.to_path_buf()), &key(), cp).unwrap()
}

fn kinds(report: &VerifyReport) -> Vec<(u64, FindingKind)> {
    report
        .findings
        .iter()
        .map(|f| (f.line, f.kind.clone()))
        .collect()
}

#[test]
fn an_untouched_log_is_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 10);
    let r = verify(&path, None);
    assert!(r.is_intact(), "{:?}", r.findings);
    assert_eq!((r.records, r.files), (10, 1));
    assert_eq!(r.head.unwrap().seq, 10);
}

#[test]
fn an_edited_field_is_a_bad_mac_on_that_line_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 10);
    let mut lines = read_lines(&path);
    assert!(lines[4].contains("\"bytes\":1004"), "{}", lines[4]);
    lines[4] = lines[4].replace("\"bytes\":1004", "\"bytes\":9004");
    write_lines(&path, &lines);
    let r = verify(&path, None);
    // The record after the altered one names a `prev` that is no longer
    // there: it is reported unlinked, and the head stays before the damage.
    assert_eq!(
        kinds(&r),
        [
            (5, FindingKind::BadMac),
            (
                6,
                FindingKind::Unlinked {
                    seq: 6,
                    after_bad_lines: 1
                }
            )
        ]
    );
    assert_eq!(r.head.unwrap().seq, 4);
    assert_eq!(
        r.findings[0].to_string(),
        format!(
            "{}:5: bad MAC (record altered or forged, or the log was written under another key)",
            path.display()
        )
    );
}

#[test]
fn a_deleted_line_is_a_sequence_gap_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 10);
    let mut lines = read_lines(&path);
    lines.remove(4);
    write_lines(&path, &lines);
    let r = verify(&path, None);
    assert_eq!(
        kinds(&r),
        [(
            5,
            FindingKind::SequenceGap {
                expected: 5,
                found: 6
            }
        )]
    );
}

#[test]
fn swapped_lines_are_both_reported_as_reordered() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 10);
    let mut lines = read_lines(&path);
    lines.swap(4, 5);
    write_lines(&path, &lines);
    let r = verify(&path, None);
    assert_eq!(
        kinds(&r),
        [
            (5, FindingKind::Reordered { seq: 6 }),
            (6, FindingKind::Reordered { seq: 5 })
        ]
    );
}

#[test]
fn a_truncated_log_is_found_only_against_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 10);
    let head = verify(&path, None).head.unwrap();
    assert_eq!(head.seq, 10);
    let lines = read_lines(&path);
    write_lines(&path, &lines[..7]);
    // A chain alone cannot tell a cut-off tail from a log that ended there.
    assert!(verify(&path, None).is_intact());
    let r = verify(&path, Some(&head));
    assert_eq!(
        kinds(&r),
        [(
            7,
            FindingKind::Truncated {
                checkpoint_seq: 10,
                last_seq: 7
            }
        )]
    );
    assert!(
        r.findings[0].to_string().contains("truncated"),
        "{}",
        r.findings[0]
    );
}

#[test]
fn a_checkpoint_with_another_hash_is_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 10);
    let good = verify(&path, None).head.unwrap();
    assert!(verify(&path, Some(&good)).is_intact());
    let forged = Checkpoint {
        seq: 4,
        hash: "ff".repeat(32),
        log_id: good.log_id.clone(),
    };
    let r = verify(&path, Some(&forged));
    assert!(
        matches!(
            &kinds(&r)[..],
            [(
                4,
                FindingKind::CheckpointMismatch {
                    seq: 4,
                    found_hash: Some(_),
                    ..
                }
            )]
        ),
        "{:?}",
        r.findings
    );
}

#[test]
fn an_inserted_forged_line_is_a_bad_mac_on_that_line_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 10);
    let mut lines = read_lines(&path);
    // A forger without the key: a plausible record with a MAC under another key.
    let other = AuditLog::in_memory(AuditKey::from_bytes([1; 32]), "worker-0").unwrap();
    other.record(event(99)).unwrap();
    let forged = other.lines()[1].clone();
    lines.insert(4, forged);
    write_lines(&path, &lines);
    let r = verify(&path, None);
    // The record after it still links to the one before it (prev checked
    // across the bad line): the chain and its head are unaffected.
    assert_eq!(kinds(&r), [(5, FindingKind::BadMac)]);
    assert_eq!(r.head.unwrap().seq, 10);
}

#[test]
fn a_replayed_line_is_reported_where_the_copy_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 10);
    let mut lines = read_lines(&path);
    let copy = lines[2].clone();
    lines.insert(7, copy);
    write_lines(&path, &lines);
    let r = verify(&path, None);
    assert_eq!(kinds(&r), [(8, FindingKind::Replayed { seq: 3 })]);
}

#[test]
fn a_wrong_key_fails_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 6);
    let r = verify_chain(
        std::slice::from_ref(&path),
        &AuditKey::from_bytes([0; 32]),
        None,
    )
    .unwrap();
    // One run of six bad lines: one finding.
    let runs: Vec<(u64, u64, u64)> = r
        .findings
        .iter()
        .map(|f| (f.line, f.last_line, f.count))
        .collect();
    assert_eq!(runs, [(1, 6, 6)]);
    assert!(r.findings.iter().all(|f| f.kind == FindingKind::BadMac));
    assert_eq!((r.records, r.bad_lines, r.findings_total), (0, 6, 1));
    assert!(
        r.findings[0].to_string().contains(":1-6: bad MAC"),
        "{}",
        r.findings[0]
    );
    // And the writer refuses to continue a log it cannot authenticate: it is
    // not a log of this key.
    let err =
        AuditLog::open_file(&path, AuditKey::from_bytes([0; 32]), "w", fast_options()).unwrap_err();
    assert!(matches!(err, AuditError::NotALog { .. }), "{err}");
}

#[test]
fn garbage_and_unknown_versions_are_reported_on_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 6);
    let mut lines = read_lines(&path);
    lines.insert(2, "not json at all".into());
    lines.insert(4, r#"{"v":3,"seq":4}"#.into());
    write_lines(&path, &lines);
    let r = verify(&path, None);
    let k = kinds(&r);
    assert_eq!(k.len(), 2, "{k:?}");
    assert!(matches!(k[0], (3, FindingKind::Malformed { .. })), "{k:?}");
    assert_eq!(k[1], (5, FindingKind::UnknownVersion));
}

#[test]
fn a_torn_tail_is_reported_then_repaired_by_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 5);
    let mut bytes = std::fs::read(&path).unwrap();
    let whole = bytes.len();
    bytes.extend_from_slice(b"{\"v\":1,\"seq\":6,\"ts\":\"2025-");
    std::fs::write(&path, &bytes).unwrap();
    let r = verify(&path, None);
    assert_eq!(kinds(&r), [(6, FindingKind::TornTail { bytes: 26 })]);

    let log = AuditLog::open_file(&path, key(), "worker-0", fast_options()).unwrap();
    drop(log);
    let lines = read_lines(&path);
    assert_eq!(std::fs::read(&path).unwrap()[..whole], bytes[..whole]);
    assert!(
        lines[5].contains(r#""type":"log_opened","reason":"continued""#),
        "{}",
        lines[5]
    );
    assert!(
        lines[6].contains(r#""type":"torn_tail_recovered","discarded_bytes":26,"at_line":6"#),
        "{}",
        lines[6]
    );
    let r = verify(&path, None);
    assert!(r.is_intact(), "{:?}", r.findings);
    assert_eq!(r.records, 7);
}

#[test]
fn reopening_refuses_damage_other_than_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 6);
    let original = read_lines(&path);

    let mut lines = original.clone();
    lines[2] = lines[2].replace("shard-2", "shard-X");
    write_lines(&path, &lines);
    let err = AuditLog::open_file(&path, key(), "w", fast_options()).unwrap_err();
    assert!(matches!(err, AuditError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains(":3: bad MAC"), "{err}");

    let mut lines = original.clone();
    lines[3] = "}{".into();
    write_lines(&path, &lines);
    let err = AuditLog::open_file(&path, key(), "w", fast_options()).unwrap_err();
    assert!(err.to_string().contains(":4: malformed"), "{err}");

    // Nothing was repaired or appended by the refused opens.
    assert_eq!(read_lines(&path), lines);
}

#[test]
fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 4);
    for round in 0..3 {
        let log = AuditLog::open_file(&path, key(), "worker-1", fast_options()).unwrap();
        let r = log.record(event(round)).unwrap();
        assert_eq!(r.seq, 4 + 2 * round + 2);
    }
    let r = verify(&path, None);
    assert!(r.is_intact(), "{:?}", r.findings);
    assert_eq!(r.records, 10);
}

fn rotating(max: u64) -> LogOptions {
    LogOptions {
        max_file_bytes: Some(max),
        ..fast_options()
    }
}

#[test]
fn rotation_links_segments_and_a_missing_segment_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open_file(&path, key(), "worker-0", rotating(2000)).unwrap();
    for i in 0..40 {
        log.record(event(i)).unwrap();
    }
    let head = log.head().unwrap();
    drop(log);
    let files = segment_files(&path).unwrap();
    assert!(files.len() >= 4, "{files:?}");
    let r = verify_chain(&files, &key(), Some(&head)).unwrap();
    assert!(r.is_intact(), "{:?}", r.findings);
    assert_eq!((r.records, r.files), (head.seq, files.len()));

    // Each closed segment ends in `rotated`, naming the next one.
    for pair in files.windows(2) {
        let last = read_lines(&pair[0]).pop().unwrap();
        let next = pair[1].file_name().unwrap().to_str().unwrap();
        assert!(
            last.contains(&format!(r#""type":"rotated","next_file":"{next}""#)),
            "{last}"
        );
    }

    let mut without: Vec<PathBuf> = files.clone();
    without.remove(1);
    let r = verify_chain(&without, &key(), Some(&head)).unwrap();
    let first = &r.findings[0];
    assert_eq!(&*first.file, files[0].as_path());
    assert_eq!(
        first.kind,
        FindingKind::MissingFile {
            expected: files[1].file_name().unwrap().to_str().unwrap().into()
        }
    );
    assert!(
        first
            .to_string()
            .contains("chain continues in audit.jsonl.1"),
        "{first}"
    );
}

#[test]
fn reopening_after_a_crash_at_rotation_continues_in_the_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open_file(&path, key(), "w", rotating(1500)).unwrap();
    while segment_files(&path).unwrap().len() < 2 {
        log.record(event(1)).unwrap();
    }
    drop(log);
    let files = segment_files(&path).unwrap();
    // As if the crash came after the `rotated` record, before any record of the
    // next segment (empty), or before the segment existed at all (removed).
    for damage in ["empty", "removed"] {
        match damage {
            "empty" => std::fs::write(&files[1], b"").unwrap(),
            _ => std::fs::remove_file(&files[1]).unwrap(),
        }
        let log = AuditLog::open_file(&path, key(), "w", rotating(1500)).unwrap();
        log.record(event(2)).unwrap();
        drop(log);
        assert_eq!(segment_files(&path).unwrap(), files, "{damage}");
        let r = verify_chain(&files, &key(), None).unwrap();
        assert!(r.is_intact(), "{damage}: {:?}", r.findings);
    }
    // A crash after the next segment was created, before the `rotated` record
    // was written: the empty segment is removed and the chain goes on.
    let leftover = dir.path().join("audit.jsonl.2");
    std::fs::write(&leftover, b"").unwrap();
    let log = AuditLog::open_file(&path, key(), "w", rotating(1_000_000)).unwrap();
    log.record(event(3)).unwrap();
    drop(log);
    assert!(!leftover.exists());
    let r = verify_chain(&segment_files(&path).unwrap(), &key(), None).unwrap();
    assert!(r.is_intact(), "{:?}", r.findings);
}

#[test]
fn findings_serialize_for_machines() {
    let f = Finding::at(
        std::path::Path::new("audit.jsonl"),
        17,
        FindingKind::SequenceGap {
            expected: 3,
            found: 5,
        },
    );
    assert_eq!(
        serde_json::to_string(&f).unwrap(),
        r#"{"file":"audit.jsonl","line":17,"last_line":17,"count":1,"kind":{"kind":"sequence_gap","expected":3,"found":5}}"#
    );
    assert_eq!(
        f.to_string(),
        "audit.jsonl:17: sequence gap: expected seq 3, found 5 (2 record(s) missing)"
    );
    let _ = AuditEvent::LogOpened { reason: "x".into() };
}
