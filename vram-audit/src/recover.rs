//! Reopening a file log: refuse what is not ours, take the lock, find the
//! newest segment, verify it, cut off a torn tail, and say where the chain
//! continues.
//!
//! The order matters. Nothing is created or changed before the path is known
//! to be a regular file (or absent) and not a protected file; nothing is read
//! before the lock is held; nothing is truncated before the file's first line
//! has authenticated under our key.

use std::fs::{self, File};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::time::Duration;

use crate::backend::{
    base_name, check_not_protected, list_segments, parent_dir, segment_name, sync_dir,
    Backend as _, FileBackend,
};
use crate::open::{open_log_file, regular_or_absent, Access};
use crate::record::{begins_like_record, GENESIS_PREV, RECORD_START_MAX};
use crate::verify::{feed_open_file, ChainVerifier, FindingKind, LastRecord, Start, VerifyOptions};
use crate::{lock, AuditError, AuditEvent, AuditKey, RecordedEvent};

/// Where a reopened chain continues.
pub(crate) struct Resume {
    pub(crate) seq: u64,
    pub(crate) prev: String,
    /// The continued chain's log id (`None`: format 1, or a new log whose
    /// genesis record sets it).
    pub(crate) log_id: Option<String>,
    pub(crate) committed_len: u64,
    /// (bytes cut off, line where they began)
    pub(crate) torn: Option<(u64, u64)>,
    pub(crate) continued: bool,
}

impl Resume {
    pub(crate) fn fresh() -> Self {
        Self {
            seq: 0,
            prev: GENESIS_PREV.to_owned(),
            log_id: None,
            committed_len: 0,
            torn: None,
            continued: false,
        }
    }
}

/// How a file log is to be opened.
pub(crate) struct OpenSpec<'a> {
    /// Whether segments rotate.
    pub(crate) rotate: bool,
    /// How long to wait for the lock.
    pub(crate) lock_wait: Duration,
    /// Files the log must never be.
    pub(crate) protected: &'a [&'a Path],
}

/// What a scan of one segment found.
struct Scan {
    /// Offset just past the last complete line.
    end: u64,
    /// Complete lines.
    lines: u64,
    /// Bytes after the last `\n`.
    torn: u64,
    last: Option<LastRecord>,
}

/// Verifies one open segment on its own; any finding but a torn tail is
/// damage, and a first line that is not an authentic record means the file is
/// not a log of this key at all.
fn scan(
    path: &Path,
    file: &File,
    key: &AuditKey,
    start: Start,
    allow_torn: bool,
) -> Result<Scan, AuditError> {
    let mut verifier = ChainVerifier::new(key, start, &VerifyOptions::default());
    let (end, lines, torn) = feed_open_file(&mut verifier, path, file)?;
    if let Some(first) = verifier.findings().first() {
        let reason = match first.kind {
            _ if first.line != 1 => None,
            FindingKind::BadMac => Some(
                "its first line is a record that does not authenticate under this key: written under another key, or altered",
            ),
            FindingKind::Malformed { .. } | FindingKind::UnknownVersion => {
                Some("its first line is not an audit record")
            }
            _ => None,
        };
        if let Some(reason) = reason {
            return Err(AuditError::NotALog {
                path: path.to_path_buf(),
                reason: reason.into(),
            });
        }
    }
    let damage = verifier
        .findings()
        .iter()
        .find(|f| !(allow_torn && matches!(f.kind, FindingKind::TornTail { .. })));
    if let Some(f) = damage {
        return Err(AuditError::Damaged {
            path: path.to_path_buf(),
            finding: f.to_string(),
        });
    }
    if lines == 0 && torn > 0 {
        // Only an incomplete line: an interrupted first write of ours begins
        // like a record; anything else (a key, a text file) is not ours.
        let mut head = Vec::new();
        let mut reader = file;
        let read = reader
            .seek(SeekFrom::Start(0))
            .and_then(|_| (&mut reader).take(RECORD_START_MAX).read_to_end(&mut head));
        if read.is_err() || !begins_like_record(&head, start == Start::Genesis) {
            return Err(AuditError::NotALog {
                path: path.to_path_buf(),
                reason: "it holds no complete line and does not begin like an audit record".into(),
            });
        }
    }
    Ok(Scan {
        end,
        lines,
        torn,
        last: verifier.last().cloned(),
    })
}

