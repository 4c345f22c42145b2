//! Many threads recording at once produce one valid chain without gaps.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used
)]
// Helper functions outside #[test] items are test code too.

mod common;

use std::sync::Arc;

use common::*;
use vram_audit::{segment_files, verify_chain, verify_lines, AuditLog, AuditSink, LogOptions};

fn hammer(log: &Arc<AuditLog>) -> Vec<u64> {
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let log = Arc::clone(log);
            std::thread::spawn(move || {
                (0..200u64)
                    .map(|i| log.record(event(t * 1000 + i)).unwrap().seq)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs
}

#[test]
fn eight_threads_in_memory() {
    let log = Arc::new(AuditLog::in_memory(key(), "w").unwrap());
    let seqs = hammer(&log);
    assert_eq!(
        seqs,
        (2..=1601).collect::<Vec<_>>(),
        "every seq handed out once"
    );
    let r = verify_lines(&log.lines(), &key(), log.head().as_ref());
    assert!(
        r.is_intact(),
        "{:?}",
        &r.findings[..r.findings.len().min(5)]
    );
    assert_eq!(r.records, 1601);
}

#[test]
fn eight_threads_on_rotating_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let opts = LogOptions {
        max_file_bytes: Some(64 << 10),
        ..fast_options()
    };
    let log = Arc::new(AuditLog::open_file(&path, key(), "w", opts).unwrap());
    let seqs = hammer(&log);
    let head = log.head().unwrap();
    drop(log);
    let files = segment_files(&path).unwrap();
    assert!(files.len() > 2, "{files:?}");
    let r = verify_chain(&files, &key(), Some(&head)).unwrap();
    assert!(
        r.is_intact(),
        "{:?}",
        &r.findings[..r.findings.len().min(5)]
    );
    // Rotation records take sequence numbers of their own.
    assert_eq!(r.records, head.seq);
    assert_eq!(r.records, 1601 + (files.len() as u64 - 1));
    assert_eq!(seqs.len(), 1600);
}
