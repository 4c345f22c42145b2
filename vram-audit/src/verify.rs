//! The verifier: re-reads records, checks every MAC and every link, and reports
//! integrity problems as typed [`Finding`]s with file and line.
//!
//! Memory is bounded whatever the log holds: lines are read one at a time
//! (at most [`MAX_LINE_BYTES`] each), a run of consecutive bad lines of one
//! kind is one finding, at most [`VerifyOptions::max_findings`] findings are
//! kept in full (the rest are counted), and findings share their file's path.
//! What still grows with the log is bookkeeping over *authentic* records
//! (sequence numbers seen, open gaps), which only the key's holder can write.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read as _};
use std::mem::discriminant;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::record::{self, LineProblem, GENESIS_PREV, MAX_LINE_BYTES};
use crate::{AuditError, AuditEvent, AuditKey, AuditPublicKey, RecordedEvent, SignedCheckpoint};

/// A chain position saved elsewhere (shipped off the host, printed in a ticket),
/// against which a later verification detects truncation.
///
/// Text form: `SEQ:HASH`, e.g. `42:9f86d0...`, or for a format 2 log
/// `SEQ:HASH:LOG_ID`, which also pins which log it belongs to. The short form
/// is still accepted (and is all a format 1 log has).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// Sequence number of the record.
    pub seq: u64,
    /// Hex SHA-256 of the record's line.
    pub hash: String,
    /// The log's id (32 hex digits), for a format 2 log.
    pub log_id: Option<String>,
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)?;
        if let Some(id) = &self.log_id {
            write!(f, ":{id}")?;
        }
        Ok(())
    }
}

impl FromStr for Checkpoint {
    type Err = AuditError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || AuditError::InvalidCheckpoint {
            got: s.chars().take(80).collect(),
        };
        let mut parts = s.trim().split(':');
        let (Some(seq), Some(hash)) = (parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let log_id = parts.next();
        if parts.next().is_some() {
            return Err(invalid());
        }
        let seq: u64 = seq.parse().map_err(|_| invalid())?;
        if seq == 0 || !record::is_hash_hex(hash) || log_id.is_some_and(|id| !record::is_log_id(id))
        {
            return Err(invalid());
        }
        Ok(Self {
            seq,
            hash: hash.to_owned(),
            log_id: log_id.map(str::to_owned),
        })
    }
}

/// How a verification runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// A head saved earlier: detects a deleted tail, and (with a log id) a log
    /// put in place of another.
    pub checkpoint: Option<Checkpoint>,
    /// Findings kept in full in the report; the rest are only counted
    /// ([`VerifyReport::findings_omitted`]). The verdict and the counts are
    /// exact whatever this is.
    pub max_findings: usize,
    /// An empty log (no line at all) is expected: no [`FindingKind::Empty`].
    pub allow_empty: bool,
    /// A signed checkpoint kept by a monitor (`vram audit head --signed`):
    /// the log must contain it, unaltered (the same signed record), and
    /// extend it. Its position also acts as [`Self::checkpoint`] when that
    /// is not set.
    pub signed_checkpoint: Option<SignedCheckpoint>,
    /// The chain starts after this record instead of at the genesis record:
    /// the head of older segments that were archived and removed (see
    /// docs/audit-log.md, *Rotation and retention*). The first record must
    /// be its successor (`seq` + 1, `prev` = its hash) and, with a log id,
    /// bound to that log.
    pub after: Option<Checkpoint>,
}

impl VerifyOptions {
    /// Default for [`Self::max_findings`].
    pub const DEFAULT_MAX_FINDINGS: usize = 100;
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            checkpoint: None,
            max_findings: Self::DEFAULT_MAX_FINDINGS,
            allow_empty: false,
            signed_checkpoint: None,
            after: None,
        }
    }
}

fn serialize_path<S: Serializer>(path: &Arc<Path>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&path.display())
}

/// One integrity problem, or a run of consecutive lines with the same problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The file, as passed to the verifier (`<memory>` for [`verify_lines`]);
    /// shared by every finding in that file.
    #[serde(serialize_with = "serialize_path")]
    pub file: Arc<Path>,
    /// 1-based line number in that file (the first line of a run).
    pub line: u64,
    /// The last line of a run (`line` for a single line).
    pub last_line: u64,
    /// Lines in the run (1 for a single line).
    pub count: u64,
    /// What is wrong (for a run of malformed lines: with the first one's reason).
    pub kind: FindingKind,
}

impl Finding {
    /// A finding on one line.
    #[must_use]
    pub fn at(file: impl Into<Arc<Path>>, line: u64, kind: FindingKind) -> Self {
        Self {
            file: file.into(),
            line,
            last_line: line,
            count: 1,
            kind,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count > 1 {
            write!(
                f,
                "{}:{}-{}: {} ({} consecutive lines)",
                self.file.display(),
                self.line,
                self.last_line,
                self.kind,
                self.count
            )
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.kind)
        }
    }
}

/// What is wrong with a line or with the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// The MAC does not match: the line was altered or forged, or was written
    /// under another key.
    BadMac,
    /// The record is authentic and in sequence but does not link to the
    /// record before it.
    ChainBreak {
        /// Hash of the preceding record.
        expected_prev: String,
        /// The record's `prev`.
        found_prev: String,
    },
    /// An authentic record that follows lines which failed authentication and
    /// skips the sequence numbers they may have held: its `prev` names a record
    /// that is not there, so neither it nor the records after it are linked to
    /// the chain before (they could be another log's tail).
    Unlinked {
        /// Its sequence number.
        seq: u64,
        /// The bad lines it follows.
        after_bad_lines: u64,
    },
    /// Records are missing: the sequence jumps forward.
    SequenceGap {
        /// The sequence number that should have come next.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// An authentic record out of order (moved, or swapped with a neighbour).
    Reordered {
        /// Its sequence number.
        seq: u64,
    },
    /// An authentic record that already appeared earlier (a replayed copy).
    Replayed {
        /// Its sequence number.
        seq: u64,
    },
    /// Not a well-formed record.
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
    /// The last line of a file has no `\n`: a write was cut short by a crash (or
    /// a writer is still appending). Reopening the log repairs this.
    TornTail {
        /// Length of the incomplete line.
        bytes: u64,
    },
    /// A segment ends in a `rotated` record naming a file that is not the next
    /// one given to the verifier.
    MissingFile {
        /// The file name the chain continues in.
        expected: String,
    },
    /// The chain ends before the checkpoint: records were cut off the end.
    Truncated {
        /// The checkpoint's sequence number.
        checkpoint_seq: u64,
        /// The last sequence number present (0 if none).
        last_seq: u64,
    },
    /// The record at the checkpoint's sequence number has another hash, or is
    /// missing although later records exist.
    CheckpointMismatch {
        /// The checkpoint's sequence number.
        seq: u64,
        /// The checkpoint's hash.
        expected_hash: String,
        /// The hash found at that sequence number, if the record exists.
        found_hash: Option<String>,
    },
    /// An authentic record bound to another log id than the records before it
    /// (`None`: a format 1 record, bound to no log): records of another log
    /// written under the same key.
    LogIdChanged {
        /// The id of the chain so far.
        expected: Option<String>,
        /// The record's.
        found: Option<String>,
    },
    /// The checkpoint names another log id than the log's (`None`: the log is
    /// format 1 and has no bound id).
    CheckpointLogMismatch {
        /// The checkpoint's log id.
        expected: String,
        /// The log's.
        found: Option<String>,
    },
    /// The record declares a format version this verifier does not know.
    UnknownVersion,
    /// A signed checkpoint whose Ed25519 signature does not verify under the
    /// public key: the checkpoint, or the position it names, was altered.
    BadSignature {
        /// The checkpoint record's sequence number.
        seq: u64,
    },
    /// A signed checkpoint that does not name the record before it (its
    /// `seq`, `hash` or `log_id` is not that record's): moved from elsewhere.
    CheckpointMisplaced {
        /// The checkpoint record's sequence number.
        seq: u64,
    },
    /// The log names (in its genesis record or a checkpoint) another signing
    /// key than the public key given: verify with the key of the worker that
    /// wrote it (a new worker secret means a new key, and a new log).
    SigningKeyMismatch {
        /// Fingerprint of the key given to the verifier.
        expected: String,
        /// Fingerprint the log names.
        found: String,
    },
    /// Verified with the public key only, and no signed checkpoint was found:
    /// nothing in the files can be proven without the secret.
    Unsigned,
    /// The signed checkpoint given to the verifier is not in the log as it
    /// was signed.
    SignedCheckpointMissing {
        /// The sequence number it covers.
        seq: u64,
    },
    /// A segment ends in a `rotated` record naming one file, and the next
    /// file given has another name: the segments were renamed (by an external
    /// rotator such as logrotate), or given out of order.
    SegmentRenamed {
        /// The file name the chain continues in.
        expected: String,
        /// The next file's name.
        found: String,
    },
    /// The files hold nothing at all: no record, and no line that failed to be
    /// one. A log always begins with its
    /// genesis record, so an empty (or wiped) log is not intact unless an
    /// empty log was expected. Reported on line 0 (the whole file).
    Empty,
}

