//! The chain engine: sequence numbers, hash links and MACs, written through a
//! [`Backend`] with the flush and failure policies.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::backend::{Backend, MemoryBackend};
use crate::flusher::Flusher;
use crate::record;
use crate::recover::Resume;
use crate::{
    AuditError, AuditEvent, AuditKey, Checkpoint, FailureMode, FsyncPolicy, LogOptions, Severity,
};
use ring::rand::SecureRandom as _;

/// Anything that takes audit events.
pub trait AuditSink: Send + Sync {
    /// Records one event.
    ///
    /// # Errors
    /// When the event could not be recorded and the failure mode for its
    /// severity is fail-closed: the caller's operation should then fail too.
    fn record(&self, event: AuditEvent) -> Result<RecordReceipt, AuditError>;

    /// Counters since the sink was created.
    fn stats(&self) -> SinkStats;
}

/// What `record` did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordReceipt {
    /// The record's sequence number; 0 when a best-effort write failed and
    /// nothing was recorded.
    pub seq: u64,
    /// Hex SHA-256 of the record's line (empty when nothing was recorded).
    pub hash: String,
    /// True when the record reached the backend's stable storage (fsynced, for
    /// files) before `record` returned.
    pub durable: bool,
}

impl RecordReceipt {
    /// True when the record is in the log.
    #[must_use]
    pub fn is_written(&self) -> bool {
        self.seq != 0
    }

    fn not_written() -> Self {
        Self {
            seq: 0,
            hash: String::new(),
            durable: false,
        }
    }
}

/// Counters of a sink.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Records written, including the log's own (`log_opened`, `rotated`, ...).
    pub records: u64,
    /// Records that failed to be written or flushed, plus failed background
    /// flushes of [`FsyncPolicy::Interval`] (one per attempt).
    pub failures: u64,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Records that are not in the log at all: best-effort records whose
    /// write failed (fail-closed failures are returned to the caller instead).
    pub lost: u64,
}

/// Longest accepted worker id.
const MAX_WORKER_ID: usize = 128;
/// Longest pause between fail-closed retries.
const MAX_BACKOFF: Duration = Duration::from_millis(50);

struct ChainState {
    /// Sequence number of the last record written (0: none yet).
    seq: u64,
    /// Hash of the last record written (or the genesis value).
    prev: String,
    /// The log's id, bound into every record (format 2); `None` for a format 1
    /// log being continued, whose records carry no id.
    log_id: Option<String>,
    backend: Box<dyn Backend>,
    /// Length of the current segment up to the end of the last whole record.
    committed_len: u64,
    /// A failed write left bytes past `committed_len` that could not be cut yet.
    dirty: bool,
    /// Records written since the last flush.
    unsynced: u64,
    last_sync: Instant,
    /// Sequence number of the last record a successful flush covered (0: none).
    synced_seq: u64,
    /// Set when a segment was closed without its last records flushed: no
    /// later flush (of another file) covers them, so `synced_seq` never moves
    /// past this.
    durable_cap: Option<u64>,
    /// Records written since the last signed checkpoint.
    since_checkpoint: u64,
    /// When the last signed checkpoint was written (or the log opened).
    last_checkpoint: Instant,
}

impl ChainState {
    /// Records a successful flush of everything written so far.
    fn mark_synced(&mut self) {
        self.unsynced = 0;
        self.last_sync = Instant::now();
        self.synced_seq = self.durable_cap.map_or(self.seq, |cap| cap.min(self.seq));
    }
}

/// What a log shares with its background threads (flusher, checkpointer).
struct Shared {
    state: Mutex<ChainState>,
    key: AuditKey,
    worker: String,
    options: LogOptions,
    stats: Mutex<SinkStats>,
    /// Best-effort records lost since the last one written: a burst of losses
    /// (a full disk) is logged once when it starts and once when it ends.
    lost_in_burst: Mutex<u64>,
}

impl Shared {
    /// A best-effort record was lost: counted, and logged if it starts a burst.
    fn note_lost(&self, error: &AuditError, event: &'static str) {
        {
            let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
            stats.lost = stats.lost.saturating_add(1);
        }
        let mut burst = self
            .lost_in_burst
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *burst == 0 {
            tracing::error!(%error, event, "audit record lost (best effort); further losses are counted in SinkStats::lost and logged when records are written again");
        }
        *burst = burst.saturating_add(1);
    }

