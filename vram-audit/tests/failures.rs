//! Write failures: fail-closed fails the caller, best-effort counts and goes
//! on, and nothing is ever half-written or skipped in the chain.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used
)]
// Helper functions outside #[test] items are test code too.

mod common;

use std::time::Duration;

use common::*;
use vram_audit::{
    verify_lines, AuditError, AuditEvent, AuditLog, AuditSink, FailureMode, FailurePolicy,
    LogOptions, Severity,
};

fn critical() -> AuditEvent {
    AuditEvent::SealVerificationFailed {
        shard_id: "shard-1".into(),
        gpu_device: 0,
        policy: "full".into(),
        reason: "leaf 3 digest mismatch".into(),
        corrupt_ranges: vec![vram_audit::ByteRange {
            start: 12288,
            end: 16384,
        }],
    }
}

fn with_policy(failure: FailurePolicy) -> AuditLog {
    AuditLog::in_memory_with(
        key(),
        "w",
        LogOptions {
            failure,
            ..LogOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn default_policy_is_fail_closed_for_critical_and_best_effort_otherwise() {
    let p = FailurePolicy::default();
    assert!(matches!(
        p.mode_for(Severity::Critical),
        FailureMode::FailClosed { .. }
    ));
    assert_eq!(p.mode_for(Severity::Warning), FailureMode::BestEffort);
    assert_eq!(p.mode_for(Severity::Info), FailureMode::BestEffort);
    assert_eq!(
        p.mode_for(Severity::Critical),
        FailureMode::default_for(Severity::Critical)
    );
}

#[test]
fn fail_closed_returns_the_error_and_leaves_no_trace() {
    let log = with_policy(FailurePolicy::fail_closed(Duration::from_millis(20)));
    log.record(event(1)).unwrap();
    let before = log.lines();
    log.set_failing(true);
    let err = log.record(critical()).unwrap_err();
    match &err {
        AuditError::WriteFailed {
            seq,
            event,
            attempts,
            ..
        } => {
            assert_eq!((*seq, *event), (3, "seal_verification_failed"));
            assert!(*attempts >= 2, "retried: {attempts}");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(log.record(event(2)).is_err());
    // Nothing half-written, and the memory holds exactly what it held.
    assert_eq!(log.lines(), before);
    log.set_failing(false);
    let r = log.record(event(3)).unwrap();
    assert_eq!(r.seq, 3, "failed records consumed no sequence number");
    let report = verify_lines(&log.lines(), &key(), None);
    assert!(report.is_intact(), "{:?}", report.findings);
    let stats = log.stats();
    assert_eq!((stats.records, stats.failures), (3, 2));
    assert!(stats.last_error.unwrap().contains("injected write failure"));
}

#[test]
fn fail_closed_retries_through_a_transient_failure() {
    let log = with_policy(FailurePolicy::fail_closed(Duration::from_secs(5)));
    log.fail_next_writes(3);
    let r = log.record(critical()).unwrap();
    assert_eq!(r.seq, 2);
    assert!(r.durable);
    assert!(verify_lines(&log.lines(), &key(), None).is_intact());
}

#[test]
fn best_effort_counts_the_failure_and_continues() {
    let log = AuditLog::in_memory(key(), "w").unwrap(); // default: info is best effort
    log.fail_next_writes(1);
    let r = log.record(event(1)).unwrap();
    assert!(!r.is_written());
    assert!(!r.durable);
    assert_eq!(r.seq, 0);
    let r = log.record(event(2)).unwrap();
    assert_eq!(r.seq, 2);
    // Critical events under the default policy still fail closed.
    log.set_failing(true);
    assert!(log.record(critical()).is_err());
    log.set_failing(false);
    let lines = log.lines();
    assert_eq!(lines.len(), 2);
    assert!(verify_lines(&lines, &key(), None).is_intact());
    let stats = log.stats();
    assert_eq!((stats.records, stats.failures), (2, 2));
}

/// A backend on a full disk: every append fails.
struct Full;

impl vram_audit::Backend for Full {
    fn segment_len(&mut self) -> std::io::Result<u64> {
        Ok(0)
    }
    fn append(&mut self, _line: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "no space left",
        ))
    }
    fn truncate(&mut self, _len: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "full-disk.jsonl".into()
    }
}

#[test]
fn a_log_whose_genesis_record_cannot_be_written_does_not_open() {
    // Whatever the policy: a log without its genesis record is no log.
    for failure in [
        FailurePolicy::default(),
        FailurePolicy::best_effort(),
        FailurePolicy::fail_closed(Duration::from_millis(5)),
    ] {
        let options = LogOptions {
            failure,
            ..LogOptions::default()
        };
        let err = AuditLog::with_backend(Box::new(Full), key(), "w", options).unwrap_err();
        match &err {
            AuditError::WriteFailed {
                path,
                event,
                source,
                ..
            } => {
                assert_eq!(path, std::path::Path::new("full-disk.jsonl"));
                assert_eq!(*event, "log_created");
                assert_eq!(source.kind(), std::io::ErrorKind::StorageFull);
            }
            other => panic!("unexpected {other}"),
        }
        assert!(
            err.to_string().contains("full-disk.jsonl"),
            "names the log: {err}"
        );
    }
}

#[test]
fn fsync_policy_decides_durability() {
    use vram_audit::FsyncPolicy;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let opts = LogOptions {
        fsync: FsyncPolicy::EveryN(3),
        ..LogOptions::default()
    };
    let log = AuditLog::open_file(&path, key(), "w", opts).unwrap();
    // The genesis record was flushed on its own: the count starts after it.
    let durable: Vec<bool> = (0..5)
        .map(|i| log.record(event(i)).unwrap().durable)
        .collect();
    assert_eq!(durable, [false, false, true, false, false]);
    assert!(
        log.record(critical()).unwrap().durable,
        "critical always flushes"
    );

    let opts = LogOptions {
        fsync: FsyncPolicy::CriticalOnly,
        ..LogOptions::default()
    };
    let log = AuditLog::open_file(&dir.path().join("b.jsonl"), key(), "w", opts).unwrap();
    assert!(!log.record(event(1)).unwrap().durable);
    assert!(log.record(critical()).unwrap().durable);
}

#[test]
fn invalid_worker_ids_are_refused() {
    for bad in ["", "has space", "tab\t", &"x".repeat(129), "é"] {
        let err = AuditLog::in_memory(key(), bad).unwrap_err();
        assert!(matches!(err, AuditError::InvalidWorkerId { .. }), "{bad:?}");
    }
}
