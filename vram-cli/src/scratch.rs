//! A private scratch directory for `demo` and `bench`: fresh, owner-only,
//! removed when dropped.

use crate::exit::CliError;
use ring::rand::SecureRandom;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// A directory made for this run alone: a random name under the temporary
/// directory, created (never reused: creation fails if the name exists, even
/// as a symlink) with mode 0700, and removed with its contents on drop.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `$TMPDIR/<prefix>-<16 random hex digits>`.
    pub(crate) fn new(prefix: &str) -> Result<Self, CliError> {
        Self::new_in(&std::env::temp_dir(), prefix)
    }

    pub(crate) fn new_in(parent: &Path, prefix: &str) -> Result<Self, CliError> {
        let rng = ring::rand::SystemRandom::new();
        let mut last = None;
        // A name collision is astronomically unlikely; a few tries cover a
        // hostile pre-creation of one name anyway.
        for _ in 0..4 {
            let mut bytes = [0u8; 8];
            rng.fill(&mut bytes)
                .map_err(|_| CliError::env("the system random number generator failed"))?;
            let name = vram_validation::hex::encode(&bytes);
            let path = parent.join(format!("{prefix}-{name}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(path),
                Err(e) => return Err(crate::exit::io_error(&path, &e)),
            }
        }
        Err(CliError::env(format!(
            "could not create a fresh scratch directory in {} (last tried {})",
            crate::exit::shown_path(parent),
            last.map(|p| p.display().to_string()).unwrap_or_default()
        )))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove a scratch directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn fresh_private_and_removed() {
        let parent = tempfile::tempdir().unwrap();
        let a = ScratchDir::new_in(parent.path(), "vram-demo").unwrap();
        let b = ScratchDir::new_in(parent.path(), "vram-demo").unwrap();
        assert_ne!(a.path(), b.path(), "each run gets its own directory");
        let mode = std::fs::metadata(a.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(a.path().join("audit.jsonl"), b"x").unwrap();
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists(), "removed with its contents");
        drop(b);
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    }
}
