//! The manager's audit trail: the configured sink plus the accounting of
//! records that did not reach it. Every audit call of the facade goes through
//! here, so that no audit result is ever discarded: a fail-closed error is
//! returned (and the caller's operation fails), a best-effort loss is counted
//! in [`MetricsSnapshot::audit_records_lost`](crate::MetricsSnapshot) and
//! logged once per burst.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use vram_audit::{AuditError, AuditEvent, AuditSink, RecordReceipt};

pub(crate) struct AuditTrail {
    sink: Arc<dyn AuditSink>,
    /// Records that are not in the log.
    lost: AtomicU64,
    /// Set while records are being lost: the first loss of a burst is logged,
    /// the rest are only counted until a record is written again.
    in_burst: AtomicBool,
}

impl AuditTrail {
    pub(crate) fn new(sink: Arc<dyn AuditSink>) -> Self {
        Self {
            sink,
            lost: AtomicU64::new(0),
            in_burst: AtomicBool::new(false),
        }
    }

    pub(crate) fn sink(&self) -> &Arc<dyn AuditSink> {
        &self.sink
    }

    /// Records not in the log since the manager was built.
    pub(crate) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Records `event`. `Err` when the sink's policy for it is fail-closed and
    /// it could not be written: the caller's operation must fail. A record the
    /// sink lost under best effort (`Ok` but not written) is counted.
    pub(crate) fn record(&self, event: AuditEvent) -> Result<RecordReceipt, AuditError> {
        let kind = event.kind();
        match self.sink.record(event) {
            Ok(receipt) if receipt.is_written() => {
                if self.in_burst.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        lost_total = self.lost(),
                        "the audit log accepts records again"
                    );
                }
                Ok(receipt)
            }
            Ok(receipt) => {
                self.count_lost(kind, None);
                Ok(receipt)
            }
            Err(e) => {
                // Counted, not logged: the error goes back to the caller, who
                // reports it (logging it here too would say it twice).
                self.lost.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Records an event whose failure cannot change what the caller is told:
    /// the operation already failed with its own error (which matters more),
    /// or a shard is being dropped. A failure is counted and logged (once per
    /// burst), never returned.
    pub(crate) fn record_secondary(&self, event: AuditEvent) {
        let kind = event.kind();
        if let Err(e) = self.record(event) {
            // `record` counted it; nobody else will report it.
            self.log_loss(kind, Some(&e));
        }
    }

    fn count_lost(&self, event: &'static str, error: Option<&AuditError>) {
        self.lost.fetch_add(1, Ordering::Relaxed);
        self.log_loss(event, error);
    }

    /// Logs a loss if it starts a burst.
    fn log_loss(&self, event: &'static str, error: Option<&AuditError>) {
        let lost = self.lost();
        if !self.in_burst.swap(true, Ordering::Relaxed) {
            match error {
                Some(e) => tracing::error!(
                    event,
                    error = %e,
                    lost_total = lost,
                    "audit record not written; further losses are counted in the audit_records_lost metric until the log accepts records again"
                ),
                None => tracing::error!(
                    event,
                    lost_total = lost,
                    "audit record lost (best-effort policy); further losses are counted in the audit_records_lost metric until the log accepts records again"
                ),
            }
        }
    }
}
