//! Signed checkpoints: the documented vector, logs verified with the public
//! key only, unproven tails, and every tamper class of `tamper.rs` found
//! with the public key as with the secret.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    clippy::unwrap_used
)]
// Helper functions outside #[test] items are test code too.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use vram_audit::{
    checkpoint_message, segment_files, verify_chain_public, verify_chain_with, verify_lines_public,
    AuditKey, AuditLog, AuditPublicKey, AuditSigner, AuditSink, Checkpoint, FindingKind,
    LogOptions, SignedCheckpoint, VerifyOptions, VerifyReport,
};

const SEED: [u8; 32] = [0x33; 32];

fn signer() -> AuditSigner {
    AuditSigner::from_seed_bytes(&SEED).unwrap()
}

fn signed_key() -> AuditKey {
    key().with_signer(signer())
}

fn public() -> AuditPublicKey {
    signer().public_key().clone()
}

fn options(every: u64, max_file: Option<u64>) -> LogOptions {
    LogOptions {
        checkpoint_records: every,
        checkpoint_interval: std::time::Duration::ZERO,
        max_file_bytes: max_file,
        ..fast_options()
    }
}

/// A closed, signed log of `n` events (checkpoints every 5 records).
fn signed_log(dir: &Path, n: u64, max_file: Option<u64>) -> PathBuf {
    let path = dir.join("audit.jsonl");
    let log = AuditLog::open_file(&path, signed_key(), "worker-0", options(5, max_file)).unwrap();
    for i in 1..=n {
        log.record(event(i)).unwrap();
    }
    drop(log);
    path
}

fn public_report(files: &[PathBuf], opts: &VerifyOptions) -> VerifyReport {
    verify_chain_public(files, &public(), None, opts).unwrap()
}

fn secret_report(files: &[PathBuf]) -> VerifyReport {
    verify_chain_with(files, &signed_key(), &VerifyOptions::default()).unwrap()
}

/// The vector block of docs/audit-log.md, as (name, value) pairs.
fn doc_vector() -> Vec<(String, String)> {
    let doc = include_str!("../../docs/audit-log.md");
    let (_, after) = doc.split_once("<!-- checkpoint-vector").unwrap();
    let block = after.split("```").nth(1).unwrap();
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.split_once("  ").unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn the_documented_checkpoint_vector_verifies() {
    let v = doc_vector();
    let get = |name: &str| {
        v.iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("{name} missing from the documented vector"))
    };
    let seed: [u8; 32] = unhex(&get("seed")).try_into().unwrap();
    let signer = AuditSigner::from_seed_bytes(&seed).unwrap();
    let public = signer.public_key();
    let pem = public.to_pem();
    assert!(pem.contains(&get("public key")), "{pem}");
    assert_eq!(public.fingerprint(), get("fingerprint"));
    let (log_id, seq, hash) = (get("log id"), get("seq").parse().unwrap(), get("hash"));
    let message = checkpoint_message(&log_id, seq, &hash);
    assert_eq!(message, unhex(&get("message")));
    let signature = get("signature");
    assert!(public.verifies(&log_id, seq, &hash, &signature));
    // ring's Ed25519 is deterministic too: the same signature.
    let line: SignedCheckpoint =
        format!("{seq}:{hash}:{log_id}:{}:{signature}", public.fingerprint())
            .parse()
            .unwrap();
    assert!(line.verifies_with(public));
    // The record, read with the documented audit key: a checkpoint that
    // names the record before it, verified with the public key.
    let audit_key = AuditKey::from_bytes(std::array::from_fn(|i| i as u8));
    let genesis = r#"{"v":2,"log":"00112233445566778899aabbccddeeff","seq":1,"ts":"2025-01-01T00:00:00.000000000Z","worker":"worker-0","event":{"type":"log_created","format":2,"key_id":"f5e66cd1dbf3907e","log_id":"00112233445566778899aabbccddeeff"},"prev":"0000000000000000000000000000000000000000000000000000000000000000","mac":"f3c07646f5de2321d0b5656cb368fa62e6675599032bdb6287a826284f914720"}"#;
    let record = get("record");
    let lines = [genesis.as_bytes(), record.as_bytes()];
    let r = verify_lines_public(lines, public, &VerifyOptions::default());
    assert!(r.is_intact(), "{:?}", r.findings);
    assert_eq!((r.proven_seq, r.unproven_records), (Some(2), 0));
    let with_mac = vram_audit::verify_lines_with(
        lines,
        &audit_key.with_signer(signer),
        &VerifyOptions::default(),
    );
    assert!(with_mac.is_intact(), "{:?}", with_mac.findings);
    assert_eq!(with_mac.signed_checkpoints, 1);
}

