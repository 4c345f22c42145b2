//! `cargo xtask mutants [--crate C]...`: mutation testing (cargo-mutants) of
//! the security-critical files, with the score per crate.
//!
//! Not part of `ci`: it builds and tests every mutant, about 35 minutes on 2
//! cores for all five crates. Run it after changing one of the files below or
//! the tests that guard them. The exclusions (equivalent mutants, message
//! text) are in `.cargo/mutants.toml`, each with its reason. `--iterate`
//! tests only the mutants the previous run left uncaught (cargo-mutants'
//! own `--iterate`), counting the earlier catches.

use crate::run::{cargo, root};
use std::path::Path;
use std::process::Stdio;

/// The files mutated, per crate.
pub(crate) const FILES: &[(&str, &[&str])] = &[
    (
        "vram-crypto",
        &[
            "src/seal.rs",
            "src/model.rs",
            "src/tree.rs",
            "src/digest.rs",
            "src/diff.rs",
            "src/engine.rs",
        ],
    ),
    (
        "vram-audit",
        &["src/record.rs", "src/verify.rs", "src/recover.rs"],
    ),
    (
        "vram-secrets",
        &["src/hkdf.rs", "src/key.rs", "src/file.rs"],
    ),
    (
        "vram-residency",
        &["src/verify.rs", "src/lease.rs", "src/model.rs"],
    ),
    ("vram-hub", &["src/layout.rs"]),
];

const INSTALL: &str = "cargo install cargo-mutants --locked";