/// The newest segment, `PATH.N` (N > 0, not empty), must be where the log's
/// own rotation left it: not the beginning of the log (a first record of
/// seq 1 belongs in `PATH`), and, when `PATH.(N-1)` is still there (older
/// segments may have been archived), following a `rotated` record that names
/// it. Otherwise another program renamed, copied or truncated the segments
/// (logrotate's rename or `copytruncate`), and continuing would put records
/// where no verifier finds them in order.
fn check_own_rotation(
    segments: &[(u32, std::path::PathBuf)],
    name: &str,
    index: u32,
    path: &Path,
    key: &AuditKey,
) -> Result<(), AuditError> {
    let rotated = |reason: String| AuditError::ExternallyRotated {
        path: path.with_file_name(name),
        reason,
    };
    let mut head = Vec::new();
    let first = open_log_file(path, Access::Read)?;
    (&first)
        .take(RECORD_START_MAX)
        .read_to_end(&mut head)
        .map_err(|e| AuditError::io("read", path, e))?;
    if begins_like_record(&head, true) {
        return Err(rotated(format!(
            "{} begins the log (its first record, seq 1) but is not its first file, {name}",
            segment_name(name, index)
        )));
    }
    let prev_index = index.saturating_sub(1);
    let Some((_, prev_path)) = segments.iter().find(|(i, _)| *i == prev_index) else {
        // Older segments archived: nothing to compare with.
        return Ok(());
    };
    let prev_file = open_log_file(prev_path, Access::Read)?;
    let prev_start = if prev_index == 0 {
        Start::Genesis
    } else {
        Start::Anywhere
    };
    let prev = scan(prev_path, &prev_file, key, prev_start, false)?;
    match prev.last {
        Some(LastRecord {
            event: RecordedEvent::Known(AuditEvent::Rotated { next_file }),
            ..
        }) if next_file == segment_name(name, index) => Ok(()),
        Some(LastRecord {
            event: RecordedEvent::Known(AuditEvent::Rotated { next_file }),
            ..
        }) => Err(rotated(format!(
            "{} ends in a rotated record naming {next_file:?}, but the newest segment is {}",
            segment_name(name, prev_index),
            segment_name(name, index)
        ))),
        _ => Err(rotated(format!(
            "{} does not end in a rotated record, yet {} follows it",
            segment_name(name, prev_index),
            segment_name(name, index)
        ))),
    }
}

fn damaged(path: &Path, finding: impl Into<String>) -> AuditError {
    AuditError::Damaged {
        path: path.to_path_buf(),
        finding: finding.into(),
    }
}

/// Opens (or creates) the log at `base` and returns its backend, holding the
/// log's lock and positioned at the end of the newest segment, and where the
/// chain continues.
pub(crate) fn open(
    base: &Path,
    key: &AuditKey,
    spec: &OpenSpec<'_>,
) -> Result<(FileBackend, Resume), AuditError> {
    let name = base_name(base)?.to_owned();
    // Before anything is created beside it (the lock file).
    if regular_or_absent(base)? {
        check_not_protected(base, spec.protected)?;
    }
    let lock = lock::acquire(base, spec.lock_wait)?;
    let (mut backend, resume) = open_locked(base, &name, key, spec)?;
    backend.hold(lock);
    Ok((backend, resume))
}

