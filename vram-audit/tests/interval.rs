//! `FsyncPolicy::Interval`: a written record is flushed by the background
//! thread without waiting for another record, failed flushes are retried, and
//! dropping the log stops the thread and flushes what is left.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::panic,
    clippy::unwrap_used
)]
mod common;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use vram_audit::{
    segment_files, verify_chain, verify_lines, AuditEvent, AuditLog, AuditSink, Backend,
    FsyncPolicy, LogOptions, MemoryBackend, RecordReceipt,
};

/// Far longer than any test: the background thread never flushes on its own.
const NEVER: Duration = Duration::from_secs(3600);

fn interval(d: Duration) -> LogOptions {
    LogOptions {
        fsync: FsyncPolicy::Interval(d),
        ..LogOptions::default()
    }
}

/// Polls `done` until it holds; a liveness check, not a timing one.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Records events until one comes back not durable (the usual case at the
/// first try: the interval has not passed since the last flush), then stops.
fn record_one_unflushed(log: &AuditLog) -> RecordReceipt {
    for i in 0..50 {
        let receipt = log.record(event(i)).unwrap();
        assert!(receipt.is_written());
        if !receipt.durable {
            return receipt;
        }
    }
    panic!(
        "every record was flushed by `record` itself; the interval is too short for this machine"
    );
}

/// Memory storage that counts fsyncs and can be made to fail them.
#[derive(Clone, Default)]
struct CountingBackend {
    inner: MemoryBackend,
    syncs: Arc<AtomicU64>,
    fail_sync: Arc<AtomicBool>,
}

impl Backend for CountingBackend {
    fn segment_len(&mut self) -> io::Result<u64> {
        self.inner.segment_len()
    }
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        self.inner.append(line)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn sync(&mut self) -> io::Result<()> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn describe(&self) -> String {
        "<counting>".into()
    }
}

#[test]
fn a_lone_record_becomes_durable_without_another_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open_file(&path, key(), "w", interval(Duration::from_millis(50))).unwrap();
    let receipt = record_one_unflushed(&log);
    // No further `record`, `sync` or drop: only the background thread can do it.
    wait_for("the background flush", || log.durable_seq() >= receipt.seq);
    assert_eq!(log.durable_seq(), receipt.seq);
    assert_eq!(log.stats().failures, 0);
    let head = log.head();
    drop(log);
    let report = verify_chain(&segment_files(&path).unwrap(), &key(), head.as_ref()).unwrap();
    assert!(report.is_intact(), "{:?}", report.findings);
    assert_eq!(report.records, receipt.seq);
}

#[test]
fn the_background_flush_goes_through_the_backend() {
    let backend = CountingBackend::default();
    let log = AuditLog::with_backend(
        Box::new(backend.clone()),
        key(),
        "w",
        interval(Duration::from_millis(50)),
    )
    .unwrap();
    let receipt = record_one_unflushed(&log);
    let before = backend.syncs.load(Ordering::SeqCst);
    wait_for("the background flush", || log.durable_seq() >= receipt.seq);
    assert!(backend.syncs.load(Ordering::SeqCst) > before);
}

#[test]
fn a_failed_background_flush_is_counted_and_retried() {
    let backend = CountingBackend::default();
    let log = AuditLog::with_backend(
        Box::new(backend.clone()),
        key(),
        "w",
        interval(Duration::from_millis(20)),
    )
    .unwrap();
    backend.fail_sync.store(true, Ordering::SeqCst);
    let receipt = log.record(event(1)).unwrap();
    assert!(receipt.is_written());
    assert!(!receipt.durable);
    // Two failures: at least one of them is the background thread's, whether
    // or not `record` tried to flush too.
    wait_for("failed background flushes", || log.stats().failures >= 2);
    assert!(log.durable_seq() < receipt.seq);
    let last_error = log.stats().last_error.unwrap();
    assert!(last_error.contains("fsync"), "{last_error}");
    assert!(
        last_error.contains("injected fsync failure"),
        "{last_error}"
    );

    backend.fail_sync.store(false, Ordering::SeqCst);
    wait_for("a retried flush", || log.durable_seq() >= receipt.seq);
    assert_eq!(log.stats().records, 2);
}

#[test]
fn dropping_the_log_stops_the_thread_and_flushes_what_is_pending() {
    let backend = CountingBackend::default();
    let log =
        AuditLog::with_backend(Box::new(backend.clone()), key(), "w", interval(NEVER)).unwrap();
    // The genesis record is flushed when the log is created.
    assert_eq!(log.durable_seq(), 1);
    assert_eq!(backend.syncs.load(Ordering::SeqCst), 1);
    let receipt = log.record(event(1)).unwrap();
    assert!(!receipt.durable);
    assert_eq!(log.durable_seq(), 1);
    assert_eq!(backend.syncs.load(Ordering::SeqCst), 1);
    let thread = log.flusher_liveness().unwrap();
    assert!(thread.upgrade().is_some(), "no flush thread running");

    // Returns without waiting out the interval.
    drop(log);
    assert!(thread.upgrade().is_none(), "flush thread outlived the log");
    assert_eq!(backend.syncs.load(Ordering::SeqCst), 2);
    let lines = backend.inner.lines();
    assert_eq!(lines.len(), 2);
    assert!(verify_lines(&lines, &key(), None).is_intact());
}

