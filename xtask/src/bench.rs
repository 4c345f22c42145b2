//! `cargo xtask bench`: throughput figures reported as ratios against baselines
//! measured in the same run. Nothing here asserts on time.

use crate::run::{cargo, root, step};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut size = "1GiB".to_string();
    let mut audit_size = "1GiB".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size" => size = it.next().ok_or("--size needs a value")?.clone(),
            "--audit-size" => {
                audit_size = it.next().ok_or("--audit-size needs a value")?.clone();
            }
            other => return Err(format!("unknown bench argument `{other}`")),
        }
    }
    step(
        "build vram (release)",
        cargo().args(["build", "--release", "--locked", "-p", "vram-cli"]),
    )?;
    let vram = root().join("target").join("release").join("vram");
    step(
        "vram bench (in-process figures)",
        Command::new(&vram).args(["bench", "--size", &size]),
    )?;

    // Whole-process comparison on the same file: what an operator would see.
    let dir = root().join("target").join("bench-data");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let file = dir.join("model.bin");
    let bytes = parse_size(&size)?;
    write_pseudo_random(&file, bytes)?;
    // Warm the page cache so both tools read from memory.
    time_cmd(
        Command::new("cat")
            .arg(&file)
            .stdout(std::process::Stdio::null()),
    )?;
    let t_sha = time_cmd(
        Command::new("sha256sum")
            .arg(&file)
            .stdout(std::process::Stdio::null()),
    )?;
    // Best of three: the figure least disturbed by other work on the machine.
    let mut t_vram = f64::MAX;
    for _ in 0..3 {
        t_vram = t_vram.min(time_cmd(
            Command::new(&vram)
                .args(["digest", "--quiet"])
                .arg(&file)
                .stdout(std::process::Stdio::null()),
        )?);
    }
    let t_vram_sha = time_cmd(
        Command::new(&vram)
            .args(["digest", "--quiet", "--sha256"])
            .arg(&file)
            .stdout(std::process::Stdio::null()),
    )?;
    let gb = bytes as f64 / 1e9;
    println!("\nwhole-process, {size} file in page cache (same run; vram digest best of 3):");
    println!(
        "  sha256sum                 {:>7.3} s  {:>6.2} GB/s",
        t_sha,
        gb / t_sha
    );
    println!(
        "  vram digest               {:>7.3} s  {:>6.2} GB/s  {:>5.1}x sha256sum",
        t_vram,
        gb / t_vram,
        t_sha / t_vram
    );
    println!(
        "  vram digest --sha256      {:>7.3} s  {:>6.2} GB/s  {:>5.1}x sha256sum",
        t_vram_sha,
        gb / t_vram_sha,
        t_sha / t_vram_sha
    );
    // BLAKE3, what a user who wants a fast file hash picks (not required).
    let b3 = Command::new("b3sum")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if b3 {
        let mut t_b3 = f64::MAX;
        for _ in 0..3 {
            t_b3 = t_b3.min(time_cmd(
                Command::new("b3sum")
                    .arg(&file)
                    .stdout(std::process::Stdio::null()),
            )?);
        }
        println!(
            "  b3sum (best of 3)         {:>7.3} s  {:>6.2} GB/s  vram digest is {:.2}x its rate",
            t_b3,
            gb / t_b3,
            t_b3 / t_vram
        );
    } else {
        println!("  b3sum not installed (apt-get install b3sum): no BLAKE3 baseline");
    }
    // What a user on a machine without a GPU runs: a fresh process sealing
    // the file on the mock, first touch of its memory included.
    let secret = dir.join("bench.secret");
    write_secret(&secret)?;
    let mut seals = Vec::new();
    for _ in 0..5 {
        seals.push(time_cmd(
            Command::new(&vram)
                .args([
                    "seal",
                    "--quiet",
                    "--device",
                    "mock",
                    "--verify",
                    "sampled:16",
                ])
                .arg("--secret-file")
                .arg(&secret)
                .arg(&file)
                .stdout(std::process::Stdio::null()),
        )?);
    }
    seals.sort_by(f64::total_cmp);
    let median = seals.get(2).copied().unwrap_or(f64::MAX);
    let (lo, hi) = (
        seals.first().copied().unwrap_or(0.0),
        seals.last().copied().unwrap_or(0.0),
    );
    println!(
        "  vram seal --device mock   {:>7.3} s  {:>6.2} GB/s  {:>5.2}x vram digest's rate (median of 5, {lo:.3}-{hi:.3} s)",
        median,
        gb / median,
        t_vram / median
    );
    let _ = std::fs::remove_file(&secret);
    let _ = std::fs::remove_file(&file);

    // Issue 24: `vram audit verify`'s peak RSS on a log of garbage lines and on
    // a log of valid records with every 1,000th line damaged (target < 64 MiB).
    step(
        "audit verifier peak RSS (vram audit verify, /usr/bin/time)",
        cargo()
            .args([
                "run",
                "--release",
                "--locked",
                "-p",
                "vram-audit",
                "--example",
                "verify_rss",
                "--",
                "--size",
                &audit_size,
                "--dir",
            ])
            .arg(dir.join("audit"))
            .arg("--vram")
            .arg(&vram),
    )?;
    Ok(())
}

/// A fresh 32-byte worker secret, owner-only.
fn write_secret(path: &Path) -> Result<(), String> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(|e| format!("/dev/urandom: {e}"))?,
        &mut bytes,
    )
    .map_err(|e| format!("/dev/urandom: {e}"))?;
    f.write_all(&bytes)
        .map_err(|e| format!("write {}: {e}", path.display()))
}

pub(crate) fn criterion() -> Result<(), String> {
    step(
        "criterion benches",
        cargo().args(["bench", "--locked", "-p", "vram-crypto"]),
    )
}

fn time_cmd(cmd: &mut Command) -> Result<f64, String> {
    let start = Instant::now();
    let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}"));
    }
    Ok(start.elapsed().as_secs_f64())
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix("GiB") {
        (n, 1u64 << 30)
    } else if let Some(n) = s.strip_suffix("MiB") {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix("KiB") {
        (n, 1 << 10)
    } else {
        (s, 1)
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("bad size `{s}`"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{s}` overflows"))
}

/// Writes `len` bytes of cheap, incompressible-looking data (xorshift).
fn write_pseudo_random(path: &Path, len: u64) -> Result<(), String> {
    use std::io::Write;
    let f = std::fs::File::create(path).map_err(|e| format!("create {}: {e}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let part = buf.get(..n).ok_or("buffer bounds")?;
        w.write_all(part)
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        left = left.saturating_sub(n as u64);
    }
    w.flush()
        .map_err(|e| format!("write {}: {e}", path.display()))
}
