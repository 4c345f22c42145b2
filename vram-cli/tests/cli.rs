//! The `vram` binary's contract: commands, flags, JSON shapes, exit codes.
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

use common::{model, secret_file, vram, write_file};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `vram seal FLAGS... --secret-file SECRET`, its inputs to be added.
fn seal(secret: &Path, flags: &[&str]) -> assert_cmd::Command {
    let mut c = vram();
    c.arg("seal").args(flags).arg("--secret-file").arg(secret);
    c
}

/// `vram audit verify [EXTRA...] --secret-file SECRET LOG`.
fn audit_verify(secret: &Path, log: &Path, extra: &[&str]) -> assert_cmd::Command {
    let mut c = vram();
    c.args(["audit", "verify"])
        .args(extra)
        .arg("--secret-file")
        .arg(secret)
        .arg(log);
    c
}

fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn help_documents_exit_codes() {
    let out = vram().arg("--help").output_within(common::PATIENCE);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Exit codes",
        "integrity",
        "usage",
        "environment",
        "seal",
        "digest",
        "demo",
    ] {
        assert!(text.contains(needle), "help lacks {needle}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_file(dir.path(), "m.bin", &model(10));
    let (file, folder) = (f.to_str().unwrap(), dir.path().to_str().unwrap());
    for args in [
        &["frobnicate"][..],
        &["digest"],
        &["digest", "--leaf-size", "3KiB", file],
        &["digest", "--leaf-size", "lots", file],
        &["digest", "/definitely/not/here"],
        &["digest", folder],
    ] {
        vram().args(args).assert().code(2);
    }
    let s = secret_file(dir.path());
    for bad in [
        vec!["--device", "gpu7"],
        vec!["--verify", "sometimes"],
        vec!["--verify", "sampled:0"],
        vec!["--expect-sha256", "xyz"],
        vec!["--model-ref", "../etc/passwd"],
    ] {
        let out = vram()
            .arg("seal")
            .args(&bad)
            .arg("--secret-file")
            .arg(&s)
            .arg(&f)
            .output_within(common::PATIENCE);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    }
    let empty = write_file(dir.path(), "empty.bin", b"");
    vram()
        .arg("seal")
        .arg("--secret-file")
        .arg(&s)
        .arg(&empty)
        .assert()
        .code(2);
}

#[test]
fn digest_json_shape_and_determinism() {
    let dir = tempfile::tempdir().unwrap();
    let data = model(300_000);
    let f = write_file(dir.path(), "m.bin", &data);
    let out = vram()
        .args(["digest", "--json", "--sha256", "--leaf-size", "64KiB"])
        .arg(&f)
        .output_within(common::PATIENCE);
    assert!(out.status.success());
    let v = stdout_json(&out);
    assert_eq!(v["bytes"], 300_000);
    assert_eq!(v["leaf_size"], 65536);
    assert_eq!(v["leaf_count"], 5);
    let sha = ring::digest::digest(&ring::digest::SHA256, &data);
    let hex: String = sha.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v["sha256"], hex);
    let tree = vram_crypto::tree_digest(&data, vram_crypto::LeafSize::new(65536).unwrap());
    assert_eq!(v["tree_digest"], tree.root.to_string());
    // Plain output: a manifest line, "vram-tree-sha256:LEAF:<digest>  <file>".
    let out = vram()
        .args(["digest", "--leaf-size", "65536"])
        .arg(&f)
        .output_within(common::PATIENCE);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("vram-tree-sha256:64KiB:{}  {}\n", tree.root, f.display())
    );
}

#[test]
fn devices_reports_the_mock_loudly() {
    let out = vram()
        .args(["devices", "--json"])
        .output_within(common::PATIENCE);
    assert!(out.status.success());
    let v = stdout_json(&out);
    assert_eq!(v["mock"], true);
    assert_eq!(v["devices"][0]["kind"], "mock");
    assert!(v["devices"][0]["total_bytes"].as_u64().unwrap() > 0);
    assert!(v["note"].as_str().unwrap().contains("no CUDA device"));
    let out = vram().arg("devices").output_within(common::PATIENCE);
    assert!(String::from_utf8_lossy(&out.stderr).contains("MOCK"));
}

