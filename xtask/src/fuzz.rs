//! `cargo xtask fuzz`: runs the cargo-fuzz (libFuzzer) targets in `fuzz/`
//! for a fixed time each, starting from the committed seeds, and reports
//! executions and crashes per target.
//!
//! Not part of `ci`: it needs cargo-fuzz and a C++ compiler, and on a stable
//! toolchain `RUSTC_BOOTSTRAP=1` for the sanitizer flags (set here).

use crate::run::{cargo, root};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

/// Every target in `fuzz/Cargo.toml`, in the order they run.
const TARGETS: &[&str] = &[
    "validation",
    "audit_verify",
    "audit_record",
    "tree",
    "cli_args",
    "signing_bundle",
    "model_header",
];

const DEFAULT_SECONDS: u64 = 30;

const INSTALL_HINT: &str = "\
cargo-fuzz is not installed (`cargo fuzz` is not a cargo command here).
Install it with:
    cargo install cargo-fuzz --locked
It also needs a C++ compiler (g++ or clang++) to build libFuzzer. On a stable
toolchain the sanitizer flags need RUSTC_BOOTSTRAP=1, which `cargo xtask fuzz`
sets; see fuzz/README.md.";

#[derive(Debug, PartialEq, Eq)]
struct Options {
    seconds: u64,
    targets: Vec<&'static str>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut seconds = DEFAULT_SECONDS;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a value")?;
                seconds =
                    v.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("--seconds: expected a whole number >= 1, got `{v}`")
                    })?;
            }
            "--target" => {
                let v = it.next().ok_or("--target needs a value")?;
                let t = TARGETS.iter().find(|t| **t == v.as_str()).ok_or_else(|| {
                    format!("unknown fuzz target `{v}`; targets: {}", TARGETS.join(", "))
                })?;
                if !targets.contains(t) {
                    targets.push(*t);
                }
            }
            other => return Err(format!("unknown fuzz argument `{other}`")),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    Ok(Options { seconds, targets })
}

/// What one libFuzzer run reported.
#[derive(Debug, Default, PartialEq, Eq)]
struct Stats {
    /// Inputs executed (`stat::number_of_executed_units`, printed also after a
    /// crash, else `Done N runs`).
    runs: Option<u64>,
    /// Seconds libFuzzer says it ran (`Done N runs in S second(s)`).
    seconds: Option<u64>,
    /// Inputs written as crash, timeout or out-of-memory reproducers.
    crash_files: Vec<String>,
}

fn parse_log(log: &str) -> Stats {
    let mut stats = Stats::default();
    for line in log.lines() {
        if let Some(v) = line
            .strip_prefix("stat::number_of_executed_units:")
            .or_else(|| line.strip_prefix("stat::number_of_executed_runs:"))
        {
            stats.runs = v.trim().parse().ok().or(stats.runs);
        } else if let Some(v) = line.strip_prefix("Done ") {
            // `Done 412587 runs in 11 second(s)`
            let mut words = v.split_whitespace();
            let runs = words.next().and_then(|w| w.parse().ok());
            let secs = words.nth(2).and_then(|w| w.parse().ok());
            if stats.runs.is_none() {
                stats.runs = runs;
            }
            stats.seconds = secs.or(stats.seconds);
        } else if let Some((_, path)) = line.split_once("Test unit written to ") {
            stats.crash_files.push(path.trim().to_string());
        }
    }
    stats
}

