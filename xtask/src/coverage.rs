//! `cargo xtask coverage`: line coverage per crate, as evidence rather than a
//! target. Uses cargo-llvm-cov (needs the `llvm-tools` rustup component).

use crate::run::cargo;
use std::collections::BTreeMap;
use std::process::Stdio;

pub(crate) fn run() -> Result<(), String> {
    let probe = cargo()
        .args(["llvm-cov", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return Err(
            "cargo-llvm-cov is not installed: run `rustup component add llvm-tools` and \
             `cargo install cargo-llvm-cov --locked`, then retry"
                .into(),
        );
    }
    eprintln!("==> cargo llvm-cov --workspace (instrumented build and test run; several minutes)");
    let out = cargo()
        .args([
            "llvm-cov",
            "--workspace",
            "--exclude",
            "xtask",
            "--summary-only",
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo llvm-cov: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo llvm-cov failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // Rows: Filename Regions Missed Cover Functions Missed Executed Lines Missed Cover ...
    let mut per_crate: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(file), Some(lines), Some(missed)) = (cols.first(), cols.get(7), cols.get(8))
        else {
            continue;
        };
        let (Ok(lines), Ok(missed)) = (lines.parse::<u64>(), missed.parse::<u64>()) else {
            continue;
        };
        let krate = file.split('/').next().unwrap_or(file).to_string();
        if !krate.starts_with("vram-") {
            continue;
        }
        let entry = per_crate.entry(krate).or_insert((0, 0));
        entry.0 = entry.0.saturating_add(lines);
        entry.1 = entry.1.saturating_add(missed);
    }
    if per_crate.is_empty() {
        print!("{text}");
        return Err("could not read per-file rows from cargo llvm-cov's summary".into());
    }
    println!("\nline coverage by crate (unit, integration and doc tests on the mock device):");
    let (mut all, mut all_missed) = (0u64, 0u64);
    for (krate, (lines, missed)) in &per_crate {
        let covered = lines.saturating_sub(*missed);
        println!(
            "  {krate:<16} {:>6.1}%  ({covered}/{lines} lines)",
            pct(covered, *lines)
        );
        all = all.saturating_add(*lines);
        all_missed = all_missed.saturating_add(*missed);
    }
    let covered = all.saturating_sub(all_missed);
    println!(
        "  {:<16} {:>6.1}%  ({covered}/{all} lines)",
        "total",
        pct(covered, all)
    );
    Ok(())
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