fn cargo_mutants_available() -> bool {
    cargo()
        .args(["mutants", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Lines in one of cargo-mutants' outcome lists (`caught.txt`, ...).
fn count(dir: &Path, list: &str) -> u64 {
    std::fs::read_to_string(dir.join("mutants.out").join(list))
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count() as u64)
        .unwrap_or(0)
}

/// Caught, missed and timed-out mutants: the viable ones.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Score {
    pub(crate) caught: u64,
    pub(crate) missed: u64,
    pub(crate) timeout: u64,
    pub(crate) unviable: u64,
}

/// The mutant names in one of an output directory's outcome lists.
fn names(out: &Path, list: &str) -> std::collections::BTreeSet<String> {
    std::fs::read_to_string(out.join(list))
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl Score {
    /// The score of every mutant in `current` (today's full list), each by
    /// its newest outcome: this run's (`dir/mutants.out`), else the run
    /// before it (`dir/mutants.out.old`, which `--iterate` did not test
    /// again). A mutant in neither counts as missed: nothing caught it.
    pub(crate) fn merged(dir: &Path, current: &[String]) -> Self {
        let new = dir.join("mutants.out");
        let old = dir.join("mutants.out.old");
        let outcome = |out: &Path, name: &str| -> Option<&'static str> {
            ["caught.txt", "timeout.txt", "missed.txt", "unviable.txt"]
                .into_iter()
                .find(|list| names(out, list).contains(name))
        };
        let mut s = Self::default();
        for name in current {
            match outcome(&new, name).or_else(|| outcome(&old, name)) {
                Some("caught.txt") => s.caught = s.caught.saturating_add(1),
                Some("timeout.txt") => s.timeout = s.timeout.saturating_add(1),
                Some("unviable.txt") => s.unviable = s.unviable.saturating_add(1),
                _ => s.missed = s.missed.saturating_add(1),
            }
        }
        s
    }

    pub(crate) fn read(dir: &Path) -> Self {
        Self {
            caught: count(dir, "caught.txt"),
            missed: count(dir, "missed.txt"),
            timeout: count(dir, "timeout.txt"),
            unviable: count(dir, "unviable.txt"),
        }
    }

    /// Percent of viable mutants caught (a timeout counts as caught: the
    /// test run noticed), or `None` when there were none.
    pub(crate) fn percent(self) -> Option<f64> {
        let noticed = self.caught.saturating_add(self.timeout);
        let viable = noticed.saturating_add(self.missed);
        (viable > 0).then(|| 100.0 * noticed as f64 / viable as f64)
    }
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut only: Vec<&str> = Vec::new();
    let mut iterate = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            // Test only what the last run (same output directory) did not
            // catch: after adding tests for its survivors.
            "--iterate" => iterate = true,
            "--crate" => {
                let c = it.next().ok_or("--crate needs a crate name")?;
                let known = FILES.iter().find(|(name, _)| name == c).ok_or_else(|| {
                    let names: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
                    format!("no mutation target `{c}`; targets: {}", names.join(", "))
                })?;
                only.push(known.0);
            }
            other => return Err(format!("unknown mutants argument `{other}`")),
        }
    }
    if !cargo_mutants_available() {
        eprintln!("==> cargo-mutants is not installed: {INSTALL}");
        let ok = cargo()
            .args(["install", "cargo-mutants", "--locked"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok || !cargo_mutants_available() {
            return Err(format!(
                "cargo-mutants could not be installed; run `{INSTALL}`"
            ));
        }
    }
    let mut scores = Vec::new();
    for (krate, files) in FILES {
        if !only.is_empty() && !only.contains(krate) {
            continue;
        }
        let out = root().join("target").join("mutants").join(krate);
        std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
        let mut cmd = cargo();
        cmd.args(["mutants", "--package", krate, "--no-shuffle", "--output"])
            .arg(&out);
        if iterate {
            cmd.arg("--iterate");
        }
        for f in *files {
            cmd.arg("--file").arg(format!("{krate}/{f}"));
        }
        eprintln!("\n==> mutants: {krate} ({})\n    {cmd:?}", files.join(", "));
        // cargo-mutants exits non-zero when mutants survive: that is the
        // result, not a failure of this command.
        cmd.status()
            .map_err(|e| format!("cargo mutants could not start: {e}"))?;
        let score = if iterate {
            // This run tested only what the last one left; the score is of
            // today's whole list, each mutant by its newest outcome.
            let mut list = cargo();
            list.args(["mutants", "--list", "--package", krate]);
            for f in *files {
                list.arg("--file").arg(format!("{krate}/{f}"));
            }
            let listed = list
                .output()
                .map_err(|e| format!("cargo mutants --list: {e}"))?;
            let current: Vec<String> = String::from_utf8_lossy(&listed.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            Score::merged(&out, &current)
        } else {
            Score::read(&out)
        };
        scores.push((*krate, score, out));
    }
    println!("\nmutation score (viable mutants caught; timeouts count as caught):");
    for (krate, s, out) in &scores {
        let pct = s
            .percent()
            .map_or("n/a".to_string(), |p| format!("{p:.1}%"));
        println!(
            "  {krate:<16} {pct:>6}  caught {} missed {} timeout {} unviable {}  ({})",
            s.caught,
            s.missed,
            s.timeout,
            s.unviable,
            out.join("mutants.out").join("missed.txt").display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutated_file_exists() {
        for (krate, files) in FILES {
            for f in *files {
                assert!(root().join(krate).join(f).is_file(), "{krate}/{f}");
            }
        }
    }

    #[test]
    fn the_score_counts_timeouts_as_caught_and_skips_unviable() {
        let dir = tempfile_dir("score");
        let out = dir.join("mutants.out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("caught.txt"), "a\nb\nc\n").unwrap();
        std::fs::write(out.join("missed.txt"), "d\n").unwrap();
        std::fs::write(out.join("timeout.txt"), "\n").unwrap();
        std::fs::write(out.join("unviable.txt"), "e\nf\n").unwrap();
        let s = Score::read(&dir);
        assert_eq!(
            s,
            Score {
                caught: 3,
                missed: 1,
                timeout: 0,
                unviable: 2
            }
        );
        assert_eq!(s.percent(), Some(75.0));
        assert_eq!(Score::default().percent(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_iterated_score_takes_each_mutant_from_its_newest_run() {
        let dir = tempfile_dir("iterated");
        let (new, old) = (dir.join("mutants.out"), dir.join("mutants.out.old"));
        std::fs::create_dir_all(&new).unwrap();
        std::fs::create_dir_all(&old).unwrap();
        // Last run: a caught, b missed, c unviable, z caught (gone today).
        std::fs::write(old.join("caught.txt"), "a\nz\n").unwrap();
        std::fs::write(old.join("missed.txt"), "b\n").unwrap();
        std::fs::write(old.join("unviable.txt"), "c\n").unwrap();
        // This run retested b (now caught) and a new d (missed), e timed out.
        std::fs::write(new.join("caught.txt"), "b\n").unwrap();
        std::fs::write(new.join("missed.txt"), "d\n").unwrap();
        std::fs::write(new.join("timeout.txt"), "e\n").unwrap();
        let current: Vec<String> = ["a", "b", "c", "d", "e", "f"].map(String::from).to_vec();
        let s = Score::merged(&dir, &current);
        // f was in neither run: nothing caught it.
        assert_eq!(
            s,
            Score {
                caught: 2,
                missed: 2,
                timeout: 1,
                unviable: 1
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir(test: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-mutants-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}
