//! The worker secret and the keys derived from it.

use std::fmt;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::buf::KEY_LEN;
use crate::file::{credential_path, read_secret_file, read_secret_stdin, Loaded, Origin};
use crate::hkdf::hkdf_sha256_32;
use crate::key::SecretKey;
use crate::SecretsError;

/// The shortest worker secret accepted, in bytes.
///
/// HKDF spreads the entropy of its input over the derived keys but cannot add any:
/// a short or guessable secret gives keys that can be found by trying secrets, and
/// HKDF is fast by design, unlike a password hash. 32 bytes (256 bits, the size of
/// the derived keys and of SHA-256's output) is the least that makes the secret as
/// strong as the keys. Text encodings of random bytes count by their length as
/// text: `openssl rand -hex 32` (64 bytes) is fine.
pub const MIN_SECRET_LEN: usize = 32;

/// The largest worker secret accepted, in bytes (1 MiB). Also the largest secret
/// file read.
pub const MAX_SECRET_LEN: usize = 1 << 20;

/// The fixed HKDF salt. Versioned with the labels: changing it changes every key.
const HKDF_SALT: &[u8] = b"vram-residency/hkdf-salt/v1";

// Keys are exactly one HKDF-SHA256 output block, which is what makes
// `derive_key` infallible.
const _: () = assert!(KEY_LEN == 32);

/// What a derived key is for. Each purpose has its own versioned HKDF label, so
/// keys for different purposes are independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyPurpose {
    /// Sealing shards (HMAC over the seal message).
    Seal,
    /// Authenticating audit records.
    Audit,
    /// The Ed25519 seed of the audit log's signing key: signs checkpoints
    /// that anyone holding the public key can check without this secret.
    AuditSigning,
}

impl KeyPurpose {
    /// The HKDF `info` label of this purpose.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            KeyPurpose::Seal => "vram-residency/seal-key/v1",
            KeyPurpose::Audit => "vram-residency/audit-key/v1",
            KeyPurpose::AuditSigning => "vram-residency/audit-signing-key/v1",
        }
    }
}

/// The secret a worker derives its keys from.
///
/// Held in a `Zeroizing<Vec<u8>>`: the bytes are overwritten when it is dropped.
/// No `Clone`, no `Display`, no serde; `Debug` shows only the length.
pub struct WorkerSecret {
    bytes: Zeroizing<Vec<u8>>,
    /// The file it was loaded from, so that other components can refuse to
    /// write to it (an audit log pointed at the secret would erase it): the
    /// path as given, the file the opened descriptor named, and its
    /// (device, inode).
    source: Option<Source>,
}

/// Where a secret loaded from a regular file came from.
struct Source {
    given: PathBuf,
    resolved: Option<PathBuf>,
    id: (u64, u64),
}

impl WorkerSecret {
    /// Wraps secret bytes.
    ///
    /// # Errors
    ///
    /// [`SecretsError::Empty`], [`SecretsError::TooShort`] (below
    /// [`MIN_SECRET_LEN`]) or [`SecretsError::TooLarge`] (above [`MAX_SECRET_LEN`]).
    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Result<WorkerSecret, SecretsError> {
        let len = bytes.len();
        if len == 0 {
            return Err(SecretsError::Empty);
        }
        if len < MIN_SECRET_LEN {
            return Err(SecretsError::TooShort {
                len,
                min: MIN_SECRET_LEN,
            });
        }
        if len > MAX_SECRET_LEN {
            return Err(SecretsError::TooLarge {
                len: u64::try_from(len).unwrap_or(u64::MAX),
                max: MAX_SECRET_LEN as u64,
            });
        }
        Ok(WorkerSecret {
            bytes,
            source: None,
        })
    }

    /// The secret, remembering the regular file it came from.
    fn from_loaded(loaded: Loaded, given: &Path) -> Result<WorkerSecret, SecretsError> {
        let mut secret = WorkerSecret::from_bytes(loaded.bytes)?;
        if let Origin::File { resolved, id } = loaded.origin {
            secret.source = Some(Source {
                given: given.to_path_buf(),
                resolved,
                id,
            });
        }
        Ok(secret)
    }

