//! `cargo xtask ci`: everything CI checks, in order, stopping at the first failure.

use crate::run::{cargo, step};
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