    /// A record was written: ends a burst of losses, if one was going on.
    fn end_burst(&self) {
        let mut burst = self
            .lost_in_burst
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *burst > 0 {
            tracing::warn!(
                lost = *burst,
                "audit log writes records again after losing some (best effort)"
            );
            *burst = 0;
        }
    }

    fn note(&self, outcome: &Result<(), &AuditError>) {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(()) => stats.records = stats.records.saturating_add(1),
            Err(e) => {
                stats.failures = stats.failures.saturating_add(1);
                stats.last_error = Some(e.to_string());
            }
        }
    }

    /// The background flusher's work: fsync when records are waiting. Returns
    /// false when the fsync failed (the flusher then retries a period later).
    fn flush_unsynced(&self) -> bool {
        // A poisoned lock still guards a file worth flushing, as on drop.
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.unsynced == 0 {
            return true;
        }
        match st.backend.sync() {
            Ok(()) => {
                st.mark_synced();
                true
            }
            Err(e) => {
                let unsynced = st.unsynced;
                let e = AuditError::io("fsync", PathBuf::from(st.backend.describe()), e);
                drop(st);
                tracing::error!(error = %e, unsynced, "background audit log flush failed; retrying");
                self.note(&Err(&e));
                false
            }
        }
    }
}

enum Outcome {
    Written(RecordReceipt),
    /// Written, but the flush the policy asked for failed.
    NotFlushed(RecordReceipt, AuditError),
    Failed(AuditError),
}