fn id_or_none(id: Option<&String>) -> &str {
    id.map_or("none (format 1)", String::as_str)
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMac => f.write_str(
                "bad MAC (record altered or forged, or the log was written under another key)",
            ),
            Self::ChainBreak {
                expected_prev,
                found_prev,
            } => write!(
                f,
                "chain break: prev is {found_prev}, expected {expected_prev} (the hash of the record before)"
            ),
            Self::Unlinked {
                seq,
                after_bad_lines,
            } => write!(
                f,
                "unlinked: record seq {seq} follows {after_bad_lines} line(s) that failed authentication, so its link to the chain cannot be checked; it and the records after it may belong to another log"
            ),
            Self::SequenceGap { expected, found } => write!(
                f,
                "sequence gap: expected seq {expected}, found {found} ({} record(s) missing)",
                found.saturating_sub(*expected)
            ),
            Self::Reordered { seq } => write!(f, "record seq {seq} is out of order"),
            Self::Replayed { seq } => {
                write!(f, "record seq {seq} appears again (replayed copy)")
            }
            Self::Malformed { reason } => write!(f, "malformed record: {reason}"),
            Self::TornTail { bytes } => write!(
                f,
                "torn tail: last line ({bytes} bytes) has no newline (interrupted write; reopening the log repairs it)"
            ),
            Self::MissingFile { expected } => {
                write!(f, "chain continues in {expected}, which was not given")
            }
            Self::Truncated {
                checkpoint_seq,
                last_seq,
            } => write!(
                f,
                "truncated: checkpoint is at seq {checkpoint_seq} but the log ends at seq {last_seq}"
            ),
            Self::CheckpointMismatch {
                seq,
                expected_hash,
                found_hash: Some(found),
            } => write!(
                f,
                "checkpoint mismatch at seq {seq}: hash {found}, checkpoint says {expected_hash}"
            ),
            Self::CheckpointMismatch {
                seq, found_hash: None, ..
            } => write!(f, "checkpoint mismatch: no record with seq {seq}"),
            Self::LogIdChanged { expected, found } => write!(
                f,
                "log id changes: record bound to log {}, the chain before to {} (records of another log under the same key)",
                id_or_none(found.as_ref()),
                id_or_none(expected.as_ref())
            ),
            Self::CheckpointLogMismatch { expected, found } => write!(
                f,
                "checkpoint is for log {expected}, but this log's id is {}",
                id_or_none(found.as_ref())
            ),
            Self::UnknownVersion => f.write_str("unknown record version (not 1 or 2)"),
            Self::BadSignature { seq } => write!(
                f,
                "bad signature: signed checkpoint seq {seq} does not verify under the public key (the checkpoint or the position it names was altered)"
            ),
            Self::CheckpointMisplaced { seq } => write!(
                f,
                "misplaced checkpoint: signed checkpoint seq {seq} does not name the record before it (moved from elsewhere)"
            ),
            Self::SigningKeyMismatch { expected, found } => write!(
                f,
                "signing key mismatch: the log is signed by key {found}, the public key given is {expected} (use the public key of the worker that wrote this log)"
            ),
            Self::Unsigned => f.write_str(
                "unproven: no signed checkpoint in these files, so no record can be checked without the secret",
            ),
            Self::SignedCheckpointMissing { seq } => write!(
                f,
                "the signed checkpoint given (seq {seq}) is not in the log as it was signed"
            ),
            Self::SegmentRenamed { expected, found } => write!(
                f,
                "the chain continues in {expected}, but the next file given is {found}: segments renamed by another program (logrotate?) or given out of order"
            ),
            Self::Empty => f.write_str(
                "empty log: no records at all (a log begins with its genesis record; it was wiped, or never written)",
            ),
        }
    }
}

/// What a log's genesis record (`log_created`, its first record) says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Genesis {
    /// Record format version.
    pub format: u32,
    /// Id of the audit key the log is written under.
    pub key_id: String,
    /// The log's random id (32 hex digits).
    pub log_id: String,
    /// Fingerprint of the public key that signs the log's checkpoints
    /// (`None`: the log has no signing key).
    pub signing_key: Option<String>,
}

/// Authentic records whose event type this build does not know: written by a
/// newer writer (writers upgraded before verifiers). They are not findings:
/// their MACs verified and they link into the chain, so they count toward
/// the chain, the sequence, the head and the checkpoint like any other
/// record. Only their meaning is unknown to this verifier.
///
/// Bounded whatever the log holds: the count is exact, at most
/// [`Self::MAX_NAMED`] distinct types are named, each escaped and cut to
/// [`Self::MAX_NAME_CHARS`] characters of the writer's text as
/// [`vram_validation::escape_for_log`] does (a name such as `leases_granted`
/// is unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UnknownEventTypes {
    /// Records of event types this build does not know.
    pub records: u64,
    /// Their types, in the order first seen, escaped and cut to
    /// [`Self::MAX_NAME_CHARS`] characters; at most [`Self::MAX_NAMED`].
    pub types: Vec<String>,
    /// Records of further types were seen that are not named (over
    /// [`Self::MAX_NAMED`]).
    pub more_types: bool,
}

impl UnknownEventTypes {
    /// Distinct types named at most.
    pub const MAX_NAMED: usize = 16;
    /// Characters of a type's name shown.
    pub const MAX_NAME_CHARS: usize = 64;

    /// Counts one record of the unknown type `kind`.
    fn note(&mut self, kind: &str) {
        self.records = self.records.saturating_add(1);
        let name = vram_validation::escape_for_log(kind, Self::MAX_NAME_CHARS);
        if self.types.contains(&name) {
            return;
        }
        if self.types.len() < Self::MAX_NAMED {
            self.types.push(name);
        } else {
            self.more_types = true;
        }
    }
}

impl fmt::Display for UnknownEventTypes {
    /// E.g. `2 record(s) of event types this build does not know:
    /// leases_granted (written by a newer version? ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} record(s) of event types this build does not know: ",
            self.records
        )?;
        for (i, name) in self.types.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        if self.more_types {
            f.write_str(", and other types")?;
        }
        f.write_str(
            " (written by a newer version? They authenticate and link like any other record; a current verifier can read them)",
        )
    }
}

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The log's genesis record, when its first record is one. `None` for a
    /// log written before genesis records existed (it begins with
    /// `log_opened`), and for a log whose first record is missing.
    pub genesis: Option<Genesis>,
    /// Format of the chain's first authentic record (1: records bound to no
    /// log id; 2: bound to [`Self::log_id`]). `None` when nothing authenticated.
    pub format: Option<u32>,
    /// The log id the chain's records are bound to (format 2).
    pub log_id: Option<String>,
    /// Authentic records read.
    pub records: u64,
    /// Lines that are not authentic records (bad MAC, malformed, unknown
    /// version, too long, torn).
    pub bad_lines: u64,
    /// Files read.
    pub files: usize,
    /// The last record linked, record by record, to the start of the chain:
    /// save it as the next checkpoint. Records after a break, a gap or a run
    /// of bad lines never move it, whatever they say.
    pub head: Option<Checkpoint>,
    /// Problems found, in reading order (checkpoint and rotation findings
    /// last), at most [`VerifyOptions::max_findings`].
    pub findings: Vec<Finding>,
    /// Every finding, kept or not.
    pub findings_total: u64,
    /// Findings not kept in [`Self::findings`] (over the limit).
    pub findings_omitted: u64,
    /// Authentic records of event types this build does not know (counted
    /// in [`Self::records`] too). Not a finding: a log with such records is
    /// intact if nothing else is wrong.
    pub unknown_event_types: UnknownEventTypes,
    /// Signed checkpoints whose signature verified (with a public key, given
    /// or derived from the secret).
    pub signed_checkpoints: u64,
    /// The last signed checkpoint that verified and is linked record by
    /// record to the start: every record up to it (and it) is proven by the
    /// public key.
    pub last_signed: Option<SignedCheckpoint>,
    /// Sequence number of that checkpoint's own record.
    pub proven_seq: Option<u64>,
    /// Records read after it (all of them when there is none): linked, but
    /// not yet covered by a signature.
    pub unproven_records: u64,
    /// Whether MACs were checked (a verification with the secret); `false`
    /// for a verification with the public key only.
    pub macs_checked: bool,
}