#[test]
fn seal_json_shape_and_audit_log_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let a = write_file(dir.path(), "a.bin", &model(200_000));
    let b = write_file(dir.path(), "b.bin", &model(3000));
    let log = dir.path().join("audit.jsonl");
    let out = vram()
        .args([
            "seal",
            "--json",
            "--device",
            "mock",
            "--verify",
            "sampled:4",
            "--secret-file",
        ])
        .arg(&s)
        .arg("--audit-log")
        .arg(&log)
        .arg(&a)
        .arg(&b)
        .output_within(common::PATIENCE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    for key in [
        "shard_id",
        "gpu_device",
        "vram_bytes",
        "digest",
        "sealed_at",
        "model_ref",
    ] {
        assert!(shards[0].get(key).is_some(), "missing {key}");
    }
    assert_eq!(shards[0]["vram_bytes"], 200_000);
    assert_eq!(shards[0]["model_ref"], "file:a.bin");
    assert_eq!(shards[0]["device_kind"], "mock");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("0x"),
        "no addresses in output"
    );

    // The same secret verifies the log the seal wrote.
    let out = audit_verify(&s, &log, &["--json"]).output_within(common::PATIENCE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = stdout_json(&out);
    assert_eq!(v["intact"], true);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("\"vram_sealed\"").count(), 2);
    assert_eq!(text.matches("\"vram_deallocated\"").count(), 2);

    // A different secret does not.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let s2 = secret_file(&other);
    std::fs::write(&s2, b"another-secret-another-secret-another-secret").unwrap();
    audit_verify(&s2, &log, &[]).assert().code(1);
}

#[test]
fn tampered_audit_log_is_found_at_the_right_line() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let a = write_file(dir.path(), "a.bin", &model(100_000));
    let log = dir.path().join("audit.jsonl");
    seal(&s, &["--quiet", "--device", "mock"])
        .arg("--audit-log")
        .arg(&log)
        .arg(&a)
        .assert()
        .success();
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let target = lines
        .iter()
        .position(|l| l.contains("\"vram_sealed\""))
        .unwrap();
    lines[target] = lines[target].replace("\"vram_bytes\":100000", "\"vram_bytes\":100001");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let out = audit_verify(&s, &log, &["--json"]).output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(1));
    let v = stdout_json(&out);
    assert_eq!(v["intact"], false);
    let lines_found: Vec<u64> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines_found.first().copied(), Some(target as u64 + 1), "{v}");
    // Plain output names the line too.
    let out = audit_verify(&s, &log, &[]).output_within(common::PATIENCE);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!(":{}:", target + 1)));
}

#[test]
fn expect_sha256_mismatch_exits_1_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let a = write_file(dir.path(), "a.bin", &model(50_000));
    let log = dir.path().join("audit.jsonl");
    let out = vram()
        .args([
            "seal",
            "--device",
            "mock",
            "--expect-sha256",
            &"ab".repeat(32),
            "--secret-file",
        ])
        .arg(&s)
        .arg("--audit-log")
        .arg(&log)
        .arg(&a)
        .output_within(common::PATIENCE);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected SHA-256"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("\"seal_failed\""), "{text}");
    assert!(!text.contains("\"vram_sealed\""));
    // The right digest seals.
    let sha = ring::digest::digest(&ring::digest::SHA256, &model(50_000));
    let hex: String = sha.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    vram()
        .args([
            "seal",
            "--quiet",
            "--device",
            "mock",
            "--expect-sha256",
            &hex,
            "--secret-file",
        ])
        .arg(&s)
        .arg(&a)
        .assert()
        .success();
}

