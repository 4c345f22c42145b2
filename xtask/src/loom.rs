//! `cargo xtask loom`: exhaustive interleaving checks of the capacity tracker.

use crate::run::{cargo, root, step};

pub(crate) fn run() -> Result<(), String> {
    let tests = root()
        .join("vram-core")
        .join("tests")
        .join("loom_capacity.rs");
    if !tests.exists() {
        eprintln!(
            "==> loom: no model checks exist yet ({} missing); nothing to run",
            tests.display()
        );
        return Ok(());
    }
    step(
        "loom model checks (vram-core capacity tracker)",
        cargo()
            .args([
                "test",
                "-p",
                "vram-core",
                "--release",
                "--locked",
                "--test",
                "loom_capacity",
                "--target-dir",
            ])
            .arg(root().join("target-loom"))
            .args(["--", "--nocapture"])
            .env("RUSTFLAGS", "--cfg loom")
            .env("LOOM_MAX_PREEMPTIONS", "3"),
    )
}