impl VerifyReport {
    /// True when nothing was found.
    #[must_use]
    pub fn is_intact(&self) -> bool {
        self.findings_total == 0
    }
}

/// Where a chain starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// At seq 1 with the all-zero `prev`.
    Genesis,
    /// Anywhere: the first authentic record is taken as given (a later segment
    /// checked on its own).
    Anywhere,
}

/// Sequence numbers seen, as disjoint half-open intervals keyed by start.
#[derive(Debug, Default)]
struct SeqSet(BTreeMap<u64, u64>);

impl SeqSet {
    fn contains(&self, seq: u64) -> bool {
        self.0
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, end)| seq < *end)
    }

    fn insert(&mut self, seq: u64) {
        if self.contains(seq) {
            return;
        }
        let end = seq.saturating_add(1);
        let mut start = seq;
        let mut new_end = end;
        if let Some((&s, &e)) = self.0.range(..seq).next_back() {
            if e == seq {
                start = s;
            }
        }
        if let Some(e) = self.0.remove(&end) {
            new_end = e;
        }
        self.0.insert(start, new_end);
    }
}

/// Gaps tracked for reclassification as reorderings; past this many, a gap
/// stays a `sequence_gap` (still a finding: the verdict does not change).
const MAX_TRACKED_GAPS: usize = 4096;

#[derive(Debug)]
struct Gap {
    start: u64,
    end: u64,
    filled: u64,
    /// Index of its finding, when kept.
    finding: Option<usize>,
    found: u64,
}

/// The last authentic in-order record seen.
#[derive(Debug, Clone)]
pub(crate) struct LastRecord {
    pub(crate) seq: u64,
    pub(crate) hash: String,
    pub(crate) log_id: Option<String>,
    pub(crate) event: RecordedEvent,
}

/// The finding a run of bad lines is being collapsed into.
#[derive(Debug)]
struct Run {
    kind: std::mem::Discriminant<FindingKind>,
    last_line: u64,
    /// Index of its finding, when kept.
    finding: Option<usize>,
}

/// Streaming chain checker shared by the verifier and by reopening.
pub(crate) struct ChainVerifier<'k> {
    /// The MAC key; `None` for a verification with the public key only.
    key: Option<&'k AuditKey>,
    /// Verifies signed checkpoints: given, or the key's own signer's.
    public: Option<AuditPublicKey>,
    /// The signed checkpoint a monitor kept, and whether it was found.
    wanted_signed: Option<SignedCheckpoint>,
    wanted_found: bool,
    signed_checkpoints: u64,
    last_signed: Option<SignedCheckpoint>,
    proven_seq: Option<u64>,
    unproven: u64,
    /// Next expected (seq, prev); `None` = take the next authentic record as given.
    expect: Option<(u64, String)>,
    /// Unauthentic lines since the last authentic one (each may stand for one record).
    bad_run: u64,
    seen: SeqSet,
    gaps: Vec<Gap>,
    findings: Vec<Finding>,
    max_findings: usize,
    findings_total: u64,
    run: Option<Run>,
    records: u64,
    unknown_event_types: UnknownEventTypes,
    bad_lines: u64,
    files: usize,
    last: Option<LastRecord>,
    /// Every record so far linked to the start: the report's head moves.
    linked: bool,
    head: Option<Checkpoint>,
    genesis: Option<Genesis>,
    /// (format, log id) of the first authentic record.
    first_format: Option<(u32, Option<String>)>,
    /// The log id the chain is bound to now (after the first authentic record).
    log_id: Option<Option<String>>,
    checkpoint: Option<Checkpoint>,
    allow_empty: bool,
    checkpoint_found: Option<(String, Arc<Path>, u64)>,
    pending_rotation: Option<(String, Arc<Path>, u64)>,
    /// A file given after a `rotated` record naming another file: (expected
    /// name, found name, where the `rotated` record is).
    misnamed: Option<(String, String, Arc<Path>, u64)>,
    /// The file being read, and the last line number seen in it.
    file: Arc<Path>,
    line_no: u64,
}

impl<'k> ChainVerifier<'k> {
    pub(crate) fn new(key: &'k AuditKey, start: Start, options: &VerifyOptions) -> Self {
        let public = key.signer().map(|s| s.public_key().clone());
        Self::with_keys(Some(key), public, start, options)
    }

    /// A verifier with a MAC key, a public key, or both (at least one).
    pub(crate) fn with_keys(
        key: Option<&'k AuditKey>,
        public: Option<AuditPublicKey>,
        start: Start,
        options: &VerifyOptions,
    ) -> Self {
        let wanted_signed = options.signed_checkpoint.clone();
        let checkpoint = options
            .checkpoint
            .clone()
            .or_else(|| wanted_signed.as_ref().map(|s| s.checkpoint.clone()));
        Self {
            key,
            public,
            wanted_signed,
            wanted_found: false,
            signed_checkpoints: 0,
            last_signed: None,
            proven_seq: None,
            unproven: 0,
            expect: match (&options.after, start) {
                (Some(after), _) => Some((after.seq.saturating_add(1), after.hash.clone())),
                (None, Start::Genesis) => Some((1, GENESIS_PREV.to_owned())),
                (None, Start::Anywhere) => None,
            },
            bad_run: 0,
            seen: SeqSet::default(),
            gaps: Vec::new(),
            findings: Vec::new(),
            max_findings: options.max_findings,
            findings_total: 0,
            run: None,
            records: 0,
            unknown_event_types: UnknownEventTypes::default(),
            bad_lines: 0,
            files: 0,
            last: None,
            linked: true,
            head: None,
            genesis: None,
            first_format: None,
            log_id: options
                .after
                .as_ref()
                .and_then(|a| a.log_id.clone())
                .map(Some),
            checkpoint,
            allow_empty: options.allow_empty,
            checkpoint_found: None,
            pending_rotation: None,
            misnamed: None,
            file: Arc::from(Path::new("<none>")),
            line_no: 0,
        }
    }

    pub(crate) fn findings(&self) -> &[Finding] {
        &self.findings
    }

    pub(crate) fn last(&self) -> Option<&LastRecord> {
        self.last.as_ref()
    }

    /// Records a finding (kept while under the limit); returns its index when kept.
    fn push(&mut self, file: Arc<Path>, line: u64, kind: FindingKind) -> Option<usize> {
        self.run = None;
        self.findings_total = self.findings_total.saturating_add(1);
        if self.findings.len() >= self.max_findings {
            return None;
        }
        self.findings.push(Finding::at(file, line, kind));
        Some(self.findings.len().saturating_sub(1))
    }

    /// A finding on the current line.
    fn here(&mut self, kind: FindingKind) -> Option<usize> {
        self.push(Arc::clone(&self.file), self.line_no, kind)
    }

    pub(crate) fn begin_file(&mut self, file: &Path) {
        self.files = self.files.saturating_add(1);
        self.run = None;
        let file: Arc<Path> = Arc::from(file);
        if let Some((expected, _, at, line)) = self.misnamed.take() {
            // The previous file held no record to tell: missing.
            self.push(at, line, FindingKind::MissingFile { expected });
        }
        if let Some((expected, at, line)) = self.pending_rotation.take() {
            let name = file.file_name().and_then(|n| n.to_str());
            if name != Some(expected.as_str()) {
                // Missing, or there under another name: the first record
                // of this file tells (see `line`).
                let found = vram_validation::escape_for_log(name.unwrap_or("?"), 200);
                self.misnamed = Some((expected, found, at, line));
            }
        }
        self.file = file;
        self.line_no = 0;
    }

    pub(crate) fn torn(&mut self, line: u64, bytes: u64) {
        self.line_no = line;
        self.bad_lines = self.bad_lines.saturating_add(1);
        self.here(FindingKind::TornTail { bytes });
    }

