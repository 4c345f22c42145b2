//! The crate's one error type.

use std::io::ErrorKind;
use std::path::PathBuf;

use crate::SHOWN_CHARS;
use vram_validation::escape_path_for_log;

/// Loading a worker secret failed.
///
/// Paths appear in the text escaped (one printable line); secret bytes never
/// appear, not even their length beyond what the limits below already tell.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// The secret file does not exist.
    #[error("secret file \"{}\" not found", escape_path_for_log(.path, SHOWN_CHARS))]
    NotFound {
        /// The path looked up.
        path: PathBuf,
    },
    /// The path (after following symlinks) is not a regular file: a directory,
    /// a FIFO, a device... A pipe is read only when named as a descriptor.
    #[error("secret file \"{}\" is (or links to) a {found}, not a regular file; a secret comes from a regular file (symlinks to one are followed) or from a pipe given as -, /dev/stdin or /dev/fd/N", escape_path_for_log(.path, SHOWN_CHARS))]
    NotRegularFile {
        /// The path looked up.
        path: PathBuf,
        /// What was found instead.
        found: &'static str,
    },
    /// The file is owned by someone other than the current user (or root).
    #[error(
        "secret file \"{}\" is owned by uid {actual_uid}, expected uid {expected_uid} (this process) or 0; run chown {expected_uid} \"{}\"",
        escape_path_for_log(.path, SHOWN_CHARS),
        escape_path_for_log(.path, SHOWN_CHARS)
    )]
    WrongOwner {
        /// The path looked up.
        path: PathBuf,
        /// The effective uid of this process.
        expected_uid: u32,
        /// The owner of the file.
        actual_uid: u32,
    },
    /// Group or others have some permission on the file.
    #[error(
        "permissions {:04o} for \"{}\" are too open; run chmod 600 \"{}\" (in Kubernetes, set defaultMode: 0400 on the secret volume)",
        .mode & 0o7777,
        escape_path_for_log(.path, SHOWN_CHARS),
        escape_path_for_log(.path, SHOWN_CHARS)
    )]
    TooPermissive {
        /// The file's mode bits.
        mode: u32,
        /// The path looked up.
        path: PathBuf,
    },
    /// The secret is larger than allowed.
    #[error("secret is {len} bytes; the limit is {max} bytes")]
    TooLarge {
        /// Its length in bytes.
        len: u64,
        /// The largest length allowed.
        max: u64,
    },
    /// The secret is shorter than [`MIN_SECRET_LEN`](crate::MIN_SECRET_LEN).
    #[error("secret is {len} bytes; at least {min} bytes are required (a file's trailing newline is dropped only when {min} bytes remain without it, so any file of {min} bytes or more is accepted): create one with `head -c 32 /dev/urandom > FILE` or `openssl rand -hex 32 > FILE`")]
    TooShort {
        /// Its length in bytes.
        len: usize,
        /// The least length allowed.
        min: usize,
    },
    /// The secret is empty.
    #[error("secret is empty")]
    Empty,
    /// `$CREDENTIALS_DIRECTORY` is not set (the process was not started by systemd
    /// with `LoadCredential=` or `SetCredential=`).
    #[error("CREDENTIALS_DIRECTORY is not set; start the service with LoadCredential= or use a secret file")]
    NoCredentialsDirectory,
    /// A systemd credential name is empty, `.`, `..`, contains `/` or NUL, or is
    /// longer than 255 bytes.
    #[error("invalid credential name \"{shown}\": it must be a plain file name")]
    InvalidCredentialName {
        /// The name, escaped.
        shown: String,
    },
    /// A key id is not 16 hex digits.
    #[error("invalid key id \"{shown}\": expected 16 hex digits")]
    InvalidKeyId {
        /// The input, escaped.
        shown: String,
    },
    /// The file's length changed between the checks (`fstat` of the opened
    /// file) and the read: it grew or shrank while being read.
    #[error("secret file \"{}\" changed while it was being read", escape_path_for_log(.path, SHOWN_CHARS))]
    Changed {
        /// The path read.
        path: PathBuf,
    },
    /// Another I/O error.
    #[error("reading secret file \"{}\" failed: {kind}", escape_path_for_log(.path, SHOWN_CHARS))]
    Io {
        /// The path read.
        path: PathBuf,
        /// What went wrong.
        kind: ErrorKind,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}