#[test]
fn secret_problems_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.bin", &model(1000));
    // No secret anywhere.
    let out = vram()
        .args(["seal", "--device", "mock"])
        .arg(&a)
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--secret-file"));
    // Too permissive.
    let loose = write_file(dir.path(), "loose.secret", &[7u8; 40]);
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = seal(&loose, &["--device", "mock"])
        .arg(&a)
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too open"));
    // From the environment variable.
    let s = secret_file(dir.path());
    vram()
        .args(["seal", "--quiet", "--device", "mock"])
        .env("VRAM_SECRET_FILE", &s)
        .arg(&a)
        .assert()
        .success();
    // From a systemd credentials directory.
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::copy(&s, creds.join("vram-worker-secret")).unwrap();
    vram()
        .args(["seal", "--quiet", "--device", "mock"])
        .env("CREDENTIALS_DIRECTORY", &creds)
        .arg(&a)
        .assert()
        .success();
}

#[test]
fn cuda_device_without_a_driver_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let a = write_file(dir.path(), "a.bin", &model(1000));
    let out = seal(&s, &["--device", "cuda:0"])
        .arg(&a)
        .output_within(common::PATIENCE);
    // Either there is no driver (3) or, on a GPU machine, it seals (0).
    let code = out.status.code();
    assert!(code == Some(3) || code == Some(0), "{code:?}");
    if code == Some(3) {
        loud(format_args!(
            "NO CUDA DEVICE: `--device cuda:0` correctly refused; the CUDA path was not exercised"
        ));
    }
}

#[test]
fn malformed_audit_logs_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let junk = write_file(dir.path(), "junk.jsonl", b"this is not json\n{\"v\":1}\n");
    let junk = junk.to_str().unwrap();
    for (extra, log, code) in [
        (&[][..], junk, 1),
        (&["--checkpoint", "nope"], junk, 2),
        (&[], "/no/such/log", 2),
    ] {
        vram()
            .args(["audit", "verify"])
            .args(extra)
            .arg("--secret-file")
            .arg(&s)
            .arg(log)
            .assert()
            .code(code);
    }
}

#[test]
fn demo_runs_to_a_successful_summary() {
    let out = vram()
        .args(["demo", "--size", "8MiB", "--json"])
        .output_within(common::PATIENCE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    assert_eq!(v["ok"], true);
    let steps = v["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["ok"] == true));
    assert!(steps.iter().any(|s| s["step"] == "corruption detected"));
    vram().args(["demo", "--size", "0"]).assert().code(2);
}

#[test]
fn hold_keeps_shards_until_sigterm_then_releases_them_audited() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let a = write_file(dir.path(), "a.bin", &model(3 << 20));
    let log = dir.path().join("audit.jsonl");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("vram"))
        .env("VRAM_RESIDENCY_FORCE_MOCK", "1")
        .args([
            "seal",
            "--device",
            "mock",
            "--hold",
            "--scrub-rate",
            "64MiB",
            "--secret-file",
        ])
        .arg(&s)
        .arg("--audit-log")
        .arg(&log)
        .arg(&a)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = common::line_channel(child.stderr.take().unwrap());
    // Wait (bounded) until it says it is holding.
    common::wait_for_line(&mut child, &lines, "holding 1 shard", common::PATIENCE);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .output_within(common::PATIENCE)
        .status;
    assert!(status.success());
    let exit = common::wait_within(child, common::PATIENCE).status;
    // The pipe ended with the process: every line is in the channel.
    let rest: Vec<String> = lines.iter().collect();
    assert!(exit.success(), "exit {exit:?}: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("released")), "{rest:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("\"vram_deallocated\"").count(), 1, "{text}");
    audit_verify(&s, &log, &[]).assert().success();
}

#[test]
fn bench_runs_small_and_reports_ratios_as_json() {
    let out = vram()
        .args([
            "bench",
            "--json",
            "--size",
            "1MiB",
            "--sampled-size",
            "2MiB",
        ])
        .output_within(common::PATIENCE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    assert_eq!(v["device_kind"], "mock");
    let names: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for expected in [
        "bare multi-buffer leaves, all cores (limit)",
        "tree digest from memory",
        "seal from memory",
        "sampled verify large/small",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(expected)),
            "missing {expected}: {names:?}"
        );
    }
}