    /// A line that is not an authentic record: extends the current run of
    /// bad lines when it has the same kind of problem and follows it directly.
    fn unauthentic(&mut self, kind: FindingKind) {
        self.bad_run = self.bad_run.saturating_add(1);
        self.bad_lines = self.bad_lines.saturating_add(1);
        let line = self.line_no;
        if let Some(run) = &mut self.run {
            if run.kind == discriminant(&kind) && run.last_line.saturating_add(1) == line {
                run.last_line = line;
                if let Some(f) = run.finding.and_then(|i| self.findings.get_mut(i)) {
                    f.last_line = line;
                    f.count = f.count.saturating_add(1);
                }
                return;
            }
        }
        let d = discriminant(&kind);
        let finding = self.here(kind);
        self.run = Some(Run {
            kind: d,
            last_line: line,
            finding,
        });
    }

    pub(crate) fn too_long(&mut self, line: u64, bytes: u64) {
        self.line_no = line;
        self.unauthentic(FindingKind::Malformed {
            reason: format!("line of {bytes} bytes exceeds the {MAX_LINE_BYTES}-byte limit"),
        });
    }

    /// Checks one complete line (without `\n`).
    pub(crate) fn line(&mut self, line: u64, bytes: &[u8]) {
        self.line_no = line;
        let rec = match record::authenticate_with(self.key, bytes) {
            Ok(r) => r,
            Err(LineProblem::BadMac) => return self.unauthentic(FindingKind::BadMac),
            Err(LineProblem::UnknownVersion) => {
                return self.unauthentic(FindingKind::UnknownVersion)
            }
            Err(LineProblem::Malformed(reason)) => {
                return self.unauthentic(FindingKind::Malformed { reason })
            }
        };
        self.run = None;
        let bad_run = std::mem::take(&mut self.bad_run);
        let seq = rec.seq;
        if let Some((expected, found, at, at_line)) = self.misnamed.take() {
            // The record the `rotated` one leads to, in a file of another
            // name: the segments were renamed. Anything else: missing.
            let links = self
                .expect
                .as_ref()
                .is_some_and(|(s, p)| *s == seq && *p == rec.prev);
            let kind = if links {
                FindingKind::SegmentRenamed { expected, found }
            } else {
                FindingKind::MissingFile { expected }
            };
            self.push(at, at_line, kind);
        }
        if self.seen.contains(seq) {
            self.here(FindingKind::Replayed { seq });
            return;
        }
        if self.first_format.is_none() {
            self.first_format = Some((rec.version, rec.log_id.clone()));
        }
        match &self.log_id {
            None => {
                self.log_id = Some(rec.log_id.clone());
            }
            Some(current) if *current != rec.log_id => {
                let expected = current.clone();
                self.here(FindingKind::LogIdChanged {
                    expected,
                    found: rec.log_id.clone(),
                });
                // One finding per change, not one per record of the other log.
                self.log_id = Some(rec.log_id.clone());
                self.linked = false;
            }
            Some(_) => {}
        }
        if let Some(cp) = &self.checkpoint {
            if cp.seq == seq {
                self.checkpoint_found = Some((rec.hash.clone(), Arc::clone(&self.file), line));
            }
        }
        if let Some((expected, expected_prev)) = self.expect.take() {
            // Lines that failed authentication may stand for the records they
            // replaced: up to `bad_run` sequence numbers are accounted for.
            let covered = expected.saturating_add(bad_run);
            match seq.cmp(&expected) {
                Ordering::Equal => {
                    if rec.prev != expected_prev {
                        self.linked = false;
                        self.here(FindingKind::ChainBreak {
                            expected_prev,
                            found_prev: rec.prev.clone(),
                        });
                    }
                }
                Ordering::Greater if seq <= covered => {
                    // The missing records may be the altered lines (already
                    // reported), but this record's `prev` names a record that is
                    // not there: nothing links it to the chain before.
                    self.linked = false;
                    self.here(FindingKind::Unlinked {
                        seq,
                        after_bad_lines: bad_run,
                    });
                }
                Ordering::Greater => {
                    self.linked = false;
                    let finding = self.here(FindingKind::SequenceGap {
                        expected,
                        found: seq,
                    });
                    if self.gaps.len() < MAX_TRACKED_GAPS {
                        self.gaps.push(Gap {
                            start: expected,
                            end: seq,
                            filled: 0,
                            finding,
                            found: seq,
                        });
                    }
                }
                Ordering::Less => {
                    // Older than expected and never seen: moved here from earlier.
                    self.here(FindingKind::Reordered { seq });
                    self.fill_gap(seq);
                    self.seen.insert(seq);
                    self.count_record(&rec.event);
                    self.unproven = self.unproven.saturating_add(1);
                    self.expect = Some((expected, expected_prev));
                    return;
                }
            }
        } else if self.records == 0 && bad_run > 0 {
            // A segment checked on its own (reopening) that begins with bad
            // lines: the first record is not linked to anything.
            self.linked = false;
        }
        if let RecordedEvent::Known(AuditEvent::LogCreated {
            format,
            key_id,
            log_id,
            signing_key,
        }) = &rec.event
        {
            if seq == 1 && self.records == 0 {
                if *format != rec.version {
                    self.here(FindingKind::UnknownVersion);
                } else if rec.version >= 2 && rec.log_id.as_ref() != Some(log_id) {
                    self.linked = false;
                    self.here(FindingKind::LogIdChanged {
                        expected: Some(log_id.clone()),
                        found: rec.log_id.clone(),
                    });
                }
                self.genesis = Some(Genesis {
                    format: *format,
                    key_id: key_id.clone(),
                    log_id: log_id.clone(),
                    signing_key: signing_key.clone(),
                });
                if let (Some(found), Some(public)) = (signing_key, &self.public) {
                    let expected = public.fingerprint();
                    if *found != expected {
                        self.here(FindingKind::SigningKeyMismatch {
                            expected,
                            found: found.clone(),
                        });
                    }
                }
            }
        }
        self.seen.insert(seq);
        self.count_record(&rec.event);
        self.unproven = self.unproven.saturating_add(1);
        if let RecordedEvent::Known(AuditEvent::SignedCheckpoint {
            seq: signed_seq,
            hash,
            log_id,
            signing_key,
            signature,
        }) = &rec.event
        {
            let signed = SignedCheckpoint {
                checkpoint: Checkpoint {
                    seq: *signed_seq,
                    hash: hash.clone(),
                    log_id: Some(log_id.clone()),
                },
                signing_key: signing_key.clone(),
                signature: signature.clone(),
            };
            self.signed_checkpoint(seq, &rec.prev, rec.log_id.as_deref(), signed);
        }
        self.expect = Some((seq.saturating_add(1), rec.hash.clone()));
        self.pending_rotation = match &rec.event {
            RecordedEvent::Known(AuditEvent::Rotated { next_file }) => {
                Some((next_file.clone(), Arc::clone(&self.file), line))
            }
            _ => None,
        };
        if self.linked {
            self.head = Some(Checkpoint {
                seq,
                hash: rec.hash.clone(),
                log_id: rec.log_id.clone(),
            });
        }
        self.last = Some(LastRecord {
            seq,
            hash: rec.hash,
            log_id: rec.log_id,
            event: rec.event,
        });
    }

    /// Checks a signed checkpoint record (at `seq`, with `prev`, bound to
    /// `log_id`): it must name the record before it, and its signature must
    /// verify under the public key. One that does, on a chain linked from
    /// the start, proves every record up to it.
    fn signed_checkpoint(
        &mut self,
        seq: u64,
        prev: &str,
        log_id: Option<&str>,
        signed: SignedCheckpoint,
    ) {
        if self.wanted_signed.as_ref().is_some_and(|w| *w == signed) {
            self.wanted_found = true;
        }
        let placed = signed.checkpoint.seq.checked_add(1) == Some(seq)
            && signed.checkpoint.hash == prev
            && signed.checkpoint.log_id.as_deref() == log_id;
        if !placed {
            self.linked = false;
            self.here(FindingKind::CheckpointMisplaced { seq });
            return;
        }
        let Some(public) = &self.public else {
            // A MAC key without a signer: the MAC authenticated the record.
            return;
        };
        if signed.signing_key != public.fingerprint() {
            let expected = public.fingerprint();
            self.here(FindingKind::SigningKeyMismatch {
                expected,
                found: signed.signing_key,
            });
            return;
        }
        if !signed.verifies_with(public) {
            self.linked = false;
            self.here(FindingKind::BadSignature { seq });
            return;
        }
        self.signed_checkpoints = self.signed_checkpoints.saturating_add(1);
        if self.linked {
            self.proven_seq = Some(seq);
            self.unproven = 0;
            self.last_signed = Some(signed);
        }
    }