/// A hash-chained, HMAC-authenticated audit log.
///
/// `record` may be called from many threads at once: a lock around the chain
/// state is held while one record is encoded, written and (when due) flushed,
/// so the records form one chain with no gaps, in `seq` order, with
/// non-decreasing timestamps.
pub struct AuditLog {
    shared: Arc<Shared>,
    /// For `FsyncPolicy::Interval` on storage other than memory.
    flusher: Option<Flusher>,
    /// Writes a signed checkpoint `checkpoint_interval` after a record left
    /// without one (a log with a signing key, on storage other than memory).
    checkpointer: Option<Flusher>,
    memory: Option<MemoryBackend>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("worker", &self.shared.worker)
            .field("key", &self.shared.key)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

fn check_worker_id(worker_id: &str) -> Result<(), AuditError> {
    let ok = !worker_id.is_empty()
        && worker_id.len() <= MAX_WORKER_ID
        && worker_id.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(AuditError::InvalidWorkerId {
            len: worker_id.len(),
            max: MAX_WORKER_ID,
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl AuditLog {
    /// A new chain kept in memory, with the default options: for tests and for
    /// callers that ship records elsewhere. Its first record is the genesis
    /// record `log_created`.
    ///
    /// # Errors
    /// When `worker_id` is not 1 to 128 printable ASCII characters.
    pub fn in_memory(key: AuditKey, worker_id: &str) -> Result<Self, AuditError> {
        Self::in_memory_with(key, worker_id, LogOptions::default())
    }

    /// [`Self::in_memory`] with options (the failure policy matters for fault
    /// injection; rotation does not apply).
    ///
    /// # Errors
    /// As [`Self::in_memory`].
    pub fn in_memory_with(
        key: AuditKey,
        worker_id: &str,
        options: LogOptions,
    ) -> Result<Self, AuditError> {
        check_worker_id(worker_id)?;
        let memory = MemoryBackend::new();
        let log = Self::assemble(
            Box::new(memory.clone()),
            key,
            worker_id,
            options,
            Resume::fresh(),
            Some(memory),
        )?;
        log.write_genesis()?;
        Ok(log)
    }

    /// A new chain written through a backend of the caller's (which should be
    /// empty: nothing already in it is read). Its first record is the genesis
    /// record `log_created`.
    ///
    /// With [`FsyncPolicy::Interval`], the log flushes through `backend` from a
    /// background thread too (see [`FsyncPolicy::Interval`]).
    ///
    /// # Errors
    /// When `worker_id` is invalid, when the genesis record cannot be written
    /// (whatever the failure policy: a log without one is no log), and
    /// [`AuditError::FlusherUnavailable`].
    pub fn with_backend(
        mut backend: Box<dyn Backend>,
        key: AuditKey,
        worker_id: &str,
        options: LogOptions,
    ) -> Result<Self, AuditError> {
        check_worker_id(worker_id)?;
        let mut resume = Resume::fresh();
        resume.committed_len = backend.segment_len().unwrap_or(0);
        let log = Self::assemble(backend, key, worker_id, options, resume, None)?;
        log.write_genesis()?;
        Ok(log)
    }

    /// Opens the file log at `path` (segments `path`, `path.1`, ...), creating
    /// it if needed, and continues its chain.
    ///
    /// First, the log's lock (the file `PATH.lock` beside it) is taken: one
    /// writer per log. If another `AuditLog`, in this process or another, has
    /// the log open, this waits up to [`LogOptions::lock_wait`] for it to be
    /// closed, then fails with [`AuditError::Locked`]. The lock is held until
    /// the log is dropped.
    ///
    /// The log's files must be regular files: a symlink is never followed, and
    /// a device, FIFO or directory is refused before anything is created.
    ///
    /// A new log begins with its genesis record, `log_created` (record format,
    /// audit key id, a random 128-bit log id), written and fsynced whatever
    /// the failure policy. On an existing log the newest segment is read and
    /// verified whole with `key`. A file whose first line is not an authentic
    /// record under `key` is not a log of ours and is refused unchanged. An
    /// incomplete last line (a crash in the middle of a write) is cut off and
    /// fsynced, and a `torn_tail_recovered` record says so. Any other damage is
    /// an error: the log is never repaired silently. Reopening writes
    /// `log_opened` (`continued`).
    ///
    /// With [`FsyncPolicy::Interval`] a background thread (`vram-audit-flush`)
    /// flushes records that no later `record` call flushed; it stops when the
    /// log is dropped.
    ///
    /// # Errors
    /// [`AuditError::Locked`] when another writer holds the log,
    /// [`AuditError::NotRegularFile`] for a symlink or special file,
    /// [`AuditError::NotALog`] for a file that is not a log of this key,
    /// [`AuditError::Damaged`] for damage other than a torn tail,
    /// [`AuditError::Io`] when the file cannot be created, read or repaired,
    /// [`AuditError::InvalidWorkerId`], [`AuditError::FlusherUnavailable`],
    /// [`AuditError::RandomUnavailable`], and write errors of the opening
    /// records (the genesis record always; `log_opened` under a fail-closed
    /// policy).
    pub fn open_file(
        path: &Path,
        key: AuditKey,
        worker_id: &str,
        options: LogOptions,
    ) -> Result<Self, AuditError> {
        Self::open_file_protecting(path, key, worker_id, options, &[])
    }

    /// [`Self::open_file`], refusing a log whose path, or any of its segments,
    /// is the same file (same device and inode) as one of `protected`: the
    /// worker secret the audit key derives from, say. Pass the paths as the
    /// files were loaded; symlinks among them are followed.
    ///
    /// # Errors
    /// As [`Self::open_file`], and [`AuditError::ProtectedFile`].
    pub fn open_file_protecting(
        path: &Path,
        key: AuditKey,
        worker_id: &str,
        options: LogOptions,
        protected: &[&Path],
    ) -> Result<Self, AuditError> {
        check_worker_id(worker_id)?;
        let spec = crate::recover::OpenSpec {
            rotate: options.max_file_bytes.is_some(),
            lock_wait: options.lock_wait,
            protected,
        };
        let (backend, resume) = crate::recover::open(path, &key, &spec)?;
        let torn = resume.torn;
        let continued = resume.continued;
        let log = Self::assemble(Box::new(backend), key, worker_id, options, resume, None)?;
        if continued {
            log.record(AuditEvent::LogOpened {
                reason: "continued".into(),
            })?;
        } else {
            log.write_genesis()?;
        }
        if let Some((discarded_bytes, at_line)) = torn {
            tracing::warn!(
                path = %path.display(),
                discarded_bytes,
                at_line,
                "audit log had a torn last line (interrupted write); cut it off"
            );
            log.record(AuditEvent::TornTailRecovered {
                discarded_bytes,
                at_line,
            })?;
        }
        Ok(log)
    }

    /// Writes the genesis record of a new chain, fail-closed (with the
    /// critical events' wait, if they have one) and fsynced.
    fn write_genesis(&self) -> Result<(), AuditError> {
        let mut id = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| AuditError::RandomUnavailable)?;
        let max_wait = match self.shared.options.failure.critical {
            FailureMode::FailClosed { max_wait } => max_wait,
            FailureMode::BestEffort => Duration::ZERO,
        };
        let log_id = record::hex(&id);
        // The genesis record is the first format 2 record: it carries its own
        // id, and every record after it is bound to that id.
        self.lock_state()?.log_id = Some(log_id.clone());
        let event = AuditEvent::LogCreated {
            format: record::RECORD_FORMAT,
            key_id: self.shared.key.key_id(),
            log_id,
            signing_key: self
                .shared
                .key
                .signer()
                .map(|s| s.public_key().fingerprint()),
        };
        self.record_with(event, FailureMode::FailClosed { max_wait }, true)?;
        Ok(())
    }

    fn assemble(
        backend: Box<dyn Backend>,
        key: AuditKey,
        worker_id: &str,
        options: LogOptions,
        resume: Resume,
        memory: Option<MemoryBackend>,
    ) -> Result<Self, AuditError> {
        let describe = backend.describe();
        let shared = Arc::new(Shared {
            state: Mutex::new(ChainState {
                seq: resume.seq,
                prev: resume.prev,
                log_id: resume.log_id,
                backend,
                committed_len: resume.committed_len,
                dirty: false,
                unsynced: 0,
                last_sync: Instant::now(),
                synced_seq: 0,
                durable_cap: None,
                since_checkpoint: 0,
                last_checkpoint: Instant::now(),
            }),
            stats: Mutex::new(SinkStats::default()),
            lost_in_burst: Mutex::new(0),
            key,
            worker: worker_id.to_owned(),
            options,
        });
        // Memory has nothing to flush: no thread for it.
        let flusher = match options.fsync {
            FsyncPolicy::Interval(period) if memory.is_none() => Some(
                Flusher::spawn(period, Arc::downgrade(&shared), Shared::flush_unsynced).map_err(
                    |source| AuditError::FlusherUnavailable {
                        path: PathBuf::from(describe),
                        source,
                    },
                )?,
            ),
            _ => None,
        };
        let timed_checkpoints = memory.is_none()
            && !options.checkpoint_interval.is_zero()
            && shared.key.signer().is_some();
        let checkpointer =
            if timed_checkpoints {
                Some(
                    Flusher::spawn(
                        options.checkpoint_interval,
                        Arc::downgrade(&shared),
                        Shared::checkpoint_if_due,
                    )
                    .map_err(|source| AuditError::FlusherUnavailable {
                        path: PathBuf::from(shared.state.lock().map_or_else(
                            |_| String::from("<audit log>"),
                            |st| st.backend.describe(),
                        )),
                        source,
                    })?,
                )
            } else {
                None
            };
        Ok(Self {
            shared,
            flusher,
            checkpointer,
            memory,
        })
    }

    /// The worker id written in every record.
    #[must_use]
    pub fn worker_id(&self) -> &str {
        &self.shared.worker
    }

    /// The options the log was opened with.
    #[must_use]
    pub fn options(&self) -> &LogOptions {
        &self.shared.options
    }

    /// The last record written, as a checkpoint to keep outside this host
    /// (`None` before the first record).
    #[must_use]
    pub fn head(&self) -> Option<Checkpoint> {
        let st = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (st.seq != 0).then(|| Checkpoint {
            seq: st.seq,
            hash: st.prev.clone(),
            log_id: st.log_id.clone(),
        })
    }

    /// Flushes every record written so far to stable storage.
    ///
    /// # Errors
    /// When the flush fails, or the log is poisoned.
    pub fn sync(&self) -> Result<(), AuditError> {
        let mut st = self.lock_state()?;
        st.backend
            .sync()
            .map_err(|e| AuditError::io("fsync", PathBuf::from(st.backend.describe()), e))?;
        st.mark_synced();
        Ok(())
    }

    /// Sequence number of the last record known to be on stable storage: it and
    /// every record before it were flushed (fsynced, for files) by a `record`
    /// call, [`Self::sync`] or the background flusher of
    /// [`FsyncPolicy::Interval`]. 0 until this handle's first flush: records a
    /// reopened log already held count once a flush covers them.
    ///
    /// Unlike [`RecordReceipt::durable`], which is fixed when `record` returns,
    /// this moves forward as later flushes happen, with one exception: when a
    /// segment could not be flushed as it was closed by rotation, its last
    /// records are never proven durable, and this stays at the last record
    /// known durable before them for the life of this handle.
    #[must_use]
    pub fn durable_seq(&self) -> u64 {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .synced_seq
    }

    /// For tests: `None` when the log has no background flush thread (in
    /// memory, or a policy other than [`FsyncPolicy::Interval`]); otherwise a
    /// reference that can no longer be upgraded once the thread has exited.
    #[doc(hidden)]
    #[must_use]
    pub fn flusher_liveness(&self) -> Option<Weak<()>> {
        self.flusher.as_ref().map(Flusher::liveness)
    }

    /// The record lines of an in-memory log, without `\n`; empty for other logs.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        self.memory
            .as_ref()
            .map(MemoryBackend::lines)
            .unwrap_or_default()
    }

    /// In-memory logs: the next `n` writes fail after writing half the line.
    /// No effect on other logs. A test hook behind the `test-hooks` feature:
    /// not for production builds.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn fail_next_writes(&self, n: u32) {
        if let Some(m) = &self.memory {
            m.fail_next_writes(n);
        }
    }

    /// In-memory logs: every write fails (after writing half the line) until
    /// set back. No effect on other logs. A test hook behind the `test-hooks`
    /// feature: not for production builds.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn set_failing(&self, failing: bool) {
        if let Some(m) = &self.memory {
            m.set_failing(failing);
        }
    }

