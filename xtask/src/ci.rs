//! `cargo xtask ci`: everything CI checks, in order, stopping at the first failure.

use crate::run::{cargo, root, step};
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
/// in a fresh virtual environment under target/ with numpy and pytest (from
/// PyPI, or pip's cache), and its pytest suite run against it.
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
        ]),
    )?;
    step(
        "python: build the wheel (vram-py, with test-corruption)",
        Command::new(bin.join("maturin"))
            .current_dir(root())
            .args([
                "build",
                "--quiet",
                "--locked",
                "--features",
                "test-corruption",
                "--manifest-path",
                "vram-py/Cargo.toml",
                "--out",
            ])
            .arg(&wheels),
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
        Command::new(bin.join("python")).current_dir(root()).args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "vram-py/tests",
        ]),
    )?;
    eprintln!(
        "==> python package: {:.1} s in all",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
