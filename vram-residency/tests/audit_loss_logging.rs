//! Lost audit records are logged once per burst, not once per record.
//!
//! The only test in its binary: tracing caches per-callsite interest, and a
//! parallel test reaching a callsite first without a subscriber could hide
//! events from the capturing one.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    unused_qualifications
)]

mod common;
use common::*;
use vram_audit::AuditSink;
use vram_residency::{SealRequest, SealSource};

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_burst_of_lost_records_is_logged_once_and_counted_whole() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let f = fixture(64 * MIB); // info records are best effort
        f.audit.set_failing(true);
        for seed in 0..3 {
            let shard = f
                .manager
                .seal(
                    &SealRequest::inline(0).unwrap(),
                    SealSource::Bytes(&pattern(50_000, seed)),
                )
                .unwrap();
            drop(shard);
        }
        f.audit.set_failing(false);
        drop(
            f.manager
                .seal(
                    &SealRequest::inline(0).unwrap(),
                    SealSource::Bytes(&pattern(50_000, 9)),
                )
                .unwrap(),
        );
        // allocated, sealed, deallocated for each of the three seals.
        assert_eq!(f.manager.metrics().audit_records_lost, 9);
        assert_eq!(f.audit.stats().lost, 9);
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    // One line from the log itself, one from the manager's trail.
    assert_eq!(count("audit record lost"), 2, "{text}");
    assert_eq!(count("audit log writes records again"), 1, "{text}");
    assert_eq!(count("the audit log accepts records again"), 1, "{text}");
}