    /// A fresh random secret of 32 bytes from the operating system.
    ///
    /// Keys derived from it die with the process: seals made under it cannot be
    /// verified by another process, and the audit log cannot be checked after a
    /// restart. Meant for tests and single-process tools.
    ///
    /// # Errors
    ///
    /// [`SecretsError::Random`] if the system random number generator fails.
    pub fn generate_ephemeral() -> Result<WorkerSecret, SecretsError> {
        let mut bytes = Zeroizing::new(vec![0u8; MIN_SECRET_LEN]);
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SecretsError::Random)?;
        tracing::warn!(
            "using an ephemeral worker secret: seals and audit records made now cannot be verified after this process exits"
        );
        WorkerSecret::from_bytes(bytes)
    }

    /// Loads the secret from a file that only its owner can read.
    ///
    /// `path` is opened following symlinks, as platforms deliver secrets
    /// through them: a Kubernetes secret volume holds
    /// `DIR/worker-secret -> ..data/worker-secret`,
    /// `DIR/..data -> ..2024_01_01_00_00_00.123456789` and the regular file in
    /// that timestamped directory. The rules are then checked on the opened
    /// descriptor (`fstat`), not on the path, so what is checked is what is
    /// read, however the links change meanwhile:
    ///
    /// * it is a regular file (a link to `/dev/zero`, a FIFO, a socket or a
    ///   directory is refused; a FIFO is opened without blocking, so it
    ///   cannot hang the process first);
    /// * it is owned by this process's effective uid or by root (uid read from
    ///   `/proc/self/status`, so this works on Linux only);
    /// * group and others have no permission at all (`mode & 0o077 == 0`: 0400
    ///   or 0600), as OpenSSH asks of private keys. For a Kubernetes secret
    ///   volume, that is `defaultMode: 0400` (the default, 0644, is refused).
    ///   With a pod's `fsGroup` the kubelet makes it 0440: group read is
    ///   accepted in the kubelet's `..data` layout only, when the group is
    ///   one of this process's and no other user is in it;
    /// * it is at most [`MAX_SECRET_LEN`] bytes;
    /// * one trailing `\n` or `\r\n` is removed when at least
    ///   [`MIN_SECRET_LEN`] bytes remain without it (the newline `echo` or an
    ///   editor adds to a text secret); otherwise the file is taken byte for
    ///   byte. The secret must be at least [`MIN_SECRET_LEN`] bytes, so a file
    ///   of [`MIN_SECRET_LEN`] bytes or more is never refused as too short:
    ///   `head -c 32 /dev/urandom > FILE` works whatever its last byte, and
    ///   so does `openssl rand -hex 32 > FILE`.
    ///
    /// A path that names an open descriptor, `/dev/stdin`, `/dev/fd/N` or
    /// `/proc/self/fd/N` (a shell's `<(...)`), may also be a pipe or a socket:
    /// it is read to its end, with the size rules only. No owner or mode
    /// applies to a pipe; whoever can write into it chose the secret. Such a
    /// path that resolves to a regular file gets the rules above.
    ///
    /// A file's bytes are read once, straight into a zeroizing buffer of the
    /// exact size; a pipe's into one buffer of [`MAX_SECRET_LEN`] + 1 bytes
    /// allocated up front, then copied into one of the exact size (both
    /// zeroized).
    ///
    /// # Errors
    ///
    /// Every rule has its own [`SecretsError`] variant; I/O failures are
    /// [`SecretsError::Io`] with the path and the error kind.
    pub fn load_file(path: &Path) -> Result<WorkerSecret, SecretsError> {
        let secret = WorkerSecret::from_loaded(read_secret_file(path)?, path)?;
        tracing::info!(
            path = %vram_validation::escape_path_for_log(path, crate::SHOWN_CHARS),
            resolved = %secret.resolved_source_path().map(|p| vram_validation::escape_path_for_log(p, crate::SHOWN_CHARS)).unwrap_or_default(),
            len = secret.bytes.len(),
            "loaded worker secret"
        );
        Ok(secret)
    }

    /// Loads the secret from standard input (what `--secret-file -` means):
    /// a pipe, read to its end with the size rules of
    /// [`WorkerSecret::load_file`] (no owner or mode applies to a pipe), or a
    /// regular file redirected with `<`, which gets all of its rules.
    ///
    /// # Errors
    ///
    /// As [`WorkerSecret::load_file`]; a terminal is refused as a device.
    pub fn load_stdin() -> Result<WorkerSecret, SecretsError> {
        let secret = WorkerSecret::from_loaded(read_secret_stdin()?, Path::new("-"))?;
        tracing::info!(
            len = secret.bytes.len(),
            "loaded worker secret from standard input"
        );
        Ok(secret)
    }

    /// Loads the systemd credential `name` from `$CREDENTIALS_DIRECTORY`
    /// (set by `LoadCredential=` / `SetCredential=`), with the rules of
    /// [`WorkerSecret::load_file`].
    ///
    /// # Errors
    ///
    /// [`SecretsError::NoCredentialsDirectory`] when the variable is unset or
    /// empty, [`SecretsError::InvalidCredentialName`], and those of
    /// [`WorkerSecret::load_file`].
    pub fn load_systemd_credential(name: &str) -> Result<WorkerSecret, SecretsError> {
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
            .ok_or(SecretsError::NoCredentialsDirectory)?;
        WorkerSecret::load_systemd_credential_from(Path::new(&dir), name)
    }

    /// [`WorkerSecret::load_systemd_credential`] with the credentials directory
    /// given instead of read from the environment.
    ///
    /// `name` must be a plain file name: non-empty, at most 255 bytes, no `/` or
    /// NUL, and not `.` or `..`.
    ///
    /// # Errors
    ///
    /// [`SecretsError::InvalidCredentialName`], and those of
    /// [`WorkerSecret::load_file`].
    pub fn load_systemd_credential_from(
        dir: &Path,
        name: &str,
    ) -> Result<WorkerSecret, SecretsError> {
        let path = credential_path(dir, name)?;
        WorkerSecret::load_file(&path)
    }

    /// The file the secret was loaded from, as the path was given (`None`
    /// when it was not read from a regular file: given as bytes, or read from
    /// a pipe). Not secret: a log or output path that is the same file must be
    /// refused, never written. See also [`WorkerSecret::protected_paths`].
    #[must_use]
    pub fn source_path(&self) -> Option<&Path> {
        self.source.as_ref().map(|s| s.given.as_path())
    }

    /// The file the opened descriptor named when the secret was read (the
    /// target of every symlink: for a Kubernetes secret volume, the file in
    /// the timestamped directory), as `/proc/self/fd` reported it.
    #[must_use]
    pub fn resolved_source_path(&self) -> Option<&Path> {
        self.source.as_ref().and_then(|s| s.resolved.as_deref())
    }

    /// The (device, inode) of the file the secret was read from, taken from
    /// the opened descriptor: the identity to compare other files against,
    /// whatever the symlinks point at later.
    #[must_use]
    pub fn source_file_id(&self) -> Option<(u64, u64)> {
        self.source.as_ref().map(|s| s.id)
    }

    /// Every path that names the file the secret was read from: the path
    /// given and the resolved one (when they differ). Pass these to
    /// `vram_audit::AuditLog::open_file_protecting`, so that a log is never
    /// the secret's file, even when it was reached through symlinks that
    /// have since been switched (as the kubelet does on a secret update).
    #[must_use]
    pub fn protected_paths(&self) -> Vec<&Path> {
        let mut paths: Vec<&Path> = self.source_path().into_iter().collect();
        if let Some(resolved) = self.resolved_source_path() {
            if !paths.contains(&resolved) {
                paths.push(resolved);
            }
        }
        paths
    }

    /// Derives the 32-byte key for `purpose`: HKDF-SHA256 with a fixed versioned
    /// salt and the purpose's [label](KeyPurpose::label) as `info`.
    #[must_use]
    pub fn derive_key(&self, purpose: KeyPurpose) -> SecretKey {
        // Derived straight into the key's heap buffer: no copy of the key on
        // the stack or in a returned array.
        let key = SecretKey::fill_with(|out| {
            hkdf_sha256_32(HKDF_SALT, &self.bytes, purpose.label().as_bytes(), out);
        });
        tracing::debug!(purpose = purpose.label(), key_id = %key.key_id(), "derived key");
        key
    }

    /// The key for sealing shards: `derive_key(KeyPurpose::Seal)`.
    #[must_use]
    pub fn seal_key(&self) -> SecretKey {
        self.derive_key(KeyPurpose::Seal)
    }

    /// The key for audit records: `derive_key(KeyPurpose::Audit)`.
    #[must_use]
    pub fn audit_key(&self) -> SecretKey {
        self.derive_key(KeyPurpose::Audit)
    }

    /// The 32-byte Ed25519 seed of the audit log's signing key:
    /// `derive_key(KeyPurpose::AuditSigning)`. Never written anywhere; the
    /// public key made from it is what verifiers enrol.
    #[must_use]
    pub fn audit_signing_seed(&self) -> SecretKey {
        self.derive_key(KeyPurpose::AuditSigning)
    }
}

