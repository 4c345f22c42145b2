//! What the `vram` tests share: the binary on the mock device with no
//! secret from the environment, owner-only secret files, model bytes.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The built `vram` binary.
pub(crate) fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("vram")
}

/// `vram` on the mock device, with no secret from the environment
/// (assert_cmd's command: output assertions, stdin from a string).
pub(crate) fn vram() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("vram").unwrap();
    c.env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("VRAM_SECRET_FILE")
        .env("VRAM_RESIDENCY_FORCE_MOCK", "1");
    c
}

/// [`vram`] as a plain process (spawned, waited for, signalled), standard
/// input closed.
pub(crate) fn vram_process() -> std::process::Command {
    let mut c = std::process::Command::new(bin());
    c.env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("VRAM_SECRET_FILE")
        .env("VRAM_RESIDENCY_FORCE_MOCK", "1")
        .stdin(Stdio::null());
    c
}

/// An owner-only (0600) file `dir/name` holding `bytes`, made new.
pub(crate) fn secret_file_with(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)
        .unwrap();
    f.write_all(bytes).unwrap();
    p
}

/// `dir/worker.secret`: an owner-only worker secret.
pub(crate) fn secret_file(dir: &Path) -> PathBuf {
    secret_file_with(
        dir,
        "worker.secret",
        b"0123456789abcdef0123456789abcdef-cli-test\n",
    )
}

/// `len` deterministic model bytes.
pub(crate) fn model(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 % 251) as u8).collect()
}

/// `dir/name` holding `bytes`.
pub(crate) fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Output bytes as text, for messages and searches.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