fn open_locked(
    base: &Path,
    name: &str,
    key: &AuditKey,
    spec: &OpenSpec<'_>,
) -> Result<(FileBackend, Resume), AuditError> {
    let segments = list_segments(base)?;
    for (_, path) in &segments {
        check_not_protected(path, spec.protected)?;
    }
    let Some((index, path)) = segments.last().cloned() else {
        let file = open_log_file(base, Access::CreateNew)?;
        let dir = parent_dir(base);
        sync_dir(&dir).map_err(|e| AuditError::io("fsync directory", dir, e))?;
        return Ok((
            FileBackend::new(base, 0, file, spec.rotate)?,
            Resume::fresh(),
        ));
    };
    let file = open_log_file(&path, Access::Append)?;

    let start = if index == 0 {
        Start::Genesis
    } else {
        Start::Anywhere
    };
    let active = scan(&path, &file, key, start, true)?;
    if index > 0 && active.last.is_some() {
        check_own_rotation(&segments, name, index, &path, key)?;
    }
    let mut resume = match &active.last {
        Some(last) => Resume {
            seq: last.seq,
            prev: last.hash.clone(),
            log_id: last.log_id.clone(),
            committed_len: 0,
            torn: None,
            continued: true,
        },
        None if index == 0 => Resume::fresh(),
        None => {
            // A segment created by a rotation, before its first record: the
            // chain continues from the previous segment's `rotated` record.
            let prev_index = index.saturating_sub(1);
            let Some((_, prev_path)) = segments.iter().find(|(i, _)| *i == prev_index) else {
                return Err(damaged(
                    &path,
                    format!("segment {index} is empty and segment {prev_index} is missing"),
                ));
            };
            let prev_start = if prev_index == 0 {
                Start::Genesis
            } else {
                Start::Anywhere
            };
            let prev_file = open_log_file(prev_path, Access::Read)?;
            let prev = scan(prev_path, &prev_file, key, prev_start, false)?;
            match prev.last {
                Some(LastRecord {
                    seq,
                    hash,
                    log_id,
                    event: RecordedEvent::Known(AuditEvent::Rotated { next_file }),
                }) if next_file == segment_name(name, index) => Resume {
                    seq,
                    prev: hash,
                    log_id,
                    committed_len: 0,
                    torn: None,
                    continued: true,
                },
                _ if active.end == 0 && active.torn == 0 => {
                    // An interrupted rotation: the segment was created but the
                    // `rotated` record never reached the previous one, so no
                    // record belongs here. Remove it and continue there.
                    tracing::warn!(path = %path.display(), "removing an empty audit segment left by an interrupted rotation");
                    drop(file);
                    fs::remove_file(&path).map_err(|e| AuditError::io("remove", &path, e))?;
                    let dir = parent_dir(&path);
                    sync_dir(&dir).map_err(|e| AuditError::io("fsync directory", dir, e))?;
                    return open_locked(base, name, key, spec);
                }
                _ => {
                    return Err(damaged(
                        prev_path,
                        format!(
                            "it does not end in a rotated record naming {}",
                            segment_name(name, index)
                        ),
                    ))
                }
            }
        }
    };

    if active.torn > 0 {
        // Only reached when the segment's first line authenticated under our
        // key, or when all it holds is the beginning of our first record.
        file.set_len(active.end)
            .map_err(|e| AuditError::io("truncate torn tail of", &path, e))?;
        file.sync_all()
            .map_err(|e| AuditError::io("fsync", &path, e))?;
        resume.torn = Some((active.torn, active.lines.saturating_add(1)));
    }
    resume.committed_len = active.end;

    let mut backend = FileBackend::new(base, index, file, spec.rotate)?;

    // A crash after the `rotated` record and before the next segment existed:
    // finish the rotation.
    if let Some(LastRecord {
        event: RecordedEvent::Known(AuditEvent::Rotated { next_file }),
        ..
    }) = &active.last
    {
        let expected = segment_name(name, index.saturating_add(1));
        if *next_file != expected {
            return Err(damaged(
                &path,
                format!("its rotated record names {next_file:?}, expected {expected:?}"),
            ));
        }
        backend
            .prepare_next()
            .map_err(|e| AuditError::io("create", base.with_file_name(&expected), e))?;
        backend.switch_to_next();
        resume.committed_len = 0;
    }
    Ok((backend, resume))
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use crate::record::{encode_line, line_hash, GENESIS_PREV};
    use crate::{verify_chain, AuditEvent, AuditKey, AuditLog, AuditSink, LogOptions};

    /// A log as written before genesis records existed: it began with
    /// `log_opened` (`new`).
    fn legacy_log(key: &AuditKey) -> Vec<u8> {
        legacy_log_of(
            key,
            &[
                AuditEvent::LogOpened {
                    reason: "new".into(),
                },
                AuditEvent::VramAllocated {
                    shard_id: "s".into(),
                    gpu_device: 0,
                    bytes: 1,
                },
            ],
        )
    }

    /// Authentic format 1 records of `events`, chained from the start.
    fn legacy_log_of(key: &AuditKey, events: &[AuditEvent]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = GENESIS_PREV.to_owned();
        for (seq, event) in (1u64..).zip(events) {
            let line = encode_line(
                key,
                None,
                seq,
                "2025-01-01T00:00:00.000000000Z",
                "w",
                event,
                &prev,
            )
            .unwrap();
            prev = line_hash(&line[..line.len() - 1]);
            out.extend_from_slice(&line);
        }
        out
    }

    /// An empty segment after a segment whose (authentic) `rotated` record
    /// names another file: the chain does not continue there, so the log is
    /// refused rather than continued from a rotation that pointed elsewhere.
    #[test]
    fn an_empty_segment_after_a_rotation_naming_another_file_is_refused() {
        let key = || AuditKey::from_bytes([4; 32]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.jsonl");
        let events = [
            AuditEvent::LogOpened {
                reason: "new".into(),
            },
            AuditEvent::Rotated {
                next_file: "old.jsonl.5".into(),
            },
        ];
        std::fs::write(&path, legacy_log_of(&key(), &events)).unwrap();
        let next = dir.path().join("old.jsonl.1");
        std::fs::write(&next, b"").unwrap();
        let e = AuditLog::open_file(&path, key(), "w", LogOptions::default()).unwrap_err();
        assert!(matches!(e, crate::AuditError::Damaged { .. }), "{e}");
        assert!(e.to_string().contains("old.jsonl.5"), "{e}");
        // The records are untouched.
        assert_eq!(
            std::fs::read(&path).unwrap(),
            legacy_log_of(&key(), &events)
        );
    }

    #[test]
    fn a_log_without_a_genesis_record_still_verifies_and_continues() {
        let key = || AuditKey::from_bytes([3; 32]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.jsonl");
        std::fs::write(&path, legacy_log(&key())).unwrap();
        let r = verify_chain(std::slice::from_ref(&path), &key(), None).unwrap();
        assert!(r.is_intact(), "{:?}", r.findings);
        assert_eq!((r.records, r.genesis), (2, None));

        let log = AuditLog::open_file(&path, key(), "w", LogOptions::default()).unwrap();
        log.record(AuditEvent::VramDeallocated {
            shard_id: "s".into(),
            gpu_device: 0,
            bytes: 1,
        })
        .unwrap();
        drop(log);
        let r = verify_chain(std::slice::from_ref(&path), &key(), None).unwrap();
        assert!(r.is_intact(), "{:?}", r.findings);
        assert_eq!((r.records, r.genesis), (4, None));
        // A format 1 log is continued in format 1: it has no id to bind to.
        assert_eq!((r.format, r.log_id), (Some(1), None));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines().all(|l| l.starts_with(r#"{"v":1,"seq":"#)),
            "{text}"
        );
    }
}
