//! Peak memory of the audit verifier on large damaged logs (issue 24).
//!
//! Writes two logs of `--size` bytes (default 1 GiB) under a fresh worker
//! secret: one of garbage lines (no record at all), and one of valid records
//! with every 1,000th line damaged. Each is verified in a child process, and
//! the child's peak RSS is read from `/usr/bin/time -f %M`. The child is
//! `vram audit verify --json` when `--vram PATH` is given (what an operator
//! runs), else this program itself verifying through the library with the
//! CLI's defaults. Target: under 64 MiB, whatever the log's size. Nothing here
//! asserts on time; the seconds are printed to compare runs.
//!
//! ```text
//! cargo run --release -p vram-audit --example verify_rss -- [--size 1GiB] [--dir DIR] [--vram PATH]
//! ```
// A measuring program: it reports on stdout, and counts with plain integers
// that cannot come near overflow (bytes of a file it writes).
#![allow(clippy::print_stdout, clippy::arithmetic_side_effects)]

use std::error::Error;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ring::rand::{SecureRandom, SystemRandom};
use vram_audit::{
    verify_chain_with, AuditEvent, AuditKey, AuditLog, AuditSink, FsyncPolicy, LogOptions,
    VerifyOptions,
};
use vram_secrets::WorkerSecret;

type Res<T> = Result<T, Box<dyn Error>>;

