//! Opening a file of a model directory that someone else may write to: a
//! link is judged by what it resolves to, never by its name, and the file is
//! checked on the opened descriptor (`fstat`), so what is checked is what is
//! read.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use vram_validation::{escape_for_log, escape_path_for_log};

use crate::layout::is_plain_relative;
use crate::HubError;

/// A file of a model directory, opened.
#[derive(Debug)]
pub struct ModelFile {
    /// The open file (read-only, blocking: `O_NONBLOCK` only guarded the
    /// open).
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
/// model's `blobs/`. The file is then opened as [`open_regular_file`]
/// opens a file (`O_NOFOLLOW`, `O_NONBLOCK` until the descriptor is known
/// to be a regular file of at most `max_len` bytes). Where `/proc` says
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
    let (file, len) = open_descriptor(&target, &joined, &shown(), max_len)?;
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
    Ok(ModelFile {
        file,
        len,
        path: target,
    })
}

/// Opens the file `path` names itself, as one someone else may write to
/// (a signature bundle, a public key, a digest file named on a command line):
/// a symbolic link in its last component is refused (`O_NOFOLLOW`), a FIFO
/// cannot block the open (`O_NONBLOCK`, cleared once the descriptor is
/// known to be a regular file), and the file is checked on the descriptor
/// (`fstat`): a regular file of at most `max_len` bytes. The rules of
/// [`open_model_file`] without its directory: the one opener of both.
///
/// # Errors
/// [`HubError::NotRegularFile`] for a symbolic link, a FIFO, a directory, a
/// socket or a device; [`HubError::FileTooLarge`]; [`HubError::Io`] when it
/// cannot be opened (`NotFound` when missing).
pub fn open_regular_file(path: &Path, max_len: Option<u64>) -> Result<ModelFile, HubError> {
    let shown = escape_path_for_log(path, 200);
    let (file, len) = open_descriptor(path, path, &shown, max_len)?;
    Ok(ModelFile {
        file,
        len,
        path: path.to_path_buf(),
    })
}

/// Reads a small file whole, opened by [`open_regular_file`] with `cap` as
/// its limit, at most `cap` bytes from that one descriptor (a file that
/// grows past `cap` while it is read is refused too).
///
/// # Errors
/// As [`open_regular_file`]; [`HubError::FileTooLarge`] for a file over
/// `cap` bytes; [`HubError::Io`] when reading fails.
pub fn read_regular_file(path: &Path, cap: u64) -> Result<Vec<u8>, HubError> {
    let opened = open_regular_file(path, Some(cap))?;
    read_capped(opened, &escape_path_for_log(path, 200), cap)
}

/// What a file that is not a regular file is, for a refusal: "a FIFO", "a
/// directory", "a socket", "a device", else "not a regular file".
#[must_use]
pub fn file_kind(kind: std::fs::FileType) -> &'static str {
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Opens `path` with `O_NOFOLLOW | O_NONBLOCK` and checks the descriptor:
/// a regular file (then `O_NONBLOCK` is cleared) of at most `max_len`
/// bytes. Its length, as `fstat` said. Errors name `shown`; I/O errors
/// `io_path`.
pub(crate) fn open_descriptor(
    path: &Path,
    io_path: &Path,
    shown: &str,
    max_len: Option<u64>,
) -> Result<(File, u64), HubError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            // O_NOFOLLOW's answer to a link in the last component.
            if e.raw_os_error() == Some(libc::ELOOP) {
                HubError::NotRegularFile {
                    file: shown.to_owned(),
                    found: "a symbolic link",
                }
            } else {
                HubError::io(io_path, &e)
            }
        })?;
    let meta = file.metadata().map_err(|e| HubError::io(io_path, &e))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(HubError::NotRegularFile {
            file: shown.to_owned(),
            found: file_kind(kind),
        });
    }
    if let Some(max) = max_len.filter(|&max| meta.len() > max) {
        return Err(HubError::FileTooLarge {
            file: shown.to_owned(),
            max,
        });
    }
    // A regular file: reads through the descriptor block as they always do
    // (the flag only kept a FIFO from blocking the open).
    let flags = rustix::fs::fcntl_getfl(&file).map_err(|e| HubError::io(io_path, &e.into()))?;
    rustix::fs::fcntl_setfl(&file, flags.difference(rustix::fs::OFlags::NONBLOCK))
        .map_err(|e| HubError::io(io_path, &e.into()))?;
    Ok((file, meta.len()))
}

/// At most `cap` bytes of an opened file, `FileTooLarge` past them.
fn read_capped(opened: ModelFile, shown: &str, cap: u64) -> Result<Vec<u8>, HubError> {
    let mut bytes = Vec::new();
    opened
        .file
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| HubError::io(&opened.path, &e))?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > cap) {
        return Err(HubError::FileTooLarge {
            file: shown.to_owned(),
            max: cap,
        });
    }
    Ok(bytes)
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
    read_capped(opened, &escape_for_log(name, 200), cap)
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
    fn a_file_named_directly_is_refused_as_a_link_a_fifo_or_over_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("key.pem");
        std::fs::write(&real, "0123456789").unwrap();
        let link = dir.path().join("link.pem");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(read_regular_file(&real, 10).unwrap(), b"0123456789");

        let e = read_regular_file(&link, 10).unwrap_err();
        assert!(
            matches!(
                e,
                HubError::NotRegularFile {
                    found: "a symbolic link",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .ends_with("is a symbolic link, not a regular file; refusing to read it"),
            "{e}"
        );

        let e = read_regular_file(&real, 9).unwrap_err();
        assert!(matches!(e, HubError::FileTooLarge { max: 9, .. }), "{e:?}");
        assert!(
            e.to_string().ends_with("key.pem is larger than 9 bytes"),
            "{e}"
        );

        let e = read_regular_file(dir.path(), 10).unwrap_err();
        assert!(
            matches!(
                e,
                HubError::NotRegularFile {
                    found: "a directory",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = read_regular_file(&dir.path().join("absent"), 10).unwrap_err();
        assert!(
            matches!(
                e,
                HubError::Io {
                    kind: std::io::ErrorKind::NotFound,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn a_fifo_is_refused_at_once_and_a_regular_file_is_left_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // No one writes to it: a blocking open would never return. The open
        // runs on a thread so that a hang fails the test instead of holding it.
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_regular_file(&path, 10).map_err(|e| e.to_string()));
        });
        let answer = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the FIFO was refused, not waited on");
        let e = answer.unwrap_err();
        assert!(
            e.ends_with("is a FIFO, not a regular file; refusing to read it"),
            "{e}"
        );

        let file = dir.path().join("weights");
        std::fs::write(&file, [0u8; 4]).unwrap();
        let opened = open_regular_file(&file, None).unwrap();
        assert_eq!(opened.len, 4);
        let flags = rustix::fs::fcntl_getfl(&opened.file).unwrap();
        assert!(
            !flags.contains(rustix::fs::OFlags::NONBLOCK),
            "O_NONBLOCK is cleared once the descriptor is a regular file"
        );
        let opened = open_model_file(dir.path(), "weights", None).unwrap();
        let flags = rustix::fs::fcntl_getfl(&opened.file).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK));
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