#[test]
fn a_rotated_signed_log_verifies_with_the_public_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = signed_log(dir.path(), 60, Some(3000));
    let files = segment_files(&path).unwrap();
    assert!(files.len() >= 3, "{files:?}");
    // Every new segment begins with a signed checkpoint.
    for f in &files[1..] {
        let first = read_lines(f).remove(0);
        assert!(first.contains(r#""type":"signed_checkpoint""#), "{first}");
    }
    let genesis = read_lines(&files[0]).remove(0);
    assert!(
        genesis.contains(&format!(r#""signing_key":"{}""#, public().fingerprint())),
        "{genesis}"
    );
    let r = public_report(&files, &VerifyOptions::default());
    assert!(r.is_intact(), "{:?}", r.findings);
    assert!(!r.macs_checked);
    assert!(r.signed_checkpoints >= 12, "{}", r.signed_checkpoints);
    // Closed cleanly: the last record is a checkpoint; nothing unproven.
    assert_eq!(r.proven_seq, Some(r.head.as_ref().unwrap().seq));
    assert_eq!(r.unproven_records, 0);
    assert_eq!(
        r.genesis.as_ref().unwrap().signing_key.as_deref(),
        Some(public().fingerprint().as_str())
    );
    // Both checks at once.
    let both = verify_chain_public(
        &files,
        &public(),
        Some(&signed_key()),
        &VerifyOptions::default(),
    )
    .unwrap();
    assert!(both.is_intact() && both.macs_checked, "{:?}", both.findings);
    // Another worker's key: every checkpoint names a key that is not it.
    let other = AuditSigner::from_seed_bytes(&[0x44; 32]).unwrap();
    let r =
        verify_chain_public(&files, other.public_key(), None, &VerifyOptions::default()).unwrap();
    assert!(!r.is_intact());
    assert!(
        matches!(r.findings[0].kind, FindingKind::SigningKeyMismatch { .. }),
        "{:?}",
        r.findings
    );
    assert!(r.findings[0].to_string().contains(&public().fingerprint()));
}

#[test]
fn records_after_the_last_checkpoint_are_unproven_and_no_checkpoint_is_a_finding() {
    let log = AuditLog::in_memory_with(signed_key(), "w", options(4, None)).unwrap();
    for i in 1..=6 {
        log.record(event(i)).unwrap();
    }
    // genesis + 3 events, checkpoint (seq 5), 3 more events.
    let lines = log.lines();
    let r = verify_lines_public(
        lines.iter().map(String::as_bytes),
        &public(),
        &VerifyOptions::default(),
    );
    assert!(r.is_intact(), "{:?}", r.findings);
    assert_eq!((r.proven_seq, r.unproven_records), (Some(5), 3));

    // A log written without a signing key proves nothing to the public key.
    let unsigned = AuditLog::in_memory(key(), "w").unwrap();
    unsigned.record(event(1)).unwrap();
    let lines = unsigned.lines();
    let r = verify_lines_public(
        lines.iter().map(String::as_bytes),
        &public(),
        &VerifyOptions::default(),
    );
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    assert_eq!(r.findings[0].kind, FindingKind::Unsigned);
    assert_eq!(r.proven_seq, None);
}

#[test]
fn a_monitors_signed_checkpoint_must_be_in_the_log_unaltered_and_extended() {
    let dir = tempfile::tempdir().unwrap();
    let path = signed_log(dir.path(), 12, None);
    let files = vec![path.clone()];
    let r = public_report(&files, &VerifyOptions::default());
    let kept = r.last_signed.clone().unwrap();
    let with = |cp: SignedCheckpoint| {
        let mut o = VerifyOptions::default();
        o.signed_checkpoint = Some(cp);
        public_report(&files, &o)
    };
    assert!(with(kept.clone()).is_intact());
    // The log cut before the checkpoint: truncated, and the checkpoint gone.
    let mut lines = read_lines(&path);
    let full = lines.clone();
    lines.truncate(lines.len() - 3);
    write_lines(&path, &lines);
    let r = with(kept.clone());
    let kinds: Vec<_> = r.findings.iter().map(|f| f.kind.clone()).collect();
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, FindingKind::Truncated { .. }))
            && kinds
                .iter()
                .any(|k| matches!(k, FindingKind::SignedCheckpointMissing { .. })),
        "{kinds:?}"
    );
    // A checkpoint line whose signature was replaced is not the one in the log.
    write_lines(&path, &full);
    let mut forged = kept;
    forged.signature = "00".repeat(64);
    assert!(!with(forged).is_intact());
}

