//! [`WorkerError`], the one error of this crate, and its [`ErrorClass`].

use std::path::{Path, PathBuf};
use vram_hub::HubError;
use vram_residency::VramError;

/// What kind of failure an error is: the class a supervisor or a script
/// branches on, with the exit code every binary of the workspace gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Corrupt bytes, an invalid seal, a cached file that is not what its
    /// name promises: exit 1.
    Integrity,
    /// A bad argument or input the operator can correct: exit 2.
    Usage,
    /// The machine, not the input: no device, an unusable secret or log,
    /// I/O: exit 3.
    Environment,
}

impl ErrorClass {
    /// The exit code: 1 integrity, 2 usage, 3 environment.
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Integrity => 1,
            Self::Usage => 2,
            Self::Environment => 3,
        }
    }

    /// `integrity`, `usage` or `environment`, as JSON error objects name it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Integrity => "integrity",
            Self::Usage => "usage",
            Self::Environment => "environment",
        }
    }
}

/// Why a worker could not be put together, or its model located or sealed.
/// Messages are one line, name what to change, and never hold keys, device
/// addresses or untrusted input unescaped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// A device name that is not `auto`, `mock`, `cuda` or `cuda:N`.
    #[error("unknown device `{shown}`: use auto, mock, cuda or cuda:N")]
    UnknownDevice {
        /// The name given, escaped and cut to 40 characters.
        shown: String,
    },
    /// No device can be used (`auto` without the mock, `cuda:N`).
    #[error("{reason}")]
    NoDevice {
        /// Why (driver, device count, build).
        reason: String,
    },
    /// `cuda` asked for and no CUDA device can be used.
    #[error(
        "--device cuda: no CUDA device can be used ({reason}); \
         this command requires real GPU memory"
    )]
    CudaRequired {
        /// Why (driver, device count, build).
        reason: String,
    },
    /// `cuda:N` beyond the devices found.
    #[error("no device cuda:{index}: {count} CUDA device(s) found")]
    NoSuchDevice {
        /// The index asked for.
        index: u32,
        /// How many CUDA devices there are.
        count: u32,
    },
    /// Device memory could not be corrupted on purpose (demonstrations).
    #[error("{reason}")]
    Corruption {
        /// Why.
        reason: String,
    },
    /// No worker secret is configured and the caller did not choose an
    /// ephemeral one.
    #[error(
        "no worker secret: pass --secret-file PATH, run under systemd with credential \
         `{credential}`, or set {env} (create one with: \
         head -c 32 /dev/urandom > secret && chmod 600 secret)"
    )]
    NoSecret {
        /// The systemd credential's name.
        credential: &'static str,
        /// The environment variable naming a secret file.
        env: &'static str,
    },
    /// The secret file names standard input, which this binary reads for
    /// something else.
    #[error(
        "--secret-file cannot be standard input: this program reads its requests there; \
         give a file (--secret-file PATH), the systemd credential vram-worker-secret \
         or VRAM_SECRET_FILE"
    )]
    SecretOnStandardInput,
    /// An audit log was asked for without a worker secret to key it.
    #[error(
        "an audit log needs the worker secret its key derives from: pass \
         --secret-file PATH (or the systemd credential, or VRAM_SECRET_FILE)"
    )]
    AuditNeedsSecret,
    /// The secret could not be loaded (permissions, length, I/O).
    #[error(transparent)]
    Secret(#[from] vram_secrets::SecretsError),
    /// The audit log's checkpoint signing key could not be derived.
    #[error("audit signing key: {0}")]
    AuditSigner(String),
    /// The audit log could not be opened (every open error names the log).
    #[error(transparent)]
    AuditOpen(vram_audit::AuditError),
    /// The in-memory audit log could not be set up.
    #[error("audit log: {0}")]
    AuditMemory(vram_audit::AuditError),
    /// The facade refused (device, capacity, integrity, policy).
    #[error(transparent)]
    Facade(#[from] VramError),
    /// Sealing one weights file failed; `source` says how (its class is
    /// this error's class).
    #[error("{model} ({shown}): {source}")]
    Seal {
        /// The model reference the seal was to carry.
        model: String,
        /// The file, escaped.
        shown: String,
        /// What the facade said.
        source: Box<VramError>,
    },
    /// An invalid identifier or reference.
    #[error(transparent)]
    Validation(#[from] vram_validation::ValidationError),
    /// A model reference that cannot be made from a name.
    #[error("{shown}: {source}")]
    ModelRef {
        /// The name, escaped.
        shown: String,
        /// Why.
        source: vram_validation::ValidationError,
    },
    /// The hub cache refused (reference, revision, links, I/O).
    #[error("hub cache: {source}{hint}")]
    Hub {
        /// What the cache said.
        source: HubError,
        /// What to do about it, when there is something to say.
        hint: &'static str,
    },
    /// A snapshot directory that is not one model (its layout).
    #[error("{model}: {source}")]
    Layout {
        /// The model as named (reference or directory).
        model: String,
        /// What the layout said.
        source: HubError,
    },
    /// A cached file that is not what its blob name promises.
    #[error("{message}")]
    CorruptCache {
        /// Which file, its digest and its blob name, and how to fetch it
        /// again.
        message: String,
    },
    /// A blob name that is not a SHA-256.
    #[error("{shown}: blob name is not a SHA-256 ({source})")]
    BadBlobName {
        /// The file, escaped.
        shown: String,
        /// Why.
        source: vram_validation::ValidationError,
    },
    /// A file the user named could not be used.
    #[error("{shown}: {}", io_words(*kind))]
    Io {
        /// The path, escaped.
        shown: String,
        /// What the operating system said.
        kind: std::io::ErrorKind,
    },
}

fn io_words(kind: std::io::ErrorKind) -> String {
    match kind {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        kind => kind.to_string(),
    }
}

impl WorkerError {
    /// The class of this error.
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::UnknownDevice { .. }
            | Self::SecretOnStandardInput
            | Self::Validation(_)
            | Self::ModelRef { .. } => ErrorClass::Usage,
            Self::Facade(e) => facade_class(e),
            Self::Seal { source, .. } => facade_class(source),
            Self::Hub { source, .. } => match source {
                HubError::InvalidReference { .. } | HubError::UnknownRevision { .. } => {
                    ErrorClass::Usage
                }
                // The cache is damaged: what the user would load is not what
                // the hub published.
                HubError::DanglingLink { .. }
                | HubError::EscapingLink { .. }
                | HubError::NotABlob { .. }
                | HubError::NotRegularFile { .. }
                | HubError::PlainFile { .. } => ErrorClass::Integrity,
                _ => ErrorClass::Environment,
            },
            Self::Layout { source, .. } => match source {
                HubError::Io { .. } => ErrorClass::Environment,
                _ => ErrorClass::Usage,
            },
            Self::CorruptCache { .. } => ErrorClass::Integrity,
            Self::Io { kind, .. } if *kind == std::io::ErrorKind::NotFound => ErrorClass::Usage,
            _ => ErrorClass::Environment,
        }
    }

    /// The exit code of [`Self::class`]: 1, 2 or 3.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        self.class().exit_code()
    }

    /// A file the user named could not be opened or read: not found is a
    /// usage error, anything else the environment's.
    #[must_use]
    pub fn io(path: &Path, e: &std::io::Error) -> Self {
        Self::Io {
            shown: shown_path(path),
            kind: e.kind(),
        }
    }
}

