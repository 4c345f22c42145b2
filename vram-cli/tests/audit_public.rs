//! The `vram audit` edges an operator meets (filters that cannot match,
//! files that are not logs, a log renamed by logrotate, archived segments),
//! and verification with the public key only, through the `vram` binary.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::OutputWithin as _;

use common::{secret_file_with as secret_file, text, vram_process as vram};
use std::path::{Path, PathBuf};
use std::process::Output;

/// The `vram` binary on the mock device, with no secret from the environment.
fn secret(dir: &Path) -> PathBuf {
    secret_file(
        dir,
        "worker.secret",
        b"0123456789abcdef0123456789abcdef-public-test",
    )
}

fn model(dir: &Path) -> PathBuf {
    let p = dir.join("model.bin");
    let bytes: Vec<u8> = (0..3 * 4096).map(|i| (i as u8).wrapping_mul(7)).collect();
    std::fs::write(&p, bytes).unwrap();
    p
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// `vram seal` onto `log`, with extra flags (segment size, checkpoints).
fn seal(secret: &Path, log: &Path, model: &Path, extra: &[&str]) -> Output {
    vram()
        .args(["seal", "--quiet", "--device", "mock", "--secret-file"])
        .arg(secret)
        .arg("--audit-log")
        .arg(log)
        .args(extra)
        .arg(model)
        .output_within(common::PATIENCE)
}

fn seal_ok(secret: &Path, log: &Path, model: &Path, extra: &[&str]) {
    let out = seal(secret, log, model, extra);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn audit(args: &[&str], paths: &[&Path]) -> Output {
    let mut c = vram();
    c.arg("audit").args(args);
    for p in paths {
        c.arg(p);
    }
    c.output_within(common::PATIENCE)
}

/// The PEM `vram audit public-key` prints, written to DIR/NAME.
fn public_key(secret: &Path, dir: &Path, name: &str) -> PathBuf {
    let out = audit(&["public-key", "--secret-file"], &[secret]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pem = text(&out.stdout);
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert!(
        text(&out.stderr).contains("fingerprint "),
        "{}",
        text(&out.stderr)
    );
    let p = dir.join(name);
    std::fs::write(&p, pem).unwrap();
    p
}

fn verify_public(key: &Path, logs: &[&Path], extra: &[&str]) -> Output {
    let mut c = vram();
    c.args(["audit", "verify", "--public-key"])
        .arg(key)
        .args(extra);
    for l in logs {
        c.arg(l);
    }
    c.output_within(common::PATIENCE)
}

#[test]
fn show_refuses_filters_that_cannot_match_and_files_that_are_not_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, model) = (secret(dir.path()), model(dir.path()));
    let log = dir.path().join("audit.jsonl");
    seal_ok(&secret, &log, &model, &[]);

    // Before: exit 0 with nothing shown. Now: exit 2, naming the problem.
    let out = audit(&["show", "--event", "bogus_event"], &[&log]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("unknown event type `bogus_event`"), "{err}");
    assert!(err.contains("vram_sealed"), "{err}");
    assert!(out.stdout.is_empty());
    // A known type still filters.
    let out = audit(&["show", "--json", "--event", "vram_sealed"], &[&log]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!out.stdout.is_empty());

    let out = audit(
        &["show", "--since", "2026-02-01", "--until", "2026-01-01"],
        &[&log],
    );
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--until"),
        "{}",
        text(&out.stderr)
    );
    let out = audit(
        &["show", "--since", "2026-01-01", "--until", "2026-01-01"],
        &[&log],
    );
    assert_eq!(code(&out), 2);

    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "shopping list\nmilk\n").unwrap();
    let out = audit(&["show"], &[&notes]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not an audit log"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

#[test]
fn show_refuses_times_that_are_not_on_the_calendar() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, model) = (secret(dir.path()), model(dir.path()));
    let log = dir.path().join("audit.jsonl");
    seal_ok(&secret, &log, &model, &[]);

    for bad in [
        "2026-13-01",
        "2026-01-32",
        "2026-02-30",
        "2026-13-01T00:00:00Z",
        "2026-01-31T12:30:60Z",
    ] {
        let out = audit(&["show", "--since", bad], &[&log]);
        assert_eq!(code(&out), 2, "{bad}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("--since"),
            "{}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{bad}");
    }
    // An offset is refused as the help says: UTC only.
    let out = audit(&["show", "--until", "2026-01-31T12:00:00+01:00"], &[&log]);
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("UTC"), "{}", text(&out.stderr));
    // Real dates, a leap day and a leap second, still filter.
    let out = audit(
        &[
            "show",
            "--json",
            "--since",
            "2000-02-29",
            "--until",
            "2016-12-31T23:59:60Z",
        ],
        &[&log],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "the log was written after 2016");
    let out = audit(&["show", "--json", "--since", "2000-02-29"], &[&log]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!out.stdout.is_empty());
}