/// Damage one line in this many.
const DAMAGE_EVERY: u64 = 1000;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, log, secret] = args.as_slice() {
        if flag == "--child" {
            return child(Path::new(log), Path::new(secret));
        }
    }
    let mut size: u64 = 1 << 30;
    let mut dir = std::env::temp_dir().join("vram-verify-rss");
    let mut vram: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--size" => size = parse_size(value()?)?,
            "--dir" => dir = PathBuf::from(value()?),
            "--vram" => vram = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    fs::create_dir_all(&dir)?;
    let secret = dir.join("worker.secret");
    let _ = fs::remove_file(&secret);
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness")?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)?
        .write_all(&bytes)?;

    let garbage = dir.join("garbage.jsonl");
    let damaged = dir.join("damaged.jsonl");
    let t = Instant::now();
    write_garbage(&garbage, size)?;
    println!(
        "wrote {} ({:.1} s)",
        garbage.display(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    write_damaged(&damaged, &secret, size)?;
    println!(
        "wrote {} ({:.1} s)",
        damaged.display(),
        t.elapsed().as_secs_f64()
    );

    let verifier = match &vram {
        Some(v) => format!("{} audit verify --json", v.display()),
        None => "library child (verify_chain_with, default options)".into(),
    };
    println!("verifier: {verifier}");
    println!(
        "{:<10} {:>10} {:>9} {:>10} {:>10} {:>14} {:>8}",
        "log", "MiB", "records", "bad lines", "findings", "peak RSS MiB", "seconds"
    );
    for log in [&garbage, &damaged] {
        let rss_file = dir.join("rss.txt");
        let mut cmd = Command::new("/usr/bin/time");
        cmd.arg("-f").arg("%M").arg("-o").arg(&rss_file);
        match &vram {
            Some(v) => {
                cmd.arg(v)
                    .args(["audit", "verify", "--json", "--secret-file"])
                    .arg(&secret)
                    .arg(log);
            }
            None => {
                cmd.arg(std::env::current_exe()?)
                    .arg("--child")
                    .arg(log)
                    .arg(&secret);
            }
        }
        let t = Instant::now();
        let out = cmd.output()?;
        let secs = t.elapsed().as_secs_f64();
        // `vram audit verify` exits 1 on findings: expected here.
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "verifier output is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        // `time` writes "Command exited with non-zero status 1" first when
        // the verifier exits 1 (findings): the figure is the last line.
        let rss_text = fs::read_to_string(&rss_file)?;
        let kib: u64 = rss_text.lines().last().unwrap_or_default().trim().parse()?;
        let name = log.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        println!(
            "{:<10} {:>10} {:>9} {:>10} {:>10} {:>14.1} {:>8.1}",
            name,
            fs::metadata(log)?.len() >> 20,
            field(&v, "records"),
            field(&v, "bad_lines"),
            field(&v, "findings_total"),
            kib as f64 / 1024.0,
            secs
        );
    }
    for f in [&garbage, &damaged] {
        fs::remove_file(f)?;
    }
    let _ = fs::remove_file(dir.join("damaged.jsonl.lock"));
    let _ = fs::remove_file(dir.join("rss.txt"));
    fs::remove_file(&secret)?;
    Ok(())
}

fn field(v: &serde_json::Value, name: &str) -> u64 {
    v.get(name).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

fn audit_key(secret: &Path) -> Res<AuditKey> {
    let secret = WorkerSecret::load_file(secret)?;
    Ok(AuditKey::from_bytes(*secret.audit_key().expose_secret()))
}

/// The child: verify with the CLI's defaults, print the counts as JSON.
fn child(log: &Path, secret: &Path) -> Res<()> {
    let key = audit_key(secret)?;
    let report = verify_chain_with(&[log.to_path_buf()], &key, &VerifyOptions::default())?;
    let v = serde_json::json!({
        "records": report.records,
        "bad_lines": report.bad_lines,
        "findings_total": report.findings_total,
        "findings": report.findings,
    });
    println!("{v}");
    Ok(())
}

fn parse_size(s: &str) -> Res<u64> {
    let (num, mult) = if let Some(n) = s.strip_suffix("GiB") {
        (n, 1u64 << 30)
    } else if let Some(n) = s.strip_suffix("MiB") {
        (n, 1 << 20)
    } else {
        (s, 1)
    };
    Ok(num.parse::<u64>()? * mult)
}

/// Lines that are no records: empty, short junk, long junk, an unknown
/// version, and a well-formed record with a wrong MAC, in turn.
fn write_garbage(path: &Path, size: u64) -> Res<()> {
    let forged = r#"{"v":1,"seq":7,"ts":"2025-01-01T00:00:00.000000000Z","worker":"w","event":{"type":"log_opened","reason":"new"},"prev":"0000000000000000000000000000000000000000000000000000000000000000","mac":"0000000000000000000000000000000000000000000000000000000000000000"}"#;
    let long = "x".repeat(300);
    let patterns: [&str; 6] = [
        "",
        "garbage",
        &long,
        r#"{"v":9,"seq":1}"#,
        forged,
        "\u{1}\u{2}",
    ];
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut written = 0u64;
    let mut i = 0usize;
    while written < size {
        let line = patterns
            .get(i % patterns.len())
            .copied()
            .unwrap_or_default();
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        written += line.len() as u64 + 1;
        i = i.wrapping_add(1);
    }
    out.flush()?;
    Ok(())
}

/// Valid records up to `size` bytes, then every 1,000th line altered.
fn write_damaged(path: &Path, secret: &Path, size: u64) -> Res<()> {
    let _ = fs::remove_file(path);
    let options = LogOptions {
        fsync: FsyncPolicy::CriticalOnly,
        max_file_bytes: None,
        ..LogOptions::default()
    };
    let log = AuditLog::open_file(path, audit_key(secret)?, "bench-worker", options)?;
    let mut i = 0u64;
    loop {
        for _ in 0..10_000 {
            i += 1;
            log.record(AuditEvent::SealVerified {
                shard_id: format!("llama-70b-shard-{}", i % 64),
                gpu_device: u32::try_from(i % 8)?,
                policy: "sampled:16".into(),
                leaves_checked: 16,
                bytes_checked: 16 << 20,
            })?;
        }
        if fs::metadata(path)?.len() >= size {
            break;
        }
    }
    drop(log);
    let tmp = path.with_extension("tmp");
    {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        let reader = BufReader::with_capacity(1 << 20, File::open(path)?);
        for (n, line) in (1u64..).zip(reader.split(b'\n')) {
            let mut line = line?;
            if n % DAMAGE_EVERY == 0 {
                let mid = line.len() / 2;
                if let Some(b) = line.get_mut(mid) {
                    *b = if *b == b'X' { b'Y' } else { b'X' };
                }
            }
            out.write_all(&line)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    fs::rename(&tmp, path)?;
    Ok(())
}
