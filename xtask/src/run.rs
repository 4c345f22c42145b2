//! Running child commands with a clear account of what ran and what failed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The workspace root (xtask lives one level below it).
pub(crate) fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// `cargo`, as chosen by the invoking cargo.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root());
    cmd
}

/// Runs `cmd` as the named step; an error names the step and its exit status.
pub(crate) fn step(name: &str, cmd: &mut Command) -> Result<(), String> {
    eprintln!("\n==> {name}\n    {cmd:?}");
    let start = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("step `{name}` could not start: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    if status.success() {
        eprintln!("==> {name}: ok ({secs:.1} s)");
        Ok(())
    } else {
        Err(format!("step `{name}` failed ({status}) after {secs:.1} s"))
    }
}
