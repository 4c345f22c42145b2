//! Reading a secret file under owner-only rules.

use std::fs::{self, File, FileType};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::{SecretsError, MAX_SECRET_LEN, MIN_SECRET_LEN};

/// The longest systemd credential name accepted (a file name limit).
const MAX_CREDENTIAL_NAME_LEN: usize = 255;

/// `dir/name` after checking that `name` is a plain file name.
pub(crate) fn credential_path(dir: &Path, name: &str) -> Result<PathBuf, SecretsError> {
    let plain = !name.is_empty()
        && name.len() <= MAX_CREDENTIAL_NAME_LEN
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0']);
    if !plain {
        return Err(SecretsError::InvalidCredentialName {
            shown: vram_validation::escape_for_log(name, crate::SHOWN_CHARS),
        });
    }
    Ok(dir.join(name))
}

/// Reads the file at `path` after the checks documented on
/// [`WorkerSecret::load_file`](crate::WorkerSecret::load_file), with one trailing
/// newline removed when what remains is still a full-length secret.
pub(crate) fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
    let io_error = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => SecretsError::NotFound {
            path: path.to_owned(),
        },
        kind => SecretsError::Io {
            path: path.to_owned(),
            kind,
        },
    };
    let link_meta = fs::symlink_metadata(path).map_err(io_error)?;
    check_regular(path, link_meta.file_type())?;

    let mut file = File::open(path).map_err(io_error)?;
    let meta = file.metadata().map_err(io_error)?;
    // The checks below are on the opened file; make sure it is the one checked above.
    if meta.dev() != link_meta.dev() || meta.ino() != link_meta.ino() {
        return Err(SecretsError::Changed {
            path: path.to_owned(),
        });
    }
    check_regular(path, meta.file_type())?;
    check_owner(path, meta.uid(), current_euid()?)?;
    check_mode(path, meta.mode())?;

    let max = MAX_SECRET_LEN as u64;
    let len = meta.len();
    if len > max {
        return Err(SecretsError::TooLarge { len, max });
    }
    if len == 0 {
        return Err(SecretsError::Empty);
    }
    let len = usize::try_from(len).map_err(|_| SecretsError::TooLarge { len, max })?;

    let changed = || SecretsError::Changed {
        path: path.to_owned(),
    };
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    file.read_exact(&mut bytes).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => changed(),
        _ => io_error(e),
    })?;
    let mut probe = Zeroizing::new([0u8; 1]);
    if file.read(probe.as_mut()).map_err(io_error)? != 0 {
        return Err(changed());
    }

    strip_one_newline(&mut bytes);
    Ok(bytes)
}

/// Removes one trailing `\n` or `\r\n`, but only when at least
/// [`MIN_SECRET_LEN`] bytes remain.
///
/// The newline an editor or `echo` appends to a text secret (`openssl rand
/// -hex 32 > f`) is not part of it; but the last byte of a raw binary secret
/// (`head -c 32 /dev/urandom > f`) is `0x0a` one time in 256, and removing it
/// would leave 31 bytes. So a file of at least [`MIN_SECRET_LEN`] bytes is
/// never refused as too short, and every file accepted under the old rule
/// (always strip) still gives the same bytes, hence the same keys.
fn strip_one_newline(bytes: &mut Vec<u8>) {
    let newline = if bytes.ends_with(b"\r\n") {
        2
    } else if bytes.ends_with(b"\n") {
        1
    } else {
        return;
    };
    let kept = bytes.len().saturating_sub(newline);
    if kept >= MIN_SECRET_LEN {
        bytes.truncate(kept);
    }
}

fn check_regular(path: &Path, file_type: FileType) -> Result<(), SecretsError> {
    let found = if file_type.is_file() {
        return Ok(());
    } else if file_type.is_symlink() {
        "symlink"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "device"
    } else {
        "special file"
    };
    Err(SecretsError::NotRegularFile {
        path: path.to_owned(),
        found,
    })
}

/// The file must belong to this process's user or to root.
pub(crate) fn check_owner(path: &Path, file_uid: u32, euid: u32) -> Result<(), SecretsError> {
    if file_uid == euid || file_uid == 0 {
        Ok(())
    } else {
        Err(SecretsError::WrongOwner {
            path: path.to_owned(),
            expected_uid: euid,
            actual_uid: file_uid,
        })
    }
}

