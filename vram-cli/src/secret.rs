//! Where the worker secret comes from: `--secret-file` (`-` for standard
//! input), else the systemd credential `vram-worker-secret`, else
//! `$VRAM_SECRET_FILE`.

use crate::exit::CliError;
use std::path::Path;
use vram_secrets::WorkerSecret;

/// Name of the systemd credential (`LoadCredential=vram-worker-secret:...`).
pub(crate) const CREDENTIAL_NAME: &str = "vram-worker-secret";
/// Environment variable naming a secret file.
pub(crate) const SECRET_FILE_ENV: &str = "VRAM_SECRET_FILE";

pub(crate) fn load(flag: Option<&Path>) -> Result<WorkerSecret, CliError> {
    if let Some(path) = flag {
        if path == Path::new("-") {
            return Ok(WorkerSecret::load_stdin()?);
        }
        return Ok(WorkerSecret::load_file(path)?);
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        if Path::new(&dir).join(CREDENTIAL_NAME).exists() {
            return Ok(WorkerSecret::load_systemd_credential(CREDENTIAL_NAME)?);
        }
    }
    if let Some(path) = std::env::var_os(SECRET_FILE_ENV) {
        return Ok(WorkerSecret::load_file(Path::new(&path))?);
    }
    Err(CliError::env(format!(
        "no worker secret: pass --secret-file PATH, run under systemd with credential \
         `{CREDENTIAL_NAME}`, or set {SECRET_FILE_ENV} (create one with: \
         head -c 32 /dev/urandom > secret && chmod 600 secret)"
    )))
}

/// [`load`] when a secret is given (by flag, credential or environment);
/// `None` when none is, for commands that can work without one.
pub(crate) fn load_if_given(flag: Option<&Path>) -> Result<Option<WorkerSecret>, CliError> {
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .is_some_and(|dir| Path::new(&dir).join(CREDENTIAL_NAME).exists());
    if flag.is_some() || credential || std::env::var_os(SECRET_FILE_ENV).is_some() {
        load(flag).map(Some)
    } else {
        Ok(None)
    }
}
