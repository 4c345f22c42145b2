//! Where record lines go: the [`Backend`] seam, the in-memory backend and the
//! append-only file backend.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::lock::LogLock;
use crate::open::{open_log_file, Access};
use crate::AuditError;

/// Storage for record lines: one append-only segment at a time.
///
/// [`AuditLog`](crate::AuditLog) calls it under its lock, one record at a time,
/// and owns the rules: it asks for the length before a write, appends the whole
/// line with one call, and if `append` fails it truncates back to the previous
/// length, so a backend may leave a partial write behind on error.
pub trait Backend: Send {
    /// Bytes in the current segment.
    ///
    /// # Errors
    /// When the length cannot be read.
    fn segment_len(&mut self) -> io::Result<u64>;
    /// Appends `line` (a whole record including its `\n`).
    ///
    /// # Errors
    /// When the write fails; part of `line` may have been written.
    fn append(&mut self, line: &[u8]) -> io::Result<()>;
    /// Cuts the current segment back to `len` bytes.
    ///
    /// # Errors
    /// When the segment cannot be truncated.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Flushes everything appended so far to stable storage.
    ///
    /// # Errors
    /// When the flush fails.
    fn sync(&mut self) -> io::Result<()>;
    /// File name of the segment a rotation would continue in, or `None` when
    /// this backend does not rotate.
    fn next_segment(&self) -> Option<String> {
        None
    }
    /// Creates the next segment (durably) without switching to it yet.
    ///
    /// # Errors
    /// When it cannot be created.
    fn prepare_next(&mut self) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this backend does not rotate",
        ))
    }
    /// Makes the prepared segment current. Called only after `prepare_next`
    /// succeeded and the `rotated` record is in the old segment.
    fn switch_to_next(&mut self) {}
    /// Abandons a prepared segment.
    fn abort_next(&mut self) {}
    /// Where the records go, for messages (a path, `<memory>`).
    fn describe(&self) -> String;
}

#[derive(Debug, Default)]
struct MemoryInner {
    bytes: Vec<u8>,
    fail_next: u32,
    failing: bool,
}

/// Records kept in memory, with fault injection for tests of callers.
///
/// Clones share the same storage. An injected failure writes half of the line
/// and then fails, like a disk that fills up in the middle of a write.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<MemoryInner>>,
}

impl MemoryBackend {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryInner> {
        // The inner state is plain bytes and counters, consistent at every step.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The complete record lines written so far, without their `\n`.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        let inner = self.lock();
        String::from_utf8_lossy(&inner.bytes)
            .split_terminator('\n')
            .map(str::to_owned)
            .collect()
    }

    /// Everything stored, byte for byte.
    #[must_use]
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().bytes.clone()
    }

    /// Makes the next `n` appends fail after writing half their bytes. A test
    /// hook behind the `test-hooks` feature: not for production builds.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn fail_next_writes(&self, n: u32) {
        self.lock().fail_next = n;
    }

    /// Makes every append fail (after writing half its bytes) until set back.
    /// A test hook behind the `test-hooks` feature: not for production builds.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }
}

impl Backend for MemoryBackend {
    fn segment_len(&mut self) -> io::Result<u64> {
        Ok(u64::try_from(self.lock().bytes.len()).unwrap_or(u64::MAX))
    }

    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let mut inner = self.lock();
        let fail = if inner.failing {
            true
        } else if inner.fail_next > 0 {
            inner.fail_next = inner.fail_next.saturating_sub(1);
            true
        } else {
            false
        };
        if fail {
            let half = line.get(..line.len() / 2).unwrap_or_default();
            inner.bytes.extend_from_slice(half);
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected write failure",
            ));
        }
        inner.bytes.extend_from_slice(line);
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        self.lock().bytes.truncate(len);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "<memory>".into()
    }
}

/// Path of segment `index` of the log at `base`: `base` itself for 0, then
/// `base.1`, `base.2`, ...
pub(crate) fn segment_path(base: &Path, index: u32) -> PathBuf {
    if index == 0 {
        return base.to_path_buf();
    }
    let mut name = base.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// File name (no directory) of segment `index`.
pub(crate) fn segment_name(base_name: &str, index: u32) -> String {
    if index == 0 {
        base_name.to_owned()
    } else {
        format!("{base_name}.{index}")
    }
}

pub(crate) fn base_name(base: &Path) -> Result<&str, AuditError> {
    base.file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| AuditError::InvalidPath {
            path: base.to_path_buf(),
        })
}

