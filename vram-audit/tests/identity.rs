//! Logs have an identity: a log id bound into every record (format 2), a
//! foreign tail after bad lines is never taken for the chain's, and a
//! checkpoint can pin which log it belongs to.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used
)]
mod common;

use common::*;
use vram_audit::{verify_lines, AuditLog, AuditSink, Checkpoint, FindingKind, VerifyReport};

/// A chain of `n` lines in memory (genesis record, then events).
fn chain(n: u64) -> (AuditLog, Vec<String>) {
    let log = AuditLog::in_memory(key(), "worker-0").unwrap();
    for i in 1..n {
        log.record(event(i)).unwrap();
    }
    let lines = log.lines();
    (log, lines)
}

fn kinds(r: &VerifyReport) -> Vec<(u64, FindingKind)> {
    r.findings
        .iter()
        .map(|f| (f.line, f.kind.clone()))
        .collect()
}

fn log_id(r: &VerifyReport) -> String {
    r.log_id.clone().unwrap()
}

/// Issue 20: log A's lines 1-4, one garbage line, then records 6-14 of log B
/// (same key). Before, this gave only "line 5: malformed", and B's head was
/// reported as the head.
#[test]
fn a_foreign_tail_after_a_bad_line_is_unlinked_and_never_the_head() {
    let (_a, a) = chain(14);
    let (_b, b) = chain(14);
    let a_id = log_id(&verify_lines(&a, &key(), None));
    let b_id = log_id(&verify_lines(&b, &key(), None));
    assert_ne!(a_id, b_id);

    let mut spliced: Vec<String> = a[..4].to_vec();
    spliced.push("garbage".into());
    spliced.extend_from_slice(&b[5..]);
    let r = verify_lines(&spliced, &key(), None);
    let k = kinds(&r);
    assert!(matches!(k[0], (5, FindingKind::Malformed { .. })), "{k:?}");
    assert!(
        k.contains(&(
            6,
            FindingKind::Unlinked {
                seq: 6,
                after_bad_lines: 1
            }
        )),
        "{k:?}"
    );
    assert!(
        k.contains(&(
            6,
            FindingKind::LogIdChanged {
                expected: Some(a_id.clone()),
                found: Some(b_id.clone())
            }
        )),
        "{k:?}"
    );
    assert!(!r.is_intact());
    // The head is A's record 4, not B's record 14.
    let head = r.head.unwrap();
    assert_eq!((head.seq, head.log_id.as_deref()), (4, Some(a_id.as_str())));
}

#[test]
fn another_log_spliced_in_directly_is_a_break_and_a_log_id_change() {
    let (_a, a) = chain(8);
    let (_b, b) = chain(8);
    let mut spliced: Vec<String> = a[..4].to_vec();
    spliced.extend_from_slice(&b[4..]);
    let r = verify_lines(&spliced, &key(), None);
    let k = kinds(&r);
    assert!(
        k.iter()
            .any(|(l, f)| *l == 5 && matches!(f, FindingKind::LogIdChanged { .. })),
        "{k:?}"
    );
    assert!(
        k.iter()
            .any(|(l, f)| *l == 5 && matches!(f, FindingKind::ChainBreak { .. })),
        "{k:?}"
    );
    // One finding per change, not one per record of the other log.
    assert_eq!(k.len(), 2, "{k:?}");
    assert_eq!(r.head.unwrap().seq, 4);
}

#[test]
fn a_checkpoint_names_its_log() {
    let (a_log, a) = chain(6);
    let (b_log, b) = chain(6);
    let a_head = a_log.head().unwrap();
    let b_head = b_log.head().unwrap();
    let a_id = a_head.log_id.clone().unwrap();
    assert_eq!(
        a_head.log_id.as_deref(),
        Some(log_id(&verify_lines(&a, &key(), None)).as_str())
    );

    // Long form, round trip, verifies its own log.
    let text = a_head.to_string();
    assert_eq!(text.matches(':').count(), 2, "{text}");
    let parsed: Checkpoint = text.parse().unwrap();
    assert_eq!(parsed, a_head);
    assert!(verify_lines(&a, &key(), Some(&parsed)).is_intact());
    // The short form (no log id) is still accepted.
    let short: Checkpoint = format!("{}:{}", a_head.seq, a_head.hash).parse().unwrap();
    assert!(verify_lines(&a, &key(), Some(&short)).is_intact());

    // Log B in place of A: the checkpoint's log id says so.
    let r = verify_lines(&b, &key(), Some(&a_head));
    assert!(
        kinds(&r).iter().any(|(_, f)| *f
            == FindingKind::CheckpointLogMismatch {
                expected: a_id.clone(),
                found: b_head.log_id.clone()
            }),
        "{:?}",
        r.findings
    );
    // Even when seq and hash would match (a checkpoint edited to B's record):
    // the log id still differs.
    let forged = Checkpoint {
        log_id: Some(a_id),
        ..b_head
    };
    let k = kinds(&verify_lines(&b, &key(), Some(&forged)));
    assert!(
        matches!(&k[..], [(_, FindingKind::CheckpointLogMismatch { .. })]),
        "{k:?}"
    );
}

#[test]
fn a_record_moved_to_another_log_id_does_not_authenticate() {
    let (_a, a) = chain(4);
    let (_b, b) = chain(4);
    let a_id = log_id(&verify_lines(&a, &key(), None));
    let b_id = log_id(&verify_lines(&b, &key(), None));
    // Rebind A's record 3 to B's id: the MAC input changed.
    let mut edited = a.clone();
    edited[2] = edited[2].replace(&a_id, &b_id);
    let k = kinds(&verify_lines(&edited, &key(), None));
    assert_eq!(k[0], (3, FindingKind::BadMac), "{k:?}");
}