    /// Counts an authentic record (noting an event type this build does not
    /// know: not a finding).
    fn count_record(&mut self, event: &RecordedEvent) {
        self.records = self.records.saturating_add(1);
        if let RecordedEvent::Unknown(unknown) = event {
            self.unknown_event_types.note(unknown.kind());
        }
    }

    /// A gap whose every missing record turns up later was a reordering.
    fn fill_gap(&mut self, seq: u64) {
        let Some(gap) = self.gaps.iter_mut().find(|g| g.start <= seq && seq < g.end) else {
            return;
        };
        gap.filled = gap.filled.saturating_add(1);
        if gap.filled == gap.end.saturating_sub(gap.start) {
            let found = gap.found;
            if let Some(f) = gap.finding.and_then(|i| self.findings.get_mut(i)) {
                f.kind = FindingKind::Reordered { seq: found };
            }
        }
    }

    pub(crate) fn finish(mut self) -> VerifyReport {
        let last_file = Arc::clone(&self.file);
        let last_line = self.line_no;
        if let Some((expected, at, line)) = self.pending_rotation.take() {
            self.push(at, line, FindingKind::MissingFile { expected });
        }
        if let Some((expected, _, at, line)) = self.misnamed.take() {
            self.push(at, line, FindingKind::MissingFile { expected });
        }
        let (format, log_id) = match self.first_format.take() {
            Some((format, id)) => (Some(format), id),
            None => (None, None),
        };
        if let Some(cp) = self.checkpoint.take() {
            let last_seq = self.last.as_ref().map_or(0, |l| l.seq);
            let (cp_file, cp_line) = self
                .checkpoint_found
                .as_ref()
                .map_or((Arc::clone(&last_file), last_line), |(_, f, l)| {
                    (Arc::clone(f), *l)
                });
            if let Some(expected) = &cp.log_id {
                if log_id.as_ref() != Some(expected) && self.records > 0 {
                    self.push(
                        Arc::clone(&cp_file),
                        cp_line,
                        FindingKind::CheckpointLogMismatch {
                            expected: expected.clone(),
                            found: log_id.clone(),
                        },
                    );
                }
            }
            match self.checkpoint_found.take() {
                Some((hash, file, line)) => {
                    if hash != cp.hash {
                        self.push(
                            file,
                            line,
                            FindingKind::CheckpointMismatch {
                                seq: cp.seq,
                                expected_hash: cp.hash,
                                found_hash: Some(hash),
                            },
                        );
                    }
                }
                None if last_seq < cp.seq => {
                    self.push(
                        Arc::clone(&last_file),
                        last_line,
                        FindingKind::Truncated {
                            checkpoint_seq: cp.seq,
                            last_seq,
                        },
                    );
                }
                None => {
                    self.push(
                        Arc::clone(&last_file),
                        last_line,
                        FindingKind::CheckpointMismatch {
                            seq: cp.seq,
                            expected_hash: cp.hash,
                            found_hash: None,
                        },
                    );
                }
            }
        }
        if let Some(wanted) = self.wanted_signed.take() {
            if !self.wanted_found {
                self.push(
                    Arc::clone(&last_file),
                    last_line,
                    FindingKind::SignedCheckpointMissing {
                        seq: wanted.checkpoint.seq,
                    },
                );
            }
        }
        if self.key.is_none() && self.records > 0 && self.proven_seq.is_none() {
            self.push(Arc::clone(&last_file), last_line, FindingKind::Unsigned);
        }
        if self.records == 0 && self.findings_total == 0 && !self.allow_empty {
            self.push(last_file, 0, FindingKind::Empty);
        }
        let kept = u64::try_from(self.findings.len()).unwrap_or(u64::MAX);
        VerifyReport {
            genesis: self.genesis,
            format,
            log_id,
            records: self.records,
            bad_lines: self.bad_lines,
            files: self.files,
            head: self.head,
            findings: self.findings,
            findings_total: self.findings_total,
            findings_omitted: self.findings_total.saturating_sub(kept),
            unknown_event_types: self.unknown_event_types,
            signed_checkpoints: self.signed_checkpoints,
            last_signed: self.last_signed,
            proven_seq: self.proven_seq,
            unproven_records: if self.proven_seq.is_some() || self.public.is_some() {
                self.unproven
            } else {
                0
            },
            macs_checked: self.key.is_some(),
        }
    }
}

/// One item read by [`read_lines`].
pub(crate) enum Line<'a> {
    /// A line ending in `\n` (given without it).
    Complete(&'a [u8]),
    /// A line over the length limit, skipped; its length.
    TooLong(u64),
    /// Bytes after the last `\n`.
    Torn(u64),
}

/// Reads a file line by line with bounded memory. Calls `f(line_number, item,
/// offset_of_line_start)`. Returns the offset just past the last complete line.
pub(crate) fn read_lines<R: BufRead>(
    mut reader: R,
    mut f: impl FnMut(u64, Line<'_>, u64),
) -> io::Result<u64> {
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut offset = 0u64;
    let limit = u64::try_from(MAX_LINE_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    loop {
        buf.clear();
        let n = (&mut reader).take(limit).read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(offset);
        }
        line_no = line_no.saturating_add(1);
        let len = u64::try_from(n).unwrap_or(u64::MAX);
        if let Some(content) = buf.strip_suffix(b"\n") {
            f(line_no, Line::Complete(content), offset);
            offset = offset.saturating_add(len);
        } else if buf.len() > MAX_LINE_BYTES {
            let mut total = len;
            let mut newline = false;
            loop {
                let chunk = reader.fill_buf()?;
                if chunk.is_empty() {
                    break;
                }
                let (used, found) = match chunk.iter().position(|b| *b == b'\n') {
                    Some(i) => (i.saturating_add(1), true),
                    None => (chunk.len(), false),
                };
                reader.consume(used);
                total = total.saturating_add(u64::try_from(used).unwrap_or(u64::MAX));
                if found {
                    newline = true;
                    break;
                }
            }
            if newline {
                f(line_no, Line::TooLong(total.saturating_sub(1)), offset);
                offset = offset.saturating_add(total);
            } else {
                f(line_no, Line::Torn(total), offset);
                return Ok(offset);
            }
        } else {
            f(line_no, Line::Torn(len), offset);
            return Ok(offset);
        }
    }
}

/// Feeds one file to a verifier; returns (offset past the last complete line,
/// complete line count, torn bytes).
pub(crate) fn feed_file(
    verifier: &mut ChainVerifier<'_>,
    path: &Path,
) -> Result<(u64, u64, u64), AuditError> {
    // A log named by the operator: no symbolic link, a regular file checked
    // on the descriptor, a FIFO refused rather than waited on.
    let file = crate::open::open_log_file(path, crate::open::Access::Read)?;
    feed_open_file(verifier, path, &file)
}

/// [`feed_file`] on a file already open (read from its current offset).
pub(crate) fn feed_open_file(
    verifier: &mut ChainVerifier<'_>,
    path: &Path,
    file: &File,
) -> Result<(u64, u64, u64), AuditError> {
    verifier.begin_file(path);
    let mut complete = 0u64;
    let mut torn = 0u64;
    let end = read_lines(
        BufReader::with_capacity(1 << 16, file),
        |n, item, _| match item {
            Line::Complete(bytes) => {
                complete = n;
                verifier.line(n, bytes);
            }
            Line::TooLong(len) => {
                complete = n;
                verifier.too_long(n, len);
            }
            Line::Torn(len) => {
                torn = len;
                verifier.torn(n, len);
            }
        },
    )
    .map_err(|e| AuditError::io("read", path, e))?;
    Ok((end, complete, torn))
}

/// Verifies a chain stored in `files`, oldest first (see [`segment_files`]),
/// with the default options ([`VerifyOptions::DEFAULT_MAX_FINDINGS`] findings
/// kept) and an optional checkpoint.
///
/// Every line's MAC is checked with `key`, and every record's `seq` and `prev`
/// against the record before it; the first record must be seq 1 with the
/// all-zero `prev`. With a `checkpoint`, the record at its sequence number must
/// exist and have its hash: that is the only way to notice records cut off the
/// end, which a hash chain alone cannot reveal.
///
/// # Errors
/// Only when a file cannot be opened or read. Integrity problems are findings
/// in the report, never errors.
pub fn verify_chain(
    files: &[PathBuf],
    key: &AuditKey,
    checkpoint: Option<&Checkpoint>,
) -> Result<VerifyReport, AuditError> {
    let options = VerifyOptions {
        checkpoint: checkpoint.cloned(),
        ..VerifyOptions::default()
    };
    verify_chain_with(files, key, &options)
}

/// [`verify_chain`] with options. Memory stays bounded whatever the files
/// hold: lines are streamed, and at most `options.max_findings` findings are
/// kept (the rest counted).
///
/// # Errors
/// As [`verify_chain`].
pub fn verify_chain_with(
    files: &[PathBuf],
    key: &AuditKey,
    options: &VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    let mut verifier = ChainVerifier::new(key, Start::Genesis, options);
    for path in files {
        feed_file(&mut verifier, path)?;
    }
    Ok(verifier.finish())
}

/// Verifies a chain stored in `files` without the secret: with the public
/// key of the log's signing key. Every record's `seq` and `prev` are checked
/// (the SHA-256 chain needs no key), every signed checkpoint's signature and
/// position, and the log id. Records up to the last signed checkpoint
/// linked to the start are proven; those after it are counted in
/// [`VerifyReport::unproven_records`] (not findings). A log with no signed
/// checkpoint at all is [`FindingKind::Unsigned`]. With `key` too, every
/// MAC is checked as well.
///
/// # Errors
/// As [`verify_chain`].
pub fn verify_chain_public(
    files: &[PathBuf],
    public: &AuditPublicKey,
    key: Option<&AuditKey>,
    options: &VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    let mut verifier = ChainVerifier::with_keys(key, Some(public.clone()), Start::Genesis, options);
    for path in files {
        feed_file(&mut verifier, path)?;
    }
    Ok(verifier.finish())
}

/// [`verify_chain_public`] on lines held in memory (each without its `\n`),
/// reported as file `<memory>`.
pub fn verify_lines_public<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    public: &AuditPublicKey,
    options: &VerifyOptions,
) -> VerifyReport {
    let mut verifier =
        ChainVerifier::with_keys(None, Some(public.clone()), Start::Genesis, options);
    verifier.begin_file(Path::new("<memory>"));
    for (n, line) in (1u64..).zip(lines) {
        verifier.line(n, line);
    }
    verifier.finish()
}

