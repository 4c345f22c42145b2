//! The audit log under real operating conditions, through the `vram` binary:
//! many processes on one log, a disk that fills up, paths that point at the
//! wrong file, an empty log.
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

use common::{bin, text, vram_process as vram};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn secret_file(dir: &Path) -> PathBuf {
    common::secret_file_with(
        dir,
        "worker.secret",
        b"0123456789abcdef0123456789abcdef-audit-test",
    )
}

fn model_file(dir: &Path, name: &str, len: usize, seed: u8) -> PathBuf {
    let p = dir.join(name);
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    std::fs::write(&p, bytes).unwrap();
    p
}

fn seal_args(c: &mut Command, secret: &Path, log: &Path, model: &Path) {
    c.args([
        "seal",
        "--quiet",
        "--json",
        "--device",
        "mock",
        "--secret-file",
    ])
    .arg(secret)
    .arg("--audit-log")
    .arg(log)
    .arg(model);
}

/// Nothing on stdout but, under `--json`, the error as JSON (no shards).
fn nothing_sealed(out: &Output) -> bool {
    if out.stdout.is_empty() {
        return true;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["error"]["code"] == 3 && v["shards"].as_array().is_none_or(Vec::is_empty)
}

fn verify(secret: &Path, log: &Path, extra: &[&str]) -> Output {
    vram()
        .args(["audit", "verify", "--secret-file"])
        .arg(secret)
        .args(extra)
        .arg(log)
        .output_within(common::PATIENCE)
}

/// Records of the log as JSON values.
fn records(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn eight_processes_sealing_onto_one_log_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let log = dir.path().join("audit.jsonl");
    let mut succeeded = Vec::new();
    for round in 0..3 {
        let children: Vec<_> = (0..8u8)
            .map(|i| {
                let name = format!("m{round}-{i}.bin");
                let model = model_file(dir.path(), &name, 64 * 1024 + usize::from(i), i);
                let mut c = vram();
                seal_args(&mut c, &secret, &log, &model);
                let child = c
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                (name, child)
            })
            .collect();
        for (name, child) in children {
            let out = common::wait_within(child, common::PATIENCE);
            match out.status.code() {
                Some(0) => {
                    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                    let shard = v["shards"][0]["shard_id"].as_str().unwrap().to_owned();
                    succeeded.push((format!("file:{name}"), shard));
                }
                // Refused, never forked: the lock was held past its wait.
                Some(3) => assert!(
                    text(&out.stderr).contains("in use by another writer"),
                    "{name}: {}",
                    text(&out.stderr)
                ),
                other => panic!("{name}: exit {other:?}: {}", text(&out.stderr)),
            }
        }
    }
    assert!(!succeeded.is_empty(), "no run succeeded");

    let out = verify(&secret, &log, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("intact"),
        "{}",
        text(&out.stdout)
    );

    let recs = records(&log);
    let has = |ty: &str, field: &str, value: &str| {
        recs.iter()
            .any(|r| r["event"]["type"] == ty && r["event"][field] == value)
    };
    for (model_ref, shard) in &succeeded {
        assert!(
            has("vram_sealed", "shard_id", shard),
            "{model_ref}: no vram_sealed"
        );
        assert!(has("vram_sealed", "model_ref", model_ref), "{model_ref}");
        assert!(has("seal_verified", "shard_id", shard), "{model_ref}");
        assert!(has("vram_deallocated", "shard_id", shard), "{model_ref}");
    }
    // One genesis record, at the start; every other process continued it.
    let created = recs
        .iter()
        .filter(|r| r["event"]["type"] == "log_created")
        .count();
    assert_eq!(created, 1);
    assert_eq!(recs[0]["event"]["type"], "log_created");
}

#[test]
fn a_log_held_by_a_running_seal_is_refused_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let log = dir.path().join("audit.jsonl");
    let a = model_file(dir.path(), "a.bin", 2 << 20, 1);
    let b = model_file(dir.path(), "b.bin", 4096, 2);
    let mut holder = vram()
        .args([
            "seal",
            "--device",
            "mock",
            "--hold",
            "--scrub-rate",
            "64MiB",
        ])
        .arg("--secret-file")
        .arg(&secret)
        .arg("--audit-log")
        .arg(&log)
        .arg(&a)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = common::line_channel(holder.stderr.take().unwrap());
    common::wait_for_line(&mut holder, &lines, "holding 1 shard", common::PATIENCE);

    let mut c = vram();
    seal_args(&mut c, &secret, &log, &b);
    let out = c.output_within(common::PATIENCE);
    let kill = Command::new("kill")
        .args(["-TERM", &holder.id().to_string()])
        .output_within(common::PATIENCE)
        .status;
    assert!(kill.success());
    let exit = common::wait_within(holder, common::PATIENCE).status;
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(exit.success(), "exit {exit:?}: {rest:?}");

    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("in use by another writer"), "{err}");
    assert!(err.contains("its own log"), "{err}");
    assert!(
        nothing_sealed(&out),
        "nothing sealed: {}",
        text(&out.stdout)
    );
    assert_eq!(verify(&secret, &log, &[]).status.code(), Some(0));
}

