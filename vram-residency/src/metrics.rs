//! Counters a worker can export: seals, verifications by result, bytes hashed,
//! verification latency. Lock-free; a snapshot is a consistent-enough read of
//! independent counters (each is exact, they are not read atomically together).

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    seals: AtomicU64,
    seal_failures: AtomicU64,
    verifications_passed: AtomicU64,
    verifications_failed: AtomicU64,
    verifications_incomplete: AtomicU64,
    bytes_hashed: AtomicU64,
    verify_nanos_total: AtomicU64,
    verify_nanos_max: AtomicU64,
    leases_granted: AtomicU64,
    leases_refused: AtomicU64,
    lease_verify_nanos_total: AtomicU64,
}

/// A point-in-time copy of the manager's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Successful seals.
    pub seals: u64,
    /// Seal attempts that failed (any stage).
    pub seal_failures: u64,
    /// Verifications that found the shard intact.
    pub verifications_passed: u64,
    /// Verifications that found corruption or an invalid seal, including
    /// refusals of a shard already compromised.
    pub verifications_failed: u64,
    /// Verifications that could not complete (device read failure...): they
    /// proved nothing either way.
    pub verifications_incomplete: u64,
    /// Bytes hashed by seals and verifications.
    pub bytes_hashed: u64,
    /// Sum of verification latencies, in nanoseconds.
    pub verify_nanos_total: u64,
    /// Largest verification latency, in nanoseconds.
    pub verify_nanos_max: u64,
    /// Leases granted (their verification held).
    pub leases_granted: u64,
    /// Leases refused (a compromised shard, or a verification that failed or
    /// could not run).
    pub leases_refused: u64,
    /// Time spent verifying for leases (granted or refused), in nanoseconds.
    pub lease_verify_nanos_total: u64,
    /// Audit records the manager tried to write that are not in the log: lost
    /// under a best-effort policy, or refused under fail-closed (the operation
    /// then failed too, or, for a record of a failure or a release, was
    /// already failing or done). Logged once per burst.
    pub audit_records_lost: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Metrics {
    pub(crate) fn seal_ok(&self, bytes: u64) {
        self.seals.fetch_add(1, Ordering::Relaxed);
        self.bytes_hashed.fetch_add(bytes, Ordering::Relaxed);
    }
    pub(crate) fn seal_failed(&self) {
        self.seal_failures.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn verified(&self, passed: bool, bytes: u64, took: Duration) {
        let counter = if passed {
            &self.verifications_passed
        } else {
            &self.verifications_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.bytes_hashed.fetch_add(bytes, Ordering::Relaxed);
        let ns = nanos(took);
        self.verify_nanos_total.fetch_add(ns, Ordering::Relaxed);
        self.verify_nanos_max.fetch_max(ns, Ordering::Relaxed);
    }
    pub(crate) fn lease(&self, granted: bool, took: Duration) {
        let counter = if granted {
            &self.leases_granted
        } else {
            &self.leases_refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.lease_verify_nanos_total
            .fetch_add(nanos(took), Ordering::Relaxed);
    }
    pub(crate) fn verification_incomplete(&self) {
        self.verifications_incomplete
            .fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            seals: self.seals.load(Ordering::Relaxed),
            seal_failures: self.seal_failures.load(Ordering::Relaxed),
            verifications_passed: self.verifications_passed.load(Ordering::Relaxed),
            verifications_failed: self.verifications_failed.load(Ordering::Relaxed),
            verifications_incomplete: self.verifications_incomplete.load(Ordering::Relaxed),
            bytes_hashed: self.bytes_hashed.load(Ordering::Relaxed),
            verify_nanos_total: self.verify_nanos_total.load(Ordering::Relaxed),
            verify_nanos_max: self.verify_nanos_max.load(Ordering::Relaxed),
            leases_granted: self.leases_granted.load(Ordering::Relaxed),
            leases_refused: self.leases_refused.load(Ordering::Relaxed),
            lease_verify_nanos_total: self.lease_verify_nanos_total.load(Ordering::Relaxed),
            // Kept by the audit trail; filled in by `VramManager::metrics`.
            audit_records_lost: 0,
        }
    }
}
