//! The verifier names what happened: a deletion is a gap and stays one when
//! another gap elsewhere turns out to be a reordering; a checkpoint record
//! that is missing while later records exist is a mismatch, not a
//! truncation.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use vram_audit::{verify_chain, FindingKind};

/// Lines of a fresh 20-record log; `lines[i]` holds seq `i + 1`.
fn log_lines(dir: &std::path::Path) -> (std::path::PathBuf, Vec<String>) {
    let path = write_log(dir, 20);
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 20);
    (path, lines)
}

fn seqs(lines: &[String], order: &[u64]) -> Vec<String> {
    order
        .iter()
        .map(|s| lines[(*s - 1) as usize].clone())
        .collect()
}

#[test]
fn a_deletion_stays_a_gap_when_a_later_gap_is_a_reordering() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = log_lines(dir.path());
    // 5 and 6 deleted; 11 and 12 swapped.
    let mut order: Vec<u64> = (1..=4).collect();
    order.extend(7..=10);
    order.extend([12, 11]);
    order.extend(13..=20);
    write_lines(&path, &seqs(&lines, &order));
    let r = verify_chain(std::slice::from_ref(&path), &key(), None).unwrap();
    let kinds: Vec<&FindingKind> = r.findings.iter().map(|f| &f.kind).collect();
    assert!(
        kinds.iter().any(|k| matches!(
            k,
            FindingKind::SequenceGap {
                expected: 5,
                found: 7
            }
        )),
        "the deletion of 5 and 6 must stay a gap: {kinds:?}"
    );
    assert!(
        !kinds
            .iter()
            .any(|k| matches!(k, FindingKind::SequenceGap { expected: 11, .. })),
        "the swap of 11 and 12 is a reordering, not a gap: {kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, FindingKind::Reordered { seq: 11 | 12 })),
        "{kinds:?}"
    );
    assert!(
        !kinds
            .iter()
            .any(|k| matches!(k, FindingKind::Reordered { seq: 5..=7 })),
        "{kinds:?}"
    );
}

#[test]
fn two_deletions_are_two_gaps_even_when_a_record_moves_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = log_lines(dir.path());
    // 4 deleted, 8 moved after 10, 14 and 15 deleted.
    let mut order: Vec<u64> = vec![1, 2, 3, 5, 6, 7, 9, 10, 8, 11, 12, 13];
    order.extend(16..=20);
    write_lines(&path, &seqs(&lines, &order));
    let r = verify_chain(std::slice::from_ref(&path), &key(), None).unwrap();
    let kinds: Vec<&FindingKind> = r.findings.iter().map(|f| &f.kind).collect();
    for (expected, found) in [(4, 5), (14, 16)] {
        assert!(
            kinds.iter().any(|k| matches!(k, FindingKind::SequenceGap { expected: e, found: f } if *e == expected && *f == found)),
            "gap {expected}..{found} missing: {kinds:?}"
        );
    }
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, FindingKind::Reordered { seq: 8 | 9 })),
        "{kinds:?}"
    );
}

#[test]
fn a_missing_checkpoint_record_with_later_records_is_a_mismatch_not_a_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = log_lines(dir.path());
    // The checkpoint an operator stored when the log ended at seq 10.
    let prefix = dir.path().join("prefix.jsonl");
    write_lines(&prefix, &lines[..10]);
    let cp = verify_chain(std::slice::from_ref(&prefix), &key(), None)
        .unwrap()
        .head
        .unwrap();
    assert_eq!(cp.seq, 10);

    // Record 10 deleted, the rest kept.
    let mut order: Vec<u64> = (1..=9).collect();
    order.extend(11..=20);
    write_lines(&path, &seqs(&lines, &order));
    let r = verify_chain(std::slice::from_ref(&path), &key(), Some(&cp)).unwrap();
    let kinds: Vec<&FindingKind> = r.findings.iter().map(|f| &f.kind).collect();
    assert!(
        kinds.iter().any(|k| matches!(
            k,
            FindingKind::CheckpointMismatch {
                seq: 10,
                found_hash: None,
                ..
            }
        )),
        "{kinds:?}"
    );
    assert!(
        !kinds
            .iter()
            .any(|k| matches!(k, FindingKind::Truncated { .. })),
        "{kinds:?}"
    );

    // Cut after 8: now it is a truncation.
    write_lines(&path, &lines[..8]);
    let r = verify_chain(std::slice::from_ref(&path), &key(), Some(&cp)).unwrap();
    let kinds: Vec<&FindingKind> = r.findings.iter().map(|f| &f.kind).collect();
    assert!(
        kinds.iter().any(|k| matches!(
            k,
            FindingKind::Truncated {
                checkpoint_seq: 10,
                last_seq: 8
            }
        )),
        "{kinds:?}"
    );

    // And the intact log passes the checkpoint.
    write_lines(&path, &lines);
    let r = verify_chain(std::slice::from_ref(&path), &key(), Some(&cp)).unwrap();
    assert!(r.is_intact(), "{:?}", r.findings);
}
