//! The audit log a worker writes: keyed by the worker secret, fail-closed,
//! never the file the secret came from, one writer at a time.

use crate::error::WorkerError;
use std::path::Path;
use std::sync::Arc;
use vram_audit::{AuditKey, AuditLog, AuditSigner, FailureMode, FailurePolicy, FileOptions};
use vram_secrets::WorkerSecret;

/// The audit key for a secret, in the form vram-audit takes, with the
/// checkpoint signing key derived from the same secret.
///
/// # Errors
/// [`WorkerError::AuditSigner`] when the signing key cannot be derived.
pub fn audit_key(secret: &WorkerSecret) -> Result<AuditKey, WorkerError> {
    Ok(AuditKey::from_secret(&secret.audit_key()).with_signer(audit_signer(secret)?))
}

/// The audit log's checkpoint signing key, derived from the secret.
///
/// # Errors
/// [`WorkerError::AuditSigner`] when it cannot be derived.
pub fn audit_signer(secret: &WorkerSecret) -> Result<AuditSigner, WorkerError> {
    AuditSigner::from_seed(&secret.audit_signing_seed())
        .map_err(|e| WorkerError::AuditSigner(e.to_string()))
}

/// Opens (or continues) a JSON-lines audit log: fail-closed for every event
/// (no success is reported unless its records are durable), never the file
/// the worker secret came from, one writer at a time (waits up to
/// `LogOptions::DEFAULT_LOCK_WAIT` for another process to finish).
///
/// # Errors
/// [`WorkerError::AuditOpen`] naming the log (not ours, locked, I/O).
pub fn open_audit_log(path: &Path, secret: &WorkerSecret) -> Result<Arc<AuditLog>, WorkerError> {
    open_audit_log_with(path, secret, FileOptions::default())
}

/// [`open_audit_log`] with the caller's segment size and checkpoint cadence
/// (the failure policy is always fail-closed).
///
/// # Errors
/// As [`open_audit_log`].
pub fn open_audit_log_with(
    path: &Path,
    secret: &WorkerSecret,
    tuning: FileOptions,
) -> Result<Arc<AuditLog>, WorkerError> {
    let options = FileOptions {
        failure: FailurePolicy::fail_closed(FailureMode::DEFAULT_MAX_WAIT),
        ..tuning
    };
    let protected = secret.protected_paths();
    AuditLog::open_file_protecting(path, audit_key(secret)?, &worker_id(), options, &protected)
        .map(Arc::new)
        .map_err(WorkerError::AuditOpen)
}

/// An audit log kept in memory, for a worker without a log file: its
/// records are lost at exit.
///
/// # Errors
/// [`WorkerError::AuditMemory`] when it cannot be set up.
pub fn in_memory_audit_log(secret: &WorkerSecret) -> Result<Arc<AuditLog>, WorkerError> {
    AuditLog::in_memory(audit_key(secret)?, &worker_id())
        .map(Arc::new)
        .map_err(WorkerError::AuditMemory)
}

/// This worker's id in audit records: the host name when it is usable
/// (1-64 ASCII letters, digits, `-`, `.`), else `vram-cli`.
#[must_use]
pub fn worker_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| usable_worker_id(h))
        .unwrap_or_else(|| "vram-cli".to_string())
}

fn usable_worker_id(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 64
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_are_short_plain_host_names() {
        assert!(usable_worker_id("gpu-node-7.example"));
        for bad in ["", "a b", "evil\n", &"x".repeat(65)] {
            assert!(!usable_worker_id(bad), "{bad:?}");
        }
        assert!(usable_worker_id(&worker_id()));
    }

    #[test]
    fn a_log_is_opened_continued_and_refused_as_the_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![5u8; 32])).unwrap();
        let path = dir.path().join("audit.jsonl");
        drop(open_audit_log(&path, &secret).unwrap());
        // Continued under the same secret.
        drop(open_audit_log(&path, &secret).unwrap());
        // Under another secret it is not ours: refused, named, environment.
        let other = WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![6u8; 32])).unwrap();
        let e = open_audit_log(&path, &other).unwrap_err();
        assert_eq!(e.exit_code(), 3, "{e}");
        assert!(in_memory_audit_log(&secret).is_ok());
        // Never the file the secret was loaded from: refused, left as it was.
        use std::os::unix::fs::PermissionsExt;
        let secret_path = dir.path().join("worker.secret");
        std::fs::write(&secret_path, b"worker-secret-for-this-test-0123").unwrap();
        std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = WorkerSecret::load_file(&secret_path).unwrap();
        let e = open_audit_log(&secret_path, &loaded).unwrap_err();
        assert!(
            matches!(
                e,
                WorkerError::AuditOpen(vram_audit::AuditError::ProtectedFile { .. })
            ),
            "{e}"
        );
        assert_eq!(
            std::fs::read(&secret_path).unwrap(),
            b"worker-secret-for-this-test-0123"
        );
    }
}