#[test]
fn a_log_renamed_by_logrotate_is_refused_by_name_and_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, model) = (secret(dir.path()), model(dir.path()));
    let log = dir.path().join("audit.jsonl");
    seal_ok(&secret, &log, &model, &[]);
    // logrotate's default: rename, then (`create`) a new empty file.
    let rotated = dir.path().join("audit.jsonl.1");
    std::fs::rename(&log, &rotated).unwrap();
    let before = std::fs::read(&rotated).unwrap();

    // `vram audit verify audit.jsonl` no longer says "no such file".
    let out = audit(&["verify", "--secret-file"], &[&secret, &log]);
    let err = text(&out.stderr);
    assert!(!err.contains("no such file"), "{err}");
    assert!(err.contains("renamed"), "{err}");
    assert!(out.status.success(), "{err}");

    // Writing refuses, naming the problem; nothing is appended.
    for create in [false, true] {
        if create {
            std::fs::File::create(&log).unwrap();
        }
        let out = seal(&secret, &log, &model, &[]);
        assert_eq!(code(&out), 3, "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains("audit.jsonl.1 begins the log") && err.contains("logrotate"),
            "{err}"
        );
        assert_eq!(std::fs::read(&rotated).unwrap(), before);
    }
}

#[test]
fn renamed_segments_of_a_rotated_log_are_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, model) = (secret(dir.path()), model(dir.path()));
    let log = dir.path().join("audit.jsonl");
    for _ in 0..3 {
        seal_ok(&secret, &log, &model, &["--audit-segment-size", "1500"]);
    }
    let segments: Vec<PathBuf> = (0..)
        .map(|i| {
            if i == 0 {
                log.clone()
            } else {
                dir.path().join(format!("audit.jsonl.{i}"))
            }
        })
        .take_while(|p| p.exists())
        .collect();
    assert!(segments.len() >= 3, "{segments:?}");
    // logrotate shifts every file up by one: .2 -> .3, .1 -> .2, base -> .1.
    for (i, p) in segments.iter().enumerate().rev() {
        std::fs::rename(p, dir.path().join(format!("audit.jsonl.{}", i + 1))).unwrap();
    }
    let out = audit(&["verify", "--secret-file"], &[&secret, &log]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    let report = text(&out.stdout);
    assert!(report.contains("segments renamed"), "{report}");
    let out = seal(&secret, &log, &model, &["--audit-segment-size", "1500"]);
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("logrotate"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_sealed_log_verifies_with_the_public_key_and_tampering_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, model) = (secret(dir.path()), model(dir.path()));
    let log = dir.path().join("audit.jsonl");
    seal_ok(&secret, &log, &model, &[]);
    seal_ok(&secret, &log, &model, &[]);
    let key = public_key(&secret, dir.path(), "worker.pem");

    let out = verify_public(&key, &[&log], &[]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(report.contains("proven through seq"), "{report}");
    assert!(report.contains("0 record(s) after it UNPROVEN"), "{report}");
    assert!(report.contains("MACs not checked"), "{report}");
    let out = verify_public(&key, &[&log], &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["intact"], true);
    assert_eq!(v["macs_checked"], false);
    assert_eq!(v["signing_key"], v["public_key"]);

    // `head --signed` is a line a monitor keeps; verify accepts it.
    let out = audit(&["head", "--signed", "--public-key"], &[&key, &log]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout).trim().to_owned();
    assert_eq!(line.split(':').count(), 5, "{line}");
    let out = verify_public(&key, &[&log], &["--checkpoint", &line]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    // More records extend it.
    seal_ok(&secret, &log, &model, &[]);
    let out = verify_public(&key, &[&log], &["--checkpoint", &line]);
    assert!(out.status.success(), "{}", text(&out.stdout));

    // A log cut just before its closing checkpoint: the records after the
    // last signed checkpoint are unproven, not called intact.
    let full = std::fs::read_to_string(&log).unwrap();
    let mut cut: Vec<&str> = full.lines().collect();
    assert!(cut.last().unwrap().contains("signed_checkpoint"));
    cut.pop();
    std::fs::write(&log, cut.join("\n") + "\n").unwrap();
    let out = verify_public(&key, &[&log], &[]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("later record(s) UNPROVEN"), "{report}");
    assert!(!report.contains("\nintact: "), "{report}");
    std::fs::write(&log, &full).unwrap();

    // An edited record: found without the secret (exit 1).
    let original = std::fs::read_to_string(&log).unwrap();
    let edited = original.replacen("\"gpu_device\":0", "\"gpu_device\":1", 1);
    assert_ne!(edited, original);
    std::fs::write(&log, &edited).unwrap();
    let out = verify_public(&key, &[&log], &[]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("NOT INTACT"));

    // Another worker's public key: the verifier says which key it expects.
    std::fs::write(&log, &original).unwrap();
    let other = secret_file(dir.path(), "other.secret", &[b'x'; 40]);
    let other_key = public_key(&other, dir.path(), "other.pem");
    let out = verify_public(&other_key, &[&log], &[]);
    assert_eq!(code(&out), 1);
    let report = text(&out.stdout);
    assert!(report.contains("signing key mismatch"), "{report}");
    let expected = text(&audit(&["public-key", "--json", "--secret-file"], &[&secret]).stdout);
    let expected: serde_json::Value = serde_json::from_str(&expected).unwrap();
    assert!(
        report.contains(expected["fingerprint"].as_str().unwrap()),
        "{report}"
    );

    // A file that is not a public key is a usage error.
    let out = verify_public(&secret, &[&log], &[]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
}

#[test]
fn archived_segments_are_removed_and_the_rest_verifies_from_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, model) = (secret(dir.path()), model(dir.path()));
    let log = dir.path().join("audit.jsonl");
    for _ in 0..4 {
        seal_ok(&secret, &log, &model, &["--audit-segment-size", "1500"]);
    }
    let key = public_key(&secret, dir.path(), "worker.pem");
    let s1 = dir.path().join("audit.jsonl.1");
    let s2 = dir.path().join("audit.jsonl.2");
    assert!(s2.exists());
    // The documented procedure: verify, print the anchor, archive, delete.
    assert!(verify_public(&key, &[&log], &[]).status.success());
    let out = audit(&["head", "--public-key"], &[&key, &log, &s1]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let anchor = text(&out.stdout).trim().to_owned();
    let archive = dir.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    for p in [&log, &s1] {
        std::fs::copy(p, archive.join(p.file_name().unwrap())).unwrap();
        std::fs::remove_file(p).unwrap();
    }
    let out = verify_public(&key, &[&log], &["--after", &anchor]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // Without the anchor the start is missing.
    assert_eq!(code(&verify_public(&key, &[&log], &[])), 1);
    // The archive still yields the anchor (its chain continues in a file
    // it does not hold: verify says so, head prints its head).
    let archived = archive.join("audit.jsonl");
    let out = audit(&["verify", "--secret-file"], &[&secret, &archived]);
    assert!(
        text(&out.stdout).contains("chain continues in audit.jsonl.2"),
        "{}",
        text(&out.stdout)
    );
    std::fs::write(archive.join("audit.jsonl.2"), "").unwrap();
    let out = audit(
        &["head", "--public-key"],
        &[&key, &archived, &archive.join("audit.jsonl.1")],
    );
    assert_eq!(text(&out.stdout).trim(), anchor, "{}", text(&out.stderr));
    // And the writer continues the log.
    seal_ok(&secret, &log, &model, &["--audit-segment-size", "1500"]);
    let out = verify_public(&key, &[&log], &["--after", &anchor]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}