    fn lock_state(&self) -> Result<MutexGuard<'_, ChainState>, AuditError> {
        self.shared.state.lock().map_err(|_| AuditError::Poisoned)
    }
}

impl Shared {
    /// Closes a full segment with a `rotated` record and continues in the next.
    /// A rotation that fails is logged and retried at the next record; the
    /// record itself then goes to the current segment.
    fn maybe_rotate(&self, st: &mut ChainState) {
        let Some(max) = self.options.max_file_bytes else {
            return;
        };
        if st.committed_len == 0 || st.committed_len < max {
            return;
        }
        let Some(next_file) = st.backend.next_segment() else {
            return;
        };
        if let Err(e) = st.backend.prepare_next() {
            tracing::warn!(error = %e, next_file, "audit log rotation failed; continuing in the current segment");
            return;
        }
        let before = st.seq;
        let outcome = self.write_record(
            st,
            &AuditEvent::Rotated {
                next_file: next_file.clone(),
            },
            FailureMode::FailClosed {
                max_wait: Duration::ZERO,
            },
            true,
        );
        if st.seq == before {
            st.backend.abort_next();
            if let Outcome::Failed(e) = outcome {
                tracing::warn!(error = %e, "audit log rotation failed; continuing in the current segment");
            }
            return;
        }
        // The `rotated` record is in the old segment: the chain continues in
        // the new one whatever else happened.
        match outcome {
            Outcome::NotFlushed(_, e) | Outcome::Failed(e) => {
                tracing::error!(error = %e, "closing audit segment was not flushed");
                // Its unflushed records stay unproven for good.
                let cap = st
                    .durable_cap
                    .map_or(st.synced_seq, |c| c.min(st.synced_seq));
                st.durable_cap = Some(cap);
                self.note(&Ok(()));
                self.note(&Err(&e));
            }
            Outcome::Written(_) => self.note(&Ok(())),
        }
        st.backend.switch_to_next();
        st.committed_len = 0;
        st.dirty = false;
        st.unsynced = 0;
        tracing::info!(next_file, "audit log rotated");
        // The new segment opens with a signed checkpoint over everything
        // before it, the old segment's `rotated` record included: the old
        // segments can be archived with a proof that holds without the secret.
        self.write_checkpoint(st);
    }

