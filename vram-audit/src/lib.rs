#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod backend;
mod error;
mod event;
mod flusher;
mod key;
mod lock;
mod log;
mod open;
mod options;
mod record;
mod recover;
mod show;
mod signing;
mod verify;

pub use backend::{Backend, MemoryBackend};
pub use error::AuditError;
pub use event::{
    AuditEvent, BoundFileRecord, ByteRange, RecordedEvent, SealProvenanceRecord, Severity,
    UnknownEvent,
};
pub use key::AuditKey;
pub use log::{AuditLog, AuditSink, RecordReceipt, SinkStats};
pub use options::{FailureMode, FailurePolicy, FileOptions, FsyncPolicy, LogOptions};
pub use record::RECORD_FORMAT;
pub use show::{is_log_file, read_records, ShownLine, ShownRecord};
pub use signing::{checkpoint_message, AuditPublicKey, AuditSigner, SignedCheckpoint};
pub use verify::{
    segment_files, verify_chain, verify_chain_public, verify_chain_with, verify_lines,
    verify_lines_public, verify_lines_with, Checkpoint, Finding, FindingKind, Genesis,
    UnknownEventTypes, VerifyOptions, VerifyReport,
};
