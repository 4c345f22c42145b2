//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while writing or reading an audit log.
///
/// Integrity problems found by the verifier are not errors but
/// [`Finding`](crate::Finding)s; an error means the operation itself could not be
/// carried out. Messages never contain key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file-system operation on the log failed (open, read, truncate, create).
    #[error("audit log: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A record could not be written; nothing of it remains in the log and the
    /// chain did not advance.
    #[error(
        "audit log {path}: record seq {seq} ({event}) could not be written after {attempts} attempt(s) over {waited_ms} ms: {source}"
    )]
    WriteFailed {
        /// Where the record was to go (a segment path, or `<memory>`).
        path: PathBuf,
        /// The sequence number the record would have had.
        seq: u64,
        /// The event type (`vram_sealed`, ...).
        event: &'static str,
        /// How many writes were tried.
        attempts: u32,
        /// How long the retries lasted.
        waited_ms: u64,
        /// The last write error.
        #[source]
        source: io::Error,
    },
    /// A record was written but could not be flushed to stable storage; it is in
    /// the log (the chain advanced) but may not survive a power loss.
    #[error(
        "audit log {path}: record seq {seq} ({event}) written but could not be flushed to disk (fsync) after {attempts} attempt(s) over {waited_ms} ms: {source}"
    )]
    SyncFailed {
        /// The segment being flushed (or `<memory>`).
        path: PathBuf,
        /// The record's sequence number.
        seq: u64,
        /// The event type.
        event: &'static str,
        /// How many fsyncs were tried.
        attempts: u32,
        /// How long the retries lasted.
        waited_ms: u64,
        /// The last fsync error.
        #[source]
        source: io::Error,
    },
    /// An existing log is damaged somewhere other than a torn last line, so it is
    /// not continued (and never repaired silently). Run the verifier on it and
    /// move it aside.
    #[error("audit log {path} is damaged ({finding}); refusing to append to it")]
    Damaged {
        /// The damaged segment.
        path: PathBuf,
        /// The first problem found, as the verifier words it.
        finding: String,
    },
    /// Another writer holds the log: another process (or another `AuditLog` in
    /// this one) has it open, and did not close it within
    /// [`LogOptions::lock_wait`](crate::LogOptions::lock_wait). Two writers
    /// would fork the chain, so the second is refused.
    #[error(
        "audit log {path} is in use by another writer (lock file {lock} still held after {waited_ms} ms); one process writes one log: give each worker its own log"
    )]
    Locked {
        /// The log.
        path: PathBuf,
        /// The lock file beside it.
        lock: PathBuf,
        /// How long the lock was waited for.
        waited_ms: u64,
    },
    /// The log path (or one of its segments, or its lock file) is not a
    /// regular file: a symlink (never followed), a device, a FIFO, a
    /// directory. Nothing was written.
    #[error("audit log {path} is a {found}, not a regular file; refusing to use it (symlinks are not followed)")]
    NotRegularFile {
        /// The path refused.
        path: PathBuf,
        /// What it is.
        found: &'static str,
    },
    /// The file is not an audit log written under this key (its first line is
    /// not an authentic record, or it holds only an incomplete line that is
    /// not the start of one). It was left unchanged.
    #[error("{path} is not an audit log of this key ({reason}); it was left unchanged: point the log elsewhere")]
    NotALog {
        /// The file refused.
        path: PathBuf,
        /// Why it is not recognised.
        reason: String,
    },
    /// The log path is the same file (same device and inode) as a file the log
    /// was told never to write, such as the worker secret.
    #[error("audit log {path} is the same file as {protected}, which a log must never write; choose another log path")]
    ProtectedFile {
        /// The log path (or segment) refused.
        path: PathBuf,
        /// The protected file it is the same as.
        protected: PathBuf,
    },
    /// The system random number generator failed, so a new log could not be
    /// given its id.
    #[error("the system random number generator failed; cannot create a new audit log")]
    RandomUnavailable,
    /// A record would be longer than the format allows.
    #[error("audit record of {bytes} bytes exceeds the {max}-byte line limit; shorten the event's text fields")]
    RecordTooLarge {
        /// The encoded length.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The worker id is empty, too long or not printable ASCII.
    #[error(
        "worker id must be 1 to {max} printable ASCII characters without spaces (got {len} bytes)"
    )]
    InvalidWorkerId {
        /// Length of the rejected id in bytes.
        len: usize,
        /// The maximum length.
        max: usize,
    },
    /// A log path does not end in a UTF-8 file name.
    #[error("audit log path {path} must end in a UTF-8 file name")]
    InvalidPath {
        /// The rejected path.
        path: PathBuf,
    },
    /// A checkpoint string is not `SEQ:HASH` or `SEQ:HASH:LOG_ID`.
    #[error("checkpoint must be SEQ:HASH or SEQ:HASH:LOG_ID (a decimal sequence number, 64 lowercase hex digits, and for a format 2 log its 32-hex-digit id), got {got:?}")]
    InvalidCheckpoint {
        /// The rejected text, truncated to 80 characters.
        got: String,
    },
    /// A public key given to verify signed checkpoints is not an Ed25519
    /// key in PEM.
    #[error("public key: {reason}; expected the PEM that `vram audit public-key` prints (-----BEGIN PUBLIC KEY-----, Ed25519)")]
    InvalidPublicKey {
        /// What is wrong with it.
        reason: String,
    },
    /// The log's segments are not in the order its own rotation left them:
    /// another program (an external rotator such as logrotate) renamed,
    /// copied or truncated them. Nothing was written.
    #[error("audit log {path}: {reason}; vram rotates its logs itself: do not point logrotate (or another rotator) at them, undo the rename or start a new log (see docs/audit-log.md, Rotation and retention)")]
    ExternallyRotated {
        /// The log's path.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// An event could not be encoded as JSON.
    #[error("audit event could not be encoded: {reason}")]
    Encode {
        /// The encoder's message.
        reason: String,
    },
    /// The sequence number space is exhausted.
    #[error("audit log sequence number overflowed at {seq}; start a new log")]
    SequenceExhausted {
        /// The last sequence number used.
        seq: u64,
    },
    /// The background flush thread that [`FsyncPolicy::Interval`](crate::FsyncPolicy::Interval)
    /// needs could not be started (the process is out of threads or memory);
    /// the log was not opened.
    #[error("audit log {path}: could not start the background flush thread: {source}")]
    FlusherUnavailable {
        /// Where the log's records go.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A thread panicked while holding the log's lock; the chain state can no
    /// longer be trusted, so the log refuses further records.
    #[error("audit log state poisoned by a panic in another thread; refusing to append")]
    Poisoned,
}

impl AuditError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
