//! `cargo xtask ci`: everything CI checks, in order, stopping at the first failure.

use crate::run::{cargo, root, step};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

pub(crate) fn run() -> Result<(), String> {
    let start = Instant::now();
    step("rustfmt", cargo().args(["fmt", "--all", "--check"]))?;
    step(
        "clippy (workspace, all targets)",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "clippy (vram-core with the cuda feature)",
        cargo().args([
            "clippy",
            "-p",
            "vram-core",
            "--features",
            "cuda",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "clippy (vram-residency without default features: no CUDA, no mock)",
        cargo().args([
            "clippy",
            "-p",
            "vram-residency",
            "--no-default-features",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "tests (unit, integration, doc)",
        cargo().args(["test", "--workspace", "--locked"]),
    )?;
    python_package()?;
    step(
        "rustdoc (broken links and markup are errors)",
        cargo()
            .args([
                "doc",
                "--workspace",
                "--no-deps",
                "--document-private-items",
                "--locked",
            ])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    crate::loom::run()?;
    eprintln!(
        "\nxtask ci: all steps passed in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The Python package (vram-py): its wheel built with the test hook, installed
/// in a fresh virtual environment under target/ with numpy, pytest and
/// tokenizers (from PyPI, or pip's cache), and its pytest suite run against
/// it, with the vram-embed binary its NumPy example is compared with; then
/// the same wheel and suite with NumPy 1.26.4.
fn python_package() -> Result<(), String> {
    let start = Instant::now();
    let dir = root().join("target").join("py-ci");
    let venv = dir.join("venv");
    let wheels = dir.join("wheels");
    let _ = std::fs::remove_dir_all(&wheels);
    step(
        "python: fresh virtual environment",
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
    )?;
    let bin = venv.join("bin");
    step(
        "python: maturin, numpy, pytest",
        Command::new(bin.join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "maturin>=1.5,<2",
            "numpy",
            "pytest",
            // The NumPy BERT example tokenizes texts with it.
            "tokenizers",
        ]),
    )?;
    let vram_embed = vram_embed_binary()?;
    step(
        "python: build the wheel (vram-py, with test-corruption)",
        &mut test_wheel(&bin.join("maturin"), &wheels, &[]),
    )?;
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| format!("{}: {e}", wheels.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| format!("maturin left no wheel in {}", wheels.display()))?;
    step(
        "python: install the wheel",
        Command::new(bin.join("pip"))
            .args(["install", "--quiet", "--no-deps", "--force-reinstall"])
            .arg(&wheel),
    )?;
    step(
        "python: pytest vram-py/tests",
        Command::new(bin.join("python"))
            .current_dir(root())
            .args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "vram-py/tests",
            ])
            // The example's embeddings are compared with this binary's.
            .env("VRAM_EMBED_BIN", &vram_embed)
            .env("CI", "true"),
    )?;
    // The same wheel against NumPy 1 (its last release; the package asks
    // for numpy>=1.22): the views `Lease.arrays()` makes through NumPy's C
    // API, and DLPack as far as NumPy 1 consumes it (said loudly where not).
    let old_venv = dir.join("venv-numpy1");
    step(
        "python: fresh virtual environment with NumPy 1",
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&old_venv),
    )?;
    let old_bin = old_venv.join("bin");
    step(
        "python: numpy 1.26.4, pytest, tokenizers and the wheel",
        Command::new(old_bin.join("pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "numpy==1.26.4",
                "pytest",
                "tokenizers",
            ])
            .arg(&wheel),
    )?;
    step(
        "python: pytest vram-py/tests (NumPy 1)",
        Command::new(old_bin.join("python"))
            .current_dir(root())
            .args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "vram-py/tests",
            ])
            .env("VRAM_EMBED_BIN", &vram_embed)
            .env("CI", "true"),
    )?;
    eprintln!(
        "==> python package: {:.1} s in all",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `maturin build` of vram-py's wheel with the test hook (`test-corruption`:
/// for the package's tests, never a shipped wheel) into `out`, with `extra`
/// arguments (`--release`, `--strip`).
pub(crate) fn test_wheel(maturin: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(maturin);
    cmd.current_dir(root())
        .arg("build")
        .args(extra)
        .args([
            "--quiet",
            "--locked",
            "--features",
            "test-corruption",
            "--manifest-path",
            "vram-py/Cargo.toml",
            "--out",
        ])
        .arg(out);
    cmd
}

/// The `vram-embed` binary the Python example is compared with: the one the
/// tests step built, found by asking cargo for that same build again
/// (`cargo test --workspace --no-run`, the same command and so the same
/// features: nothing is compiled) and reading the path from its JSON
/// messages. A `cargo build -p vram-embed` would resolve other features and
/// rebuild the model stack.
fn vram_embed_binary() -> Result<std::path::PathBuf, String> {
    eprintln!("\n==> python: the vram-embed binary (the tests step's build)");
    let out = cargo()
        .args([
            "test",
            "--workspace",
            "--locked",
            "--no-run",
            "--message-format",
            "json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo test --no-run could not start: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo test --no-run failed ({})", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter(|l| {
            l.contains("\"compiler-artifact\"")
                && l.contains("\"kind\":[\"bin\"]")
                && l.contains("\"name\":\"vram-embed\"")
                // The binary itself, not its unit-test harness (`"test":true`
                // in the profile); a target's own flags are `doctest`/`test`
                // = true for a bin, so `"test":false` is the profile's.
                && l.contains("\"test\":false")
        })
        .find_map(|l| {
            let (_, rest) = l.split_once("\"executable\":\"")?;
            rest.find('"')
                .and_then(|end| rest.get(..end))
                .map(std::path::PathBuf::from)
        })
        .ok_or_else(|| "cargo test --no-run named no vram-embed executable".to_owned())
}