#[test]
fn dev_full_is_refused_before_anything_is_sealed() {
    let full = Path::new("/dev/full");
    if !full.exists() {
        eprintln!("no /dev/full here; the library tests cover non-regular files");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let a = model_file(dir.path(), "a.bin", 10_000, 1);
    for json in [false, true] {
        let mut c = vram();
        c.args(["seal", "--device", "mock", "--secret-file"])
            .arg(&secret)
            .arg("--audit-log")
            .arg(full)
            .arg(&a);
        if json {
            c.arg("--json");
        }
        let out = c.output_within(common::PATIENCE);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        assert!(nothing_sealed(&out), "printed: {}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(err.contains("/dev/full"), "{err}");
        assert!(err.contains("not a regular file"), "{err}");
    }
}

#[test]
fn the_secret_and_other_files_that_are_not_logs_are_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let secret_bytes = std::fs::read(&secret).unwrap();
    let a = model_file(dir.path(), "a.bin", 10_000, 1);

    // A raw 32-byte secret of another worker (no newline at the end).
    let raw: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(53).wrapping_add(7) | 1)
        .collect();
    let raw = raw.into_iter().filter(|b| *b != b'\n').collect::<Vec<u8>>();
    let other = dir.path().join("other.secret");
    std::fs::write(&other, &raw).unwrap();
    // A hard link to our own secret, under a log-like name.
    let linked = dir.path().join("audit-link.jsonl");
    std::fs::hard_link(&secret, &linked).unwrap();
    // A symlink to a log-like name that does not exist yet.
    let symlink = dir.path().join("audit-sym.jsonl");
    std::os::unix::fs::symlink(dir.path().join("target.jsonl"), &symlink).unwrap();

    for (path, needle) in [
        (secret.clone(), "same file as"),
        (linked.clone(), "same file as"),
        (other.clone(), "not an audit log"),
        (symlink.clone(), "symlink"),
    ] {
        let mut c = vram();
        seal_args(&mut c, &secret, &path, &a);
        let out = c.output_within(common::PATIENCE);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{path:?}: {}",
            text(&out.stderr)
        );
        assert!(nothing_sealed(&out), "{path:?}: {}", text(&out.stdout));
        assert!(
            text(&out.stderr).contains(needle),
            "{path:?}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(std::fs::read(&secret).unwrap(), secret_bytes);
    assert_eq!(std::fs::read(&other).unwrap(), raw);
    assert!(!dir.path().join("target.jsonl").exists());
}

#[test]
fn an_empty_log_does_not_verify_unless_expected() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let log = dir.path().join("audit.jsonl");
    std::fs::write(&log, b"").unwrap();
    let out = verify(&secret, &log, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("empty log"),
        "{}",
        text(&out.stdout)
    );
    let out = verify(&secret, &log, &["--allow-empty"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // A real log names its genesis record.
    let a = model_file(dir.path(), "a.bin", 10_000, 1);
    let mut c = vram();
    seal_args(&mut c, &secret, &log, &a);
    assert!(c.output_within(common::PATIENCE).status.success());
    let out = verify(&secret, &log, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("log id "),
        "{}",
        text(&out.stdout)
    );
}

/// Runs `vram seal` with the file size limit (RLIMIT_FSIZE) at `limit` bytes:
/// the log's writes beyond it fail with EFBIG, as on a disk that is full.
/// SIGXFSZ is ignored (and stays ignored across exec) so that the write fails
/// instead of killing the process.
fn seal_with_file_limit(limit: u64, secret: &Path, log: &Path, model: &Path) -> Output {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("trap '' XFSZ; exec prlimit --fsize=\"$0\" -- \"$@\"")
        .arg(limit.to_string())
        .arg(bin())
        .args([
            "seal",
            "--json",
            "--quiet",
            "--device",
            "mock",
            "--secret-file",
        ])
        .arg(secret)
        .arg("--audit-log")
        .arg(log)
        .arg(model)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("VRAM_SECRET_FILE")
        .env("VRAM_RESIDENCY_FORCE_MOCK", "1");
    c.output_within(common::PATIENCE)
}

#[test]
fn a_disk_that_fills_up_never_gives_a_success_without_its_records() {
    let has_prlimit = Command::new("prlimit")
        .arg("--version")
        .try_output_within(common::PATIENCE)
        .is_ok_and(|o| o.status.success());
    if !has_prlimit {
        eprintln!("no prlimit(1) here: the facade's fault-injection tests cover this path");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let model = model_file(dir.path(), "m.bin", 100_000, 3);

    // A run with room: where each record of a seal ends in the log.
    let full_log = dir.path().join("reference.jsonl");
    let out = seal_with_file_limit(1 << 30, &secret, &full_log, &model);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let bytes = std::fs::read(&full_log).unwrap();
    let ends: Vec<u64> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i as u64 + 1)
        .collect();
    let types: Vec<String> = records(&full_log)
        .iter()
        .map(|r| r["event"]["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "log_created",
            "vram_allocated",
            "vram_sealed",
            "seal_verified",
            "vram_deallocated",
            // Written when the log is closed.
            "signed_checkpoint"
        ]
    );

    // Now with the disk full after each record in turn (a little room left,
    // less than the next record needs). The closing checkpoint is not the
    // seal's: a seal whose own records are all in succeeds without it.
    for (k, end) in ends.iter().enumerate().take(ends.len() - 1) {
        if k + 2 == ends.len() {
            let log = dir.path().join(format!("audit-{k}.jsonl"));
            let out = seal_with_file_limit(end + 40, &secret, &log, &model);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            let v = verify(&secret, &log, &[]);
            assert_eq!(v.status.code(), Some(0), "{}", text(&v.stdout));
            continue;
        }
        let log = dir.path().join(format!("audit-{k}.jsonl"));
        let out = seal_with_file_limit(end + 40, &secret, &log, &model);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let ctx = format!("room for {} record(s): {stderr}", k + 1);
        assert_eq!(out.status.code(), Some(3), "{ctx}");
        assert!(
            stderr.contains(&log.display().to_string()),
            "names the log: {ctx}"
        );
        assert!(stderr.contains("could not be written"), "{ctx}");
        if k + 1 < types.len() - 2 {
            // Until the seal's own records are in, nothing was reported
            // sealed (`--json` still reports the failure, with no shard).
            if !stdout.is_empty() {
                let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
                // Absent when the log could not even be opened.
                assert!(
                    v["shards"].as_array().is_none_or(Vec::is_empty),
                    "{ctx}: printed {stdout}"
                );
                assert_eq!(v["error"]["code"], 3, "{ctx}: printed {stdout}");
            }
        }
        // What did reach the log is whole and verifies.
        let v = verify(&secret, &log, &[]);
        assert_eq!(v.status.code(), Some(0), "{ctx}: {}", text(&v.stdout));
    }
}

/// Issue 24: a log with thousands of bad lines gives a bounded report (at most
/// `--max-findings` in full, the rest counted), one valid JSON document, and
/// an exact verdict; issue 20: the head is never taken from after the damage,
/// and a checkpoint names its log.
#[test]
fn a_hostile_log_gives_a_bounded_report_with_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let log = dir.path().join("audit.jsonl");
    let a = model_file(dir.path(), "a.bin", 10_000, 1);
    let mut c = vram();
    seal_args(&mut c, &secret, &log, &a);
    assert!(c.output_within(common::PATIENCE).status.success());
    let out = verify(&secret, &log, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let head = v["head"].as_str().unwrap().to_owned();
    let log_id = v["log_id"].as_str().unwrap().to_owned();
    assert_eq!(v["format"], 2);
    // SEQ:HASH:LOG_ID, and the old SEQ:HASH form is still accepted.
    assert!(head.ends_with(&format!(":{log_id}")), "{head}");
    let short = head.rsplit_once(':').unwrap().0.to_owned();
    for cp in [&head, &short] {
        let out = verify(&secret, &log, &["--checkpoint", cp]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    }
    let other_id = head.replace(&log_id, &"0".repeat(32));
    let out = verify(&secret, &log, &["--checkpoint", &other_id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("checkpoint is for log"),
        "{}",
        text(&out.stdout)
    );

    // 3000 bad lines whose kind alternates (no run to collapse; the last one
    // is malformed), then 2000 more malformed ones, which extend its run.
    let records_before = records(&log).len();
    let mut bytes = std::fs::read(&log).unwrap();
    let forged = r#"{"v":1,"seq":9,"ts":"t","worker":"w","event":{"type":"log_opened","reason":"x"},"prev":"0000000000000000000000000000000000000000000000000000000000000000","mac":"0000000000000000000000000000000000000000000000000000000000000000"}"#;
    for i in 0..3000 {
        bytes.extend_from_slice(if i % 2 == 0 {
            forged.as_bytes()
        } else {
            b"junk"
        });
        bytes.push(b'\n');
    }
    for _ in 0..2000 {
        bytes.extend_from_slice(b"\x01garbage\n");
    }
    std::fs::write(&log, &bytes).unwrap();
    let out = verify(&secret, &log, &["--json", "--max-findings", "7"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["intact"], false);
    assert_eq!(v["records"], records_before);
    assert_eq!(v["bad_lines"], 5000);
    assert_eq!(v["findings_total"], 3000);
    assert_eq!(v["findings_omitted"], 3000 - 7);
    assert_eq!(v["findings"].as_array().unwrap().len(), 7);
    assert_eq!(v["head"].as_str(), Some(head.as_str()));

    let out = verify(&secret, &log, &["--max-findings", "3"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out.stdout);
    assert_eq!(
        t.lines().filter(|l| l.contains("audit.jsonl:")).count(),
        3,
        "{t}"
    );
    assert!(t.contains("2997 more finding(s) not shown"), "{t}");
    assert!(t.contains("NOT INTACT: 3000 finding(s)"), "{t}");
}

fn seal_once(secret: &Path, log: &Path, model: &Path) -> serde_json::Value {
    let mut c = vram();
    seal_args(&mut c, secret, log, model);
    let out = c.output_within(common::PATIENCE);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn head(secret: &Path, log: &Path) -> Output {
    vram()
        .args(["audit", "head", "--secret-file"])
        .arg(secret)
        .arg(log)
        .output_within(common::PATIENCE)
}

/// `vram audit head` prints exactly what `--checkpoint` takes; stored off the
/// machine, it still verifies after more records are appended, and catches
/// a tail cut off later.
#[test]
fn the_printed_head_is_a_checkpoint_that_catches_a_cut_tail() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let log = dir.path().join("audit.jsonl");
    let model = model_file(dir.path(), "m.bin", 20_000, 1);
    seal_once(&secret, &log, &model);
    let out = head(&secret, &log);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let checkpoint = printed.trim_end();
    assert_eq!(printed, format!("{checkpoint}\n"), "one line");
    let parts: Vec<&str> = checkpoint.split(':').collect();
    assert_eq!(parts.len(), 3, "SEQ:HASH:LOG_ID: {checkpoint}");
    let seq: usize = parts[0].parse().unwrap();
    assert_eq!(seq, records(&log).len(), "the head is the last record");
    assert_eq!((parts[1].len(), parts[2].len()), (64, 32));

    // More records: the stored head still verifies.
    seal_once(&secret, &log, &model);
    assert!(records(&log).len() > seq);
    let v = verify(&secret, &log, &["--checkpoint", checkpoint]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stdout));

    // The tail cut back to before the stored head: verify says so.
    let kept: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .take(seq - 1)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&log, kept.concat()).unwrap();
    let v = verify(&secret, &log, &["--checkpoint", checkpoint]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v.stdout));
    assert!(
        text(&v.stdout).to_lowercase().contains("truncat"),
        "{}",
        text(&v.stdout)
    );

    // A broken chain has no head to print: exit 1, findings on stderr.
    let mut lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines[1] = lines[1].replacen("\"seq\":2", "\"seq\":7", 1);
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let out = head(&secret, &log);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("audit.jsonl:2:"),
        "{}",
        text(&out.stderr)
    );
    // And none without the secret.
    let out = vram()
        .args(["audit", "head"])
        .arg(&log)
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(3));
}

fn show(log: &Path, args: &[&str]) -> Output {
    vram()
        .args(["audit", "show"])
        .args(args)
        .arg(log)
        .output_within(common::PATIENCE)
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn audit_show_lists_filters_verifies_and_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let secret_arg = secret.to_str().unwrap();
    let log = dir.path().join("audit.jsonl");
    let a = model_file(dir.path(), "a.bin", 20_000, 1);
    let b = model_file(dir.path(), "b.bin", 20_000, 2);
    let sealed = seal_once(&secret, &log, &a);
    seal_once(&secret, &log, &b);
    let shard = sealed["shards"][0]["shard_id"].as_str().unwrap().to_owned();
    let total = records(&log).len();

    // Without the secret: every record, and a loud note on stderr.
    let out = show(&log, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("UNVERIFIED"),
        "{}",
        text(&out.stderr)
    );
    let table = text(&out.stdout);
    assert_eq!(
        table.lines().count(),
        total + 1,
        "a header and a row each: {table}"
    );
    assert!(table.lines().next().unwrap().contains("SEQ"));
    assert!(
        table.contains("vram_sealed") && table.contains(&shard),
        "{table}"
    );

    // Verified, as JSON lines, filtered by event type.
    let out = show(
        &log,
        &[
            "--json",
            "--secret-file",
            secret_arg,
            "--event",
            "vram_sealed",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("UNVERIFIED"));
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!(r["event"]["type"], "vram_sealed");
        assert_eq!(r["authentic"], true);
    }
    let out = show(
        &log,
        &[
            "--json",
            "--event",
            "vram_sealed",
            "--event",
            "vram_deallocated",
        ],
    );
    assert_eq!(json_lines(&out).len(), 4);
    // By shard: only that shard's records, at least its seal and release.
    let rows = json_lines(&show(&log, &["--json", "--shard", &shard]));
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r["event"]["shard_id"] == shard.as_str()));
    // By time, compared as the records store it.
    let first_ts = json_lines(&show(&log, &["--json"]))[0]["ts"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        json_lines(&show(&log, &["--json", "--since", "2000-01-01"])).len(),
        total
    );
    assert_eq!(
        json_lines(&show(&log, &["--json", "--until", "2000-01-01"])).len(),
        0
    );
    assert_eq!(
        json_lines(&show(&log, &["--json", "--since", "2999-01-01T00:00:00Z"])).len(),
        0
    );
    assert_eq!(
        json_lines(&show(&log, &["--json", "--until", &first_ts])).len(),
        0,
        "--until is exclusive"
    );
    let out = show(&log, &["--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2));

    // A forged record with hostile fields: escaped in the table, caught with
    // the secret.
    let hostile = r#"{"v":2,"log":"00000000000000000000000000000000","seq":999,"ts":"2026-01-01T00:00:00.000000000Z","worker":"evil\u001b]0;pwned\u0007\nforged","event":{"type":"vram_allocated","shard_id":"s\u001b[31m","gpu_device":0,"bytes":1},"prev":"0000000000000000000000000000000000000000000000000000000000000000","mac":"0000000000000000000000000000000000000000000000000000000000000000"}"#;
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    writeln!(f, "{hostile}").unwrap();
    let out = show(&log, &[]);
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out.stdout);
    assert_eq!(table.lines().count(), total + 2, "{table}");
    assert!(
        !out.stdout.iter().any(|b| *b == 0x1b || *b == 0x07),
        "{table}"
    );
    assert!(table.contains(r"evil\u{1b}]0;pwned"), "{table}");
    let out = show(&log, &["--secret-file", secret_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let last = text(&out.stdout).lines().last().unwrap().to_owned();
    assert!(last.contains("BAD"), "{last}");
    let out = show(&log, &["--json", "--secret-file", secret_arg]);
    assert_eq!(out.status.code(), Some(1));
    let rows = json_lines(&out);
    assert_eq!(rows[rows.len() - 2]["authentic"], false);
    assert_eq!(rows[rows.len() - 1]["error"]["class"], "integrity");
}

/// `line` (a record of the log) with its event replaced by `event`, signed
/// again under the log's audit key as docs/audit-log.md specifies (what a
/// newer writer with the same secret writes).
fn resigned_with_event(secret: &Path, line: &str, event: &str) -> String {
    let key = vram_secrets::WorkerSecret::load_file(secret)
        .unwrap()
        .audit_key();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.expose_secret());
    let open = r#","event":"#;
    let start = line.find(open).unwrap() + open.len();
    let end = line.rfind(r#","prev":""#).unwrap();
    let body = format!("{}{event}{}", &line[..start], &line[end..line.len() - 74]);
    let mac = ring::hmac::sign(&key, body.as_bytes());
    let mac: String = mac.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!(r#"{body},"mac":"{mac}"}}"#)
}

/// Forward compatibility through the binary: a record of an event type this
/// `vram` does not know, authentic and linked, leaves the log intact and is
/// noted (its type escaped) by `audit verify` (text and JSON) and shown by
/// `audit show`; the same record with a MAC bit flipped is still refused.
#[test]
fn a_record_of_an_unknown_event_type_is_noted_not_a_finding() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let secret_arg = secret.to_str().unwrap();
    let log = dir.path().join("audit.jsonl");
    let a = model_file(dir.path(), "a.bin", 10_000, 1);
    seal_once(&secret, &log, &a);
    let text_of_log = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = text_of_log.lines().map(str::to_owned).collect();
    let total = lines.len();
    let future = r#"{"type":"from_the_future\u001b[31m","x":1}"#;
    let last = lines.pop().unwrap();
    lines.push(resigned_with_event(&secret, &last, future));
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();

    let out = verify(&secret, &log, &[]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{t}{}", text(&out.stderr));
    assert!(
        t.contains(r"note: 1 record(s) of event types this build does not know: from_the_future\u{1b}[31m (written by a newer version?"),
        "{t}"
    );
    assert!(t.contains(&format!("intact: {total} record(s)")), "{t}");
    assert!(!out.stdout.contains(&0x1b), "{t}");

    let out = verify(&secret, &log, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["intact"], true);
    assert_eq!(
        v["unknown_event_types"],
        serde_json::json!({"records": 1, "types": [r"from_the_future\u{1b}[31m"], "more_types": false})
    );

    let out = show(&log, &["--secret-file", secret_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let row = text(&out.stdout).lines().last().unwrap().to_owned();
    assert!(row.contains(r"from_the_future\u{1b}[31m"), "{row}");
    assert!(
        row.contains("ok   (event type unknown to this build) x=1"),
        "{row}"
    );
    assert!(!out.stdout.contains(&0x1b), "{row}");
    assert!(
        text(&out.stderr).contains("vram: note: 1 record(s) of event types"),
        "{}",
        text(&out.stderr)
    );
    let rows = json_lines(&show(&log, &["--json", "--secret-file", secret_arg]));
    assert_eq!(rows.len(), total);
    assert_eq!(
        rows[total - 1]["event"],
        serde_json::json!({"type": "from_the_future\u{1b}[31m", "x": 1})
    );
    assert_eq!(rows[total - 1]["authentic"], true);

    // One MAC bit flipped: refused as before.
    let signed = lines.pop().unwrap();
    let at = signed.len() - 3;
    let digit = u8::from_str_radix(&signed[at..at + 1], 16).unwrap();
    lines.push(format!(
        "{}{:x}{}",
        &signed[..at],
        digit ^ 1,
        &signed[at + 1..]
    ));
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let out = verify(&secret, &log, &[]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("bad MAC"), "{t}");
    assert!(!t.contains("note:"), "{t}");
}
