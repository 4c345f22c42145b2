//! Reading records for people: every line of a log's segments, in order, as
//! a record to show, verified on the way when the key is at hand.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::open::{open_log_file, Access};
use crate::record;
use crate::verify::{read_lines, ChainVerifier, Line, Start};
use crate::{
    AuditError, AuditEvent, AuditKey, RecordedEvent, UnknownEvent, VerifyOptions, VerifyReport,
};

fn serialize_path<S: Serializer>(path: &Arc<Path>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&path.display())
}

/// A record line as read for display. Its fields are what the line says:
/// only [`Self::authentic`] tells whether the key's holder wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShownRecord {
    /// The file the line is in.
    #[serde(serialize_with = "serialize_path")]
    pub file: Arc<Path>,
    /// 1-based line number in that file.
    pub line: u64,
    /// The record's sequence number.
    pub seq: u64,
    /// Its timestamp, as stored (RFC 3339, UTC, nanoseconds).
    pub ts: String,
    /// The worker that wrote it.
    pub worker: String,
    /// The log id a format 2 record is bound to.
    pub log: Option<String>,
    /// What happened: an event this build knows, or one of a type it does
    /// not know (written by a newer version), kept as written. Serialized as
    /// the event object either way.
    pub event: RecordedEvent,
    /// `Some(true)` when its MAC verified under the key, `Some(false)` when it
    /// did not, `None` when read without a key.
    pub authentic: Option<bool>,
}

/// One line of a log, as [`read_records`] hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShownLine {
    /// A line that reads as a record.
    Record(Box<ShownRecord>),
    /// A line that does not (malformed, too long, torn). A record of an
    /// event type this build does not know is a [`Self::Record`].
    Unreadable {
        /// The file the line is in.
        file: Arc<Path>,
        /// 1-based line number in that file.
        line: u64,
        /// Why, in this crate's words (no bytes of the line).
        reason: &'static str,
    },
}

/// The fields shown, the event read as `E`; the MAC and `prev` are the
/// verifier's business.
#[derive(Deserialize)]
struct Fields<E> {
    seq: u64,
    ts: String,
    worker: String,
    #[serde(default)]
    log: Option<String>,
    event: E,
}

impl<E> Fields<E> {
    /// The event, and the other fields.
    fn split(self) -> (Fields<()>, E) {
        let Self {
            seq,
            ts,
            worker,
            log,
            event,
        } = self;
        let rest = Fields {
            seq,
            ts,
            worker,
            log,
            event: (),
        };
        (rest, event)
    }
}

/// The fields of a line, its event one this build knows or one of a type it
/// does not know, by the verifier's rule (`record::parse_forward_compatible`).
fn fields(line: &[u8]) -> Option<(Fields<()>, RecordedEvent)> {
    record::parse_forward_compatible(
        line,
        |f: Fields<AuditEvent>| {
            let (rest, event) = f.split();
            (rest, RecordedEvent::Known(event))
        },
        |f: Fields<Box<RawValue>>| {
            let (rest, raw) = f.split();
            UnknownEvent::from_raw(raw).map(|event| (rest, RecordedEvent::Unknown(event)))
        },
    )
    .ok()
}

/// Whether the file at `path` looks like an audit log: empty, or beginning
/// like a record line (`{"v":1,"seq":` or `{"v":2,"log":"<id>","seq":`),
/// read from its first bytes only. A text file, a secret or a binary is not.
///
/// # Errors
/// When the file cannot be opened or read.
pub fn is_log_file(path: &Path) -> Result<bool, AuditError> {
    use std::io::Read as _;
    // Opened as every log file: no symbolic link, a regular file, no wait
    // on a FIFO.
    let file = open_log_file(path, Access::Read)?;
    let mut head = Vec::new();
    file.take(record::RECORD_START_MAX)
        .read_to_end(&mut head)
        .map_err(|e| AuditError::io("read", path, e))?;
    Ok(head.is_empty() || record::begins_like_record(&head, false))
}