/// Writes straight to the process's stderr, which the test harness does not
/// capture (it captures `eprintln!`): a check that did not run must say so in
/// every test run, not only under `--nocapture`.
fn loud(msg: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

// ---- Issue 13: inputs and outputs -------------------------------------------

/// A name that retitles a terminal (OSC 0 ... BEL) and forges a second line.
const HOSTILE: &str = "evil\u{1b}]0;pwned\u{7}\nabc  forged.bin";

fn no_raw_controls(what: &str, bytes: &[u8]) {
    assert!(
        !bytes.iter().any(|b| *b == 0x1b || *b == 0x07),
        "{what} carries raw ESC/BEL: {}",
        String::from_utf8_lossy(bytes)
    );
}

#[test]
fn hostile_file_names_are_escaped_in_human_lines_and_exact_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let f = write_file(dir.path(), HOSTILE, &model(5000));

    let out = vram().arg("digest").arg(&f).output_within(common::PATIENCE);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "one file, one line: {text:?}");
    assert!(
        text.starts_with('\\'),
        "an escaped line is marked: {text:?}"
    );
    assert!(
        text.contains(r"evil\u{1b}]0;pwned\u{7}\nabc  forged.bin"),
        "{text:?}"
    );
    no_raw_controls("digest stdout", &out.stdout);
    no_raw_controls("digest stderr", &out.stderr);

    let out = vram()
        .args(["digest", "--json"])
        .arg(&f)
        .output_within(common::PATIENCE);
    assert_eq!(
        stdout_json(&out)["file"].as_str().unwrap(),
        f.to_str().unwrap(),
        "JSON keeps the name exactly"
    );

    // The default model reference cannot be made from such a name: refused,
    // and the refusal does not echo it raw.
    let out = seal(&s, &["--device", "mock"])
        .arg(&f)
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(2));
    no_raw_controls("seal refusal", &out.stderr);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model-ref"));

    let out = vram()
        .args(["seal", "--device", "mock", "--model-ref", r"hf:org\model"])
        .arg("--secret-file")
        .arg(&s)
        .arg(&f)
        .output_within(common::PATIENCE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text:?}");
    assert!(text.starts_with("\\sealed "), "{text:?}");
    assert!(
        text.contains("/evil\\u{1b}]0;pwned\\u{7}\\nabc  forged.bin  shard "),
        "{text:?}"
    );
    no_raw_controls("seal stdout", &out.stdout);
    no_raw_controls("seal stderr", &out.stderr);

    let out = vram()
        .args([
            "seal",
            "--json",
            "--device",
            "mock",
            "--model-ref",
            r"hf:org\model",
        ])
        .arg("--secret-file")
        .arg(&s)
        .arg(&f)
        .output_within(common::PATIENCE);
    let v = stdout_json(&out);
    assert_eq!(
        v["shards"][0]["file"].as_str().unwrap(),
        f.to_str().unwrap()
    );
    assert_eq!(v["shards"][0]["model_ref"], r"hf:org\model");

    // An error about a hostile path from a lower layer is one safe line too.
    let log = dir.path().join(HOSTILE).join("audit.jsonl");
    let out = vram()
        .args([
            "seal",
            "--device",
            "mock",
            "--model-ref",
            "m",
            "--secret-file",
        ])
        .arg(&s)
        .arg("--audit-log")
        .arg(&log)
        .arg(dir.path().join("worker.secret"))
        .output_within(common::PATIENCE);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    no_raw_controls("audit log error", &out.stderr);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("vram: error:"))
            .count(),
        1,
        "{err}"
    );
    assert!(
        !err.lines().any(|l| l.starts_with("abc  forged.bin")),
        "{err}"
    );
}

