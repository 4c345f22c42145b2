//! The worker secret, by one rule: the operator's secret (a file, standard
//! input where the binary allows it, the systemd credential, or the file
//! `$VRAM_SECRET_FILE` names), or an ephemeral one, only when the caller
//! chooses it by name ([`SecretChoice::Ephemeral`]).

use crate::error::WorkerError;
use std::path::{Path, PathBuf};
use vram_secrets::WorkerSecret;

/// Name of the systemd credential (`LoadCredential=vram-worker-secret:...`).
pub const CREDENTIAL_NAME: &str = "vram-worker-secret";
/// Environment variable naming a secret file.
pub const SECRET_FILE_ENV: &str = "VRAM_SECRET_FILE";

/// Whether a secret may come from standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StandardInput {
    /// `-` reads the secret from standard input.
    #[default]
    Allowed,
    /// Standard input carries something else (a server's requests): a path
    /// naming it is a usage error.
    Refused,
}

/// Where the operator's secret comes from, in this order: `file` (`-` for
/// standard input, where allowed), the systemd credential
/// [`CREDENTIAL_NAME`] under `$CREDENTIALS_DIRECTORY`, the file
/// [`SECRET_FILE_ENV`] names.
#[derive(Debug, Clone, Default)]
pub struct SecretSource {
    /// The file given on the command line (`--secret-file`).
    pub file: Option<PathBuf>,
    /// Whether standard input may carry it.
    pub standard_input: StandardInput,
}

impl SecretSource {
    /// The secret given by `file`, else by the environment, standard input
    /// allowed.
    #[must_use]
    pub fn new(file: Option<PathBuf>) -> Self {
        Self {
            file,
            standard_input: StandardInput::Allowed,
        }
    }

    /// Whether a secret is configured: a file given, the systemd credential
    /// present, or `$VRAM_SECRET_FILE` set. A binary that offers an
    /// ephemeral secret when none is configured asks this first, and then
    /// chooses [`SecretChoice::Ephemeral`] itself.
    #[must_use]
    pub fn is_configured(&self) -> bool {
        self.file.is_some() || credential_present() || std::env::var_os(SECRET_FILE_ENV).is_some()
    }

    /// Refuses, before anything is loaded, a file that names standard input
    /// where standard input is refused.
    ///
    /// # Errors
    /// [`WorkerError::SecretOnStandardInput`] (usage).
    pub fn check_standard_input(&self) -> Result<(), WorkerError> {
        match &self.file {
            Some(path)
                if self.standard_input == StandardInput::Refused && names_standard_input(path) =>
            {
                Err(WorkerError::SecretOnStandardInput)
            }
            _ => Ok(()),
        }
    }

    /// Loads the secret.
    ///
    /// # Errors
    /// [`WorkerError::SecretOnStandardInput`] (usage) for standard input
    /// where refused; [`WorkerError::NoSecret`] when none is configured;
    /// [`WorkerError::Secret`] (environment) when it cannot be used (a file
    /// others can read, a wrong length, I/O).
    pub fn load(&self) -> Result<WorkerSecret, WorkerError> {
        self.check_standard_input()?;
        if let Some(path) = &self.file {
            if path == Path::new("-") {
                return Ok(WorkerSecret::load_stdin()?);
            }
            return Ok(WorkerSecret::load_file(path)?);
        }
        if credential_present() {
            return Ok(WorkerSecret::load_systemd_credential(CREDENTIAL_NAME)?);
        }
        if let Some(path) = std::env::var_os(SECRET_FILE_ENV) {
            return Ok(WorkerSecret::load_file(Path::new(&path))?);
        }
        Err(WorkerError::NoSecret {
            credential: CREDENTIAL_NAME,
            env: SECRET_FILE_ENV,
        })
    }
}

/// The worker secret a worker is built with.
#[derive(Debug, Clone)]
pub enum SecretChoice {
    /// The operator's secret ([`SecretSource::load`]); none configured is
    /// an error, never a silent ephemeral secret.
    Operator(SecretSource),
    /// A fresh random secret for this process: seals and audit records made
    /// under it cannot be checked by any other process. Chosen by name:
    /// `vram demo`, `vram bench`, a server told it may run without one.
    Ephemeral,
}

impl SecretChoice {
    /// The secret.
    ///
    /// # Errors
    /// As [`SecretSource::load`]; for an ephemeral secret, when the system's
    /// random source fails.
    pub fn load(&self) -> Result<WorkerSecret, WorkerError> {
        match self {
            Self::Operator(source) => source.load(),
            Self::Ephemeral => Ok(WorkerSecret::generate_ephemeral()?),
        }
    }
}

fn credential_present() -> bool {
    std::env::var_os("CREDENTIALS_DIRECTORY")
        .is_some_and(|dir| Path::new(&dir).join(CREDENTIAL_NAME).exists())
}

/// Whether `path` names this process's standard input.
fn names_standard_input(path: &Path) -> bool {
    ["-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"]
        .iter()
        .any(|s| path == Path::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn secret_file(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join("secret");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&[7u8; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_given_file_is_the_secret_and_a_readable_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_file(dir.path(), 0o600);
        let a = SecretChoice::Operator(SecretSource::new(Some(path.clone())))
            .load()
            .unwrap();
        let b = SecretSource::new(Some(path.clone())).load().unwrap();
        assert_eq!(
            a.seal_key().expose_secret(),
            b.seal_key().expose_secret(),
            "the same file, the same secret"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SecretSource::new(Some(path)).load().unwrap_err();
        assert_eq!(e.exit_code(), 3, "{e}");
    }

    #[test]
    fn standard_input_is_refused_where_the_binary_reads_it() {
        for given in ["-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"] {
            let source = SecretSource {
                file: Some(PathBuf::from(given)),
                standard_input: StandardInput::Refused,
            };
            assert!(source.check_standard_input().is_err(), "{given}");
            let e = source.load().unwrap_err();
            assert!(matches!(e, WorkerError::SecretOnStandardInput), "{given}");
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("standard input"), "{e}");
        }
    }

    #[test]
    fn ephemeral_secrets_are_fresh_each_time_and_only_by_choice() {
        let a = SecretChoice::Ephemeral.load().unwrap();
        let b = SecretChoice::Ephemeral.load().unwrap();
        assert_ne!(a.seal_key().expose_secret(), b.seal_key().expose_secret());
        // A missing file is never replaced by an ephemeral secret.
        let dir = tempfile::tempdir().unwrap();
        let source = SecretSource::new(Some(dir.path().join("absent")));
        assert!(source.is_configured());
        assert!(SecretChoice::Operator(source).load().is_err());
    }
}