/// Reads every line of `files` (oldest first, as [`crate::segment_files`]
/// lists a rotated log's segments) and hands each to `each`, in order, in
/// bounded memory per line.
///
/// With a `key`, each record's MAC is checked ([`ShownRecord::authentic`])
/// and the whole chain is verified as it is read, exactly as
/// [`crate::verify_chain_with`] does with `options`: the report is returned.
/// Without a key nothing is verified and `None` is returned.
///
/// # Errors
/// Only when a file cannot be opened or read.
pub fn read_records(
    files: &[PathBuf],
    key: Option<&AuditKey>,
    options: &VerifyOptions,
    mut each: impl FnMut(ShownLine),
) -> Result<Option<VerifyReport>, AuditError> {
    let mut verifier = key.map(|k| ChainVerifier::new(k, Start::Genesis, options));
    for path in files {
        let file = open_log_file(path, Access::Read)?;
        if let Some(v) = verifier.as_mut() {
            v.begin_file(path);
        }
        let shared: Arc<Path> = Arc::from(path.as_path());
        read_lines(BufReader::with_capacity(1 << 16, file), |n, item, _| {
            let unreadable = |reason| ShownLine::Unreadable {
                file: Arc::clone(&shared),
                line: n,
                reason,
            };
            match item {
                Line::Complete(bytes) => {
                    if let Some(v) = verifier.as_mut() {
                        v.line(n, bytes);
                    }
                    each(match fields(bytes) {
                        Some((f, event)) => ShownLine::Record(Box::new(ShownRecord {
                            file: Arc::clone(&shared),
                            line: n,
                            seq: f.seq,
                            ts: f.ts,
                            worker: f.worker,
                            log: f.log,
                            event,
                            authentic: key.map(|k| record::authenticate(k, bytes).is_ok()),
                        })),
                        None => unreadable("not a record (malformed)"),
                    });
                }
                Line::TooLong(len) => {
                    if let Some(v) = verifier.as_mut() {
                        v.too_long(n, len);
                    }
                    each(unreadable("a line over the length limit"));
                }
                Line::Torn(len) => {
                    if let Some(v) = verifier.as_mut() {
                        v.torn(n, len);
                    }
                    each(unreadable("an incomplete last line"));
                }
            }
        })
        .map_err(|e| AuditError::io("read", path, e))?;
    }
    Ok(verifier.map(ChainVerifier::finish))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode_line, GENESIS_PREV};

    fn write_chain(path: &Path, key: &AuditKey, n: u64) -> Vec<String> {
        let mut prev = GENESIS_PREV.to_owned();
        let mut lines = Vec::new();
        for seq in 1..=n {
            let event = AuditEvent::VramAllocated {
                shard_id: format!("s-{seq}"),
                gpu_device: 0,
                bytes: seq,
            };
            let ts = format!("2026-01-0{seq}T00:00:00.000000000Z");
            let line = encode_line(key, None, seq, &ts, "w", &event, &prev).unwrap();
            let line = String::from_utf8(line).unwrap().trim_end().to_owned();
            prev = record::line_hash(line.as_bytes());
            lines.push(line);
        }
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
        lines
    }

    fn collect(
        files: &[PathBuf],
        key: Option<&AuditKey>,
    ) -> (Vec<ShownLine>, Option<VerifyReport>) {
        let mut out = Vec::new();
        let report = read_records(files, key, &VerifyOptions::default(), |l| out.push(l)).unwrap();
        (out, report)
    }

    #[test]
    fn records_are_shown_in_order_and_verified_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let key = AuditKey::from_bytes([3; 32]);
        write_chain(&path, &key, 3);
        let (lines, report) = collect(std::slice::from_ref(&path), Some(&key));
        let report = report.unwrap();
        assert!(report.is_intact(), "{:?}", report.findings);
        assert_eq!(lines.len(), 3);
        for (i, l) in lines.iter().enumerate() {
            let ShownLine::Record(r) = l else {
                panic!("{l:?}")
            };
            assert_eq!(r.seq, i as u64 + 1);
            assert_eq!(r.line, i as u64 + 1);
            assert_eq!(r.authentic, Some(true));
            assert_eq!(r.event.shard_id(), Some(format!("s-{}", i + 1).as_str()));
        }
        // Without the key: the same records, nothing verified.
        let (plain, report) = collect(std::slice::from_ref(&path), None);
        assert!(report.is_none());
        assert!(plain
            .iter()
            .all(|l| matches!(l, ShownLine::Record(r) if r.authentic.is_none())));
    }

    #[test]
    fn an_edited_record_is_shown_as_not_authentic_and_the_report_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let key = AuditKey::from_bytes([3; 32]);
        let mut lines = write_chain(&path, &key, 3);
        lines[1] = lines[1].replace("\"bytes\":2", "\"bytes\":7");
        std::fs::write(&path, lines.join("\n") + "\n{\"v\":1,\"seq\":4").unwrap();
        let (shown, report) = collect(std::slice::from_ref(&path), Some(&key));
        assert!(!report.unwrap().is_intact());
        assert!(matches!(&shown[1], ShownLine::Record(r) if r.authentic == Some(false)));
        assert!(matches!(&shown[2], ShownLine::Record(r) if r.authentic == Some(true)));
        assert!(matches!(&shown[3], ShownLine::Unreadable { line: 4, .. }));
    }
}