#[test]
fn dropping_a_file_log_leaves_it_complete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open_file(&path, key(), "w", interval(NEVER)).unwrap();
    for i in 1..=10 {
        assert!(!log.record(event(i)).unwrap().durable);
    }
    let head = log.head();
    let thread = log.flusher_liveness().unwrap();
    drop(log);
    assert!(thread.upgrade().is_none());
    let report = verify_chain(&segment_files(&path).unwrap(), &key(), head.as_ref()).unwrap();
    assert!(report.is_intact(), "{:?}", report.findings);
    assert_eq!(report.records, 11);
}

#[test]
fn critical_records_are_still_flushed_before_record_returns() {
    let backend = CountingBackend::default();
    let log =
        AuditLog::with_backend(Box::new(backend.clone()), key(), "w", interval(NEVER)).unwrap();
    let receipt = log
        .record(AuditEvent::PolicyViolation {
            gpu_device: 0,
            policy: "vram-only".into(),
            detail: "unified memory requested".into(),
        })
        .unwrap();
    assert!(receipt.durable);
    assert_eq!(log.durable_seq(), receipt.seq);
    // One for the genesis record, one for this one.
    assert_eq!(backend.syncs.load(Ordering::SeqCst), 2);
}

#[test]
fn only_interval_logs_on_storage_have_a_flush_thread() {
    let dir = tempfile::tempdir().unwrap();
    for (i, fsync) in [
        FsyncPolicy::EveryRecord,
        FsyncPolicy::EveryN(8),
        FsyncPolicy::CriticalOnly,
    ]
    .into_iter()
    .enumerate()
    {
        let options = LogOptions {
            fsync,
            ..LogOptions::default()
        };
        let path = dir.path().join(format!("audit-{i}.jsonl"));
        let log = AuditLog::open_file(&path, key(), "w", options).unwrap();
        assert!(log.flusher_liveness().is_none(), "{fsync:?}");
    }
    let memory = AuditLog::in_memory_with(key(), "w", interval(NEVER)).unwrap();
    assert!(memory.flusher_liveness().is_none());
    let path = dir.path().join("audit-interval.jsonl");
    let file = AuditLog::open_file(&path, key(), "w", interval(NEVER)).unwrap();
    assert!(file.flusher_liveness().is_some());
}

#[test]
fn concurrent_writers_and_the_flusher_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = Arc::new(
        AuditLog::open_file(&path, key(), "w", interval(Duration::from_millis(1))).unwrap(),
    );
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for i in 0..50 {
                    assert!(log.record(event(t * 1000 + i)).unwrap().is_written());
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let seq = log.head().unwrap().seq;
    assert_eq!(seq, 201);
    wait_for("the background flush", || log.durable_seq() == seq);
    let head = log.head();
    drop(Arc::try_unwrap(log).unwrap());
    let report = verify_chain(&segment_files(&path).unwrap(), &key(), head.as_ref()).unwrap();
    assert!(report.is_intact(), "{:?}", report.findings);
    assert_eq!(report.records, 201);
}

/// Memory storage with segments, whose fsync can be made to fail.
#[derive(Clone, Default)]
struct SegmentedBackend {
    current: Arc<std::sync::Mutex<MemoryBackend>>,
    segments: Arc<AtomicU64>,
    fail_sync: Arc<AtomicBool>,
}

impl Backend for SegmentedBackend {
    fn segment_len(&mut self) -> io::Result<u64> {
        self.current.lock().unwrap().segment_len()
    }
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        self.current.lock().unwrap().append(line)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.current.lock().unwrap().truncate(len)
    }
    fn sync(&mut self) -> io::Result<()> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
    fn next_segment(&self) -> Option<String> {
        Some(format!("seg.{}", self.segments.load(Ordering::SeqCst) + 1))
    }
    fn prepare_next(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn switch_to_next(&mut self) {
        self.segments.fetch_add(1, Ordering::SeqCst);
        *self.current.lock().unwrap() = MemoryBackend::new();
    }
    fn describe(&self) -> String {
        "<segmented>".into()
    }
}

/// When the segment closed by a rotation could not be flushed, its last records
/// are never proven durable: a later flush of the next segment must not claim
/// them.
#[test]
fn a_segment_closed_unflushed_caps_durable_seq() {
    let backend = SegmentedBackend::default();
    let log = AuditLog::with_backend(
        Box::new(backend.clone()),
        key(),
        "w",
        LogOptions {
            fsync: FsyncPolicy::CriticalOnly,
            max_file_bytes: Some(2048),
            ..LogOptions::default()
        },
    )
    .unwrap();
    log.record(event(0)).unwrap();
    log.sync().unwrap();
    let proven = log.durable_seq();
    assert_eq!(Some(proven), log.head().map(|h| h.seq));
    // Fill the segment past its limit with records nobody flushes, then make
    // the flush that closes it fail.
    backend.fail_sync.store(true, Ordering::SeqCst);
    let mut i = 1;
    while backend.segments.load(Ordering::SeqCst) == 0 {
        log.record(event(i)).unwrap();
        i += 1;
        assert!(i < 1000, "the log never rotated");
    }
    backend.fail_sync.store(false, Ordering::SeqCst);
    log.record(event(i)).unwrap();
    log.sync().unwrap();
    let head = log.head().unwrap().seq;
    assert!(head > proven + 1);
    assert_eq!(
        log.durable_seq(),
        proven,
        "records of the segment closed unflushed were claimed durable"
    );
}