    /// The checkpointer thread's work: a signed checkpoint when records have
    /// waited `checkpoint_interval` for one. Returns false when one was due
    /// and could not be written (the thread retries later).
    fn checkpoint_if_due(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.since_checkpoint == 0 {
            return true;
        }
        if st.last_checkpoint.elapsed() < self.options.checkpoint_interval {
            // A checkpoint was written since the record that woke us: the
            // records after it are tried again a period later.
            return false;
        }
        self.write_checkpoint(&mut st);
        st.since_checkpoint == 0
    }

    /// True when a signed checkpoint is due after the record just written.
    fn checkpoint_due(&self, st: &ChainState) -> bool {
        if st.since_checkpoint == 0 || self.key.signer().is_none() {
            return false;
        }
        let by_count = self.options.checkpoint_records > 0
            && st.since_checkpoint >= self.options.checkpoint_records;
        let by_time = !self.options.checkpoint_interval.is_zero()
            && st.last_checkpoint.elapsed() >= self.options.checkpoint_interval;
        by_count || by_time
    }

    /// Writes a signed checkpoint over the last record written, when the log
    /// has a signing key, is of format 2 and has a record since the last
    /// checkpoint. A failure is logged and counted; the next trigger retries.
    fn write_checkpoint(&self, st: &mut ChainState) {
        let Some(signer) = self.key.signer() else {
            return;
        };
        let Some(log_id) = st.log_id.clone() else {
            return;
        };
        if st.since_checkpoint == 0 || !crate::signing::signable(Some(&log_id), &st.prev) {
            return;
        }
        let signature = signer.sign_checkpoint(&log_id, st.seq, &st.prev);
        let event = AuditEvent::SignedCheckpoint {
            seq: st.seq,
            hash: st.prev.clone(),
            log_id,
            signing_key: signer.public_key().fingerprint(),
            signature,
        };
        let mode = self.options.failure.mode_for(event.severity());
        match self.write_record(st, &event, mode, false) {
            Outcome::Written(_) => self.note(&Ok(())),
            Outcome::NotFlushed(_, e) => {
                self.note(&Ok(()));
                self.note(&Err(&e));
            }
            Outcome::Failed(e) => {
                tracing::warn!(error = %e, "signed checkpoint not written; retried after the next record");
                self.note(&Err(&e));
                return;
            }
        }
        st.since_checkpoint = 0;
        st.last_checkpoint = Instant::now();
    }