/// Group and others must have no permission bits.
pub(crate) fn check_mode(path: &Path, mode: u32) -> Result<(), SecretsError> {
    if mode & 0o077 == 0 {
        Ok(())
    } else {
        Err(SecretsError::TooPermissive {
            mode,
            path: path.to_owned(),
        })
    }
}

/// This process's effective uid, from the `Uid:` line of `/proc/self/status`
/// (real, effective, saved, filesystem).
fn current_euid() -> Result<u32, SecretsError> {
    const STATUS: &str = "/proc/self/status";
    let failed = |kind| SecretsError::Io {
        path: PathBuf::from(STATUS),
        kind,
    };
    let status = fs::read_to_string(STATUS).map_err(|e| failed(e.kind()))?;
    parse_euid(&status).ok_or(failed(io::ErrorKind::InvalidData))
}

fn parse_euid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_effective_uid() {
        let status = "Name:\tx\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t5\t5\t5\n";
        assert_eq!(parse_euid(status), Some(1001));
        assert_eq!(parse_euid("Name:\tx\n"), None);
        assert_eq!(parse_euid("Uid:\t1000\n"), None);
        assert_eq!(parse_euid("Uid:\tx\ty\n"), None);
        assert!(current_euid().is_ok());
    }

    #[test]
    fn owner_rule() {
        let p = Path::new("/s");
        assert!(check_owner(p, 1000, 1000).is_ok());
        assert!(check_owner(p, 0, 1000).is_ok());
        let err = check_owner(p, 1001, 1000).unwrap_err();
        assert!(matches!(
            err,
            SecretsError::WrongOwner {
                expected_uid: 1000,
                actual_uid: 1001,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "secret file \"/s\" is owned by uid 1001, expected uid 1000 (this process) or 0; run chown 1000 \"/s\""
        );
    }

    #[test]
    fn mode_rule() {
        let p = Path::new("/s");
        for ok in [0o100600, 0o100400, 0o100700, 0o100000] {
            assert!(check_mode(p, ok).is_ok(), "{ok:o}");
        }
        for bad in [0o100644, 0o100640, 0o100604, 0o100601, 0o100610, 0o100666] {
            assert!(check_mode(p, bad).is_err(), "{bad:o}");
        }
        assert_eq!(
            check_mode(p, 0o100644).unwrap_err().to_string(),
            "permissions 0644 for \"/s\" are too open; run chmod 600 \"/s\""
        );
    }

    #[test]
    fn newline_stripping() {
        let text = [b'k'; 40];
        let cases: [(Vec<u8>, Vec<u8>); 8] = [
            ([&text[..], b"\n"].concat(), text.to_vec()),
            ([&text[..], b"\r\n"].concat(), text.to_vec()),
            ([&text[..], b"\n\n"].concat(), [&text[..], b"\n"].concat()),
            (text.to_vec(), text.to_vec()),
            ([&text[..], b"\r"].concat(), [&text[..], b"\r"].concat()),
            // Stripping would leave fewer than 32 bytes: the file is kept whole.
            (
                [&[7u8; 31][..], b"\n"].concat(),
                [&[7u8; 31][..], b"\n"].concat(),
            ),
            (
                [&[7u8; 30][..], b"\r\n"].concat(),
                [&[7u8; 30][..], b"\r\n"].concat(),
            ),
            // Short files are left for the length check to refuse.
            (b"abc\n".to_vec(), b"abc\n".to_vec()),
        ];
        for (input, want) in cases {
            let mut v = input.clone();
            strip_one_newline(&mut v);
            assert_eq!(v, want, "{input:?}");
        }
        let mut exactly = [&[7u8; 32][..], b"\n"].concat();
        strip_one_newline(&mut exactly);
        assert_eq!(exactly, [7u8; 32]);
    }

    #[test]
    fn credential_names() {
        let dir = Path::new("/run/credentials/x.service");
        assert_eq!(
            credential_path(dir, "worker-secret").unwrap(),
            dir.join("worker-secret")
        );
        assert!(credential_path(dir, "a.b").is_ok());
        for bad in ["", ".", "..", "a/b", "/abs", "../x", "a\0b"] {
            assert!(
                matches!(
                    credential_path(dir, bad),
                    Err(SecretsError::InvalidCredentialName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(credential_path(dir, &"n".repeat(256)).is_err());
        assert!(credential_path(dir, &"n".repeat(255)).is_ok());
    }
}
