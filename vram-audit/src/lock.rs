//! One writer per log: an exclusive lock on the file `PATH.lock` beside the
//! log, taken before the log is read and held for as long as the
//! [`AuditLog`](crate::AuditLog) has it open.
//!
//! Why a lock file and not a lock on the log itself: rotation changes which
//! file is live (`PATH`, `PATH.1`, ...), and recovery reads and repairs the
//! newest segment, which must not change under it. The lock file never
//! changes and is never removed (removing it would let two writers lock two
//! different files of the same name).
//!
//! The lock is `flock(2)` through [`File::try_lock`]: advisory (a writer that
//! does not take it is not stopped), released by the kernel when the process
//! dies however it dies, held per open file description, so a second
//! `AuditLog` on the same path in the same process is refused too. On NFS,
//! Linux emulates it with byte-range locks, which work only where the server's
//! lock service does: a fleet of workers on a shared disk gives each worker its
//! own log.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::open::{open_log_file, regular_or_absent, Access};
use crate::AuditError;

/// Longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// The held lock; dropping it (closing the file) releases it.
#[derive(Debug)]
pub(crate) struct LogLock {
    _file: File,
}

/// `PATH.lock` for the log at `PATH`.
pub(crate) fn lock_path(base: &Path) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock of the log at `base`, trying until `wait` has passed.
///
/// # Errors
/// [`AuditError::Locked`] when another writer still holds it after `wait`;
/// [`AuditError::NotRegularFile`] when the lock path is a symlink or not a
/// regular file; [`AuditError::Io`] when it cannot be created or locked.
pub(crate) fn acquire(base: &Path, wait: Duration) -> Result<LogLock, AuditError> {
    let path = lock_path(base);
    regular_or_absent(&path)?;
    let file = open_log_file(&path, Access::CreateOrOpen)?;
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    let mut announced = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(LogLock { _file: file }),
            Err(TryLockError::WouldBlock) => {
                let waited = start.elapsed();
                if waited >= wait {
                    return Err(AuditError::Locked {
                        path: base.to_path_buf(),
                        lock: path,
                        waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                    });
                }
                if !announced {
                    announced = true;
                    tracing::info!(
                        lock = %path.display(),
                        "audit log is in use by another writer; waiting up to {} ms",
                        wait.as_millis()
                    );
                }
                std::thread::sleep(pause.min(wait.saturating_sub(waited)));
                pause = pause.saturating_mul(2).min(MAX_PAUSE);
            }
            Err(TryLockError::Error(e)) => return Err(AuditError::io("lock", path, e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_then_is_refused_and_succeeds_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("audit.jsonl");
        let first = acquire(&base, Duration::ZERO).unwrap();
        let t0 = Instant::now();
        let err = acquire(&base, Duration::from_millis(100)).unwrap_err();
        assert!(t0.elapsed() >= Duration::from_millis(100));
        assert!(matches!(err, AuditError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("its own log"), "{err}");
        drop(first);
        acquire(&base, Duration::ZERO).unwrap();
        assert!(lock_path(&base).exists(), "the lock file stays");
    }
}
