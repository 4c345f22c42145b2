//! Crash safety: a writer process killed at random moments loses no record it
//! reported durable, and reopening always yields a chain that verifies.
//!
//! The test binary re-runs itself as the writer: with `VRAM_AUDIT_CRASH_WRITER`
//! set, the test below becomes a loop that records events with an fsync per
//! record and prints `durable SEQ` after each `record` returns.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    clippy::unwrap_used
)]
mod common;

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use vram_audit::{
    segment_files, verify_chain, AuditEvent, AuditLog, AuditSink, Checkpoint, FailurePolicy,
    FsyncPolicy, LogOptions,
};

const WRITER_ENV: &str = "VRAM_AUDIT_CRASH_WRITER";
const TEST_NAME: &str = "killed_writers_lose_nothing_reported_durable";
const RUNS: u32 = 200;
const OPENED: &str = "<audit-writer-opened>";
const DURABLE: &str = "<audit-writer-durable>";

fn options() -> LogOptions {
    LogOptions {
        fsync: FsyncPolicy::EveryRecord,
        // Small segments, so that some kills land in the middle of a rotation.
        max_file_bytes: Some(24 << 10),
        failure: FailurePolicy::fail_closed(Duration::from_secs(1)),
        lock_wait: LogOptions::DEFAULT_LOCK_WAIT,
        ..LogOptions::default()
    }
}

/// xorshift64*: deterministic, so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn writer(path: &Path) -> ! {
    let log = AuditLog::open_file(path, key(), "crash-writer", options()).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{OPENED}").unwrap();
    out.flush().unwrap();
    let mut rng = Rng(u64::from(std::process::id()) | 1);
    // Never outlive a parent that stopped killing writers.
    let started = Instant::now();
    loop {
        if started.elapsed() > Duration::from_secs(30) {
            std::process::exit(3);
        }
        // Lines of varied length (100 B to ~4 KiB).
        let pad = "x".repeat((rng.next() % 4000) as usize);
        let receipt = log
            .record(AuditEvent::SealFailed {
                shard_id: format!("shard-{}", rng.next() % 100),
                stage: "copy".into(),
                reason: pad,
            })
            .unwrap();
        if receipt.durable {
            writeln!(out, "{DURABLE}{}", receipt.seq).unwrap();
            out.flush().unwrap();
        }
    }
}

/// Every sequence number present in the log's files.
fn seqs_in(files: &[std::path::PathBuf]) -> BTreeSet<u64> {
    let mut seqs = BTreeSet::new();
    for f in files {
        for line in read_lines(f) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            seqs.insert(v["seq"].as_u64().unwrap());
        }
    }
    seqs
}

#[test]
fn killed_writers_lose_nothing_reported_durable() {
    if let Some(path) = std::env::var_os(WRITER_ENV) {
        writer(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut durable = BTreeSet::new();
    let mut checkpoint: Option<Checkpoint> = None;
    let mut torn_written = 0;

    for run in 0..RUNS {
        let mut child = Command::new(&exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(WRITER_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let mut seen = Vec::new();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            // Only whole lines count: the kill may cut the last one short.
            while r.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
                if let Some(line) = buf.strip_suffix(b"\n") {
                    let _ = tx.send(String::from_utf8_lossy(line).into_owned());
                }
                buf.clear();
            }
        });
        if run % 5 == 0 {
            // Some kills land while the log is being opened and recovered.
            std::thread::sleep(Duration::from_micros(rng.next() % 15_000));
        } else {
            // Skip the test harness's own output up to the writer's first line
            // (which libtest may prefix with "test NAME ... ").
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) if line.ends_with(OPENED) => break,
                    Ok(line) => seen.push(line),
                    Err(e) => {
                        let _ = child.kill();
                        panic!("run {run}: writer did not open the log ({e}): {seen:?}");
                    }
                }
            }
            std::thread::sleep(Duration::from_micros(rng.next() % 20_000));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        for line in seen.into_iter().chain(rx.try_iter()) {
            if let Some((_, seq)) = line.split_once(DURABLE) {
                durable.insert(seq.parse::<u64>().unwrap());
            }
        }

        if !path.exists() {
            continue;
        }
        // A kill does not interrupt a write to a regular file, but a power loss
        // can persist part of one: now and then leave a partial line behind.
        // (Not into a segment left empty by a kill during rotation: nothing is
        // ever written there before the previous segment is closed.)
        let last = segment_files(&path).unwrap().pop().unwrap();
        if run % 7 == 3 && std::fs::metadata(&last).unwrap().len() > 0 {
            let cut = 1 + (rng.next() % 300) as usize;
            let partial = &br#"{"v":1,"seq":999999,"ts":"2030-01-01T00:00:00.000000000Z","worker":"crash-writer","event":{"type":"seal_failed","shard_id":"shard-1","stage":"copy","reason":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},"prev":""#[..];
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&last)
                .unwrap();
            f.write_all(&partial[..cut.min(partial.len())]).unwrap();
            torn_written += 1;
        }
        // Recover: reopening cuts a torn tail and must never find other damage.

        let log = AuditLog::open_file(&path, key(), "checker", options())
            .unwrap_or_else(|e| panic!("run {run}: reopen failed: {e}"));
        drop(log);
        let files = segment_files(&path).unwrap();
        let report = verify_chain(&files, &key(), checkpoint.as_ref()).unwrap();
        assert!(
            report.is_intact(),
            "run {run}: {:?}",
            &report.findings[..report.findings.len().min(5)]
        );
        let present = seqs_in(&files);
        let lost: Vec<_> = durable.difference(&present).collect();
        assert!(lost.is_empty(), "run {run}: durable records lost: {lost:?}");
        checkpoint = report.head;
    }
    assert!(
        durable.len() >= 20,
        "the writers recorded too little to test anything: {}",
        durable.len()
    );
    let files = segment_files(&path).unwrap();
    assert!(files.len() > 1, "no rotation happened: {files:?}");
    let torn_recoveries = files
        .iter()
        .flat_map(|f| read_lines(f))
        .filter(|l| l.contains("\"torn_tail_recovered\""))
        .count();
    // More than the test made when a kill lands inside a write that spans
    // pages: Linux stops copying at a page boundary once SIGKILL is pending.
    assert!(
        torn_recoveries >= torn_written,
        "{torn_recoveries} torn tails recorded, {torn_written} made by the test"
    );
    eprintln!(
        "{RUNS} kills: {} durable records, {} segments, {torn_recoveries} torn tails recovered ({torn_written} made by the test)",
        durable.len(),
        files.len()
    );
}