#[test]
fn the_readme_secret_recipe_works_when_the_last_byte_is_a_newline() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.bin", &model(5000));
    // `head -c 32 /dev/urandom` ending in 0x0a (one run in 256 did).
    for (i, last) in [b'\n', b'\r', b' ', 0x00].into_iter().enumerate() {
        let p = dir.path().join(format!("worker{i}.secret"));
        let mut bytes: Vec<u8> = (0..31u8)
            .map(|b| b.wrapping_mul(37).wrapping_add(11))
            .collect();
        bytes.push(last);
        std::fs::write(&p, &bytes).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let out = seal(&p, &["-q", "--device", "mock"])
            .arg(&a)
            .output_within(common::PATIENCE);
        assert!(
            out.status.success(),
            "last byte {last:#04x}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A short secret is refused, and the error says how to make a good one.
    let p = dir.path().join("short.secret");
    std::fs::write(&p, b"too-short\n").unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = seal(&p, &["-q", "--device", "mock"])
        .arg(&a)
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("head -c 32 /dev/urandom"), "{err}");
}

#[test]
fn a_sample_above_the_leaf_count_is_a_full_verification_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    // 3 leaves of 4 KiB.
    let a = write_file(dir.path(), "a.bin", &model(3 * 4096));
    let out = vram()
        .args([
            "seal",
            "--device",
            "mock",
            "--leaf-size",
            "4KiB",
            "--verify",
            "sampled:4294967295",
        ])
        .arg("--secret-file")
        .arg(&s)
        .arg(&a)
        .timeout(std::time::Duration::from_secs(60))
        .output_within(common::PATIENCE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sampled:4294967295 covers all 3 leaves: full verification ok"),
        "{text}"
    );
    let out = vram()
        .args([
            "seal",
            "--json",
            "--device",
            "mock",
            "--leaf-size",
            "4KiB",
            "--verify",
            "sampled:999999",
        ])
        .arg("--secret-file")
        .arg(&s)
        .arg(&a)
        .output_within(common::PATIENCE);
    let v = stdout_json(&out);
    assert_eq!(v["shards"][0]["verify"]["policy"], "sampled:999999");
    assert_eq!(v["shards"][0]["verify"]["policy_run"], "full");
    assert_eq!(v["shards"][0]["verify"]["leaves_checked"], 3);
    // The handle's time survives jq: a string of digits.
    let at = v["shards"][0]["sealed_at"].as_str().unwrap();
    assert!(
        at.len() >= 19 && at.bytes().all(|b| b.is_ascii_digit()),
        "{at}"
    );
    vram()
        .args([
            "seal",
            "--device",
            "mock",
            "--verify",
            "sampled:0",
            "--secret-file",
        ])
        .arg(&s)
        .arg(&a)
        .assert()
        .code(2);
}

#[test]
fn a_failure_after_a_success_still_reports_what_was_sealed_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let a = write_file(dir.path(), "a.bin", &model(5000));
    // A sparse 30 GiB file: valid, but more than the 24 GiB mock holds.
    let b = dir.path().join("b-too-big.bin");
    std::fs::File::create(&b)
        .unwrap()
        .set_len(30 << 30)
        .unwrap();
    let log = dir.path().join("audit.jsonl");
    let out = seal(&s, &["--json", "--device", "mock"])
        .arg("--audit-log")
        .arg(&log)
        .arg(&a)
        .arg(&b)
        .output_within(common::PATIENCE);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 1, "{v:#}");
    assert_eq!(shards[0]["file"].as_str().unwrap(), a.to_str().unwrap());
    assert_eq!(v["error"]["file"].as_str().unwrap(), b.to_str().unwrap());
    assert_eq!(v["error"]["code"], 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("b-too-big.bin: "),
        "the message names the file: {err}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("\"vram_sealed\"").count(), 1, "{text}");
    assert!(text.contains(shards[0]["shard_id"].as_str().unwrap()));
}

