//! Reopening a file log: find the newest segment, verify it, cut off a torn
//! tail, and say where the chain continues.

use std::fs::{self, OpenOptions};
use std::path::Path;

use crate::backend::{
    base_name, list_segments, open_append, parent_dir, segment_name, sync_dir, Backend as _,
    FileBackend,
};
use crate::log::Resume;
use crate::verify::{feed_file, ChainVerifier, FindingKind, LastRecord, Start};
use crate::{AuditError, AuditEvent, AuditKey};

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

/// Verifies one segment on its own; any finding but a torn tail is damage.
fn scan(path: &Path, key: &AuditKey, start: Start, allow_torn: bool) -> Result<Scan, AuditError> {
    let mut verifier = ChainVerifier::new(key, start, None);
    let (end, lines, torn) = feed_file(&mut verifier, path)?;
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
    Ok(Scan {
        end,
        lines,
        torn,
        last: verifier.last().cloned(),
    })
}

fn damaged(path: &Path, finding: impl Into<String>) -> AuditError {
    AuditError::Damaged {
        path: path.to_path_buf(),
        finding: finding.into(),
    }
}

/// Opens (or creates) the log at `base` and returns its backend, positioned at
/// the end of the newest segment, and where the chain continues.
pub(crate) fn open(
    base: &Path,
    key: &AuditKey,
    rotate: bool,
) -> Result<(FileBackend, Resume), AuditError> {
    let name = base_name(base)?.to_owned();
    let segments = list_segments(base)?;
    let Some((index, path)) = segments.last().cloned() else {
        let file = open_append(base).map_err(|e| AuditError::io("create", base, e))?;
        let dir = parent_dir(base);
        sync_dir(&dir).map_err(|e| AuditError::io("fsync directory", dir, e))?;
        return Ok((
            FileBackend::new(base, 0, file, true, rotate)?,
            Resume::fresh(),
        ));
    };
    let meta = fs::metadata(&path).map_err(|e| AuditError::io("stat", &path, e))?;
    if !meta.is_file() {
        // A device: write only (reading /dev/full would never end).
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| AuditError::io("open", &path, e))?;
        return Ok((
            FileBackend::new(base, index, file, false, false)?,
            Resume::fresh(),
        ));
    }

    let start = if index == 0 {
        Start::Genesis
    } else {
        Start::Anywhere
    };
    let active = scan(&path, key, start, true)?;
    let mut resume = match &active.last {
        Some(last) => Resume {
            seq: last.seq,
            prev: last.hash.clone(),
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
            let prev = scan(prev_path, key, prev_start, false)?;
            match prev.last {
                Some(LastRecord {
                    seq,
                    hash,
                    event: AuditEvent::Rotated { next_file },
                }) if next_file == segment_name(&name, index) => Resume {
                    seq,
                    prev: hash,
                    committed_len: 0,
                    torn: None,
                    continued: true,
                },
                _ if active.end == 0 && active.torn == 0 => {
                    // An interrupted rotation: the segment was created but the
                    // `rotated` record never reached the previous one, so no
                    // record belongs here. Remove it and continue there.
                    tracing::warn!(path = %path.display(), "removing an empty audit segment left by an interrupted rotation");
                    fs::remove_file(&path).map_err(|e| AuditError::io("remove", &path, e))?;
                    let dir = parent_dir(&path);
                    sync_dir(&dir).map_err(|e| AuditError::io("fsync directory", dir, e))?;
                    return open(base, key, rotate);
                }
                _ => {
                    return Err(damaged(
                        prev_path,
                        format!(
                            "it does not end in a rotated record naming {}",
                            segment_name(&name, index)
                        ),
                    ))
                }
            }
        }
    };

    if active.torn > 0 {
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| AuditError::io("open", &path, e))?;
        file.set_len(active.end)
            .map_err(|e| AuditError::io("truncate torn tail of", &path, e))?;
        file.sync_all()
            .map_err(|e| AuditError::io("fsync", &path, e))?;
        resume.torn = Some((active.torn, active.lines.saturating_add(1)));
    }
    resume.committed_len = active.end;

    let file = open_append(&path).map_err(|e| AuditError::io("open", &path, e))?;
    let mut backend = FileBackend::new(base, index, file, true, rotate)?;

    // A crash after the `rotated` record and before the next segment existed:
    // finish the rotation.
    if let Some(LastRecord {
        event: AuditEvent::Rotated { next_file },
        ..
    }) = &active.last
    {
        let expected = segment_name(&name, index.saturating_add(1));
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
