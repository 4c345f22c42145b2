//! Opening the log's files: no symlink followed, nothing but a regular file
//! accepted (the segments and the lock file alike).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use crate::AuditError;

/// What a file system object is, for messages.
fn kind_name(file_type: fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_char_device() {
            return "character device";
        }
        if file_type.is_block_device() {
            return "block device";
        }
    }
    if file_type.is_symlink() {
        "symlink"
    } else if file_type.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// Whether a log file exists at `path` (without following a symlink): `false`
/// when nothing is there, `true` for a regular file, an error for anything
/// else.
pub(crate) fn regular_or_absent(path: &Path) -> Result<bool, AuditError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => Ok(true),
        Ok(meta) => Err(AuditError::NotRegularFile {
            path: path.to_path_buf(),
            found: kind_name(meta.file_type()),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(AuditError::io("stat", path, e)),
    }
}

/// How a log file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// An existing file, read only.
    Read,
    /// An existing file, read and appended to (and truncated).
    Append,
    /// A new file (it must not exist), read and appended to.
    CreateNew,
    /// Created if missing (a lock file, or the next segment), read and written.
    CreateOrOpen,
}

/// Opens a file of the log (a segment or the lock file) without following a
/// symlink in its last component (`O_NOFOLLOW`), and checks on the opened
/// descriptor that it is a regular file. `O_NONBLOCK` keeps a FIFO swapped in
/// at the last moment from blocking the open; it changes nothing for regular
/// files. New files get mode 0600.
pub(crate) fn open_log_file(path: &Path, access: Access) -> Result<File, AuditError> {
    let mut options = OpenOptions::new();
    options.read(true);
    match access {
        Access::Read => {}
        Access::Append => {
            options.append(true);
        }
        Access::CreateNew => {
            options.append(true).create_new(true);
        }
        Access::CreateOrOpen => {
            options.append(true).create(true);
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let op = match access {
        Access::Read | Access::Append => "open",
        Access::CreateNew | Access::CreateOrOpen => "create",
    };
    let file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return AuditError::NotRegularFile {
                path: path.to_path_buf(),
                found: "symlink",
            };
        }
        AuditError::io(op, path, e)
    })?;
    let meta = file
        .metadata()
        .map_err(|e| AuditError::io("stat", path, e))?;
    if !meta.is_file() {
        return Err(AuditError::NotRegularFile {
            path: path.to_path_buf(),
            found: kind_name(meta.file_type()),
        });
    }
    Ok(file)
}
