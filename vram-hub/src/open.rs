//! Opening a file of a model directory that someone else may write to: a
//! link is judged by what it resolves to, never by its name, and the file is
//! checked on the opened descriptor (`fstat`), so what is checked is what is
//! read.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use vram_validation::escape_for_log;

use crate::layout::is_plain_relative;
use crate::HubError;

/// A file of a model directory, opened.
#[derive(Debug)]
pub struct ModelFile {
    /// The open file (read-only; `O_NONBLOCK` is set, which changes nothing
    /// for a regular file).
    pub file: File,
    /// Its length, as `fstat` said when it was opened.
    pub len: u64,
    /// Where it resolved to (canonical).
    pub path: PathBuf,
}

/// Opens `name` (relative, `/`-separated) in the model directory `dir`.
///
/// Links are followed, and the file they resolve to must lie inside `dir`
/// (canonicalised); the one exception is a hub cache snapshot
/// (`models--ORG--NAME/snapshots/COMMIT`), whose links lead into its own
/// model's `blobs/`. The file is then opened with `O_NOFOLLOW` and
/// `O_NONBLOCK` (a FIFO cannot block the open) and checked on the
/// descriptor: a regular file of at most `max_len` bytes. Where `/proc` says
/// which file the descriptor is, that is checked against the same rule.
///
/// # Errors
/// [`HubError::LeavesModel`] for a name or link that leads out of the
/// directory; [`HubError::NotRegularFile`]; [`HubError::FileTooLarge`];
/// [`HubError::Io`] when it cannot be opened (`NotFound` when missing).
pub fn open_model_file(
    dir: &Path,
    name: &str,
    max_len: Option<u64>,
) -> Result<ModelFile, HubError> {
    let shown = || escape_for_log(name, 200);
    if !is_plain_relative(name) {
        return Err(HubError::LeavesModel { file: shown() });
    }
    let root = dir.canonicalize().map_err(|e| HubError::io(dir, &e))?;
    let joined = root.join(name);
    let target = joined
        .canonicalize()
        .map_err(|e| HubError::io(&joined, &e))?;
    let blobs = hub_blobs(&root);
    let allowed = |p: &Path| {
        (p.starts_with(&root) && p != root)
            || blobs.as_deref().is_some_and(|b| p.parent() == Some(b))
    };
    if !allowed(&target) {
        return Err(HubError::LeavesModel { file: shown() });
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&target)
        .map_err(|e| HubError::io(&joined, &e))?;
    // The path was resolved before the open: a directory renamed in between
    // could have moved the file; the descriptor says where it really is.
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if let Ok(actual) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
            if actual.is_absolute() && !allowed(&actual) {
                return Err(HubError::LeavesModel { file: shown() });
            }
        }
    }
    let meta = file.metadata().map_err(|e| HubError::io(&joined, &e))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let found = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(HubError::NotRegularFile {
            file: shown(),
            found,
        });
    }
    if let Some(max) = max_len.filter(|&max| meta.len() > max) {
        return Err(HubError::FileTooLarge { file: shown(), max });
    }
    Ok(ModelFile {
        file,
        len: meta.len(),
        path: target,
    })
}

/// Reads a small file of a model directory whole: [`open_model_file`] with
/// `cap` as its limit, then at most `cap` bytes from that one descriptor
/// (a file that grows past `cap` while it is read is refused too). The
/// workspace's one capped reader of model files (configs, tokenizers,
/// indexes, `modules.json`).
///
/// # Errors
/// As [`open_model_file`]; [`HubError::FileTooLarge`] for a file over `cap`
/// bytes; [`HubError::Io`] when reading fails.
pub fn read_model_file(dir: &Path, name: &str, cap: u64) -> Result<Vec<u8>, HubError> {
    let opened = open_model_file(dir, name, Some(cap))?;
    let mut bytes = Vec::new();
    opened
        .file
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| HubError::io(&opened.path, &e))?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > cap) {
        return Err(HubError::FileTooLarge {
            file: escape_for_log(name, 200),
            max: cap,
        });
    }
    Ok(bytes)
}

/// The `blobs/` of the hub model whose snapshot `dir` (canonical) is, when
/// it is one: `.../models--ORG--NAME/snapshots/COMMIT`.
pub(crate) fn hub_blobs(dir: &Path) -> Option<PathBuf> {
    let snapshots = dir.parent()?;
    if snapshots.file_name()? != "snapshots" {
        return None;
    }
    let repo = snapshots.parent()?;
    if !repo.file_name()?.to_string_lossy().starts_with("models--") {
        return None;
    }
    repo.join("blobs").canonicalize().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_judged_by_where_they_lead() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("model");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        std::fs::write(outer.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("config.json", dir.join("inside.json")).unwrap();
        std::os::unix::fs::symlink("../config.json", dir.join("sub/up.json")).unwrap();
        std::os::unix::fs::symlink("../secret", dir.join("out.json")).unwrap();
        assert_eq!(open_model_file(&dir, "config.json", None).unwrap().len, 2);
        assert_eq!(open_model_file(&dir, "inside.json", None).unwrap().len, 2);
        assert_eq!(open_model_file(&dir, "sub/up.json", None).unwrap().len, 2);
        for bad in ["out.json", "../secret", "/etc/passwd"] {
            assert!(
                matches!(
                    open_model_file(&dir, bad, None),
                    Err(HubError::LeavesModel { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            open_model_file(&dir, "config.json", Some(1)),
            Err(HubError::FileTooLarge { max: 1, .. })
        ));
        assert!(matches!(
            open_model_file(&dir, "sub", None),
            Err(HubError::NotRegularFile { .. })
        ));
    }

    #[test]
    fn small_files_are_read_up_to_their_cap_through_the_same_checks() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("model");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        std::fs::write(outer.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("../secret", dir.join("out.json")).unwrap();
        assert_eq!(read_model_file(&dir, "config.json", 2).unwrap(), b"{}");
        let e = read_model_file(&dir, "config.json", 1).unwrap_err();
        assert_eq!(e.to_string(), "config.json is larger than 1 bytes");
        assert!(matches!(
            read_model_file(&dir, "out.json", 10),
            Err(HubError::LeavesModel { .. })
        ));
        assert!(matches!(
            read_model_file(&dir, "absent.json", 10),
            Err(HubError::Io {
                kind: std::io::ErrorKind::NotFound,
                ..
            })
        ));
    }
}
