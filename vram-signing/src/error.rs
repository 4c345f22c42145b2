//! Errors of bundle verification and file matching.

use thiserror::Error;

/// Why a bundle, a key or a model was refused. Names from a bundle or the
/// file system are escaped; no key material appears.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SigningError {
    /// The public key file is not a PEM SubjectPublicKeyInfo of a supported
    /// elliptic curve.
    #[error("public key: {reason}")]
    BadKey {
        /// What is wrong.
        reason: String,
    },
    /// The bundle is not a model_signing bundle this crate can read.
    #[error("signature bundle: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The bundle was made with a method verified here only when a trust
    /// root can be checked offline, which it cannot (certificates, keyless
    /// Sigstore), or uses a serialization this crate does not compute.
    #[error("verification method not supported: {what}")]
    UnsupportedMethod {
        /// Which method or serialization.
        what: String,
    },
    /// The bundle names another public key than the one given.
    #[error(
        "the signature was made with another key: its key hint is {hint}, the public key \
         given has fingerprint {given}"
    )]
    KeyMismatch {
        /// The bundle's (unsigned) hint, escaped.
        hint: String,
        /// SHA-256 of the given key's PEM.
        given: String,
    },
    /// The DSSE signature does not verify under the key given.
    #[error("the signature does not verify under the public key given ({curve})")]
    BadSignature {
        /// The key's curve.
        curve: &'static str,
    },
    /// The envelope does not declare the in-toto payload type that
    /// model_signing signs: the bundle does not verify as a model signature
    /// (as model_signing says, a verification failure).
    #[error("the signature does not verify as a model signature: payload type `{found}`, expected {expected}")]
    WrongPayloadType {
        /// The envelope's payload type, escaped.
        found: String,
        /// The payload type model_signing signs.
        expected: &'static str,
    },
    /// The signed statement is inconsistent: its subject digest is not the
    /// digest of its resources.
    #[error("the signed statement is inconsistent: {reason}")]
    Inconsistent {
        /// What does not match.
        reason: String,
    },
    /// Files the signature lists are absent from the model.
    #[error("{count} signed file(s) missing from the model: {names}")]
    Missing {
        /// How many.
        count: usize,
        /// The first few, escaped.
        names: String,
    },
    /// Files in the model that the signature does not list.
    #[error("{count} file(s) in the model that the signature does not cover: {names}")]
    Extra {
        /// How many.
        count: usize,
        /// The first few, escaped.
        names: String,
    },
    /// A symbolic link where the signature's serialization does not allow
    /// them (`allow_symlinks: false`, model_signing's default).
    #[error("{name}: is a symbolic link, and the signature does not allow symlinks")]
    Symlink {
        /// The path in the model, escaped.
        name: String,
    },
    /// Something that is neither a regular file nor a directory.
    #[error("{name}: is neither a regular file nor a directory")]
    NotFileOrDir {
        /// The path in the model, escaped.
        name: String,
    },
    /// Reading the bundle, the key or the model directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The path, escaped.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl SigningError {
    /// Whether this says the model or its signature is not authentic (as
    /// opposed to unreadable input or an unsupported method): the class a
    /// command reports as an integrity failure.
    #[must_use]
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Self::KeyMismatch { .. }
                | Self::BadSignature { .. }
                | Self::WrongPayloadType { .. }
                | Self::Inconsistent { .. }
                | Self::Missing { .. }
                | Self::Extra { .. }
                | Self::Symlink { .. }
        )
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        Self::Malformed {
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: shown(&path.to_string_lossy()),
            source,
        }
    }
}

/// An untrusted name, escaped and bounded for a message.
pub(crate) fn shown(s: &str) -> String {
    vram_validation::escape_for_log(s, 200)
}

/// The first names of a list, escaped, for a message.
pub(crate) fn first_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    const SHOWN: usize = 10;
    let names: Vec<&str> = names.collect();
    let mut out: Vec<String> = names.iter().take(SHOWN).map(|n| shown(n)).collect();
    if names.len() > SHOWN {
        out.push(format!("and {} more", names.len().saturating_sub(SHOWN)));
    }
    out.join(", ")
}
