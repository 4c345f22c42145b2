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
/// in a fresh virtual environment under target/ with numpy, pytest and
/// tokenizers (from PyPI, or pip's cache), and its pytest suite run against
/// it, with the vram-embed binary its NumPy example is compared with.
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
    eprintln!(
        "==> python package: {:.1} s in all",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The `vram-embed` binary the Python example is compared with: built in the
/// test profile, which `cargo test --workspace` has already built (no extra
/// compilation), its path read from cargo's JSON messages.
fn vram_embed_binary() -> Result<std::path::PathBuf, String> {
    eprintln!("\n==> python: the vram-embed binary (test profile)");
    let out = cargo()
        .args([
            "build",
            "--locked",
            "--profile",
            "test",
            "-p",
            "vram-embed",
            "--bin",
            "vram-embed",
            "--message-format",
            "json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo build -p vram-embed could not start: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo build -p vram-embed failed ({})", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter(|l| l.contains("\"compiler-artifact\"") && l.contains("\"name\":\"vram-embed\""))
        .find_map(|l| {
            let (_, rest) = l.split_once("\"executable\":\"")?;
            rest.find('"')
                .and_then(|end| rest.get(..end))
                .map(std::path::PathBuf::from)
        })
        .ok_or_else(|| "cargo build -p vram-embed named no executable".to_owned())
}