/// The existing segments of the log at `base`, oldest first, as (index, path).
pub(crate) fn list_segments(base: &Path) -> Result<Vec<(u32, PathBuf)>, AuditError> {
    let name = base_name(base)?;
    let dir = parent_dir(base);
    let mut found = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(AuditError::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io("list", &dir, e))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let index = if file_name == name {
            Some(0)
        } else {
            file_name
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('.'))
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .filter(|n| !n.starts_with('0'))
                .and_then(|n| n.parse::<u32>().ok())
        };
        if let Some(index) = index {
            found.push((index, segment_path(base, index)));
        }
    }
    // A bare `base` the listing did not show (a path given to the verifier
    // through a symlinked directory entry, say) still counts.
    if found.iter().all(|(i, _)| *i != 0) && base.exists() {
        found.push((0, base.to_path_buf()));
    }
    found.sort_by_key(|(i, _)| *i);
    Ok(found)
}

pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs a directory so that a file created in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Identity of a file: (device, inode).
#[cfg(unix)]
fn identity(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    (meta.dev(), meta.ino())
}

/// Refuses `path` when it is the same file as one of `protected` (which are
/// followed if they are symlinks: what matters is the file they name). A
/// protected path that cannot be read is no file `path` can be.
pub(crate) fn check_not_protected(path: &Path, protected: &[&Path]) -> Result<(), AuditError> {
    #[cfg(unix)]
    {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return Ok(());
        };
        let id = identity(&meta);
        for p in protected {
            if fs::metadata(p).is_ok_and(|m| identity(&m) == id) {
                return Err(AuditError::ProtectedFile {
                    path: path.to_path_buf(),
                    protected: p.to_path_buf(),
                });
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, protected);
    Ok(())
}

/// Append-only segments `base`, `base.1`, `base.2`, ...
pub(crate) struct FileBackend {
    base: PathBuf,
    base_name: String,
    index: u32,
    file: File,
    rotate: bool,
    pending: Option<(u32, File)>,
    /// The log's lock, held for as long as the backend lives (see
    /// [`crate::lock`]); dropped last.
    lock: Option<LogLock>,
}

impl FileBackend {
    pub(crate) fn new(
        base: &Path,
        index: u32,
        file: File,
        rotate: bool,
    ) -> Result<Self, AuditError> {
        Ok(Self {
            base: base.to_path_buf(),
            base_name: base_name(base)?.to_owned(),
            index,
            file,
            rotate,
            pending: None,
            lock: None,
        })
    }

    /// Hands the log's lock to the backend, which keeps it until dropped.
    pub(crate) fn hold(&mut self, lock: LogLock) {
        self.lock = Some(lock);
    }

    fn path(&self) -> PathBuf {
        segment_path(&self.base, self.index)
    }
}

impl Backend for FileBackend {
    fn segment_len(&mut self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        // One write_all of the whole line on an O_APPEND descriptor.
        self.file.write_all(line)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync(&mut self) -> io::Result<()> {
        // fdatasync: the data and the new file length, which is all a reader needs.
        self.file.sync_data()
    }

    fn next_segment(&self) -> Option<String> {
        let next = self.index.checked_add(1)?;
        self.rotate.then(|| segment_name(&self.base_name, next))
    }

    fn prepare_next(&mut self) -> io::Result<()> {
        let next = self
            .index
            .checked_add(1)
            .ok_or_else(|| io::Error::other("segment index overflow"))?;
        let path = segment_path(&self.base, next);
        let file = open_log_file(&path, Access::CreateOrOpen).map_err(io::Error::other)?;
        // A leftover of an abandoned rotation is reused only while empty.
        if file.metadata()?.len() != 0 {
            return Err(io::Error::other(format!(
                "next segment {} already exists and is not empty",
                path.display()
            )));
        }
        sync_dir(&parent_dir(&path))?;
        self.pending = Some((next, file));
        Ok(())
    }

    fn switch_to_next(&mut self) {
        if let Some((index, file)) = self.pending.take() {
            self.index = index;
            self.file = file;
        }
    }

    fn abort_next(&mut self) {
        if let Some((index, file)) = self.pending.take() {
            drop(file);
            let path = segment_path(&self.base, index);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove an unused audit segment");
            }
        }
    }

    fn describe(&self) -> String {
        self.path().display().to_string()
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn memory_injected_failure_leaves_half_a_line() {
        let mut m = MemoryBackend::new();
        m.append(b"abcd\n").unwrap();
        m.fail_next_writes(1);
        assert!(m.append(b"efgh\n").is_err());
        assert_eq!(m.bytes(), b"abcd\nef");
        m.truncate(5).unwrap();
        m.append(b"ijkl\n").unwrap();
        assert_eq!(m.lines(), ["abcd", "ijkl"]);
    }

    #[test]
    fn segments_are_listed_in_numeric_order() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("audit.jsonl");
        for name in [
            "audit.jsonl",
            "audit.jsonl.10",
            "audit.jsonl.2",
            "audit.jsonl.x",
            "audit.jsonl.01",
            "other",
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let got: Vec<u32> = list_segments(&base)
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(got, [0, 2, 10]);
        assert_eq!(segment_path(&base, 2), dir.path().join("audit.jsonl.2"));
    }
}