impl fmt::Debug for WorkerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerSecret")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// Debug-build probe: deriving and dropping keys frees every buffer of
    /// ours that held the PRK or a key, and each held only zeros when freed:
    /// no copy of the secret, the PRK or a derived key remains in them.
    /// Before, the PRK lived in a ring tag and the derived key in a plain
    /// array returned by value, neither ever cleared.
    #[test]
    fn freed_key_buffers_hold_no_key_bytes() {
        let secret = WorkerSecret::from_bytes(Zeroizing::new(vec![0x5a; 40])).unwrap();
        let _ = crate::probe::take();
        let (seal, audit) = (secret.seal_key(), secret.audit_key());
        let keys = [*seal.expose_secret(), *audit.expose_secret()];
        let during = crate::probe::take();
        drop(seal);
        drop(audit);
        let after = crate::probe::take();
        // One PRK per derivation, freed before the key is handed out.
        let prks = during.iter().filter(|(l, _)| *l == "hkdf-prk").count();
        assert_eq!(
            prks,
            2,
            "{:?}",
            during.iter().map(|(l, _)| l).collect::<Vec<_>>()
        );
        // No key buffer was freed during derivation: each key was derived in
        // place, not copied through a temporary.
        assert!(during.iter().all(|(l, _)| *l == "hkdf-prk"));
        assert_eq!(after.iter().filter(|(l, _)| *l == "secret-key").count(), 2);
        for (label, held) in during.iter().chain(&after) {
            assert!(
                held.iter().all(|&b| b == 0),
                "{label} held bytes when freed"
            );
            assert!(!contains(held, &[0x5a; 16]), "{label} held the secret");
            for k in &keys {
                assert!(!contains(held, &k[..16]), "{label} held a key");
            }
        }
    }
}