/// Applies one of tamper.rs's cases to a closed signed log.
fn tamper(case: &str, path: &Path) {
    let mut lines = read_lines(path);
    let n = lines.len();
    match case {
        "edit a field" => {
            let i = lines
                .iter()
                .position(|l| l.contains("\"bytes\":1004"))
                .unwrap();
            lines[i] = lines[i].replace("\"bytes\":1004", "\"bytes\":9004");
        }
        "delete a line" => {
            lines.remove(4);
        }
        "swap two lines" => lines.swap(3, 4),
        "insert a forged line" => {
            let forged = lines[3].replace("shard-", "forged-");
            lines.insert(4, forged);
        }
        "replay a line" => {
            let copy = lines[3].clone();
            lines.insert(7, copy);
        }
        "garbage and an unknown version" => {
            lines.insert(2, "not json at all".into());
            lines.insert(5, lines[4].replacen("{\"v\":2,", "{\"v\":9,", 1));
        }
        "torn tail" => {
            std::fs::write(
                path,
                format!("{}\n{}", lines[..n - 1].join("\n"), &lines[n - 1][..20]),
            )
            .unwrap();
            return;
        }
        "edit a checkpoint" => {
            let i = lines
                .iter()
                .position(|l| l.contains("signed_checkpoint"))
                .unwrap();
            let at = lines[i].find("\"signature\":\"").unwrap() + 13;
            let flipped = if &lines[i][at..=at] == "0" { "1" } else { "0" };
            lines[i].replace_range(at..=at, flipped);
        }
        "move a checkpoint" => {
            let i = lines
                .iter()
                .position(|l| l.contains("signed_checkpoint"))
                .unwrap();
            let cp = lines.remove(i);
            lines.insert(i + 2, cp);
        }
        "another log spliced in" => {
            let other_dir = tempfile::tempdir().unwrap();
            let other = signed_log(other_dir.path(), 12, None);
            let theirs = read_lines(&other);
            lines.splice(3..6, theirs[3..6].iter().cloned());
        }
        _ => unreachable!("{case}"),
    }
    write_lines(path, &lines);
}

#[test]
fn every_tamper_class_before_the_last_checkpoint_is_found_with_the_public_key() {
    for case in [
        "edit a field",
        "delete a line",
        "swap two lines",
        "insert a forged line",
        "replay a line",
        "garbage and an unknown version",
        "torn tail",
        "edit a checkpoint",
        "move a checkpoint",
        "another log spliced in",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = signed_log(dir.path(), 20, None);
        let files = vec![path.clone()];
        assert!(public_report(&files, &VerifyOptions::default()).is_intact());
        tamper(case, &path);
        let with_secret = secret_report(&files);
        assert!(!with_secret.is_intact(), "{case}: the secret finds it");
        let public_only = public_report(&files, &VerifyOptions::default());
        assert!(
            !public_only.is_intact(),
            "{case}: not found with the public key"
        );
    }
}

#[test]
fn a_log_cut_after_its_last_checkpoint_is_found_against_a_kept_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = signed_log(dir.path(), 12, None);
    let files = vec![path.clone()];
    let head = public_report(&files, &VerifyOptions::default())
        .head
        .unwrap();
    let mut lines = read_lines(&path);
    lines.truncate(lines.len() - 2);
    write_lines(&path, &lines);
    let mut o = VerifyOptions::default();
    o.checkpoint = Some(head);
    let r = public_report(&files, &o);
    assert!(
        r.findings
            .iter()
            .any(|f| matches!(f.kind, FindingKind::Truncated { .. })),
        "{:?}",
        r.findings
    );
}

#[test]
fn archived_segments_are_replaced_by_an_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let path = signed_log(dir.path(), 60, Some(3000));
    let files = segment_files(&path).unwrap();
    assert!(files.len() >= 3);
    let removed = &files[..2];
    let anchor: Checkpoint = public_report(removed, &VerifyOptions::default())
        .head
        .unwrap();
    for f in removed {
        std::fs::remove_file(f).unwrap();
    }
    let kept = segment_files(&path).unwrap();
    assert_eq!(kept.len(), files.len() - 2);
    let r = public_report(&kept, &VerifyOptions::default());
    assert!(!r.is_intact(), "without the anchor the start is missing");
    let mut o = VerifyOptions::default();
    o.after = Some(anchor.clone());
    let r = public_report(&kept, &o);
    assert!(r.is_intact(), "{:?}", r.findings);
    assert_eq!(r.unproven_records, 0);
    // A wrong anchor is a chain break at the first record.
    let mut wrong = anchor;
    wrong.hash = "00".repeat(32);
    o.after = Some(wrong);
    assert!(!public_report(&kept, &o).is_intact());
    // The writer continues a log whose oldest segments were removed.
    let log = AuditLog::open_file(&path, signed_key(), "worker-0", options(5, Some(3000))).unwrap();
    log.record(event(99)).unwrap();
}

#[test]
fn an_idle_log_gets_its_checkpoint_from_the_timer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let opts = LogOptions {
        checkpoint_records: 0,
        checkpoint_interval: std::time::Duration::from_millis(100),
        ..fast_options()
    };
    let log = AuditLog::open_file(&path, signed_key(), "worker-0", opts).unwrap();
    for i in 1..=3 {
        log.record(event(i)).unwrap();
    }
    // No further record: the checkpointer thread writes it (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = public_report(std::slice::from_ref(&path), &VerifyOptions::default());
        if r.unproven_records == 0 && r.proven_seq.is_some() {
            assert!(r.is_intact(), "{:?}", r.findings);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no timed checkpoint: {r:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(log);
}
