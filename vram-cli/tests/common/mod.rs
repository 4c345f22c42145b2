//! What the `vram` tests share: the binary on the mock device with no
//! secret from the environment, owner-only secret files, model bytes.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

// The one bounded wait on a child process, shared with vram-serve's tests.
mod wait;
pub(crate) use wait::wait_within;

/// The built `vram` binary.
pub(crate) fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("vram")
}

/// How long a test waits for one `vram` run (or any other child) to end.
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);

/// `vram` on the mock device, with no secret from the environment
/// (assert_cmd's command: output assertions, stdin from a string). Its runs
/// are bounded: past [`PATIENCE`] the process is killed (and the test's
/// assertion on its exit fails, with what it printed).
pub(crate) fn vram() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("vram").unwrap();
    c.env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("VRAM_SECRET_FILE")
        .env("VRAM_RESIDENCY_FORCE_MOCK", "1")
        .timeout(PATIENCE);
    c
}

/// Waits for a `Command::output()` with a bound: `within`, past which the
/// process is killed and the test fails with what it printed. Standard
/// input is closed unless the command set it, as `output()` does.
pub(crate) trait OutputWithin {
    /// The process's status and what it printed.
    fn output_within(&mut self, within: Duration) -> std::process::Output;
    /// As [`OutputWithin::output_within`], a program that cannot be
    /// started as an error.
    fn try_output_within(&mut self, within: Duration) -> std::io::Result<std::process::Output>;
}

impl OutputWithin for std::process::Command {
    fn output_within(&mut self, within: Duration) -> std::process::Output {
        self.try_output_within(within).unwrap()
    }

    /// Standard input is closed (as `output()` closes it): a command that
    /// needs another spawns and calls [`wait_within`] itself.
    fn try_output_within(&mut self, within: Duration) -> std::io::Result<std::process::Output> {
        let child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        Ok(wait_within(child, within))
    }
}

impl OutputWithin for assert_cmd::Command {
    fn output_within(&mut self, within: Duration) -> std::process::Output {
        self.try_output_within(within).unwrap()
    }

    /// assert_cmd's own bound: past it the process is killed; the test then
    /// fails here, with what it printed.
    fn try_output_within(&mut self, within: Duration) -> std::io::Result<std::process::Output> {
        use std::os::unix::process::ExitStatusExt as _;
        let start = Instant::now();
        let out = self.timeout(within).output()?;
        assert!(
            !(out.status.signal() == Some(9) && start.elapsed() >= within),
            "still running after {within:?}, killed; stdout: {}; stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out)
    }
}

/// The lines of a child's pipe, read on a thread, as they come: what
/// [`wait_for_line`] waits on with a bound. The channel ends with the pipe.
pub(crate) fn line_channel(pipe: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits at most `within` for a line of `rx` containing `needle`, returning
/// the lines before it. Past the bound, or when the pipe ends first, `child`
/// is killed and the test fails with what it printed.
pub(crate) fn wait_for_line(
    child: &mut std::process::Child,
    rx: &std::sync::mpsc::Receiver<String>,
    needle: &str,
    within: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return seen,
            Ok(line) => seen.push(line),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no line with `{needle}` within {within:?} ({e}); it printed: {seen:?}");
            }
        }
    }
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