/// Whether `cargo fuzz` can run at all.
fn cargo_fuzz_available() -> bool {
    cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Outcome {
    target: &'static str,
    stats: Stats,
    wall_secs: f64,
    log: PathBuf,
}

fn run_target(fuzz_dir: &Path, target: &'static str, seconds: u64) -> Result<Outcome, String> {
    let corpus = fuzz_dir.join("corpus").join(target);
    let seeds = fuzz_dir.join("seeds").join(target);
    std::fs::create_dir_all(&corpus).map_err(|e| format!("create {}: {e}", corpus.display()))?;
    if !seeds.is_dir() {
        return Err(format!("no seed directory {}", seeds.display()));
    }
    let logs = fuzz_dir.join("target").join("xtask-logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("create {}: {e}", logs.display()))?;
    let log = logs.join(format!("{target}.log"));
    let out = File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("open {}: {e}", log.display()))?;

    eprintln!(
        "==> fuzz {target}: {seconds} s (log: {})",
        log.strip_prefix(root()).unwrap_or(&log).display()
    );
    let start = Instant::now();
    let status = cargo()
        .args(["fuzz", "run", target])
        .arg(&corpus)
        .arg(&seeds)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-print_final_stats=1",
        ])
        .env("RUSTC_BOOTSTRAP", "1")
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("`cargo fuzz run {target}` could not start: {e}"))?;
    let wall_secs = start.elapsed().as_secs_f64();
    let text = std::fs::read(&log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| format!("read {}: {e}", log.display()))?;
    let stats = parse_log(&text);
    if !status.success() && stats.crash_files.is_empty() {
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "`cargo fuzz run {target}` failed ({status}) without reporting a crash \
             (did the build fail?); last lines of {}:\n{}",
            log.display(),
            tail.join("\n")
        ));
    }
    Ok(Outcome {
        target,
        stats,
        wall_secs,
        log,
    })
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let opts = parse_args(args)?;
    if !cargo_fuzz_available() {
        return Err(INSTALL_HINT.to_string());
    }
    let fuzz_dir = root().join("fuzz");
    let mut outcomes = Vec::new();
    for target in &opts.targets {
        outcomes.push(run_target(&fuzz_dir, target, opts.seconds)?);
    }

    println!(
        "\n{:<14} {:>12} {:>8} {:>8}  crashes",
        "target", "executions", "fuzzed", "wall"
    );
    let mut crashed = Vec::new();
    for o in &outcomes {
        let runs = o.stats.runs.map_or("?".to_string(), |r| r.to_string());
        let secs = o
            .stats
            .seconds
            .map_or("?".to_string(), |s| format!("{s} s"));
        println!(
            "{:<14} {:>12} {:>8} {:>6.0} s  {}",
            o.target,
            runs,
            secs,
            o.wall_secs,
            o.stats.crash_files.len()
        );
        for f in &o.stats.crash_files {
            println!("    reproducer: {f}");
        }
        if !o.stats.crash_files.is_empty() {
            crashed.push(o);
        }
    }
    if crashed.is_empty() {
        return Ok(());
    }
    let mut msg = String::from("fuzzing found crashes:");
    for o in crashed {
        msg.push_str(&format!(
            "\n  {}: see {}; reproduce with\n    RUSTC_BOOTSTRAP=1 cargo fuzz run {} {}",
            o.target,
            o.log.display(),
            o.target,
            o.stats.crash_files.first().map_or("", String::as_str)
        ));
    }
    Err(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parse_args(&[]).unwrap(),
            Options {
                seconds: 30,
                targets: TARGETS.to_vec()
            }
        );
        assert_eq!(
            parse_args(&args(&[
                "--seconds",
                "5",
                "--target",
                "tree",
                "--target",
                "tree"
            ]))
            .unwrap(),
            Options {
                seconds: 5,
                targets: vec!["tree"]
            }
        );
        for bad in [
            &["--seconds"][..],
            &["--seconds", "0"],
            &["--seconds", "-3"],
            &["--target", "nope"],
            &["--verbose"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_libfuzzer_summaries() {
        let clean = "#34511\tDONE   cov: 982 ft: 2973 corp: 400/11943b\n\
                     Done 34511 runs in 11 second(s)\n\
                     stat::number_of_executed_units: 34512\n\
                     stat::peak_rss_mb:              340\n";
        assert_eq!(
            parse_log(clean),
            Stats {
                runs: Some(34512),
                seconds: Some(11),
                crash_files: vec![]
            }
        );
        let crash = "thread '<unnamed>' panicked at fuzz_targets/tree.rs:10:5\n\
                     ==1234== ERROR: libFuzzer: deadly signal\n\
                     MS: 1 ChangeBit-; base unit: 0000\n\
                     artifact_prefix='/w/fuzz/artifacts/tree/'; Test unit written to /w/fuzz/artifacts/tree/crash-ab12\n\
                     stat::number_of_executed_units: 77\n";
        let s = parse_log(crash);
        assert_eq!(s.runs, Some(77));
        assert_eq!(s.seconds, None);
        assert_eq!(s.crash_files, ["/w/fuzz/artifacts/tree/crash-ab12"]);
        assert_eq!(parse_log("Done 12 runs in 3 second(s)\n").runs, Some(12));
        let oom = "==23088== ERROR: libFuzzer: out-of-memory (used: 71Mb; limit: 30Mb)\n\
                   artifact_prefix='/w/a/'; Test unit written to /w/a/oom-aff3\n\
                   stat::number_of_executed_units: 2964\n";
        let s = parse_log(oom);
        assert_eq!(
            (s.runs, s.crash_files),
            (Some(2964), vec!["/w/a/oom-aff3".to_string()])
        );
    }

    #[test]
    fn targets_match_the_fuzz_manifest_and_have_seeds() {
        let fuzz = root().join("fuzz");
        let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
        let declared: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|n| *n != "vram-fuzz")
            .collect();
        assert_eq!(declared, TARGETS, "fuzz/Cargo.toml [[bin]] names");
        for t in TARGETS {
            assert!(fuzz.join("fuzz_targets").join(format!("{t}.rs")).is_file());
            let seeds = std::fs::read_dir(fuzz.join("seeds").join(t))
                .unwrap()
                .count();
            assert!(seeds >= 3, "fuzz/seeds/{t} has {seeds} seeds");
        }
    }
}