impl From<HubError> for WorkerError {
    fn from(source: HubError) -> Self {
        let hint = match source {
            HubError::PlainFile { .. } => {
                ". A cache written without links (copies instead of links into blobs/) \
                 is read with --cache-without-links, its files then unchecked"
            }
            _ => "",
        };
        Self::Hub { source, hint }
    }
}

/// The class of what the facade refused.
fn facade_class(e: &VramError) -> ErrorClass {
    match e.class() {
        vram_residency::ErrorClass::Fatal => ErrorClass::Integrity,
        vram_residency::ErrorClass::InvalidInput => ErrorClass::Usage,
        _ => ErrorClass::Environment,
    }
}

/// A path as an error message shows it: escaped, one printable line.
#[must_use]
pub fn shown_path(path: &Path) -> String {
    vram_validation::escape_path_for_log(path, 200)
}

/// A path from the hub (`hf://ORG/NAME@COMMIT/FILE`), for messages.
pub(crate) fn hub_path(reference: &str, name: &str) -> PathBuf {
    PathBuf::from(format!("{reference}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_map_to_the_documented_exit_codes() {
        assert_eq!(ErrorClass::Integrity.exit_code(), 1);
        assert_eq!(ErrorClass::Usage.exit_code(), 2);
        assert_eq!(ErrorClass::Environment.exit_code(), 3);
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = WorkerError::io(Path::new("/no/such"), &missing);
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (2, "/no/such: no such file".into())
        );
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = WorkerError::io(Path::new("/x"), &denied);
        assert_eq!(
            (e.class(), e.to_string()),
            (ErrorClass::Environment, "/x: permission denied".into())
        );
        assert_eq!(
            WorkerError::AuditNeedsSecret.class().as_str(),
            "environment"
        );
    }
}
