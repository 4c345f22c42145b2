//! How a log flushes, rotates and reacts to write failures.

use std::time::Duration;

use crate::Severity;

/// When records are flushed to stable storage (fsync).
///
/// Whatever the policy, a [`Severity::Critical`] record is always fsynced
/// before `record` returns. Records not yet flushed are flushed by
/// [`AuditLog::sync`](crate::AuditLog::sync), by the next flush the policy
/// triggers, and when the log is dropped.
/// [`AuditLog::durable_seq`](crate::AuditLog::durable_seq) says how far the
/// flushes have reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every record (the default): `durable` is true in every receipt.
    EveryRecord,
    /// Every `n` records (`n` of 0 counts as 1).
    EveryN(u32),
    /// A written record is flushed within about this long, whether or not
    /// another record follows.
    ///
    /// A `record` call flushes when this much time has passed since the last
    /// flush (its receipt then says `durable`). Besides, a log on storage (a
    /// file, or a caller's [`Backend`](crate::Backend); not in memory) runs one
    /// background thread, `vram-audit-flush`, which sleeps until a record is
    /// left unflushed, waits this long, and fsyncs under the log's lock. It
    /// does not wake while nothing is waiting. A failed background fsync is
    /// reported by `tracing::error!`, counted in
    /// [`SinkStats`](crate::SinkStats) and retried, after a wait that doubles
    /// at each failure up to 1 s (or this duration, if longer).
    /// Dropping the log stops and joins the thread (waiting at most for an
    /// fsync in progress) and then flushes what is left. A zero duration
    /// flushes at every record; the thread then waits at least 1 ms between
    /// attempts.
    Interval(Duration),
    /// Only critical records (which also flush everything written before them).
    CriticalOnly,
}

/// What `record` does when a record cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Retry with backoff (1 ms doubling to 50 ms) until `max_wait` has passed,
    /// then return the error, so that the caller's operation fails.
    FailClosed {
        /// How long to keep retrying; zero means one attempt.
        max_wait: Duration,
    },
    /// One attempt; on failure count it in [`SinkStats`](crate::SinkStats),
    /// report it through `tracing::error!`, and return `Ok` with
    /// `durable: false` and `seq: 0`.
    BestEffort,
}

impl FailureMode {
    /// How long fail-closed retries last by default.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(2);

    /// The default for a severity: fail-closed (with [`Self::DEFAULT_MAX_WAIT`])
    /// for critical events, best-effort for the rest.
    #[must_use]
    pub fn default_for(severity: Severity) -> Self {
        match severity {
            Severity::Critical => Self::FailClosed {
                max_wait: Self::DEFAULT_MAX_WAIT,
            },
            Severity::Warning | Severity::Info => Self::BestEffort,
        }
    }
}

/// The failure mode for each severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// For [`Severity::Critical`] events.
    pub critical: FailureMode,
    /// For [`Severity::Warning`] events.
    pub warning: FailureMode,
    /// For [`Severity::Info`] events.
    pub info: FailureMode,
}

impl Default for FailurePolicy {
    /// [`FailureMode::default_for`] each severity.
    fn default() -> Self {
        Self {
            critical: FailureMode::default_for(Severity::Critical),
            warning: FailureMode::default_for(Severity::Warning),
            info: FailureMode::default_for(Severity::Info),
        }
    }
}

impl FailurePolicy {
    /// Fail-closed for every event: no operation succeeds unaudited.
    #[must_use]
    pub fn fail_closed(max_wait: Duration) -> Self {
        let mode = FailureMode::FailClosed { max_wait };
        Self {
            critical: mode,
            warning: mode,
            info: mode,
        }
    }

    /// Best-effort for every event, critical ones included.
    #[must_use]
    pub fn best_effort() -> Self {
        Self {
            critical: FailureMode::BestEffort,
            warning: FailureMode::BestEffort,
            info: FailureMode::BestEffort,
        }
    }

    /// The mode that applies to an event of `severity`.
    #[must_use]
    pub fn mode_for(&self, severity: Severity) -> FailureMode {
        match severity {
            Severity::Critical => self.critical,
            Severity::Warning => self.warning,
            Severity::Info => self.info,
        }
    }
}

/// Options of an [`AuditLog`](crate::AuditLog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// When to fsync.
    pub fsync: FsyncPolicy,
    /// Close a file segment once it holds at least this many bytes and continue
    /// in the next (`None`: never rotate). Ignored by in-memory logs.
    pub max_file_bytes: Option<u64>,
    /// What to do when a write fails.
    pub failure: FailurePolicy,
    /// How long [`AuditLog::open_file`](crate::AuditLog::open_file) waits for
    /// another process (or another `AuditLog` in this one) to release the
    /// log's lock before it fails with
    /// [`AuditError::Locked`](crate::AuditError::Locked); zero means one try.
    /// Ignored by in-memory logs.
    pub lock_wait: Duration,
    /// With a signing key ([`AuditKey::with_signer`](crate::AuditKey::with_signer)):
    /// write a signed checkpoint once this many records have followed the
    /// last one (0: not by count). Checkpoints are also written at rotation
    /// and when the log is closed. Ignored without a signing key and for
    /// format 1 logs.
    pub checkpoint_records: u64,
    /// With a signing key: write a signed checkpoint with the first record
    /// written this long or more after the last checkpoint, and (a log on
    /// storage) from a background thread about this long after a record was
    /// left without one, so that an idle log's last records get proven too
    /// (zero: not by time).
    pub checkpoint_interval: Duration,
}

/// The name under which [`AuditLog::open_file`](crate::AuditLog::open_file) takes its options.
pub type FileOptions = LogOptions;

impl LogOptions {
    /// Default segment size: 64 MiB.
    pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;
    /// Default wait for the log's lock: 10 s, long enough for a short command
    /// that holds it to finish, short enough that a second long-running
    /// writer is told about the conflict instead of hanging.
    pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10);
    /// Default records between signed checkpoints: 1,000.
    pub const DEFAULT_CHECKPOINT_RECORDS: u64 = 1_000;
    /// Default time between signed checkpoints: 60 s.
    pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
}

impl Default for LogOptions {
    /// fsync every record, rotate at 64 MiB, fail-closed for critical events
    /// only, wait up to 10 s for the log's lock, a signed checkpoint every
    /// 1,000 records or 60 s (with a signing key).
    fn default() -> Self {
        Self {
            fsync: FsyncPolicy::EveryRecord,
            max_file_bytes: Some(Self::DEFAULT_MAX_FILE_BYTES),
            failure: FailurePolicy::default(),
            lock_wait: Self::DEFAULT_LOCK_WAIT,
            checkpoint_records: Self::DEFAULT_CHECKPOINT_RECORDS,
            checkpoint_interval: Self::DEFAULT_CHECKPOINT_INTERVAL,
        }
    }
}