    fn flush_due(&self, st: &ChainState, severity: Severity, force: bool) -> bool {
        force
            || severity == Severity::Critical
            || match self.options.fsync {
                FsyncPolicy::EveryRecord => true,
                FsyncPolicy::EveryN(n) => st.unsynced >= u64::from(n.max(1)),
                FsyncPolicy::Interval(d) => st.last_sync.elapsed() >= d,
                FsyncPolicy::CriticalOnly => false,
            }
    }

    /// Encodes, writes and (when due) flushes one record.
    fn write_record(
        &self,
        st: &mut ChainState,
        event: &AuditEvent,
        mode: FailureMode,
        force_sync: bool,
    ) -> Outcome {
        let Some(seq) = st.seq.checked_add(1) else {
            return Outcome::Failed(AuditError::SequenceExhausted { seq: st.seq });
        };
        let ts = record::rfc3339_utc(SystemTime::now());
        let line = match record::encode_line(
            &self.key,
            st.log_id.as_deref(),
            seq,
            &ts,
            &self.worker,
            event,
            &st.prev,
        ) {
            Ok(l) => l,
            Err(e) => return Outcome::Failed(e),
        };
        let body = line.get(..line.len().saturating_sub(1)).unwrap_or_default();
        let hash = record::line_hash(body);
        if let Err((source, attempts, waited)) = retry(mode, || try_append(st, &line)) {
            return Outcome::Failed(AuditError::WriteFailed {
                path: PathBuf::from(st.backend.describe()),
                seq,
                event: event.kind(),
                attempts,
                waited_ms: millis(waited),
                source,
            });
        }
        st.seq = seq;
        st.prev.clone_from(&hash);
        st.committed_len = st
            .committed_len
            .saturating_add(u64::try_from(line.len()).unwrap_or(u64::MAX));
        st.unsynced = st.unsynced.saturating_add(1);
        st.since_checkpoint = st.since_checkpoint.saturating_add(1);
        let mut receipt = RecordReceipt {
            seq,
            hash,
            durable: false,
        };
        if self.flush_due(st, event.severity(), force_sync) {
            match retry(mode, || st.backend.sync()) {
                Ok(()) => {
                    st.mark_synced();
                    receipt.durable = true;
                }
                Err((source, attempts, waited)) => {
                    let e = AuditError::SyncFailed {
                        path: PathBuf::from(st.backend.describe()),
                        seq,
                        event: event.kind(),
                        attempts,
                        waited_ms: millis(waited),
                        source,
                    };
                    return Outcome::NotFlushed(receipt, e);
                }
            }
        }
        Outcome::Written(receipt)
    }
}