#[test]
fn a_source_that_changed_is_one_error_with_one_exit_code_naming_the_file() {
    // Both directions reach the CLI as the same facade error (see
    // vram-residency/tests/inputs.rs for the truncation and the growth):
    // here, a growth the seal cannot miss, through the built binary.
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let a = write_file(dir.path(), "grows.bin", &model(64 << 20));
    let path = a.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    // Appends while the seal runs.
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            f.write_all(&[1u8; 4096]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    });
    let out = seal(&s, &["-q", "--device", "mock"])
        .arg(&a)
        .output_within(common::PATIENCE);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("grows.bin: the model source changed while it was sealed"),
        "{err}"
    );
}

#[test]
fn options_are_checked_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let a = write_file(dir.path(), "a.bin", &model(5000));
    let log = dir.path().join("audit.jsonl");
    let out = vram()
        .args([
            "seal",
            "--device",
            "mock",
            "--hold",
            "--scrub-rate",
            "0",
            "--secret-file",
        ])
        .arg(&s)
        .arg("--audit-log")
        .arg(&log)
        .arg(&a)
        .timeout(std::time::Duration::from_secs(60))
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing was sealed");
    assert!(
        !log.exists(),
        "nothing was audited: the log was never opened"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--scrub-rate"));

    let out = vram()
        .args(["bench", "--size", "1MiB", "--sampled-size", "1TiB"])
        .timeout(std::time::Duration::from_secs(60))
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "no measurement ran: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sampled-size"));
}

#[test]
fn the_mock_fallback_is_said_once_even_with_quiet_and_cuda_can_be_required() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let a = write_file(dir.path(), "a.bin", &model(5000));
    for quiet in [true, false] {
        let mut cmd = vram();
        if quiet {
            cmd.arg("-q");
        }
        let out = cmd
            .args(["seal", "--device", "auto", "--secret-file"])
            .arg(&s)
            .arg(&a)
            .output_within(common::PATIENCE);
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        let mock_lines = err
            .lines()
            .filter(|l| l.to_lowercase().contains("mock"))
            .count();
        assert_eq!(mock_lines, 1, "quiet {quiet}: {err}");
        let memory_lines = err.lines().filter(|l| l.contains("in memory")).count();
        assert_eq!(memory_lines, usize::from(!quiet), "quiet {quiet}: {err}");
    }
    let out = seal(&s, &["--device", "cuda"])
        .arg(&a)
        .output_within(common::PATIENCE);
    let code = out.status.code();
    assert!(code == Some(3) || code == Some(0), "{code:?}");
    if code == Some(3) {
        assert!(String::from_utf8_lossy(&out.stderr).contains("--device cuda"));
        loud(format_args!(
            "NO CUDA DEVICE: `--device cuda` correctly refused; the CUDA path was not exercised"
        ));
    } else {
        assert!(!String::from_utf8_lossy(&out.stdout).contains("mock:"));
    }
}

#[test]
fn no_colour_reaches_redirected_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret_file(dir.path());
    let a = write_file(dir.path(), "a.bin", &model(5000));
    for no_color in [false, true] {
        let mut cmd = vram();
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        let out = cmd
            .args(["-vv", "seal", "--device", "auto", "--secret-file"])
            .arg(&s)
            .arg(&a)
            .output_within(common::PATIENCE);
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("INFO"),
            "logs were written"
        );
        assert!(
            !out.stderr.contains(&0x1b),
            "ANSI on a pipe: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn demo_works_in_a_fresh_private_directory_and_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = vram()
            .env("TMPDIR", tmp.path())
            .args(["demo", "--size", "1MiB", "--json"])
            .output_within(common::PATIENCE);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = stdout_json(&out);
        let log = PathBuf::from(v["audit_log"].as_str().unwrap());
        assert!(log.starts_with(tmp.path()), "{log:?}");
        assert!(
            !log.parent().unwrap().exists(),
            "the run's directory is removed"
        );
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