/// Verifies record lines held in memory (as returned by
/// [`AuditLog::lines`](crate::AuditLog::lines)), reported as file `<memory>`.
#[must_use]
pub fn verify_lines(
    lines: &[String],
    key: &AuditKey,
    checkpoint: Option<&Checkpoint>,
) -> VerifyReport {
    let options = VerifyOptions {
        checkpoint: checkpoint.cloned(),
        ..VerifyOptions::default()
    };
    verify_lines_with(lines.iter().map(String::as_bytes), key, &options)
}

/// Verifies record lines (each without its `\n`) from any source, reported as
/// file `<memory>`: [`verify_lines`] with options, for lines generated on the
/// fly.
pub fn verify_lines_with<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    key: &AuditKey,
    options: &VerifyOptions,
) -> VerifyReport {
    let mut verifier = ChainVerifier::new(key, Start::Genesis, options);
    verifier.begin_file(Path::new("<memory>"));
    for (n, line) in (1u64..).zip(lines) {
        verifier.line(n, line);
    }
    verifier.finish()
}

/// The segment files of the log at `base` (`base`, `base.1`, `base.2`, ...),
/// oldest first: what [`verify_chain`] expects.
///
/// # Errors
/// When the directory cannot be read or `base` has no UTF-8 file name.
pub fn segment_files(base: &Path) -> Result<Vec<PathBuf>, AuditError> {
    Ok(crate::backend::list_segments(base)?
        .into_iter()
        .map(|(_, p)| p)
        .collect())
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    use crate::record::encode_line;

    /// A chain of `n` records in format 1 (`log_id` `None`) or 2, beginning
    /// with `log_opened` (as before genesis records) or with the genesis record.
    fn chain(key: &AuditKey, log_id: Option<&str>, n: u64, worker: &str) -> Vec<String> {
        let mut prev = GENESIS_PREV.to_owned();
        (1..=n)
            .map(|seq| {
                let event = match (seq, log_id) {
                    (1, Some(id)) => AuditEvent::LogCreated {
                        format: 2,
                        key_id: key.key_id(),
                        log_id: id.into(),
                        signing_key: None,
                    },
                    (1, None) => AuditEvent::LogOpened {
                        reason: "new".into(),
                    },
                    _ => AuditEvent::VramAllocated {
                        shard_id: format!("{worker}-{seq}"),
                        gpu_device: 0,
                        bytes: seq,
                    },
                };
                let line = encode_line(key, log_id, seq, "t", worker, &event, &prev).unwrap();
                let line = String::from_utf8(line).unwrap().trim_end().to_owned();
                prev = record::line_hash(line.as_bytes());
                line
            })
            .collect()
    }

    fn kinds(r: &VerifyReport) -> Vec<(u64, FindingKind)> {
        r.findings
            .iter()
            .map(|f| (f.line, f.kind.clone()))
            .collect()
    }

    /// Issue 20, in format 1 (no log ids to tell the logs apart): the record
    /// after the bad line is unlinked, and the head stays at A's record 4.
    #[test]
    fn a_foreign_tail_in_format_1_is_unlinked() {
        let key = AuditKey::from_bytes([9; 32]);
        let a = chain(&key, None, 14, "a");
        let b = chain(&key, None, 14, "b");
        let mut spliced = a[..4].to_vec();
        spliced.push("garbage".into());
        spliced.extend_from_slice(&b[5..]);
        let r = verify_lines(&spliced, &key, None);
        let k = kinds(&r);
        assert_eq!(k.len(), 2, "{k:?}");
        assert!(matches!(k[0], (5, FindingKind::Malformed { .. })), "{k:?}");
        assert_eq!(
            k[1],
            (
                6,
                FindingKind::Unlinked {
                    seq: 6,
                    after_bad_lines: 1
                }
            )
        );
        assert_eq!(r.head.unwrap().seq, 4);
        assert_eq!(
            (r.format, r.log_id.as_deref(), r.records),
            (Some(1), None, 13)
        );
    }

    #[test]
    fn format_1_logs_verify_and_say_they_have_no_identity() {
        let key = AuditKey::from_bytes([9; 32]);
        let r = verify_lines(&chain(&key, None, 5, "a"), &key, None);
        assert!(r.is_intact(), "{:?}", r.findings);
        assert_eq!((r.format, r.log_id, r.genesis), (Some(1), None, None));
        assert_eq!(r.head.unwrap().log_id, None);
    }

    #[test]
    fn a_format_1_tail_after_format_2_records_is_a_log_id_change() {
        let key = AuditKey::from_bytes([9; 32]);
        let id = "0123456789abcdef0123456789abcdef";
        let v2 = chain(&key, Some(id), 6, "a");
        let v1 = chain(&key, None, 6, "a");
        let r = verify_lines(&v2, &key, None);
        assert!(r.is_intact(), "{:?}", r.findings);
        assert_eq!((r.format, r.log_id.as_deref()), (Some(2), Some(id)));
        assert_eq!(r.genesis.unwrap().log_id, id);
        let mut spliced = v2[..3].to_vec();
        spliced.extend_from_slice(&v1[3..]);
        let k = kinds(&verify_lines(&spliced, &key, None));
        assert!(
            k.contains(&(
                4,
                FindingKind::LogIdChanged {
                    expected: Some(id.into()),
                    found: None
                }
            )),
            "{k:?}"
        );
        // A genesis record whose own line is bound to another id.
        let other = "ffffffffffffffffffffffffffffffff";
        let mut lying = chain(&key, Some(id), 1, "a");
        let ev = AuditEvent::LogCreated {
            format: 2,
            key_id: key.key_id(),
            log_id: other.into(),
            signing_key: None,
        };
        let line = encode_line(&key, Some(id), 1, "t", "a", &ev, GENESIS_PREV).unwrap();
        lying[0] = String::from_utf8(line).unwrap().trim_end().to_owned();
        let k = kinds(&verify_lines(&lying, &key, None));
        assert!(
            matches!(&k[..], [(1, FindingKind::LogIdChanged { .. })]),
            "{k:?}"
        );
    }

    /// Issue 24: a million bad lines cost a bounded number of findings, and
    /// the counts stay exact.
    #[test]
    fn a_million_bad_lines_are_aggregated_and_counted() {
        const SAME: u64 = 400_000;
        const ALTERNATING: u64 = 600_000;
        let key = AuditKey::from_bytes([9; 32]);
        let good = chain(&key, Some("0123456789abcdef0123456789abcdef"), 6, "a");
        // A well-formed record under another key: a bad MAC.
        let forged = chain(&AuditKey::from_bytes([1; 32]), None, 2, "x")
            .pop()
            .unwrap();
        let garbage = "garbage";
        let lines = good[..3]
            .iter()
            .map(String::as_str)
            .chain((0..SAME).map(|_| garbage))
            .chain((0..ALTERNATING).map(|i| if i % 2 == 0 { forged.as_str() } else { garbage }))
            .chain(good[3..].iter().map(String::as_str))
            .map(str::as_bytes);
        let options = VerifyOptions {
            max_findings: 50,
            ..VerifyOptions::default()
        };
        let r = verify_lines_with(lines, &key, &options);
        assert!(!r.is_intact());
        assert_eq!(r.records, 6);
        assert_eq!(r.bad_lines, SAME + ALTERNATING);
        // One finding for the run of identical lines, one per line where the
        // kind alternates; the record after them still links (seq 4 == next).
        assert_eq!(r.findings_total, 1 + ALTERNATING);
        assert_eq!(r.findings.len(), 50);
        assert_eq!(r.findings_omitted, 1 + ALTERNATING - 50);
        let first = &r.findings[0];
        assert!(matches!(first.kind, FindingKind::Malformed { .. }));
        assert_eq!(
            (first.line, first.last_line, first.count),
            (4, 3 + SAME, SAME)
        );
        assert_eq!(r.findings[1].kind, FindingKind::BadMac);
        assert_eq!(r.findings[1].line, 4 + SAME);
        assert_eq!(r.head.unwrap().seq, 6);
        // Every finding shares the one path.
        assert!(r
            .findings
            .windows(2)
            .all(|w| Arc::ptr_eq(&w[0].file, &w[1].file)));
    }

    #[test]
    fn the_limit_keeps_the_verdict() {
        let key = AuditKey::from_bytes([9; 32]);
        let mut lines = chain(&key, None, 3, "a");
        lines.push("garbage".into());
        let options = VerifyOptions {
            max_findings: 0,
            ..VerifyOptions::default()
        };
        let r = verify_lines_with(lines.iter().map(String::as_bytes), &key, &options);
        assert!(!r.is_intact());
        assert_eq!(
            (r.findings.len(), r.findings_total, r.findings_omitted),
            (0, 1, 1)
        );
        let empty = verify_lines_with(std::iter::empty(), &key, &options);
        assert!(!empty.is_intact());
        let allowed = VerifyOptions {
            allow_empty: true,
            ..VerifyOptions::default()
        };
        assert!(verify_lines_with(std::iter::empty(), &key, &allowed).is_intact());
    }

    #[test]
    fn seq_set_merges() {
        let mut s = SeqSet::default();
        for x in [1, 3, 2, 5, 4, 10] {
            s.insert(x);
        }
        assert_eq!(s.0.len(), 2);
        assert!(s.contains(1) && s.contains(5) && s.contains(10));
        assert!(!s.contains(0) && !s.contains(6) && !s.contains(11));
    }

    #[test]
    fn checkpoint_parses_and_prints() {
        let h = "ab".repeat(32);
        let cp: Checkpoint = format!("17:{h}").parse().unwrap();
        assert_eq!(
            cp,
            Checkpoint {
                seq: 17,
                hash: h.clone(),
                log_id: None,
            }
        );
        assert_eq!(cp.to_string(), format!("17:{h}"));
        let id = "0123456789abcdef0123456789abcdef";
        let long: Checkpoint = format!("17:{h}:{id}").parse().unwrap();
        assert_eq!(long.log_id.as_deref(), Some(id));
        assert_eq!(long.to_string(), format!("17:{h}:{id}"));
        for bad in [
            "",
            "17",
            "x:y",
            &format!("0:{h}"),
            &format!("17:{}", h.to_uppercase()),
            "17:abc",
            &format!("17:{h}:xyz"),
            &format!("17:{h}:{}:", "0".repeat(32)),
        ] {
            assert!(bad.parse::<Checkpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn reader_reports_torn_and_overlong_lines() {
        let mut data = b"a\nbb\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 5));
        data.extend(b"\nccc");
        let mut got = Vec::new();
        let end = read_lines(&data[..], |n, item, off| {
            got.push(match item {
                Line::Complete(b) => format!("{n}@{off}:c{}", b.len()),
                Line::TooLong(l) => format!("{n}@{off}:l{l}"),
                Line::Torn(l) => format!("{n}@{off}:t{l}"),
            })
        })
        .unwrap();
        let long = MAX_LINE_BYTES + 5;
        assert_eq!(
            got,
            [
                "1@0:c1".to_string(),
                "2@2:c2".into(),
                format!("3@5:l{long}"),
                format!("4@{}:t3", 5 + long + 1),
            ]
        );
        assert_eq!(end as usize, 5 + long + 1);
    }

    /// A segment checked on its own (reopening) is linked from its first
    /// record unless bad lines come before that record.
    #[test]
    fn a_segment_checked_on_its_own_is_linked_unless_it_begins_with_bad_lines() {
        let key = AuditKey::from_bytes([9; 32]);
        let lines = chain(&key, None, 8, "a");
        let head_of = |bad_first: bool| {
            let mut v = ChainVerifier::new(&key, Start::Anywhere, &VerifyOptions::default());
            v.begin_file(Path::new("<memory>"));
            let mut n = 0;
            if bad_first {
                n += 1;
                v.line(n, b"garbage");
            }
            for l in &lines[3..] {
                n += 1;
                v.line(n, l.as_bytes());
            }
            v.finish().head.map(|h| h.seq)
        };
        assert_eq!(head_of(false), Some(8));
        assert_eq!(head_of(true), None);
    }

    /// Only the first record of a chain, with seq 1, is its genesis: a
    /// `log_created` record elsewhere (which only a key holder could write)
    /// does not set the report's genesis.
    #[test]
    fn a_log_created_record_that_is_not_first_is_not_the_genesis() {
        let key = AuditKey::from_bytes([9; 32]);
        let id = "0123456789abcdef0123456789abcdef";
        let genesis = AuditEvent::LogCreated {
            format: 2,
            key_id: key.key_id(),
            log_id: id.into(),
            signing_key: None,
        };
        let line = encode_line(&key, Some(id), 2, "t", "w", &genesis, GENESIS_PREV).unwrap();
        let line = String::from_utf8(line).unwrap().trim_end().to_owned();
        let r = verify_lines(&[line], &key, None);
        assert!(r.genesis.is_none(), "{:?}", r.genesis);
        assert_eq!(
            kinds(&r),
            vec![(
                1,
                FindingKind::SequenceGap {
                    expected: 1,
                    found: 2
                }
            )]
        );
        let clean = chain(&key, Some(id), 3, "w");
        assert_eq!(verify_lines(&clean, &key, None).genesis.unwrap().log_id, id);
    }

    /// Gaps past the tracked limit stay `sequence_gap` even when their record
    /// turns up later; gaps within it become reorderings.
    #[test]
    fn gaps_past_the_tracked_limit_stay_gaps() {
        let key = AuditKey::from_bytes([9; 32]);
        let gaps = MAX_TRACKED_GAPS as u64 + 1;
        let all = chain(&key, None, 2 * gaps + 1, "a");
        // Keep the odd records: record 2k is missing, a gap [2k, 2k+1).
        let mut lines: Vec<String> = all.iter().step_by(2).cloned().collect();
        lines.push(all[(2 * gaps - 1) as usize].clone()); // record 2*gaps, the last gap's
        lines.push(all[1].clone()); // record 2, the first gap's
        let options = VerifyOptions {
            max_findings: 2 * MAX_TRACKED_GAPS,
            ..VerifyOptions::default()
        };
        let r = verify_lines_with(lines.iter().map(String::as_bytes), &key, &options);
        let k: Vec<FindingKind> = r.findings.iter().map(|f| f.kind.clone()).collect();
        assert_eq!(k.len() as u64, gaps + 2);
        assert_eq!(k[0], FindingKind::Reordered { seq: 3 });
        assert_eq!(
            k[gaps as usize - 1],
            FindingKind::SequenceGap {
                expected: 2 * gaps,
                found: 2 * gaps + 1
            }
        );
        assert_eq!(
            k[gaps as usize..],
            [
                FindingKind::Reordered { seq: 2 * gaps },
                FindingKind::Reordered { seq: 2 }
            ]
        );
    }

    /// A checkpoint's log id is compared only with a log that has records:
    /// a log of bad lines is reported as truncated, not as another log.
    #[test]
    fn a_checkpoint_log_id_is_not_compared_without_records() {
        let key = AuditKey::from_bytes([9; 32]);
        let cp = Checkpoint {
            seq: 3,
            hash: "ab".repeat(32),
            log_id: Some("0123456789abcdef0123456789abcdef".into()),
        };
        let r = verify_lines(&["garbage".to_owned()], &key, Some(&cp));
        let k: Vec<FindingKind> = r.findings.iter().map(|f| f.kind.clone()).collect();
        assert!(matches!(k[0], FindingKind::Malformed { .. }), "{k:?}");
        assert_eq!(
            k[1..],
            [FindingKind::Truncated {
                checkpoint_seq: 3,
                last_seq: 0
            }]
        );
    }

    /// Bytes after the last newline are a torn tail, also when there are
    /// exactly as many as the line limit allows.
    #[test]
    fn a_torn_tail_of_exactly_the_line_limit_is_torn() {
        for len in [MAX_LINE_BYTES - 1, MAX_LINE_BYTES, MAX_LINE_BYTES + 1] {
            let bytes = vec![b'a'; len];
            let mut items = Vec::new();
            let end = read_lines(io::Cursor::new(&bytes), |n, item, at| {
                items.push(match item {
                    Line::Complete(l) => format!("{n} complete {} at {at}", l.len()),
                    Line::TooLong(l) => format!("{n} too long {l} at {at}"),
                    Line::Torn(l) => format!("{n} torn {l} at {at}"),
                });
            })
            .unwrap();
            assert_eq!((end, items), (0, vec![format!("1 torn {len} at 0")]));
        }
    }

    /// An authentic record whose event is `event_json` (a type this build
    /// need not know), signed as `encode_line` signs.
    fn signed_record(
        key: &AuditKey,
        log_id: &str,
        seq: u64,
        prev: &str,
        event_json: &str,
    ) -> String {
        let body = format!(
            r#"{{"v":2,"log":"{log_id}","seq":{seq},"ts":"t","worker":"a","event":{event_json},"prev":"{prev}""#
        );
        let mac = ring::hmac::sign(key.hmac_key(), body.as_bytes());
        format!(r#"{body},"mac":"{}"}}"#, record::hex(mac.as_ref()))
    }

    /// A format 2 chain of 7 records whose 6th is of the event type
    /// `from_the_future`; the 7th links to it.
    fn chain_with_a_future_record(key: &AuditKey) -> Vec<String> {
        let id = "0123456789abcdef0123456789abcdef";
        let mut lines = chain(key, Some(id), 5, "a");
        let prev = record::line_hash(lines[4].as_bytes());
        lines.push(signed_record(
            key,
            id,
            6,
            &prev,
            r#"{"type":"from_the_future","x":1}"#,
        ));
        let prev = record::line_hash(lines[5].as_bytes());
        let event = AuditEvent::VramDeallocated {
            shard_id: "s".into(),
            gpu_device: 0,
            bytes: 1,
        };
        let seventh = encode_line(key, Some(id), 7, "t", "a", &event, &prev).unwrap();
        lines.push(String::from_utf8(seventh).unwrap().trim_end().to_owned());
        lines
    }

    /// Forward compatibility: a record of an event type this build does not
    /// know is not a finding; it counts, links, moves the head and can be a
    /// checkpoint like any other, and the report names its type.
    #[test]
    fn a_record_of_an_unknown_event_type_is_counted_and_linked_not_found() {
        let key = AuditKey::from_bytes([9; 32]);
        let lines = chain_with_a_future_record(&key);
        let r = verify_lines(&lines, &key, None);
        assert!(r.is_intact(), "{:?}", r.findings);
        assert_eq!((r.records, r.bad_lines), (7, 0));
        assert_eq!(r.head.as_ref().unwrap().seq, 7);
        assert_eq!(
            r.unknown_event_types,
            UnknownEventTypes {
                records: 1,
                types: vec!["from_the_future".into()],
                more_types: false,
            }
        );
        assert_eq!(
            r.genesis.unwrap().log_id,
            "0123456789abcdef0123456789abcdef"
        );

        // As a checkpoint: its hash pins it.
        let at_6 = Checkpoint {
            seq: 6,
            hash: record::line_hash(lines[5].as_bytes()),
            log_id: r.log_id.clone(),
        };
        assert!(verify_lines(&lines, &key, Some(&at_6)).is_intact());
        let r = verify_lines(&lines[..6], &key, Some(&at_6));
        assert!(r.is_intact(), "{:?}", r.findings);
        assert_eq!(r.head, Some(at_6.clone()));
        let wrong = Checkpoint {
            hash: "ab".repeat(32),
            ..at_6
        };
        assert!(matches!(
            kinds(&verify_lines(&lines, &key, Some(&wrong)))[..],
            [(6, FindingKind::CheckpointMismatch { seq: 6, .. })]
        ));

        // A log without one has nothing to note.
        let plain = verify_lines(&lines[..5], &key, None);
        assert_eq!(plain.unknown_event_types, UnknownEventTypes::default());
    }

    /// Moved or replayed, such a record is classified like any other; a
    /// moved one is still counted, a replayed copy is not counted twice.
    #[test]
    fn a_moved_or_replayed_unknown_record_is_classified_like_any_other() {
        let key = AuditKey::from_bytes([9; 32]);
        let lines = chain_with_a_future_record(&key);
        let mut swapped = lines.clone();
        swapped.swap(5, 6);
        let r = verify_lines(&swapped, &key, None);
        assert_eq!(
            kinds(&r),
            [
                (6, FindingKind::Reordered { seq: 7 }),
                (7, FindingKind::Reordered { seq: 6 })
            ]
        );
        assert_eq!((r.records, r.unknown_event_types.records), (7, 1));

        let mut replayed = lines.clone();
        replayed.push(lines[5].clone());
        let r = verify_lines(&replayed, &key, None);
        assert_eq!(kinds(&r), [(8, FindingKind::Replayed { seq: 6 })]);
        assert_eq!((r.records, r.unknown_event_types.records), (7, 1));
    }

    /// The note is bounded: exact count, at most `MAX_NAMED` names, each
    /// escaped and cut, then "and other types".
    #[test]
    fn the_unknown_types_note_is_bounded_and_escaped() {
        let mut t = UnknownEventTypes::default();
        t.note("leases_granted");
        t.note("leases_granted");
        assert_eq!(
            t.to_string(),
            "2 record(s) of event types this build does not know: leases_granted (written by a newer version? They authenticate and link like any other record; a current verifier can read them)"
        );
        t.note("red\u{1b}[31m\n\"\\");
        let long = "y".repeat(100);
        t.note(&long);
        assert_eq!(
            t.types[1..],
            [
                r#"red\u{1b}[31m\u{a}\"\\"#.to_owned(),
                format!("{}…(36 more bytes)", "y".repeat(64)),
            ]
        );
        assert!(
            t.to_string().contains(&format!(
                ": leases_granted, {}, {} (written",
                t.types[1], t.types[2]
            )),
            "{t}"
        );
        for i in 3..UnknownEventTypes::MAX_NAMED {
            t.note(&format!("type_{i}"));
        }
        assert_eq!(t.types.len(), UnknownEventTypes::MAX_NAMED);
        assert!(!t.more_types);
        assert!(!t.to_string().contains("other types"), "{t}");
        t.note("type_0");
        t.note("type_3");
        assert_eq!(t.types.len(), UnknownEventTypes::MAX_NAMED);
        assert!(t.more_types);
        assert_eq!(t.records, 3 + UnknownEventTypes::MAX_NAMED as u64);
        assert!(
            t.to_string()
                .contains(", type_15, and other types (written"),
            "{t}"
        );
    }

    /// A log id change names a format 1 record's missing id in words.
    #[test]
    fn a_log_id_change_names_format_1_as_such() {
        let id = "0123456789abcdef0123456789abcdef".to_owned();
        let to_v1 = FindingKind::LogIdChanged {
            expected: Some(id.clone()),
            found: None,
        };
        assert!(
            to_v1.to_string().contains(&format!(
                "record bound to log none (format 1), the chain before to {id}"
            )),
            "{to_v1}"
        );
        let cp = FindingKind::CheckpointLogMismatch {
            expected: id.clone(),
            found: None,
        };
        assert!(
            cp.to_string().ends_with("this log's id is none (format 1)"),
            "{cp}"
        );
    }
}
