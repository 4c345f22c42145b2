//! Forward compatibility: a rolling upgrade puts new writers before new
//! verifiers, so a log may hold authentic records of event types this build
//! does not know. Such a record verifies, shows and is continued like any
//! other; a record whose MAC does not verify, or of a known type with a
//! missing field, is refused exactly as before.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unwrap_used
)]
// Helper functions outside #[test] items are test code too.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ring::{digest, hmac};
use vram_audit::{
    read_records, verify_chain, AuditError, AuditLog, AuditSink, Checkpoint, FindingKind,
    RecordedEvent, ShownLine, ShownRecord, UnknownEventTypes, VerifyOptions, VerifyReport,
};

/// An event of a type no build of this crate knows.
const FUTURE: &str = r#"{"type":"from_the_future","x":1}"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `line` (a record) with its event replaced by `event`, signed again as
/// docs/audit-log.md specifies (independently of the crate's code):
/// HMAC-SHA256 under the key over the line without its 74-byte MAC suffix.
fn with_event(line: &str, event: &str) -> String {
    let open = r#","event":"#;
    let start = line.find(open).unwrap() + open.len();
    let end = line.rfind(r#","prev":""#).unwrap();
    let body = format!("{}{event}{}", &line[..start], &line[end..line.len() - 74]);
    let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &KEY), body.as_bytes());
    format!(r#"{body},"mac":"{}"}}"#, hex(mac.as_ref()))
}

/// `line` with the lowest bit of its MAC's last byte flipped.
fn flip_mac_bit(line: &str) -> String {
    let at = line.len() - 3; // the last hex digit, before `"}`
    let digit = u8::from_str_radix(&line[at..at + 1], 16).unwrap();
    format!("{}{:x}{}", &line[..at], digit ^ 1, &line[at + 1..])
}

/// A 5-record log (genesis record first) whose last record's event is
/// replaced by `event` (so the chain still links up to it).
fn log_ending_in(dir: &Path, event: &str) -> (PathBuf, Vec<String>) {
    let path = write_log(dir, 5);
    let mut lines = read_lines(&path);
    lines[4] = with_event(&lines[4], event);
    write_lines(&path, &lines);
    (path, lines)
}

fn verify(path: &Path, checkpoint: Option<&Checkpoint>) -> VerifyReport {
    verify_chain(
        std::slice::from_ref(&path.to_path_buf()),
        &key(),
        checkpoint,
    )
    .unwrap()
}

fn show(path: &Path, with_key: bool) -> (Vec<ShownLine>, Option<VerifyReport>) {
    let mut shown = Vec::new();
    let key = key();
    let report = read_records(
        std::slice::from_ref(&path.to_path_buf()),
        with_key.then_some(&key),
        &VerifyOptions::default(),
        |l| shown.push(l),
    )
    .unwrap();
    (shown, report)
}

fn record(line: &ShownLine) -> &ShownRecord {
    match line {
        ShownLine::Record(r) => r,
        other => panic!("{other:?}"),
    }
}

fn kinds(report: &VerifyReport) -> Vec<(u64, FindingKind)> {
    report
        .findings
        .iter()
        .map(|f| (f.line, f.kind.clone()))
        .collect()
}

#[test]
fn a_record_of_an_unknown_event_type_verifies_shows_and_is_continued() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = log_ending_in(dir.path(), FUTURE);
    let future_hash = hex(digest::digest(&digest::SHA256, lines[4].as_bytes()).as_ref());
    let noted = UnknownEventTypes {
        records: 1,
        types: vec!["from_the_future".into()],
        more_types: false,
    };

    let r = verify(&path, None);
    assert!(r.is_intact(), "{:?}", r.findings);
    assert_eq!((r.records, r.bad_lines), (5, 0));
    assert_eq!(r.unknown_event_types, noted);
    let head = r.head.clone().unwrap();
    assert_eq!((head.seq, head.hash.as_str()), (5, future_hash.as_str()));
    assert!(r
        .unknown_event_types
        .to_string()
        .starts_with("1 record(s) of event types this build does not know: from_the_future"));

    // `show`: a record like the others, its event kept as written, authentic.
    let (shown, report) = show(&path, true);
    assert_eq!(report.as_ref(), Some(&r));
    assert_eq!(shown.len(), 5);
    let last = record(&shown[4]);
    assert_eq!((last.seq, last.authentic), (5, Some(true)));
    let RecordedEvent::Unknown(future) = &last.event else {
        panic!("{:?}", last.event)
    };
    assert_eq!((future.kind(), future.json()), ("from_the_future", FUTURE));
    let json = serde_json::to_value(last).unwrap();
    assert_eq!(
        json["event"],
        serde_json::json!({"type": "from_the_future", "x": 1})
    );
    assert!(shown[..4].iter().all(|l| record(l).event.known().is_some()));
    // Without the key: the same record, not verified.
    let (plain, none) = show(&path, false);
    assert!(none.is_none());
    assert_eq!(record(&plain[4]).event, last.event);
    assert_eq!(record(&plain[4]).authentic, None);

    // Reopening continues the chain after it.
    let log = AuditLog::open_file(&path, key(), "worker-0", fast_options()).unwrap();
    assert_eq!(log.record(event(9)).unwrap().seq, 7); // after log_opened, 6
    drop(log);
    let r = verify(&path, Some(&head));
    assert!(r.is_intact(), "{:?}", r.findings);
    assert_eq!((r.records, r.head.unwrap().seq), (7, 7));
    assert_eq!(r.unknown_event_types, noted);
    assert_eq!(read_lines(&path)[4], lines[4]);
}

#[test]
fn a_record_of_an_unknown_event_type_with_a_flipped_mac_bit_is_still_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut lines) = log_ending_in(dir.path(), FUTURE);
    lines[4] = flip_mac_bit(&lines[4]);
    write_lines(&path, &lines);

    let r = verify(&path, None);
    assert_eq!(kinds(&r), [(5, FindingKind::BadMac)]);
    assert_eq!((r.records, r.bad_lines), (4, 1));
    assert_eq!(r.unknown_event_types, UnknownEventTypes::default());
    assert_eq!(r.head.unwrap().seq, 4);

    let (shown, report) = show(&path, true);
    assert_eq!(report.unwrap().findings, r.findings);
    assert_eq!(record(&shown[4]).authentic, Some(false));

    let before = std::fs::read(&path).unwrap();
    let err = AuditLog::open_file(&path, key(), "worker-0", fast_options()).unwrap_err();
    assert!(matches!(err, AuditError::Damaged { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_known_event_type_with_a_missing_field_is_still_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let granted = r#"{"type":"leases_granted","shard_id":"s","gpu_device":0}"#;
    let (path, _) = log_ending_in(dir.path(), granted);

    let r = verify(&path, None);
    let k = kinds(&r);
    assert!(
        matches!(&k[..], [(5, FindingKind::Malformed { reason })] if reason.starts_with("missing field `count`")),
        "{k:?}"
    );
    assert_eq!((r.records, r.bad_lines), (4, 1));
    assert_eq!(r.unknown_event_types, UnknownEventTypes::default());

    let (shown, _) = show(&path, true);
    assert!(
        matches!(&shown[4], ShownLine::Unreadable { line: 5, .. }),
        "{:?}",
        shown[4]
    );

    let err = AuditLog::open_file(&path, key(), "worker-0", fast_options()).unwrap_err();
    assert!(matches!(err, AuditError::Damaged { .. }), "{err}");
}