/// Appends a whole line or nothing: a partial write is cut back off.
fn try_append(st: &mut ChainState, line: &[u8]) -> io::Result<()> {
    if st.dirty {
        st.backend.truncate(st.committed_len)?;
        st.dirty = false;
    }
    match st.backend.append(line) {
        Ok(()) => Ok(()),
        Err(e) => {
            let clean = matches!(st.backend.segment_len(), Ok(len) if len == st.committed_len);
            if !clean && st.backend.truncate(st.committed_len).is_err() {
                st.dirty = true;
            }
            Err(e)
        }
    }
}

/// Runs `op` once (best effort) or until it succeeds or `max_wait` would be
/// exceeded (fail-closed). On failure returns (last error, attempts, time spent).
fn retry(
    mode: FailureMode,
    mut op: impl FnMut() -> io::Result<()>,
) -> Result<(), (io::Error, u32, Duration)> {
    let max_wait = match mode {
        FailureMode::FailClosed { max_wait } => max_wait,
        FailureMode::BestEffort => Duration::ZERO,
    };
    let start = Instant::now();
    let mut backoff = Duration::from_millis(1);
    let mut attempts = 0u32;
    loop {
        attempts = attempts.saturating_add(1);
        match op() {
            Ok(()) => return Ok(()),
            Err(e) => {
                let waited = start.elapsed();
                if waited.saturating_add(backoff) > max_wait {
                    return Err((e, attempts, waited));
                }
                thread::sleep(backoff);
                backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
            }
        }
    }
}

impl AuditLog {
    /// Records `event` under `mode`, flushing it if `force_sync` or the policy
    /// says so.
    fn record_with(
        &self,
        event: AuditEvent,
        mode: FailureMode,
        force_sync: bool,
    ) -> Result<RecordReceipt, AuditError> {
        let outcome = {
            let mut st = self.lock_state()?;
            self.shared.maybe_rotate(&mut st);
            let outcome = self.shared.write_record(&mut st, &event, mode, force_sync);
            if !matches!(outcome, Outcome::Failed(_)) && self.shared.checkpoint_due(&st) {
                self.shared.write_checkpoint(&mut st);
            }
            if st.unsynced > 0 {
                if let Some(flusher) = &self.flusher {
                    flusher.note_pending();
                }
            }
            if st.since_checkpoint > 0 {
                if let Some(checkpointer) = &self.checkpointer {
                    checkpointer.note_pending();
                }
            }
            outcome
        };
        let fail_closed = matches!(mode, FailureMode::FailClosed { .. });
        match outcome {
            Outcome::Written(receipt) => {
                self.shared.note(&Ok(()));
                self.shared.end_burst();
                Ok(receipt)
            }
            Outcome::NotFlushed(receipt, e) => {
                self.shared.note(&Ok(()));
                self.shared.note(&Err(&e));
                if fail_closed {
                    return Err(e);
                }
                tracing::error!(error = %e, event = event.kind(), "audit record written but not flushed (best effort)");
                Ok(receipt)
            }
            Outcome::Failed(e) => {
                self.shared.note(&Err(&e));
                if fail_closed {
                    return Err(e);
                }
                self.shared.note_lost(&e, event.kind());
                Ok(RecordReceipt::not_written())
            }
        }
    }
}

impl AuditSink for AuditLog {
    fn record(&self, event: AuditEvent) -> Result<RecordReceipt, AuditError> {
        let mode = self.shared.options.failure.mode_for(event.severity());
        self.record_with(event, mode, false)
    }

    fn stats(&self) -> SinkStats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Stop and join the flusher first (it waits at most for the fsync in
        // progress), so that the final flush below is the last one.
        drop(self.flusher.take());
        drop(self.checkpointer.take());
        let mut st = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A clean close leaves every record covered by a signed checkpoint.
        self.shared.write_checkpoint(&mut st);
        if st.unsynced > 0 {
            if let Err(e) = st.backend.sync() {
                tracing::error!(error = %e, "audit log not flushed on close");
            }
        }
    }
}
